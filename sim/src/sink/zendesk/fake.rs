//! [`ZendeskFake`]: a running fake account on `127.0.0.1:0`, its fault
//! switches (throttling, outages, lost create answers, expired tokens, a
//! clock to move past the idempotency window) and the views of its state
//! that tests assert on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::account::Account;
use super::server::{self, Shared};
use super::store::{RequestCounts, Store};

/// A comment as a test sees it.
#[derive(Debug, Clone)]
pub struct StoredComment {
    pub id: u64,
    pub kind: String,
    pub body: String,
    pub public: bool,
    /// (file name, bytes) of each attachment.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// A voice comment's data.
    pub data: Option<Value>,
}

/// A ticket's fields as a test sees them.
#[derive(Debug, Clone)]
pub struct StoredTicket {
    pub subject: String,
    pub requester_id: u64,
    pub tags: Vec<String>,
    /// (field id, value).
    pub custom_fields: Vec<(u64, Value)>,
}

pub struct ZendeskFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ZendeskFake {
    pub async fn start(account: Account) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(account);
        store.set_base(format!("http://{addr}"));
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
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

    /// The account's URL (`url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client_id(&self) -> String {
        self.shared.lock().account.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.shared.lock().account.client_secret.clone()
    }

    pub fn email(&self) -> String {
        self.shared.lock().account.email.clone()
    }

    pub fn api_token(&self) -> String {
        self.shared.lock().account.api_token.clone()
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

    /// The next `n` authenticated requests answer 429 `Retry-After: 1`.
    pub fn throttle_next(&self, n: u32) {
        self.shared.lock().faults.throttle_next = n;
    }

    /// The next `n` requests answer 503.
    pub fn unavailable_for_next(&self, n: u32) {
        self.shared.lock().faults.unavailable_next = n;
    }

    /// The next `n` ticket creates happen, but answer 504.
    pub fn lose_next_create_answers(&self, n: u32) {
        self.shared.lock().faults.lose_create_answers = n;
    }

    /// The next ticket create happens but answers 504, and the account's
    /// clock moves on by `by` at that moment (so the client's retry comes
    /// `by` later, whenever it is sent).
    pub fn lose_next_create_answer_then_advance(&self, by: Duration) {
        let mut store = self.shared.lock();
        store.faults.lose_create_answers = 1;
        store.faults.advance_after_loss = by;
    }

    /// Every OAuth token issued so far expires now.
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Moves the account's clock on (idempotency keys, tokens, the
    /// per-minute windows).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.lock().offset += by;
    }

    /// The integration user's role from now on (`end-user`: no writes).
    pub fn set_role(&self, role: &str) {
        let mut store = self.shared.lock();
        store.account.role = role.to_owned();
        let agent = store.account.agent_id;
        if let Some(user) = store.users.get_mut(&agent) {
            user.role = role.to_owned();
        }
    }

    pub fn add_user(&self, name: &str, phone: &str) -> u64 {
        self.shared.lock().add_user(name, phone)
    }

    // ---------------------------------------------------------- state views

    pub fn request_counts(&self) -> RequestCounts {
        self.shared.lock().counts.clone()
    }

    /// The integration user's id (the default requester).
    pub fn agent_id(&self) -> u64 {
        self.shared.lock().account.agent_id
    }

    /// Every ticket's id.
    pub fn ticket_ids(&self) -> Vec<u64> {
        self.shared.lock().tickets.keys().copied().collect()
    }

    /// The ids of the tickets whose `external_id` is `external_id`.
    pub fn tickets_with(&self, external_id: &str) -> Vec<u64> {
        self.shared
            .lock()
            .tickets
            .values()
            .filter(|t| t.external_id.as_deref() == Some(external_id))
            .map(|t| t.id)
            .collect()
    }

    /// A ticket's fields as a test sees them.
    pub fn ticket(&self, id: u64) -> Option<StoredTicket> {
        self.shared.lock().tickets.get(&id).map(|t| StoredTicket {
            subject: t.subject.clone(),
            requester_id: t.requester_id,
            tags: t.tags.clone(),
            custom_fields: t
                .custom_fields
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        })
    }

    /// A ticket's comments, oldest first.
    pub fn comments(&self, id: u64) -> Vec<StoredComment> {
        let store = self.shared.lock();
        let Some(ticket) = store.tickets.get(&id) else {
            return Vec::new();
        };
        ticket
            .comments
            .iter()
            .map(|c| StoredComment {
                id: c.id,
                kind: c.kind.clone(),
                body: c.body.clone(),
                public: c.public,
                attachments: c
                    .attachments
                    .iter()
                    .filter_map(|a| store.attachments.get(a))
                    .map(|a| (a.file_name.clone(), a.bytes.clone()))
                    .collect(),
                data: c.data.clone(),
            })
            .collect()
    }

    /// Users with `phone` written exactly so: their ids.
    pub fn users_with_phone(&self, phone: &str) -> Vec<u64> {
        self.shared
            .lock()
            .users
            .values()
            .filter(|u| u.phone.as_deref() == Some(phone))
            .map(|u| u.id)
            .collect()
    }

    /// A user's phone.
    pub fn phone_of(&self, user: u64) -> Option<String> {
        self.shared
            .lock()
            .users
            .get(&user)
            .and_then(|u| u.phone.clone())
    }

    /// How many uploads were made (attached or not).
    pub fn uploads(&self) -> usize {
        self.shared.lock().attachments.len()
    }
}

impl Drop for ZendeskFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
