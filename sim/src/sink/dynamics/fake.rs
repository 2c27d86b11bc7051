//! [`DynamicsFake`]: a running fake Dataverse environment (with its Entra ID
//! token endpoint) on `127.0.0.1:0`, its fault switches (usable while it
//! runs) and the views of its state that tests assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::org::{AlternateKey, Contact, Environment};
use super::server::{self, Shared};
use super::store::{RequestCounts, Store};

/// A fake Dataverse environment serving the Web API over HTTP on loopback;
/// the same address serves Entra ID's token endpoint (the `authority_url`).
pub struct DynamicsFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// An annotation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnnotation {
    pub id: String,
    pub subject: String,
    pub notetext: String,
    pub filename: Option<String>,
    pub mimetype: Option<String>,
    /// `documentbody` decoded.
    pub bytes: Option<Vec<u8>>,
}

impl DynamicsFake {
    /// Binds `127.0.0.1:0` and serves `env` until [`DynamicsFake::stop`] or drop.
    pub async fn start(env: Environment) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(env, format!("http://{addr}"))),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            let _ = serve.await;
        });
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The environment's URL (`org_url`), also the token's audience.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Entra ID's authority (`authority_url`): the same server.
    pub fn authority_url(&self) -> String {
        self.url()
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url(), self.tenant_id())
    }

    pub fn tenant_id(&self) -> String {
        self.shared.lock().env.tenant_id.clone()
    }

    pub fn client_id(&self) -> String {
        self.shared.lock().env.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.shared.lock().env.client_secret.clone()
    }

    /// The application user's id (`WhoAmI`'s `UserId`).
    pub fn user_id(&self) -> String {
        self.shared.lock().user_id.clone()
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    // ---------------------------------------------------------- fault switches

    /// The next `n` Web API requests answer 503.
    pub fn unavailable_for_next(&self, n: u32) {
        self.shared.lock().faults.unavailable_next = n;
    }

    /// The next `n` authenticated Web API requests answer 429 `0x80072322`
    /// with `Retry-After: retry_after` (whole seconds).
    pub fn throttle_next(&self, n: u32, retry_after: Duration) {
        let mut store = self.shared.lock();
        store.faults.throttle_next = n;
        store.faults.throttle_retry_after = retry_after.as_secs();
    }

    /// Every issued token expires now: the next call answers 401.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Lifetime of tokens issued from now on (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().env.token_lifetime = lifetime.as_secs();
    }

    /// The phonecall table's alternate key (None: there is none).
    pub fn set_key(&self, key: Option<AlternateKey>) {
        self.shared.lock().env.key = key;
    }

    /// `organization.maxuploadfilesize`.
    pub fn set_max_upload(&self, bytes: u64) {
        self.shared.lock().env.max_upload = bytes;
    }

    /// Deletes an annotation, as a CRM user may.
    pub fn delete_annotation(&self, id: &str) {
        let mut store = self.shared.lock();
        store.data.annotations.remove(id);
        store.data.bodies.remove(id);
    }

    /// Deletes a phonecall and, as Dataverse does, the notes on it, as a
    /// CRM user may.
    pub fn delete_phonecall(&self, id: &str) {
        let mut store = self.shared.lock();
        store.data.phonecalls.remove(id);
        let on: Vec<String> = store
            .data
            .annotations
            .iter()
            .filter(|(_, r)| r.get("_objectid_value").and_then(Value::as_str) == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for annotation in on {
            store.data.annotations.remove(&annotation);
            store.data.bodies.remove(&annotation);
        }
    }

    pub fn add_contact(&self, contact: Contact) -> String {
        self.shared.lock().add_contact(&contact)
    }

    // ---------------------------------------------------------- state views

    pub fn request_counts(&self) -> RequestCounts {
        self.shared.lock().counts.clone()
    }

    /// Every phonecall's columns (`parties` holds the activity parties).
    pub fn phonecalls(&self) -> Vec<Map<String, Value>> {
        self.shared
            .lock()
            .data
            .phonecalls
            .values()
            .cloned()
            .collect()
    }

    /// The phonecalls whose key column holds `value`.
    pub fn phonecalls_with_key(&self, value: &str) -> Vec<Map<String, Value>> {
        let store = self.shared.lock();
        let Some(column) = store.env.key.as_ref().map(|k| k.column.clone()) else {
            return Vec::new();
        };
        store
            .data
            .phonecalls
            .values()
            .filter(|r| r.get(&column).and_then(Value::as_str) == Some(value))
            .cloned()
            .collect()
    }

    /// The annotations regarding the phonecall `activity_id`.
    pub fn annotations_on(&self, activity_id: &str) -> Vec<StoredAnnotation> {
        let text =
            |r: &Map<String, Value>, f: &str| r.get(f).and_then(Value::as_str).map(str::to_owned);
        let store = self.shared.lock();
        store
            .data
            .annotations
            .values()
            .filter(|r| r.get("_objectid_value").and_then(Value::as_str) == Some(activity_id))
            .map(|r| StoredAnnotation {
                id: text(r, "annotationid").unwrap_or_default(),
                subject: text(r, "subject").unwrap_or_default(),
                notetext: text(r, "notetext").unwrap_or_default(),
                filename: text(r, "filename"),
                mimetype: text(r, "mimetype"),
                bytes: text(r, "annotationid")
                    .and_then(|id| store.data.bodies.get(&id).map(|b| b.to_vec())),
            })
            .collect()
    }

    /// Every annotation, whatever it regards.
    pub fn annotation_count(&self) -> usize {
        self.shared.lock().data.annotations.len()
    }
}

impl Drop for DynamicsFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
