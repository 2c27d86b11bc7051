//! The HubSpot sink (DESIGN.md §3.5): one `call` object per engagement —
//! messaging engagements too, so one unique property serves all — upserted
//! through `batch/upsert` by `unique_property`, its properties rendered from
//! the engagement's interaction aggregate *as it is at delivery time*, the
//! stored files uploaded once through the files API and listed in
//! `hs_attachment_ids`, the caller's contact associated (type 194).
//!
//! Owns the API client (`client`: token, budget, errors, date-versioned
//! paths, files), the error table (`error`), the property mapping and the
//! disposition GUIDs (`call`) and `check`. Its keys are in `config`.
//!
//! Each file goes into a folder of its own engagement
//! (`/zcc-relay/{key}`) under its object key's last segment. The ids it
//! created (the call, each file, the associated contact) are kept in the
//! journal (`crm::ids`): a file recorded there is not looked up again, a
//! contact recorded as associated is not associated again. Before uploading
//! a file not recorded, the sink looks for it in its folder, so a crash
//! between the upload and its record never uploads it twice. The contact
//! search is used only to find the customer, never to decide whether to
//! create (the search index lags behind writes). A backlog of several
//! engagements goes in one `batch/upsert` of up to 100 calls
//! (`Kind::spread`); a refused batch is written again one call at a time,
//! so that only the refused engagement's records are dead-lettered.

mod call;
mod check;
mod client;
mod config;
mod error;

pub use config::{HubSpotSinkConfig, HubSpotSinkSettings};

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::SinkCheck;
use crate::crm::customer::CustomerCache;
use crate::crm::engagement::{KEYED_EVENTS, Serial, by_engagement, engagement_of, fold_views};
use crate::crm::files;
use crate::crm::ids::{CreatedIds, CrmIds};
use crate::crm::phone::Region;
use crate::deliver::Envelope;
use crate::failure::{Class, Failure};
use crate::interaction::Interaction;
use crate::journal::Journal;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use client::Client;

/// Due records of one engagement written in one upsert.
const COALESCE: usize = 64;
/// Files up to this size are uploaded (read whole); larger ones are linked.
pub const FILE_LIMIT: u64 = 50 * 1024 * 1024;
/// Transcripts up to this size are also quoted in `hs_call_body`.
const SHORT_TRANSCRIPT: u64 = 8 * 1024;

/// Calls in one `batch/upsert` (HubSpot's limit), engagements per
/// backlog call.
const SPREAD: usize = 100;
/// Engagements prepared (aggregate, contact, files) at once in a backlog.
const AT_ONCE: usize = 8;

pub struct HubSpotSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<HubSpotSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
    /// The call, file and associated contact ids, in the journal.
    ids: CreatedIds,
}

/// One engagement's call, ready to upsert: its files uploaded.
struct Prepared {
    engagement_id: String,
    properties: Map<String, Value>,
    contact: Option<String>,
    /// Files uploaded or found (location → file id), to record.
    files: std::collections::BTreeMap<String, String>,
    known: CrmIds,
}

/// The engagement's folder: `/zcc-relay/{id}` when the id is plain, else its
/// hex SHA-256.
fn folder_of(engagement_id: &str) -> String {
    let plain = !engagement_id.is_empty()
        && engagement_id.len() <= 100
        && engagement_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let name = if plain {
        engagement_id.to_owned()
    } else {
        hex::encode(Sha256::digest(engagement_id.as_bytes()))
    };
    format!("/zcc-relay/{name}")
}

impl HubSpotSink {
    fn settings(&self) -> HubSpotSinkSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Uploads the files not there yet, then upserts the call, then links
    /// the contact; one write at a time per engagement.
    async fn write(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        self.serial
            .run(engagement_id, async {
                let settings = self.settings();
                let prepared = self.prepare(&settings, engagement_id, fallback).await?;
                self.upsert_one(prepared).await
            })
            .await
    }

    async fn upsert_one(&self, prepared: Prepared) -> Result<(), Failure> {
        let input = [(prepared.engagement_id.clone(), prepared.properties.clone())];
        let ids = self.client.upsert_calls(&input).await?;
        match ids.get(&prepared.engagement_id) {
            Some(call_id) => self.finish(prepared, call_id).await,
            None => Err(Failure::retry("batch upsert answered no call id")),
        }
    }

    /// Several engagements' calls in `batch/upsert`s of up to 100; the
    /// outcome of each.
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
        type Preparing<'a> = std::pin::Pin<
            Box<dyn Future<Output = (&'a String, Result<Prepared, Failure>)> + Send + 'a>,
        >;
        let mut jobs: Vec<Preparing<'_>> = Vec::with_capacity(groups.len());
        for (engagement_id, envelopes) in groups {
            jobs.push(Box::pin(async move {
                let prepared = self.prepare(settings, engagement_id, envelopes).await;
                (engagement_id, prepared)
            }));
        }
        let prepared: Vec<(&String, Result<Prepared, Failure>)> = futures_util::stream::iter(jobs)
            .buffered(AT_ONCE)
            .collect()
            .await;
        let mut ready = Vec::with_capacity(prepared.len());
        for (engagement_id, result) in prepared {
            match result {
                Ok(p) => ready.push(p),
                Err(failure) => {
                    outcomes.insert(engagement_id.clone(), Err(failure));
                }
            }
        }
        while !ready.is_empty() {
            let rest = ready.split_off(ready.len().min(SPREAD));
            let chunk = std::mem::replace(&mut ready, rest);
            let inputs: Vec<(String, Map<String, Value>)> = chunk
                .iter()
                .map(|p| (p.engagement_id.clone(), p.properties.clone()))
                .collect();
            match self.client.upsert_calls(&inputs).await {
                Ok(ids) => {
                    for p in chunk {
                        let engagement_id = p.engagement_id.clone();
                        let outcome = match ids.get(&engagement_id) {
                            Some(call_id) => self.finish(p, call_id).await,
                            // Unmatched: the upsert again alone says which.
                            None => self.upsert_one(p).await,
                        };
                        outcomes.insert(engagement_id, outcome);
                    }
                }
                // One refused input refuses them all: each on its own
                // finds which.
                Err(failure) if failure.class == Class::Permanent && chunk.len() > 1 => {
                    for p in chunk {
                        let engagement_id = p.engagement_id.clone();
                        outcomes.insert(engagement_id, self.upsert_one(p).await);
                    }
                }
                Err(failure) => {
                    for p in chunk {
                        outcomes.insert(p.engagement_id, Err(failure.clone()));
                    }
                }
            }
        }
        outcomes
    }

    /// The engagement's call properties as the aggregate is now, its files
    /// uploaded (or found) first.
    async fn prepare(
        &self,
        settings: &HubSpotSinkSettings,
        engagement_id: &str,
        fallback: &[Envelope],
    ) -> Result<Prepared, Failure> {
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
        let known = self.ids.get(engagement_id).await?;
        let folder = folder_of(engagement_id);
        let mut attachments = Vec::new();
        let mut linked = Vec::new();
        let mut learned = std::collections::BTreeMap::new();
        for entry in aggregate.files() {
            let name = files::name_of(entry);
            if !(settings.attach_files && entry.size <= FILE_LIMIT && files::readable(entry)) {
                linked.push((name, files::link_of(entry)));
                continue;
            }
            // Files live in the engagement's folder, not on the call: what
            // the journal recorded holds whichever call it was recorded with.
            if let Some(id) = known.files.get(&entry.location) {
                attachments.push(id.clone());
                continue;
            }
            let id = match self.client.find_file(&folder, &name).await? {
                Some(id) => id,
                None => {
                    let bytes = files::read_whole(self.client.http(), entry, FILE_LIMIT).await?;
                    let kind = if entry.content_type.is_empty() {
                        "application/octet-stream"
                    } else {
                        entry.content_type.as_str()
                    };
                    self.client.upload(&folder, &name, kind, bytes).await?
                }
            };
            learned.insert(entry.location.clone(), id.clone());
            attachments.push(id);
        }
        if !learned.is_empty() {
            // Recorded now, before the call's upsert: a file exists in its
            // folder whatever becomes of the upsert (an outage, a set-up
            // problem), and is never looked up again.
            let mut uploaded = self.ids.before_activity();
            uploaded.files = learned.clone();
            self.ids.record(engagement_id, uploaded).await?;
        }
        let mut transcripts = Vec::new();
        for entry in aggregate.files() {
            if let Some(text) = files::short_text(entry, SHORT_TRANSCRIPT).await {
                transcripts.push((files::name_of(entry), text));
            }
        }
        let disposition = match aggregate.disposition().and_then(|d| d.name) {
            Some(name) => {
                let portal = if settings.disposition_map.contains_key(&name) {
                    &[][..]
                } else {
                    self.client.dispositions().await?
                };
                call::disposition_guid(&name, &settings.disposition_map, portal)
            }
            None => None,
        };
        let properties = call::properties(
            &aggregate,
            disposition.as_deref(),
            &attachments,
            &transcripts,
            &linked,
        );
        Ok(Prepared {
            engagement_id: engagement_id.to_owned(),
            properties,
            contact,
            files: learned,
            known,
        })
    }

    /// After the upsert: associates the contact unless the journal says it
    /// is, then records what was learned.
    async fn finish(&self, prepared: Prepared, call_id: &str) -> Result<(), Failure> {
        let mut learned = self.ids.on(call_id);
        learned.files = prepared.files;
        if prepared.known.activity.as_deref() == Some(call_id) {
            // Same call: the files recorded before stay (merge keeps them).
        } else {
            // A call recorded for the first time (or recreated): the files
            // in the folder are still the engagement's.
            learned.files.extend(prepared.known.files.clone());
        }
        let associated = prepared.known.activity.as_deref() == Some(call_id)
            && prepared.known.customer.is_some()
            && prepared.known.customer == prepared.contact;
        let outcome = match &prepared.contact {
            Some(contact) if !associated => {
                let done = self.client.associate(call_id, contact).await;
                if done.is_ok() {
                    learned.customer = Some(contact.clone());
                }
                done
            }
            _ => Ok(()),
        };
        // What was created is recorded even when the association failed.
        self.ids.record(&prepared.engagement_id, learned).await?;
        outcome
    }

    /// The one contact whose phone or mobile phone is the consumer's number.
    async fn contact(&self, aggregate: &Interaction) -> Result<Option<String>, Failure> {
        self.customers
            .contact(&self.name, aggregate, self.region, |number| async move {
                self.client.contacts_by_phone(&number).await
            })
            .await
    }
}

impl Kind for HubSpotSink {
    const TYPE: &'static str = "hubspot";
    const DEFAULT_EVENTS: &'static [&'static str] = KEYED_EVENTS;
    type Config = HubSpotSinkConfig;
    type Settings = HubSpotSinkSettings;

    fn validate(
        config: HubSpotSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<HubSpotSinkSettings> {
        config.validate(check)
    }

    fn reload(
        running: &HubSpotSinkSettings,
        loaded: &HubSpotSinkSettings,
    ) -> Reload<HubSpotSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &HubSpotSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<HubSpotSink> {
        let journal = context.journal.cloned().ok_or_else(|| {
            anyhow::anyhow!("a hubspot sink needs the journal (its interaction aggregates)")
        })?;
        Ok(HubSpotSink {
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
            ids: CreatedIds::new(journal.clone(), context.name, settings.base()),
            journal,
        })
    }

    async fn ready(&self) -> Result<(), Failure> {
        self.client.token_check().await
    }

    async fn check(settings: &HubSpotSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, settings: &HubSpotSinkSettings) -> anyhow::Result<()> {
        self.client.set_token(settings.token.clone());
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

    #[test]
    fn folders_are_plain_or_hashed() {
        assert_eq!(folder_of("eng-1_A.b"), "/zcc-relay/eng-1_A.b");
        let hashed = folder_of("a/b:c");
        assert_eq!(hashed.len(), "/zcc-relay/".len() + 64);
        assert_ne!(folder_of("a/b"), folder_of("a/c"));
    }
}
