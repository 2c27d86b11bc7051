//! The pipeline benchmark: issue 9's seven measurements in one run, printed as
//! one table with each target beside its figure.
//!
//! `cargo bench --bench pipeline` (a few minutes); `-- --quick` for the smoke
//! run CI makes (seconds). Journals and scratch files go under
//! `$ZCC_BENCH_DIR` (default: the system temp dir) — point it at the file
//! system the journal will live on.
//!
//! What runs where:
//! - disk: `Journal::submit` alone, raw append + `fdatasync` in the journal's
//!   batch sizes, and one `fdatasync` per record, on the same file system;
//! - ingest, end to end, latency: the daemon's own wiring (`app::run`) in this
//!   process against the built-in simulator's WebSocket and a loopback HTTP
//!   sink, so the daemon's counters and one clock serve both ends;
//! - footprint, recovery, reconnect: the release binary (`zcc-relay run`) as a
//!   child process, measured through `/proc`, with simulator and sink here.
//!
//! Every comparison is made inside this run; repeated figures are medians.
//! `-- --only ITEM[,ITEM]` runs some of them: disk, ingest, e2e, latency,
//! idle (idle footprint and reconnect), backlog, recovery, salesforce (a
//! backlog drained into the fake org, ours beside one upsert per artefact),
//! nats (the HTTP sink and the nats sink to a loopback JetStream, back to
//! back; skipped when `nats-server` is not installed). `-- --cold-cache`
//! drops the page cache before the restart of the recovery item (root only).

mod bus;
mod disk;
mod events;
mod inproc;
mod process;
mod salesforce;
mod sink;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zcc_sim::Simulator;

/// A config for the daemon under test: the simulator's endpoints, shipped
/// defaults for the socket, reconciliation and the sink (8 in flight, 10 s
/// timeout, signed requests), media off (the benchmark's recordings have no
/// files behind them).
pub fn config_text(sim: &Simulator, journal: &Path, sink_url: &str, log_level: &str) -> String {
    let sink = format!(
        r#"
[[sinks]]
name = "crm"
type = "http"
url = "{sink_url}"
secret = "whsec_dGVzdC1zaW5rLXNlY3JldC0xMjM0NTY3ODkw"
"#
    );
    config_with_sink(sim, journal, &sink, log_level)
}

/// The same with a nats sink publishing to `bus::STREAM` on `server_url`
/// (shipped defaults otherwise: 8 in flight, 10 s timeout).
pub fn nats_config_text(sim: &Simulator, journal: &Path, server_url: &str) -> String {
    let sink = format!(
        r#"
[[sinks]]
name = "bus"
type = "nats"
servers = ["{server_url}"]
stream = "{stream}"
subject = "zcc.{{account_id}}.{{event}}"
"#,
        stream = bus::STREAM
    );
    config_with_sink(sim, journal, &sink, "warn")
}

fn config_with_sink(sim: &Simulator, journal: &Path, sink: &str, log_level: &str) -> String {
    let config = sim.config();
    format!(
        r#"
[zoom]
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
subscription_id = "{subscription}"
oauth_url = "{oauth}"
api_base_url = "{api}"
websocket_url = "{ws}"

[daemon]
log_level = "{log_level}"

[journal]
dir = "{journal}"

[media]
enabled = false
{sink}"#,
        account = config.account_id,
        client = config.client_id,
        secret = config.client_secret,
        subscription = config.subscription_id,
        oauth = sim.oauth_url(),
        api = sim.api_base_url(),
        ws = sim.websocket_url(),
        journal = journal.display(),
    )
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// p50, p99 and max (nearest rank); zeros for no values.
pub fn percentiles(mut values: Vec<Duration>) -> [Duration; 3] {
    values.sort();
    let pick = |q: f64| {
        values
            .get(((values.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    [
        pick(0.50),
        pick(0.99),
        values.last().copied().unwrap_or_default(),
    ]
}

struct Plan {
    disk: (usize, usize, usize),
    ingest: (usize, usize),
    end_to_end: (usize, usize),
    latency: [(u32, f64); 3],
    idle_seconds: f64,
    drops: usize,
    backlog: [usize; 3],
    backlog_window: Duration,
    recovery: usize,
    /// Engagements in the Salesforce backlog; whether ours also drains at
    /// the default budget for real (minutes).
    salesforce: (usize, bool),
    /// The sinks side by side: records for the throughput run, then the
    /// latency run's rate and seconds.
    sinks: (usize, u32, f64),
}

const FULL: Plan = Plan {
    disk: (50_000, 5, 2_000),
    ingest: (100_000, 3),
    end_to_end: (30_000, 3),
    latency: [(100, 20.0), (1_000, 20.0), (10_000, 10.0)],
    idle_seconds: 60.0,
    drops: 20,
    backlog: [1_000, 10_000, 100_000],
    backlog_window: Duration::from_secs(4),
    recovery: 100_000,
    salesforce: (1_000, true),
    sinks: (30_000, 1_000, 20.0),
};

const QUICK: Plan = Plan {
    disk: (5_000, 1, 200),
    ingest: (5_000, 1),
    end_to_end: (2_000, 1),
    latency: [(100, 1.0), (1_000, 1.0), (10_000, 0.3)],
    idle_seconds: 2.0,
    drops: 3,
    // The two larger backlogs are past the journal's 8 MiB page cache
    // (~6,000 records), where the verdict means something.
    backlog: [1_000, 20_000, 40_000],
    backlog_window: Duration::from_secs(1),
    recovery: 5_000,
    salesforce: (40, false),
    sinks: (2_000, 1_000, 1.0),
};

const ITEMS: [&str; 9] = [
    "disk",
    "ingest",
    "e2e",
    "latency",
    "idle",
    "backlog",
    "recovery",
    "salesforce",
    "nats",
];

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| ITEMS.iter().map(|s| s.to_string()).collect());
    if let Some(bad) = only.iter().find(|i| !ITEMS.contains(&i.as_str())) {
        eprintln!(
            "--only: unknown item {bad:?}; one or more of {}",
            ITEMS.join(",")
        );
        std::process::exit(2);
    }
    let plan = if quick { QUICK } else { FULL };
    let base: PathBuf = std::env::var_os("ZCC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let began = Instant::now();
    let cold = args.iter().any(|a| a == "--cold-cache");
    let figures = runtime.block_on(measure(&plan, &base, &only, cold));
    println!(
        "zcc-relay pipeline benchmark ({} mode, {:.0} s), scratch in {}",
        if quick { "quick" } else { "full" },
        began.elapsed().as_secs_f64(),
        base.display()
    );
    report(&plan, &figures);
}

#[derive(Default)]
struct Figures {
    disk: Option<disk::DiskFigures>,
    ingest: Option<f64>,
    e2e: Option<f64>,
    latency: Vec<inproc::Latency>,
    idle: Option<(process::Idle, process::Reconnect)>,
    backlog: Vec<(usize, u64)>,
    recovery: Option<process::Recovery>,
    /// (ours, baseline) at the fastest budget; ours at the default budget.
    salesforce: Option<(
        salesforce::Drain,
        salesforce::Drain,
        Option<salesforce::Drain>,
    )>,
    sinks: Option<SideBySide>,
}

/// The HTTP sink and the nats sink measured back to back in one run.
struct SideBySide {
    http_rate: f64,
    http_latency: inproc::Latency,
    /// `None` when `nats-server` is not installed.
    nats: Option<(f64, inproc::Latency, String)>,
}

async fn measure(plan: &Plan, base: &Path, only: &[String], cold: bool) -> Figures {
    let want = |item: &str| only.iter().any(|i| i == item);
    let began = Instant::now();
    let section = |name: &str| eprintln!("[{:>6.1} s] {name}", began.elapsed().as_secs_f64());
    let mut figures = Figures::default();
    if want("disk") {
        section("disk: journal alone, raw fdatasync batched and per record");
        let (n, rounds, per_record) = plan.disk;
        figures.disk = Some(disk::run(base, n, rounds, per_record).await);
    }
    if want("ingest") {
        section("ingest: frames -> committed, sink paused");
        let mut rates = Vec::new();
        for _ in 0..plan.ingest.1 {
            rates.push(inproc::ingest(base, plan.ingest.0).await);
        }
        figures.ingest = Some(median(rates));
    }
    if want("e2e") {
        section("end to end: frames -> HTTP sink 2xx");
        let mut rates = Vec::new();
        for _ in 0..plan.end_to_end.1 {
            rates.push(
                inproc::end_to_end(
                    base,
                    plan.end_to_end.0,
                    inproc::Target::Http(sink::Answer::Ok),
                )
                .await,
            );
        }
        figures.e2e = Some(median(rates));
    }
    if want("latency") {
        for (rate, seconds) in plan.latency {
            section(&format!("latency at {rate} ev/s"));
            figures.latency.push(
                inproc::latency(base, rate, seconds, inproc::Target::Http(sink::Answer::Ok)).await,
            );
        }
    }
    if want("idle") {
        section("footprint: idle, then reconnects");
        figures.idle = Some(process::idle_and_reconnect(base, plan.idle_seconds, plan.drops).await);
    }
    if want("backlog") {
        for n in plan.backlog {
            section(&format!("footprint: {n} pending for a dead sink"));
            figures
                .backlog
                .push((n, process::backlog_rss(base, n, plan.backlog_window).await));
        }
    }
    if want("recovery") {
        section("recovery after kill -9");
        figures.recovery = Some(process::recovery(base, plan.recovery, cold).await);
    }
    if want("salesforce") {
        let (n, real) = plan.salesforce;
        section(&format!("salesforce: {n} engagements' backlog, ours"));
        let ours = salesforce::drain(base, n, salesforce::FASTEST, false).await;
        section(&format!(
            "salesforce: {n} engagements' backlog, one upsert per artefact"
        ));
        let baseline = salesforce::drain(base, n, salesforce::FASTEST, true).await;
        let at_default = if real {
            section("salesforce: ours at the default budget");
            Some(salesforce::drain(base, n, salesforce::DEFAULT_BUDGET, false).await)
        } else {
            None
        };
        figures.salesforce = Some((ours, baseline, at_default));
    }
    if want("nats") {
        let (n, rate, seconds) = plan.sinks;
        section("sinks side by side: HTTP, then nats (loopback JetStream)");
        let http = inproc::Target::Http(sink::Answer::Ok);
        let http_rate = inproc::end_to_end(base, n, http).await;
        let http = inproc::Target::Http(sink::Answer::Ok);
        let http_latency = inproc::latency(base, rate, seconds, http).await;
        let nats = match bus::Bus::start(base).await {
            Some(bus) => {
                let version = zcc_sim::sink::nats::version().unwrap_or_default();
                let nats_rate =
                    inproc::end_to_end(base, n, inproc::Target::Nats(Box::new(bus))).await;
                let bus = bus::Bus::start(base).await.expect("nats-server");
                let nats_latency =
                    inproc::latency(base, rate, seconds, inproc::Target::Nats(Box::new(bus))).await;
                Some((nats_rate, nats_latency, version))
            }
            None => {
                eprintln!("nats-server is not installed: the nats rows are skipped");
                None
            }
        };
        figures.sinks = Some(SideBySide {
            http_rate,
            http_latency,
            nats,
        });
    }
    section("done");
    figures
}

fn report(plan: &Plan, f: &Figures) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!("{:<66} {:>24}", "measurement", "figure");
    let row = |what: String, figure: String| println!("{what:<66} {figure:>24}");
    if let Some(ingest) = f.ingest {
        row(
            format!(
                "1. durable ingest, frames -> committed, sink paused ({} x{})",
                plan.ingest.0, plan.ingest.1
            ),
            format!("{ingest:.0} rec/s"),
        );
    }
    if let Some(e2e) = f.e2e {
        row(
            format!(
                "1. end to end, frames -> HTTP sink 2xx ({} x{})",
                plan.end_to_end.0, plan.end_to_end.1
            ),
            format!("{e2e:.0} rec/s"),
        );
    }
    if let Some(disk) = &f.disk {
        row(
            format!(
                "2. journal alone, Journal::submit ({} x{}, {} B records)",
                disk.records, disk.rounds, disk.bytes
            ),
            format!("{:.0} rec/s", disk.journal),
        );
        row(
            format!(
                "2. raw append + fdatasync, batches of {} (journal's commits)",
                disk.batch
            ),
            format!("{:.0} rec/s", disk.raw),
        );
        row(
            "2. raw append + fdatasync per record".into(),
            format!("{:.0} rec/s", disk.per_record),
        );
        let [p50, p99, max] = disk.sync_latency;
        row(
            "2. one fdatasync (per-record run): p50 / p99 / max".into(),
            format!(
                "{:.2} / {:.2} / {:.1} ms",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ),
        );
        if let Some(ingest) = f.ingest {
            row(
                "2. ratio: durable ingest / raw batched".into(),
                format!("{:.3}", ingest / disk.raw),
            );
        }
        row(
            "2. ratio: journal alone / raw batched".into(),
            format!("{:.3}", disk.journal / disk.raw),
        );
        row(
            "2. ratio: journal alone / one fdatasync per record".into(),
            format!("{:.1}x", disk.journal / disk.per_record),
        );
    }
    for l in &f.latency {
        row(
            format!(
                "4. latency at {} ev/s ({} events, offered {:.0}/s): p50 / p99",
                l.rate, l.emitted, l.offered
            ),
            format!("{} / {}", ms(l.p50), ms(l.p99)),
        );
        row(
            format!("4. latency at {} ev/s: max; lost", l.rate),
            format!("{}; {}", ms(l.max), l.emitted - l.delivered),
        );
    }
    if let Some((idle, reconnect)) = &f.idle {
        row(
            format!(
                "5. idle RSS (peak over {:.0} s, socket live, {} heartbeat(s))",
                idle.seconds, idle.heartbeats
            ),
            format!("{:.1} MiB", mib(idle.rss_kib)),
        );
        row(
            format!("5. idle CPU over {:.0} s", idle.seconds),
            format!("{:.3} %", idle.cpu_percent),
        );
        row(
            format!(
                "7. reconnect, drop -> live (median of {}; min {}, max {})",
                reconnect.drops,
                ms(reconnect.min),
                ms(reconnect.max)
            ),
            ms(reconnect.median),
        );
    }
    for (n, rss) in &f.backlog {
        row(
            format!("5. peak RSS, {n} records pending for a dead sink"),
            format!("{:.1} MiB", mib(*rss)),
        );
    }
    if let Some(r) = &f.recovery {
        row(
            format!(
                "6. kill -9 with {} pending ({:.0} MiB journal{}): spawn -> 1st delivery",
                r.pending,
                r.journal_mib,
                if r.cold { ", cold cache" } else { "" }
            ),
            ms(r.first_delivery),
        );
        row(
            format!(
                "6. drain rate after the restart{}",
                if r.all_delivered {
                    ""
                } else {
                    " (NOT all delivered)"
                }
            ),
            format!("{:.0} rec/s", r.drain_rate),
        );
    }
    if let Some(sinks) = &f.sinks {
        let (n, rate, _) = plan.sinks;
        row(
            format!("8. HTTP sink: end to end, frames -> 2xx ({n})"),
            format!("{:.0} rec/s", sinks.http_rate),
        );
        let l = &sinks.http_latency;
        row(
            format!("8. HTTP sink: latency at {rate} ev/s: p50 / p99 / max"),
            format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)),
        );
        match &sinks.nats {
            Some((nats_rate, l, version)) => {
                row(
                    format!("8. nats sink: end to end, frames -> JetStream ({n})"),
                    format!("{nats_rate:.0} rec/s"),
                );
                row(
                    format!("8. nats sink: latency at {rate} ev/s: p50 / p99 / max"),
                    format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)),
                );
                row(
                    format!("8. nats sink: lost at {rate} ev/s; server"),
                    format!("{}; {version}", l.emitted - l.delivered),
                );
            }
            None => row("8. nats sink".into(), "nats-server not installed".into()),
        }
    }

    if let Some((ours, baseline, at_default)) = &f.salesforce {
        salesforce::report(ours, baseline, at_default.as_ref());
    }

    println!();
    println!("{:<48} {:>18} {:>8}", "target", "measured", "");
    let target = |what: &str, figure: String, met: bool| {
        println!(
            "{what:<48} {figure:>18} {:>8}",
            if met { "met" } else { "MISSED" }
        );
    };
    if let Some(ingest) = f.ingest {
        target(
            "durable ingest >= 50,000 rec/s",
            format!("{ingest:.0}"),
            ingest >= 50_000.0,
        );
        if let Some(disk) = &f.disk {
            target(
                "durable ingest >= 0.5 x raw batched",
                format!("{:.3}", ingest / disk.raw),
                ingest / disk.raw >= 0.5,
            );
        }
    }
    if let Some(l) = f.latency.iter().find(|l| l.rate == 1_000) {
        target(
            "end-to-end p99 <= 10 ms at 1,000 ev/s",
            ms(l.p99),
            l.p99 <= Duration::from_millis(10),
        );
    }
    if let Some(l) = f.latency.iter().find(|l| l.rate == 10_000) {
        target(
            "no loss at 10,000 ev/s",
            format!("{} lost", l.emitted - l.delivered),
            l.emitted == l.delivered,
        );
    }
    if let Some((idle, _)) = &f.idle {
        target(
            "idle RSS <= 20 MiB",
            format!("{:.1} MiB", mib(idle.rss_kib)),
            idle.rss_kib <= 20 * 1024,
        );
        target(
            "idle CPU <= 0.2 %",
            format!("{:.3} %", idle.cpu_percent),
            idle.cpu_percent <= 0.2,
        );
    }
    if let [.., (_, middle), (_, largest)] = f.backlog[..] {
        // Independent of size: the largest backlog costs under 1 MiB more
        // than the middle one (ten times smaller in the full run).
        // (Below the journal's 8 MiB page cache RSS rises until it is full.)
        let growth = largest as f64 - middle as f64;
        target(
            "backlog RSS independent of size (< +1 MiB)",
            format!("{:+.1} MiB", growth / 1024.0),
            growth < 1024.0,
        );
    }
    if let Some((ours, _, _)) = &f.salesforce {
        let per = ours.task_writes() as f64 / ours.engagements as f64;
        target(
            "Salesforce Task writes <= 1 per 25 engagements",
            format!("1 per {:.0}", 1.0 / per),
            per <= 1.0 / 25.0,
        );
    }
    if let Some(SideBySide {
        nats: Some((_, l, _)),
        ..
    }) = &f.sinks
    {
        target(
            "nats sink p99 <= 10 ms at 1,000 ev/s",
            ms(l.p99),
            l.p99 <= Duration::from_millis(10),
        );
    }
    if let Some(r) = &f.recovery {
        target(
            "first delivery <= 1 s after restart",
            ms(r.first_delivery),
            r.first_delivery <= Duration::from_secs(1),
        );
    }
}
