//! The fake environment's configuration: the tenant and app registration,
//! the phonecall table's alternate key, the upload cap, token lifetime and
//! seeded contacts.

/// The alternate key's index state (`EntityKeyIndexStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Pending,
    InProgress,
    Active,
    Failed,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "Pending",
            KeyStatus::InProgress => "InProgress",
            KeyStatus::Active => "Active",
            KeyStatus::Failed => "Failed",
        }
    }
}

/// An alternate key on one phonecall column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateKey {
    /// The key's logical name.
    pub name: String,
    /// The column it is on (a text column of 100 characters).
    pub column: String,
    pub status: KeyStatus,
}

impl AlternateKey {
    pub fn active(column: &str) -> AlternateKey {
        AlternateKey {
            name: format!("{column}_key"),
            column: column.to_owned(),
            status: KeyStatus::Active,
        }
    }
}

pub const DEFAULT_KEY_COLUMN: &str = "zcc_engagementid";

/// A contact to seed.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub firstname: String,
    pub lastname: String,
    pub telephone1: Option<String>,
    pub mobilephone: Option<String>,
}

impl Contact {
    pub fn new(firstname: &str, lastname: &str) -> Contact {
        Contact {
            firstname: firstname.into(),
            lastname: lastname.into(),
            ..Contact::default()
        }
    }

    pub fn telephone1(mut self, phone: &str) -> Contact {
        self.telephone1 = Some(phone.into());
        self
    }

    pub fn mobilephone(mut self, phone: &str) -> Contact {
        self.mobilephone = Some(phone.into());
        self
    }
}

/// How the environment is set up.
#[derive(Debug, Clone)]
pub struct Environment {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The phonecall table's alternate key, if any.
    pub key: Option<AlternateKey>,
    /// `organization.maxuploadfilesize`: the cap on an annotation's
    /// `documentbody` (base64 characters). Dataverse's default is 5 MB.
    pub max_upload: u64,
    /// `expires_in` of issued tokens, seconds.
    pub token_lifetime: u64,
    pub contacts: Vec<Contact>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment::new()
    }
}

impl Environment {
    pub fn new() -> Environment {
        Environment {
            tenant_id: "7d3c5e0b-0000-4000-8000-00000000e1d0".into(),
            client_id: "51f81489-12ee-4a9e-aaae-a2591f45987d".into(),
            client_secret: format!("fake~{:032x}", rand::random::<u128>()),
            key: Some(AlternateKey::active(DEFAULT_KEY_COLUMN)),
            max_upload: 5 * 1024 * 1024,
            token_lifetime: 3599,
            contacts: Vec::new(),
        }
    }

    pub fn key(mut self, key: Option<AlternateKey>) -> Environment {
        self.key = key;
        self
    }

    pub fn max_upload(mut self, bytes: u64) -> Environment {
        self.max_upload = bytes;
        self
    }

    pub fn contact(mut self, contact: Contact) -> Environment {
        self.contacts.push(contact);
        self
    }
}
