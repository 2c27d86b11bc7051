//! What the journal keeps for the CRM sinks beside the records (DESIGN.md
//! §3.5): the ids a sink created for an engagement ([`CrmIds`], table
//! `crm_ids`) and a sink's last set-up problem ([`SetupProblem`], a `meta`
//! entry), as stored values with their layouts and their merge.
//!
//! Owns the values, not their use: `crm::ids` is the sinks' handle on the
//! ids, `deliver/` writes the set-up problem and `cli::status` shows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The CRM ids one sink created for one engagement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmIds {
    /// The CRM the ids are from (a sink's instance URL): ids recorded under
    /// another scope (the sink was pointed at another org) are not used.
    pub scope: String,
    /// The activity (Salesforce Task, Dynamics phonecall, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Per stored file (its media entry's `location`): the attachment's id,
    /// on `activity`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Per note (its `note_id`): the CRM object holding it on `activity`
    /// (a Dynamics annotation), with the digest of the text written to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, NoteIds>,
    /// The customer record linked to `activity` by a call of its own (a
    /// HubSpot association); `None` until one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Other records the sink created on `activity`, by the sink's own key
    /// (a Zendesk note's comment): kept like `files`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, String>,
}

/// A note's CRM object and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteIds {
    pub id: String,
    /// [`text_digest`] of the text last written to it.
    pub digest: String,
}

/// A short digest of a text written to a CRM (hex, 16 bytes of SHA-256):
/// enough to see that a note was edited since, without keeping its text.
pub fn text_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

impl CrmIds {
    /// Ids in `scope` on the activity `activity`, no file yet.
    pub fn on(scope: &str, activity: &str) -> CrmIds {
        CrmIds {
            scope: scope.to_owned(),
            activity: Some(activity.to_owned()),
            ..CrmIds::default()
        }
    }

    /// Joins what a sink just learned into what was stored. Another scope or
    /// another activity replaces the stored ids (their files and notes were
    /// written somewhere else); otherwise the files and notes are added, the
    /// learned id winning for one known twice, and a learned customer
    /// replaces the stored one.
    pub fn merge(&mut self, learned: CrmIds) {
        let other_activity = learned.activity.is_some() && learned.activity != self.activity;
        if learned.scope != self.scope || other_activity {
            *self = learned;
            return;
        }
        self.files.extend(learned.files);
        self.notes.extend(learned.notes);
        self.children.extend(learned.children);
        if learned.customer.is_some() {
            self.customer = learned.customer;
        }
    }

    /// The attachment id of `file` on `activity`, if recorded.
    pub fn file_on(&self, activity: &str, file: &str) -> Option<&str> {
        if self.activity.as_deref() != Some(activity) {
            return None;
        }
        self.files.get(file).map(String::as_str)
    }

    /// The note's ids on `activity`, if recorded.
    pub fn note_on(&self, activity: &str, note_id: &str) -> Option<&NoteIds> {
        if self.activity.as_deref() != Some(activity) {
            return None;
        }
        self.notes.get(note_id)
    }

    /// The id of the child `key` on `activity`, if recorded.
    pub fn child_on(&self, activity: &str, key: &str) -> Option<&str> {
        if self.activity.as_deref() != Some(activity) {
            return None;
        }
        self.children.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.activity.is_none()
            && self.files.is_empty()
            && self.notes.is_empty()
            && self.customer.is_none()
            && self.children.is_empty()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<CrmIds> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The `crm_ids` key of a sink's ids for an engagement. A sink name never
/// holds a `/` (its alphabet is letters, digits, `_`, `.`, `-`), so the key
/// is unambiguous and one sink's rows are one range.
pub(crate) fn crm_ids_key(sink: &str, engagement_id: &str) -> String {
    format!("{sink}/{engagement_id}")
}

/// The range of a sink's `crm_ids` keys: `[sink/, sink0)` (`0` follows `/`).
pub(crate) fn crm_ids_range(sink: &str) -> (String, String) {
    (format!("{sink}/"), format!("{sink}0"))
}

/// A sink's set-up problem, as the delivery worker last saw it: every record
/// waits until it is fixed. Stored in `meta` under [`setup_problem_key`]
/// while it lasts, so `zcc-relay status` shows it whether or not the daemon
/// runs; removed on the sink's next success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupProblem {
    /// What is wrong and what to fix (the sink's classified reason).
    pub reason: String,
    /// When it was first seen (ms since the epoch).
    pub since_ms: u64,
}

impl SetupProblem {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<SetupProblem> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The `meta` key of a sink's set-up problem.
pub fn setup_problem_key(sink: &str) -> String {
    format!("setup_problem/{sink}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(scope: &str, activity: Option<&str>, files: &[(&str, &str)]) -> CrmIds {
        CrmIds {
            scope: scope.into(),
            activity: activity.map(Into::into),
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..CrmIds::default()
        }
    }

    fn check(stored: CrmIds, learned: CrmIds, expected: CrmIds) {
        let mut merged = stored;
        merged.merge(learned);
        assert_eq!(merged, expected);
    }

    #[test]
    fn merges_files_of_one_activity_and_replaces_another() {
        let a = "https://a.example";
        // Files of the same activity add up; a file learned again takes the
        // new id.
        check(
            ids(a, Some("T1"), &[("f1", "C1"), ("f2", "C2")]),
            ids(a, Some("T1"), &[("f2", "C9"), ("f3", "C3")]),
            ids(a, Some("T1"), &[("f1", "C1"), ("f2", "C9"), ("f3", "C3")]),
        );
        // Nothing stored yet.
        check(
            CrmIds::default(),
            ids(a, Some("T1"), &[]),
            ids(a, Some("T1"), &[]),
        );
        // The activity was recreated: the old files were on the old one.
        check(
            ids(a, Some("T1"), &[("f1", "C1")]),
            ids(a, Some("T2"), &[("f2", "C2")]),
            ids(a, Some("T2"), &[("f2", "C2")]),
        );
        // Another org: nothing of the old one is kept.
        check(
            ids(a, Some("T1"), &[("f1", "C1")]),
            ids("https://b.example", Some("T1"), &[]),
            ids("https://b.example", Some("T1"), &[]),
        );
        // Learned files without an activity join the stored activity's.
        check(
            ids(a, Some("T1"), &[("f1", "C1")]),
            ids(a, None, &[("f2", "C2")]),
            ids(a, Some("T1"), &[("f1", "C1"), ("f2", "C2")]),
        );
    }

    #[test]
    fn merges_notes_and_the_customer_of_one_activity() {
        let note = |id: &str, text: &str| NoteIds {
            id: id.into(),
            digest: text_digest(text),
        };
        let mut stored = ids("s", Some("P1"), &[]);
        stored.notes.insert("n1".into(), note("A1", "first"));
        let mut learned = ids("s", None, &[]);
        learned.notes.insert("n1".into(), note("A1", "edited"));
        learned.notes.insert("n2".into(), note("A2", "second"));
        learned.customer = Some("C1".into());
        stored.merge(learned);
        assert_eq!(stored.note_on("P1", "n1"), Some(&note("A1", "edited")));
        assert_eq!(
            stored.note_on("P1", "n2").map(|n| n.id.as_str()),
            Some("A2")
        );
        assert_eq!(stored.note_on("P2", "n1"), None);
        assert_eq!(stored.customer.as_deref(), Some("C1"));
        // A learned activity without a customer keeps the stored one.
        stored.merge(ids("s", Some("P1"), &[]));
        assert_eq!(stored.customer.as_deref(), Some("C1"));
        assert_ne!(text_digest("first"), text_digest("edited"));
        assert_eq!(text_digest("x").len(), 32);
        // What an earlier build stored (no notes, no customer) still reads.
        let old = br#"{"scope":"s","activity":"T1","files":{"f":"C"}}"#;
        assert_eq!(
            CrmIds::decode(old),
            Some(ids("s", Some("T1"), &[("f", "C")]))
        );
    }

    #[test]
    fn children_merge_like_files_and_round_trip() {
        let mut stored = ids("s", Some("T1"), &[]);
        stored.children.insert("note:n1".into(), "C1".into());
        let mut learned = ids("s", None, &[]);
        learned.children.insert("note:n2".into(), "C2".into());
        stored.merge(learned);
        assert_eq!(stored.child_on("T1", "note:n1"), Some("C1"));
        assert_eq!(stored.child_on("T1", "note:n2"), Some("C2"));
        assert_eq!(stored.child_on("T2", "note:n1"), None);
        assert_eq!(CrmIds::decode(&stored.encode()), Some(stored.clone()));
        // A value written before children existed still reads.
        let old = br#"{"scope":"s","activity":"T1"}"#;
        assert_eq!(CrmIds::decode(old), Some(ids("s", Some("T1"), &[])));
        let moved = ids("s", Some("T2"), &[]);
        stored.merge(moved.clone());
        assert_eq!(stored, moved, "another activity drops the children");
    }

    #[test]
    fn a_file_is_known_only_on_its_activity() {
        let stored = ids("s", Some("T1"), &[("f1", "C1")]);
        assert_eq!(stored.file_on("T1", "f1"), Some("C1"));
        assert_eq!(stored.file_on("T2", "f1"), None);
        assert_eq!(stored.file_on("T1", "f2"), None);
    }

    #[test]
    fn values_round_trip() {
        let stored = ids("s", Some("T1"), &[("file:///a/b.mp3", "068x")]);
        assert_eq!(CrmIds::decode(&stored.encode()), Some(stored));
        assert_eq!(CrmIds::decode(b"not json"), None);
        let problem = SetupProblem {
            reason: "create the field".into(),
            since_ms: 5,
        };
        assert_eq!(SetupProblem::decode(&problem.encode()), Some(problem));
        assert_eq!(crm_ids_key("sf", "eng/1"), "sf/eng/1");
        let (from, to) = crm_ids_range("sf");
        assert!(from.as_str() <= "sf/eng/1" && "sf/eng/1" < to.as_str());
        assert!(!(from.as_str() <= "sf.2/x" && "sf.2/x" < to.as_str()));
        assert!(!(from.as_str() <= "sf0/x" && "sf0/x" < to.as_str()));
    }
}
