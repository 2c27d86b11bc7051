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
//! (`/zcc-relay/{key}`) under its object key's last segment; before
//! uploading, the sink looks for it there, so a crash between the upload and
//! the acknowledgement never uploads it twice. The contact search is used
//! only to find the customer, never to decide whether to create (the search
//! index lags behind writes).

mod call;
mod check;
mod client;
mod config;
mod error;

pub use config::{HubSpotSinkConfig, HubSpotSinkSettings};

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

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
use client::Client;

/// Due records of one engagement written in one upsert.
const COALESCE: usize = 64;
/// Files up to this size are uploaded (read whole); larger ones are linked.
pub const FILE_LIMIT: u64 = 50 * 1024 * 1024;
/// Transcripts up to this size are also quoted in `hs_call_body`.
const SHORT_TRANSCRIPT: u64 = 8 * 1024;

pub struct HubSpotSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<HubSpotSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    serial: Box<Serial>,
    /// (folder, file name) → file id, for files known to be uploaded.
    uploaded: Box<Mutex<HashMap<(String, String), String>>>,
    /// (call id, contact id) pairs known to be associated.
    associated: Box<Mutex<HashSet<(String, String)>>>,
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

    async fn write(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        self.serial
            .run(engagement_id, self.write_now(engagement_id, fallback))
            .await
    }

    /// Uploads the files not there yet, then upserts the call, then links
    /// the contact.
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
        let folder = folder_of(engagement_id);
        let mut attachments = Vec::new();
        let mut linked = Vec::new();
        for entry in aggregate.files() {
            let name = files::name_of(entry);
            if !(settings.attach_files && entry.size <= FILE_LIMIT && files::readable(entry)) {
                linked.push((name, files::link_of(entry)));
                continue;
            }
            let known = (folder.clone(), name.clone());
            let cached = self
                .uploaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&known)
                .cloned();
            let id = match cached {
                Some(id) => id,
                None => {
                    let id = match self.client.find_file(&folder, &name).await? {
                        Some(id) => id,
                        None => {
                            let bytes =
                                files::read_whole(self.client.http(), entry, FILE_LIMIT).await?;
                            let kind = if entry.content_type.is_empty() {
                                "application/octet-stream"
                            } else {
                                entry.content_type.as_str()
                            };
                            self.client.upload(&folder, &name, kind, bytes).await?
                        }
                    };
                    self.uploaded
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(known, id.clone());
                    id
                }
            };
            attachments.push(id);
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
        let call_id = self.client.upsert_call(engagement_id, properties).await?;
        if let Some(contact) = contact {
            let pair = (call_id.clone(), contact.clone());
            let known = self
                .associated
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&pair);
            if !known {
                self.client.associate(&call_id, &contact).await?;
                self.associated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(pair);
            }
        }
        Ok(())
    }

    /// The one contact whose phone or mobile phone is the consumer's number.
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
        let answer = choose(&contacts, &[]);
        self.customers
            .put(&self.name, &number, answer.clone(), contacts.len(), 0);
        Ok(answer.map(|c| c.id().to_owned()))
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
            journal,
            settings: Box::new(std::sync::RwLock::new(settings.clone())),
            region: Region::parse(&settings.default_region),
            customers: Box::default(),
            serial: Box::default(),
            uploaded: Box::default(),
            associated: Box::default(),
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

    #[test]
    fn folders_are_plain_or_hashed() {
        assert_eq!(folder_of("eng-1_A.b"), "/zcc-relay/eng-1_A.b");
        let hashed = folder_of("a/b:c");
        assert_eq!(hashed.len(), "/zcc-relay/".len() + 64);
        assert_ne!(folder_of("a/b"), folder_of("a/c"));
    }
}
