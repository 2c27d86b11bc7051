//! The Salesforce sink (DESIGN.md §3.5): one Task per engagement, upserted by
//! the External ID field, its fields rendered from the engagement's
//! interaction aggregate *as it is at delivery time*, the stored files
//! attached once as ContentVersions, the caller's Contact (else Lead) linked
//! by phone.
//!
//! Owns the Salesforce REST client (token, request budget, error bodies,
//! `Sforce-Limit-Info`), the Task's field mapping (`task`) and the file
//! attachment (`files`). Its keys are in `config`.
//!
//! The Task's id and each attached file's ContentVersion id are kept in the
//! journal (`crm::ids`, scoped by `instance_url`). `TaskSubtype` is accepted
//! only at creation, so an update never carries it: a Task the journal knows
//! gets an update-only upsert (`?updateOnly=true`; on 404 a creating one), an
//! unknown one the creating upsert first (refused with
//! `INVALID_FIELD_FOR_INSERT_UPDATE` when the Task exists after all, then
//! updated without it). A recorded file is skipped without a call; one not
//! recorded yet is looked up by its name on the Task before it is created,
//! so a crash between the create and its record never attaches it twice.
//! Records without an `engagement_id` have nothing to write: they are
//! settled as delivered.
//!
//! During a backlog the consumer hands over several engagements at once
//! ([`Kind::spread`]); their Tasks are then written with sObject Collections
//! (`collection`), up to 200 a call, with the same create-only rule.

mod check;
mod client;
mod collection;
mod config;
mod files;
mod task;

pub use config::{SalesforceSinkConfig, SalesforceSinkSettings};

use std::collections::HashMap;

use crate::config::SinkCheck;
use crate::crm::customer::{Customer, CustomerCache, choose, matching, number_of};
use crate::crm::engagement::{Serial, by_engagement, engagement_of, fold_views};
use crate::crm::ids::{CreatedIds, CrmIds};
use crate::crm::phone::Region;
use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::interaction::Interaction;
use crate::journal::Journal;
use crate::sink::{BuildContext, Finding, Kind, Reload};
use client::Client;

pub use crate::crm::engagement::KEYED_EVENTS;

/// Due records of one engagement written in one upsert.
const COALESCE: usize = 64;

/// An engagement's Task as it is to be written now.
struct Prepared {
    engagement_id: String,
    /// Every field but the create-only ones.
    fields: serde_json::Map<String, serde_json::Value>,
    create_only: serde_json::Map<String, serde_json::Value>,
    plan: files::Plan,
    /// The ids the journal holds for the engagement.
    known: CrmIds,
}

pub struct SalesforceSink {
    name: String,
    client: Box<Client>,
    journal: Journal,
    settings: Box<std::sync::RwLock<SalesforceSinkSettings>>,
    region: Option<Region>,
    customers: Box<CustomerCache>,
    /// The Task and ContentVersion ids it created, in the journal: a Task
    /// it knows is updated (a backlog's by id, without a lookup), a file it
    /// knows is not looked up again.
    ids: CreatedIds,
    serial: Box<Serial>,
}

impl SalesforceSink {
    fn settings(&self) -> SalesforceSinkSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// [`Self::write_now`], one at a time per engagement.
    async fn write(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        self.serial
            .run(engagement_id, self.write_now(engagement_id, fallback))
            .await
    }

    /// Writes the engagement's Task as the aggregate is now, then its files.
    async fn write_now(&self, engagement_id: &str, fallback: &[Envelope]) -> Result<(), Failure> {
        let settings = self.settings();
        let prepared = self.prepare(&settings, engagement_id, fallback).await?;
        let task_id = self
            .client
            .upsert_task(
                &settings.external_id_field,
                engagement_id,
                prepared.fields.clone(),
                prepared.create_only.clone(),
                prepared.known.activity.is_some(),
            )
            .await?;
        self.finish(&task_id, &prepared, None).await
    }

    /// After the Task is written: attaches the planned files the journal
    /// does not know on it, then records the Task's id and the files'
    /// (also when a later file failed: the next attempt skips those).
    /// `on_tasks`: see [`Self::attach_files`].
    async fn finish(
        &self,
        task_id: &str,
        prepared: &Prepared,
        on_tasks: Option<&HashMap<(String, String), String>>,
    ) -> Result<(), Failure> {
        let mut learned = self.ids.on(task_id);
        let attached = self
            .attach_files(
                task_id,
                &prepared.plan,
                &prepared.known,
                &mut learned,
                on_tasks,
            )
            .await;
        if prepared.known.activity.as_deref() != Some(task_id) || !learned.files.is_empty() {
            self.ids.record(&prepared.engagement_id, learned).await?;
        }
        attached
    }

    /// The engagement's aggregate as it is now, its customer and its files,
    /// rendered into the Task's fields.
    async fn prepare(
        &self,
        settings: &SalesforceSinkSettings,
        engagement_id: &str,
        fallback: &[Envelope],
    ) -> Result<Prepared, Failure> {
        let aggregate = match self.journal.interaction(engagement_id).await {
            Ok(Some(aggregate)) => aggregate,
            Ok(None) => fold_views(fallback)
                .ok_or_else(|| Failure::retry("the engagement's aggregate is not stored yet"))?,
            Err(error) => return Err(Failure::retry(format!("journal: {error}"))),
        };
        let who = if settings.link_customers {
            self.customer(&aggregate).await?
        } else {
            None
        };
        let plan = files::plan(&aggregate, settings.attach_files);
        let transcripts = files::short_transcripts(&aggregate).await;
        let fields = task::fields(&aggregate, who.as_ref(), &transcripts, &plan.linked);
        let known = self.ids.get(engagement_id).await?;
        Ok(Prepared {
            engagement_id: engagement_id.to_owned(),
            fields,
            create_only: task::create_only(&aggregate),
            plan,
            known,
        })
    }

    /// Attaches the files of the plan the journal does not know on the Task,
    /// each once, adding each one's ContentVersion id to `learned`.
    /// `on_tasks`: (Task id, file name) → ContentVersion id, as a lookup just
    /// found them, when one was made for this Task; otherwise a file not
    /// recorded is looked up by its name before it is created (it may have
    /// been created just before a crash).
    async fn attach_files(
        &self,
        task_id: &str,
        plan: &files::Plan,
        known: &CrmIds,
        learned: &mut CrmIds,
        on_tasks: Option<&HashMap<(String, String), String>>,
    ) -> Result<(), Failure> {
        for file in &plan.attach {
            let key = &file.entry.location;
            if known.file_on(task_id, key).is_some() {
                continue;
            }
            let present = match on_tasks {
                Some(found) => found.get(&(task_id.to_owned(), file.name.clone())).cloned(),
                None => self.client.file_on(task_id, &file.name).await?,
            };
            let id = match present {
                Some(id) => id,
                None => {
                    let bytes = files::read(&self.client, &file.entry).await?;
                    self.client.attach(task_id, &file.name, bytes).await?
                }
            };
            learned.files.insert(key.clone(), id);
        }
        Ok(())
    }

    /// The Contact, else the Lead, whose phone is the consumer's number; a
    /// failed search fails the delivery.
    async fn customer(&self, aggregate: &Interaction) -> Result<Option<Customer>, Failure> {
        let Some(number) = number_of(aggregate, self.region) else {
            return Ok(None);
        };
        if let Some(known) = self.customers.get(&number) {
            return Ok(known);
        }
        let found = self.client.search_phone(&number).await?;
        let contacts = matching(&found.contacts, &number, self.region);
        let leads = matching(&found.leads, &number, self.region);
        let answer = choose(&contacts, &leads);
        self.customers.put(
            &self.name,
            &number,
            answer.clone(),
            contacts.len(),
            leads.len(),
        );
        Ok(answer)
    }
}

impl Kind for SalesforceSink {
    const TYPE: &'static str = "salesforce";
    const DEFAULT_EVENTS: &'static [&'static str] = KEYED_EVENTS;
    type Config = SalesforceSinkConfig;
    type Settings = SalesforceSinkSettings;

    fn validate(
        config: SalesforceSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<SalesforceSinkSettings> {
        config.validate(check)
    }

    fn reload(
        running: &SalesforceSinkSettings,
        loaded: &SalesforceSinkSettings,
    ) -> Reload<SalesforceSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &SalesforceSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<SalesforceSink> {
        let journal = context.journal.cloned().ok_or_else(|| {
            anyhow::anyhow!("a salesforce sink needs the journal (its interaction aggregates)")
        })?;
        Ok(SalesforceSink {
            name: context.name.to_owned(),
            client: Box::new(Client::new(
                context.name,
                settings,
                context.timeout,
                context.tls,
            )?),
            ids: CreatedIds::new(
                journal.clone(),
                context.name,
                settings.instance_url.as_str().trim_end_matches('/'),
            ),
            journal,
            settings: Box::new(std::sync::RwLock::new(settings.clone())),
            region: Region::parse(&settings.default_region),
            customers: Box::default(),
            serial: Box::default(),
        })
    }

    /// Proves the credentials: one token request.
    async fn ready(&self) -> Result<(), Failure> {
        self.client.token_check().await
    }

    async fn check(settings: &SalesforceSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(settings, context).await
    }

    fn apply(&self, settings: &SalesforceSinkSettings) -> anyhow::Result<()> {
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

    /// One write for every record of an engagement that is due now — of
    /// several engagements, one sObject Collections write for their Tasks;
    /// each record is settled with its engagement's outcome.
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
        client::COLLECTION_MAX
    }
}
