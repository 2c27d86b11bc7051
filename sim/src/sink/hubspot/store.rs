//! The portal's live data and the API's rules over it: calls batch upsert by
//! a unique property, reads by id or unique property, v4 default
//! associations, the contacts search (with its index lag), call
//! dispositions, calls properties, the files API (multipart upload, search).
//! Errors are HubSpot's `{status, message, correlationId, category}`. No
//! HTTP here: `server` hands requests in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::portal::{DEFAULT_DISPOSITIONS, Portal};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

fn correlation() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub fn error(status: u16, category: &str, message: &str) -> Reply {
    Reply {
        status,
        body: json!({
            "status": "error",
            "message": message,
            "correlationId": correlation(),
            "category": category,
        }),
    }
}

fn ok(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

/// How many requests of each kind the fake answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub requests: u64,
    pub upserts: u64,
    pub uploads: u64,
    pub searches: u64,
    pub associations: u64,
    pub throttled: u64,
    pub unauthorized: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    /// The next n requests answer 429 with this policy.
    pub throttle_next: u32,
    pub throttle_policy: String,
    pub unavailable_next: u32,
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub id: String,
    pub path: String,
    pub name: String,
    pub bytes: Vec<u8>,
    pub access: String,
}

pub struct Store {
    pub portal: Portal,
    pub calls: BTreeMap<String, Map<String, Value>>,
    pub contacts: BTreeMap<String, (Map<String, Value>, Instant)>,
    /// (call id, contact id) with type 194.
    pub associations: BTreeSet<(String, String)>,
    pub files: BTreeMap<String, StoredFile>,
    pub faults: Faults,
    pub counts: RequestCounts,
    /// New contacts stay out of search results this long.
    pub search_lag: Duration,
    next_id: u64,
}

/// The calls properties HubSpot defines that the fake knows.
const CALL_PROPERTIES: &[&str] = &[
    "hs_timestamp",
    "hs_call_title",
    "hs_call_body",
    "hs_call_direction",
    "hs_call_duration",
    "hs_call_from_number",
    "hs_call_to_number",
    "hs_call_status",
    "hs_call_recording_url",
    "hs_call_disposition",
    "hubspot_owner_id",
    "hs_attachment_ids",
];
const CALL_STATUSES: &[&str] = &[
    "BUSY",
    "CALLING_CRM_USER",
    "CANCELED",
    "COMPLETED",
    "CONNECTING",
    "FAILED",
    "IN_PROGRESS",
    "NO_ANSWER",
    "QUEUED",
    "RINGING",
];

fn missing_scopes(scopes: &[&str]) -> Reply {
    Reply {
        status: 403,
        body: json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
            "correlationId": correlation(),
            "errors": [{
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": scopes},
            }],
            "category": "MISSING_SCOPES",
        }),
    }
}

fn validation(message: &str) -> Reply {
    error(400, "VALIDATION_ERROR", message)
}

impl Store {
    pub fn new(portal: Portal) -> Store {
        let mut store = Store {
            portal: portal.clone(),
            calls: BTreeMap::new(),
            contacts: BTreeMap::new(),
            associations: BTreeSet::new(),
            files: BTreeMap::new(),
            faults: Faults::default(),
            counts: RequestCounts::default(),
            search_lag: Duration::ZERO,
            next_id: 1000,
        };
        for contact in &portal.contacts {
            store.add_contact(contact);
        }
        // Seeded contacts are indexed already.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        for (_, at) in store.contacts.values_mut() {
            *at = long_ago;
        }
        store
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    pub fn add_contact(&mut self, contact: &super::portal::Contact) -> String {
        let id = self.id();
        let mut properties = Map::new();
        properties.insert("firstname".into(), json!(contact.firstname));
        properties.insert("lastname".into(), json!(contact.lastname));
        properties.insert("phone".into(), json!(contact.phone));
        properties.insert("mobilephone".into(), json!(contact.mobilephone));
        properties.insert("hs_object_id".into(), json!(id));
        self.contacts
            .insert(id.clone(), (properties, Instant::now()));
        id
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.portal.scopes.iter().any(|s| s == scope)
    }

    fn require(&self, scopes: &[&str]) -> Result<(), Reply> {
        if scopes.iter().all(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(missing_scopes(scopes))
        }
    }

    fn unique(&self, name: &str) -> Option<bool> {
        if name == "hs_object_id" {
            return Some(true);
        }
        self.portal
            .properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.unique)
    }

    fn known_property(&self, name: &str) -> bool {
        CALL_PROPERTIES.contains(&name) || self.portal.properties.iter().any(|p| p.name == name)
    }

    fn disposition_ids(&self) -> Vec<String> {
        DEFAULT_DISPOSITIONS
            .iter()
            .map(|(_, id)| id.to_string())
            .chain(self.portal.dispositions.iter().map(|(_, id)| id.clone()))
            .collect()
    }

    /// One API request (`path` without the query).
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> Reply {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let version_ok = |v: &str| v == "v3" || v == "2026-03";
        match (method, segments.as_slice()) {
            ("POST", ["crm", "objects", v, "calls", "batch", "upsert"]) if version_ok(v) => {
                self.batch_upsert(body)
            }
            ("POST", ["crm", v, "objects", "calls", "batch", "upsert"]) if *v == "v3" => {
                self.batch_upsert(body)
            }
            ("GET", ["crm", "objects", v, "calls", id]) if version_ok(v) => {
                self.read_call(id, query)
            }
            (
                "PUT",
                [
                    "crm",
                    "v4",
                    "objects",
                    "calls" | "call",
                    call,
                    "associations",
                    "default",
                    "contacts" | "contact",
                    contact,
                ],
            ) => self.associate(call, contact),
            ("POST", ["crm", "objects", v, "contacts", "search"]) if version_ok(v) => {
                self.search(body)
            }
            ("GET", ["calling", "v1", "dispositions"]) => {
                if let Err(reply) = self.require(&["crm.objects.calls.read"]) {
                    return reply;
                }
                let list: Vec<Value> = DEFAULT_DISPOSITIONS
                    .iter()
                    .map(|(label, id)| (label.to_string(), id.to_string()))
                    .chain(self.portal.dispositions.iter().cloned())
                    .map(|(label, id)| json!({"id": id, "label": label, "deleted": false}))
                    .collect();
                ok(200, Value::Array(list))
            }
            ("GET", ["crm", "properties", v, "calls", name]) if version_ok(v) => {
                if let Err(reply) = self.require(&["crm.schemas.calls.read"]) {
                    return reply;
                }
                match self.portal.properties.iter().find(|p| p.name == *name) {
                    Some(p) => ok(
                        200,
                        json!({"name": p.name, "label": p.name, "type": "string", "fieldType": "text",
                               "groupName": "callinformation", "hasUniqueValue": p.unique, "hidden": false}),
                    ),
                    None => error(
                        404,
                        "OBJECT_NOT_FOUND",
                        &format!("Unable to find property {name} for object type 0-48"),
                    ),
                }
            }
            ("POST", ["files", "v3", "files"]) => self.upload(content_type, body),
            ("GET", ["files", "v3", "files", "search"]) => {
                if let Err(reply) = self.require(&["files"]) {
                    return reply;
                }
                let limit = query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(100);
                let results: Vec<Value> = self
                    .files
                    .values()
                    .filter(|f| query.get("path").is_none_or(|p| &f.path == p))
                    .filter(|f| query.get("name").is_none_or(|n| &f.name == n))
                    .take(limit)
                    .map(file_json)
                    .collect();
                ok(200, json!({"results": results}))
            }
            _ => error(
                404,
                "OBJECT_NOT_FOUND",
                &format!("No route for {method} {path}"),
            ),
        }
    }

    fn batch_upsert(&mut self, body: &[u8]) -> Reply {
        if let Err(reply) = self.require(&["crm.objects.calls.write"]) {
            return reply;
        }
        self.counts.upserts += 1;
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1");
        };
        let Some(inputs) = body["inputs"].as_array() else {
            return validation("inputs is required");
        };
        if inputs.is_empty() || inputs.len() > 100 {
            return validation("Batch input must contain between 1 and 100 inputs");
        }
        let mut seen = BTreeSet::new();
        let mut planned = Vec::new();
        for input in inputs {
            let (Some(key), Some(id_property)) =
                (input["id"].as_str(), input["idProperty"].as_str())
            else {
                return validation("Each input needs id and idProperty");
            };
            match self.unique(id_property) {
                None => return validation(&format!("Property \"{id_property}\" does not exist")),
                Some(false) => {
                    return validation(&format!(
                        "{id_property} is not a unique property; batch upsert needs an idProperty with hasUniqueValue"
                    ));
                }
                Some(true) => {}
            }
            if !seen.insert(key.to_owned()) {
                return validation(&format!(
                    "Duplicate IDs found in batch input: [{key}]. IDs must be unique"
                ));
            }
            let properties = input["properties"].as_object().cloned().unwrap_or_default();
            if let Err(reply) = self.check_properties(&properties) {
                return reply;
            }
            planned.push((key.to_owned(), id_property.to_owned(), properties));
        }
        // All inputs valid: apply.
        let mut results = Vec::new();
        let stamp = jiff::Timestamp::now().to_string();
        for (key, id_property, properties) in planned {
            let existing = self
                .calls
                .iter()
                .find(|(_, c)| c.get(&id_property).and_then(Value::as_str) == Some(key.as_str()))
                .map(|(id, _)| id.clone());
            let created = existing.is_none();
            if created && !properties.contains_key("hs_timestamp") {
                return validation("Property values were not valid: hs_timestamp is required");
            }
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = self.id();
                    let mut call = Map::new();
                    call.insert("hs_object_id".into(), json!(id));
                    call.insert("hs_createdate".into(), json!(stamp));
                    self.calls.insert(id.clone(), call);
                    id
                }
            };
            let call = self.calls.get_mut(&id).expect("created or found");
            call.extend(properties);
            call.insert(id_property.clone(), json!(key));
            call.insert("hs_lastmodifieddate".into(), json!(stamp));
            results.push(json!({
                "id": id,
                "properties": call.clone(),
                "createdAt": call["hs_createdate"],
                "updatedAt": stamp,
                "archived": false,
                "new": created,
            }));
        }
        ok(
            200,
            json!({"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}),
        )
    }

    fn check_properties(&self, properties: &Map<String, Value>) -> Result<(), Reply> {
        for (name, value) in properties {
            if !self.known_property(name) {
                return Err(validation(&format!(
                    "Property values were not valid: Property \"{name}\" does not exist"
                )));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                _ => {
                    return Err(validation(&format!(
                        "Property values were not valid: {name} must be a string or number"
                    )));
                }
            };
            let bad = |why: &str| {
                Err(validation(&format!(
                    "Property values were not valid: {why}"
                )))
            };
            match name.as_str() {
                "hs_timestamp" => {
                    if text.parse::<jiff::Timestamp>().is_err() && text.parse::<i64>().is_err() {
                        return bad(&format!(
                            "{text} was not a valid long or datetime for hs_timestamp"
                        ));
                    }
                }
                "hs_call_duration" => {
                    if !text.is_empty() && text.parse::<f64>().is_err() {
                        return bad(&format!(
                            "{text} was not a valid number for hs_call_duration"
                        ));
                    }
                }
                "hs_call_direction" => {
                    if !text.is_empty() && text != "INBOUND" && text != "OUTBOUND" {
                        return bad(&format!(
                            "{text} was not one of the allowed options: [INBOUND, OUTBOUND]"
                        ));
                    }
                }
                "hs_call_status" => {
                    if !text.is_empty() && !CALL_STATUSES.contains(&text.as_str()) {
                        return bad(&format!(
                            "{text} was not one of the allowed options for hs_call_status"
                        ));
                    }
                }
                "hs_call_disposition" => {
                    if !text.is_empty() && !self.disposition_ids().contains(&text) {
                        return bad(&format!(
                            "{text} was not one of the allowed options for hs_call_disposition"
                        ));
                    }
                }
                "hs_call_body" => {
                    if text.encode_utf16().count() > 65_536 {
                        return bad("hs_call_body is longer than 65536 characters");
                    }
                }
                "hs_attachment_ids" => {
                    for id in text.split(';').filter(|i| !i.is_empty()) {
                        if !self.files.contains_key(id) {
                            return bad(&format!("file {id} in hs_attachment_ids does not exist"));
                        }
                    }
                }
                _ => {
                    if text.encode_utf16().count() > 65_536 {
                        return bad(&format!("{name} is too long"));
                    }
                }
            }
        }
        Ok(())
    }

    fn read_call(&self, id: &str, query: &HashMap<String, String>) -> Reply {
        if let Err(reply) = self.require(&["crm.objects.calls.read"]) {
            return reply;
        }
        let id_property = query
            .get("idProperty")
            .map(String::as_str)
            .unwrap_or("hs_object_id");
        let found = self
            .calls
            .iter()
            .find(|(_, c)| c.get(id_property).and_then(Value::as_str) == Some(id));
        match found {
            Some((call_id, call)) => {
                let wanted: Vec<&str> = query
                    .get("properties")
                    .map(|p| p.split(',').collect())
                    .unwrap_or_default();
                let properties: Map<String, Value> = call
                    .iter()
                    .filter(|(k, _)| {
                        wanted.is_empty() || wanted.contains(&k.as_str()) || *k == "hs_object_id"
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ok(
                    200,
                    json!({"id": call_id, "properties": properties, "archived": false}),
                )
            }
            None => error(
                404,
                "OBJECT_NOT_FOUND",
                "Object not found.  objectId are usually numeric.",
            ),
        }
    }

    fn associate(&mut self, call: &str, contact: &str) -> Reply {
        if let Err(reply) = self.require(&["crm.objects.calls.write", "crm.objects.contacts.read"])
        {
            return reply;
        }
        self.counts.associations += 1;
        if !self.calls.contains_key(call) {
            return error(
                404,
                "OBJECT_NOT_FOUND",
                &format!("No call with ID {call} exists"),
            );
        }
        if !self.contacts.contains_key(contact) {
            return error(
                404,
                "OBJECT_NOT_FOUND",
                &format!("No contact with ID {contact} exists"),
            );
        }
        self.associations
            .insert((call.to_owned(), contact.to_owned()));
        ok(
            200,
            json!({"status": "COMPLETE", "results": [{
                "from": {"id": call}, "to": {"id": contact},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194},
            }]}),
        )
    }

    fn search(&mut self, body: &[u8]) -> Reply {
        if let Err(reply) = self.require(&["crm.objects.contacts.read"]) {
            return reply;
        }
        self.counts.searches += 1;
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1");
        };
        let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
        if groups.len() > 5 {
            return validation("There can be at most 5 filterGroups");
        }
        let limit = body["limit"].as_u64().unwrap_or(10);
        if limit > 200 {
            return validation("limit must be at most 200");
        }
        let wanted: Vec<String> = body["properties"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["firstname".into(), "lastname".into()]);
        let now = Instant::now();
        let mut results = Vec::new();
        for (id, (properties, created)) in &self.contacts {
            // The search index lags behind writes.
            if now.duration_since(*created) < self.search_lag {
                continue;
            }
            let matches_group = |group: &Value| -> Result<bool, Reply> {
                let filters = group["filters"].as_array().cloned().unwrap_or_default();
                if filters.len() > 6 {
                    return Err(validation(
                        "There can be at most 6 filters in a filterGroup",
                    ));
                }
                for filter in filters {
                    let property = filter["propertyName"].as_str().unwrap_or("");
                    let value = filter["value"].as_str().unwrap_or("").to_lowercase();
                    let have = properties
                        .get(property)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_lowercase();
                    let pass = match filter["operator"].as_str().unwrap_or("") {
                        "EQ" => have == value,
                        "NEQ" => have != value,
                        "HAS_PROPERTY" => !have.is_empty(),
                        "CONTAINS_TOKEN" => {
                            let tokens = have
                                .split(|c: char| !c.is_alphanumeric())
                                .filter(|t| !t.is_empty());
                            match (value.strip_prefix('*'), value.strip_suffix('*')) {
                                (Some(suffix), _) => {
                                    tokens.into_iter().any(|t| t.ends_with(suffix))
                                }
                                (None, Some(prefix)) => {
                                    tokens.into_iter().any(|t| t.starts_with(prefix))
                                }
                                (None, None) => tokens.into_iter().any(|t| t == value),
                            }
                        }
                        other => return Err(validation(&format!("Unknown operator {other}"))),
                    };
                    if !pass {
                        return Ok(false);
                    }
                }
                Ok(true)
            };
            let mut hit = groups.is_empty();
            for group in &groups {
                match matches_group(group) {
                    Ok(true) => {
                        hit = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(reply) => return reply,
                }
            }
            if hit {
                let shown: Map<String, Value> = wanted
                    .iter()
                    .map(|p| (p.clone(), properties.get(p).cloned().unwrap_or(Value::Null)))
                    .chain([("hs_object_id".to_owned(), json!(id))])
                    .collect();
                results.push(json!({"id": id, "properties": shown, "archived": false}));
            }
        }
        let total = results.len();
        results.truncate(limit as usize);
        ok(200, json!({"total": total, "results": results}))
    }

    fn upload(&mut self, content_type: &str, body: &[u8]) -> Reply {
        if let Err(reply) = self.require(&["files"]) {
            return reply;
        }
        self.counts.uploads += 1;
        let Some(parts) = super::multipart::parse(content_type, body) else {
            return error(
                400,
                "VALIDATION_ERROR",
                "Could not parse the multipart body",
            );
        };
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let Some(file) = field("file") else {
            return validation("file is required");
        };
        let Some(options) =
            field("options").and_then(|o| serde_json::from_slice::<Value>(&o.data).ok())
        else {
            return validation("options is required (access)");
        };
        let access = options["access"].as_str().unwrap_or("");
        if !["PUBLIC_INDEXABLE", "PUBLIC_NOT_INDEXABLE", "PRIVATE"].contains(&access) {
            return validation(
                "options.access must be PUBLIC_INDEXABLE, PUBLIC_NOT_INDEXABLE or PRIVATE",
            );
        }
        let folder = field("folderPath")
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .unwrap_or_else(|| "/".into());
        let name = field("fileName")
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .or_else(|| file.filename.clone())
            .unwrap_or_else(|| "file".into());
        let path = format!("{}/{name}", folder.trim_end_matches('/'));
        let id = self.id();
        let stored = StoredFile {
            id: id.clone(),
            path,
            name,
            bytes: file.data.clone(),
            access: access.to_owned(),
        };
        let answer = file_json(&stored);
        self.files.insert(id, stored);
        ok(201, answer)
    }
}

fn file_json(file: &StoredFile) -> Value {
    let (stem, extension) = match file.name.rsplit_once('.') {
        Some((stem, ext)) => (stem.to_owned(), ext.to_owned()),
        None => (file.name.clone(), String::new()),
    };
    json!({
        "id": file.id,
        "name": stem,
        "extension": extension,
        "path": file.path,
        "size": file.bytes.len(),
        "access": file.access,
        "archived": false,
    })
}
