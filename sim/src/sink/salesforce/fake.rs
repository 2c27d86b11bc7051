//! [`SalesforceFake`]: a running fake org on `127.0.0.1:0`, its fault switches (usable while
//! it runs) and the views of its state that tests assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::org::{ExternalIdField, ObjectAccess, Org, Person};
use super::schema::ObjectKind;
use super::server::{self, Shared};
use super::store::{ContentDocumentLink, RequestCounts, Store, StoredContentVersion};

/// A fake Salesforce org serving its REST API over HTTP on loopback.
pub struct SalesforceFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SalesforceFake {
    /// Binds `127.0.0.1:0` and serves `org` until [`SalesforceFake::stop`] or drop.
    pub async fn start(org: Org) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(org)),
            base_url: format!("http://{addr}"),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            // A serve error ends the fake; the test then sees refused connections.
            let _ = serve.await;
        });
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The instance URL (`http://127.0.0.1:PORT`), also the token endpoint's host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{url}/services/oauth2/token`.
    pub fn token_url(&self) -> String {
        format!("{}/services/oauth2/token", self.url())
    }

    pub fn client_id(&self) -> String {
        self.shared.lock().org.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.shared.lock().org.client_secret.clone()
    }

    /// The run-as integration user's id (the default `OwnerId`).
    pub fn integration_user_id(&self) -> String {
        self.shared.lock().integration_user_id.clone()
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

    /// The next `n` requests (any endpoint) answer 503 `SERVER_UNAVAILABLE`.
    pub fn unavailable_for_next(&self, n: u32) {
        self.shared.lock().faults.unavailable_next = n;
    }

    /// Every API request answers 403 `REQUEST_LIMIT_EXCEEDED` for `duration` (tokio time).
    pub fn request_limit_exceeded_for(&self, duration: Duration) {
        self.shared.lock().faults.limit_until = Some(Instant::now() + duration);
    }

    /// Switches `REQUEST_LIMIT_EXCEEDED` on or off until switched again.
    pub fn set_request_limit_exceeded(&self, on: bool) {
        let mut store = self.shared.lock();
        store.faults.limit_forced = on;
        if !on {
            store.faults.limit_until = None;
        }
    }

    /// Sets the 24-hour API usage and allocation (`Sforce-Limit-Info: api-usage=used/limit`);
    /// requests past the allocation answer `REQUEST_LIMIT_EXCEEDED`.
    pub fn set_api_usage(&self, used: u64, limit: u64) {
        let mut store = self.shared.lock();
        store.api_usage = used;
        store.org.api_limit = limit;
    }

    /// Revokes every issued access token: the next API call answers 401 `INVALID_SESSION_ID`.
    pub fn invalidate_sessions(&self) {
        self.shared.lock().invalidate_sessions();
    }

    /// Delays every answer by `delay` (tokio time; zero switches it off).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().faults.delay = delay;
    }

    /// Replaces Task's custom external-id field (`None` deletes it); takes effect on the next
    /// request, so a test can add the field and watch a sink converge without a restart.
    pub fn set_external_id_field(&self, field: Option<ExternalIdField>) {
        self.shared.lock().org.external_id_field = field;
    }

    pub fn set_task_access(&self, access: ObjectAccess) {
        self.shared.lock().org.task_access = access;
    }

    pub fn set_content_version_access(&self, access: ObjectAccess) {
        self.shared.lock().org.content_version_access = access;
    }

    /// The External Client App's "Enable Client Credentials Flow" switch.
    pub fn set_client_credentials_enabled(&self, enabled: bool) {
        self.shared.lock().org.client_credentials_enabled = enabled;
    }

    // ---------------------------------------------------------- state

    /// Every Task with all its fields, in creation order.
    pub fn tasks(&self) -> Vec<Map<String, Value>> {
        self.shared.lock().tasks.clone()
    }

    /// The Tasks whose external-id field equals `value` exactly.
    pub fn tasks_with_external_id(&self, value: &str) -> Vec<Map<String, Value>> {
        let store = self.shared.lock();
        let Some(field) = store.org.external_id_field.as_ref().map(|f| f.name.clone()) else {
            return Vec::new();
        };
        store
            .tasks
            .iter()
            .filter(|t| t.get(&field).and_then(Value::as_str) == Some(value))
            .cloned()
            .collect()
    }

    /// Inserts a Task without validation (e.g. two with one key on a non-unique field).
    pub fn insert_task(&self, fields: Map<String, Value>) -> String {
        self.shared.lock().insert_task_raw(fields)
    }

    /// Every ContentVersion with its bytes, title, path and linked record.
    pub fn content_versions(&self) -> Vec<StoredContentVersion> {
        self.shared.lock().content_versions.clone()
    }

    /// The ContentDocumentLinks created through `FirstPublishLocationId`.
    pub fn content_document_links(&self) -> Vec<ContentDocumentLink> {
        self.shared.lock().links.clone()
    }

    pub fn contacts(&self) -> Vec<Map<String, Value>> {
        self.shared.lock().contacts.clone()
    }

    pub fn leads(&self) -> Vec<Map<String, Value>> {
        self.shared.lock().leads.clone()
    }

    /// Adds a Contact while running; returns its id.
    pub fn add_contact(&self, person: Person) -> String {
        self.shared.lock().add_person(ObjectKind::Contact, &person)
    }

    /// Adds a Lead while running; returns its id.
    pub fn add_lead(&self, person: Person) -> String {
        self.shared.lock().add_person(ObjectKind::Lead, &person)
    }

    /// Requests received per endpoint.
    pub fn request_counts(&self) -> RequestCounts {
        self.shared.lock().counts.clone()
    }

    /// `(used, limit)` of the 24-hour API allocation.
    pub fn api_usage(&self) -> (u64, u64) {
        let store = self.shared.lock();
        (store.api_usage, store.org.api_limit)
    }
}

impl Drop for SalesforceFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
