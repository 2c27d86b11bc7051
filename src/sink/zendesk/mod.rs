//! The Zendesk sink (DESIGN.md §3.5): one ticket per engagement, its
//! `external_id` `zcc:{engagement_id}`, its fields (subject, requester, the
//! disposition's tag and field) rendered from the engagement's interaction
//! aggregate *as it is at delivery time*; the artefacts as comments, each
//! once: every note a private comment (an edited note a new one, the
//! superseded text redacted), every stored file a private comment with the
//! file uploaded (or its link when above 50 MB), the call a voice comment
//! pointing at the recording.
//!
//! Owns the API client (`client`: auth, budgets, the calls), the error
//! table (`error`), the rendering (`ticket`) and `check`. Its keys are in
//! `config`.
//!
//! Zendesk has no upsert and `external_id` is not unique, so the ticket is
//! found in this order: the id the journal keeps (`crm::ids`, scoped by
//! `url`); the list by `external_id`; a create with `Idempotency-Key` (the
//! key covers 2 hours: a create retried later is caught by the list, and
//! one retried sooner with another body — `IdempotentRequestError` — by
//! listing again). A comment's id is kept in the journal under its own key
//! (a file's location, `note:{note_id}:{version}`, `call`); anything not
//! recorded yet is first looked for among the ticket's comments by the
//! marker line each comment ends with, so a crash between a write and its
//! record never writes it twice. Zendesk allows one comment per ticket
//! update, and 100 updates a minute: every update goes through the
//! per-minute budget `ticket_updates_per_minute`.

mod check;
mod client;
mod config;
mod error;
mod ticket;

pub use config::{ZendeskAuth, ZendeskSinkConfig, ZendeskSinkSettings};

use serde_json::{Value, json};

use crate::config::SinkCheck;
use crate::crm::customer::{CustomerCache, choose, number_of};
use crate::crm::engagement::{KEYED_EVENTS, Serial, engagement_of, fold_views, per_engagement};
use crate::crm::files;
use crate::crm::ids::{CreatedIds, CrmIds};
use crate::crm::phone::{self, Region};
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::interaction::Interaction;
use crate::journal::Journal;
use crate::record::MediaEntry;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use client::{Client, Comment, Created};

/// Due records of one engagement written in one go.
const COALESCE: usize = 64;
/// Zendesk's limit on one upload.
pub const FILE_LIMIT: u64 = 50 * 1024 * 1024;
/// Transcripts up to this size also go into the voice comment.
const SHORT_TRANSCRIPT: u64 = 64 * 1024;
/// The journal key of the call's voice comment.
const CALL: &str = "call";
/// The journal key of the version of the ticket's fields last written.
const FIELDS: &str = "fields";

pub struct ZendeskSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<ZendeskSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
    /// The ticket and comment ids it created, in the journal.
    ids: CreatedIds,
}

/// A comment to add, with what to record once it is there.
enum Add<'a> {
    File(&'a MediaEntry),
    Note { key: String, body: String },
    Call,
}

/// The fields still to send (once), noting that they were.
fn take(
    fields: &mut serde_json::Map<String, Value>,
    sent: &mut bool,
) -> serde_json::Map<String, Value> {
    let taken = std::mem::take(fields);
    *sent |= !taken.is_empty();
    taken
}

fn note_key(note_id: &str, version: &str) -> String {
    format!("note:{note_id}:{version}")
}

fn redacted_key(comment: &str) -> String {
    format!("redacted:{comment}")
}

/// Text Zendesk has redacted reads as `▇` characters.
fn is_redacted(text: &str) -> bool {
    text.chars().all(|c| c == '▇' || c.is_whitespace())
}

impl ZendeskSink {
    fn settings(&self) -> ZendeskSinkSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn write(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        self.serial
            .run(engagement_id, self.write_now(engagement_id, fallback))
            .await
    }

    async fn write_now(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        let settings = self.settings();
        let aggregate = match self.journal.interaction(engagement_id).await {
            Ok(Some(aggregate)) => aggregate,
            Ok(None) => fold_views(fallback)
                .ok_or_else(|| Failure::retry("the engagement's aggregate is not stored yet"))?,
            Err(error) => return Err(Failure::retry(format!("journal: {error}"))),
        };
        let requester = if settings.link_customers {
            self.requester(&aggregate, &settings).await?
        } else {
            None
        };
        let mut known = self.ids.get(engagement_id).await?;
        let mut fields =
            ticket::fields(&aggregate, requester, settings.disposition_field_id, false);
        let fields_version = ticket::note_version(&Value::Object(fields.clone()).to_string());
        // Created by this write: no comment but the description yet.
        let mut fresh = false;
        let ticket = match known
            .activity
            .as_deref()
            .and_then(|id| id.parse::<u64>().ok())
        {
            Some(id) => id,
            None => {
                let (id, created) = self
                    .find_or_create(engagement_id, &aggregate, requester, &settings)
                    .await?;
                known = self.ids.on(&id.to_string());
                if created {
                    // The create carried these fields.
                    known
                        .children
                        .insert(FIELDS.to_owned(), fields_version.clone());
                }
                self.ids.record(engagement_id, known.clone()).await?;
                fresh = created;
                id
            }
        };
        let ticket_key = ticket.to_string();
        if known.child_on(&ticket_key, FIELDS) == Some(fields_version.as_str()) {
            fields.clear();
        }
        let adds = self.plan(&aggregate, &known, ticket);
        let stale = self.stale_notes(&aggregate, &known, ticket);
        let listed = if (adds.is_empty() && stale.is_empty()) || fresh {
            Vec::new()
        } else {
            match self.client.comments(ticket).await {
                Ok(listed) => listed,
                Err(failure) if failure.status == Some(404) => {
                    return Err(self.forget(engagement_id, ticket, failure).await);
                }
                Err(failure) => return Err(failure),
            }
        };
        let mut recording_url: Option<String> = None;
        // The fields ride on the first comment's update.
        let mut fields_sent = false;
        for add in adds {
            let learned = match add {
                Add::File(entry) => {
                    let name = files::name_of(entry);
                    if let Some(found) = listed
                        .iter()
                        .find(|c| c.body.contains(&ticket::file_marker(&name)))
                    {
                        if entry.kind == "recording" {
                            recording_url = found.attachments.first().map(|a| a.1.clone());
                        }
                        let mut learned = self.ids.on(&ticket_key);
                        learned
                            .files
                            .insert(entry.location.clone(), found.id.to_string());
                        learned
                    } else {
                        let attach = settings.attach_files
                            && entry.size <= FILE_LIMIT
                            && files::readable(entry);
                        let mut comment = if attach {
                            let bytes =
                                files::read_whole(self.client.http(), entry, FILE_LIMIT).await?;
                            let kind = if entry.content_type.is_empty() {
                                "application/octet-stream"
                            } else {
                                entry.content_type.as_str()
                            };
                            let upload = self.client.upload(&name, kind, bytes).await?;
                            if entry.kind == "recording" && !upload.content_url.is_empty() {
                                recording_url = Some(upload.content_url.clone());
                            }
                            json!({
                                "body": ticket::file_body(&entry.kind, &name, None),
                                "public": false,
                                "uploads": [upload.token],
                            })
                        } else {
                            let link = files::link_of(entry);
                            if entry.kind == "recording" {
                                recording_url = Some(link.clone());
                            }
                            json!({
                                "body": ticket::file_body(&entry.kind, &name, Some(&link)),
                                "public": false,
                            })
                        };
                        let mut update = take(&mut fields, &mut fields_sent);
                        update.insert("comment".into(), comment.take());
                        let id = self.update(engagement_id, ticket, update).await?;
                        let mut learned = self.ids.on(&ticket_key);
                        learned.files.insert(entry.location.clone(), id);
                        learned
                    }
                }
                Add::Note { key, body } => {
                    let marker = body.lines().last().unwrap_or("").to_owned();
                    let id = match listed.iter().find(|c| c.body.contains(&marker)) {
                        Some(found) => found.id.to_string(),
                        None => {
                            let mut update = take(&mut fields, &mut fields_sent);
                            update
                                .insert("comment".into(), json!({ "body": body, "public": false }));
                            self.update(engagement_id, ticket, update).await?
                        }
                    };
                    let mut learned = self.ids.on(&ticket_key);
                    learned.children.insert(key, id);
                    learned
                }
                Add::Call => {
                    let id = match listed.iter().find(|c| c.kind == "VoiceComment") {
                        Some(found) => found.id.to_string(),
                        None => {
                            let url = match recording_url.clone() {
                                Some(url) => url,
                                None => recording_of(&aggregate, &listed),
                            };
                            let mut transcript = None;
                            for entry in aggregate.files() {
                                if entry.kind == "recording_transcript"
                                    && let Some(text) =
                                        files::short_text(entry, SHORT_TRANSCRIPT).await
                                {
                                    transcript = Some(text);
                                }
                            }
                            let mut update = take(&mut fields, &mut fields_sent);
                            update.insert(
                                "voice_comment".into(),
                                ticket::voice_comment(&aggregate, &url, transcript.as_deref()),
                            );
                            self.update(engagement_id, ticket, update).await?
                        }
                    };
                    let mut learned = self.ids.on(&ticket_key);
                    learned.children.insert(CALL.to_owned(), id);
                    learned
                }
            };
            self.ids.record(engagement_id, learned).await?;
        }
        // Superseded note texts: redacted wherever a comment still shows one.
        let mut redacted = self.ids.on(&ticket_key);
        for comment in self.superseded(&aggregate, &known, ticket, &listed, &stale) {
            if let Some(text) = ticket::note_text_of(&comment.body)
                && !is_redacted(text)
            {
                self.client.redact(ticket, comment.id, text).await?;
            }
            redacted
                .children
                .insert(redacted_key(&comment.id.to_string()), "1".to_owned());
        }
        if !redacted.children.is_empty() {
            self.ids.record(engagement_id, redacted).await?;
        }
        if !fields.is_empty() {
            self.update(engagement_id, ticket, fields).await?;
            fields_sent = true;
        }
        if fields_sent {
            let mut learned = self.ids.on(&ticket_key);
            learned.children.insert(FIELDS.to_owned(), fields_version);
            self.ids.record(engagement_id, learned).await?;
        }
        Ok(())
    }

    /// The comments still to add, files first (the voice comment points at
    /// the recording's upload), then notes, then the call.
    fn plan<'a>(&self, aggregate: &'a Interaction, known: &CrmIds, ticket: u64) -> Vec<Add<'a>> {
        let ticket = ticket.to_string();
        let mut adds = Vec::new();
        for entry in aggregate.files() {
            if known.file_on(&ticket, &entry.location).is_none() {
                adds.push(Add::File(entry));
            }
        }
        for note in aggregate.notes() {
            let key = note_key(note.note_id, &ticket::note_version(note.text));
            if known.child_on(&ticket, &key).is_none() {
                adds.push(Add::Note {
                    key,
                    body: ticket::note_body(&note),
                });
            }
        }
        let recorded = aggregate.files().any(|f| f.kind == "recording");
        if recorded && known.child_on(&ticket, CALL).is_none() {
            adds.push(Add::Call);
        }
        adds
    }

    /// Recorded comments of a note version that is no longer the note's
    /// text, not known to be redacted.
    fn stale_notes(&self, aggregate: &Interaction, known: &CrmIds, ticket: u64) -> Vec<u64> {
        let ticket = ticket.to_string();
        let mut stale = Vec::new();
        for note in aggregate.notes() {
            let current = note_key(note.note_id, &ticket::note_version(note.text));
            let prefix = format!("note:{}:", note.note_id);
            for (key, comment) in &known.children {
                if key.starts_with(&prefix)
                    && *key != current
                    && known.child_on(&ticket, &redacted_key(comment)).is_none()
                    && let Ok(id) = comment.parse()
                {
                    stale.push(id);
                }
            }
        }
        stale
    }

    /// The comments showing a superseded note text: the recorded stale ones
    /// and, among the listed, any of the engagement's notes whose marker
    /// names another version.
    fn superseded<'a>(
        &self,
        aggregate: &Interaction,
        known: &CrmIds,
        ticket: u64,
        listed: &'a [Comment],
        stale: &[u64],
    ) -> Vec<&'a Comment> {
        let ticket = ticket.to_string();
        let mut found: Vec<&Comment> = Vec::new();
        for note in aggregate.notes() {
            let current = ticket::note_marker(note.note_id, &ticket::note_version(note.text));
            let prefix = ticket::note_marker_prefix(note.note_id);
            for comment in listed {
                let marker = comment.body.lines().last().unwrap_or("");
                if (stale.contains(&comment.id)
                    || (marker.starts_with(&prefix) && marker != current))
                    && known
                        .child_on(&ticket, &redacted_key(&comment.id.to_string()))
                        .is_none()
                    && !found.iter().any(|c| c.id == comment.id)
                {
                    found.push(comment);
                }
            }
        }
        found
    }

    /// One ticket update; the id of the comment it added (empty when none).
    async fn update(
        &self,
        engagement_id: &str,
        ticket: u64,
        update: serde_json::Map<String, Value>,
    ) -> Result<String, Failure> {
        match self
            .client
            .update_ticket(ticket, Value::Object(update))
            .await
        {
            Ok(comment) => Ok(comment.map(|c| c.to_string()).unwrap_or_default()),
            Err(failure) if failure.status == Some(404) => {
                Err(self.forget(engagement_id, ticket, failure).await)
            }
            Err(failure) => Err(failure),
        }
    }

    /// The ticket the journal knows is gone (deleted in Zendesk): forget it,
    /// so the next attempt finds the engagement's ticket or creates one.
    /// The failure to report: a retry.
    async fn forget(&self, engagement_id: &str, ticket: u64, failure: Failure) -> Failure {
        tracing::warn!(
            sink = %self.name,
            ticket,
            error = %failure.reason,
            "the engagement's ticket is gone; it is looked up or created again"
        );
        // An activity id that is not a number reads as none.
        if let Err(journal) = self.ids.record(engagement_id, self.ids.on("gone")).await {
            return journal;
        }
        Failure::retry(format!(
            "ticket {ticket} is gone ({}); looked up or created again",
            failure.reason
        ))
    }

    /// The engagement's ticket: the oldest listed by `external_id`, else a
    /// new one created with the engagement's `Idempotency-Key`.
    async fn find_or_create(
        &self,
        engagement_id: &str,
        aggregate: &Interaction,
        requester: Option<u64>,
        settings: &ZendeskSinkSettings,
    ) -> Result<(u64, bool), Failure> {
        let external_id = ticket::external_id(engagement_id);
        let listed = self.client.tickets_by_external_id(&external_id).await?;
        if let Some(id) = listed.first() {
            if listed.len() > 1 {
                tracing::warn!(
                    sink = %self.name,
                    tickets = listed.len(),
                    ticket = id,
                    "several tickets carry the engagement's external_id; the oldest is used"
                );
            }
            return Ok((*id, false));
        }
        let mut create = ticket::fields(aggregate, requester, settings.disposition_field_id, true);
        create.insert("external_id".into(), json!(external_id));
        create.insert(
            "comment".into(),
            json!({ "body": ticket::description(aggregate), "public": false }),
        );
        let key = ticket::idempotency_key(engagement_id);
        match self
            .client
            .create_ticket(&key, Value::Object(create))
            .await?
        {
            Created::Ticket { id, replayed } => {
                if replayed {
                    tracing::debug!(sink = %self.name, ticket = id, "an earlier create's ticket (idempotency hit)");
                }
                Ok((id, !replayed))
            }
            Created::KeyUsed(failure) => {
                // The key made a ticket from an earlier rendering: the list
                // finds it now (it was not there a moment ago only if it was
                // deleted since).
                match self
                    .client
                    .tickets_by_external_id(&external_id)
                    .await?
                    .first()
                {
                    Some(id) => Ok((*id, false)),
                    None => Err(failure),
                }
            }
        }
    }

    /// The requester: the one user whose phone is the consumer's number,
    /// else (with `create_requesters`) a new end-user with it.
    async fn requester(
        &self,
        aggregate: &Interaction,
        settings: &ZendeskSinkSettings,
    ) -> Result<Option<u64>, Failure> {
        let Some(number) = number_of(aggregate, self.region) else {
            return Ok(None);
        };
        if let Some(known) = self.customers.get(&number) {
            return Ok(known.and_then(|c| c.id().parse().ok()));
        }
        let external_id = format!("zcc:{number}");
        let mut users = self.matching("external_id", &external_id, &number).await?;
        if users.is_empty() {
            users = self.matching("query", &number, &number).await?;
        }
        if users.is_empty() && settings.create_requesters {
            let name = aggregate.consumer().name.unwrap_or_else(|| number.clone());
            let user = json!({
                "name": name,
                "phone": number,
                "role": "end-user",
                "external_id": external_id,
            });
            match self.client.create_user(user).await {
                Ok(id) => users.push(id.to_string()),
                // Taken external_id: an earlier attempt created it.
                Err(failure) if failure.status == Some(422) => {
                    users = self.matching("external_id", &external_id, &number).await?;
                    if users.is_empty() {
                        return Err(failure);
                    }
                }
                Err(failure) => return Err(failure),
            }
        }
        let answer = choose(&users, &[]);
        self.customers
            .put(&self.name, &number, answer.clone(), users.len(), 0);
        Ok(answer.and_then(|c| c.id().parse().ok()))
    }

    /// The ids of the users found by `parameter` whose phone is `number`.
    async fn matching(
        &self,
        parameter: &str,
        value: &str,
        number: &str,
    ) -> Result<Vec<String>, Failure> {
        let mut ids: Vec<String> = self
            .client
            .users(parameter, value)
            .await?
            .into_iter()
            .filter(|(_, phone)| {
                phone
                    .as_deref()
                    .and_then(|p| phone::normalise(p, self.region))
                    .as_deref()
                    == Some(number)
            })
            .map(|(id, _)| id.to_string())
            .collect();
        ids.dedup();
        Ok(ids)
    }
}

/// The recording's address for the voice comment when this write did not
/// upload it: its attachment's content URL among the listed comments, else
/// its link.
fn recording_of(aggregate: &Interaction, listed: &[Comment]) -> String {
    let Some(entry) = aggregate.files().find(|f| f.kind == "recording") else {
        return String::new();
    };
    let name = files::name_of(entry);
    listed
        .iter()
        .find(|c| c.body.contains(&ticket::file_marker(&name)))
        .and_then(|c| c.attachments.iter().find(|a| a.0 == name))
        .map(|a| a.1.clone())
        .unwrap_or_else(|| files::link_of(entry))
}

impl Kind for ZendeskSink {
    const TYPE: &'static str = "zendesk";
    const DEFAULT_EVENTS: &'static [&'static str] = KEYED_EVENTS;
    type Config = ZendeskSinkConfig;
    type Settings = ZendeskSinkSettings;

    fn validate(
        config: ZendeskSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<ZendeskSinkSettings> {
        config.validate(check)
    }

    fn reload(
        running: &ZendeskSinkSettings,
        loaded: &ZendeskSinkSettings,
    ) -> Reload<ZendeskSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &ZendeskSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<ZendeskSink> {
        let journal = context.journal.cloned().ok_or_else(|| {
            anyhow::anyhow!("a zendesk sink needs the journal (its interaction aggregates)")
        })?;
        if matches!(settings.auth, ZendeskAuth::ApiToken { .. }) {
            tracing::warn!(
                sink = %context.name,
                "authenticating with an API token: Zendesk switches API tokens off on 30 April 2027; move to an OAuth client (client_id, client_secret_file)"
            );
        }
        Ok(ZendeskSink {
            name: context.name.to_owned(),
            client: Box::new(Client::new(
                context.name,
                settings,
                context.timeout,
                context.tls,
            )?),
            ids: CreatedIds::new(journal.clone(), context.name, settings.base()),
            journal,
            settings: Box::new(std::sync::RwLock::new(settings.clone())),
            region: Region::parse(&settings.default_region),
            customers: Box::default(),
            serial: Box::default(),
        })
    }

    async fn ready(&self) -> Result<(), Failure> {
        self.client.token_check().await
    }

    async fn check(settings: &ZendeskSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, settings: &ZendeskSinkSettings) -> anyhow::Result<()> {
        self.client.set_secret(&settings.auth);
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings.clone();
        Ok(())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        match engagement_of(envelope) {
            Some(engagement_id) => {
                self.write(&engagement_id, std::slice::from_ref(envelope))
                    .await
            }
            None => Ok(()),
        }
    }

    async fn deliver_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), Failure>> {
        per_engagement(envelopes, |engagement_id, theirs| async move {
            self.write(&engagement_id, &theirs).await
        })
        .await
    }

    fn coalesce(&self) -> usize {
        COALESCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;
    use zcc_sim::sink::zendesk::{Account, IDEMPOTENCY_WINDOW, ZendeskFake};

    use crate::config::Secret;
    use crate::record::{Consumer, View};

    #[test]
    fn redacted_text_reads_as_blocks() {
        assert!(is_redacted("▇▇▇▇ ▇▇\n▇"));
        assert!(!is_redacted("▇▇ still here"));
        assert_eq!(note_key("n1", "abc"), "note:n1:abc");
    }

    /// One step of a case: a delivery of engagement `n` (a new note
    /// version each time, so the create's body differs between attempts),
    /// the fake losing the next create's answer, the account's clock moving
    /// on (past the 2-hour idempotency window when `hours` ≥ 2), or the
    /// relay restarting with a journal that never recorded anything (the
    /// worst crash: no ticket id kept).
    #[derive(Debug, Clone)]
    enum Step {
        Deliver(usize),
        LoseNextCreate,
        Advance(u64),
        RestartWithoutJournal,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3usize).prop_map(Step::Deliver),
            2 => Just(Step::LoseNextCreate),
            2 => (0..5u64).prop_map(Step::Advance),
            1 => Just(Step::RestartWithoutJournal),
        ]
    }

    fn envelope(engagement: usize, version: usize) -> Envelope {
        let view = View {
            kind: "engagement_note_added".into(),
            engagement_id: Some(format!("eng-{engagement}")),
            direction: Some("inbound".into()),
            channel: Some("voice".into()),
            consumer: Some(Consumer {
                number: Some("+14155550100".into()),
                name: None,
            }),
            note_id: Some("n1".into()),
            note: Some(format!("note version {version}")),
            last_modified: Some(format!("2026-12-01T10:{:02}:00Z", version % 60)),
            ..View::default()
        };
        Envelope {
            seq: version as u64,
            bytes: Arc::from(&b"{}"[..]),
            webhook_id: format!("n1~{version}"),
            lane: Some(format!("eng-{engagement}")),
            view: Arc::new(view),
        }
    }

    async fn sink(fake: &ZendeskFake, journal: &Journal) -> ZendeskSink {
        let auth = ZendeskAuth::OAuth {
            client_id: fake.client_id(),
            client_secret: Secret::new(fake.client_secret()),
        };
        sink_with(fake, journal, auth).await
    }

    async fn sink_with(fake: &ZendeskFake, journal: &Journal, auth: ZendeskAuth) -> ZendeskSink {
        sink_of(fake, journal, auth, |_| {}).await
    }

    async fn sink_of(
        fake: &ZendeskFake,
        journal: &Journal,
        auth: ZendeskAuth,
        change: impl FnOnce(&mut ZendeskSinkSettings),
    ) -> ZendeskSink {
        let mut settings = ZendeskSinkSettings {
            url: fake.url().parse().unwrap(),
            auth,
            create_requesters: true,
            disposition_field_id: None,
            attach_files: true,
            link_customers: true,
            default_region: "US".into(),
            requests_per_second: 1000,
            ticket_updates_per_minute: 100_000,
        };
        change(&mut settings);
        let tls = crate::tls::client_config().unwrap();
        let health = crate::service::Health::default();
        let context = BuildContext {
            name: "zendesk",
            timeout: Duration::from_secs(5),
            tls: &tls,
            health: &health,
            journal: Some(journal),
        };
        ZendeskSink::build(&settings, &context).await.unwrap()
    }

    /// Lost create answers, retried within or after the idempotency
    /// window, across restarts that forgot every ticket id: still one
    /// ticket per engagement, each holding the note once.
    async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let fake = ZendeskFake::start(Account::new()).await.unwrap();
        let mut dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let mut relay = sink(&fake, &journal).await;
        let mut version = 0;
        let mut delivered = [None::<usize>; 3];
        for step in steps.into_iter().chain((0..3).map(Step::Deliver)) {
            match step {
                Step::Deliver(n) => {
                    version += 1;
                    // A failed attempt (a lost answer, an expired token) is
                    // retried at once, as the durable schedule would later.
                    let mut outcome = relay.deliver(&envelope(n, version)).await;
                    for _ in 0..3 {
                        if outcome.is_ok() {
                            break;
                        }
                        outcome = relay.deliver(&envelope(n, version)).await;
                    }
                    prop_assert!(outcome.is_ok(), "{outcome:?}");
                    delivered[n] = Some(version);
                }
                Step::LoseNextCreate => fake.lose_next_create_answers(1),
                Step::Advance(hours) => fake.advance_clock(Duration::from_secs(hours * 3600)),
                Step::RestartWithoutJournal => {
                    journal.close().await;
                    dir = tempfile::tempdir().unwrap();
                    journal = Journal::open(dir.path(), Vec::new()).unwrap();
                    relay = sink(&fake, &journal).await;
                }
            }
        }
        prop_assert_eq!(fake.ticket_ids().len(), 3, "one ticket per engagement");
        for (n, last) in delivered.iter().enumerate() {
            let tickets = fake.tickets_with(&format!("zcc:eng-{n}"));
            prop_assert_eq!(tickets.len(), 1);
            let last = last.unwrap();
            let holding: Vec<_> = fake
                .comments(tickets[0])
                .into_iter()
                .filter(|c| c.body.contains(&format!("note version {last}\n")))
                .collect();
            prop_assert_eq!(holding.len(), 1, "the latest text once");
            for comment in fake.comments(tickets[0]) {
                if let Some(at) = comment.body.find("note version ") {
                    let shown = &comment.body[at + "note version ".len()..];
                    let shown = shown.split('\n').next().unwrap_or("");
                    prop_assert_eq!(
                        shown,
                        last.to_string(),
                        "a superseded text left readable: {:?}",
                        comment.body
                    );
                }
            }
        }
        prop_assert!(IDEMPOTENCY_WINDOW == Duration::from_secs(7200));
        journal.close().await;
        fake.stop().await;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

        #[test]
        fn a_lost_create_retried_after_the_idempotency_window_makes_no_second_ticket(
            steps in proptest::collection::vec(step(), 1..14)
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(steps))?;
        }
    }

    /// Email and API token (Basic `{email}/token:{token}`) writes as OAuth
    /// does; an unchanged engagement costs no second update; a wrong token is
    /// a re-authentication failure, not a dead letter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_api_token_writes_and_an_unchanged_ticket_is_not_updated_again() {
        let fake = ZendeskFake::start(Account::new()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let token = ZendeskAuth::ApiToken {
            email: fake.email(),
            api_token: Secret::new(fake.api_token()),
        };
        let relay = sink_with(&fake, &journal, token).await;
        relay.deliver(&envelope(0, 1)).await.unwrap();
        let after_first = fake.request_counts();
        assert_eq!(fake.tickets_with("zcc:eng-0").len(), 1);
        assert_eq!(after_first.tokens_issued, 0, "no OAuth token");
        relay.deliver(&envelope(0, 1)).await.unwrap();
        let after_second = fake.request_counts();
        assert_eq!(
            after_second.updates, after_first.updates,
            "nothing changed, nothing written"
        );
        assert_eq!(after_second.creates, 1);
        // A restart on the same journal looks neither the ticket nor its
        // comments up again but for what is new (an edited note).
        let restarted = sink_with(
            &fake,
            &journal,
            ZendeskAuth::ApiToken {
                email: fake.email(),
                api_token: Secret::new(fake.api_token()),
            },
        )
        .await;
        restarted.deliver(&envelope(0, 2)).await.unwrap();
        let after_restart = fake.request_counts();
        assert_eq!(
            (after_restart.ticket_lists, after_restart.comment_lists),
            (after_first.ticket_lists, after_first.comment_lists + 1),
            "{after_restart:?}"
        );
        assert_eq!(after_restart.redactions, 1, "the first version redacted");
        let wrong = ZendeskAuth::ApiToken {
            email: fake.email(),
            api_token: Secret::new("not-the-token".into()),
        };
        let failure = sink_with(&fake, &journal, wrong)
            .await
            .deliver(&envelope(1, 1))
            .await
            .unwrap_err();
        assert_eq!(failure.class, crate::failure::Class::Reauthenticate);
        journal.close().await;
        fake.stop().await;
    }

    /// A number no user has: an end-user is created once and is the
    /// requester of every engagement with that number; with
    /// `create_requesters = false` the integration user stays requester and
    /// nobody is created; a number two users have links nobody.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requesters_are_found_created_once_or_left_to_the_integration_user() {
        let fake = ZendeskFake::start(Account::new()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let oauth = || ZendeskAuth::OAuth {
            client_id: fake.client_id(),
            client_secret: Secret::new(fake.client_secret()),
        };
        let relay = sink_with(&fake, &journal, oauth()).await;
        relay.deliver(&envelope(0, 1)).await.unwrap();
        // Another process (a restart): the user is found by its external_id.
        sink_with(&fake, &journal, oauth())
            .await
            .deliver(&envelope(1, 2))
            .await
            .unwrap();
        let created = fake.users_with_phone("+14155550100");
        assert_eq!(created.len(), 1, "one end-user for the number");
        for n in 0..2 {
            let ticket = fake.tickets_with(&format!("zcc:eng-{n}"))[0];
            assert_eq!(fake.ticket(ticket).unwrap().requester_id, created[0]);
        }
        let no_create = sink_of(&fake, &journal, oauth(), |s| s.create_requesters = false).await;
        let mut other = envelope(2, 3);
        let mut view = (*other.view).clone();
        view.consumer = Some(Consumer {
            number: Some("+1 (212) 555-0199".into()),
            name: Some("Grace".into()),
        });
        other.view = Arc::new(view);
        no_create.deliver(&other).await.unwrap();
        let ticket = fake.tickets_with("zcc:eng-2")[0];
        assert_eq!(fake.ticket(ticket).unwrap().requester_id, fake.agent_id());
        assert!(fake.users_with_phone("+12125550199").is_empty());
        // Two users with one number: unlinked, nobody created.
        fake.add_user("Twin A", "+442079460001");
        fake.add_user("Twin B", "+44 20 7946 0001");
        let mut twins = envelope(3, 4);
        let mut view = (*twins.view).clone();
        view.consumer = Some(Consumer {
            number: Some("+442079460001".into()),
            name: None,
        });
        twins.view = Arc::new(view);
        let users_before = fake.request_counts().user_creates;
        sink_of(&fake, &journal, oauth(), |s| s.default_region = "GB".into())
            .await
            .deliver(&twins)
            .await
            .unwrap();
        let ticket = fake.tickets_with("zcc:eng-3")[0];
        assert_eq!(fake.ticket(ticket).unwrap().requester_id, fake.agent_id());
        assert_eq!(fake.request_counts().user_creates, users_before);
        journal.close().await;
        fake.stop().await;
    }

    /// The case the issue names, spelt out: the create happens, its answer
    /// is lost, the window passes, the retry finds the ticket by
    /// `external_id`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_create_then_two_hours_then_the_retry() {
        let fake = ZendeskFake::start(Account::new()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let relay = sink(&fake, &journal).await;
        fake.lose_next_create_answers(1);
        let lost = relay.deliver(&envelope(0, 1)).await.unwrap_err();
        assert!(lost.is_retry(), "{lost:?}");
        assert_eq!(fake.ticket_ids().len(), 1, "the create happened");
        fake.advance_clock(IDEMPOTENCY_WINDOW + Duration::from_secs(60));
        // Two hours on, the 30-minute token has expired too: one 401, then
        // a new token.
        let expired = relay.deliver(&envelope(0, 2)).await.unwrap_err();
        assert_eq!(expired.class, crate::failure::Class::Reauthenticate);
        relay.deliver(&envelope(0, 2)).await.unwrap();
        assert_eq!(fake.ticket_ids().len(), 1, "no second ticket");
        let counts = fake.request_counts();
        assert_eq!((counts.creates, counts.lost_answers), (1, 1));
        journal.close().await;
        fake.stop().await;
    }
}
