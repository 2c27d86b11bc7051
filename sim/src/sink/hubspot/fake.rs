//! [`HubSpotFake`]: a running fake portal on `127.0.0.1:0`, its fault
//! switches and the views of its state that tests assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::portal::{Contact, Portal};
use super::server::{self, Shared};
use super::store::{RequestCounts, Store, StoredFile};

pub struct HubSpotFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HubSpotFake {
    pub async fn start(portal: Portal) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(portal)),
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

    /// `api_base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The private app's token.
    pub fn token(&self) -> String {
        self.shared.lock().portal.token.clone()
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    // ---------------------------------------------------------- fault switches

    /// The next `n` authenticated requests answer 429 with `policy`
    /// (`TEN_SECONDLY_ROLLING`, `SECONDLY`, `DAILY`).
    pub fn throttle_next(&self, n: u32, policy: &str) {
        let mut store = self.shared.lock();
        store.faults.throttle_next = n;
        store.faults.throttle_policy = policy.to_owned();
    }

    /// The next `n` requests answer 502.
    pub fn unavailable_for_next(&self, n: u32) {
        self.shared.lock().faults.unavailable_next = n;
    }

    /// Rotates the token: the old one answers 401 from now on. The new one.
    pub fn rotate_token(&self) -> String {
        let token = format!("pat-na1-{:032x}", rand::random::<u128>());
        self.shared.lock().portal.token = token.clone();
        token
    }

    pub fn set_scopes(&self, scopes: &[&str]) {
        self.shared.lock().portal.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Adds (or replaces) a calls property.
    pub fn set_property(&self, name: &str, unique: bool) {
        let mut store = self.shared.lock();
        store.portal.properties.retain(|p| p.name != name);
        store.portal.properties.push(super::portal::CustomProperty {
            name: name.into(),
            unique,
        });
    }

    /// New contacts stay out of search results this long (the index lag).
    pub fn set_search_lag(&self, lag: Duration) {
        self.shared.lock().search_lag = lag;
    }

    pub fn add_contact(&self, contact: Contact) -> String {
        self.shared.lock().add_contact(&contact)
    }

    // ---------------------------------------------------------- state views

    pub fn request_counts(&self) -> RequestCounts {
        self.shared.lock().counts.clone()
    }

    /// Every call's properties (with `hs_object_id`).
    pub fn calls(&self) -> Vec<Map<String, Value>> {
        self.shared.lock().calls.values().cloned().collect()
    }

    /// The calls whose `property` holds `value`.
    pub fn calls_with(&self, property: &str, value: &str) -> Vec<Map<String, Value>> {
        self.shared
            .lock()
            .calls
            .values()
            .filter(|c| c.get(property).and_then(Value::as_str) == Some(value))
            .cloned()
            .collect()
    }

    /// The contacts the call is associated with.
    pub fn associations_of(&self, call_id: &str) -> Vec<String> {
        self.shared
            .lock()
            .associations
            .iter()
            .filter(|(call, _)| call == call_id)
            .map(|(_, contact)| contact.clone())
            .collect()
    }

    /// A stored file by id: (path, bytes).
    pub fn file(&self, id: &str) -> Option<(String, Vec<u8>)> {
        self.shared
            .lock()
            .files
            .get(id)
            .map(|f: &StoredFile| (f.path.clone(), f.bytes.clone()))
    }

    /// Every stored file's path.
    pub fn file_paths(&self) -> Vec<String> {
        self.shared
            .lock()
            .files
            .values()
            .map(|f| f.path.clone())
            .collect()
    }
}

impl Drop for HubSpotFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
