//! The organisation's object store, through the `object_store` crate.
//!
//! `media.store` picks the backend: `file://` (a local directory, created if
//! missing), `s3://bucket/prefix` (AWS and S3-compatible endpoints),
//! `az://container/prefix` (`azure://` too), `gs://bucket/prefix` (`gcs://`
//! too) and `memory://` (tests). Cloud backends start from the environment
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*` variables; with no credentials at all S3
//! uses the instance role), then apply `[media.options]` as object_store's
//! own configuration keys. All HTTP goes through the daemon's TLS setup
//! (rustls + ring, verified certificates).
//!
//! Uploads are multipart and streamed: a body is cut into parts of [`PART`]
//! bytes, at most [`PARTS_IN_FLIGHT`] are uploading at once, and the sha256
//! and size are computed on the way. An upload that does not end with the
//! announced size is aborted (nothing is left at the key) and retried later.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{Stream, StreamExt};
use object_store::client::{ClientOptions, HttpClient, HttpConnector};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ObjectStore, PutMultipartOptions, WriteMultipart};
use rustls::ClientConfig;
use sha2::{Digest, Sha256};

use crate::config::MediaSettings;
use crate::failure::Failure;
use crate::record::MediaEntry;

/// Bytes per uploaded part (S3's minimum is 5 MiB, except the last part).
pub const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once; with the part being filled, memory per upload is
/// about `(PARTS_IN_FLIGHT + 1) * PART`.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Per request to the store (one part at most).
const STORE_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    /// `location` of an object is this, `/`, its key.
    base: String,
    /// The store URL's path, prepended to every key (cloud stores).
    prefix: String,
    /// Whether the backend keeps a content type with the object.
    attributes: bool,
    link_ttl: Duration,
    /// Whether a failure to sign was logged already (said once, not per file).
    sign_warned: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore")
            .field("base", &self.base)
            .field("signs", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// object_store's HTTP on the daemon's TLS configuration.
#[derive(Debug)]
struct Connector(Arc<ClientConfig>);

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(ClientConfig::clone(&self.0))
            .connect_timeout(Duration::from_secs(10))
            .timeout(STORE_REQUEST_TIMEOUT)
            .user_agent(concat!("zcc-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "media",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

impl MediaStore {
    pub fn build(settings: &MediaSettings, tls: &Arc<ClientConfig>) -> anyhow::Result<MediaStore> {
        let url = &settings.store;
        let base = url.as_str().trim_end_matches('/').to_owned();
        let prefix = url.path().trim_matches('/').to_owned();
        let options = settings
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()));
        let connector = || Connector(tls.clone());
        let bad_key = |key: &str, kind: &str| {
            format!("media.options.{key} is not an object_store {kind} option")
        };
        let (store, signer, prefix): (Arc<dyn ObjectStore>, Option<Arc<dyn Signer>>, String) =
            match url.scheme() {
                "file" => {
                    if settings.options.keys().next().is_some() {
                        bail!("media.options has keys, but a file:// store takes none");
                    }
                    let dir = url
                        .to_file_path()
                        .map_err(|()| anyhow::anyhow!("media.store {url} is not a local path"))?;
                    std::fs::create_dir_all(&dir).with_context(|| {
                        format!("cannot create media directory {}", dir.display())
                    })?;
                    let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .with_context(|| format!("media directory {}", dir.display()))?;
                    (Arc::new(local), None, String::new())
                }
                "memory" => (
                    Arc::new(object_store::memory::InMemory::new()),
                    None,
                    String::new(),
                ),
                "s3" => {
                    let mut builder = object_store::aws::AmazonS3Builder::from_env()
                        .with_url(url.as_str())
                        .with_http_connector(connector());
                    for (key, value) in options {
                        let key = key
                            .parse()
                            .map_err(|_| anyhow::anyhow!(bad_key(key, "S3")))?;
                        builder = builder.with_config(key, value);
                    }
                    let s3 = Arc::new(builder.build().context("S3 media store")?);
                    (s3.clone(), Some(s3), prefix)
                }
                "az" | "azure" => {
                    let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(url.as_str())
                        .with_http_connector(connector());
                    for (key, value) in options {
                        let key = key
                            .parse()
                            .map_err(|_| anyhow::anyhow!(bad_key(key, "Azure")))?;
                        builder = builder.with_config(key, value);
                    }
                    let azure = Arc::new(builder.build().context("Azure media store")?);
                    (azure.clone(), Some(azure), prefix)
                }
                "gs" | "gcs" => {
                    let mut gs_url = url.clone();
                    let _ = gs_url.set_scheme("gs");
                    let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(gs_url.as_str())
                        .with_http_connector(connector());
                    for (key, value) in options {
                        let key = key
                            .parse()
                            .map_err(|_| anyhow::anyhow!(bad_key(key, "GCS")))?;
                        builder = builder.with_config(key, value);
                    }
                    let gcs = Arc::new(builder.build().context("GCS media store")?);
                    (gcs.clone(), Some(gcs), prefix)
                }
                other => bail!("media.store scheme {other:?} is not supported"),
            };
        let attributes = !matches!(url.scheme(), "file");
        Ok(MediaStore {
            store,
            signer,
            base,
            prefix,
            attributes,
            link_ttl: settings.link_ttl,
            sign_warned: Default::default(),
        })
    }

    /// The store's absolute location of `key`.
    pub fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Streams `body` to `key`, overwriting what is there. `expected` is the
    /// announced length; a body that ends short or long is not stored, nor one
    /// larger than its kind's [`size_cap`] (a permanent failure: the record goes
    /// on with `media_errors`).
    pub async fn put<S, E>(
        &self,
        kind: &'static str,
        key: &str,
        content_type: &str,
        expected: Option<u64>,
        body: S,
    ) -> Result<MediaEntry, Failure>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let cap = size_cap(kind);
        if let Some(expected) = expected
            && expected > cap
        {
            return Err(too_large(kind, cap));
        }
        let path = self.path(key);
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        }
        let options = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&path, options)
            .await
            .map_err(|e| store_failure(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let bytes = match chunk {
                Ok(bytes) => bytes,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Failure::retry(format!(
                        "download interrupted after {size} bytes: {e}"
                    )));
                }
            };
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(store_failure(&e));
            }
            hasher.update(&bytes);
            size += bytes.len() as u64;
            if size > cap {
                let _ = writer.abort().await;
                return Err(too_large(kind, cap));
            }
            writer.put(bytes);
        }
        if let Some(expected) = expected
            && expected != size
        {
            let _ = writer.abort().await;
            return Err(Failure::retry(format!(
                "download ended after {size} of {expected} bytes"
            )));
        }
        writer.finish().await.map_err(|e| store_failure(&e))?;
        let url = match &self.signer {
            Some(signer) => match signer
                .signed_url(reqwest::Method::GET, &path, self.link_ttl)
                .await
            {
                Ok(url) => Some(url.to_string()),
                Err(e) => {
                    if !self
                        .sign_warned
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(error = %e, "media store cannot sign links; records carry the location only (said once)");
                    }
                    None
                }
            },
            None => None,
        };
        Ok(MediaEntry {
            kind: kind.to_owned(),
            location: self.location(key),
            url,
            content_type: content_type.to_owned(),
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// The largest file stored per kind: generous for recordings (a long video
/// call) and voicemail audio, small for transcripts (text).
pub fn size_cap(kind: &str) -> u64 {
    const MIB: u64 = 1024 * 1024;
    match kind {
        "recording" => 16 * 1024 * MIB,
        "voicemail" => 1024 * MIB,
        _ => 64 * MIB,
    }
}

fn too_large(kind: &str, cap: u64) -> Failure {
    Failure::permanent(format!(
        "the {kind} is larger than {} MiB, the most stored for a {kind}; not stored",
        cap / (1024 * 1024)
    ))
}

/// A failed store request, retried later. The operator's log gets
/// object_store's whole message (request URI, the store's response body);
/// the failure's reason, which ends up in the `media_errors` forwarded to the
/// sinks when the retries run out, says only what kind of failure it was:
/// store response bodies can name access keys, canonical requests and
/// internal endpoints, none of which the sinks' users need.
fn store_failure(error: &object_store::Error) -> Failure {
    tracing::warn!(error = %error, "media store request failed; the record's media is retried on its schedule");
    let what = match error {
        object_store::Error::Generic { store, .. } => format!("{store} request failed"),
        object_store::Error::NotFound { .. } => "not found".to_owned(),
        object_store::Error::PermissionDenied { .. } => "permission denied".to_owned(),
        object_store::Error::Unauthenticated { .. } => "not authenticated".to_owned(),
        object_store::Error::Precondition { .. } => "precondition failed".to_owned(),
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            "operation not supported".to_owned()
        }
        _ => "request failed".to_owned(),
    };
    Failure::retry(format!("media store: {what} (details in the daemon's log)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_over_its_kinds_cap_is_not_stored() {
        let tls = crate::tls::client_config().unwrap();
        let settings = crate::config::MediaSettings {
            enabled: true,
            store: url::Url::parse("memory:///").unwrap(),
            link_ttl: std::time::Duration::from_secs(60),
            allow_http: false,
            options: Default::default(),
        };
        let store = MediaStore::build(&settings, &tls).unwrap();
        let cap = size_cap("recording_transcript");
        assert_eq!(cap, 64 * 1024 * 1024);
        assert!(size_cap("recording") >= 16 * cap);
        let mib = bytes::Bytes::from(vec![b't'; 1024 * 1024]);
        let body = |n: usize| {
            futures_util::stream::iter(
                std::iter::repeat_n(mib.clone(), n).map(Ok::<_, std::convert::Infallible>),
            )
        };
        // Announced too large: refused before a byte is read.
        let announced = store
            .put(
                "recording_transcript",
                "a.vtt",
                "text/vtt",
                Some(cap + 1),
                body(0),
            )
            .await;
        assert!(
            matches!(&announced, Err(f) if f.class == crate::failure::Class::Permanent && f.reason.contains("larger than 64 MiB")),
            "{announced:?}"
        );
        // Not announced: cut off once past the cap, nothing left at the key.
        let streamed = store
            .put("recording_transcript", "b.vtt", "text/vtt", None, body(65))
            .await;
        assert!(
            matches!(&streamed, Err(f) if f.class == crate::failure::Class::Permanent),
            "{streamed:?}"
        );
        use object_store::ObjectStoreExt as _;
        assert!(store.store.head(&store.path("b.vtt")).await.is_err());
        // Within the cap: stored.
        let stored = store
            .put("recording_transcript", "c.vtt", "text/vtt", None, body(2))
            .await
            .unwrap();
        assert_eq!(stored.size, 2 * 1024 * 1024);
    }

    #[test]
    fn store_failures_forward_no_store_response_text() {
        let body = "<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId></Error>";
        let error = object_store::Error::Generic {
            store: "S3",
            source: format!(
                "Error performing PUT http://s3.internal:9000/bucket/k?partNumber=1&uploadId=u1 - {body}"
            )
            .into(),
        };
        let failure = store_failure(&error);
        assert!(failure.is_retry());
        let reason = failure.reason;
        assert_eq!(
            reason,
            "media store: S3 request failed (details in the daemon's log)"
        );
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: body.into(),
        };
        assert!(!store_failure(&denied).reason.contains("AKIA"));
    }

    #[test]
    fn debug_output_leaves_the_signed_link_out() {
        let stored = MediaEntry {
            kind: "recording".into(),
            location: "s3://bucket/2026/k.mp3".into(),
            url: Some("https://bucket.s3.amazonaws.com/k.mp3?X-Amz-Signature=abc123".into()),
            content_type: "audio/mpeg".into(),
            size: 3,
            sha256: "ab".into(),
        };
        let debug = format!("{stored:?}");
        assert!(!debug.contains("X-Amz-Signature"), "{debug}");
        assert!(debug.contains("s3://bucket/2026/k.mp3") && debug.contains("redacted"));
        // Sinks still get the link.
        let json = serde_json::to_string(&stored).unwrap();
        assert!(json.contains("X-Amz-Signature=abc123"));
    }
}
