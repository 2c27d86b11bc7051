//! The instance's live data and the API's rules over it: the Table API
//! (`/api/now/table/{table}` list with `sysparm_query`, `sysparm_fields`,
//! `sysparm_limit`, `sysparm_offset`, `sysparm_exclude_reference_link`;
//! create; read, patch and delete by `sys_id`), journal fields (a write of
//! `work_notes` appends one `sys_journal_field` entry, a read of it returns
//! the journal text, newest first), `sys_dictionary` as a view of the
//! tables' fields, and the Attachment API (`/api/now/attachment/file`
//! upload, `/api/now/attachment` list, `/{sys_id}/file` download). Unknown
//! fields in a write are ignored and in a query dropped, as the instance
//! does. Errors are ServiceNow's `{"error":{"message","detail"},"status":
//! "failure"}`. No HTTP here: `server` hands requests in.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::instance::Instance;
use super::query;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Raw bytes instead of `body` (an attachment's content).
    pub bytes: Option<(String, Vec<u8>)>,
}

pub fn error(status: u16, message: &str, detail: Option<&str>) -> Reply {
    Reply {
        status,
        body: json!({
            "error": {"message": message, "detail": detail},
            "status": "failure",
        }),
        bytes: None,
    }
}

fn ok(status: u16, body: Value) -> Reply {
    Reply {
        status,
        body,
        bytes: None,
    }
}

fn not_found() -> Reply {
    error(
        404,
        "No Record found",
        Some("Record doesn't exist or ACL restricts the record retrieval"),
    )
}

/// How many requests of each kind the fake answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub requests: u64,
    pub creates: u64,
    pub updates: u64,
    pub entry_edits: u64,
    pub uploads: u64,
    pub tokens: u64,
    pub throttled: u64,
    pub unauthorized: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub throttle_next: u32,
    pub unavailable_next: u32,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub sys_id: String,
    pub table_name: String,
    pub table_sys_id: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One authenticated API request, as `server` hands it in.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Percent-decoded.
    pub path: &'a str,
    pub params: &'a HashMap<String, String>,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The user the request acts as.
    pub user: &'a str,
    /// The instance's base URL, for links.
    pub base: &'a str,
}

pub struct Store {
    pub instance: Instance,
    /// Rows per table, in creation order.
    pub rows: BTreeMap<String, Vec<Map<String, Value>>>,
    pub attachments: Vec<Attachment>,
    /// Issued access tokens that are still valid: token → expiry (epoch s).
    pub tokens: HashMap<String, u64>,
    pub counts: RequestCounts,
    pub faults: Faults,
}

fn sys_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `glide_date_time` as the API shows it (UTC): `2026-12-07 18:00:00`.
fn glide_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

impl Store {
    pub fn new(instance: Instance) -> Store {
        let rows = instance
            .tables
            .keys()
            .map(|t| (t.clone(), Vec::new()))
            .collect();
        Store {
            instance,
            rows,
            attachments: Vec::new(),
            tokens: HashMap::new(),
            counts: RequestCounts::default(),
            faults: Faults::default(),
        }
    }

    /// Seconds resolution like the instance; rows created within one
    /// second keep their creation order (the sort is stable).
    fn stamp(&mut self) -> String {
        glide_now()
    }

    /// Inserts a row (fields the table lacks are ignored); its sys_id.
    pub fn insert(&mut self, table: &str, fields: &Map<String, Value>, user: &str) -> String {
        let id = sys_id();
        let stamp = self.stamp();
        let def = self.instance.tables.get(table).cloned();
        let mut row = Map::new();
        row.insert("sys_id".into(), json!(id));
        row.insert("sys_created_on".into(), json!(stamp));
        row.insert("sys_created_by".into(), json!(user));
        row.insert("sys_updated_on".into(), json!(stamp));
        row.insert("sys_updated_by".into(), json!(user));
        row.insert("sys_mod_count".into(), json!("0"));
        if table == "interaction" {
            let n = self.rows.get(table).map_or(0, Vec::len) + 1;
            row.insert("number".into(), json!(format!("IMS{n:07}")));
        }
        let mut journal = Vec::new();
        if let Some(def) = &def {
            for (field, value) in fields {
                if field.starts_with("sys_") || !def.fields.contains(field) {
                    continue;
                }
                if def.journals.contains(field) {
                    journal.push((field.clone(), text(value)));
                } else {
                    row.insert(field.clone(), json!(text(value)));
                }
            }
        }
        self.rows.entry(table.to_owned()).or_default().push(row);
        for (field, value) in journal {
            self.append_entry(table, &field, &id, &value, user);
        }
        id
    }

    fn append_entry(
        &mut self,
        table: &str,
        element: &str,
        element_id: &str,
        value: &str,
        user: &str,
    ) {
        if value.trim().is_empty() {
            return;
        }
        let mut entry = Map::new();
        entry.insert("name".into(), json!(table));
        entry.insert("element".into(), json!(element));
        entry.insert("element_id".into(), json!(element_id));
        entry.insert("value".into(), json!(value));
        self.insert("sys_journal_field", &entry, user);
    }

    fn find(&self, table: &str, id: &str) -> Option<usize> {
        self.rows
            .get(table)?
            .iter()
            .position(|r| r.get("sys_id").and_then(Value::as_str) == Some(id))
    }

    /// The journal text of a record's field, newest entry first, as a read
    /// of a journal field shows it.
    fn journal_text(&self, table: &str, element: &str, id: &str) -> String {
        let entries = self.entries(table, element, id);
        entries
            .iter()
            .rev()
            .map(|e| {
                format!(
                    "{} - {} (Work notes)\n{}\n\n",
                    text(&e["sys_created_on"]),
                    text(&e["sys_created_by"]),
                    text(&e["value"])
                )
            })
            .collect()
    }

    /// A record's entries for `element`, oldest first.
    pub fn entries(&self, table: &str, element: &str, id: &str) -> Vec<Map<String, Value>> {
        self.rows
            .get("sys_journal_field")
            .into_iter()
            .flatten()
            .filter(|e| {
                text(&e["name"]) == table
                    && text(&e["element"]) == element
                    && text(&e["element_id"]) == id
            })
            .cloned()
            .collect()
    }

    /// A row as the API shows it: `fields` (all when empty; unknown ones
    /// left out), references as `{link, value}` unless excluded, journal
    /// fields as their text.
    fn show(
        &self,
        table: &str,
        row: &Map<String, Value>,
        fields: &[String],
        exclude_links: bool,
        base: &str,
    ) -> Value {
        let Some(def) = self.instance.tables.get(table) else {
            return Value::Null;
        };
        let id = text(&row["sys_id"]);
        let chosen: Vec<&String> = if fields.is_empty() {
            def.fields.iter().collect()
        } else {
            fields.iter().filter(|f| def.fields.contains(*f)).collect()
        };
        let mut out = Map::new();
        for field in chosen {
            let value = if def.journals.contains(field) {
                json!(self.journal_text(table, field, &id))
            } else {
                let value = row.get(field).map(text).unwrap_or_default();
                match def.references.get(field) {
                    Some(target) if !exclude_links && !value.is_empty() => json!({
                        "link": format!("{base}/api/now/table/{target}/{value}"),
                        "value": value,
                    }),
                    _ => json!(value),
                }
            };
            out.insert(field.clone(), value);
        }
        Value::Object(out)
    }

    /// `sys_dictionary` rows: one per table field.
    fn dictionary(&self) -> Vec<Map<String, Value>> {
        let mut rows = Vec::new();
        for (table, def) in &self.instance.tables {
            for field in &def.fields {
                let mut row = Map::new();
                row.insert("sys_id".into(), json!(format!("dict-{table}-{field}")));
                row.insert("name".into(), json!(table));
                row.insert("element".into(), json!(field));
                rows.push(row);
            }
        }
        rows
    }

    pub fn handle(&mut self, request: &Request<'_>) -> Reply {
        let Request {
            method,
            path,
            params,
            content_type,
            body,
            user,
            base,
        } = *request;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["api", "now", "table", table]) => self.list(table, params, base),
            ("POST", ["api", "now", "table", table]) => {
                self.create(table, params, body, user, base)
            }
            ("GET", ["api", "now", "table", table, id]) => self.read(table, id, params, base),
            ("PATCH" | "PUT", ["api", "now", "table", table, id]) => {
                self.update(table, id, params, body, user, base)
            }
            ("DELETE", ["api", "now", "table", table, id]) => self.delete(table, id),
            ("POST", ["api", "now", "attachment", "file"]) => {
                self.upload(params, content_type, body, base)
            }
            ("GET", ["api", "now", "attachment"]) => self.list_attachments(params, base),
            ("GET", ["api", "now", "attachment", id, "file"]) => self.download(id),
            _ => error(400, "Requested URI does not represent any resource", None),
        }
    }

    fn table_known(&self, table: &str) -> Option<Reply> {
        (table != "sys_dictionary" && !self.instance.tables.contains_key(table))
            .then(|| error(400, &format!("Invalid table {table}"), None))
    }

    fn denied(&self, table: &str, operation: &str) -> Option<Reply> {
        self.instance.write_denied.contains(table).then(|| {
            error(
                403,
                "Operation Failed",
                Some(&format!(
                    "ACL Exception {operation} Failed due to security constraints"
                )),
            )
        })
    }

    fn fields_param(params: &HashMap<String, String>) -> Vec<String> {
        params
            .get("sysparm_fields")
            .map(|f| {
                f.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn exclude_links(params: &HashMap<String, String>) -> bool {
        params
            .get("sysparm_exclude_reference_link")
            .map(String::as_str)
            == Some("true")
    }

    fn list(&mut self, table: &str, params: &HashMap<String, String>, base: &str) -> Reply {
        if let Some(reply) = self.table_known(table) {
            return reply;
        }
        let Some(query) = query::parse(params.get("sysparm_query").map_or("", String::as_str))
        else {
            return error(400, "Invalid query", None);
        };
        let limit: usize = match params.get("sysparm_limit").map(|l| l.parse()) {
            None => 10_000,
            Some(Ok(n)) => n,
            Some(Err(_)) => return error(400, "sysparm_limit must be a number", None),
        };
        let offset: usize = params
            .get("sysparm_offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let (rows, fields) = if table == "sys_dictionary" {
            let fields = ["sys_id", "name", "element"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            (self.dictionary(), fields)
        } else {
            let def = &self.instance.tables[table];
            (
                self.rows.get(table).cloned().unwrap_or_default(),
                def.fields.clone(),
            )
        };
        let mut matched: Vec<Map<String, Value>> = rows
            .into_iter()
            .filter(|r| query.matches(r, &fields))
            .collect();
        query.sort(&mut matched);
        let chosen = Self::fields_param(params);
        let result: Vec<Value> = matched
            .iter()
            .skip(offset)
            .take(limit)
            .map(|row| {
                if table == "sys_dictionary" {
                    let keep: Map<String, Value> = row
                        .iter()
                        .filter(|(k, _)| chosen.is_empty() || chosen.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Value::Object(keep)
                } else {
                    self.show(table, row, &chosen, Self::exclude_links(params), base)
                }
            })
            .collect();
        ok(200, json!({ "result": result }))
    }

    fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(error(
                400,
                "Exception while reading request",
                Some("The payload is not valid JSON."),
            )),
        }
    }

    fn create(
        &mut self,
        table: &str,
        params: &HashMap<String, String>,
        body: &[u8],
        user: &str,
        base: &str,
    ) -> Reply {
        if let Some(reply) = self
            .table_known(table)
            .or_else(|| self.denied(table, "Insert"))
        {
            return reply;
        }
        let fields = match Self::parse_body(body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        self.counts.creates += 1;
        let id = self.insert(table, &fields, user);
        self.read_reply(table, &id, params, base, 201)
    }

    fn read_reply(
        &self,
        table: &str,
        id: &str,
        params: &HashMap<String, String>,
        base: &str,
        status: u16,
    ) -> Reply {
        match self.find(table, id) {
            Some(at) => {
                let row = &self.rows[table][at];
                let shown = self.show(
                    table,
                    row,
                    &Self::fields_param(params),
                    Self::exclude_links(params),
                    base,
                );
                ok(status, json!({ "result": shown }))
            }
            None => not_found(),
        }
    }

    fn read(
        &mut self,
        table: &str,
        id: &str,
        params: &HashMap<String, String>,
        base: &str,
    ) -> Reply {
        if let Some(reply) = self.table_known(table) {
            return reply;
        }
        self.read_reply(table, id, params, base, 200)
    }

    fn update(
        &mut self,
        table: &str,
        id: &str,
        params: &HashMap<String, String>,
        body: &[u8],
        user: &str,
        base: &str,
    ) -> Reply {
        if let Some(reply) = self
            .table_known(table)
            .or_else(|| self.denied(table, "Update"))
        {
            return reply;
        }
        let fields = match Self::parse_body(body) {
            Ok(fields) => fields,
            Err(reply) => return reply,
        };
        let Some(at) = self.find(table, id) else {
            return not_found();
        };
        self.counts.updates += 1;
        if table == "sys_journal_field" {
            self.counts.entry_edits += 1;
        }
        let def = self.instance.tables[table].clone();
        let stamp = self.stamp();
        let mut journal = Vec::new();
        {
            let row = &mut self.rows.get_mut(table).expect("a known table")[at];
            for (field, value) in &fields {
                if field.starts_with("sys_") || !def.fields.contains(field) {
                    continue;
                }
                if def.journals.contains(field) {
                    journal.push((field.clone(), text(value)));
                } else {
                    row.insert(field.clone(), json!(text(value)));
                }
            }
            row.insert("sys_updated_on".into(), json!(stamp));
            row.insert("sys_updated_by".into(), json!(user));
            let count = text(&row["sys_mod_count"]).parse::<u64>().unwrap_or(0) + 1;
            row.insert("sys_mod_count".into(), json!(count.to_string()));
        }
        for (field, value) in journal {
            self.append_entry(table, &field, id, &value, user);
        }
        self.read_reply(table, id, params, base, 200)
    }

    fn delete(&mut self, table: &str, id: &str) -> Reply {
        if let Some(reply) = self
            .table_known(table)
            .or_else(|| self.denied(table, "Delete"))
        {
            return reply;
        }
        match self.find(table, id) {
            Some(at) => {
                self.rows.get_mut(table).expect("a known table").remove(at);
                Reply {
                    status: 204,
                    body: Value::Null,
                    bytes: None,
                }
            }
            None => not_found(),
        }
    }

    fn attachment_json(a: &Attachment, base: &str) -> Value {
        json!({
            "sys_id": a.sys_id,
            "file_name": a.file_name,
            "table_name": a.table_name,
            "table_sys_id": a.table_sys_id,
            "content_type": a.content_type,
            "size_bytes": a.bytes.len().to_string(),
            "download_link": format!("{base}/api/now/attachment/{}/file", a.sys_id),
        })
    }

    fn upload(
        &mut self,
        params: &HashMap<String, String>,
        content_type: &str,
        body: &[u8],
        base: &str,
    ) -> Reply {
        let param = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let (table, record, name) = (
            param("table_name"),
            param("table_sys_id"),
            param("file_name"),
        );
        if table.is_empty() || record.is_empty() || name.is_empty() {
            return error(
                400,
                "Missing required parameters",
                Some("table_name, table_sys_id and file_name are required"),
            );
        }
        if content_type.is_empty() || content_type.starts_with("multipart/") {
            return error(
                400,
                "Content-Type header required",
                Some("Send the file's own content type, e.g. image/jpeg"),
            );
        }
        if !self.instance.tables.contains_key(table) {
            return error(400, &format!("Invalid table {table}"), None);
        }
        if self.find(table, record).is_none() {
            return error(
                400,
                "Invalid table_sys_id",
                Some(&format!("No record {record} in {table}")),
            );
        }
        if let Some(reply) = self.denied("sys_attachment", "Insert") {
            return reply;
        }
        if body.len() as u64 > self.instance.attachment_max_bytes {
            return error(
                400,
                "Failed to create the attachment. File size may have exceeded the maximum allowed size (com.glide.attachment.max_size).",
                None,
            );
        }
        self.counts.uploads += 1;
        let attachment = Attachment {
            sys_id: sys_id(),
            table_name: table.to_owned(),
            table_sys_id: record.to_owned(),
            file_name: name.to_owned(),
            content_type: content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
            bytes: body.to_vec(),
        };
        let shown = Self::attachment_json(&attachment, base);
        self.attachments.push(attachment);
        ok(201, json!({ "result": shown }))
    }

    fn list_attachments(&self, params: &HashMap<String, String>, base: &str) -> Reply {
        let Some(query) = query::parse(params.get("sysparm_query").map_or("", String::as_str))
        else {
            return error(400, "Invalid query", None);
        };
        let limit: usize = params
            .get("sysparm_limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000);
        let fields = [
            "sys_id",
            "file_name",
            "table_name",
            "table_sys_id",
            "content_type",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let result: Vec<Value> = self
            .attachments
            .iter()
            .map(|a| (a, Self::attachment_json(a, base)))
            .filter(|(_, shown)| {
                shown
                    .as_object()
                    .is_some_and(|row| query.matches(row, &fields))
            })
            .take(limit)
            .map(|(_, shown)| shown)
            .collect();
        ok(200, json!({ "result": result }))
    }

    fn download(&self, id: &str) -> Reply {
        match self.attachments.iter().find(|a| a.sys_id == id) {
            Some(a) => Reply {
                status: 200,
                body: Value::Null,
                bytes: Some((a.content_type.clone(), a.bytes.clone())),
            },
            None => not_found(),
        }
    }
}
