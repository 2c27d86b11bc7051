//! A faithful in-process fake of a HubSpot portal's API for a private app
//! (or service key), written from HubSpot's public documentation (README.md
//! beside this file lists what it serves and where the documentation is
//! silent), for judging the relay's HubSpot sink on real sockets.
//!
//! Layout: `portal` (configuration) → `store` (live data and the API's
//! rules) ← `multipart` (pure); `server` the only module that speaks HTTP;
//! `fake` the public handle.

mod fake;
mod multipart;
mod portal;
mod server;
mod store;

pub use fake::HubSpotFake;
pub use portal::{ALL_SCOPES, Contact, DEFAULT_DISPOSITIONS, DEFAULT_UNIQUE_PROPERTY, Portal};
pub use store::RequestCounts;
