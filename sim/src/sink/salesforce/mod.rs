//! A faithful in-process fake of a Salesforce org's REST API (a My Domain org), written from
//! Salesforce's public REST documentation, for judging the relay's Salesforce sink on real
//! sockets. It covers the client-credentials token endpoint, Task upsert by external id
//! (201 / 200 or 204 / 300), sObject Collections upsert, ContentVersion creation in JSON and
//! multipart, describe, a SOQL subset and the phone SOSL lookup, Salesforce's error bodies,
//! the `Sforce-Limit-Info` header, and scripted faults (503 bursts, `REQUEST_LIMIT_EXCEEDED`,
//! session invalidation, slow answers, the external-id field appearing at runtime).
//!
//! Layout: `org` (configuration) → `store` (live data and rules) ← `record` (field checks),
//! `schema` (objects and fields), `soql`, `sosl`, `multipart`, `id`, `error` (pure), with
//! `server` the only module that speaks HTTP and `fake` the public handle.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use zcc_sim::sink::salesforce::{Org, Person, SalesforceFake};
//! let fake = SalesforceFake::start(Org::new().contact(Person::new("Ada", "Lovelace").phone("(415) 555-1212"))).await?;
//! let instance_url = fake.url();
//! fake.unavailable_for_next(3);
//! # Ok(()) }
//! ```

mod error;
mod fake;
mod id;
mod multipart;
mod org;
mod record;
mod schema;
mod server;
mod soql;
mod sosl;
mod store;

pub use fake::SalesforceFake;
pub use org::{DEFAULT_EXTERNAL_ID_FIELD, ExternalIdField, ObjectAccess, Org, Person};
pub use server::{JSON_BLOB_MAX, MAX_VERSION, MIN_VERSION, MULTIPART_BLOB_MAX};
pub use store::{ContentDocumentLink, RequestCounts, StoredContentVersion};
