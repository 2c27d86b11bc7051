//! A faithful in-process fake of a Zendesk account's Support API for an
//! integration (README.md beside this file lists what it serves, where each
//! rule comes from and where the documentation is silent), for judging the
//! relay's Zendesk sink on real sockets.
//!
//! Layout: `account` (configuration) → `store` (live data and the API's
//! rules); `server` the only module that speaks HTTP (the OAuth token
//! endpoint, authentication, the injected faults, the rate limits); `fake`
//! the public handle.

mod account;
mod fake;
mod server;
mod store;

pub use account::Account;
pub use fake::{StoredComment, StoredTicket, ZendeskFake};
pub use store::{IDEMPOTENCY_WINDOW, RequestCounts, UPLOAD_LIMIT};
