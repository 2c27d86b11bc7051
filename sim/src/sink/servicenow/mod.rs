//! A faithful in-process fake of a ServiceNow instance's REST API for an
//! integration user, written from ServiceNow's public documentation
//! (README.md beside this file lists what it serves and where the
//! documentation is silent), for judging the relay's ServiceNow sink on real
//! sockets.
//!
//! Layout: `instance` (configuration) → `query` (encoded queries, pure) →
//! `store` (tables, journal fields, attachments and the API's rules) ←
//! `server`, the only module that speaks HTTP; `fake` the public handle.

mod fake;
mod instance;
mod query;
mod server;
mod store;

pub use fake::ServiceNowFake;
pub use instance::{DEFAULT_CORRELATION_FIELD, Instance};
pub use store::RequestCounts;
