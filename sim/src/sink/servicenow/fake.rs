//! [`ServiceNowFake`]: a running fake instance on `127.0.0.1:0`, its fault
//! switches and the views of its state that tests assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::instance::Instance;
use super::server::{self, Shared};
use super::store::{RequestCounts, Store};

pub struct ServiceNowFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServiceNowFake {
    pub async fn start(instance: Instance) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(instance)),
            base: Mutex::new(format!("http://{addr}")),
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

    /// `instance_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client_id(&self) -> String {
        self.shared.lock().instance.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.shared.lock().instance.client_secret.clone()
    }

    pub fn username(&self) -> String {
        self.shared.lock().instance.username.clone()
    }

    pub fn password(&self) -> String {
        self.shared.lock().instance.password.clone()
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

    /// The next `n` authenticated requests answer 429 (rate-limit rule) with
    /// `Retry-After: 1` and the `X-RateLimit-*` headers.
    pub fn throttle_next(&self, n: u32) {
        self.shared.lock().faults.throttle_next = n;
    }

    /// The next `n` requests answer 503.
    pub fn unavailable_for_next(&self, n: u32) {
        self.shared.lock().faults.unavailable_next = n;
    }

    /// Every access token issued so far expires now (401 on next use).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Denies the integration user writes on `table` (ACL): 403.
    pub fn deny_writes(&self, table: &str) {
        self.shared
            .lock()
            .instance
            .write_denied
            .insert(table.to_owned());
    }

    pub fn allow_writes(&self, table: &str) {
        self.shared.lock().instance.write_denied.remove(table);
    }

    /// Adds a String field to a table (the admin fixed the set-up).
    pub fn add_field(&self, table: &str, field: &str) {
        let mut store = self.shared.lock();
        if let Some(def) = store.instance.tables.get_mut(table) {
            def.fields.insert(field.to_owned());
        }
    }

    /// Adds a `customer_contact`; its sys_id.
    pub fn add_contact(&self, name: &str, phone: &str, mobile_phone: &str) -> String {
        let mut fields = Map::new();
        fields.insert("name".into(), json!(name));
        fields.insert("phone".into(), json!(phone));
        fields.insert("mobile_phone".into(), json!(mobile_phone));
        self.shared
            .lock()
            .insert("customer_contact", &fields, "admin")
    }

    /// Inserts a record as a user of the instance would (a `work_notes`
    /// value adds an entry); its sys_id.
    pub fn insert_record(&self, table: &str, fields: Value) -> String {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.shared.lock().insert(table, &fields, "admin")
    }

    /// Deletes a record as a user of the instance would.
    pub fn delete_record(&self, table: &str, sys_id: &str) {
        let mut store = self.shared.lock();
        if let Some(rows) = store.rows.get_mut(table) {
            rows.retain(|r| r.get("sys_id").and_then(Value::as_str) != Some(sys_id));
        }
    }

    // ---------------------------------------------------------- state views

    pub fn request_counts(&self) -> RequestCounts {
        self.shared.lock().counts.clone()
    }

    /// Every row of `table` as stored (journal fields not included).
    pub fn records(&self, table: &str) -> Vec<Map<String, Value>> {
        self.shared
            .lock()
            .rows
            .get(table)
            .cloned()
            .unwrap_or_default()
    }

    /// The rows of `table` whose `field` is `value`.
    pub fn records_with(&self, table: &str, field: &str, value: &str) -> Vec<Map<String, Value>> {
        self.records(table)
            .into_iter()
            .filter(|r| r.get(field).and_then(Value::as_str) == Some(value))
            .collect()
    }

    /// The texts of a record's `work_notes` entries, oldest first.
    pub fn work_notes(&self, table: &str, sys_id: &str) -> Vec<String> {
        self.shared
            .lock()
            .entries(table, "work_notes", sys_id)
            .iter()
            .map(|e| e["value"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// A record's attachments: (file name, content type, bytes).
    pub fn attachments_of(&self, table: &str, sys_id: &str) -> Vec<(String, String, Vec<u8>)> {
        self.shared
            .lock()
            .attachments
            .iter()
            .filter(|a| a.table_name == table && a.table_sys_id == sys_id)
            .map(|a| (a.file_name.clone(), a.content_type.clone(), a.bytes.clone()))
            .collect()
    }

    /// How many attachments the instance holds.
    pub fn attachment_count(&self) -> usize {
        self.shared.lock().attachments.len()
    }
}

impl Drop for ServiceNowFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
