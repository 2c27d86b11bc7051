//! Liveness of the daemon's main loops, for the systemd watchdog. (Which sinks
//! are failing, for the STATUS line, is kept by `telemetry::stats::Stats`.)
//!
//! Each main loop (source, journal writer, every sink worker, every file sink
//! writer, reconciler) owns a [`Heartbeat`] and `select!`s on
//! [`Heartbeat::tick`] beside its other branches, so it beats whenever it comes round its loop and while it waits
//! for something; a loop stuck inside one branch (a commit that never returns,
//! an await outside its `select!`) stops beating. Waits that are bounded by a
//! timeout and would outlast the staleness limit (a connect attempt, a token
//! request, a reconciliation pass made of timed requests) go through
//! [`Heartbeat::during`]. The [`watchdog`] task pings systemd only while every
//! registered loop beat recently. A loop that ends keeps its last beat, so a
//! loop that dies while the daemon runs on stops the pings too (at shutdown the
//! watchdog task stops first).
//!
//! Owns no policy about the loops themselves and does no I/O but through the
//! [`Notifier`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::notify::Notifier;

/// Shared by every loop of one daemon; clone freely. The default is disabled:
/// heartbeats never tick and nothing watches them (tests, `demo`, no systemd).
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// How often each loop beats; `None` when nobody watches.
    beat_every: Option<Duration>,
    origin: Option<Instant>,
    loops: Mutex<Vec<Arc<Beat>>>,
}

struct Beat {
    name: String,
    /// Milliseconds since `origin` of the last beat.
    last_ms: AtomicU64,
}

impl Health {
    /// Loops beat every `beat_every` (tokio time).
    pub fn watched(beat_every: Duration) -> Health {
        Health {
            inner: Arc::new(Inner {
                beat_every: Some(beat_every.max(Duration::from_millis(1))),
                origin: Some(Instant::now()),
                ..Inner::default()
            }),
        }
    }

    /// A heartbeat for the loop `name`, beating now. Disabled health hands out
    /// heartbeats that never tick.
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let (Some(every), Some(_)) = (self.inner.beat_every, self.inner.origin) else {
            return Heartbeat::detached();
        };
        let beat = Arc::new(Beat {
            name: name.into(),
            last_ms: AtomicU64::new(self.now_ms()),
        });
        lock(&self.inner.loops).push(beat.clone());
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat {
            beat: Some((beat, self.clone())),
            ticker: Some(ticker),
        }
    }

    /// Loops that have not beaten within `limit`, by name.
    pub fn stalled(&self, limit: Duration) -> Vec<String> {
        let now = self.now_ms();
        let limit = limit.as_millis() as u64;
        lock(&self.inner.loops)
            .iter()
            .filter(|beat| now.saturating_sub(beat.last_ms.load(Ordering::Relaxed)) > limit)
            .map(|beat| beat.name.clone())
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.inner
            .origin
            .map_or(0, |origin| origin.elapsed().as_millis() as u64)
    }
}

/// One loop's proof of life. Not `Clone`: a loop owns its heartbeat.
pub struct Heartbeat {
    beat: Option<(Arc<Beat>, Health)>,
    ticker: Option<Interval>,
}

impl Heartbeat {
    /// Watched by nobody; [`Heartbeat::tick`] never completes.
    pub fn detached() -> Heartbeat {
        Heartbeat {
            beat: None,
            ticker: None,
        }
    }

    /// Records that the loop is alive now.
    pub fn beat(&self) {
        if let Some((beat, health)) = &self.beat {
            beat.last_ms.store(health.now_ms(), Ordering::Relaxed);
        }
    }

    /// Completes every beat interval, having beaten: put it in the loop's
    /// `select!`. Cancel-safe.
    pub async fn tick(&mut self) {
        match &mut self.ticker {
            Some(ticker) => {
                ticker.tick().await;
                self.beat();
            }
            None => std::future::pending().await,
        }
    }

    /// Runs `work` and beats while it runs. Only for work bounded by its own
    /// timeouts: a wait that could last forever must go through the loop's
    /// `select!` instead, so that it stops the beats.
    pub async fn during<F: Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => {
                    self.beat();
                    return output;
                }
                _ = self.tick() => {}
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pings systemd every `interval / 2` while every loop beat within the last
/// `interval / 2`, until `stop` fires. Logs once when a loop stalls (the pings
/// stop, so systemd restarts the daemon when `interval` has passed) and once if
/// it recovers before that.
pub async fn watchdog(
    health: Health,
    notifier: Notifier,
    interval: Duration,
    stop: CancellationToken,
) {
    let half = interval / 2;
    let mut ticker = tokio::time::interval(half);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stalled_before: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stalled = health.stalled(half);
        if stalled.is_empty() {
            notifier.watchdog();
            if !stalled_before.is_empty() {
                tracing::info!(loops = %stalled_before.join(","), "stalled loops are running again; watchdog pings resumed");
            }
        } else if stalled != stalled_before {
            tracing::error!(
                loops = %stalled.join(","),
                watchdog = %humantime::format_duration(interval),
                "main loop stalled; withholding watchdog pings, so systemd restarts the daemon unless it recovers"
            );
        }
        stalled_before = stalled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// Every datagram received so far.
    fn drain(socket: &UnixDatagram) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }

    /// A loop that beats in its `select!` until told to wedge, then awaits
    /// forever outside it, the way a loop stuck in a commit would.
    async fn worker(mut heartbeat: Heartbeat, wedge: CancellationToken) {
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {}
                _ = wedge.cancelled() => break,
            }
        }
        std::future::pending::<()>().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_loop_stops_the_watchdog_pings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap()).unwrap();

        let interval = Duration::from_secs(30);
        let health = Health::watched(interval / 4);
        let (healthy, wedged) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn(worker(health.register("source"), healthy.clone()));
        tokio::spawn(worker(health.register("sink crm"), wedged.clone()));
        let stop = CancellationToken::new();
        let dog = tokio::spawn(watchdog(health.clone(), notifier, interval, stop.clone()));

        // Healthy: a ping every 15 s (the first one at once).
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(drain(&listener).len(), 5);
        assert!(health.stalled(interval / 2).is_empty());

        // One loop wedges: within 15 s the pings stop, for good.
        wedged.cancel();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let late = drain(&listener);
        assert!(late.len() <= 1, "{late:?}");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(drain(&listener), Vec::<String>::new());
        assert_eq!(health.stalled(interval / 2), ["sink crm"]);

        stop.cancel();
        dog.await.unwrap();
        healthy.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_waits_beat_and_disabled_health_never_ticks() {
        let health = Health::watched(Duration::from_secs(1));
        let mut heartbeat = health.register("reconciler");
        let answer = heartbeat
            .during(async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                7
            })
            .await;
        assert_eq!(answer, 7);
        assert!(health.stalled(Duration::from_secs(2)).is_empty());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(health.stalled(Duration::from_secs(2)), ["reconciler"]);

        let mut detached = Health::default().register("source");
        let ticked = tokio::time::timeout(Duration::from_secs(3600), detached.tick()).await;
        assert!(ticked.is_err(), "a detached heartbeat ticked");
    }
}
