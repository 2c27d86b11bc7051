//! What an instance is configured with: its credentials (an OAuth
//! application with the client-credentials grant and a basic-auth
//! integration user), its tables and their fields, and the integration
//! user's permissions.

use std::collections::{BTreeMap, BTreeSet};

/// The custom field the relay's default configuration uses.
pub const DEFAULT_CORRELATION_FIELD: &str = "u_zoom_engagement_id";

/// One table's definition.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub fields: BTreeSet<String>,
    /// Reference fields: `field → referenced table`.
    pub references: BTreeMap<String, String>,
    /// Journal fields (a write appends an entry to `sys_journal_field`).
    pub journals: BTreeSet<String>,
}

impl TableDef {
    fn new(fields: &[&str]) -> TableDef {
        let mut all: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
        for system in [
            "sys_id",
            "sys_created_on",
            "sys_created_by",
            "sys_updated_on",
            "sys_updated_by",
            "sys_mod_count",
        ] {
            all.insert(system.to_owned());
        }
        TableDef {
            fields: all,
            references: BTreeMap::new(),
            journals: BTreeSet::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub client_id: String,
    pub client_secret: String,
    /// `glide.oauth.inbound.client.credential.grant_type.enabled`.
    pub client_credentials_enabled: bool,
    /// The access token's lifetime (the instance default is 1,800 s).
    pub token_lifetime_s: u64,
    pub username: String,
    pub password: String,
    pub tables: BTreeMap<String, TableDef>,
    /// Tables the integration user may not write (ACL).
    pub write_denied: BTreeSet<String>,
    /// `com.glide.attachment.max_size` in bytes.
    pub attachment_max_bytes: u64,
}

impl Default for Instance {
    fn default() -> Self {
        Self::new()
    }
}

impl Instance {
    /// The `interaction` table with [`DEFAULT_CORRELATION_FIELD`] added, the
    /// CSM `customer_contact` table, an integration user and an OAuth
    /// application with random secrets.
    pub fn new() -> Instance {
        let mut tables = BTreeMap::new();
        let mut interaction = TableDef::new(&[
            "number",
            "type",
            "state",
            "direction",
            "short_description",
            "opened_at",
            "closed_at",
            "opened_for",
            "assigned_to",
            "contact",
            "account",
            "consumer",
            "work_notes",
            DEFAULT_CORRELATION_FIELD,
        ]);
        interaction
            .references
            .insert("contact".into(), "customer_contact".into());
        interaction
            .references
            .insert("assigned_to".into(), "sys_user".into());
        interaction.journals.insert("work_notes".into());
        tables.insert("interaction".to_owned(), interaction);
        tables.insert(
            "customer_contact".to_owned(),
            TableDef::new(&[
                "name",
                "first_name",
                "last_name",
                "email",
                "phone",
                "mobile_phone",
                "account",
            ]),
        );
        tables.insert(
            "sys_user".to_owned(),
            TableDef::new(&["user_name", "name", "email", "phone", "mobile_phone"]),
        );
        tables.insert(
            "sys_journal_field".to_owned(),
            TableDef::new(&["name", "element", "element_id", "value"]),
        );
        let secret = || format!("{:032x}", rand::random::<u128>());
        Instance {
            client_id: format!("{:032x}", rand::random::<u128>()),
            client_secret: secret(),
            client_credentials_enabled: true,
            token_lifetime_s: 1800,
            username: "zcc.relay".to_owned(),
            password: secret(),
            tables,
            write_denied: BTreeSet::new(),
            attachment_max_bytes: 1024 * 1024 * 1024,
        }
    }

    /// Without `field` on `table` (a correlation field nobody created).
    pub fn without_field(mut self, table: &str, field: &str) -> Instance {
        if let Some(def) = self.tables.get_mut(table) {
            def.fields.remove(field);
        }
        self
    }

    /// With a String field `field` on `table`.
    pub fn with_field(mut self, table: &str, field: &str) -> Instance {
        if let Some(def) = self.tables.get_mut(table) {
            def.fields.insert(field.to_owned());
        }
        self
    }
}
