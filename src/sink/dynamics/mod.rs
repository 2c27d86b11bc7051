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
//! complete it — all applied or none. Before the first write of an
//! engagement in this process, when there are notes or files to write, the
//! phonecall's annotations are listed (later writes use what the last
//! successful change set left, remembered in memory): a note is found again by its natural key in the subject (and
//! updated in place when edited), a file by its name, so a crash between the
//! write and the settle never adds one twice. No CRM id is kept: the key
//! finds the phonecall, the subject or file name finds an annotation.

mod batch;
mod check;
mod client;
mod config;
mod error;
mod phonecall;

pub use config::{DynamicsSinkConfig, DynamicsSinkSettings};

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::config::SinkCheck;
use crate::crm::customer::{CustomerCache, choose};
use crate::crm::engagement::{KEYED_EVENTS, Serial, engagement_of, fold_views, per_engagement};
use crate::crm::files;
use crate::crm::phone::{self, Region};
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

pub struct DynamicsSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<DynamicsSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
    /// Each engagement's annotations as the last successful change set left
    /// them (this process is the only writer): a later write needs no read.
    known: Box<Mutex<HashMap<String, Vec<Annotation>>>>,
}

/// Engagements whose annotations are remembered before the memory starts over.
const KNOWN_LIMIT: usize = 10_000;

impl DynamicsSink {
    fn settings(&self) -> DynamicsSinkSettings {
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

    /// Writes the engagement's phonecall and annotations as the aggregate is now.
    async fn write_now(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        let settings = self.settings();
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
        // The annotations already there matter only when there are some to
        // write; otherwise the change set alone is the whole write.
        let has_annotations = !aggregate.notes().is_empty() || aggregate.files().any(&attachable);
        let remembered = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(engagement_id)
            .cloned();
        let from_memory = remembered.is_some();
        let existing = match remembered {
            Some(known) => known,
            None if has_annotations => match self.client.find_phonecall(column, &key).await? {
                Some(id) => self.client.annotations_of(&id).await?,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        // What each annotation operation (after the first) leaves behind;
        // a created one's id comes from the change set's answer.
        let mut effects: Vec<Annotation> = Vec::new();
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
            match existing.iter().find(|a| a.subject == subject) {
                Some(found) if found.notetext == text => {}
                Some(found) => {
                    operations.push(Operation {
                        method: "PATCH",
                        url: self.client.url(&format!("annotations({})", found.id)),
                        body: json!({"notetext": text}),
                    });
                    effects.push(Annotation {
                        notetext: text,
                        ..found.clone()
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
                    effects.push(Annotation {
                        id: String::new(),
                        subject,
                        notetext: text,
                        filename: String::new(),
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
            if existing.iter().any(|a| a.filename == name) {
                continue;
            }
            let bytes = files::read_whole(self.client.http(), entry, max_upload).await?;
            effects.push(Annotation {
                id: String::new(),
                subject: phonecall::file_subject(&entry.kind, &name),
                notetext: String::new(),
                filename: name.clone(),
            });
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
        }
        operations.push(Operation {
            method: "PATCH",
            url: target,
            body: Value::Object(phonecall::fields(&aggregate, contact.as_deref(), &linked)),
        });
        let answers = self
            .client
            .change_set(
                &operations,
                Context {
                    key_column: Some(column),
                },
            )
            .await;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let answers = match answers {
            Ok(answers) => answers,
            Err(failure) => {
                // A write that got no answer may have been applied, and a
                // remembered annotation may have been deleted in the CRM
                // (404): read them again on the next try, which comes at
                // once rather than dead-lettering what memory got wrong.
                known.remove(engagement_id);
                if from_memory && failure.status == Some(404) {
                    return Err(Failure::retry(format!(
                        "{} (the phonecall's notes changed in the CRM; reading them again)",
                        failure.reason
                    )));
                }
                return Err(failure);
            }
        };
        let mut after = existing;
        let mut complete = true;
        for (mut effect, answer) in effects.into_iter().zip(answers.iter().skip(1)) {
            match after
                .iter_mut()
                .find(|a| !effect.id.is_empty() && a.id == effect.id)
            {
                Some(updated) => *updated = effect,
                None => match answer.header("odata-entityid").and_then(entity_id) {
                    Some(id) => {
                        effect.id = id;
                        after.push(effect);
                    }
                    None => complete = false,
                },
            }
        }
        if complete {
            if known.len() >= KNOWN_LIMIT {
                known.clear();
            }
            known.insert(engagement_id.to_owned(), after);
        } else {
            known.remove(engagement_id);
        }
        Ok(())
    }

    /// The one contact whose business or mobile phone is the consumer's
    /// number; a failed search fails the delivery.
    async fn contact(&self, aggregate: &Interaction) -> Result<Option<String>, Failure> {
        let Some(number) = aggregate
            .consumer()
            .number
            .as_deref()
            .and_then(|n| phone::normalise(n, self.region))
        else {
            return Ok(None);
        };
        if let Some(known) = self.customers.get(&number) {
            return Ok(known.map(|c| c.id().to_owned()));
        }
        let found = self.client.contacts_by_phone(&number).await?;
        let contacts: Vec<String> = found
            .into_iter()
            .filter(|(_, phones)| {
                phones
                    .iter()
                    .any(|p| phone::normalise(p, self.region).as_deref() == Some(number.as_str()))
            })
            .map(|(id, _)| id)
            .collect();
        // Dataverse leads are not used (DESIGN.md §3.5 "Dynamics").
        let answer = choose(&contacts, &[]);
        self.customers
            .put(&self.name, &number, answer.clone(), contacts.len(), 0);
        Ok(answer.map(|c| c.id().to_owned()))
    }
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
            journal,
            settings: Box::new(std::sync::RwLock::new(settings.clone())),
            region: Region::parse(&settings.default_region),
            customers: Box::default(),
            serial: Box::default(),
            known: Box::default(),
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

    /// One change set for every record of the engagement that is due now.
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
