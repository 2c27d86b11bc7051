//! The fake portal's configuration: the private app's token and scopes,
//! the calls properties (the unique one among them), custom call
//! dispositions and seeded contacts.

/// The six default call dispositions HubSpot documents (label, GUID).
pub const DEFAULT_DISPOSITIONS: &[(&str, &str)] = &[
    ("Busy", "9d9162e7-6cf3-4944-bf63-4dff82258764"),
    ("Connected", "f240bbac-87c9-4f6e-bf70-924b57d47db7"),
    ("Left live message", "a4c4c377-d246-4b32-a13b-75a56a4cd0ff"),
    ("Left voicemail", "b2cf5968-551e-4856-9783-52b3da59a7d0"),
    ("No answer", "73a0d17f-1163-4015-bdd5-ec830791da20"),
    ("Wrong number", "17b47fee-58de-441e-a44c-c6300d46f273"),
];

/// Every scope the relay's sink uses.
pub const ALL_SCOPES: &[&str] = &[
    "crm.objects.calls.read",
    "crm.objects.calls.write",
    "crm.objects.contacts.read",
    "crm.schemas.calls.read",
    "files",
];

pub const DEFAULT_UNIQUE_PROPERTY: &str = "zcc_engagement_id";

/// A custom calls property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomProperty {
    pub name: String,
    pub unique: bool,
}

/// A contact to seed.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub firstname: String,
    pub lastname: String,
    pub phone: Option<String>,
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

    pub fn phone(mut self, phone: &str) -> Contact {
        self.phone = Some(phone.into());
        self
    }

    pub fn mobilephone(mut self, phone: &str) -> Contact {
        self.mobilephone = Some(phone.into());
        self
    }
}

#[derive(Debug, Clone)]
pub struct Portal {
    pub token: String,
    pub scopes: Vec<String>,
    pub properties: Vec<CustomProperty>,
    /// Custom dispositions (label, GUID) beside the six defaults.
    pub dispositions: Vec<(String, String)>,
    pub contacts: Vec<Contact>,
}

impl Default for Portal {
    fn default() -> Self {
        Portal::new()
    }
}

impl Portal {
    pub fn new() -> Portal {
        Portal {
            token: format!("pat-na1-{:032x}", rand::random::<u128>()),
            scopes: ALL_SCOPES.iter().map(|s| s.to_string()).collect(),
            properties: vec![CustomProperty {
                name: DEFAULT_UNIQUE_PROPERTY.into(),
                unique: true,
            }],
            dispositions: Vec::new(),
            contacts: Vec::new(),
        }
    }

    pub fn property(mut self, name: &str, unique: bool) -> Portal {
        self.properties.retain(|p| p.name != name);
        self.properties.push(CustomProperty {
            name: name.into(),
            unique,
        });
        self
    }

    pub fn without_property(mut self, name: &str) -> Portal {
        self.properties.retain(|p| p.name != name);
        self
    }

    pub fn scopes(mut self, scopes: &[&str]) -> Portal {
        self.scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn disposition(mut self, label: &str, guid: &str) -> Portal {
        self.dispositions.push((label.into(), guid.into()));
        self
    }

    pub fn contact(mut self, contact: Contact) -> Portal {
        self.contacts.push(contact);
        self
    }
}
