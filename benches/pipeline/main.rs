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

mod disk;
mod events;
mod inproc;
mod process;
mod sink;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zcc_relay::sim::Simulator;

/// A config for the daemon under test: the simulator's endpoints, shipped
/// defaults for the socket, reconciliation and the sink (8 in flight, 10 s
/// timeout, signed requests), media off (the benchmark's recordings have no
/// files behind them).
pub fn config_text(sim: &Simulator, journal: &Path, sink_url: &str, log_level: &str) -> String {
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

[[sinks]]
name = "crm"
type = "http"
url = "{sink_url}"
secret = "whsec_dGVzdC1zaW5rLXNlY3JldC0xMjM0NTY3ODkw"
"#,
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

struct Plan {
    disk: (usize, usize, usize),
    ingest: (usize, usize),
    end_to_end: (usize, usize),
    latency: [(u32, f64); 3],
    idle_seconds: f64,
    drops: usize,
    backlog: (usize, usize, Duration),
    recovery: usize,
}

const FULL: Plan = Plan {
    disk: (50_000, 5, 2_000),
    ingest: (100_000, 3),
    end_to_end: (30_000, 3),
    latency: [(100, 20.0), (1_000, 20.0), (10_000, 10.0)],
    idle_seconds: 60.0,
    drops: 20,
    backlog: (1_000, 100_000, Duration::from_secs(4)),
    recovery: 100_000,
};

const QUICK: Plan = Plan {
    disk: (5_000, 1, 200),
    ingest: (5_000, 1),
    end_to_end: (2_000, 1),
    latency: [(100, 1.0), (1_000, 1.0), (10_000, 0.5)],
    idle_seconds: 3.0,
    drops: 3,
    backlog: (1_000, 10_000, Duration::from_secs(2)),
    recovery: 5_000,
};

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick { QUICK } else { FULL };
    let base: PathBuf = std::env::var_os("ZCC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let began = Instant::now();
    runtime.block_on(run(&plan, &base, quick));
    println!(
        "\n({} mode, {:.0} s in all)",
        if quick { "quick" } else { "full" },
        began.elapsed().as_secs_f64()
    );
}

async fn run(plan: &Plan, base: &Path, quick: bool) {
    let section = |name: &str| eprintln!("-- {name}");

    section("disk: journal alone, raw fdatasync batched and per record");
    let (n, rounds, per_record) = plan.disk;
    let disk = disk::run(base, n, rounds, per_record).await;

    section("ingest: frames -> committed, sink paused");
    let mut ingest = Vec::new();
    for _ in 0..plan.ingest.1 {
        ingest.push(inproc::ingest(base, plan.ingest.0).await);
    }
    let ingest = median(ingest);

    section("end to end: frames -> HTTP sink 2xx");
    let mut e2e = Vec::new();
    for _ in 0..plan.end_to_end.1 {
        e2e.push(inproc::end_to_end(base, plan.end_to_end.0).await);
    }
    let e2e = median(e2e);

    section("latency at offered rates");
    let mut latencies = Vec::new();
    for (rate, seconds) in plan.latency {
        latencies.push(inproc::latency(base, rate, seconds).await);
    }

    section("footprint: idle, then reconnects");
    let (idle, reconnect) = process::idle_and_reconnect(base, plan.idle_seconds, plan.drops).await;

    section("footprint: backlog for a dead sink");
    let (small_n, large_n, window) = plan.backlog;
    let small_rss = process::backlog_rss(base, small_n, window).await;
    let large_rss = process::backlog_rss(base, large_n, window).await;

    section("recovery after kill -9");
    let recovery = process::recovery(base, plan.recovery).await;

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "zcc-relay pipeline benchmark ({} mode), scratch in {}",
        if quick { "quick" } else { "full" },
        base.display()
    );
    println!();
    println!("{:<64} {:>22}", "measurement", "figure");
    let row = |what: String, figure: String| println!("{what:<64} {figure:>22}");
    row(
        format!(
            "1. durable ingest, frames -> committed, sink paused ({} x{})",
            plan.ingest.0, plan.ingest.1
        ),
        format!("{ingest:.0} rec/s"),
    );
    row(
        format!(
            "1. end to end, frames -> HTTP sink 2xx ({} x{})",
            plan.end_to_end.0, plan.end_to_end.1
        ),
        format!("{e2e:.0} rec/s"),
    );
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
    row(
        "2. ratio: ingest / raw batched".into(),
        format!("{:.3}", ingest / disk.raw),
    );
    row(
        "2. ratio: journal alone / raw batched".into(),
        format!("{:.3}", disk.journal / disk.raw),
    );
    row(
        "2. ratio: group commit / sync per record (journal alone)".into(),
        format!("{:.1}x", disk.journal / disk.per_record),
    );
    for l in &latencies {
        row(
            format!(
                "4. latency at {} ev/s (offered {:.0}, {} events): p50 / p99",
                l.rate, l.offered, l.emitted
            ),
            format!("{} / {}", ms(l.p50), ms(l.p99)),
        );
        row(
            format!("4. latency at {} ev/s: max, lost", l.rate),
            format!("{}, {}", ms(l.max), l.emitted - l.delivered),
        );
    }
    row(
        format!(
            "5. idle RSS (peak over {:.0} s, socket live, {} heartbeats)",
            idle.seconds, idle.heartbeats
        ),
        format!("{:.1} MiB", mib(idle.rss_kib)),
    );
    row(
        format!("5. idle CPU over {:.0} s", idle.seconds),
        format!("{:.3} %", idle.cpu_percent),
    );
    row(
        format!("5. peak RSS, {small_n} pending for a dead sink"),
        format!("{:.1} MiB", mib(small_rss)),
    );
    row(
        format!("5. peak RSS, {large_n} pending for a dead sink"),
        format!("{:.1} MiB", mib(large_rss)),
    );
    row(
        format!(
            "6. recovery: {} pending ({:.0} MiB journal), spawn -> first delivery",
            recovery.pending, recovery.journal_mib
        ),
        ms(recovery.first_delivery),
    );
    row(
        format!(
            "6. recovery: drain rate{}",
            if recovery.all_delivered {
                ""
            } else {
                " (NOT all delivered)"
            }
        ),
        format!("{:.0} rec/s", recovery.drain_rate),
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

    println!();
    println!("{:<48} {:>18} {:>8}", "target", "measured", "");
    let target = |what: &str, figure: String, met: bool| {
        println!("{what:<48} {figure:>18} {:>8}", verdict(met));
    };
    target(
        "durable ingest >= 50,000 rec/s",
        format!("{ingest:.0}"),
        ingest >= 50_000.0,
    );
    target(
        "durable ingest >= 0.5 x raw batched",
        format!("{:.3}", ingest / disk.raw),
        ingest / disk.raw >= 0.5,
    );
    let at_1000 = &latencies[1];
    target(
        "end-to-end p99 <= 10 ms at 1,000 ev/s",
        ms(at_1000.p99),
        at_1000.p99 <= Duration::from_millis(10),
    );
    let at_10000 = &latencies[2];
    target(
        "no loss at 10,000 ev/s",
        format!("{} lost", at_10000.emitted - at_10000.delivered),
        at_10000.emitted == at_10000.delivered,
    );
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
    // "Independent of backlog size": a 100x larger backlog costs less than
    // 10 % (or 2 MiB) more.
    let growth = large_rss as f64 - small_rss as f64;
    target(
        "backlog RSS independent of backlog size",
        format!("{:+.1} MiB", growth / 1024.0),
        growth <= (small_rss as f64 * 0.10).max(2048.0),
    );
    target(
        "first delivery <= 1 s after restart",
        ms(recovery.first_delivery),
        recovery.first_delivery <= Duration::from_secs(1),
    );
}
