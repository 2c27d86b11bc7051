//! The operator's commands beside `run` and `validate`: `queue`, `status`,
//! `reconcile`, `check` and `demo`. Each owns its arguments, what it reads or changes
//! and how it prints (text, or one JSON document with `--json`).
//!
//! Shared by the commands: `view` (how a command opens the journal: as its
//! owner, or read-only beside a running daemon), `overview` (the journal
//! overview that `status` and `queue stats` both show) and `table` (aligned
//! columns, human ages and sizes). The daemon's components live elsewhere:
//! Zoom through `zoom/`, the reconciler through `reconcile::Reconciler`.

pub mod check;
pub mod demo;
pub mod overview;
pub mod queue;
pub mod reconcile;
pub mod status;
pub mod table;
pub mod view;
