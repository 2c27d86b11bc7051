//! [`Account`]: the configuration a fake Zendesk account starts with — its
//! OAuth client, its integration user (role, e-mail, API token), its limits,
//! its ticket fields and its end-users.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Account {
    pub client_id: String,
    pub client_secret: String,
    pub email: String,
    pub api_token: String,
    /// Admin Center's "Token access": off, Basic `{email}/token:{token}` fails.
    pub api_tokens_enabled: bool,
    /// The integration user's role (`admin`, `agent`; `end-user` may not write).
    pub role: String,
    /// `expires_in` of the OAuth tokens it issues.
    pub token_lifetime: Duration,
    pub ticket_updates_per_minute: u32,
    pub requests_per_minute: u32,
    pub ticket_fields: Vec<u64>,
    /// End-users present from the start: (name, phone as written).
    pub users: Vec<(String, String)>,
    /// Set by the store: the integration user's id.
    pub agent_id: u64,
}

impl Default for Account {
    fn default() -> Self {
        Account::new()
    }
}

impl Account {
    /// An Enterprise-like account: 700 requests and 100 ticket updates a
    /// minute, 30-minute tokens, an admin integration user.
    pub fn new() -> Account {
        Account {
            client_id: "zcc_relay".into(),
            client_secret: format!("secret-{:032x}", rand::random::<u128>()),
            email: "relay@acme.example".into(),
            api_token: format!("{:040x}", rand::random::<u128>()),
            api_tokens_enabled: true,
            role: "admin".into(),
            token_lifetime: Duration::from_secs(30 * 60),
            ticket_updates_per_minute: 100,
            requests_per_minute: 700,
            ticket_fields: Vec::new(),
            users: Vec::new(),
            agent_id: 0,
        }
    }

    pub fn user(mut self, name: &str, phone: &str) -> Account {
        self.users.push((name.into(), phone.into()));
        self
    }

    pub fn ticket_field(mut self, id: u64) -> Account {
        self.ticket_fields.push(id);
        self
    }

    pub fn ticket_updates_per_minute(mut self, n: u32) -> Account {
        self.ticket_updates_per_minute = n;
        self
    }

    pub fn requests_per_minute(mut self, n: u32) -> Account {
        self.requests_per_minute = n;
        self
    }

    pub fn role(mut self, role: &str) -> Account {
        self.role = role.into();
        self
    }
}
