//! Everything that knows Zoom: the OAuth token cache (`auth`), the REST client
//! (`api`), WebSocket frames (`frame`) and event envelopes with their natural
//! keys (`event`), a record's Zoom-neutral view (`view`), and the REST
//! lookups of a file's download URL (`lookup`).
//!
//! Nothing outside this module parses Zoom JSON or builds Zoom URLs. It does not
//! hold connections open (that is `source/`) or persist anything (`journal/`).

pub mod api;
pub mod auth;
pub mod event;
pub mod frame;
pub mod lookup;
pub mod view;
