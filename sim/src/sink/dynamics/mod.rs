//! A faithful in-process fake of a Dynamics 365 (Dataverse) environment's
//! Web API v9.2 and of Microsoft Entra ID's client-credentials token
//! endpoint, written from Microsoft's public documentation (README.md beside
//! this file lists what it serves and where the documentation is silent),
//! for judging the relay's Dynamics sink on real sockets.
//!
//! Layout: `org` (configuration) → `store` (live data and the Web API's
//! rules, `$batch` change sets) ← `odata` (paths, keys, `$filter`) and
//! `batch` (multipart bodies), pure; `server` the only module that speaks
//! HTTP; `fake` the public handle.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use zcc_sim::sink::dynamics::{Contact, DynamicsFake, Environment};
//! let fake = DynamicsFake::start(
//!     Environment::new().contact(Contact::new("Ada", "Lovelace").telephone1("(415) 555-1212")),
//! ).await?;
//! let org_url = fake.url();
//! fake.throttle_next(2, std::time::Duration::from_secs(1));
//! # Ok(()) }
//! ```

mod batch;
mod fake;
mod odata;
mod org;
mod server;
mod store;

pub use fake::{DynamicsFake, StoredAnnotation};
pub use org::{AlternateKey, Contact, DEFAULT_KEY_COLUMN, Environment, KeyStatus};
pub use store::RequestCounts;
