//! The pipeline in this process, wired by `zcc_relay::app::run` exactly as the
//! daemon wires it: the simulator's WebSocket → source → journal → sink worker
//! → HTTP sink on loopback, or the nats sink → a loopback JetStream
//! (`bus`). Used where the benchmark needs the daemon's own counters (records
//! committed) or one clock for both ends (latency).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zcc_relay::telemetry::stats::Stats;
use zcc_sim::{SimConfig, Simulator};

use crate::bus::Bus;
use crate::events;
use crate::sink::{Answer, Deliveries, Sink};

/// What the daemon under test delivers to.
pub enum Target {
    /// The loopback HTTP sink, answering as told.
    Http(Answer),
    /// A nats sink publishing to this JetStream.
    Nats(Box<Bus>),
}

/// The far end of the pipeline: where records are seen arriving.
pub enum Receiver {
    Http(Sink),
    Nats(Box<Bus>),
}

impl Receiver {
    pub fn deliveries(&self) -> Deliveries {
        match self {
            Receiver::Http(sink) => sink.deliveries(),
            Receiver::Nats(bus) => bus.deliveries(),
        }
    }

    pub fn accepted_at(&self, n: usize) -> Option<Instant> {
        match self {
            Receiver::Http(sink) => sink.accepted_at(n),
            Receiver::Nats(bus) => bus.accepted_at(n),
        }
    }

    /// Waits until `n` distinct records arrived, or nothing new came for
    /// `quiet`; returns the count reached.
    pub async fn wait_unique(&self, n: u64, quiet: Duration) -> u64 {
        let mut last = (0, Instant::now());
        loop {
            let got = self.deliveries().unique;
            if got >= n {
                return got;
            }
            if got != last.0 {
                last = (got, Instant::now());
            } else if last.1.elapsed() >= quiet {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

pub struct Pipeline {
    pub sim: Arc<Simulator>,
    pub sink: Receiver,
    pub stats: Stats,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    /// A fresh journal, simulator and sink; returns once the socket is live.
    pub async fn start(base: &Path, target: Target) -> Pipeline {
        let sim = Arc::new(
            Simulator::start(SimConfig::default())
                .await
                .expect("simulator"),
        );
        let dir = tempfile::tempdir_in(base).expect("temp dir");
        let journal = dir.path().join("journal");
        let (sink, text) = match target {
            Target::Http(answer) => {
                let sink = Sink::start(answer).await;
                let text = crate::config_text(&sim, &journal, &sink.url, "warn");
                (Receiver::Http(sink), text)
            }
            Target::Nats(bus) => {
                let text = crate::nats_config_text(&sim, &journal, &bus.url);
                (Receiver::Nats(bus), text)
            }
        };
        let settings = zcc_relay::config::parse(&text, &zcc_relay::config::FakeEnvironment::new())
            .unwrap_or_else(|e| panic!("benchmark config is invalid:\n{e}"))
            .settings;
        let stats = Stats::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(zcc_relay::app::run(settings, stats.clone(), async {
            let _ = stopped.await;
        }));
        tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
            .await
            .expect("the daemon connected to the simulator");
        Pipeline {
            sim,
            sink,
            stats,
            stop,
            task,
            _dir: dir,
        }
    }

    pub fn committed(&self) -> u64 {
        self.stats
            .snapshot()
            .by_event
            .values()
            .map(|c| c.persisted + c.duplicates)
            .sum()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("daemon failed: {e:#}"),
            Err(e) => panic!("daemon task failed: {e}"),
        }
        if let Ok(sim) = Arc::try_unwrap(self.sim) {
            sim.shutdown().await;
        }
    }
}

/// Sends events `0..n` through the simulator's socket as fast as it takes
/// them, on a thread of its own; once the last one was handed over, returns
/// the moment the first one was.
async fn emit_all(sim: &Arc<Simulator>, n: usize) -> Instant {
    let frames: Vec<_> = (0..n).map(events::frame).collect();
    let sim = Arc::clone(sim);
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        for frame in frames {
            assert!(sim.send_raw_text(frame), "the socket went down mid-run");
        }
    })
    .await
    .expect("emitter");
    started
}

/// Frames → committed with the sink paused (it never answers): records/s.
pub async fn ingest(base: &Path, n: usize) -> f64 {
    let pipeline = Pipeline::start(base, Target::Http(Answer::Stall)).await;
    let started = emit_all(&pipeline.sim, n).await;
    while pipeline.committed() < n as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {n} committed after 120 s",
            pipeline.committed()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    pipeline.stop().await;
    rate
}

/// Frames → accepted by the sink (HTTP 2xx, or reached the JetStream server): records/s.
pub async fn end_to_end(base: &Path, n: usize, target: Target) -> f64 {
    let pipeline = Pipeline::start(base, target).await;
    let started = emit_all(&pipeline.sim, n).await;
    let got = pipeline
        .sink
        .wait_unique(n as u64, Duration::from_secs(30))
        .await;
    assert_eq!(got, n as u64, "the sink got {got} of {n}");
    let last = pipeline.sink.deliveries().last.expect("deliveries");
    let rate = n as f64 / (last - started).as_secs_f64();
    pipeline.stop().await;
    rate
}

pub struct Latency {
    pub rate: u32,
    pub emitted: usize,
    pub delivered: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// The rate the emitter actually achieved.
    pub offered: f64,
}

/// Offers `rate` events/s for `seconds`, each timestamped as the simulator
/// sends its frame; latency is until the sink answered 2xx (one clock: both
/// ends live in this process).
pub async fn latency(base: &Path, rate: u32, seconds: f64, target: Target) -> Latency {
    let pipeline = Pipeline::start(base, target).await;
    let n = (rate as f64 * seconds).round() as usize;
    let frames: Vec<_> = (0..n).map(events::frame).collect();
    let sim = Arc::clone(&pipeline.sim);
    let (sent, first, last) = tokio::task::spawn_blocking(move || {
        let mut sent = Vec::with_capacity(n);
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        for (i, frame) in frames.into_iter().enumerate() {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let at = Instant::now();
            assert!(sim.send_raw_text(frame), "the socket went down mid-run");
            sent.push(at);
        }
        let (first, last) = (sent[0], *sent.last().expect("events"));
        (sent, first, last)
    })
    .await
    .expect("emitter");
    let delivered = pipeline
        .sink
        .wait_unique(n as u64, Duration::from_secs(15))
        .await as usize;
    let latencies: Vec<Duration> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, at)| Some(pipeline.sink.accepted_at(i)?.saturating_duration_since(*at)))
        .collect();
    let [p50, p99, max] = crate::percentiles(latencies);
    let result = Latency {
        rate,
        emitted: n,
        delivered,
        p50,
        p99,
        max,
        offered: (n - 1) as f64 / (last - first).as_secs_f64().max(1e-9),
    };
    pipeline.stop().await;
    result
}
