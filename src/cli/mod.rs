//! The operator's commands beside `run` and `validate`: `queue`, `status`,
//! `reconcile` and `demo`. Each owns its arguments, what it reads or changes
//! and how it prints (text, or one JSON document with `--json`).
//!
//! The daemon's components live elsewhere: these commands reach the journal
//! through `queue::view`, Zoom through `zoom/` and the reconciler through
//! `reconcile::Reconciler`. `overview` is the journal overview that `status`
//! and `queue stats` both show.

pub mod demo;
pub mod overview;
pub mod queue;
pub mod reconcile;
pub mod status;
