//! The CRM ids a sink created (DESIGN.md §3.5 "Files are attached once"):
//! per engagement, the activity, one attachment per stored file and (for a CRM
//! that keeps notes as entries of their own) one entry per note, kept per
//! sink in the journal (table `crm_ids`, value [`CrmIds`]) so that neither a
//! restart nor a later artefact of the engagement looks them up again.
//!
//! [`CreatedIds`] is a CRM sink's handle, built from its name, the journal of
//! its `BuildContext` and its *scope* (the CRM instance it writes to; ids of
//! another scope are never used, so a sink pointed at another org starts
//! afresh). A sink reads what is known before it writes an engagement
//! ([`CreatedIds::get`]) and records what it learned ([`CreatedIds::record`],
//! after the commit). The journal merges: a file learned later joins the
//! activity's files, a new activity id replaces the old one with its files.
//!
//! Not owned here: the lookup by the file's key that guards the window
//! between a create and its record (each CRM's client does it for files not
//! recorded yet), and the retention (the journal prunes a row 30 days after
//! its last update, with the interaction aggregates).

pub use crate::journal::{CrmIds, NoteIds, text_digest};

use crate::failure::Failure;
use crate::journal::Journal;

/// One sink's view of the CRM ids it created.
#[derive(Clone)]
pub struct CreatedIds {
    journal: Journal,
    sink: String,
    scope: String,
}

impl CreatedIds {
    /// `scope` names the CRM instance (the sink's instance or org URL).
    pub fn new(journal: Journal, sink: &str, scope: &str) -> CreatedIds {
        CreatedIds {
            journal,
            sink: sink.to_owned(),
            scope: scope.to_owned(),
        }
    }

    /// What the sink recorded for the engagement in this scope (empty when
    /// nothing, or only ids of another scope). A journal that cannot be read
    /// now is a retry.
    pub async fn get(&self, engagement_id: &str) -> Result<CrmIds, Failure> {
        let stored = self
            .journal
            .crm_ids(&self.sink, engagement_id)
            .await
            .map_err(|e| Failure::retry(format!("journal: {e}")))?;
        Ok(stored
            .filter(|ids| ids.scope == self.scope)
            .unwrap_or_else(|| CrmIds {
                scope: self.scope.clone(),
                ..CrmIds::default()
            }))
    }

    /// Ids of this scope on no activity yet (files that exist before their
    /// activity does), for [`Self::record`]: they join the activity's.
    pub fn before_activity(&self) -> CrmIds {
        CrmIds {
            scope: self.scope.clone(),
            ..CrmIds::default()
        }
    }

    /// Ids of this scope on the activity `activity`, for [`Self::record`].
    pub fn on(&self, activity: &str) -> CrmIds {
        CrmIds::on(&self.scope, activity)
    }

    /// Merges `learned` into what the journal holds for the engagement;
    /// returns after the commit. Nothing learned: nothing written.
    pub async fn record(&self, engagement_id: &str, learned: CrmIds) -> Result<(), Failure> {
        if learned.is_empty() {
            return Ok(());
        }
        self.journal
            .record_crm_ids(&self.sink, engagement_id, learned)
            .await
            .map_err(|e| Failure::retry(format!("journal: {e}")))
    }
}

impl CreatedIds {
    /// Drops what the sink recorded for the engagement (an id it held no
    /// longer exists in the CRM: a delete there); the next write looks
    /// everything up again. Returns after the commit.
    pub async fn forget(&self, engagement_id: &str) -> Result<(), Failure> {
        // Another scope replaces what was stored, and `get` never uses it.
        let nothing = CrmIds {
            scope: String::new(),
            ..CrmIds::default()
        };
        self.journal
            .record_crm_ids(&self.sink, engagement_id, nothing)
            .await
            .map_err(|e| Failure::retry(format!("journal: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_kept_per_sink_and_scope_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let sf = CreatedIds::new(journal.clone(), "sf", "https://a.example");
        let other = CreatedIds::new(journal.clone(), "sf2", "https://a.example");
        assert!(sf.get("E1").await.unwrap().is_empty());
        sf.record("E1", sf.on("T1")).await.unwrap();
        let mut file = sf.on("T1");
        file.files.insert("file:///m/rec.mp3".into(), "068A".into());
        sf.record("E1", file).await.unwrap();
        sf.record("E1", CrmIds::default()).await.unwrap();
        let known = sf.get("E1").await.unwrap();
        assert_eq!(known.activity.as_deref(), Some("T1"));
        assert_eq!(known.file_on("T1", "file:///m/rec.mp3"), Some("068A"));
        assert!(other.get("E1").await.unwrap().is_empty(), "per sink");
        assert!(sf.get("E2").await.unwrap().is_empty(), "per engagement");
        journal.close().await;
        drop((journal, sf, other));

        let journal = Journal::open(dir.path(), Vec::new()).unwrap();
        let sf = CreatedIds::new(journal.clone(), "sf", "https://a.example");
        let known = sf.get("E1").await.unwrap();
        assert_eq!(known.file_on("T1", "file:///m/rec.mp3"), Some("068A"));
        // The same sink name on another org knows nothing.
        let moved = CreatedIds::new(journal.clone(), "sf", "https://b.example");
        let fresh = moved.get("E1").await.unwrap();
        assert!(fresh.is_empty());
        assert_eq!(fresh.scope, "https://b.example");
        // Forgotten: nothing known, and what is learned next counts.
        sf.forget("E1").await.unwrap();
        assert!(sf.get("E1").await.unwrap().is_empty());
        sf.record("E1", sf.on("T2")).await.unwrap();
        assert_eq!(sf.get("E1").await.unwrap().activity.as_deref(), Some("T2"));
        journal.close().await;
    }
}
