//! The nats sink's far end for the benchmark: a real `nats-server` with
//! JetStream on loopback (`zcc_sim::sink::nats::NatsServer`), the stream the
//! sink publishes into, and a plain subscriber on its subjects that notes when
//! each record first reached the server — the same moment the HTTP [`Sink`]
//! notes (the request arrived), so the two sinks' figures compare.
//!
//! [`Sink`]: crate::sink::Sink

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use zcc_sim::sink::nats::NatsServer;

use crate::sink::{Deliveries, number};

pub const STREAM: &str = "ZCC";

#[derive(Default)]
struct Seen {
    at: Vec<Option<Instant>>,
    unique: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

pub struct Bus {
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    reader: tokio::task::JoinHandle<()>,
    _server: NatsServer,
    _dir: tempfile::TempDir,
}

impl Bus {
    /// A fresh server storing under `base`, the stream (`zcc.>`, file storage,
    /// one replica, 2 h dedup window) and the subscriber. `None` when
    /// `nats-server` is not installed (`.ci/run` installs Debian's package).
    pub async fn start(base: &std::path::Path) -> Option<Bus> {
        zcc_sim::sink::nats::version().ok()?;
        let dir = tempfile::tempdir_in(base).expect("temp dir");
        let server = NatsServer::start(&dir.path().join("nats")).expect("nats-server starts");
        let client = async_nats::connect(server.url()).await.expect("connect");
        jetstream::new(client.clone())
            .create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["zcc.>".to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(7200),
                ..Default::default()
            })
            .await
            .expect("create stream");
        let mut subscriber = client.subscribe("zcc.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = tokio::spawn({
            let seen = seen.clone();
            async move {
                let _client = client;
                while let Some(message) = subscriber.next().await {
                    let now = Instant::now();
                    let n = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .and_then(|id| number(id.as_str()));
                    let Some(n) = n else { continue };
                    let mut seen = seen.lock().expect("bus lock");
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
            }
        });
        Some(Bus {
            url: server.url(),
            seen,
            reader,
            _server: server,
            _dir: dir,
        })
    }

    pub fn deliveries(&self) -> Deliveries {
        let seen = self.seen.lock().expect("bus lock");
        Deliveries {
            unique: seen.unique,
            first: seen.first,
            last: seen.last,
        }
    }

    pub fn accepted_at(&self, n: usize) -> Option<Instant> {
        self.seen
            .lock()
            .expect("bus lock")
            .at
            .get(n)
            .copied()
            .flatten()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
