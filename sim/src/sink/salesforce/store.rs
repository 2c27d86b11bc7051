//! The org's live data and switches: records (Tasks, ContentVersions with their bytes and
//! ContentDocuments and links, Contacts, Leads), sessions, API usage, request counters and
//! the scripted faults. The write operations (upsert, collection upsert, ContentVersion
//! create) live here so their rules are in one place; HTTP framing is `server`'s.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::error::{ApiError, RecordError};
use super::id::{self, prefix};
use super::org::{ExternalIdField, ObjectAccess, Org, Person};
use super::record::{self, Mode};
use super::schema::{self, FieldDef, ObjectKind};

/// Which API endpoint a request was for; counted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    Upsert,
    Update,
    Composite,
    ContentVersion,
    Query,
    Search,
    Describe,
    Other,
}

/// Requests received per endpoint (every request, refused ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub token: u64,
    pub upsert: u64,
    /// `PATCH /sobjects/Task/{Id}` (update by record id).
    pub update: u64,
    pub composite: u64,
    pub content_version: u64,
    pub query: u64,
    pub search: u64,
    pub describe: u64,
    pub other: u64,
}

impl RequestCounts {
    pub(crate) fn bump(&mut self, endpoint: Endpoint) {
        let slot = match endpoint {
            Endpoint::Token => &mut self.token,
            Endpoint::Upsert => &mut self.upsert,
            Endpoint::Update => &mut self.update,
            Endpoint::Composite => &mut self.composite,
            Endpoint::ContentVersion => &mut self.content_version,
            Endpoint::Query => &mut self.query,
            Endpoint::Search => &mut self.search,
            Endpoint::Describe => &mut self.describe,
            Endpoint::Other => &mut self.other,
        };
        *slot += 1;
    }

    /// Every request except token requests (what counts against the API allocation).
    pub fn api_calls(&self) -> u64 {
        self.upsert
            + self.update
            + self.composite
            + self.content_version
            + self.query
            + self.search
            + self.describe
            + self.other
    }
}

/// A stored ContentVersion as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContentVersion {
    pub id: String,
    pub content_document_id: String,
    pub title: String,
    pub path_on_client: String,
    /// The record the document was first published to (`FirstPublishLocationId`).
    pub first_publish_location_id: Option<String>,
    pub bytes: Bytes,
    /// How the version arrived: `"json"` (base64 in JSON) or `"multipart"`.
    pub upload: &'static str,
    pub fields: Map<String, Value>,
}

/// A ContentDocumentLink: a document shared to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDocumentLink {
    pub id: String,
    pub content_document_id: String,
    pub linked_entity_id: String,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub unavailable_next: u32,
    pub limit_until: Option<Instant>,
    pub limit_forced: bool,
    pub delay: Duration,
}

/// The outcome of one upsert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Upserted {
    Created(String),
    Updated(String),
    /// Several records hold the key: their ids, nothing written.
    Ambiguous(Vec<String>),
}

/// What an all-or-none collection restores.
pub(crate) struct Snapshot {
    tasks: Vec<Map<String, Value>>,
    serial: u64,
    known: HashSet<String>,
}

pub(crate) struct Store {
    pub org: Org,
    serial: u64,
    pub tasks: Vec<Map<String, Value>>,
    pub content_versions: Vec<StoredContentVersion>,
    pub links: Vec<ContentDocumentLink>,
    pub contacts: Vec<Map<String, Value>>,
    pub leads: Vec<Map<String, Value>>,
    pub integration_user_id: String,
    pub org_id: String,
    sessions: HashMap<String, Instant>,
    /// Every existing record id (the object follows from its key prefix).
    known: HashSet<String>,
    pub api_usage: u64,
    pub counts: RequestCounts,
    pub faults: Faults,
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

impl Store {
    pub fn new(org: Org) -> Self {
        let mut store = Self {
            serial: 0,
            tasks: Vec::new(),
            content_versions: Vec::new(),
            links: Vec::new(),
            contacts: Vec::new(),
            leads: Vec::new(),
            integration_user_id: id::mint(prefix::USER, 1),
            org_id: id::mint(prefix::ORG, 1),
            sessions: HashMap::new(),
            known: HashSet::new(),
            api_usage: org.api_usage,
            counts: RequestCounts::default(),
            faults: Faults::default(),
            org: Org {
                contacts: Vec::new(),
                leads: Vec::new(),
                ..org.clone()
            },
        };
        for person in &org.contacts {
            store.add_person(ObjectKind::Contact, person);
        }
        for person in &org.leads {
            store.add_person(ObjectKind::Lead, person);
        }
        store
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        id::mint(prefix, self.serial)
    }

    pub fn add_person(&mut self, kind: ObjectKind, person: &Person) -> String {
        let id = self.next_id(kind.key_prefix());
        let now = now_text();
        let record = json!({
            "Id": id,
            "FirstName": person.first_name,
            "LastName": person.last_name,
            "Name": format!("{} {}", person.first_name, person.last_name).trim().to_owned(),
            "Phone": person.phone,
            "MobilePhone": person.mobile_phone,
            "CreatedDate": now,
            "LastModifiedDate": now,
        });
        let record = record.as_object().cloned().unwrap_or_default();
        match kind {
            ObjectKind::Lead => self.leads.push(record),
            _ => self.contacts.push(record),
        }
        self.known.insert(id.clone());
        id
    }

    // ---- sessions

    pub fn issue_token(&mut self) -> String {
        self.serial += 1;
        let token = format!(
            "{}!AQ4AQFake{:016x}{:08x}",
            &self.org_id[..15],
            self.serial,
            self.serial.wrapping_mul(2_654_435_761) as u32
        );
        self.sessions.insert(token.clone(), Instant::now());
        token
    }

    pub fn session_valid(&self, token: &str) -> bool {
        self.sessions
            .get(token)
            .is_some_and(|issued| issued.elapsed() < self.org.session_timeout)
    }

    pub fn invalidate_sessions(&mut self) {
        self.sessions.clear();
    }

    // ---- limits

    pub fn limit_exceeded(&self) -> bool {
        self.faults.limit_forced
            || self
                .faults
                .limit_until
                .is_some_and(|until| Instant::now() < until)
            || self.api_usage >= self.org.api_limit
    }

    // ---- schema

    pub fn fields(&self, kind: ObjectKind) -> Vec<FieldDef> {
        schema::fields(kind, self.org.external_id_field.as_ref())
    }

    pub fn access(&self, kind: ObjectKind) -> ObjectAccess {
        match kind {
            ObjectKind::Task => self.org.task_access,
            ObjectKind::ContentVersion => self.org.content_version_access,
            _ => ObjectAccess::READ_ONLY,
        }
    }

    /// The records of `kind`, borrowed where they are stored as such (queries run often: a
    /// backlog drain looks files up before creating them).
    pub fn records(&self, kind: ObjectKind) -> Vec<Cow<'_, Map<String, Value>>> {
        match kind {
            ObjectKind::Task => self.tasks.iter().map(Cow::Borrowed).collect(),
            ObjectKind::Contact => self.contacts.iter().map(Cow::Borrowed).collect(),
            ObjectKind::Lead => self.leads.iter().map(Cow::Borrowed).collect(),
            ObjectKind::ContentVersion => self
                .content_versions
                .iter()
                .map(|version| Cow::Borrowed(&version.fields))
                .collect(),
            ObjectKind::ContentDocument => {
                let mut documents: Vec<Map<String, Value>> = Vec::new();
                for version in &self.content_versions {
                    let latest = json!({
                        "Id": version.content_document_id,
                        "Title": version.title,
                        "LatestPublishedVersionId": version.id,
                        "FileExtension": version.fields.get("FileExtension"),
                        "ContentSize": version.bytes.len(),
                        "CreatedDate": version.fields.get("CreatedDate"),
                        "LastModifiedDate": version.fields.get("LastModifiedDate"),
                    });
                    let latest = latest.as_object().cloned().unwrap_or_default();
                    match documents
                        .iter_mut()
                        .find(|d| d.get("Id") == latest.get("Id"))
                    {
                        Some(existing) => *existing = latest,
                        None => documents.push(latest),
                    }
                }
                documents.into_iter().map(Cow::Owned).collect()
            }
            ObjectKind::ContentDocumentLink => self
                .links
                .iter()
                .filter_map(|link| {
                    let row = json!({
                        "Id": link.id,
                        "ContentDocumentId": link.content_document_id,
                        "LinkedEntityId": link.linked_entity_id,
                        "ShareType": "V",
                        "Visibility": "AllUsers",
                    });
                    row.as_object().cloned().map(Cow::Owned)
                })
                .collect(),
        }
    }

    /// The records a query can match: all of its object's, except that files looked up by
    /// the record they were published to come from that field directly (a sink does this
    /// before every upload; `soql::run` still applies every condition).
    pub fn query_candidates(&self, query: &super::soql::Query) -> Vec<Cow<'_, Map<String, Value>>> {
        let published_to = query
            .conditions
            .iter()
            .find(|c| c.field == "FirstPublishLocationId");
        match (query.object, published_to) {
            (ObjectKind::ContentVersion, Some(condition))
                if !condition.any_of.contains(&super::soql::Literal::Null) =>
            {
                let wanted: Vec<String> = condition
                    .any_of
                    .iter()
                    .filter_map(|literal| match literal {
                        super::soql::Literal::Text(text) => id::canonical(text),
                        _ => None,
                    })
                    .collect();
                self.content_versions
                    .iter()
                    .filter(|v| {
                        v.first_publish_location_id
                            .as_ref()
                            .is_some_and(|target| wanted.contains(target))
                    })
                    .map(|v| Cow::Borrowed(&v.fields))
                    .collect()
            }
            _ => self.records(query.object),
        }
    }

    /// The object an existing record id belongs to.
    pub fn object_of(&self, id: &str) -> Option<&'static str> {
        if !self.known.contains(id) && id != self.integration_user_id {
            return None;
        }
        Some(match id.get(..3)? {
            prefix::TASK => "Task",
            prefix::CONTACT => "Contact",
            prefix::LEAD => "Lead",
            prefix::USER => "User",
            prefix::CONTENT_VERSION => "ContentVersion",
            prefix::CONTENT_DOCUMENT => "ContentDocument",
            _ => return None,
        })
    }

    /// The Task external-id field usable for upserts named `name`, or the 404 Salesforce gives.
    pub fn upsert_key(&self, name: &str) -> Result<ExternalIdField, ApiError> {
        match &self.org.external_id_field {
            Some(field) if field.external_id && field.name.eq_ignore_ascii_case(name) => {
                Ok(field.clone())
            }
            _ => Err(ApiError::external_id_field_missing(name)),
        }
    }

    fn matches(field: &ExternalIdField, stored: &str, wanted: &str) -> bool {
        if field.unique && field.case_sensitive {
            stored == wanted
        } else {
            stored.eq_ignore_ascii_case(wanted)
        }
    }

    /// Indexes of the Tasks whose key matches `value` (case-insensitively unless the field
    /// is unique and case-sensitive).
    pub fn tasks_with(&self, field: &ExternalIdField, value: &str) -> Vec<usize> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| {
                task.get(&field.name)
                    .and_then(Value::as_str)
                    .is_some_and(|stored| Self::matches(field, stored, value))
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// The Tasks and id counter, for an all-or-none rollback.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            tasks: self.tasks.clone(),
            serial: self.serial,
            known: self.known.clone(),
        }
    }

    pub fn restore(&mut self, snapshot: Snapshot) {
        self.tasks = snapshot.tasks;
        self.serial = snapshot.serial;
        self.known = snapshot.known;
    }

    /// Inserts a Task as-is (no validation): for seeding, e.g. duplicates of a non-unique key.
    pub fn insert_task_raw(&mut self, mut fields: Map<String, Value>) -> String {
        let id = self.next_id(prefix::TASK);
        let now = now_text();
        fields.insert("Id".into(), json!(id));
        fields.entry("CreatedDate").or_insert(json!(now));
        fields.insert("LastModifiedDate".into(), json!(now));
        self.tasks.push(fields);
        self.known.insert(id.clone());
        id
    }

    /// One Task upsert by `key` = `value`, with `values` already parsed. Nothing is written on
    /// an error or an ambiguous key.
    pub fn upsert_task(
        &mut self,
        key: &ExternalIdField,
        value: &str,
        values: Map<String, Value>,
    ) -> Result<Upserted, RecordError> {
        let matches = self.tasks_with(key, value);
        let fields = self.fields(ObjectKind::Task);
        let access = self.org.task_access;
        match matches.as_slice() {
            [] => {
                if !access.create {
                    return Err(RecordError::new(
                        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                        "entity type cannot be inserted: Task",
                        &[],
                    ));
                }
                let references = |id: &str| self.object_of(id);
                record::check(&fields, &values, Mode::Create, &references)?;
                let mut task = Map::new();
                for field in &fields {
                    if let Some(default) = field.default {
                        let default = if field.name == "OwnerId" {
                            self.integration_user_id.clone()
                        } else {
                            default.to_owned()
                        };
                        task.insert(field.name.clone(), json!(default));
                    }
                }
                task.extend(values);
                task.insert(key.name.clone(), json!(value));
                if value.encode_utf16().count() > key.length as usize {
                    return Err(RecordError::new(
                        "STRING_TOO_LONG",
                        format!(
                            "Zoom Engagement Id: data value too large: {value} (max length={})",
                            key.length
                        ),
                        &[&key.name],
                    ));
                }
                Ok(Upserted::Created(self.insert_task_raw(task)))
            }
            [index] => {
                if !access.edit {
                    return Err(RecordError::new(
                        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                        "entity type cannot be updated: Task",
                        &[],
                    ));
                }
                let references = |id: &str| self.object_of(id);
                record::check(&fields, &values, Mode::Update, &references)?;
                let task = &mut self.tasks[*index];
                task.extend(values);
                task.insert("LastModifiedDate".into(), json!(now_text()));
                Ok(Upserted::Updated(
                    task.get("Id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                ))
            }
            several => Ok(Upserted::Ambiguous(
                several
                    .iter()
                    .filter_map(|&i| {
                        self.tasks[i]
                            .get("Id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect(),
            )),
        }
    }

    /// Updates the Task with record id `id` (15 or 18 characters). `Ok(None)` when there is
    /// no such Task.
    pub fn update_task(
        &mut self,
        id: &str,
        values: Map<String, Value>,
    ) -> Result<Option<String>, RecordError> {
        let Some(id) = id::canonical(id) else {
            return Ok(None);
        };
        let Some(index) = self
            .tasks
            .iter()
            .position(|t| t.get("Id").and_then(Value::as_str) == Some(id.as_str()))
        else {
            return Ok(None);
        };
        if !self.org.task_access.edit {
            return Err(RecordError::new(
                "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                "entity type cannot be updated: Task",
                &[],
            ));
        }
        let fields = self.fields(ObjectKind::Task);
        let references = |id: &str| self.object_of(id);
        record::check(&fields, &values, Mode::Update, &references)?;
        let task = &mut self.tasks[index];
        task.extend(values);
        task.insert("LastModifiedDate".into(), json!(now_text()));
        Ok(Some(id))
    }

    // ---- files

    /// Creates a ContentVersion (and its ContentDocument and the link to
    /// `FirstPublishLocationId`). `values` are parsed fields without `VersionData`.
    pub fn create_content_version(
        &mut self,
        mut values: Map<String, Value>,
        bytes: Option<Bytes>,
        upload: &'static str,
    ) -> Result<String, RecordError> {
        if !self.org.content_version_access.create {
            return Err(RecordError::new(
                "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                "entity type cannot be inserted: Content Version",
                &[],
            ));
        }
        let fields = self.fields(ObjectKind::ContentVersion);
        let references = |id: &str| self.object_of(id);
        record::check(&fields, &values, Mode::Create, &references)?;
        let location = values
            .get("ContentLocation")
            .and_then(Value::as_str)
            .unwrap_or("S")
            .to_owned();
        let path = values
            .get("PathOnClient")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut missing = Vec::new();
        if path.is_none() {
            missing.push("PathOnClient");
        }
        if location == "S" && bytes.is_none() {
            missing.push("VersionData");
        }
        if !missing.is_empty() {
            return Err(RecordError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            ));
        }
        let path = path.unwrap_or_default();
        let bytes = bytes.unwrap_or_default();
        // A version of an existing document, or the first version of a new one.
        let (document_id, version_number) =
            match values.get("ContentDocumentId").and_then(Value::as_str) {
                Some(existing) => {
                    let existing = id::canonical(existing).unwrap_or_default();
                    let earlier = self
                        .content_versions
                        .iter()
                        .filter(|v| v.content_document_id == existing)
                        .count();
                    for version in self
                        .content_versions
                        .iter_mut()
                        .filter(|v| v.content_document_id == existing)
                    {
                        version.fields.insert("IsLatest".into(), json!(false));
                    }
                    (existing, earlier + 1)
                }
                None => (self.next_id(prefix::CONTENT_DOCUMENT), 1),
            };
        let id = self.next_id(prefix::CONTENT_VERSION);
        self.known.insert(id.clone());
        self.known.insert(document_id.clone());
        let file_name = path.rsplit(['/', '\\']).next().unwrap_or(&path).to_owned();
        let title = match values.get("Title").and_then(Value::as_str) {
            Some(title) => title.to_owned(),
            None => file_name
                .rsplit_once('.')
                .map_or(file_name.clone(), |(stem, _)| stem.to_owned()),
        };
        let extension = file_name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default();
        let first_publish = values
            .get("FirstPublishLocationId")
            .and_then(Value::as_str)
            .and_then(id::canonical);
        let now = now_text();
        values.insert("Id".into(), json!(id));
        values.insert("Title".into(), json!(title));
        values.insert("ContentDocumentId".into(), json!(document_id));
        values.insert("ContentSize".into(), json!(bytes.len()));
        values.insert("FileExtension".into(), json!(extension));
        values.insert("IsLatest".into(), json!(true));
        values.insert("VersionNumber".into(), json!(version_number.to_string()));
        values.insert("ContentLocation".into(), json!(location));
        values.insert("CreatedDate".into(), json!(now));
        values.insert("LastModifiedDate".into(), json!(now));
        if let Some(target) = &first_publish {
            values.insert("FirstPublishLocationId".into(), json!(target));
            let link_id = self.next_id(prefix::CONTENT_DOCUMENT_LINK);
            self.links.push(ContentDocumentLink {
                id: link_id,
                content_document_id: document_id.clone(),
                linked_entity_id: target.clone(),
            });
        }
        self.content_versions.push(StoredContentVersion {
            id: id.clone(),
            content_document_id: document_id,
            title,
            path_on_client: path,
            first_publish_location_id: first_publish,
            bytes,
            upload,
            fields: values,
        });
        Ok(id)
    }
}
