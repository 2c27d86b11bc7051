//! `zcc-relay queue`: the operator's view of the journal's outboxes and
//! dead-letters, and the two ways to act on a dead-letter (redrive, purge).
//!
//! Owns the subcommands' arguments, what each one reads and how it is shown
//! (aligned text, or one JSON document with `--json`). How the journal is
//! opened (owned, or read-only beside a running daemon) is `view`'s; what
//! `stats` reports is the [`Overview`] that `status` shows too. Reads go
//! through `journal::read`, changes through `Journal`'s own operations: this
//! module never opens a table and never writes beside a running daemon.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use redb::ReadTransaction;
use serde::Serialize;

use super::overview::{BACKLOG_COLUMNS, Overview, SinkLine};
use super::table::{Align, Table, age, size};
use super::view::{Mode, Owned, View};
use crate::clock::{self, since};
use crate::config::Settings;
use crate::journal::{self, read};
use crate::record::RecordHeader;

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
    /// The configuration file (its journal directory and sinks are used).
    #[arg(long, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print one JSON document instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Per sink: pending, retrying and dead-lettered records and the age of the
    /// oldest pending one; records held and the journal's size.
    Stats,
    /// Pending records, oldest first (or the dead-letter, with --dead).
    List {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// List dead-lettered records instead (as `queue dead` does).
        #[arg(long)]
        dead: bool,
        /// At most this many records per sink.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Dead-lettered records with the reason, last HTTP status and attempts.
    Dead {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// At most this many records per sink.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Move dead-lettered records back into the sink's outbox for a fresh set of
    /// attempts. zcc-relay must be stopped.
    Redrive {
        /// The sink, as named in the configuration.
        #[arg(long)]
        sink: String,
        #[command(flatten)]
        target: RedriveTarget,
    },
    /// Delete a sink's dead-letter. zcc-relay must be stopped.
    Purge {
        /// The sink, as named in the configuration.
        #[arg(long)]
        sink: String,
        /// What to purge: the dead-letter (the only choice, and required).
        #[arg(long, required = true)]
        dead: bool,
        /// Really delete; without it, only say what would be deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead-lettered records `redrive` moves: one or all.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RedriveTarget {
    /// The record's id as listed (`key`, or `key~N` for revision N), or its seq.
    #[arg(long)]
    id: Option<String>,
    /// Every dead-lettered record of the sink.
    #[arg(long)]
    all: bool,
}

/// Runs one `queue` subcommand and prints its report on stdout. Errors are for
/// a human (exit status 1).
pub fn run(args: &QueueArgs, settings: &Settings) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let json = args.json;
    let out = match &args.command {
        QueueCommand::Stats => stats(settings, json, now)?,
        QueueCommand::List {
            sink,
            dead: false,
            limit,
        } => list(settings, sink.as_deref(), *limit, json, now)?,
        QueueCommand::List {
            sink,
            dead: true,
            limit,
        }
        | QueueCommand::Dead { sink, limit } => dead(settings, sink.as_deref(), *limit, json, now)?,
        QueueCommand::Redrive { sink, target } => {
            redrive(settings, sink, target.id.as_deref(), json)?
        }
        QueueCommand::Purge { sink, yes, .. } => purge(settings, sink, *yes, json)?,
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `queue list | head` is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn to_json(report: &impl Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(report).context("cannot serialize the report")?;
    text.push('\n');
    Ok(text)
}

/// Checks `sink` is configured; the error lists the ones that are.
fn configured(settings: &Settings, sink: &str) -> anyhow::Result<()> {
    if settings.sink(sink).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = settings.sinks.iter().map(|s| s.name.as_str()).collect();
    bail!(
        "unknown sink {sink:?}; configured sinks: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// The sinks a listing covers: the one asked for, or every configured one.
fn selected(settings: &Settings, sink: Option<&str>) -> anyhow::Result<Vec<String>> {
    match sink {
        Some(name) => {
            configured(settings, name)?;
            Ok(vec![name.to_string()])
        }
        None => Ok(settings.sinks.iter().map(|s| s.name.clone()).collect()),
    }
}

/// What a listing shows of a stored record.
struct Summary {
    /// The id as sinks see it in `webhook-id`: `key`, or `key~N` for revision N.
    id: String,
    event: String,
    received_at: Option<String>,
}

fn summarize(bytes: &[u8]) -> Summary {
    #[derive(serde::Deserialize)]
    struct Received {
        received_at: String,
    }
    let header = serde_json::from_slice::<RecordHeader>(bytes).ok();
    Summary {
        id: header
            .as_ref()
            .map_or_else(|| "?".to_string(), RecordHeader::webhook_id),
        event: header.map_or_else(|| "?".to_string(), |h| h.event.into_owned()),
        received_at: serde_json::from_slice::<Received>(bytes)
            .ok()
            .map(|r| r.received_at),
    }
}

fn or_dash(text: Option<String>) -> String {
    text.unwrap_or_else(|| "-".to_string())
}

// ---- stats ----------------------------------------------------------------

fn stats(settings: &Settings, json: bool, now: jiff::Timestamp) -> anyhow::Result<String> {
    let view = View::open(settings)?;
    let report = Overview::gather(&view, settings, now)?;
    if json {
        return to_json(&report);
    }
    let journal = &report.journal;
    let mut out = format!(
        "{}\njournal {}: {} records held, {} {}\n\n",
        view.describe(),
        journal.dir.display(),
        journal.records,
        journal::DB_FILE,
        size(journal.file_bytes)
    );
    let table = |lines: &mut dyn Iterator<Item = &SinkLine>| {
        let mut table = Table::new(&BACKLOG_COLUMNS);
        for line in lines {
            table.row(line.backlog.cells(&line.sink));
        }
        table.render(0)
    };
    out.push_str(&table(&mut report.sinks.iter().filter(|s| s.configured)));
    if report.sinks.iter().any(|s| !s.configured) {
        out.push_str(
            "\nno longer configured, still holding records (kept until configured again):\n",
        );
        out.push_str(&table(&mut report.sinks.iter().filter(|s| !s.configured)));
    }
    if let Some(media) = &report.media {
        out.push_str(
            "\nmedia stage (records waiting for their files before they reach the sinks):\n",
        );
        let mut table = Table::new(&BACKLOG_COLUMNS);
        table.row(media.cells(journal::MEDIA));
        out.push_str(&table.render(0));
    }
    if !journal.quarantined.is_empty() {
        out.push_str(
            "\ncorrupt journal files moved aside (what was readable was salvaged; see the log):\n",
        );
        for path in &journal.quarantined {
            out.push_str(&format!("  {}\n", path.display()));
        }
    }
    Ok(out)
}

// ---- list -----------------------------------------------------------------

#[derive(Serialize)]
struct ListReport {
    #[serde(flatten)]
    mode: Mode,
    sinks: Vec<SinkPending>,
}

#[derive(Serialize)]
struct SinkPending {
    sink: String,
    /// All pending records of the sink; `records` holds at most `--limit`.
    pending: u64,
    records: Vec<PendingLine>,
}

#[derive(Serialize)]
struct PendingLine {
    seq: u64,
    id: String,
    event: String,
    /// Failed attempts so far.
    attempts: u32,
    /// Set when the record waits in the durable retry tier.
    next_attempt_at: Option<String>,
    received_at: Option<String>,
    age_seconds: Option<u64>,
}

fn list(
    settings: &Settings,
    sink: Option<&str>,
    limit: usize,
    json: bool,
    now: jiff::Timestamp,
) -> anyhow::Result<String> {
    let sinks = selected(settings, sink)?;
    let view = View::open(settings)?;
    let txn = view.begin_read()?;
    let mut report = ListReport {
        mode: view.mode(),
        sinks: Vec::new(),
    };
    for sink in sinks {
        let pending = read::sink_stats(&txn, &sink)?.pending;
        let records = read::list_pending(&txn, &sink, limit)?
            .into_iter()
            .map(|p| {
                let summary = summarize(&p.bytes);
                PendingLine {
                    seq: p.seq,
                    id: summary.id,
                    event: summary.event,
                    attempts: p.attempts,
                    next_attempt_at: (p.not_before_ms != 0)
                        .then(|| clock::timestamp(p.not_before_ms))
                        .flatten()
                        .map(clock::rfc3339_ms),
                    age_seconds: summary
                        .received_at
                        .as_deref()
                        .and_then(|at| since(now, at))
                        .map(|a| a.as_secs()),
                    received_at: summary.received_at,
                }
            })
            .collect();
        report.sinks.push(SinkPending {
            sink,
            pending,
            records,
        });
    }
    if json {
        return to_json(&report);
    }
    let mut out = format!("{}\n", view.describe());
    for sink in &report.sinks {
        out.push('\n');
        if sink.pending == 0 {
            out.push_str(&format!("{}: nothing pending\n", sink.sink));
            continue;
        }
        out.push_str(&format!(
            "{}: {} pending{}\n",
            sink.sink,
            sink.pending,
            shown(sink.records.len(), sink.pending)
        ));
        let mut table = Table::new(&[
            ("SEQ", Align::Right),
            ("ID", Align::Left),
            ("EVENT", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("NEXT ATTEMPT", Align::Left),
            ("AGE", Align::Left),
        ]);
        for record in &sink.records {
            let next = record.next_attempt_at.as_deref().map(|at| {
                match at.parse::<jiff::Timestamp>().ok().filter(|at| *at > now) {
                    Some(at) => format!(
                        "in {}",
                        age(Duration::try_from(at.duration_since(now)).unwrap_or_default())
                    ),
                    None => "due".to_string(),
                }
            });
            table.row(vec![
                record.seq.to_string(),
                record.id.clone(),
                record.event.clone(),
                record.attempts.to_string(),
                or_dash(next),
                or_dash(record.age_seconds.map(|s| age(Duration::from_secs(s)))),
            ]);
        }
        out.push_str(&table.render(2));
    }
    Ok(out)
}

fn shown(shown: usize, total: u64) -> String {
    if (shown as u64) < total {
        format!(", showing the first {shown} (--limit)")
    } else {
        String::new()
    }
}

// ---- dead -----------------------------------------------------------------

#[derive(Serialize)]
struct DeadReport {
    #[serde(flatten)]
    mode: Mode,
    sinks: Vec<SinkDead>,
}

#[derive(Serialize)]
struct SinkDead {
    sink: String,
    /// All dead-lettered records of the sink; `records` holds at most `--limit`.
    dead: u64,
    records: Vec<DeadLine>,
}

#[derive(Serialize)]
struct DeadLine {
    seq: u64,
    id: String,
    event: String,
    reason: String,
    /// The last HTTP status, when there was one.
    status: Option<u16>,
    /// The vendor's error code, when it gave one.
    code: Option<String>,
    attempts: u32,
    /// When it was dead-lettered.
    at: String,
    received_at: Option<String>,
}

fn dead(
    settings: &Settings,
    sink: Option<&str>,
    limit: usize,
    json: bool,
    now: jiff::Timestamp,
) -> anyhow::Result<String> {
    let sinks = selected(settings, sink)?;
    let view = View::open(settings)?;
    let txn = view.begin_read()?;
    let mut report = DeadReport {
        mode: view.mode(),
        sinks: Vec::new(),
    };
    for sink in sinks {
        let dead = read::sink_stats(&txn, &sink)?.dead;
        let records = read::list_dead(&txn, &sink, limit)?
            .into_iter()
            .map(|d| {
                let summary = summarize(&d.bytes);
                DeadLine {
                    seq: d.seq,
                    id: summary.id,
                    event: summary.event,
                    reason: d.letter.reason,
                    status: d.letter.status,
                    code: d.letter.code,
                    attempts: d.letter.attempts,
                    at: crate::clock::rfc3339_ms(d.letter.at),
                    received_at: summary.received_at,
                }
            })
            .collect();
        report.sinks.push(SinkDead {
            sink,
            dead,
            records,
        });
    }
    if json {
        return to_json(&report);
    }
    let mut out = format!("{}\n", view.describe());
    for sink in &report.sinks {
        out.push('\n');
        if sink.dead == 0 {
            out.push_str(&format!("{}: dead-letter is empty\n", sink.sink));
            continue;
        }
        out.push_str(&format!(
            "{}: {} dead-lettered{}\n",
            sink.sink,
            sink.dead,
            shown(sink.records.len(), sink.dead)
        ));
        let mut table = Table::new(&[
            ("SEQ", Align::Right),
            ("ID", Align::Left),
            ("EVENT", Align::Left),
            ("ATTEMPTS", Align::Right),
            ("STATUS", Align::Right),
            ("CODE", Align::Left),
            ("WHEN", Align::Left),
            ("REASON", Align::Left),
        ]);
        for record in &sink.records {
            table.row(vec![
                record.seq.to_string(),
                record.id.clone(),
                record.event.clone(),
                record.attempts.to_string(),
                or_dash(record.status.map(|s| s.to_string())),
                or_dash(record.code.clone()),
                or_dash(since(now, &record.at).map(|a| format!("{} ago", age(a)))),
                record.reason.clone(),
            ]);
        }
        out.push_str(&table.render(2));
        out.push_str(&format!(
            "  retry them with zcc-relay stopped: zcc-relay queue redrive --sink {} --all (or --id ID)\n",
            sink.sink
        ));
    }
    Ok(out)
}

// ---- redrive and purge ----------------------------------------------------

#[derive(Serialize)]
struct Changed {
    #[serde(flatten)]
    mode: Mode,
    sink: String,
    /// Records moved back to the outbox (redrive) or deleted (purge).
    #[serde(skip_serializing_if = "Option::is_none")]
    moved: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purged: Option<u64>,
}

fn redrive(
    settings: &Settings,
    sink: &str,
    id: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    configured(settings, sink)?;
    let owned = Owned::open_to_change(settings)?;
    let seq = match id {
        None => None,
        Some(wanted) => {
            let txn = owned.begin_read()?;
            Some(resolve_dead(&txn, sink, wanted)?)
        }
    };
    let moved = owned.redrive(sink, seq)?;
    drop(owned);
    if json {
        return to_json(&Changed {
            mode: Mode::exclusive(),
            sink: sink.to_string(),
            moved: Some(moved),
            purged: None,
        });
    }
    Ok(match (moved, id) {
        (0, _) => format!("sink {sink} has no dead-lettered records; nothing to redrive\n"),
        (_, Some(id)) => format!(
            "moved {id} of sink {sink} from its dead-letter back to its outbox; zcc-relay delivers it when it starts\n"
        ),
        (n, None) => format!(
            "moved {n} record(s) of sink {sink} from its dead-letter back to its outbox; zcc-relay delivers them when it starts\n"
        ),
    })
}

/// The seq of the sink's dead-lettered record that `wanted` names.
fn resolve_dead(txn: &ReadTransaction, sink: &str, wanted: &str) -> anyhow::Result<u64> {
    let dead: Vec<(u64, String)> = read::list_dead(txn, sink, usize::MAX)?
        .into_iter()
        .map(|d| (d.seq, summarize(&d.bytes).id))
        .collect();
    find_dead(&dead, wanted).map_err(|message| anyhow::anyhow!("{message} in sink {sink}"))
}

/// Finds `wanted` among dead-lettered `(seq, id as shown)`: a number is a seq,
/// anything else an id exactly as listed (`key`, or `key~N` for revision N).
fn find_dead(dead: &[(u64, String)], wanted: &str) -> Result<u64, String> {
    if let Ok(seq) = wanted.parse::<u64>() {
        return dead
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(s, _)| *s)
            .ok_or_else(|| format!("no dead-lettered record with seq {seq}"));
    }
    if let Some((seq, _)) = dead.iter().find(|(_, id)| id == wanted) {
        return Ok(*seq);
    }
    let revisions: Vec<&str> = dead
        .iter()
        .map(|(_, id)| id.as_str())
        .filter(|id| id.strip_prefix(wanted).is_some_and(|r| r.starts_with('~')))
        .collect();
    if revisions.is_empty() {
        Err(format!("no dead-lettered record {wanted:?}"))
    } else {
        Err(format!(
            "no dead-lettered record {wanted:?} (revision 1); dead-lettered revisions of it: {}",
            revisions.join(", ")
        ))
    }
}

fn purge(settings: &Settings, sink: &str, yes: bool, json: bool) -> anyhow::Result<String> {
    configured(settings, sink)?;
    let owned = Owned::open_to_change(settings)?;
    let dead = read::sink_stats(&owned.begin_read()?, sink)?.dead;
    if dead > 0 && !yes {
        bail!(
            "this would delete {dead} dead-lettered record(s) of sink {sink} for good; \
             run it again with --yes to delete them"
        );
    }
    let purged = if dead > 0 { owned.purge_dead(sink)? } else { 0 };
    drop(owned);
    if json {
        return to_json(&Changed {
            mode: Mode::exclusive(),
            sink: sink.to_string(),
            moved: None,
            purged: Some(purged),
        });
    }
    Ok(if purged == 0 {
        format!("sink {sink} has no dead-lettered records; nothing to delete\n")
    } else {
        format!("deleted {purged} dead-lettered record(s) of sink {sink}\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(wanted: &str, expected: Result<u64, &str>) {
        let dead = vec![
            (3, "recording_completed:r3".to_string()),
            (7, "engagement_note_added:e1:n1~2".to_string()),
            (9, "engagement_note_added:e1:n1~3".to_string()),
        ];
        assert_eq!(
            find_dead(&dead, wanted),
            expected.map_err(str::to_string),
            "{wanted}"
        );
    }

    #[test]
    fn redrive_ids_name_a_record_as_listed_or_by_seq() {
        check("recording_completed:r3", Ok(3));
        check("engagement_note_added:e1:n1~3", Ok(9));
        check("7", Ok(7));
        check("8", Err("no dead-lettered record with seq 8"));
        check(
            "recording_completed:r4",
            Err("no dead-lettered record \"recording_completed:r4\""),
        );
        check(
            "engagement_note_added:e1:n1",
            Err(
                "no dead-lettered record \"engagement_note_added:e1:n1\" (revision 1); \
                 dead-lettered revisions of it: engagement_note_added:e1:n1~2, engagement_note_added:e1:n1~3",
            ),
        );
    }
}
