//! Media: recordings, transcripts and voicemails copied from Zoom into storage
//! the organisation controls, before their records reach the sinks.
//!
//! - `plan`: which files a record asks for and their object keys (pure).
//! - `download`: authenticated, streaming downloads; the Bearer token goes to
//!   Zoom hosts only, redirects are followed by hand.
//! - `store`: the object store (`file://`, `s3://`, `az://`, `gs://`),
//!   multipart streaming upload with sha256 and size, signed links.
//! - `worker`: the stage between the journal and the sinks, on the journal's
//!   media outbox.

pub mod download;
pub mod plan;
pub mod store;
pub mod worker;

pub use download::{Downloader, ZoomHosts};
pub use store::MediaStore;
pub use worker::MediaStage;

use crate::route::EventFilter;

/// The events that pass through the media stage.
pub fn media_events() -> EventFilter {
    EventFilter::new(plan::MEDIA_EVENTS.iter().map(|e| (*e).to_owned()).collect())
}
