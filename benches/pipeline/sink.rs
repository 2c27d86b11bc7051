//! A loopback HTTP sink for the benchmark: answers 2xx, 503, or nothing at all
//! (a paused sink), and notes when each record was first accepted.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Answer {
    Ok = 0,
    /// Reads the request, never answers: the daemon's requests hang until
    /// their timeout, so the sink worker sits idle with its window full.
    Stall = 2,
}

#[derive(Default)]
struct Seen {
    /// Indexed by the record's number: when it was first answered 2xx.
    at: Vec<Option<Instant>>,
    unique: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Shared {
    answer: AtomicU8,
    seen: Mutex<Seen>,
}

pub struct Sink {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// What the sink saw so far.
pub struct Deliveries {
    pub unique: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Sink {
    pub async fn start(answer: Answer) -> Sink {
        let shared = Arc::new(Shared {
            answer: AtomicU8::new(answer as u8),
            seen: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            url,
            shared,
            server,
        }
    }

    pub fn deliveries(&self) -> Deliveries {
        let seen = self.shared.seen.lock().expect("sink lock");
        Deliveries {
            unique: seen.unique,
            first: seen.first,
            last: seen.last,
        }
    }

    /// When record `n` was first accepted, if it was.
    pub fn accepted_at(&self, n: usize) -> Option<Instant> {
        let seen = self.shared.seen.lock().expect("sink lock");
        seen.at.get(n).copied().flatten()
    }

    /// Waits until `n` distinct records were accepted, or nothing new came for
    /// `quiet`; returns the count reached.
    pub async fn wait_unique(&self, n: u64, quiet: std::time::Duration) -> u64 {
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
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `recording_completed:rec-000000000123` (or `…~2`) → 123.
pub fn number(webhook_id: &str) -> Option<usize> {
    let digits = webhook_id.split("rec-").nth(1)?;
    digits.split('~').next()?.parse().ok()
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> StatusCode {
    let now = Instant::now();
    match shared.answer.load(Ordering::Relaxed) {
        0 => {}
        _ => std::future::pending::<()>().await,
    }
    let n = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(number);
    let mut seen = shared.seen.lock().expect("sink lock");
    if let Some(n) = n {
        if seen.at.len() <= n {
            seen.at.resize(n + 1, None);
        }
        if seen.at[n].is_none() {
            seen.at[n] = Some(now);
            seen.unique += 1;
            seen.first.get_or_insert(now);
            seen.last = Some(now);
        }
    }
    StatusCode::OK
}
