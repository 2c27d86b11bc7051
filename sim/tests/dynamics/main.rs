//! Integration tests of the fake Dataverse environment over real loopback
//! sockets: one module per area, `support` for the client plumbing.

mod auth;
mod batch;
mod faults;
mod queries;
mod records;
mod support;
