//! Integration tests of the fake org over real loopback sockets: one module per resource,
//! `support` for the client plumbing.

mod auth;
mod collections;
mod content_version;
mod describe;
mod faults;
mod query;
mod records;
mod support;
mod upsert;
