//! The lease in NATS KV (docs/contract.md §3.7), on what a 2.9 server has:
//! the lease bucket's `max_age` (= `ttl`, history 1) expires a lease nobody
//! renews; no per-key TTL. The last-live instant and the note ledger's
//! entries (`ledger`) live in a second bucket, `<bucket>_state` (history 1,
//! `max_age` 30 days), so that they outlive the lease key.
//!
//! Owns the connection (the nats sink's `connect_options`: the same servers,
//! credentials and TLS keys), the buckets' creation when missing, and the
//! mapping of KV errors to [`StoreError`]: a lost compare-and-swap or an
//! existing key is `Lost`, everything else `Unavailable`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;

use super::ledger::{NoteStore, Stored};
use super::{Holding, LeaseStore, StoreError};
use crate::config::StandbySettings;

/// Kept as long as the journal keeps dedup keys.
const STATE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Each request's limit; the lease loop bounds each by its own deadlines too.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const LAST_LIVE_KEY_PREFIX: &str = "last_live.";
/// The note ledger's entries: `notes.<lease key>.<entry key>`.
const NOTES_KEY_PREFIX: &str = "notes.";

pub struct NatsLease {
    jetstream: jetstream::Context,
    bucket: String,
    ttl: Duration,
    key: String,
    /// The two buckets once looked up or created.
    stores: Mutex<Option<Arc<(kv::Store, kv::Store)>>>,
}

impl NatsLease {
    /// Connects in the background (a server that is down is retried by the
    /// client); fails only on set-up that can never work (unreadable TLS
    /// files, a credentials file that is none).
    pub async fn connect(
        settings: &StandbySettings,
        key: String,
        tls: &Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<NatsLease> {
        let options =
            crate::sink::nats::connect_options(&settings.connection, tls, REQUEST_TIMEOUT)
                .map_err(|error| anyhow::anyhow!("standby: {error}"))?
                .retry_on_initial_connect()
                .max_reconnects(None)
                // A lease request must fail fast rather than wait in the client's
                // buffer for a server that is gone: the loop retries by itself.
                .request_timeout(Some(REQUEST_TIMEOUT));
        let servers: Vec<&str> = settings
            .connection
            .servers
            .iter()
            .map(url::Url::as_str)
            .collect();
        let client = options.connect(servers).await.map_err(|error| {
            anyhow::anyhow!("cannot set up the lease's NATS connection: {error}")
        })?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        Ok(NatsLease {
            jetstream,
            bucket: settings.bucket.clone(),
            ttl: settings.ttl,
            key,
            stores: Mutex::new(None),
        })
    }

    fn state_bucket(&self) -> String {
        format!("{}_state", self.bucket)
    }

    /// The lease and state buckets, created when missing.
    async fn stores(&self) -> Result<Arc<(kv::Store, kv::Store)>, StoreError> {
        let mut stores = self.stores.lock().await;
        if let Some(stores) = &*stores {
            return Ok(stores.clone());
        }
        let lease = self.bucket_or_create(&self.bucket, self.ttl).await?;
        let state = self
            .bucket_or_create(&self.state_bucket(), STATE_MAX_AGE)
            .await?;
        let found = Arc::new((lease, state));
        *stores = Some(found.clone());
        Ok(found)
    }

    async fn bucket_or_create(
        &self,
        name: &str,
        max_age: Duration,
    ) -> Result<kv::Store, StoreError> {
        if let Ok(store) = self.jetstream.get_key_value(name).await {
            if let Ok(status) = store.status().await {
                let age = status.max_age();
                if age != max_age {
                    tracing::warn!(
                        bucket = name,
                        max_age = %humantime::format_duration(age),
                        expected = %humantime::format_duration(max_age),
                        "a KV bucket's max_age is not the expected value (the lease bucket: another relay's ttl?); its keys expire after the bucket's max_age"
                    );
                }
            }
            return Ok(store);
        }
        // The bucket's stream as `create_key_value` would make it. Made by
        // hand: that call first asks for the account's info, whose 2.9 answer
        // async-nats 0.52 cannot read.
        let config = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        let created = self.jetstream.create_stream(config).await;
        if created.is_ok() {
            tracing::info!(bucket = name, max_age = %humantime::format_duration(max_age), "created a KV bucket for the lease");
        }
        // Created, or the other relay created it just now.
        self.jetstream.get_key_value(name).await.map_err(|error| {
            let cause = match created {
                Err(create) => create.to_string(),
                Ok(_) => error.to_string(),
            };
            StoreError::Unavailable(format!("cannot create KV bucket {name}: {cause}"))
        })
    }
}

impl LeaseStore for NatsLease {
    async fn create(&self, value: bytes::Bytes) -> Result<u64, StoreError> {
        let stores = self.stores().await?;
        stores.0.create(&self.key, value).await.map_err(|error| {
            if error.kind() == CreateErrorKind::AlreadyExists {
                StoreError::Lost
            } else {
                StoreError::Unavailable(format!("lease create: {error}"))
            }
        })
    }

    async fn update(&self, value: bytes::Bytes, revision: u64) -> Result<u64, StoreError> {
        let stores = self.stores().await?;
        stores
            .0
            .update(&self.key, value, revision)
            .await
            .map_err(|error| {
                if error.kind() == UpdateErrorKind::WrongLastRevision {
                    StoreError::Lost
                } else {
                    StoreError::Unavailable(format!("lease renewal: {error}"))
                }
            })
    }

    async fn release(&self, revision: u64) -> Result<(), StoreError> {
        let stores = self.stores().await?;
        stores
            .0
            .delete_expect_revision(&self.key, Some(revision))
            .await
            .map_err(|error| StoreError::Unavailable(format!("lease release: {error}")))
    }

    async fn holder(&self) -> Result<Option<Holding>, StoreError> {
        let stores = self.stores().await?;
        let entry = stores
            .0
            .get(&self.key)
            .await
            .map_err(|error| StoreError::Unavailable(format!("lease read: {error}")))?;
        Ok(entry.and_then(|value| Holding::decode(&value)))
    }

    async fn write_last_live(&self, at_ms: u64) -> Result<(), StoreError> {
        let stores = self.stores().await?;
        stores
            .1
            .put(
                format!("{LAST_LIVE_KEY_PREFIX}{}", self.key),
                at_ms.to_string().into(),
            )
            .await
            .map(|_| ())
            .map_err(|error| StoreError::Unavailable(format!("last-live write: {error}")))
    }

    async fn last_live(&self) -> Result<Option<u64>, StoreError> {
        let stores = self.stores().await?;
        let value = stores
            .1
            .get(format!("{LAST_LIVE_KEY_PREFIX}{}", self.key))
            .await
            .map_err(|error| StoreError::Unavailable(format!("last-live read: {error}")))?;
        Ok(value.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.trim().parse().ok()))
    }
}

impl NatsLease {
    fn note_key(&self, key: &str) -> String {
        format!("{NOTES_KEY_PREFIX}{}.{key}", self.key)
    }
}

impl NoteStore for NatsLease {
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let entry =
                stores.1.entry(self.note_key(key)).await.map_err(|error| {
                    StoreError::Unavailable(format!("note ledger read: {error}"))
                })?;
            // A deleted or purged entry is none; `create` writes over it.
            Ok(entry
                .filter(|entry| entry.operation == kv::Operation::Put)
                .map(|entry| (entry.value.to_vec(), entry.revision)))
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let key = self.note_key(key);
            match expected {
                None => stores.1.create(&key, value.into()).await.map_err(|error| {
                    if error.kind() == CreateErrorKind::AlreadyExists {
                        StoreError::Lost
                    } else {
                        StoreError::Unavailable(format!("note ledger write: {error}"))
                    }
                }),
                Some(revision) => {
                    stores
                        .1
                        .update(&key, value.into(), revision)
                        .await
                        .map_err(|error| {
                            if error.kind() == UpdateErrorKind::WrongLastRevision {
                                StoreError::Lost
                            } else {
                                StoreError::Unavailable(format!("note ledger write: {error}"))
                            }
                        })
                }
            }
        })
    }
}
