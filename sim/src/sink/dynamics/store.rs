//! The environment's live data and the Web API's rules over it: phonecall
//! upsert by id or alternate key (with `If-Match`/`If-None-Match`), the
//! read-only rule of closed activities and the state/status pairs,
//! annotations with `documentbody` within `maxuploadfilesize`, lookups with
//! `$select`/`$filter`/`$top`, `WhoAmI`, `organizations`, the table's keys,
//! and `$batch` change sets applied all or nothing. Errors are the Web API's
//! `{"error":{"code","message"}}`. No HTTP here: `server` hands requests in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::batch::{self, Answered, Part};
use super::odata::{self, FilterError, Key};
use super::org::Environment;

/// "Bad Request - Error in query syntax."
pub const QUERY_SYNTAX: &str = "0x8006088a";
const NOT_FOUND: &str = "0x80040217";
const INVALID_ARGUMENT: &str = "0x80040203";
const NO_PROPERTY: &str = "0x80060888";
const TOO_LONG: &str = "0x80044331";
const ATTACHMENT_TOO_LARGE: &str = "0x80043e09";
const DUPLICATE: &str = "0x80040237";
const BAD_PAYLOAD: &str = "0x80060891";
pub const THROTTLED: &str = "0x80072322";
const UNEXPECTED: &str = "0x80040216";

/// One answer of the Web API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; odata.metadata=minimal".into(),
            )],
            body: Some(body.to_string()),
        }
    }

    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(status, json!({"error": {"code": code, "message": message}}))
    }

    fn no_content(entity: Option<String>) -> Reply {
        Reply {
            status: 204,
            headers: entity
                .map(|e| vec![("OData-EntityId".into(), e)])
                .unwrap_or_default(),
            body: None,
        }
    }
}

/// How many requests of each kind the fake answered (refused ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub token: u64,
    /// Web API requests over HTTP ($batch counts one).
    pub requests: u64,
    pub batch: u64,
    /// Change sets inside them (applied or rolled back).
    pub change_sets: u64,
    /// Phonecall writes (PATCH or POST), inside batches too.
    pub phonecall_writes: u64,
    pub annotation_creates: u64,
    pub annotation_updates: u64,
    pub contact_queries: u64,
    pub throttled: u64,
    pub unauthorized: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub unavailable_next: u32,
    pub throttle_next: u32,
    pub throttle_retry_after: u64,
}

/// The records, cloned for a change set's rollback.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub phonecalls: BTreeMap<String, Map<String, Value>>,
    pub annotations: BTreeMap<String, Map<String, Value>>,
    pub contacts: BTreeMap<String, Map<String, Value>>,
    /// Annotations' `documentbody`, decoded, by annotation id: kept out of
    /// the records so a change set's snapshot does not copy every file.
    pub bodies: BTreeMap<String, Arc<Vec<u8>>>,
}

pub struct Store {
    pub env: Environment,
    pub data: Data,
    pub tokens: HashMap<String, Instant>,
    pub faults: Faults,
    pub counts: RequestCounts,
    pub organization_id: String,
    pub user_id: String,
    pub business_unit_id: String,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    sequence: u64,
}

pub fn guid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

const PHONECALL_COLUMNS: &[&str] = &[
    "activityid",
    "subject",
    "description",
    "phonenumber",
    "directioncode",
    "actualdurationminutes",
    "actualstart",
    "actualend",
    "scheduledstart",
    "scheduledend",
    "statecode",
    "statuscode",
    "category",
    "leftvoicemail",
    "prioritycode",
    "_regardingobjectid_value",
    "createdon",
    "modifiedon",
];
const ANNOTATION_COLUMNS: &[&str] = &[
    "annotationid",
    "subject",
    "notetext",
    "filename",
    "mimetype",
    "documentbody",
    "filesize",
    "isdocument",
    "objecttypecode",
    "_objectid_value",
    "createdon",
    "modifiedon",
];
const CONTACT_COLUMNS: &[&str] = &[
    "contactid",
    "firstname",
    "lastname",
    "fullname",
    "telephone1",
    "telephone2",
    "mobilephone",
    "emailaddress1",
    "statecode",
];

fn columns_of(set: &str) -> Option<(&'static str, &'static str, &'static [&'static str])> {
    match set {
        "phonecalls" => Some(("phonecall", "activityid", PHONECALL_COLUMNS)),
        "annotations" => Some(("annotation", "annotationid", ANNOTATION_COLUMNS)),
        "contacts" => Some(("contact", "contactid", CONTACT_COLUMNS)),
        _ => None,
    }
}

fn no_property(name: &str, entity: &str) -> Reply {
    Reply::error(
        400,
        NO_PROPERTY,
        &format!(
            "The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{entity}'. Make sure to only use property names that are defined by the type or mark the type as open type."
        ),
    )
}

fn too_long(column: &str, entity: &str, limit: usize) -> Reply {
    Reply::error(
        400,
        TOO_LONG,
        &format!(
            "A validation error occurred. The length of the '{column}' attribute of the '{entity}' entity exceeded the maximum allowed length of '{limit}'."
        ),
    )
}

fn bad_literal(value: &Value, edm: &str) -> Reply {
    Reply::error(
        400,
        BAD_PAYLOAD,
        &format!("Cannot convert the literal '{value}' to the expected type '{edm}'."),
    )
}

fn text_field(
    out: &mut Map<String, Value>,
    name: &str,
    value: &Value,
    limit: usize,
    entity: &str,
) -> Result<(), Reply> {
    match value {
        Value::Null => {
            out.insert(name.into(), Value::Null);
            Ok(())
        }
        Value::String(text) if text.chars().count() > limit => Err(too_long(name, entity, limit)),
        Value::String(_) => {
            out.insert(name.into(), value.clone());
            Ok(())
        }
        other => Err(bad_literal(other, "Edm.String")),
    }
}

fn key_forbidden(value: &str) -> bool {
    value.chars().any(|c| "/<>*%&:\\?+".contains(c))
}

impl Store {
    pub fn new(env: Environment, base_url: String) -> Store {
        let mut data = Data::default();
        for contact in &env.contacts {
            let id = guid();
            data.contacts
                .insert(id.clone(), contact_record(&id, contact));
        }
        Store {
            env,
            data,
            tokens: HashMap::new(),
            faults: Faults::default(),
            counts: RequestCounts::default(),
            organization_id: guid(),
            user_id: guid(),
            business_unit_id: guid(),
            base_url,
            sequence: 0,
        }
    }

    pub fn add_contact(&mut self, contact: &super::org::Contact) -> String {
        let id = guid();
        self.data
            .contacts
            .insert(id.clone(), contact_record(&id, contact));
        id
    }

    fn api_root(&self) -> String {
        format!("{}/api/data/v9.2", self.base_url)
    }

    fn entity_url(&self, set: &str, id: &str) -> String {
        format!("{}/{set}({id})", self.api_root())
    }

    /// A Web API request below `/api/data/v9.2/` (`target` keeps its query).
    pub fn api(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
        content_type: &str,
    ) -> Reply {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let Some(path) = odata::decode(path) else {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        };
        if path == "$batch" {
            return if method == "POST" {
                let go_on = headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("prefer")
                        && v.split(',')
                            .any(|p| p.trim().eq_ignore_ascii_case("odata.continue-on-error"))
                });
                self.batch(content_type, body, go_on)
            } else {
                Reply::error(
                    405,
                    UNEXPECTED,
                    "The requested resource does not support http method.",
                )
            };
        }
        if path == "WhoAmI" && method == "GET" {
            return Reply::json(
                200,
                json!({
                    "@odata.context": format!("{}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", self.api_root()),
                    "BusinessUnitId": self.business_unit_id,
                    "UserId": self.user_id,
                    "OrganizationId": self.organization_id,
                }),
            );
        }
        let Some(resource) = odata::resource(&path) else {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        };
        let options = odata::options(query);
        match (method, resource.set.as_str()) {
            ("GET", "organizations") if resource.key.is_none() => {
                let record = json!({
                    "organizationid": self.organization_id,
                    "maxuploadfilesize": self.env.max_upload,
                    "name": "fake",
                });
                Reply::json(
                    200,
                    json!({"value": [select(&record, options.get("$select"))]}),
                )
            }
            ("GET", "EntityDefinitions") => self.entity_definitions(&resource),
            (_, set) if columns_of(set).is_some() => {
                self.table(method, &resource, &options, headers, body)
            }
            _ => Reply::error(
                404,
                UNEXPECTED,
                &format!("Resource not found for the segment '{}'.", resource.set),
            ),
        }
    }

    fn entity_definitions(&self, resource: &odata::Resource) -> Reply {
        let Some(Key::Alternate(pairs)) = &resource.key else {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        };
        if pairs.len() != 1 || pairs[0].0 != "LogicalName" {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        }
        let logical = pairs[0].1.as_str();
        if !["phonecall", "annotation", "contact"].contains(&logical) {
            return Reply::error(
                404,
                NOT_FOUND,
                &format!("Could not find entity with LogicalName '{logical}'"),
            );
        }
        match resource.rest.as_deref() {
            None => Reply::json(
                200,
                json!({"LogicalName": logical, "EntitySetName": format!("{logical}s")}),
            ),
            Some("Keys") => {
                let keys: Vec<Value> = match (&self.env.key, logical) {
                    (Some(key), "phonecall") => vec![json!({
                        "LogicalName": key.name,
                        "KeyAttributes": [key.column],
                        "EntityKeyIndexStatus": key.status.as_str(),
                    })],
                    _ => Vec::new(),
                };
                Reply::json(200, json!({"value": keys}))
            }
            Some(_) => Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax."),
        }
    }

    /// The record a key names: `Ok(Some(id))`, `Ok(None)` absent, `Err` a
    /// key the table does not have (no active alternate key on it).
    fn resolve(&self, set: &str, key: &Key) -> Result<Option<String>, Reply> {
        let records = match set {
            "phonecalls" => &self.data.phonecalls,
            "annotations" => &self.data.annotations,
            _ => &self.data.contacts,
        };
        match key {
            Key::Id(id) => Ok(records.contains_key(id).then(|| id.clone())),
            Key::Alternate(pairs) => {
                let usable = set == "phonecalls"
                    && pairs.len() == 1
                    && self.env.key.as_ref().is_some_and(|k| {
                        k.column == pairs[0].0 && k.status == super::org::KeyStatus::Active
                    });
                if !usable {
                    return Err(Reply::error(
                        400,
                        QUERY_SYNTAX,
                        "Bad Request - Error in query syntax.",
                    ));
                }
                let (column, value) = &pairs[0];
                if key_forbidden(value) {
                    return Err(Reply::error(
                        400,
                        INVALID_ARGUMENT,
                        &format!(
                            "The key value for '{column}' contains a character alternate keys do not allow: / < > * % & : \\ ? +"
                        ),
                    ));
                }
                Ok(records
                    .iter()
                    .find(|(_, r)| r.get(column).and_then(Value::as_str) == Some(value.as_str()))
                    .map(|(id, _)| id.clone()))
            }
        }
    }

    fn table(
        &mut self,
        method: &str,
        resource: &odata::Resource,
        options: &HashMap<String, String>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Reply {
        let set = resource.set.as_str();
        let (entity, _, columns) = columns_of(set).unwrap_or(("?", "?", &[]));
        if resource.rest.is_some() {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        }
        if let Some(select) = options.get("$select") {
            for name in select.split(',') {
                let name = name.trim();
                let known = columns.contains(&name)
                    || (set == "phonecalls"
                        && self.env.key.as_ref().is_some_and(|k| k.column == name));
                if !known {
                    return Reply::error(
                        400,
                        NO_PROPERTY,
                        &format!(
                            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
                        ),
                    );
                }
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        match (method, &resource.key) {
            ("GET", None) => self.list(set, options),
            ("GET", Some(key)) => match self.resolve(set, key) {
                Err(reply) => reply,
                Ok(None) => not_found(entity, key),
                Ok(Some(id)) => {
                    let record = self.with_body(&self.records(set)[&id]);
                    let mut out = select(&record, options.get("$select"));
                    out["@odata.context"] =
                        json!(format!("{}/$metadata#{set}/$entity", self.api_root()));
                    Reply::json(200, out)
                }
            },
            ("POST", None) if set == "contacts" => Reply::error(
                403,
                "0x80040220",
                "Principal user is missing prvCreateContact privilege.",
            ),
            ("POST", None) => {
                let body = match parse_object(body) {
                    Ok(body) => body,
                    Err(reply) => return reply,
                };
                self.write(set, None, None, body)
            }
            ("PATCH", Some(key)) => {
                let body = match parse_object(body) {
                    Ok(body) => body,
                    Err(reply) => return reply,
                };
                let found = match self.resolve(set, key) {
                    Ok(found) => found,
                    Err(reply) => return reply,
                };
                if header("if-match") == Some("*") && found.is_none() {
                    return not_found(entity, key);
                }
                if header("if-none-match") == Some("*") && found.is_some() {
                    return Reply::error(
                        412,
                        DUPLICATE,
                        "A record with matching key values already exists.",
                    );
                }
                if set != "phonecalls" && found.is_none() {
                    return not_found(entity, key);
                }
                self.write(set, found, Some(key.clone()), body)
            }
            _ => Reply::error(
                405,
                UNEXPECTED,
                "The requested resource does not support http method.",
            ),
        }
    }

    /// A record as the API shows it: an annotation with its `documentbody`.
    fn with_body(&self, record: &Map<String, Value>) -> Value {
        let mut record = record.clone();
        if let Some(body) = record
            .get("annotationid")
            .and_then(Value::as_str)
            .and_then(|id| self.data.bodies.get(id))
        {
            record.insert("documentbody".into(), json!(BASE64.encode(body.as_slice())));
        }
        Value::Object(record)
    }

    fn records(&self, set: &str) -> &BTreeMap<String, Map<String, Value>> {
        match set {
            "phonecalls" => &self.data.phonecalls,
            "annotations" => &self.data.annotations,
            _ => &self.data.contacts,
        }
    }

    fn list(&mut self, set: &str, options: &HashMap<String, String>) -> Reply {
        let (entity, _, columns) = columns_of(set).unwrap_or(("?", "?", &[]));
        if set == "contacts" {
            self.counts.contact_queries += 1;
        }
        let key_column = self.env.key.as_ref().map(|k| k.column.clone());
        let known = |p: &str| columns.contains(&p) || key_column.as_deref() == Some(p);
        let filter = match options.get("$filter") {
            None => None,
            Some(text) => match odata::filter(text, &known) {
                Ok(filter) => Some(filter),
                Err(FilterError::Syntax) => {
                    return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
                }
                Err(FilterError::UnknownProperty(name)) => {
                    return Reply::error(
                        400,
                        NO_PROPERTY,
                        &format!(
                            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
                        ),
                    );
                }
            },
        };
        let top = match options.get("$top").map(|t| t.parse::<usize>()) {
            None => 5000,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
            }
        };
        let value: Vec<Value> = self
            .records(set)
            .values()
            .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
            .take(top)
            .map(|r| select(&self.with_body(r), options.get("$select")))
            .collect();
        Reply::json(
            200,
            json!({"@odata.context": format!("{}/$metadata#{set}", self.api_root()), "value": value}),
        )
    }

    /// A create (`found` None) or update of `set`.
    fn write(
        &mut self,
        set: &str,
        found: Option<String>,
        key: Option<Key>,
        body: Map<String, Value>,
    ) -> Reply {
        match set {
            "phonecalls" => self.write_phonecall(found, key, body),
            _ => self.write_annotation(found, body),
        }
    }

    fn write_phonecall(
        &mut self,
        found: Option<String>,
        key: Option<Key>,
        body: Map<String, Value>,
    ) -> Reply {
        self.counts.phonecall_writes += 1;
        let key_column = self.env.key.as_ref().map(|k| k.column.clone());
        let mut changes = Map::new();
        let mut parties: Option<Vec<Value>> = None;
        let mut regarding: Option<Option<String>> = None;
        for (name, value) in &body {
            let result = match name.as_str() {
                "subject" => text_field(&mut changes, name, value, 200, "phonecall"),
                "description" => text_field(&mut changes, name, value, 2000, "phonecall"),
                "phonenumber" => text_field(&mut changes, name, value, 200, "phonecall"),
                "category" => text_field(&mut changes, name, value, 250, "phonecall"),
                "directioncode" | "leftvoicemail" => match value {
                    Value::Bool(_) | Value::Null => {
                        changes.insert(name.clone(), value.clone());
                        Ok(())
                    }
                    other => Err(bad_literal(other, "Edm.Boolean")),
                },
                "actualdurationminutes" | "statecode" | "statuscode" | "prioritycode" => {
                    match value.as_i64() {
                        Some(n) if (0..=i32::MAX as i64).contains(&n) => {
                            changes.insert(name.clone(), json!(n));
                            Ok(())
                        }
                        _ => Err(bad_literal(value, "Edm.Int32")),
                    }
                }
                "actualstart" | "actualend" | "scheduledstart" | "scheduledend" => match value {
                    Value::String(text) if text.parse::<jiff::Timestamp>().is_ok() => {
                        changes.insert(name.clone(), value.clone());
                        Ok(())
                    }
                    Value::Null => {
                        changes.insert(name.clone(), Value::Null);
                        Ok(())
                    }
                    other => Err(bad_literal(other, "Edm.DateTimeOffset")),
                },
                "regardingobjectid_contact@odata.bind" => match self.bound_contact(value) {
                    Ok(id) => {
                        regarding = Some(Some(id));
                        Ok(())
                    }
                    Err(reply) => Err(reply),
                },
                "phonecall_activity_parties" => match self.parties(value) {
                    Ok(list) => {
                        parties = Some(list);
                        Ok(())
                    }
                    Err(reply) => Err(reply),
                },
                column if Some(column) == key_column.as_deref() => {
                    text_field(&mut changes, name, value, 100, "phonecall")
                }
                other => Err(no_property(other, "phonecall")),
            };
            if let Err(reply) = result {
                return reply;
            }
        }
        // The key's value is the column's value.
        if let (Some(Key::Alternate(pairs)), Some(column)) = (&key, &key_column) {
            let value = &pairs[0].1;
            if changes
                .get(column)
                .is_some_and(|v| v.as_str() != Some(value.as_str()))
            {
                return Reply::error(
                    400,
                    INVALID_ARGUMENT,
                    &format!("The value of '{column}' in the body differs from the key."),
                );
            }
            changes.insert(column.clone(), json!(value));
        }
        let existing = found
            .as_ref()
            .and_then(|id| self.data.phonecalls.get(id))
            .cloned();
        let old_state = existing
            .as_ref()
            .and_then(|r| r.get("statecode").and_then(Value::as_i64))
            .unwrap_or(0);
        let new_state = changes.get("statecode").and_then(Value::as_i64);
        if old_state != 0 && new_state != Some(0) {
            // Choice: the wording of the "closed activity is read-only" error.
            return Reply::error(
                400,
                INVALID_ARGUMENT,
                "This phonecall is closed (completed or canceled) and cannot be updated; set statecode to 0 (Open) to reopen it first.",
            );
        }
        let state = new_state.unwrap_or(old_state);
        let status = match changes.get("statuscode").and_then(Value::as_i64) {
            Some(status) => status,
            None if new_state.is_some() => match state {
                0 => 1,
                1 => 2,
                _ => 3,
            },
            None => existing
                .as_ref()
                .and_then(|r| r.get("statuscode").and_then(Value::as_i64))
                .unwrap_or(1),
        };
        let valid = match state {
            0 => status == 1,
            1 => status == 2 || status == 4,
            2 => status == 3,
            _ => false,
        };
        if !valid {
            let state_name = [
                "PhoneCallState.Open",
                "PhoneCallState.Completed",
                "PhoneCallState.Canceled",
            ]
            .get(state as usize)
            .copied()
            .unwrap_or("?");
            return Reply::error(
                400,
                INVALID_ARGUMENT,
                &format!(
                    "{status} is not a valid status code for state code {state_name} on phonecall"
                ),
            );
        }
        changes.insert("statecode".into(), json!(state));
        changes.insert("statuscode".into(), json!(status));
        let id = found.unwrap_or_else(|| match &key {
            Some(Key::Id(id)) => id.clone(),
            _ => guid(),
        });
        let stamp = now();
        let record = self.data.phonecalls.entry(id.clone()).or_insert_with(|| {
            let mut record = Map::new();
            record.insert("activityid".into(), json!(id));
            record.insert("createdon".into(), json!(stamp));
            record
        });
        record.extend(changes);
        record.insert("modifiedon".into(), json!(stamp));
        if let Some(regarding) = regarding {
            record.insert("_regardingobjectid_value".into(), json!(regarding));
        }
        if let Some(parties) = parties {
            record.insert("parties".into(), Value::Array(parties));
        }
        self.sequence += 1;
        Reply::no_content(Some(self.entity_url("phonecalls", &id)))
    }

    /// `/contacts(<id>)` → the contact's id, when it exists.
    fn bound_contact(&self, value: &Value) -> Result<String, Reply> {
        let text = value
            .as_str()
            .ok_or_else(|| bad_literal(value, "Edm.String"))?;
        let path = text.trim_start_matches('/');
        let path = path
            .strip_prefix(&format!("{}/", self.api_root()))
            .unwrap_or(path);
        let resource = odata::resource(path).filter(|r| r.set == "contacts" && r.rest.is_none());
        let Some(key) = resource.and_then(|r| r.key) else {
            return Err(Reply::error(
                400,
                INVALID_ARGUMENT,
                &format!("The value '{text}' is not a valid entity reference for contacts."),
            ));
        };
        match self.resolve("contacts", &key)? {
            Some(id) => Ok(id),
            None => Err(not_found("contact", &key)),
        }
    }

    fn parties(&self, value: &Value) -> Result<Vec<Value>, Reply> {
        let list = value.as_array().ok_or_else(|| {
            bad_literal(value, "Collection(Microsoft.Dynamics.CRM.activityparty)")
        })?;
        let mut out = Vec::new();
        for party in list {
            let Some(party) = party.as_object() else {
                return Err(bad_literal(party, "Microsoft.Dynamics.CRM.activityparty"));
            };
            let mut resolved = Map::new();
            for (name, value) in party {
                match name.as_str() {
                    "participationtypemask" => match value.as_i64() {
                        Some(mask @ 1..=11) => {
                            resolved.insert(name.clone(), json!(mask));
                        }
                        _ => {
                            return Err(Reply::error(
                                400,
                                INVALID_ARGUMENT,
                                &format!("{value} is not a valid participationtypemask"),
                            ));
                        }
                    },
                    "partyid_contact@odata.bind" => {
                        let id = self.bound_contact(value)?;
                        resolved.insert("_partyid_value".into(), json!(id));
                        resolved.insert("partyobjecttypecode".into(), json!("contact"));
                    }
                    "partyid_systemuser@odata.bind" => {
                        let text = value.as_str().unwrap_or("");
                        if !text.contains(&self.user_id) {
                            return Err(Reply::error(
                                404,
                                NOT_FOUND,
                                &format!("systemuser With Ids = {text} Do Not Exist"),
                            ));
                        }
                        resolved.insert("_partyid_value".into(), json!(self.user_id));
                        resolved.insert("partyobjecttypecode".into(), json!("systemuser"));
                    }
                    "addressused" => {
                        resolved.insert(name.clone(), value.clone());
                    }
                    other => return Err(no_property(other, "activityparty")),
                }
            }
            if !resolved.contains_key("participationtypemask") {
                return Err(Reply::error(
                    400,
                    INVALID_ARGUMENT,
                    "An activity party needs a participationtypemask.",
                ));
            }
            out.push(Value::Object(resolved));
        }
        Ok(out)
    }

    fn write_annotation(&mut self, found: Option<String>, body: Map<String, Value>) -> Reply {
        let mut changes = Map::new();
        let mut object: Option<String> = None;
        let mut document: Option<Vec<u8>> = None;
        for (name, value) in &body {
            let result = match name.as_str() {
                "subject" => text_field(&mut changes, name, value, 500, "annotation"),
                "notetext" => text_field(&mut changes, name, value, 100_000, "annotation"),
                "filename" => text_field(&mut changes, name, value, 255, "annotation"),
                "mimetype" => text_field(&mut changes, name, value, 256, "annotation"),
                "isdocument" => match value {
                    Value::Bool(_) => {
                        changes.insert(name.clone(), value.clone());
                        Ok(())
                    }
                    other => Err(bad_literal(other, "Edm.Boolean")),
                },
                "documentbody" => match value.as_str() {
                    Some(text) if text.len() as u64 > self.env.max_upload => Err(Reply::error(
                        400,
                        ATTACHMENT_TOO_LARGE,
                        "The attachment is either not a valid type or is too large. It cannot be uploaded or downloaded.",
                    )),
                    Some(text) => match BASE64.decode(text) {
                        Ok(bytes) => {
                            changes.insert("filesize".into(), json!(bytes.len()));
                            changes.insert("isdocument".into(), json!(true));
                            document = Some(bytes);
                            Ok(())
                        }
                        Err(_) => Err(bad_literal(&json!("<documentbody>"), "Edm.Binary")),
                    },
                    None => Err(bad_literal(value, "Edm.String")),
                },
                "objectid_phonecall@odata.bind" => match self.bound_phonecall(value) {
                    Ok(id) => {
                        object = Some(id);
                        Ok(())
                    }
                    Err(reply) => Err(reply),
                },
                other => Err(no_property(other, "annotation")),
            };
            if let Err(reply) = result {
                return reply;
            }
        }
        let stamp = now();
        let id = match found {
            Some(id) => {
                self.counts.annotation_updates += 1;
                id
            }
            None => {
                self.counts.annotation_creates += 1;
                let id = guid();
                let mut record = Map::new();
                record.insert("annotationid".into(), json!(id));
                record.insert("createdon".into(), json!(stamp));
                record.insert("isdocument".into(), json!(false));
                self.data.annotations.insert(id.clone(), record);
                id
            }
        };
        let record = self
            .data
            .annotations
            .get_mut(&id)
            .expect("created or found above");
        record.extend(changes);
        if let Some(object) = object {
            record.insert("_objectid_value".into(), json!(object));
            record.insert("objecttypecode".into(), json!("phonecall"));
        }
        record.insert("modifiedon".into(), json!(stamp));
        if let Some(bytes) = document {
            self.data.bodies.insert(id.clone(), Arc::new(bytes));
        }
        Reply::no_content(Some(self.entity_url("annotations", &id)))
    }

    fn bound_phonecall(&self, value: &Value) -> Result<String, Reply> {
        let text = value
            .as_str()
            .ok_or_else(|| bad_literal(value, "Edm.String"))?;
        let path = text.trim_start_matches('/');
        let path = path
            .strip_prefix(&format!("{}/", self.api_root()))
            .unwrap_or(path);
        let decoded = odata::decode(path).unwrap_or_default();
        let resource =
            odata::resource(&decoded).filter(|r| r.set == "phonecalls" && r.rest.is_none());
        let Some(key) = resource.and_then(|r| r.key) else {
            return Err(Reply::error(
                400,
                INVALID_ARGUMENT,
                &format!("The value '{text}' is not a valid entity reference for phonecalls."),
            ));
        };
        match self.resolve("phonecalls", &key)? {
            Some(id) => Ok(id),
            None => Err(not_found("phonecall", &key)),
        }
    }

    /// A `$batch`: single requests answered one by one; a change set applied
    /// whole, or rolled back with only its failed request's answer. The
    /// first failure ends the batch (what follows is not run and gets no
    /// answer) unless the request said `Prefer: odata.continue-on-error`.
    fn batch(&mut self, content_type: &str, body: &[u8], go_on: bool) -> Reply {
        self.counts.batch += 1;
        let text = String::from_utf8_lossy(body);
        let parts = match batch::read(content_type, &text) {
            Ok(parts) => parts,
            Err(why) => {
                return Reply::error(
                    400,
                    BAD_PAYLOAD,
                    &format!("The batch request body is not valid: {why}"),
                );
            }
        };
        let mut answered = Vec::new();
        for part in parts {
            match part {
                Part::Single(request) => {
                    let reply = self.inner(&request, &HashMap::new());
                    let failed = !(200..300).contains(&reply.status);
                    answered.push(Answered::Single(answer(reply, request.content_id)));
                    if failed && !go_on {
                        break;
                    }
                }
                Part::ChangeSet(requests) => {
                    self.counts.change_sets += 1;
                    let saved = self.data.clone();
                    let mut ids: HashMap<String, String> = HashMap::new();
                    let mut answers = Vec::new();
                    let mut failed = None;
                    for request in requests {
                        if request.method == "GET" {
                            failed = Some(answer(
                                Reply::error(
                                    400,
                                    BAD_PAYLOAD,
                                    "A change set cannot contain a GET request.",
                                ),
                                request.content_id,
                            ));
                            break;
                        }
                        let reply = self.inner(&request, &ids);
                        if !(200..300).contains(&reply.status) {
                            failed = Some(answer(reply, request.content_id));
                            break;
                        }
                        if let (Some(cid), Some((_, entity))) = (
                            &request.content_id,
                            reply.headers.iter().find(|(n, _)| n == "OData-EntityId"),
                        ) {
                            ids.insert(cid.clone(), entity.clone());
                        }
                        answers.push(answer(reply, request.content_id));
                    }
                    match failed {
                        Some(failure) => {
                            self.data = saved;
                            answered.push(Answered::Single(failure));
                            if !go_on {
                                break;
                            }
                        }
                        None => answered.push(Answered::ChangeSet(answers)),
                    }
                }
            }
        }
        let (body, content_type) = batch::write(&answered, &format!("{:x}", rand::random::<u64>()));
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type)],
            body: Some(body),
        }
    }

    fn inner(&mut self, request: &batch::Request, ids: &HashMap<String, String>) -> Reply {
        let root = format!("{}/", self.api_root());
        let mut url = request.url.clone();
        // `$n` names what the change set's request n created.
        if let Some(rest) = url.strip_prefix('$') {
            let (n, tail) = rest.split_at(
                rest.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len()),
            );
            match ids.get(n) {
                Some(entity) => url = format!("{entity}{tail}"),
                None => {
                    return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
                }
            }
        }
        let target = if let Some(rest) = url.strip_prefix(&root) {
            rest.to_owned()
        } else if url.starts_with("http://") || url.starts_with("https://") {
            return Reply::error(400, QUERY_SYNTAX, "Bad Request - Error in query syntax.");
        } else {
            url.trim_start_matches("/api/data/v9.2/")
                .trim_start_matches('/')
                .to_owned()
        };
        // `"$n"` as a binding's value names what request n created.
        let mut body = request.body.clone();
        if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) {
            for (name, value) in map.iter_mut() {
                if let Some(n) = value.as_str().and_then(|v| v.strip_prefix('$'))
                    && name.ends_with("@odata.bind")
                {
                    match ids.get(n) {
                        Some(entity) => *value = json!(entity),
                        None => {
                            return Reply::error(
                                400,
                                QUERY_SYNTAX,
                                "Bad Request - Error in query syntax.",
                            );
                        }
                    }
                }
            }
            body = Value::Object(map).to_string().into_bytes();
        }
        let content_type = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.api(
            &request.method,
            &target,
            &request.headers,
            &body,
            &content_type,
        )
    }
}

fn answer(reply: Reply, content_id: Option<String>) -> batch::Answer {
    batch::Answer {
        status: reply.status,
        headers: reply.headers,
        body: reply.body,
        content_id,
    }
}

fn not_found(entity: &str, key: &Key) -> Reply {
    match key {
        Key::Id(id) => Reply::error(
            404,
            NOT_FOUND,
            &format!("{entity} With Id = {id} Does Not Exist"),
        ),
        Key::Alternate(_) => Reply::error(
            404,
            NOT_FOUND,
            &format!("A record with the specified key values does not exist in {entity} entity"),
        ),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Reply::error(
            400,
            BAD_PAYLOAD,
            "The request body is not a JSON object.",
        )),
    }
}

/// `record` with only the `$select`ed properties (all without one).
/// The primary key is always returned.
fn select(record: &Value, select: Option<&String>) -> Value {
    const PRIMARY: &[&str] = &["activityid", "annotationid", "contactid", "organizationid"];
    match (record, select) {
        (Value::Object(map), Some(select)) => {
            let names: Vec<&str> = select.split(',').map(str::trim).collect();
            Value::Object(
                map.iter()
                    .filter(|(k, _)| names.contains(&k.as_str()) || PRIMARY.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        _ => record.clone(),
    }
}

fn contact_record(id: &str, contact: &super::org::Contact) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("contactid".into(), json!(id));
    record.insert("firstname".into(), json!(contact.firstname));
    record.insert("lastname".into(), json!(contact.lastname));
    record.insert(
        "fullname".into(),
        json!(format!("{} {}", contact.firstname, contact.lastname)),
    );
    record.insert("telephone1".into(), json!(contact.telephone1));
    record.insert("mobilephone".into(), json!(contact.mobilephone));
    record.insert("statecode".into(), json!(0));
    record
}
