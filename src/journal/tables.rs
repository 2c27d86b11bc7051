//! The journal's redb tables and the byte layouts of their values.
//!
//! Layout (one database file, `journal.redb`):
//! - `records`: seq → the record: in format 1, [`RECORD_V1`], the length of
//!   the record's view (u32, little-endian), the view as JSON, then the
//!   forwarded record as JSON, exactly the bytes sinks get ([`encode_record`],
//!   [`split_record`]). Format 0 stored the record's JSON alone.
//! - `refs`: seq → how many sinks still need the record; at 0 both rows go.
//! - `keys`: natural key → [`KeyEntry`], the dedup index. It outlives the record:
//!   an item that was delivered and removed must still be recognised when
//!   reconciliation finds it again. The writer prunes an entry 30 days after its
//!   `first_seen_ms` (`writer::KEY_RETENTION_MS`), a bounded run per commit.
//! - `outbox/<sink>`: seq → [`OutboxEntry`], what that sink still has to get.
//! - `due/<sink>`: (not-before ms, seq) → (), the outbox rows waiting in the
//!   durable retry tier, in the order they come due.
//! - `dead/<sink>`: seq → JSON [`DeadLetter`](super::DeadLetter).
//! - `outbox/@media`, `due/@media`: the media stage's outbox, laid out like a
//!   sink's ([`MEDIA`]). A record of a media type waits here (holding one
//!   reference) until it is enriched, and only then enters the sink outboxes.
//!   `@` cannot start a sink name, so it never collides with one.
//! - `gaps`: (start ms, end ms) → [`GapState`] as u8: the windows in which the
//!   WebSocket was not live, for reconciliation.
//! - `interactions`: engagement id → [`encode_interaction`]: the wall-clock
//!   ms of its last update (u64, little-endian), then the engagement's
//!   [`Interaction`](crate::interaction::Interaction) as JSON. Updated in the
//!   commit that stores a record of the engagement (or hands it on enriched),
//!   for every record with an `engagement_id`, whichever sinks want it. Pruned
//!   like the dedup index: [`KEY_RETENTION_MS`](super::writer::KEY_RETENTION_MS)
//!   after its last update, a bounded run per commit.
//! - `crm_ids`: `{sink}/{engagement id}` → [`encode_crm_ids`]: the wall-clock
//!   ms of its last update (u64, little-endian), then the CRM ids that sink
//!   created for the engagement ([`CrmIds`](super::CrmIds) as JSON: activity,
//!   attachment per file), merged in as a sink learns them. Pruned like the
//!   aggregates, [`KEY_RETENTION_MS`](super::writer::KEY_RETENTION_MS) after
//!   its last update; a sink's rows go when the sink leaves the configuration
//!   holding no records (as its name leaves `sinks`).
//! - `meta`: small named values ([`NEXT_SEQ`], [`LIVE_UNTIL`],
//!   [`FORMAT`], a sink's set-up problem under
//!   `setup_problem/{sink}`, [`SetupProblem`](super::SetupProblem) as JSON).
//! - `sinks`: every sink name that ever had an outbox here.

use redb::TableDefinition;

pub const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
pub const REFS: TableDefinition<u64, u32> = TableDefinition::new("refs");
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const SINKS: TableDefinition<&str, ()> = TableDefinition::new("sinks");
pub const GAPS: TableDefinition<(u64, u64), u8> = TableDefinition::new("gaps");
pub const INTERACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("interactions");
pub const CRM_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("crm_ids");

/// The media stage's pseudo-sink name: its outbox and due tables are
/// `outbox/@media` and `due/@media`. It is never listed in `sinks`.
pub const MEDIA: &str = "@media";

/// Meta key: the last moment (ms) the socket was known live.
pub const LIVE_UNTIL: &str = "live_until_ms";
/// Meta key: the seq the next stored record gets (u64, little-endian).
pub const NEXT_SEQ: &str = "next_seq";
/// Meta key: the layout version of the file (u32, little-endian). Absent in
/// a journal written before it existed: format 0.
pub const FORMAT: &str = "format_version";
/// The layout this build writes. 1: records carry their view; dead letters
/// carry a vendor code and `at_ms`. 2: the `interactions` table.
///
/// The version changes when a reader of the previous version would misread
/// the file, or when opening an older file must rewrite or build something
/// (the upgrade runs on a version change). A table that needs neither does
/// not change it: `crm_ids` and the `setup_problem/` meta entries came after
/// format 2 without a new version, since a format-2 build ignores them and
/// this build reads their absence as "nothing known yet" (a CRM sink then
/// looks an id up, as after a crash).
pub const FORMAT_VERSION: u32 = 2;

/// First byte of a format-1 record value. A format-0 value is the record's
/// JSON, which starts with `{`, so the two never mix up.
pub const RECORD_V1: u8 = 1;

/// A record value: its view (JSON) and the forwarded record's bytes.
pub fn encode_record(view: &[u8], record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(5 + view.len() + record.len());
    value.push(RECORD_V1);
    value.extend_from_slice(&(view.len() as u32).to_le_bytes());
    value.extend_from_slice(view);
    value.extend_from_slice(record);
    value
}

/// A record value's view (`None` in format 0) and the forwarded record's
/// bytes. Accepts both layouts.
pub fn split_record(value: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if value.first() != Some(&RECORD_V1) {
        return (None, value);
    }
    let len = value
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0) as usize;
    match (value.get(5..5 + len), value.get(5 + len..)) {
        (Some(view), Some(record)) => (Some(view), record),
        _ => (None, &[]),
    }
}

/// An `interactions` value: when it was last updated (ms) and the aggregate.
pub fn encode_interaction(updated_ms: u64, aggregate: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + aggregate.len());
    value.extend_from_slice(&updated_ms.to_le_bytes());
    value.extend_from_slice(aggregate);
    value
}

/// An `interactions` value's update time and aggregate bytes.
pub fn split_interaction(value: &[u8]) -> Option<(u64, &[u8])> {
    let updated_ms = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
    Some((updated_ms, value.get(8..)?))
}

/// A `crm_ids` value: when it was last updated (ms) and the ids (JSON); the
/// layout of an `interactions` value.
pub fn encode_crm_ids(updated_ms: u64, ids: &[u8]) -> Vec<u8> {
    encode_interaction(updated_ms, ids)
}

/// A `crm_ids` value's update time and ids bytes.
pub fn split_crm_ids(value: &[u8]) -> Option<(u64, &[u8])> {
    split_interaction(value)
}

pub fn outbox_name(sink: &str) -> String {
    format!("outbox/{sink}")
}

pub fn dead_name(sink: &str) -> String {
    format!("dead/{sink}")
}

pub fn due_name(sink: &str) -> String {
    format!("due/{sink}")
}

pub fn outbox(name: &str) -> TableDefinition<'_, u64, (u32, u32, u64)> {
    TableDefinition::new(name)
}

pub fn due(name: &str) -> TableDefinition<'_, (u64, u64), ()> {
    TableDefinition::new(name)
}

pub fn dead(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

/// Per-sink progress of one record: attempts that failed so far, how many
/// steps of the durable retry schedule it has used, and the earliest time (ms
/// since the epoch) of the next attempt; 0 means "as soon as the sink is free".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxEntry {
    pub attempts: u32,
    pub step: u32,
    pub not_before_ms: u64,
}

impl OutboxEntry {
    pub fn to_tuple(self) -> (u32, u32, u64) {
        (self.attempts, self.step, self.not_before_ms)
    }
    pub fn from_tuple((attempts, step, not_before_ms): (u32, u32, u64)) -> Self {
        OutboxEntry {
            attempts,
            step,
            not_before_ms,
        }
    }
}

/// At most this many versions of one note are remembered (the newest).
pub const MAX_VERSIONS: usize = 64;

/// What the dedup index remembers about a natural key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub revision: u32,
    pub first_seen_ms: u64,
    /// Fingerprints of every version of the editable content seen so far
    /// (notes only; empty for first-wins types). A body matching any of them
    /// is a duplicate, so a stale re-send after an edit is not a new revision.
    pub versions: Vec<[u8; 32]>,
}

impl KeyEntry {
    pub fn knows(&self, version: Option<[u8; 32]>) -> bool {
        version.is_none_or(|v| self.versions.contains(&v))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + 32 * self.versions.len());
        bytes.extend_from_slice(&self.revision.to_le_bytes());
        bytes.extend_from_slice(&self.first_seen_ms.to_le_bytes());
        for version in &self.versions {
            bytes.extend_from_slice(version);
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<KeyEntry> {
        let revision = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
        let first_seen_ms = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?);
        let rest = bytes.get(12..)?;
        if rest.len() % 32 != 0 {
            return None;
        }
        let versions = rest
            .chunks_exact(32)
            .map(|c| c.try_into().ok())
            .collect::<Option<Vec<[u8; 32]>>>()?;
        Some(KeyEntry {
            revision,
            first_seen_ms,
            versions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_entries_round_trip() {
        for entry in [
            KeyEntry {
                revision: 1,
                first_seen_ms: 42,
                versions: vec![],
            },
            KeyEntry {
                revision: 7,
                first_seen_ms: u64::MAX,
                versions: vec![[9; 32], [7; 32]],
            },
        ] {
            assert_eq!(KeyEntry::decode(&entry.encode()), Some(entry));
        }
        assert_eq!(KeyEntry::decode(&[1, 2]), None);
        assert_eq!(KeyEntry::decode(&[0; 13]), None);
    }

    #[test]
    fn interaction_values_split() {
        let value = encode_interaction(7, b"{}");
        assert_eq!(split_interaction(&value), Some((7, &b"{}"[..])));
        assert_eq!(split_interaction(&[1, 2, 3]), None);
    }

    #[test]
    fn record_values_of_both_formats_split() {
        let value = encode_record(br#"{"kind":"x"}"#, br#"{"id":"a"}"#);
        assert_eq!(
            split_record(&value),
            (Some(&br#"{"kind":"x"}"#[..]), &br#"{"id":"a"}"#[..])
        );
        assert_eq!(
            split_record(br#"{"id":"a"}"#),
            (None, &br#"{"id":"a"}"#[..])
        );
        assert_eq!(
            split_record(&[RECORD_V1, 9, 0, 0, 0, b'{']),
            (None, &b""[..])
        );
    }
}
