//! Per-engagement ordering: records of one engagement reach a sink in journal
//! order, so a record that is retrying holds back the later records of *its*
//! engagement, and nobody else's.
//!
//! Pure bookkeeping. A lane is busy while its head record is in flight or
//! waiting in the durable retry tier; later records of that engagement queue
//! behind it (in memory, bounded by the worker). Records without an engagement
//! id are not ordered. A lane may have several holders (records of a batch
//! that went to the durable tier together); it is free when the last is done.
//!
//! The engagement id comes from the record's view (`record::View`), computed
//! at ingest: nothing here reads Zoom's JSON.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
pub struct Lanes<T> {
    /// Busy lanes: how many records hold each one (in flight or waiting in
    /// the durable tier), and what waits behind them.
    busy: HashMap<String, Lane<T>>,
    waiting: usize,
}

#[derive(Debug)]
struct Lane<T> {
    holders: usize,
    queue: VecDeque<T>,
}

impl<T> Lane<T> {
    fn held() -> Self {
        Lane {
            holders: 1,
            queue: VecDeque::new(),
        }
    }
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
    /// `item` may go now (its lane was free, which it now holds, or it has
    /// no lane) → `Some(item)`; otherwise it queues behind its lane's holders.
    pub fn admit(&mut self, lane: Option<&str>, item: T) -> Option<T> {
        let Some(lane) = lane else { return Some(item) };
        match self.busy.get_mut(lane) {
            Some(busy) => {
                busy.queue.push_back(item);
                self.waiting += 1;
                None
            }
            None => {
                self.busy.insert(lane.to_string(), Lane::held());
                Some(item)
            }
        }
    }

    /// One more holder without an item (a record waiting in the durable tier).
    pub fn occupy(&mut self, lane: &str) {
        match self.busy.get_mut(lane) {
            Some(busy) => busy.holders += 1,
            None => {
                self.busy.insert(lane.to_string(), Lane::held());
            }
        }
    }

    /// Up to `max` items queued behind the lane, taken out to go along with
    /// its head (they become holders too). Only when the head is the lane's
    /// sole holder: an item never overtakes a record waiting for a later
    /// retry.
    pub fn take_queued(&mut self, lane: &str, max: usize) -> Vec<T> {
        let Some(busy) = self.busy.get_mut(lane) else {
            return Vec::new();
        };
        if busy.holders != 1 {
            return Vec::new();
        }
        let n = max.min(busy.queue.len());
        let taken: Vec<T> = busy.queue.drain(..n).collect();
        busy.holders += taken.len();
        self.waiting -= taken.len();
        taken
    }

    /// One holder of the lane is done for good (delivered or dead-lettered).
    /// When it was the last: the next item of the lane, which becomes its
    /// holder, or `None` and the lane is free.
    pub fn finish(&mut self, lane: &str) -> Option<T> {
        let busy = self.busy.get_mut(lane)?;
        busy.holders = busy.holders.saturating_sub(1);
        if busy.holders > 0 {
            return None;
        }
        match busy.queue.pop_front() {
            Some(next) => {
                busy.holders = 1;
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
    fn a_batch_holds_its_lane_until_every_record_is_done() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.admit(Some("e1"), 1), Some(1));
        for n in 2..=4 {
            assert_eq!(lanes.admit(Some("e1"), n), None);
        }
        assert_eq!(lanes.take_queued("e1", 2), vec![2, 3]);
        assert_eq!(lanes.waiting(), 1);
        // Two of three done; the third waits in the durable tier.
        assert_eq!(lanes.finish("e1"), None);
        assert_eq!(lanes.finish("e1"), None);
        // A lane with a record waiting for a later retry lends nothing.
        assert_eq!(lanes.admit(Some("e1"), 5), None);
        lanes.occupy("e1");
        assert_eq!(lanes.take_queued("e1", 9), Vec::<i32>::new());
        assert_eq!(lanes.finish("e1"), None);
        assert_eq!(lanes.finish("e1"), Some(4));
        assert_eq!(lanes.take_queued("e1", 9), vec![5]);
        assert_eq!(lanes.finish("e1"), None);
        assert_eq!(lanes.finish("e1"), None);
        assert_eq!(lanes.waiting(), 0);
        assert_eq!(lanes.admit(Some("e1"), 6), Some(6));
    }
}
