//! Per-engagement ordering: records of one engagement reach a sink in journal
//! order, so a record that is retrying holds back the later records of *its*
//! engagement, and nobody else's.
//!
//! Pure bookkeeping. A lane is busy while its head record is in flight or
//! waiting in the durable retry tier; later records of that engagement queue
//! behind it (in memory, bounded by the worker). Records without an engagement
//! id are not ordered.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;

/// The ordering key of a stored record: `payload.object.engagement_id`.
pub fn lane_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Record {
        payload: Option<Payload>,
    }
    #[derive(Deserialize)]
    struct Payload {
        object: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let record: Record = serde_json::from_slice(bytes).ok()?;
    match record.payload?.object?.get("engagement_id")? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Lanes<T> {
    /// Busy lanes and what waits behind each head.
    busy: HashMap<String, VecDeque<T>>,
    waiting: usize,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            busy: HashMap::new(),
            waiting: 0,
        }
    }
}

impl<T> Lanes<T> {
    /// `item` may go now (its lane was free, which it now occupies, or it has
    /// no lane) → `Some(item)`; otherwise it queues behind its lane's head.
    pub fn admit(&mut self, lane: Option<&str>, item: T) -> Option<T> {
        let Some(lane) = lane else { return Some(item) };
        match self.busy.get_mut(lane) {
            Some(queue) => {
                queue.push_back(item);
                self.waiting += 1;
                None
            }
            None => {
                self.busy.insert(lane.to_string(), VecDeque::new());
                Some(item)
            }
        }
    }

    /// Marks a lane busy without an item (its head waits in the durable tier).
    pub fn occupy(&mut self, lane: &str) {
        self.busy.entry(lane.to_string()).or_default();
    }

    /// The lane's head is done for good (delivered or dead-lettered): the next
    /// item of the lane, which becomes its head, or `None` and the lane is free.
    pub fn finish(&mut self, lane: &str) -> Option<T> {
        let queue = self.busy.get_mut(lane)?;
        match queue.pop_front() {
            Some(next) => {
                self.waiting -= 1;
                Some(next)
            }
            None => {
                self.busy.remove(lane);
                None
            }
        }
    }

    /// Items held back behind busy lanes.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_lane_holds_back_only_its_own_records() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.admit(Some("e1"), 1), Some(1));
        assert_eq!(lanes.admit(Some("e2"), 2), Some(2));
        assert_eq!(lanes.admit(Some("e1"), 3), None);
        assert_eq!(lanes.admit(None, 4), Some(4));
        assert_eq!(lanes.admit(Some("e1"), 5), None);
        assert_eq!(lanes.waiting(), 2);
        assert_eq!(lanes.finish("e2"), None);
        assert_eq!(lanes.admit(Some("e2"), 6), Some(6));
        assert_eq!(lanes.finish("e1"), Some(3));
        assert_eq!(lanes.finish("e1"), Some(5));
        assert_eq!(lanes.finish("e1"), None);
        assert_eq!(lanes.admit(Some("e1"), 7), Some(7));
        assert_eq!(lanes.waiting(), 0);
        lanes.occupy("e3");
        assert_eq!(lanes.admit(Some("e3"), 8), None);
        assert_eq!(lanes.finish("e3"), Some(8));
        assert_eq!(lanes.finish("unknown"), None);
    }

    #[test]
    fn finds_the_engagement_of_a_record() {
        let check = |json: &str, expected: Option<&str>| {
            assert_eq!(lane_of(json.as_bytes()).as_deref(), expected, "{json}");
        };
        check(
            r#"{"id":"x","payload":{"account_id":"a","object":{"engagement_id":"E1","note":"n"}}}"#,
            Some("E1"),
        );
        check(r#"{"payload":{"object":{"engagement_id":42}}}"#, Some("42"));
        check(r#"{"payload":{"object":{"engagement_id":""}}}"#, None);
        check(r#"{"payload":{"object":{"user_id":"u"}}}"#, None);
        check(r#"{"payload":null}"#, None);
        check(r#"{"payload":{"object":[1]}}"#, None);
        check("not json", None);
    }
}
