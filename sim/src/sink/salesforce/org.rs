//! The configuration of a fake org: its connected app's credentials, the custom external-id
//! field on Task (absent, or present with or without External ID / Unique), the integration
//! user's object permissions, the daily API allocation, and the Contacts and Leads it starts
//! with. Pure data; the running fake ([`SalesforceFake`](super::SalesforceFake)) owns the live state.

use std::time::Duration;

/// A Text field on Task that the relay keys its upsert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdField {
    /// API name, e.g. `Zoom_Engagement_Id__c`.
    pub name: String,
    /// The field's "External ID" attribute. Without it the field cannot key an upsert.
    pub external_id: bool,
    /// The field's "Unique" attribute. Without it two Tasks may hold the same value (and an
    /// upsert that matches both answers 300).
    pub unique: bool,
    /// "Treat "ABC" and "abc" as different values (case sensitive)". Without it matching and
    /// uniqueness ignore case (Salesforce Help, "Custom Field Attributes").
    pub case_sensitive: bool,
    /// Text length (1–255).
    pub length: u32,
}

impl ExternalIdField {
    /// The set-up the README asks for: Text(255), External ID, Unique, case sensitive.
    pub fn proper(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            external_id: true,
            unique: true,
            case_sensitive: true,
            length: 255,
        }
    }

    /// Present but without the External ID attribute (a plain Text field).
    pub fn plain_text(name: &str) -> Self {
        Self {
            external_id: false,
            unique: false,
            case_sensitive: false,
            ..Self::proper(name)
        }
    }

    /// External ID but not Unique.
    pub fn not_unique(name: &str) -> Self {
        Self {
            unique: false,
            case_sensitive: false,
            ..Self::proper(name)
        }
    }
}

/// The integration user's permission on an object (its profile and permission sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAccess {
    pub create: bool,
    pub edit: bool,
}

impl ObjectAccess {
    pub const FULL: Self = Self {
        create: true,
        edit: true,
    };
    pub const READ_ONLY: Self = Self {
        create: false,
        edit: false,
    };
}

/// A Contact or Lead to seed, with free-text phones as users type them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub mobile_phone: Option<String>,
}

impl Person {
    pub fn new(first_name: &str, last_name: &str) -> Self {
        Self {
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            ..Self::default()
        }
    }

    pub fn phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.to_owned());
        self
    }

    pub fn mobile(mut self, phone: &str) -> Self {
        self.mobile_phone = Some(phone.to_owned());
        self
    }
}

/// Everything the fake org starts with.
#[derive(Debug, Clone)]
pub struct Org {
    /// The My Domain name; shows in identity URLs only (the instance URL is the fake's).
    pub my_domain: String,
    pub client_id: String,
    pub client_secret: String,
    /// "Enable Client Credentials Flow" with a run-as user on the External Client App.
    pub client_credentials_enabled: bool,
    pub external_id_field: Option<ExternalIdField>,
    pub task_access: ObjectAccess,
    pub content_version_access: ObjectAccess,
    /// The org's 24-hour API request allocation and what is already used of it.
    pub api_limit: u64,
    pub api_usage: u64,
    /// Session timeout: a token older than this answers `INVALID_SESSION_ID` (tokio time).
    pub session_timeout: Duration,
    pub contacts: Vec<Person>,
    pub leads: Vec<Person>,
}

/// The external-id field name the relay's documentation uses.
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "Zoom_Engagement_Id__c";

impl Default for Org {
    fn default() -> Self {
        Self {
            my_domain: "zcc-fake".to_owned(),
            client_id: "3MVG9fake.client.id".to_owned(),
            client_secret: "fake-client-secret".to_owned(),
            client_credentials_enabled: true,
            external_id_field: Some(ExternalIdField::proper(DEFAULT_EXTERNAL_ID_FIELD)),
            task_access: ObjectAccess::FULL,
            content_version_access: ObjectAccess::FULL,
            api_limit: 100_000,
            api_usage: 0,
            session_timeout: Duration::from_secs(2 * 60 * 60),
            contacts: Vec::new(),
            leads: Vec::new(),
        }
    }
}

impl Org {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = client_id.to_owned();
        self.client_secret = client_secret.to_owned();
        self
    }

    pub fn external_id_field(mut self, field: Option<ExternalIdField>) -> Self {
        self.external_id_field = field;
        self
    }

    pub fn task_access(mut self, access: ObjectAccess) -> Self {
        self.task_access = access;
        self
    }

    pub fn content_version_access(mut self, access: ObjectAccess) -> Self {
        self.content_version_access = access;
        self
    }

    pub fn api_allocation(mut self, used: u64, limit: u64) -> Self {
        self.api_usage = used;
        self.api_limit = limit;
        self
    }

    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    pub fn client_credentials_enabled(mut self, enabled: bool) -> Self {
        self.client_credentials_enabled = enabled;
        self
    }

    pub fn contact(mut self, person: Person) -> Self {
        self.contacts.push(person);
        self
    }

    pub fn lead(mut self, person: Person) -> Self {
        self.leads.push(person);
        self
    }
}
