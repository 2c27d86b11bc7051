//! `zcc-relay check`: proves each sink's set-up without writing anything
//! (docs/contract.md §3.1, §3.5) and says what to fix, one block per sink.
//!
//! Owns the choice of sinks (`--sink NAME`), the report and its exit code
//! (0 every sink ready, 1 one is not); each kind's [`Kind::check`] owns
//! what is proved. It reads the configuration with its secrets (a kind may
//! need a token to prove it) but never the journal, so it runs beside a
//! running daemon; and it prints findings only, which never carry a secret.
//!
//! [`Kind::check`]: crate::sink::Kind::check

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::config::{Settings, SinkSettings};
use crate::service::Health;
use crate::sink::{BuildContext, Finding, Registry};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Only this sink (its `name`).
    #[arg(long)]
    pub sink: Option<String>,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How `check` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every sink checked is ready.
    Ready,
    /// At least one is not.
    NotReady,
    /// `--sink` names no sink; holds the names there are.
    UnknownSink(Vec<String>),
}

impl Verdict {
    /// `check`'s exit code: 0, 1, or 78 (EX_CONFIG) for an unknown sink.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Ready => 0,
            Verdict::NotReady => 1,
            Verdict::UnknownSink(_) => 78,
        }
    }
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ready: bool,
    pub sinks: Vec<SinkReport>,
}

#[derive(Debug, Serialize)]
pub struct SinkReport {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ready: bool,
    pub findings: Vec<Finding>,
}

/// Checks the chosen sinks side by side and prints the report, in the
/// configuration's order.
pub async fn run(args: &CheckArgs, settings: &Settings) -> anyhow::Result<Verdict> {
    let chosen: Vec<&SinkSettings> = match &args.sink {
        Some(name) => match settings.sink(name) {
            Some(sink) => vec![sink],
            None => {
                return Ok(Verdict::UnknownSink(
                    settings.sinks.iter().map(|s| s.name.clone()).collect(),
                ));
            }
        },
        None => settings.sinks.iter().collect(),
    };
    let tls = crate::tls::client_config()?;
    // Nothing is built, so nothing beats: health that watches nothing.
    let health = Health::default();
    // All at once, each within its own `timeout`: the slowest sink sets the wait.
    let sinks = futures_util::future::join_all(chosen.into_iter().map(|sink| {
        let (tls, health) = (&tls, &health);
        async move {
            let context = BuildContext {
                name: &sink.name,
                timeout: sink.timeout,
                tls,
                health,
                // A check reads nothing from the journal (it may run beside the daemon).
                journal: None,
            };
            let findings = sink.kind.check(&context).await;
            SinkReport {
                name: sink.name.clone(),
                kind: sink.kind.type_name(),
                ready: !findings.iter().any(Finding::is_problem),
                findings,
            }
        }
    }))
    .await;
    let report = Report {
        ready: sinks.iter().all(|sink| sink.ready),
        sinks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ready {
        Verdict::Ready
    } else {
        Verdict::NotReady
    })
}

/// The text report: one block per sink, its verdict first.
pub fn render(report: &Report) -> String {
    if report.sinks.is_empty() {
        return "no sinks configured: nothing to check\n".to_owned();
    }
    let mut out = String::new();
    for sink in &report.sinks {
        let verdict = if sink.ready { "ready" } else { "NOT READY" };
        out.push_str(&format!("sink {} ({}): {verdict}\n", sink.name, sink.kind));
        for finding in &sink.findings {
            match finding {
                Finding::Proved { what } => out.push_str(&format!("  ok       {what}\n")),
                Finding::Problem { problem, fix } => {
                    out.push_str(&format!("  problem  {problem}\n"));
                    out.push_str(&format!("  fix      {fix}\n"));
                }
            }
        }
    }
    let not_ready = report.sinks.iter().filter(|sink| !sink.ready).count();
    if not_ready > 0 {
        out.push_str(&format!(
            "{not_ready} of {} sink(s) not ready\n",
            report.sinks.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(name: &str, findings: Vec<Finding>) -> SinkReport {
        SinkReport {
            name: name.to_owned(),
            kind: "http",
            ready: !findings.iter().any(Finding::is_problem),
            findings,
        }
    }

    fn check(report: Report, expected: &str) {
        assert_eq!(render(&report), expected);
    }

    #[test]
    fn renders_one_block_per_sink_with_each_fix() {
        check(
            Report {
                ready: false,
                sinks: vec![
                    sink("crm", vec![Finding::proved("connected to a:443")]),
                    sink(
                        "archive",
                        vec![
                            Finding::proved("x resolves"),
                            Finding::problem("cannot connect", "start it"),
                        ],
                    ),
                ],
            },
            "sink crm (http): ready\n  ok       connected to a:443\n\
             sink archive (http): NOT READY\n  ok       x resolves\n\
             \x20 problem  cannot connect\n  fix      start it\n\
             1 of 2 sink(s) not ready\n",
        );
        check(
            Report {
                ready: true,
                sinks: Vec::new(),
            },
            "no sinks configured: nothing to check\n",
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Verdict::Ready.exit_code(), 0);
        assert_eq!(Verdict::NotReady.exit_code(), 1);
        assert_eq!(Verdict::UnknownSink(Vec::new()).exit_code(), 78);
    }

    #[test]
    fn findings_serialize_with_their_outcome() {
        let json =
            serde_json::to_value(vec![Finding::proved("p"), Finding::problem("q", "f")]).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"outcome": "proved", "what": "p"},
                {"outcome": "problem", "problem": "q", "fix": "f"},
            ])
        );
    }
}
