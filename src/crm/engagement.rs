//! How a CRM sink meets its records (DESIGN.md §3.5): by engagement. Which
//! engagement a record belongs to, the aggregate of the records at hand when
//! the journal has none, one write at a time per engagement ([`Serial`]),
//! and a coalesced batch split into one write per engagement
//! ([`per_engagement`]). Independent of any CRM's API.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::deliver::Envelope;
use crate::failure::Failure;
use crate::interaction::Interaction;

/// A CRM sink's default `events`: the seven event types with natural keys
/// (DESIGN.md §3.4), the artefacts of an engagement.
pub const KEYED_EVENTS: &[&str] = &[
    "contact_center.recording_completed",
    "contact_center.recording_transcript_completed",
    "contact_center.engagement_messaging_transcript_completed",
    "contact_center.engagement_note_added",
    "contact_center.engagement_disposition_added",
    "contact_center.inbox_message_received",
    "contact_center.voicemail_transcript_completed",
];

/// The record's engagement: its lane, else its view's `engagement_id`.
pub fn engagement_of(envelope: &Envelope) -> Option<String> {
    envelope
        .lane
        .clone()
        .or_else(|| envelope.view.engagement_id.clone())
}

/// The aggregate of the records at hand, for when the journal has none
/// stored (it always should: it is written in the record's commit).
pub fn fold_views(envelopes: &[Envelope]) -> Option<Interaction> {
    let mut aggregate: Option<Interaction> = None;
    for envelope in envelopes {
        if let Some(one) = Interaction::of(&envelope.view, 0, 1, &[]) {
            match &mut aggregate {
                Some(a) => a.merge(&one),
                None => aggregate = Some(one),
            }
        }
    }
    aggregate
}

/// One write at a time per engagement: a record waiting on the durable
/// schedule and a new one of the same engagement may be due together.
#[derive(Debug, Default)]
pub struct Serial {
    writing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Serial {
    /// Runs `write` once no other write of `engagement_id` runs.
    pub async fn run<T, F: Future<Output = T>>(&self, engagement_id: &str, write: F) -> T {
        let lock = self
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(engagement_id.to_owned())
            .or_default()
            .clone();
        let outcome = {
            let _held = lock.lock().await;
            write.await
        };
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(&lock) == 2 {
            writing.remove(engagement_id);
        }
        outcome
    }
}

/// One `write(engagement_id, its records)` per engagement among
/// `envelopes`, each record settled with its engagement's outcome; records
/// without an engagement have nothing to write in a CRM and are delivered.
pub async fn per_engagement<'a, F, Fut>(
    envelopes: &'a [Envelope],
    mut write: F,
) -> Vec<Result<(), Failure>>
where
    F: FnMut(String, Vec<Envelope>) -> Fut,
    Fut: Future<Output = Result<(), Failure>> + 'a,
{
    let mut outcomes: Vec<Option<Result<(), Failure>>> = vec![None; envelopes.len()];
    let mut engagements: Vec<String> = Vec::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        match engagement_of(envelope) {
            Some(id) if !engagements.contains(&id) => engagements.push(id),
            Some(_) => {}
            None => outcomes[i] = Some(Ok(())),
        }
    }
    for engagement_id in engagements {
        let theirs: Vec<Envelope> = envelopes
            .iter()
            .filter(|e| engagement_of(e).as_deref() == Some(engagement_id.as_str()))
            .cloned()
            .collect();
        let outcome = write(engagement_id.clone(), theirs).await;
        for (i, envelope) in envelopes.iter().enumerate() {
            if engagement_of(envelope).as_deref() == Some(engagement_id.as_str()) {
                outcomes[i] = Some(outcome.clone());
            }
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn one_write_at_a_time_per_engagement() {
        let serial = Arc::new(Serial::default());
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (serial, running, most) = (serial.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                serial
                    .run("eng-1", async {
                        let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(serial.writing.lock().unwrap().is_empty());
    }
}
