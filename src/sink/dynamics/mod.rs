//! The Dynamics 365 sink (DESIGN.md §3.5): one `phonecall` per engagement in
//! Dataverse, found by an alternate key on `alternate_key_column`, its
//! columns rendered from the engagement's interaction aggregate *as it is at
//! delivery time*, each note and each stored file one `annotation` on it, the
//! caller's contact linked by phone.
//!
//! Owns the Web API client (`client`: Entra token, request budget, error
//! bodies, `$batch`), the error table (`error`), the `$batch` body (`batch`),
//! the column mapping and the key (`phonecall`) and `check`. Its keys are in
//! `config`.
//!
//! A completed activity is read-only, so every write is one `$batch` change
//! set: upsert the phonecall by its key open (creating it when absent), write
//! the annotations that are missing or changed, and write its columns and
//! complete it — all applied or none. The ids it created (the phonecall,
//! each note's annotation with a digest of its text, each file's) are kept
//! in the journal (`crm::ids`): a note or file recorded there costs no read.
//! Before writing one that is not, the phonecall's annotations are listed —
//! a note is found again by its natural key in the subject (and updated in
//! place when edited), a file by its name — so a crash between the write
//! and its record never adds one twice. A backlog of several engagements
//! goes in one `$batch` of one change set each (`Kind::spread`), which goes
//! on past a refused one.

mod batch;
mod check;
mod client;
mod config;
mod error;
mod phonecall;

pub use config::{DynamicsSinkConfig, DynamicsSinkSettings};

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::config::SinkCheck;
use crate::crm::customer::CustomerCache;
use crate::crm::engagement::{KEYED_EVENTS, Serial, by_engagement, engagement_of, fold_views};
use crate::crm::files;
use crate::crm::ids::{CreatedIds, CrmIds, NoteIds, text_digest};
use crate::crm::phone::Region;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::interaction::Interaction;
use crate::journal::Journal;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use batch::Operation;
use client::{Annotation, Client};
use error::Context;

/// Due records of one engagement written in one change set.
const COALESCE: usize = 64;
/// Transcripts up to this size also carry their text in the annotation.
const SHORT_TRANSCRIPT: u64 = 64 * 1024;

/// Engagements per `$batch` during a backlog (one change set each).
const SPREAD: usize = 100;
/// At most this many operations in one `$batch` (the Web API's limit).
const BATCH_OPERATIONS: usize = 1_000;
/// A `$batch` body is closed at about this size (files are base64 inside).
const BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Engagements prepared (aggregate read, lookups) at once in a backlog.
const AT_ONCE: usize = 8;

pub struct DynamicsSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<DynamicsSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
    /// The phonecall and annotation ids it created, in the journal.
    ids: CreatedIds,
}

/// One engagement's change set, planned from its aggregate and what is
/// known of its phonecall.
struct Planned {
    engagement_id: String,
    operations: Vec<Operation>,
    /// What each annotation operation writes (the operations between the
    /// opening and the closing one, in order).
    writes: Vec<Written>,
    /// The phonecall's id, when the journal or a lookup knows it.
    activity: Option<String>,
    /// Ids a lookup found already in the CRM, recorded with the write's.
    found: CrmIds,
    /// Whether an operation names an annotation by a recorded id (a 404
    /// then means it was deleted in the CRM).
    by_recorded_id: bool,
}

/// What one annotation operation writes; `id` is the annotation's when it
/// exists (a PATCH), `None` for a created one (its id is in the answer).
enum Written {
    Note {
        note_id: String,
        digest: String,
        id: Option<String>,
    },
    File {
        location: String,
        id: Option<String>,
    },
}

impl DynamicsSink {
    fn settings(&self) -> DynamicsSinkSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes the engagement's phonecall and annotations as the aggregate
    /// is now, one write at a time per engagement.
    async fn write(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        self.serial
            .run(engagement_id, async {
                let settings = self.settings();
                let planned = self.plan(&settings, engagement_id, fallback).await?;
                let answers = self
                    .client
                    .change_set(&planned.operations, context(&settings))
                    .await;
                self.settle(planned, answers).await
            })
            .await
    }

    /// Several engagements' writes in as few `$batch`es as their size
    /// allows, one change set each; the outcome of each.
    async fn write_many(
        &self,
        groups: Vec<(String, Vec<Envelope>)>,
    ) -> HashMap<String, Result<(), Failure>> {
        let ids: Vec<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
        self.serial
            .run_many(&ids, self.write_many_now(&groups))
            .await
    }

    async fn write_many_now(
        &self,
        groups: &[(String, Vec<Envelope>)],
    ) -> HashMap<String, Result<(), Failure>> {
        let settings = self.settings();
        let settings = &settings;
        let mut outcomes = HashMap::new();
        type Planning<'a> = std::pin::Pin<
            Box<dyn Future<Output = (&'a String, Result<Planned, Failure>)> + Send + 'a>,
        >;
        // Planned a few at a time and sent as soon as a `$batch` is full, so
        // that no more than about one batch of file bodies is held at once.
        let mut pending: Vec<Planned> = Vec::new();
        for slice in groups.chunks(AT_ONCE) {
            let jobs: Vec<Planning<'_>> = slice
                .iter()
                .map(|(engagement_id, envelopes)| -> Planning<'_> {
                    Box::pin(async move {
                        let plan = self.plan(settings, engagement_id, envelopes).await;
                        (engagement_id, plan)
                    })
                })
                .collect();
            let planned: Vec<(&String, Result<Planned, Failure>)> =
                futures_util::future::join_all(jobs).await;
            for (engagement_id, plan) in planned {
                match plan {
                    Ok(plan) => pending.push(plan),
                    Err(failure) => {
                        outcomes.insert(engagement_id.clone(), Err(failure));
                    }
                }
            }
            let mut full = chunks(std::mem::take(&mut pending));
            // The last one may still take more.
            pending = full.pop().unwrap_or_default();
            for chunk in full {
                self.send(settings, chunk, &mut outcomes).await;
            }
        }
        for chunk in chunks(pending) {
            self.send(settings, chunk, &mut outcomes).await;
        }
        outcomes
    }

    /// One `$batch` of `chunk`'s change sets; each engagement's outcome.
    async fn send(
        &self,
        settings: &DynamicsSinkSettings,
        chunk: Vec<Planned>,
        outcomes: &mut HashMap<String, Result<(), Failure>>,
    ) {
        let change_sets: Vec<&[Operation]> =
            chunk.iter().map(|p| p.operations.as_slice()).collect();
        let answered = self
            .client
            .change_sets(&change_sets, context(settings))
            .await;
        let mut answered = match answered {
            Ok(each) => each.into_iter().map(Some).collect::<Vec<_>>(),
            Err(failure) => vec![Some(Err(failure)); chunk.len()],
        };
        for (plan, answers) in chunk.into_iter().zip(answered.iter_mut()) {
            let engagement_id = plan.engagement_id.clone();
            let answers = answers
                .take()
                .unwrap_or_else(|| Err(Failure::retry("$batch gave no answer")));
            outcomes.insert(engagement_id, self.settle(plan, answers).await);
        }
    }

    /// The engagement's change set as the aggregate is now: what the journal
    /// knows costs nothing, what it does not is looked up first.
    async fn plan(
        &self,
        settings: &DynamicsSinkSettings,
        engagement_id: &str,
        fallback: &[Envelope],
    ) -> Result<Planned, Failure> {
        let aggregate = match self.journal.interaction(engagement_id).await {
            Ok(Some(aggregate)) => aggregate,
            Ok(None) => fold_views(fallback)
                .ok_or_else(|| Failure::retry("the engagement's aggregate is not stored yet"))?,
            Err(error) => return Err(Failure::retry(format!("journal: {error}"))),
        };
        let contact = if settings.link_customers {
            self.contact(&aggregate).await?
        } else {
            None
        };
        let column = settings.alternate_key_column.as_str();
        let key = phonecall::key(engagement_id);
        let segment = phonecall::segment(column, &key);
        let max_upload = if settings.attach_files && aggregate.files().next().is_some() {
            self.client.max_upload().await?
        } else {
            0
        };
        let attachable = |entry: &crate::record::MediaEntry| {
            settings.attach_files
                && entry.size.div_ceil(3) * 4 <= max_upload
                && files::readable(entry)
        };
        let known = self.ids.get(engagement_id).await?;
        let mut activity = known.activity.clone();
        let recorded_note = |note_id: &str| {
            known
                .activity
                .as_deref()
                .and_then(|a| known.note_on(a, note_id))
                .cloned()
        };
        let recorded_file = |location: &str| {
            known
                .activity
                .as_deref()
                .and_then(|a| known.file_on(a, location))
                .is_some()
        };
        // What the CRM holds is read only for what the journal does not know.
        let unrecorded = aggregate
            .notes()
            .iter()
            .any(|note| recorded_note(note.note_id).is_none())
            || aggregate
                .files()
                .any(|entry| attachable(entry) && !recorded_file(&entry.location));
        let mut existing: Vec<Annotation> = Vec::new();
        if unrecorded {
            let phonecall = match &activity {
                Some(id) => Some(id.clone()),
                None => self.client.find_phonecall(column, &key).await?,
            };
            if let Some(id) = phonecall {
                existing = self.client.annotations_of(&id).await?;
                activity = Some(id);
            }
        }
        let mut found = CrmIds::default();
        let mut writes = Vec::new();
        let mut by_recorded_id = false;
        let target = self.client.url(&segment);
        let bind = format!("/{segment}");
        // Open (or create) first: a completed phonecall is read-only.
        let mut operations = vec![Operation {
            method: "PATCH",
            url: target.clone(),
            body: json!({"statecode": 0, "statuscode": 1}),
        }];
        for note in aggregate.notes() {
            let subject = phonecall::note_subject(note.note_id);
            let text = phonecall::note_text(note.text);
            let digest = text_digest(&text);
            let there = match recorded_note(note.note_id) {
                Some(recorded) => {
                    by_recorded_id = true;
                    Some((recorded.id, recorded.digest))
                }
                None => existing
                    .iter()
                    .find(|a| a.subject == subject)
                    .map(|a| (a.id.clone(), text_digest(&a.notetext))),
            };
            match there {
                Some((id, written)) if written == digest => {
                    found
                        .notes
                        .insert(note.note_id.to_owned(), NoteIds { id, digest });
                }
                Some((id, _)) => {
                    operations.push(Operation {
                        method: "PATCH",
                        url: self.client.url(&format!("annotations({id})")),
                        body: json!({"notetext": text}),
                    });
                    writes.push(Written::Note {
                        note_id: note.note_id.to_owned(),
                        digest,
                        id: Some(id),
                    });
                }
                None => {
                    operations.push(Operation {
                        method: "POST",
                        url: self.client.url("annotations"),
                        body: json!({
                            "subject": subject,
                            "notetext": text,
                            "objectid_phonecall@odata.bind": bind,
                        }),
                    });
                    writes.push(Written::Note {
                        note_id: note.note_id.to_owned(),
                        digest,
                        id: None,
                    });
                }
            }
        }
        let mut linked = Vec::new();
        for entry in aggregate.files() {
            let name = files::name_of(entry);
            if !attachable(entry) {
                linked.push((name, files::link_of(entry)));
                continue;
            }
            if recorded_file(&entry.location) {
                continue;
            }
            if let Some(there) = existing.iter().find(|a| a.filename == name) {
                found.files.insert(entry.location.clone(), there.id.clone());
                continue;
            }
            let bytes = files::read_whole(self.client.http(), entry, max_upload).await?;
            let mut body = json!({
                "subject": phonecall::file_subject(&entry.kind, &name),
                "filename": name,
                "mimetype": if entry.content_type.is_empty() {
                    "application/octet-stream"
                } else {
                    entry.content_type.as_str()
                },
                "documentbody": BASE64.encode(&bytes),
                "objectid_phonecall@odata.bind": bind,
            });
            if let Some(text) = files::short_text(entry, SHORT_TRANSCRIPT).await {
                body["notetext"] = Value::String(phonecall::note_text(&text));
            }
            operations.push(Operation {
                method: "POST",
                url: self.client.url("annotations"),
                body,
            });
            writes.push(Written::File {
                location: entry.location.clone(),
                id: None,
            });
        }
        operations.push(Operation {
            method: "PATCH",
            url: target,
            body: Value::Object(phonecall::fields(&aggregate, contact.as_deref(), &linked)),
        });
        Ok(Planned {
            engagement_id: engagement_id.to_owned(),
            operations,
            writes,
            activity,
            found,
            by_recorded_id,
        })
    }

    /// Records what an applied change set created, or answers for a refused
    /// one: an annotation id the journal held that the CRM no longer has
    /// (404) is forgotten, and the next try, at once, looks them up.
    async fn settle(
        &self,
        planned: Planned,
        answers: Result<Vec<batch::Answer>, Failure>,
    ) -> Result<(), Failure> {
        let answers = match answers {
            Ok(answers) => answers,
            Err(failure) if planned.by_recorded_id && failure.status == Some(404) => {
                self.ids.forget(&planned.engagement_id).await?;
                return Err(Failure::retry(format!(
                    "{} (the phonecall's notes changed in the CRM; reading them again)",
                    failure.reason
                )));
            }
            Err(failure) => return Err(failure),
        };
        // The phonecall's id: the upsert's answer names it.
        let answered = answers
            .first()
            .and_then(|a| a.header("odata-entityid"))
            .and_then(entity_id);
        if let (Some(now), Some(known)) = (&answered, &planned.activity)
            && now != known
        {
            // The phonecall known was deleted in the CRM and the upsert made
            // another: the notes and files skipped as already there are not
            // on it. Forget them; the next try, at once, writes them all.
            self.ids.forget(&planned.engagement_id).await?;
            return Err(Failure::retry(
                "the phonecall was recreated in the CRM; writing its notes and files again",
            ));
        }
        let Some(activity) = answered.or(planned.activity) else {
            return Ok(());
        };
        let mut learned = self.ids.on(&activity);
        learned.files = planned.found.files;
        learned.notes = planned.found.notes;
        for (written, answer) in planned.writes.into_iter().zip(answers.iter().skip(1)) {
            let created = || answer.header("odata-entityid").and_then(entity_id);
            match written {
                Written::Note {
                    note_id,
                    digest,
                    id,
                } => {
                    if let Some(id) = id.or_else(created) {
                        learned.notes.insert(note_id, NoteIds { id, digest });
                    }
                }
                Written::File { location, id } => {
                    if let Some(id) = id.or_else(created) {
                        learned.files.insert(location, id);
                    }
                }
            }
        }
        self.ids.record(&planned.engagement_id, learned).await
    }

    /// The one contact whose business or mobile phone is the consumer's
    /// number; a failed search fails the delivery.
    async fn contact(&self, aggregate: &Interaction) -> Result<Option<String>, Failure> {
        // Dataverse leads are not used (DESIGN.md §3.5 "Dynamics").
        self.customers
            .contact(&self.name, aggregate, self.region, |number| async move {
                self.client.contacts_by_phone(&number).await
            })
            .await
    }
}

fn context(settings: &DynamicsSinkSettings) -> Context<'_> {
    Context {
        key_column: Some(settings.alternate_key_column.as_str()),
    }
}

/// Planned change sets cut into `$batch`es within the Web API's operation
/// limit and a body size (the engagements' order kept).
fn chunks(planned: Vec<Planned>) -> Vec<Vec<Planned>> {
    let mut chunks: Vec<Vec<Planned>> = Vec::new();
    let (mut operations, mut bytes) = (0, 0);
    for plan in planned {
        let size: usize = plan
            .operations
            .iter()
            .map(|o| o.url.len() + o.body.to_string().len() + 200)
            .sum();
        let count = plan.operations.len();
        let fits = operations + count <= BATCH_OPERATIONS && bytes + size <= BATCH_BYTES;
        match chunks.last_mut() {
            Some(chunk) if fits => chunk.push(plan),
            _ => {
                (operations, bytes) = (0, 0);
                chunks.push(vec![plan]);
            }
        }
        operations += count;
        bytes += size;
    }
    chunks
}

/// The id in an `OData-EntityId` (`…/annotations(<guid>)`).
fn entity_id(url: &str) -> Option<String> {
    let inside = url.rsplit_once('(')?.1.strip_suffix(')')?;
    (!inside.is_empty() && !inside.contains('=')).then(|| inside.to_owned())
}

impl Kind for DynamicsSink {
    const TYPE: &'static str = "dynamics";
    const DEFAULT_EVENTS: &'static [&'static str] = KEYED_EVENTS;
    type Config = DynamicsSinkConfig;
    type Settings = DynamicsSinkSettings;

    fn validate(
        config: DynamicsSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<DynamicsSinkSettings> {
        config.validate(check)
    }

    fn reload(
        running: &DynamicsSinkSettings,
        loaded: &DynamicsSinkSettings,
    ) -> Reload<DynamicsSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &DynamicsSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<DynamicsSink> {
        let journal = context.journal.cloned().ok_or_else(|| {
            anyhow::anyhow!("a dynamics sink needs the journal (its interaction aggregates)")
        })?;
        Ok(DynamicsSink {
            name: context.name.to_owned(),
            client: Box::new(Client::new(
                context.name,
                settings,
                context.timeout,
                context.tls,
            )?),
            settings: Box::new(std::sync::RwLock::new(settings.clone())),
            region: Region::parse(&settings.default_region),
            customers: Box::default(),
            serial: Box::default(),
            ids: CreatedIds::new(journal.clone(), context.name, settings.org()),
            journal,
        })
    }

    /// Proves the credentials: one token request.
    async fn ready(&self) -> Result<(), Failure> {
        self.client.token_check().await
    }

    async fn check(settings: &DynamicsSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, settings: &DynamicsSinkSettings) -> anyhow::Result<()> {
        self.client
            .set_client_secret(settings.client_secret.clone());
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings.clone();
        Ok(())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        match engagement_of(envelope) {
            Some(engagement_id) => {
                self.write(&engagement_id, std::slice::from_ref(envelope))
                    .await
            }
            // Nothing in a CRM is about a record without an engagement.
            None => Ok(()),
        }
    }

    /// One change set for every record of the engagement that is due now;
    /// several engagements' in one `$batch`.
    async fn deliver_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), Failure>> {
        by_engagement(
            envelopes,
            |engagement_id, theirs| async move { self.write(&engagement_id, &theirs).await },
            |groups| self.write_many(groups),
        )
        .await
    }

    fn coalesce(&self) -> usize {
        COALESCE
    }

    fn spread(&self) -> usize {
        SPREAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(id: &str, operations: usize, body_bytes: usize) -> Planned {
        Planned {
            engagement_id: id.into(),
            operations: (0..operations)
                .map(|_| Operation {
                    method: "POST",
                    url: "annotations".into(),
                    body: json!({"documentbody": "x".repeat(body_bytes)}),
                })
                .collect(),
            writes: Vec::new(),
            activity: None,
            found: CrmIds::default(),
            by_recorded_id: false,
        }
    }

    fn ids(chunks: &[Vec<Planned>]) -> Vec<Vec<&str>> {
        chunks
            .iter()
            .map(|c| c.iter().map(|p| p.engagement_id.as_str()).collect())
            .collect()
    }

    #[test]
    fn batches_are_cut_at_the_operation_limit_and_the_body_size() {
        // 400 + 400 fit in 1,000 operations; the third opens another batch.
        let by_count = chunks(vec![
            planned("a", 400, 1),
            planned("b", 400, 1),
            planned("c", 400, 1),
        ]);
        assert_eq!(ids(&by_count), [vec!["a", "b"], vec!["c"]]);
        // Two 20 MB files do not share a batch; a change set larger than
        // the cap alone still goes, by itself.
        let mb = 1024 * 1024;
        let by_size = chunks(vec![
            planned("a", 3, 20 * mb / 3),
            planned("b", 3, 20 * mb / 3),
            planned("c", 1, 40 * mb),
            planned("d", 2, 10),
        ]);
        assert_eq!(ids(&by_size), [vec!["a"], vec!["b"], vec!["c"], vec!["d"]]);
        assert!(chunks(Vec::new()).is_empty());
    }

    #[test]
    fn entity_ids_are_read_from_the_answer_header() {
        assert_eq!(
            entity_id("https://org/api/data/v9.2/annotations(0000-1)").as_deref(),
            Some("0000-1")
        );
        assert_eq!(
            entity_id("https://org/api/data/v9.2/phonecalls(k='a')"),
            None
        );
        assert_eq!(entity_id("no id"), None);
    }
}
