//! The account's live data and the Support API's rules over it: tickets
//! (create with `Idempotency-Key`, list by `external_id`, update with one
//! comment or voice comment, tags added and removed), comments (cursor and
//! offset pages, redaction), uploads (50 MB each), users (search by
//! query or `external_id`, create with a unique `external_id`), ticket
//! fields, the integration user. Errors are Zendesk's `{"error",
//! "description", "details"}`. No HTTP here: `server` hands requests in,
//! after authentication and the injected faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::account::Account;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(2 * 3600);
/// One upload's limit.
pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;
/// Comments per page when the request names no `page[size]`.
const PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

pub fn error(status: u16, code: &str, description: &str) -> Reply {
    Reply::new(status, json!({ "error": code, "description": description }))
}

/// `RecordInvalid` with one problem on `field`.
pub fn invalid(field: &str, description: &str, code: &str) -> Reply {
    Reply::new(
        422,
        json!({
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": { field: [{ "description": description, "error": code }] },
        }),
    )
}

fn not_found() -> Reply {
    error(404, "RecordNotFound", "Not found")
}

pub fn forbidden() -> Reply {
    error(
        403,
        "Forbidden",
        "You do not have access to this page. Please contact the account owner of this help desk for further help.",
    )
}

/// How many requests of each kind the fake answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub requests: u64,
    pub creates: u64,
    pub idempotency_hits: u64,
    pub idempotency_errors: u64,
    pub updates: u64,
    pub uploads: u64,
    pub redactions: u64,
    pub ticket_lists: u64,
    pub comment_lists: u64,
    pub user_creates: u64,
    pub throttled: u64,
    pub unauthorized: u64,
    pub tokens_issued: u64,
    pub lost_answers: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub throttle_next: u32,
    pub unavailable_next: u32,
    /// Creates that happen but whose answer is lost (a 504).
    pub lose_create_answers: u32,
    /// How far the clock moves when an answer is lost (the retry comes
    /// that much later).
    pub advance_after_loss: Duration,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: u64,
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    /// `Comment` or `VoiceComment`.
    pub kind: String,
    pub body: String,
    pub public: bool,
    pub author_id: u64,
    pub attachments: Vec<u64>,
    /// A voice comment's `data`.
    pub data: Option<Value>,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: u64,
    pub external_id: Option<String>,
    pub subject: String,
    pub requester_id: u64,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<u64, Value>,
    pub comments: Vec<Comment>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub role: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

struct Remembered {
    body: Value,
    reply: Reply,
    at: Instant,
}

pub struct Store {
    pub account: Account,
    pub tickets: BTreeMap<u64, Ticket>,
    pub users: BTreeMap<u64, User>,
    /// Upload token → its attachments' ids.
    pub uploads: HashMap<String, Vec<u64>>,
    pub attachments: BTreeMap<u64, Attachment>,
    pub faults: Faults,
    pub counts: RequestCounts,
    /// Added to the real clock: what `advance_clock` moved.
    pub offset: Duration,
    /// Issued OAuth tokens and when each expires.
    pub tokens: HashMap<String, Instant>,
    keys: HashMap<String, Remembered>,
    updates: VecDeque<Instant>,
    requests: VecDeque<Instant>,
    next_id: u64,
    base: String,
}

fn timestamp() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

impl Store {
    pub fn new(account: Account) -> Store {
        let mut store = Store {
            tickets: BTreeMap::new(),
            users: BTreeMap::new(),
            uploads: HashMap::new(),
            attachments: BTreeMap::new(),
            faults: Faults::default(),
            counts: RequestCounts::default(),
            offset: Duration::ZERO,
            tokens: HashMap::new(),
            keys: HashMap::new(),
            updates: VecDeque::new(),
            requests: VecDeque::new(),
            next_id: 10_000,
            base: String::new(),
            account: account.clone(),
        };
        let agent = store.id();
        store.users.insert(
            agent,
            User {
                id: agent,
                name: "Zoom relay".into(),
                role: account.role.clone(),
                phone: None,
                email: Some(account.email.clone()),
                external_id: None,
            },
        );
        store.account.agent_id = agent;
        for (name, phone) in &account.users {
            store.add_user(name, phone);
        }
        store
    }

    pub fn set_base(&mut self, base: String) {
        self.base = base;
    }

    pub fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn add_user(&mut self, name: &str, phone: &str) -> u64 {
        let id = self.id();
        self.users.insert(
            id,
            User {
                id,
                name: name.to_owned(),
                role: "end-user".into(),
                phone: Some(phone.to_owned()),
                email: None,
                external_id: None,
            },
        );
        id
    }

    /// The account-wide per-minute limit: `Some(wait)` when it is reached.
    pub fn over_request_limit(&mut self) -> Option<u64> {
        let now = self.now();
        over(&mut self.requests, self.account.requests_per_minute, now)
    }

    fn user_json(&self, user: &User) -> Value {
        json!({
            "id": user.id,
            "url": format!("{}/api/v2/users/{}.json", self.base, user.id),
            "name": user.name,
            "email": user.email,
            "phone": user.phone,
            "role": user.role,
            "external_id": user.external_id,
            "active": true,
            "verified": user.email.is_some(),
        })
    }

    fn attachment_json(&self, attachment: &Attachment) -> Value {
        json!({
            "id": attachment.id,
            "url": format!("{}/api/v2/attachments/{}.json", self.base, attachment.id),
            "file_name": attachment.file_name,
            "content_url": format!("{}/attachments/token/{}/?name={}", self.base, attachment.token, attachment.file_name),
            "content_type": attachment.content_type,
            "size": attachment.bytes.len(),
            "inline": false,
            "deleted": false,
        })
    }

    fn comment_json(&self, comment: &Comment) -> Value {
        let mut value = json!({
            "id": comment.id,
            "type": comment.kind,
            "author_id": comment.author_id,
            "body": comment.body,
            "plain_body": comment.body,
            "public": comment.public,
            "attachments": comment.attachments.iter()
                .filter_map(|id| self.attachments.get(id))
                .map(|a| self.attachment_json(a))
                .collect::<Vec<_>>(),
            "via": {"channel": "api"},
            "created_at": comment.created_at,
        });
        if let Some(data) = &comment.data {
            value["data"] = data.clone();
        }
        value
    }

    fn ticket_json(&self, ticket: &Ticket) -> Value {
        json!({
            "id": ticket.id,
            "url": format!("{}/api/v2/tickets/{}.json", self.base, ticket.id),
            "external_id": ticket.external_id,
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": ticket.comments.first().map(|c| c.body.clone()).unwrap_or_default(),
            "status": "open",
            "requester_id": ticket.requester_id,
            "submitter_id": self.account.agent_id,
            "tags": ticket.tags,
            "custom_fields": ticket.custom_fields.iter()
                .map(|(id, value)| json!({"id": id, "value": value}))
                .collect::<Vec<_>>(),
            "via": {"channel": "api"},
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
        })
    }

    /// Routes one authenticated request.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Reply {
        let path = path.trim_end_matches(".json");
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let json_body = || serde_json::from_slice::<Value>(body).ok();
        let writes = !matches!(method, "GET");
        if writes && self.account.role == "end-user" {
            return forbidden();
        }
        match (method, segments.as_slice()) {
            ("GET", ["api", "v2", "users", "me"]) => {
                let me = self.users[&self.account.agent_id].clone();
                Reply::new(200, json!({ "user": self.user_json(&me) }))
            }
            ("GET", ["api", "v2", "tickets"]) => self.list_tickets(query),
            ("POST", ["api", "v2", "tickets"]) => match json_body() {
                Some(body) => self.create_ticket(body, headers.get("idempotency-key")),
                None => error(400, "InvalidJSON", "Invalid JSON in request body"),
            },
            ("GET", ["api", "v2", "tickets", id]) => match self.ticket(id) {
                Some(ticket) => Reply::new(200, json!({ "ticket": self.ticket_json(ticket) })),
                None => not_found(),
            },
            ("PUT", ["api", "v2", "tickets", id]) => match json_body() {
                Some(body) => self.update_ticket(id, body),
                None => error(400, "InvalidJSON", "Invalid JSON in request body"),
            },
            ("GET", ["api", "v2", "tickets", id, "comments"]) => self.list_comments(id, query),
            ("PUT", ["api", "v2", "tickets", id, "comments", comment, "redact"]) => {
                self.redact(id, comment, json_body())
            }
            ("POST", ["api", "v2", "uploads"]) => self.upload(query, headers, body),
            ("GET", ["api", "v2", "users", "search"]) => self.search_users(query),
            ("POST", ["api", "v2", "users"]) => self.create_user(json_body()),
            ("GET", ["api", "v2", "ticket_fields", id]) => {
                match id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| self.account.ticket_fields.contains(id))
                {
                    Some(id) => Reply::new(
                        200,
                        json!({"ticket_field": {"id": id, "type": "tagger", "title": "Disposition", "active": true}}),
                    ),
                    None => not_found(),
                }
            }
            _ => error(404, "InvalidEndpoint", "Not found"),
        }
    }

    fn ticket(&self, id: &str) -> Option<&Ticket> {
        id.parse().ok().and_then(|id: u64| self.tickets.get(&id))
    }

    fn list_tickets(&mut self, query: &HashMap<String, String>) -> Reply {
        self.counts.ticket_lists += 1;
        let tickets: Vec<Value> = self
            .tickets
            .values()
            .filter(|t| match query.get("external_id") {
                Some(wanted) => t.external_id.as_deref() == Some(wanted.as_str()),
                None => true,
            })
            .take(PAGE)
            .map(|t| self.ticket_json(t))
            .collect();
        let count = tickets.len();
        Reply::new(
            200,
            json!({"tickets": tickets, "next_page": null, "previous_page": null, "count": count}),
        )
    }

    /// The fields a create or update sets, checked; tags as given.
    fn apply_fields(&self, ticket: &mut Ticket, fields: &Map<String, Value>) -> Result<(), Reply> {
        if let Some(subject) = fields.get("subject") {
            ticket.subject = subject.as_str().unwrap_or("").to_owned();
        }
        if let Some(requester) = fields.get("requester_id") {
            match requester.as_u64().filter(|id| self.users.contains_key(id)) {
                Some(id) => ticket.requester_id = id,
                None => {
                    return Err(invalid(
                        "requester",
                        "Requester: is invalid",
                        "InvalidValue",
                    ));
                }
            }
        }
        let tag_list = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|t| t.trim().to_lowercase().replace(' ', "_"))
                .filter(|t| !t.is_empty())
                .collect()
        };
        if let Some(tags) = fields.get("tags") {
            ticket.tags = tag_list(tags);
        }
        if let Some(add) = fields.get("additional_tags") {
            for tag in tag_list(add) {
                if !ticket.tags.contains(&tag) {
                    ticket.tags.push(tag);
                }
            }
        }
        if let Some(remove) = fields.get("remove_tags") {
            let remove = tag_list(remove);
            ticket.tags.retain(|t| !remove.contains(t));
        }
        if let Some(custom) = fields.get("custom_fields") {
            for field in custom.as_array().into_iter().flatten() {
                // Zendesk ignores ids of fields it does not have.
                if let Some(id) = field["id"]
                    .as_u64()
                    .filter(|id| self.account.ticket_fields.contains(id))
                {
                    ticket.custom_fields.insert(id, field["value"].clone());
                }
            }
        }
        if let Some(external_id) = fields.get("external_id") {
            ticket.external_id = external_id.as_str().map(str::to_owned);
        }
        Ok(())
    }

    /// A `comment` or `voice_comment` of a create or update, checked.
    fn comment_of(&mut self, fields: &Map<String, Value>) -> Result<Option<Comment>, Reply> {
        let at = timestamp();
        if let Some(voice) = fields.get("voice_comment") {
            for key in ["from", "to", "recording_url", "started_at", "call_duration"] {
                if voice.get(key).is_none_or(Value::is_null) {
                    return Err(invalid(
                        "voice_comment",
                        &format!("Voice comment: {key} is required"),
                        "BlankValue",
                    ));
                }
            }
            let id = self.id();
            let mut data = voice.clone();
            if let Some(map) = data.as_object_mut() {
                map.insert("author_id".into(), json!(self.account.agent_id));
            }
            let body = format!(
                "Call from: {}\nTime of call: {}\nDuration: {} seconds",
                voice["from"].as_str().unwrap_or(""),
                voice["started_at"].as_str().unwrap_or(""),
                voice["call_duration"]
            );
            return Ok(Some(Comment {
                id,
                kind: "VoiceComment".into(),
                body,
                public: false,
                author_id: self.account.agent_id,
                attachments: Vec::new(),
                data: Some(data),
                created_at: at,
            }));
        }
        let Some(comment) = fields.get("comment") else {
            return Ok(None);
        };
        let body = comment["body"]
            .as_str()
            .or_else(|| comment["html_body"].as_str())
            .unwrap_or("");
        let uploads: Vec<&str> = comment["uploads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if body.trim().is_empty() && uploads.is_empty() {
            return Err(invalid("comment", "Comment: cannot be blank", "BlankValue"));
        }
        // Unknown upload tokens are ignored, as Zendesk does; a token is
        // used up by the comment it goes on.
        let attachments: Vec<u64> = uploads
            .iter()
            .filter_map(|t| self.uploads.remove(*t))
            .flatten()
            .collect();
        let id = self.id();
        Ok(Some(Comment {
            id,
            kind: "Comment".into(),
            body: body.to_owned(),
            public: comment["public"].as_bool().unwrap_or(true),
            author_id: self.account.agent_id,
            attachments,
            data: None,
            created_at: at,
        }))
    }

    fn audit(&mut self, ticket: u64, comment: Option<&Comment>) -> Value {
        let id = self.id();
        let events: Vec<Value> = comment
            .map(|c| {
                let mut event = self.comment_json(c);
                event["type"] = json!(c.kind);
                vec![event]
            })
            .unwrap_or_default();
        json!({"id": id, "ticket_id": ticket, "author_id": self.account.agent_id,
               "created_at": timestamp(), "events": events})
    }

    fn create_ticket(&mut self, body: Value, key: Option<&String>) -> Reply {
        let now = self.now();
        if let Some(key) = key {
            self.keys
                .retain(|_, remembered| now.duration_since(remembered.at) < IDEMPOTENCY_WINDOW);
            if let Some(remembered) = self.keys.get(key) {
                if remembered.body == body {
                    self.counts.idempotency_hits += 1;
                    return remembered
                        .reply
                        .clone()
                        .header("x-idempotency-lookup", "hit");
                }
                self.counts.idempotency_errors += 1;
                return error(
                    400,
                    "IdempotentRequestError",
                    "Request parameters do not match the original request with this idempotency key",
                );
            }
        }
        let Some(fields) = body["ticket"].as_object() else {
            return invalid("base", "Ticket: is missing", "BlankValue");
        };
        if fields.get("comment").is_none() && fields.get("voice_comment").is_none() {
            return invalid("description", "Description: cannot be blank", "BlankValue");
        }
        let id = self.id();
        let at = timestamp();
        let mut ticket = Ticket {
            id,
            external_id: None,
            subject: String::new(),
            requester_id: self.account.agent_id,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            comments: Vec::new(),
            created_at: at.clone(),
            updated_at: at,
        };
        if let Err(reply) = self.apply_fields(&mut ticket, fields) {
            return reply;
        }
        let comment = match self.comment_of(fields) {
            Ok(comment) => comment,
            Err(reply) => return reply,
        };
        if ticket.subject.is_empty() {
            ticket.subject = comment
                .as_ref()
                .map(|c| c.body.chars().take(80).collect())
                .unwrap_or_default();
        }
        let audit = self.audit(id, comment.as_ref());
        ticket.comments.extend(comment);
        let reply = Reply::new(
            201,
            json!({"ticket": self.ticket_json(&ticket), "audit": audit}),
        )
        .header(
            "location",
            format!("{}/api/v2/tickets/{id}.json", self.base),
        );
        self.tickets.insert(id, ticket);
        self.counts.creates += 1;
        if let Some(key) = key {
            self.keys.insert(
                key.clone(),
                Remembered {
                    body,
                    reply: reply.clone(),
                    at: now,
                },
            );
            return reply.header("x-idempotency-lookup", "miss");
        }
        reply
    }

    /// The Update Ticket limit: `Some(wait)` when it is reached.
    pub fn over_update_limit(&mut self) -> Option<u64> {
        let now = self.now();
        over(
            &mut self.updates,
            self.account.ticket_updates_per_minute,
            now,
        )
    }

    fn update_ticket(&mut self, id: &str, body: Value) -> Reply {
        let Some(mut ticket) = self.ticket(id).cloned() else {
            return not_found();
        };
        if let Some(wait) = self.over_update_limit() {
            self.counts.throttled += 1;
            return error(
                429,
                "TooManyRequests",
                "You have exceeded the rate limit for ticket updates",
            )
            .header("retry-after", wait.to_string());
        }
        let Some(fields) = body["ticket"].as_object() else {
            return invalid("base", "Ticket: is missing", "BlankValue");
        };
        if fields.get("comment").is_some() && fields.get("voice_comment").is_some() {
            return invalid(
                "base",
                "Only one comment can be added per update",
                "InvalidValue",
            );
        }
        if let Err(reply) = self.apply_fields(&mut ticket, fields) {
            return reply;
        }
        let comment = match self.comment_of(fields) {
            Ok(comment) => comment,
            Err(reply) => return reply,
        };
        ticket.updated_at = timestamp();
        let audit = self.audit(ticket.id, comment.as_ref());
        ticket.comments.extend(comment);
        let reply = Reply::new(
            200,
            json!({"ticket": self.ticket_json(&ticket), "audit": audit}),
        );
        self.counts.updates += 1;
        self.tickets.insert(ticket.id, ticket);
        reply
    }

    fn list_comments(&mut self, id: &str, query: &HashMap<String, String>) -> Reply {
        self.counts.comment_lists += 1;
        let Some(ticket) = self.ticket(id) else {
            return not_found();
        };
        let all: Vec<&Comment> = ticket.comments.iter().collect();
        let link = |query: String| {
            format!(
                "{}/api/v2/tickets/{}/comments.json?{query}",
                self.base, ticket.id
            )
        };
        if let Some(size) = query.get("page[size]") {
            let size: usize = size.parse().unwrap_or(PAGE).clamp(1, 100);
            let start = query
                .get("page[after]")
                .and_then(|c| c.parse::<u64>().ok())
                .map(|after| all.iter().position(|c| c.id > after).unwrap_or(all.len()))
                .unwrap_or(0);
            let page: Vec<&Comment> = all.iter().skip(start).take(size).copied().collect();
            let more = start + page.len() < all.len();
            let after = page.last().map(|c| c.id.to_string());
            return Reply::new(
                200,
                json!({
                    "comments": page.iter().map(|c| self.comment_json(c)).collect::<Vec<_>>(),
                    "meta": {"has_more": more, "after_cursor": after, "before_cursor": page.first().map(|c| c.id.to_string())},
                    "links": {
                        "next": if more { Some(link(format!("page[size]={size}&page[after]={}", after.unwrap_or_default()))) } else { None },
                        "prev": null,
                    },
                }),
            );
        }
        let number: usize = query
            .get("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        let page: Vec<Value> = all
            .iter()
            .skip((number - 1) * PAGE)
            .take(PAGE)
            .map(|c| self.comment_json(c))
            .collect();
        let next = (number * PAGE < all.len()).then(|| link(format!("page={}", number + 1)));
        Reply::new(
            200,
            json!({"comments": page, "next_page": next, "previous_page": null, "count": all.len()}),
        )
    }

    fn redact(&mut self, id: &str, comment: &str, body: Option<Value>) -> Reply {
        let text = body
            .as_ref()
            .and_then(|b| b["text"].as_str())
            .unwrap_or("")
            .to_owned();
        let Some(ticket) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.tickets.get_mut(&id))
        else {
            return not_found();
        };
        let Some(found) = comment
            .parse::<u64>()
            .ok()
            .and_then(|c| ticket.comments.iter_mut().find(|x| x.id == c))
        else {
            return not_found();
        };
        if text.is_empty() {
            return invalid("text", "Text: cannot be blank", "BlankValue");
        }
        // Redacting text the comment does not hold changes nothing.
        let blocks: String = text
            .chars()
            .map(|c| if c.is_whitespace() { c } else { '▇' })
            .collect();
        found.body = found.body.replace(&text, &blocks);
        let found = found.clone();
        self.counts.redactions += 1;
        Reply::new(200, json!({"comment": self.comment_json(&found)}))
    }

    fn upload(
        &mut self,
        query: &HashMap<String, String>,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Reply {
        let Some(name) = query.get("filename").filter(|n| !n.is_empty()) else {
            return invalid("filename", "Filename: cannot be blank", "BlankValue");
        };
        if body.len() > UPLOAD_LIMIT {
            return error(
                413,
                "RecordInvalid",
                "The attachment exceeds the maximum file size of 50 MB",
            );
        }
        if body.is_empty() {
            return invalid("file", "File: cannot be blank", "BlankValue");
        }
        let token = query
            .get("token")
            .cloned()
            .unwrap_or_else(|| format!("{:025x}", rand::random::<u128>()));
        let id = self.id();
        let attachment = Attachment {
            id,
            file_name: name.clone(),
            content_type: headers
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| "application/binary".into()),
            bytes: body.to_vec(),
            token: token.clone(),
        };
        let json = self.attachment_json(&attachment);
        self.attachments.insert(id, attachment);
        self.uploads.entry(token.clone()).or_default().push(id);
        self.counts.uploads += 1;
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(3 * 24 * 3600))
            .map(|t| t.to_string())
            .unwrap_or_default();
        Reply::new(
            201,
            json!({"upload": {"token": token, "expires_at": expires, "attachments": [json.clone()], "attachment": json}}),
        )
    }

    fn search_users(&self, query: &HashMap<String, String>) -> Reply {
        let users: Vec<Value> = if let Some(external_id) = query.get("external_id") {
            self.users
                .values()
                .filter(|u| u.external_id.as_deref() == Some(external_id.as_str()))
                .map(|u| self.user_json(u))
                .collect()
        } else if let Some(q) = query.get("query").filter(|q| !q.trim().is_empty()) {
            let wanted = digits(q);
            let lower = q.to_lowercase();
            self.users
                .values()
                .filter(|u| {
                    let phone = u.phone.as_deref().map(digits).unwrap_or_default();
                    let phone_match = wanted.len() >= 4
                        && !phone.is_empty()
                        && (phone.contains(&wanted) || wanted.contains(&phone));
                    phone_match
                        || u.name.to_lowercase().contains(&lower)
                        || u.email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase() == lower)
                })
                .map(|u| self.user_json(u))
                .collect()
        } else {
            return error(400, "InvalidParameter", "query or external_id is required");
        };
        let count = users.len();
        Reply::new(
            200,
            json!({"users": users, "next_page": null, "previous_page": null, "count": count}),
        )
    }

    fn create_user(&mut self, body: Option<Value>) -> Reply {
        let Some(user) = body.as_ref().and_then(|b| b["user"].as_object()) else {
            return invalid("base", "User: is missing", "BlankValue");
        };
        let name = user
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        if name.is_empty() {
            return invalid(
                "name",
                "Name: is too short (minimum one character)",
                "BlankValue",
            );
        }
        let external_id = user
            .get("external_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(external_id) = &external_id
            && self
                .users
                .values()
                .any(|u| u.external_id.as_ref() == Some(external_id))
        {
            return invalid(
                "external_id",
                "External has already been taken",
                "DuplicateValue",
            );
        }
        let role = user
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("end-user");
        if !matches!(role, "end-user" | "agent" | "admin") {
            return invalid("role", "Role: is invalid", "InvalidValue");
        }
        let id = self.id();
        let created = User {
            id,
            name: name.to_owned(),
            role: role.to_owned(),
            phone: user.get("phone").and_then(Value::as_str).map(str::to_owned),
            email: user.get("email").and_then(Value::as_str).map(str::to_owned),
            external_id,
        };
        let json = self.user_json(&created);
        self.users.insert(id, created);
        self.counts.user_creates += 1;
        Reply::new(201, json!({ "user": json }))
    }
}

/// A rolling one-minute window of at most `limit` entries: `Some(seconds to
/// wait)` when full, else the entry is counted.
fn over(window: &mut VecDeque<Instant>, limit: u32, now: Instant) -> Option<u64> {
    while window
        .front()
        .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        let oldest = *window.front()?;
        let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
        return Some(wait.as_secs().max(1));
    }
    window.push_back(now);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Account::new())
    }

    fn call(store: &mut Store, method: &str, path: &str, key: Option<&str>, body: Value) -> Reply {
        let mut headers = HashMap::new();
        if let Some(key) = key {
            headers.insert("idempotency-key".to_owned(), key.to_owned());
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        store.handle(method, path, &query, &headers, body.to_string().as_bytes())
    }

    fn create(external_id: &str, text: &str) -> Value {
        json!({"ticket": {"subject": "s", "external_id": external_id,
                          "comment": {"body": text, "public": false}}})
    }

    #[test]
    fn idempotency_keys_replay_refuse_and_expire() {
        let mut s = store();
        let first = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            Some("k"),
            create("zcc:1", "a"),
        );
        assert_eq!(first.status, 201);
        assert!(
            first
                .headers
                .contains(&("x-idempotency-lookup".into(), "miss".into()))
        );
        let again = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            Some("k"),
            create("zcc:1", "a"),
        );
        assert!(
            again
                .headers
                .contains(&("x-idempotency-lookup".into(), "hit".into()))
        );
        assert_eq!(again.body["ticket"]["id"], first.body["ticket"]["id"]);
        let other = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            Some("k"),
            create("zcc:1", "b"),
        );
        assert_eq!(other.status, 400);
        assert_eq!(other.body["error"], "IdempotentRequestError");
        assert_eq!(s.tickets.len(), 1);
        s.offset += IDEMPOTENCY_WINDOW;
        let late = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            Some("k"),
            create("zcc:1", "a"),
        );
        assert_eq!(late.status, 201, "the key is forgotten after two hours");
        assert_eq!(s.tickets.len(), 2, "external_id is not unique");
        let listed = call(
            &mut s,
            "GET",
            "/api/v2/tickets?external_id=zcc:1",
            None,
            Value::Null,
        );
        assert_eq!(listed.body["count"], 2);
    }

    #[test]
    fn updates_carry_one_comment_and_are_limited_per_minute() {
        let mut s = store();
        s.account.ticket_updates_per_minute = 2;
        let id = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            None,
            create("zcc:1", "a"),
        )
        .body["ticket"]["id"]
            .as_u64()
            .unwrap();
        let path = format!("/api/v2/tickets/{id}");
        let both = json!({"ticket": {"comment": {"body": "x"}, "voice_comment": {}}});
        assert_eq!(call(&mut s, "PUT", &path, None, both).status, 422);
        let voice = json!({"ticket": {"voice_comment": {"from": "+1", "to": "q", "recording_url": "u",
                                                        "started_at": "2026-01-01T00:00:00Z", "call_duration": 3}}});
        let answer = call(&mut s, "PUT", &path, None, voice);
        assert_eq!(answer.body["audit"]["events"][0]["type"], "VoiceComment");
        let limited = call(
            &mut s,
            "PUT",
            &path,
            None,
            json!({"ticket": {"subject": "x"}}),
        );
        assert_eq!(limited.status, 429);
        assert!(limited.headers.iter().any(|(k, _)| k == "retry-after"));
        s.offset += Duration::from_secs(61);
        assert_eq!(
            call(
                &mut s,
                "PUT",
                &path,
                None,
                json!({"ticket": {"subject": "x"}})
            )
            .status,
            200
        );
    }

    #[test]
    fn comments_page_by_cursor_and_redact() {
        let mut s = store();
        s.account.ticket_updates_per_minute = 1000;
        let id = call(
            &mut s,
            "POST",
            "/api/v2/tickets",
            None,
            create("zcc:1", "first secret"),
        )
        .body["ticket"]["id"]
            .as_u64()
            .unwrap();
        for i in 0..4 {
            let body = json!({"ticket": {"comment": {"body": format!("c{i}"), "public": false}}});
            call(&mut s, "PUT", &format!("/api/v2/tickets/{id}"), None, body);
        }
        let page = call(
            &mut s,
            "GET",
            &format!("/api/v2/tickets/{id}/comments?page[size]=3"),
            None,
            Value::Null,
        );
        assert_eq!(page.body["comments"].as_array().unwrap().len(), 3);
        assert_eq!(page.body["meta"]["has_more"], true);
        let next = page.body["links"]["next"].as_str().unwrap().to_owned();
        let rest = next.split_once("/api/").unwrap().1;
        let page = call(&mut s, "GET", &format!("/api/{rest}"), None, Value::Null);
        assert_eq!(page.body["comments"].as_array().unwrap().len(), 2);
        assert_eq!(page.body["meta"]["has_more"], false);
        let first = s.tickets[&id].comments[0].id;
        let redacted = call(
            &mut s,
            "PUT",
            &format!("/api/v2/tickets/{id}/comments/{first}/redact"),
            None,
            json!({"text": "secret"}),
        );
        assert_eq!(redacted.body["comment"]["body"], "first ▇▇▇▇▇▇");
    }

    #[test]
    fn users_are_found_by_phone_digits_and_external_ids_are_unique() {
        let mut s = store();
        let ada = s.add_user("Ada", "(415) 555-1212");
        let found = call(
            &mut s,
            "GET",
            "/api/v2/users/search?query=%2B14155551212",
            None,
            Value::Null,
        );
        assert_eq!(found.body["users"][0]["id"], ada);
        let user = json!({"user": {"name": "+4420", "phone": "+4420", "external_id": "zcc:+4420"}});
        assert_eq!(
            call(&mut s, "POST", "/api/v2/users", None, user.clone()).status,
            201
        );
        let twice = call(&mut s, "POST", "/api/v2/users", None, user);
        assert_eq!(twice.status, 422);
        assert_eq!(
            twice.body["details"]["external_id"][0]["error"],
            "DuplicateValue"
        );
        let by_id = call(
            &mut s,
            "GET",
            "/api/v2/users/search?external_id=zcc:%2B4420",
            None,
            Value::Null,
        );
        assert_eq!(by_id.body["count"], 1);
    }
}
