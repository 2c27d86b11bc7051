//! A fake HTTP sink: a Standard Webhooks receiver on `127.0.0.1:0` that answers
//! every `POST /hook` as its script says and records what it received.
//!
//! Owns [`FakeSink`] (one constructor per behaviour: [`ok`](FakeSink::ok),
//! [`always`](FakeSink::always), [`status_sequence`](FakeSink::status_sequence),
//! [`verifying`](FakeSink::verifying), or any [`with`](FakeSink::with)), the
//! outage switch [`set_down`](FakeSink::set_down), and [`signature`], its own
//! reading of the Standard Webhooks signature. It serves the demo's stand-in
//! CRM too, so nothing on its request path panics.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request the fake sink received, with the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    pub status: u16,
    pub at: tokio::time::Instant,
}

impl Received {
    /// The body as JSON (the forwarded record).
    ///
    /// # Panics
    /// If the body is not JSON: a test helper, where that is the failure.
    pub fn record(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("sink body is JSON")
    }

    /// Whether the `webhook-signature` header is the Standard Webhooks
    /// signature of this request under `secret`.
    pub fn signed_by(&self, secret: &str) -> bool {
        self.timestamp.parse::<u64>().is_ok_and(|timestamp| {
            signature(secret, &self.webhook_id, timestamp, &self.body)
                .is_some_and(|expected| expected == self.signature)
        })
    }
}

/// What the fake sink answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
        }
    }
}

/// `behaviour(request, n)` decides the answer; `n` counts the attempts for
/// that webhook-id (1 for the first).
pub type Behaviour = Box<dyn Fn(&Received, u32) -> Reply + Send + Sync>;

/// An HTTP sink stand-in on 127.0.0.1 with a scripted behaviour. Dropping it
/// stops the server.
pub struct FakeSink {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    server: JoinHandle<()>,
}

struct FakeState {
    behaviour: Behaviour,
    received: Mutex<Vec<Received>>,
    attempts: Mutex<HashMap<String, u32>>,
    accepted: watch::Sender<usize>,
    down: AtomicBool,
}

/// The lock even if a panicking test thread poisoned it: the data is a log.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeSink {
    /// Answers 200 to everything.
    pub async fn ok() -> FakeSink {
        FakeSink::with(|_, _| Reply::status(200)).await
    }

    /// Answers these statuses to the first requests, in arrival order, then 200.
    pub async fn status_sequence(statuses: impl IntoIterator<Item = u16>) -> FakeSink {
        let script = Mutex::new(statuses.into_iter().collect::<VecDeque<u16>>());
        FakeSink::with(move |_, _| Reply::status(lock(&script).pop_front().unwrap_or(200))).await
    }

    /// Answers every request with `status`.
    pub async fn always(status: u16) -> FakeSink {
        FakeSink::with(move |_, _| Reply::status(status)).await
    }

    /// Answers 200 to requests signed with `secret` and 401 to the rest.
    pub async fn verifying(secret: &str) -> FakeSink {
        FakeSink::with(verify_signatures(secret)).await
    }

    /// `behaviour(request, n)` decides the answer; `n` counts the attempts
    /// for that webhook-id (1 for the first).
    ///
    /// # Panics
    /// If 127.0.0.1:0 cannot be bound; [`serve`](Self::serve) returns that error.
    pub async fn with(
        behaviour: impl Fn(&Received, u32) -> Reply + Send + Sync + 'static,
    ) -> FakeSink {
        FakeSink::serve(behaviour)
            .await
            .expect("a fake sink binds 127.0.0.1:0")
    }

    /// Binds `127.0.0.1:0` and serves `behaviour` (see [`with`](Self::with)).
    pub async fn serve(
        behaviour: impl Fn(&Received, u32) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<FakeSink> {
        let state = Arc::new(FakeState {
            behaviour: Box::new(behaviour),
            received: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            accepted: watch::channel(0).0,
            down: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake sink stopped");
            }
        });
        Ok(FakeSink {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The outage switch: while down, every request is answered 503 (and
    /// recorded so), whatever the script says.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::Relaxed);
    }

    /// Requests answered with 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The statuses answered so far, in arrival order.
    pub fn statuses(&self) -> Vec<u16> {
        lock(&self.state.received)
            .iter()
            .map(|r| r.status)
            .collect()
    }

    /// Waits (at most a minute of tokio time) for `n` accepted requests.
    ///
    /// # Panics
    /// When they do not come: a test helper.
    pub async fn wait_accepted(&self, n: usize) {
        self.wait_accepted_within(n, Duration::from_secs(60)).await;
    }

    /// As `wait_accepted`, with a limit in tokio time (paused-clock tests need
    /// hours of virtual time).
    pub async fn wait_accepted_within(&self, n: usize, limit: Duration) {
        let mut rx = self.state.accepted.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|count| *count >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(waited, "fake sink got {} of {n} records", *rx.borrow());
    }
}

impl Drop for FakeSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A behaviour: 200 to requests signed with `secret`, 401 to the rest.
pub fn verify_signatures(secret: &str) -> impl Fn(&Received, u32) -> Reply + Send + Sync + 'static {
    let secret = secret.to_owned();
    move |request, _| Reply::status(if request.signed_by(&secret) { 200 } else { 401 })
}

/// The Standard Webhooks signature `v1,<base64 HMAC-SHA256 over
/// "id.timestamp.body">`, keyed by the base64 after `whsec_` (or the secret's
/// bytes when it has no such prefix). `None` for a `whsec_` secret that is not
/// base64.
pub fn signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded).ok()?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = <Hmac<Sha256>>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

async fn receive(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut request = Received {
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body,
        status: 0,
        at: tokio::time::Instant::now(),
    };
    let attempt = {
        let mut attempts = lock(&state.attempts);
        let n = attempts.entry(request.webhook_id.clone()).or_default();
        *n += 1;
        *n
    };
    let reply = if state.down.load(Ordering::Relaxed) {
        Reply::status(503)
    } else {
        (state.behaviour)(&request, attempt)
    };
    request.status = reply.status;
    lock(&state.received).push(request);
    if (200..300).contains(&reply.status) {
        state.accepted.send_modify(|n| *n += 1);
    }
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(after) = reply
        .retry_after
        .and_then(|a| HeaderValue::from_str(&a).ok())
    {
        response.headers_mut().insert("retry-after", after);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signature_matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(
            signature("whsec_not base64!", "id", 1, b"").as_deref(),
            None
        );
    }
}
