//! The operator kit against the daemon: every series the Grafana dashboard
//! (`contrib/grafana/zcc-relay.json`) and the alert rules
//! (`contrib/prometheus/zcc-relay-alerts.yml`) ask for is in a real scrape of
//! the real binary after real traffic, so a renamed series fails here instead
//! of blanking a panel or silencing an alert. The names come from parsing the
//! PromQL expressions themselves; nothing here lists them.
//!
//! Also: every dashboard expression is valid PromQL (`promtool check rules`
//! parses them; Debian's `prometheus` package, which `.ci/run` installs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use zcc_relay::clock;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

const DASHBOARD: &str = include_str!("../../contrib/grafana/zcc-relay.json");
const ALERTS: &str = include_str!("../../contrib/prometheus/zcc-relay-alerts.yml");

/// Labels Prometheus attaches to every series of a target when it scrapes
/// it: the daemon does not export them, so matchers on them are not checked.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// What an expression reads: metric names, and per name the label names its
/// matchers use.
#[derive(Debug, Default)]
struct Uses {
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Uses {
    fn add(&mut self, other: Uses) {
        for (name, labels) in other.series {
            self.series.entry(name).or_default().extend(labels);
        }
    }
}

const KEYWORDS: [&str; 10] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "group_left",
    "group_right",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal that starts at `at`.
fn skip_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut i = at + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    assert!(
        i < chars.len(),
        "unterminated string in {:?}",
        as_text(chars)
    );
    i + 1
}

/// The index just past the bracket that closes the one at `at`.
fn skip_group(chars: &[char], at: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = at;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced {open}{close} in {:?}", as_text(chars));
}

fn as_text(chars: &[char]) -> String {
    chars.iter().collect()
}

fn next_non_space(chars: &[char], from: usize) -> Option<char> {
    chars[from..].iter().copied().find(|c| !c.is_whitespace())
}

/// The identifier after `from` (past spaces), if one follows.
fn next_word(chars: &[char], from: usize) -> Option<String> {
    let start = from
        + chars[from..]
            .iter()
            .take_while(|c| c.is_whitespace())
            .count();
    let len = chars[start..].iter().take_while(|c| is_ident(**c)).count();
    (len > 0 && is_ident_start(chars[start])).then(|| as_text(&chars[start..start + len]))
}

/// The label names of a matcher list `{a="x", b=~"y"}` (starting at `{`),
/// and a metric name given as `__name__="…"`.
fn matchers(chars: &[char], at: usize, end: usize) -> (BTreeSet<String>, Option<String>) {
    let inner = as_text(&chars[at + 1..end - 1]);
    let mut labels = BTreeSet::new();
    let mut name = None;
    let inner: Vec<char> = inner.chars().collect();
    let mut i = 0;
    while i < inner.len() {
        if is_ident_start(inner[i]) {
            let start = i;
            while i < inner.len() && is_ident(inner[i]) {
                i += 1;
            }
            let label = as_text(&inner[start..i]);
            // The operator, then the quoted value.
            while i < inner.len() && !matches!(inner[i], '"' | '\'' | '`') {
                assert!(
                    inner[i].is_whitespace() || matches!(inner[i], '=' | '!' | '~'),
                    "cannot read the matchers {:?}",
                    as_text(&inner)
                );
                i += 1;
            }
            let value_end = skip_string(&inner, i);
            if label == "__name__" {
                name = Some(as_text(&inner[i + 1..value_end - 1]));
            } else {
                labels.insert(label);
            }
            i = value_end;
        } else {
            assert!(
                inner[i].is_whitespace() || inner[i] == ',',
                "cannot read the matchers {:?}",
                as_text(&inner)
            );
            i += 1;
        }
    }
    (labels, name)
}

/// The series a PromQL expression reads. Grafana's `$variables` are allowed
/// (in strings and as `[$__rate_interval]`).
fn promql_uses(expr: &str) -> Uses {
    let chars: Vec<char> = expr.chars().collect();
    let mut uses = Uses::default();
    let mut last_metric: Option<(String, usize)> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '[' {
            // A range or a subquery's resolution: durations and variables.
            i = skip_group(&chars, i, '[', ']');
        } else if c == '{' {
            let end = skip_group(&chars, i, '{', '}');
            let (labels, by_name) = matchers(&chars, i, end);
            let name = match (by_name, &last_metric) {
                (Some(name), _) => name,
                // `name{…}`: the matchers follow the name directly.
                (None, Some((name, name_end)))
                    if chars[*name_end..i].iter().all(|c| c.is_whitespace()) =>
                {
                    name.clone()
                }
                (None, _) => panic!("a selector without a metric name in {expr:?}"),
            };
            uses.series.entry(name).or_default().extend(labels);
            last_metric = None;
            i = end;
        } else if c == '$' {
            // A Grafana variable outside a string: `$name` or `${name}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`0.95`, `300`, `1e3`, `5m`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word = as_text(&chars[start..i]);
            let next = next_non_space(&chars, i);
            if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                let open = i + chars[i..].iter().position(|c| *c == '(').unwrap();
                i = skip_group(&chars, open, '(', ')');
            } else if next == Some('(')
                || KEYWORDS.contains(&word.as_str())
                || matches!(next_word(&chars, i).as_deref(), Some("by" | "without"))
            {
                // A function or an aggregation (`sum by (…) (…)` too); its
                // arguments follow.
            } else {
                uses.series.entry(word.clone()).or_default();
                last_metric = Some((word, i));
            }
        } else {
            // Operators, parentheses, commas.
            i += 1;
        }
    }
    uses
}

/// Grafana's `label_values(selector, label)`: the selector's series, and the
/// label among those its values are read from.
fn label_values_uses(query: &str) -> Uses {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a template query that is not label_values(…): {query:?}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a label: {query:?}"));
    let mut uses = promql_uses(selector);
    assert_eq!(uses.series.len(), 1, "one series in {query:?}");
    for labels in uses.series.values_mut() {
        labels.insert(label.trim().to_string());
    }
    uses
}

/// Every PromQL expression of the dashboard: panel targets (in rows too) and
/// template variable queries.
fn dashboard_uses() -> (Vec<String>, Uses) {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    fn walk(value: &serde_json::Value, exprs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                for (key, inner) in map {
                    if key != "templating" {
                        walk(inner, exprs);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    let mut uses = Uses::default();
    for expr in &exprs {
        let found = promql_uses(expr);
        assert!(!found.series.is_empty(), "no series in {expr:?}");
        uses.add(found);
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("a query variable's query");
        uses.add(label_values_uses(query));
    }
    (exprs, uses)
}

/// The `expr:` of every rule in the rules file (plain or block scalars),
/// comment lines left out.
fn alert_exprs() -> Vec<String> {
    let lines: Vec<&str> = ALERTS.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let mut block = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push(next.trim());
                i += 1;
            }
            exprs.push(block.join(" "));
        } else {
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            exprs.push(value.to_string());
        }
    }
    let alerts = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "one expr per alert: {exprs:#?}");
    exprs
}

/// A sample's name and label names.
fn scrape_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in zcc_relay::telemetry::metrics::parse(text) {
        series
            .entry(sample.name)
            .or_default()
            .extend(sample.labels.into_keys());
    }
    series
}

/// What `uses` asks for that `scrape` does not have: missing series, and
/// label names no sample of the series carries.
fn missing(uses: &Uses, scrape: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, labels) in &uses.series {
        match scrape.get(name) {
            None => missing.push(format!("series {name}")),
            Some(exported) => {
                for label in labels {
                    if !exported.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                        missing.push(format!("label {label} on {name}"));
                    }
                }
            }
        }
    }
    missing
}

fn sum_of(scrape: &str, name: &str) -> f64 {
    zcc_relay::telemetry::metrics::parse(scrape)
        .into_iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[test]
fn expressions_are_parsed_into_series_and_labels() {
    let uses = promql_uses(
        r#"histogram_quantile(0.95, sum by (sink, le) (rate(a_bucket{instance=~"$instance", sink=~"$sink"}[$__rate_interval]))) / on (sink) group_left b_count offset 5m > bool 2 * c + 300 unless {__name__="d", x="1"}"#,
    );
    let found: Vec<(&str, Vec<&str>)> = uses
        .series
        .iter()
        .map(|(name, labels)| (name.as_str(), labels.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        found,
        [
            ("a_bucket", vec!["instance", "sink"]),
            ("b_count", vec![]),
            ("c", vec![]),
            ("d", vec!["x"]),
        ]
    );
    let uses = label_values_uses(r#"label_values(e{instance=~"$instance"}, sink)"#);
    assert_eq!(
        uses.series["e"].iter().collect::<Vec<_>>(),
        ["instance", "sink"]
    );
}

/// The dashboard's expressions are PromQL that Prometheus parses (Grafana's
/// `$__rate_interval` as the range Grafana puts there).
#[test]
fn dashboard_expressions_are_valid_promql() {
    let (exprs, _) = dashboard_uses();
    let dir = temp_dir();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m");
        let quoted = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let output = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool must be installed (apt-get install prometheus; .ci/run does)");
    assert!(
        output.status.success(),
        "promtool check rules:\n{}{}\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_and_the_alerts_use_is_exported() {
    let (_, mut uses) = dashboard_uses();
    let dashboard_series = uses.series.len();
    for expr in alert_exprs() {
        let found = promql_uses(&expr);
        assert!(!found.series.is_empty(), "no series in {expr:?}");
        uses.add(found);
    }
    assert!(
        dashboard_series >= 20 && uses.series.len() >= dashboard_series,
        "the parser found too little: {:?}",
        uses.series.keys()
    );

    // Real traffic through the real binary: a record only reconciliation
    // finds, live ones, a sink that delivers and one that refuses, media on,
    // and `[standby]` with a lease in a real nats-server (the pair's series).
    let dir = temp_dir();
    let nats = zcc_sim::sink::nats::NatsServer::start(&dir.path().join("nats")).unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.emit_without_socket(recording_event("only-rest", clock::now_ms()));
    let crm = FakeSink::ok().await;
    let refuses = FakeSink::always(400).await;
    let mut config = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::http("crm", &crm.url()))
        .sink(SinkTable::http("refuses", &refuses.url()));
    config.metrics = Some(MetricsTable::any_port());
    config.media = Some(MediaTable::enabled());
    config.standby = Some(crate::harness::config::StandbyTable {
        lease_servers: vec![nats.url()],
        bucket: None,
        ttl: None,
    });
    let path = config.write(&dir.path().join("config.toml"));
    let log = dir.path().join("run.log");
    let child = spawn_run(&path, "info", &log);
    let addr = metrics_addr_in(&log).await;
    sim.wait_live().await;
    let scrape = scrape_after_traffic(&sim, addr, &log).await;

    let exported = scrape_series(&scrape);
    let missing = missing(&uses, &exported);
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts use what the daemon does not export:\n  {}\nexported: {:?}",
        missing.join("\n  "),
        exported.keys()
    );

    sigterm(&child);
    let output = wait_output(child).await;
    assert!(output.status.success(), "{}", read(&log));
    sim.shutdown().await;
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Emits live events once the first sweep has run (found the REST-only
/// record), then scrapes until both sinks have settled them: delivered to
/// `crm`, dead-lettered by `refuses`, and the journal gauges caught up.
async fn scrape_after_traffic(sim: &Simulator, addr: std::net::SocketAddr, log: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut emitted = false;
    loop {
        let (status, _, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let reconciled = sum_of(&body, "zcc_relay_reconcile_new_records_total");
        if !emitted && reconciled >= 1.0 {
            let now = clock::now_ms();
            assert!(sim.emit(recording_event("live-1", now)));
            assert!(sim.emit(recording_event("live-1", now)), "a duplicate");
            emitted = true;
        }
        if emitted
            && sum_of(&body, "zcc_relay_sink_delivered_total") >= 2.0
            && sum_of(&body, "zcc_relay_sink_dead_lettered_total") >= 2.0
            && sum_of(&body, "zcc_relay_sink_dead_records") >= 2.0
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no traffic settled within 60 s:\n{body}\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
