//! How a CRM sink meets its records (DESIGN.md §3.5): by engagement. Which
//! engagement a record belongs to, the aggregate of the records at hand when
//! the journal has none, one write at a time per engagement ([`Serial`]),
//! and a coalesced batch split into one write per engagement
//! ([`per_engagement`]) or, during a backlog, handed whole to a sink's
//! batch write ([`by_engagement`]). Independent of any CRM's API.

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

    /// Runs `write` once no other write of any of `engagement_ids` runs.
    /// The locks are taken in one order, so two such writes never wait on
    /// each other.
    pub async fn run_many<T, F: Future<Output = T>>(&self, engagement_ids: &[&str], write: F) -> T {
        let mut ids: Vec<&str> = engagement_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let locks: Vec<(&str, Arc<tokio::sync::Mutex<()>>)> = {
            let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .map(|id| (*id, writing.entry((*id).to_owned()).or_default().clone()))
                .collect()
        };
        let mut held = Vec::with_capacity(locks.len());
        for (_, lock) in &locks {
            held.push(lock.clone().lock_owned().await);
        }
        let outcome = write.await;
        drop(held);
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for (id, lock) in locks {
            if Arc::strong_count(&lock) == 2 {
                writing.remove(id);
            }
        }
        outcome
    }
}

/// The records of each engagement among `envelopes` (in the order the
/// engagements first appear, each one's records in journal order).
pub fn groups(envelopes: &[Envelope]) -> Vec<(String, Vec<Envelope>)> {
    let mut groups: Vec<(String, Vec<Envelope>)> = Vec::new();
    for envelope in envelopes {
        let Some(id) = engagement_of(envelope) else {
            continue;
        };
        match groups.iter_mut().find(|(known, _)| *known == id) {
            Some((_, theirs)) => theirs.push(envelope.clone()),
            None => groups.push((id, vec![envelope.clone()])),
        }
    }
    groups
}

/// Each record's outcome: its engagement's, from `outcomes`; a record
/// without an engagement has nothing to write in a CRM and is delivered.
fn settle(
    envelopes: &[Envelope],
    outcomes: &HashMap<String, Result<(), Failure>>,
) -> Vec<Result<(), Failure>> {
    envelopes
        .iter()
        .map(|envelope| match engagement_of(envelope) {
            Some(id) => outcomes
                .get(&id)
                .cloned()
                .unwrap_or_else(|| Err(Failure::retry("the engagement's write gave no outcome"))),
            None => Ok(()),
        })
        .collect()
}

/// A batch of several engagements' records (a sink's
/// [`spread`](crate::sink::Kind::spread)) handed whole to `many`, which
/// answers per engagement; a batch of one engagement goes to `one`.
pub async fn by_engagement<'a, F, Fut, M, MFut>(
    envelopes: &'a [Envelope],
    one: F,
    many: M,
) -> Vec<Result<(), Failure>>
where
    F: FnMut(String, Vec<Envelope>) -> Fut,
    Fut: Future<Output = Result<(), Failure>> + 'a,
    M: FnOnce(Vec<(String, Vec<Envelope>)>) -> MFut,
    MFut: Future<Output = HashMap<String, Result<(), Failure>>> + 'a,
{
    let groups = groups(envelopes);
    if groups.len() > 1 {
        return settle(envelopes, &many(groups).await);
    }
    per_engagement(envelopes, one).await
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
    let mut outcomes = HashMap::new();
    for (engagement_id, theirs) in groups(envelopes) {
        let outcome = write(engagement_id.clone(), theirs).await;
        outcomes.insert(engagement_id, outcome);
    }
    settle(envelopes, &outcomes)
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

    #[tokio::test(start_paused = true)]
    async fn batches_of_several_engagements_exclude_each_other_without_deadlock() {
        let serial = Arc::new(Serial::default());
        let inside = Arc::new(Mutex::new(Vec::<&str>::new()));
        let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        // Opposite orders, and a single write of a shared engagement.
        for ids in [
            vec!["a", "b", "c"],
            vec!["c", "b", "a"],
            vec!["b"],
            vec!["d", "a"],
        ] {
            let (serial, inside, overlaps) = (serial.clone(), inside.clone(), overlaps.clone());
            tasks.push(tokio::spawn(async move {
                let ids2 = ids.clone();
                serial
                    .run_many(&ids, async move {
                        {
                            let mut now = inside.lock().unwrap();
                            if ids2.iter().any(|id| now.contains(id)) {
                                overlaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            now.extend(ids2.iter().copied());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        inside.lock().unwrap().retain(|id| !ids2.contains(id));
                    })
                    .await
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("no deadlock")
                .unwrap();
        }
        assert_eq!(overlaps.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(serial.writing.lock().unwrap().is_empty());
    }
}
