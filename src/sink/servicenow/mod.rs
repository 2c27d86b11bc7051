//! The ServiceNow sink (DESIGN.md §3.5): one record per engagement in
//! `table` (default `interaction`), found by `correlation_field`, its fields
//! rendered from the engagement's interaction aggregate *as it is at
//! delivery time*; each note one `work_notes` entry (edited in place in
//! `sys_journal_field` when the note is edited), each stored file one
//! attachment through the Attachment API, the caller's contact linked by
//! phone from `contact_table`.
//!
//! Owns the REST client (`client`: sign-in, request budget, error bodies,
//! Table and Attachment APIs), the error table (`error`), the field mapping
//! and the entries' text (`record`) and `check`. Its keys are in `config`.
//!
//! The CRM ids it created — the record's `sys_id`, each entry's and each
//! attachment's — are kept in the journal (`crm::ids`), so a later artefact
//! reads nothing back. Before creating what the journal does not know, it
//! looks: the record by its correlation field, an entry by its first line
//! (the note's marker), an attachment by its file name on the record; so a
//! crash between a write and its record never writes it twice. Writes of
//! one engagement are serial within this relay; two relays writing one
//! instance — an active/standby pair too, when after a failover both drain
//! the same engagement — could both create a record (README "ServiceNow":
//! the Import Set API with a coalesce field is the cure there).

mod check;
mod client;
mod config;
mod error;
mod record;

pub use config::{Auth, ServiceNowSinkConfig, ServiceNowSinkSettings};

use crate::config::SinkCheck;
use crate::crm::customer::CustomerCache;
use crate::crm::engagement::{KEYED_EVENTS, Serial, engagement_of, fold_views, per_engagement};
use crate::crm::files;
use crate::crm::ids::{CreatedIds, CrmIds, NoteIds, text_digest};
use crate::crm::phone::Region;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::interaction::Interaction;
use crate::journal::Journal;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use client::{Client, Entry, Found};

/// Due records of one engagement written at once.
const COALESCE: usize = 64;
/// Files up to this size are attached (read whole); larger ones are linked
/// (the instance's own cap, `com.glide.attachment.max_size`, is 1 GB by
/// default).
pub const FILE_LIMIT: u64 = 100 * 1024 * 1024;

pub struct ServiceNowSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    ids: CreatedIds,
    settings: Box<std::sync::RwLock<ServiceNowSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
}

/// One entry the record should hold: its key among the notes, its first
/// line and its whole text.
struct Wanted {
    key: String,
    marker: String,
    text: String,
}

impl ServiceNowSink {
    fn settings(&self) -> ServiceNowSinkSettings {
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

    /// Writes the record, then its entries, then its attachments.
    async fn write_now(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        let settings = self.settings();
        let aggregate = match self.journal.interaction(engagement_id).await {
            Ok(Some(aggregate)) => aggregate,
            Ok(None) => fold_views(fallback)
                .ok_or_else(|| Failure::retry("the engagement's aggregate is not stored yet"))?,
            Err(error) => return Err(Failure::retry(format!("journal: {error}"))),
        };
        let contact = if settings.link_customers {
            self.contact(&aggregate, &settings).await?
        } else {
            None
        };
        let mut attach = Vec::new();
        let mut linked = Vec::new();
        for entry in aggregate.files() {
            let name = files::name_of(entry);
            if settings.attach_files && entry.size <= FILE_LIMIT && files::readable(entry) {
                attach.push((name, entry));
            } else {
                linked.push((name, files::link_of(entry), entry.location.clone()));
            }
        }
        let shown: Vec<(String, String)> = linked
            .iter()
            .map(|(name, link, _)| (name.clone(), link.clone()))
            .collect();
        let fields = record::fields(
            &aggregate,
            &settings.correlation_field,
            &settings.contact_field,
            contact.as_deref(),
            settings.summary_field.as_deref(),
            &shown,
        );

        let mut known = self.ids.get(engagement_id).await?;
        let sys_id = match known.activity.clone() {
            Some(id) if self.client.update_record(&id, fields.clone()).await? => id,
            // Not known, or deleted in the instance since: look, then create.
            _ => {
                let id = match self.client.find_record(engagement_id).await? {
                    Found::One(id) => {
                        if !self.client.update_record(&id, fields.clone()).await? {
                            return Err(Failure::retry("the record vanished while being written"));
                        }
                        id
                    }
                    Found::None => self.client.create_record(engagement_id, fields).await?,
                };
                self.ids.record(engagement_id, self.ids.on(&id)).await?;
                known = self.ids.on(&id);
                id
            }
        };

        let mut wanted: Vec<Wanted> = aggregate
            .notes()
            .iter()
            .map(|note| Wanted {
                key: note.note_id.to_owned(),
                marker: record::note_marker(note.note_id),
                text: record::note_entry(note),
            })
            .collect();
        wanted.extend(linked.iter().map(|(name, link, location)| Wanted {
            key: record::link_key(location),
            marker: record::link_marker(name),
            text: record::link_entry(name, link),
        }));
        self.write_entries(engagement_id, &sys_id, &known, &wanted)
            .await?;

        let mut learned = self.ids.on(&sys_id);
        let mut on_record: Option<Vec<(String, String)>> = None;
        for (name, entry) in attach {
            if known.file_on(&sys_id, &entry.location).is_some() {
                continue;
            }
            if on_record.is_none() {
                on_record = Some(self.client.attachments(&sys_id).await?);
            }
            let found = on_record
                .as_ref()
                .and_then(|held| held.iter().find(|(n, _)| *n == name))
                .map(|(_, id)| id.clone());
            let id = match found {
                Some(id) => id,
                None => {
                    let bytes = files::read_whole(self.client.http(), entry, FILE_LIMIT).await?;
                    let kind = if entry.content_type.is_empty() {
                        "application/octet-stream"
                    } else {
                        entry.content_type.as_str()
                    };
                    let id = self.client.attach(&sys_id, &name, kind, bytes).await?;
                    // Kept at once: a later failure must not upload it again.
                    let mut one = self.ids.on(&sys_id);
                    one.files.insert(entry.location.clone(), id.clone());
                    self.ids.record(engagement_id, one).await?;
                    id
                }
            };
            learned.files.insert(entry.location.clone(), id);
        }
        if !learned.files.is_empty() {
            self.ids.record(engagement_id, learned).await?;
        }
        Ok(())
    }

    /// Each wanted entry once, with its current text: known and unchanged →
    /// nothing; known and changed → edited in place; unknown → looked for
    /// by its marker among the record's entries (read once), else added.
    /// The added ones' ids come from one read after them; what was learned
    /// is kept in one journal commit (a failure half-way loses only that
    /// knowledge: the next write finds the entries by their markers).
    async fn write_entries(
        &self,
        engagement_id: &str,
        sys_id: &str,
        known: &CrmIds,
        wanted: &[Wanted],
    ) -> Result<(), Failure> {
        let mut held: Option<Vec<Entry>> = None;
        let mut learned = self.ids.on(sys_id);
        let mut added = Vec::new();
        for want in wanted {
            let digest = text_digest(&want.text);
            let remembered = known.note_on(sys_id, &want.key);
            if remembered.is_some_and(|e| e.digest == digest) {
                continue;
            }
            let entry_id = match remembered {
                Some(entry) => Some(entry.id.clone()),
                None => {
                    if held.is_none() {
                        held = Some(self.client.work_notes(sys_id).await?);
                    }
                    held.as_ref().and_then(|entries| {
                        entries
                            .iter()
                            .find(|e| record::is_entry_of(&e.value, &want.marker))
                            .map(|e| e.id.clone())
                    })
                }
            };
            let written = match entry_id {
                Some(id) if held_text(&held, &id) == Some(want.text.as_str()) => Some(id),
                Some(id) => self.client.edit_entry(&id, &want.text).await?.then_some(id),
                None => None,
            };
            match written {
                Some(id) => {
                    learned
                        .notes
                        .insert(want.key.clone(), NoteIds { id, digest });
                }
                None => {
                    let mut note = serde_json::Map::new();
                    note.insert(
                        "work_notes".into(),
                        serde_json::Value::String(want.text.clone()),
                    );
                    if !self.client.update_record(sys_id, note).await? {
                        return Err(Failure::retry(
                            "the record vanished while its notes were written",
                        ));
                    }
                    added.push((want, digest));
                }
            }
        }
        if !added.is_empty() {
            let entries = self.client.work_notes(sys_id).await?;
            for (want, digest) in added {
                let id = entries
                    .iter()
                    .rev()
                    .find(|e| record::is_entry_of(&e.value, &want.marker))
                    .map(|e| e.id.clone())
                    .ok_or_else(|| {
                        Failure::setup(
                            "a work note written is not readable in sys_journal_field — give \
                             the integration user read on sys_journal_field",
                        )
                    })?;
                learned
                    .notes
                    .insert(want.key.clone(), NoteIds { id, digest });
            }
        }
        if !learned.notes.is_empty() {
            self.ids.record(engagement_id, learned).await?;
        }
        Ok(())
    }

    /// The one contact whose phone fields hold the consumer's number.
    async fn contact(
        &self,
        aggregate: &Interaction,
        settings: &ServiceNowSinkSettings,
    ) -> Result<Option<String>, Failure> {
        self.customers
            .contact(&self.name, aggregate, self.region, |number| async move {
                self.client
                    .contacts_by_phone(
                        &settings.contact_table,
                        &settings.contact_phone_fields,
                        &number,
                    )
                    .await
            })
            .await
    }
}

/// The text of entry `id` as read back, when it was read.
fn held_text<'a>(held: &'a Option<Vec<Entry>>, id: &str) -> Option<&'a str> {
    held.as_ref()?
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.value.as_str())
}

impl Kind for ServiceNowSink {
    const TYPE: &'static str = "servicenow";
    const DEFAULT_EVENTS: &'static [&'static str] = KEYED_EVENTS;
    type Config = ServiceNowSinkConfig;
    type Settings = ServiceNowSinkSettings;

    fn validate(
        config: ServiceNowSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<ServiceNowSinkSettings> {
        config.validate(check)
    }

    fn reload(
        running: &ServiceNowSinkSettings,
        loaded: &ServiceNowSinkSettings,
    ) -> Reload<ServiceNowSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &ServiceNowSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<ServiceNowSink> {
        let journal = context.journal.cloned().ok_or_else(|| {
            anyhow::anyhow!("a servicenow sink needs the journal (its interaction aggregates)")
        })?;
        // Ids of another instance or table are never used.
        let scope = format!("{}/{}", settings.instance(), settings.table);
        Ok(ServiceNowSink {
            name: context.name.to_owned(),
            client: Box::new(Client::new(
                context.name,
                settings,
                context.timeout,
                context.tls,
            )?),
            ids: CreatedIds::new(journal.clone(), context.name, &scope),
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

    async fn check(settings: &ServiceNowSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, settings: &ServiceNowSinkSettings) -> anyhow::Result<()> {
        self.client.set_auth(&settings.auth);
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
