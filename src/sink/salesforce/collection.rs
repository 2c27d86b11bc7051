//! The backlog path: the Tasks of several engagements written with sObject
//! Collections, up to [`COLLECTION_MAX`] a call (crm-reference.md §1), then
//! their files. Owns which call each engagement's Task takes; the fields,
//! the customer and the files are the single-record path's (`prepare`,
//! `attach_files`), so both paths write the same Task.
//!
//! `TaskSubtype` is accepted only at creation, and a collection upsert has no
//! `updateOnly`, so no Task is upserted blind:
//! - a Task the journal knows (`crm::ids`) is updated by its id (`PATCH
//!   /composite/sobjects`), which never creates;
//! - for the others one SOQL query finds which exist: those are updated by
//!   id, the rest upserted by the external id *with* `TaskSubtype` (a record
//!   that now exists refuses it, so nothing is created without it);
//! - whatever does not fit (a Task created or deleted in between, several
//!   Tasks with one key, a lookup Salesforce refuses) goes through the
//!   single-record path, which settles it with its own rules.
//!
//! A failed call fails every engagement it carried, a record's error only
//! its own, classified as the same error of a single-record call would be.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;

use super::client::{COLLECTION_MAX, QUERY_CHARS, QUERY_IDS};
use super::{Prepared, SalesforceSink};
use crate::deliver::Envelope;
use crate::failure::{Class, Failure};

/// Engagements prepared, or whose files are attached, at once.
const AT_ONCE: usize = 8;

/// Record errors after which the single-record path takes the engagement
/// over: its Task was created (`TaskSubtype` refused on the existing one) or
/// deleted since the lookup, or its key matches several Tasks.
const TAKE_OVER: &[&str] = &[
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "DUPLICATE_EXTERNAL_ID",
    "ENTITY_IS_DELETED",
    "INVALID_CROSS_REFERENCE_KEY",
];

fn takes_over(failure: &Failure) -> bool {
    failure
        .code
        .as_deref()
        .is_some_and(|code| TAKE_OVER.contains(&code))
}

/// Runs of `items` with at most `max` items and, by `len`, at most `chars`
/// characters (an item longer than that goes alone).
fn runs<T>(items: Vec<T>, max: usize, chars: usize, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut size = 0;
    for item in items {
        let n = len(&item) + 3;
        if !current.is_empty() && (current.len() >= max || size + n > chars) {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += n;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl SalesforceSink {
    /// Writes the engagements' Tasks (each as its aggregate is now) and
    /// files, one at a time per engagement; the outcome of each.
    pub(super) async fn write_many(
        &self,
        groups: Vec<(String, Vec<Envelope>)>,
    ) -> HashMap<String, Result<(), Failure>> {
        let ids: Vec<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
        self.serial
            .run_many(&ids, self.write_many_now(&groups))
            .await
    }

    async fn write_many_now(
        &self,
        groups: &[(String, Vec<Envelope>)],
    ) -> HashMap<String, Result<(), Failure>> {
        let settings = self.settings();
        let field = settings.external_id_field.as_str();
        let mut outcomes: HashMap<String, Result<(), Failure>> = HashMap::new();
        // Aggregates read and customers looked up several at once.
        type Ready<'a> = std::pin::Pin<
            Box<dyn Future<Output = (&'a String, Result<Prepared, Failure>)> + Send + 'a>,
        >;
        let settings_ref = &settings;
        let mut jobs: Vec<Ready<'_>> = Vec::with_capacity(groups.len());
        for (engagement_id, envelopes) in groups {
            jobs.push(Box::pin(async move {
                let prepared = self.prepare(settings_ref, engagement_id, envelopes).await;
                (engagement_id, prepared)
            }));
        }
        let ready: Vec<(&String, Result<Prepared, Failure>)> = futures_util::stream::iter(jobs)
            .buffered(AT_ONCE)
            .collect()
            .await;
        let mut prepared: Vec<Prepared> = Vec::with_capacity(groups.len());
        for (engagement_id, result) in ready {
            match result {
                Ok(p) => prepared.push(p),
                Err(failure) => {
                    outcomes.insert(engagement_id.clone(), Err(failure));
                }
            }
        }

        // Which call each Task takes.
        let mut updates: Vec<(Prepared, String)> = Vec::new();
        let mut creates: Vec<Prepared> = Vec::new();
        // With whether the Task is believed to exist (an update first).
        let mut single: Vec<(Prepared, bool)> = Vec::new();
        let mut unknown: Vec<Prepared> = Vec::new();
        for p in prepared {
            match p.known.activity.clone() {
                Some(id) => updates.push((p, id)),
                None => unknown.push(p),
            }
        }
        for run in runs(unknown, QUERY_IDS, QUERY_CHARS, |p| p.engagement_id.len()) {
            let values: Vec<&str> = run.iter().map(|p| p.engagement_id.as_str()).collect();
            match self.client.existing_tasks(field, &values).await {
                Ok(found) => {
                    for p in run {
                        match found.get(&p.engagement_id).map(Vec::as_slice) {
                            None | Some([]) => creates.push(p),
                            Some([id]) => {
                                let id = id.clone();
                                updates.push((p, id));
                            }
                            Some(_) => single.push((p, true)),
                        }
                    }
                }
                // Salesforce refused the lookup itself (a field it does not
                // know, say): the single-record path names the problem.
                Err(failure) if failure.class == Class::Permanent => {
                    single.extend(run.into_iter().map(|p| (p, false)));
                }
                Err(failure) => {
                    for p in run {
                        outcomes.insert(p.engagement_id.clone(), Err(failure.clone()));
                    }
                }
            }
        }

        // The Tasks' ids, as they are written.
        let mut written: Vec<(Prepared, String)> = Vec::new();
        let mut creates = creates.into_iter().peekable();
        while creates.peek().is_some() {
            let run: Vec<Prepared> = creates.by_ref().take(COLLECTION_MAX).collect();
            let records = run
                .iter()
                .map(|p| {
                    let mut all = p.fields.clone();
                    all.extend(p.create_only.clone());
                    (p.engagement_id.clone(), all)
                })
                .collect();
            let answer = self.client.upsert_tasks(field, records).await;
            self.settle_run(run, answer, &mut written, &mut single, &mut outcomes);
        }
        let mut updates = updates.into_iter().peekable();
        while updates.peek().is_some() {
            let run: Vec<(Prepared, String)> = updates.by_ref().take(COLLECTION_MAX).collect();
            let records = run
                .iter()
                .map(|(p, id)| (id.clone(), p.fields.clone()))
                .collect();
            let answer = self.client.update_tasks(records).await;
            let run: Vec<Prepared> = run.into_iter().map(|(p, _)| p).collect();
            self.settle_run(run, answer, &mut written, &mut single, &mut outcomes);
        }
        for (p, exists) in single {
            let answer = self
                .client
                .upsert_task(
                    field,
                    &p.engagement_id,
                    p.fields.clone(),
                    p.create_only.clone(),
                    exists,
                )
                .await;
            match answer {
                Ok(task_id) => written.push((p, task_id)),
                Err(failure) => {
                    outcomes.insert(p.engagement_id.clone(), Err(failure));
                }
            }
        }

        // Their files: one lookup for every Task with a file the journal does
        // not know on it, then each missing one created.
        let unknown_files: Vec<&str> = written
            .iter()
            .filter(|(p, task_id)| {
                p.plan
                    .attach
                    .iter()
                    .any(|f| p.known.file_on(task_id, &f.entry.location).is_none())
            })
            .map(|(_, task_id)| task_id.as_str())
            .collect();
        let mut on_tasks: HashMap<(String, String), String> = HashMap::new();
        let mut looked_up: HashSet<String> = HashSet::new();
        let mut lookup_failed: HashMap<String, Failure> = HashMap::new();
        for run in runs(unknown_files, QUERY_IDS, QUERY_CHARS, |id| id.len()) {
            match self.client.files_on_tasks(&run).await {
                Ok(Some(found)) => {
                    on_tasks.extend(found);
                    looked_up.extend(run.iter().map(|id| (*id).to_owned()));
                }
                // More than one page: each file is looked up on its own.
                Ok(None) => {}
                Err(failure) => {
                    for id in run {
                        lookup_failed.insert(id.to_owned(), failure.clone());
                    }
                }
            }
        }
        // Several engagements' files at once (each engagement's in order);
        // the request budget still spaces the calls.
        type Job<'a> =
            std::pin::Pin<Box<dyn Future<Output = (String, Result<(), Failure>)> + Send + 'a>>;
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(written.len());
        for (p, task_id) in &written {
            let failed = lookup_failed.get(task_id).cloned();
            let found = looked_up.contains(task_id).then_some(&on_tasks);
            jobs.push(Box::pin(async move {
                let outcome = match failed {
                    Some(failure) => Err(failure),
                    None => self.finish(task_id, p, found).await,
                };
                (p.engagement_id.clone(), outcome)
            }));
        }
        let attached: Vec<(String, Result<(), Failure>)> = futures_util::stream::iter(jobs)
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        outcomes.extend(attached);
        outcomes
    }

    /// Sorts one collection call's answer: written Tasks, engagements the
    /// single-record path takes over, and failures.
    fn settle_run(
        &self,
        run: Vec<Prepared>,
        answer: Result<Vec<Result<String, Failure>>, Failure>,
        written: &mut Vec<(Prepared, String)>,
        single: &mut Vec<(Prepared, bool)>,
        outcomes: &mut HashMap<String, Result<(), Failure>>,
    ) {
        match answer {
            Ok(results) => {
                for (p, result) in run.into_iter().zip(results) {
                    match result {
                        Ok(task_id) => written.push((p, task_id)),
                        // Created or deleted since: an update-only upsert
                        // first (on 404 a creating one).
                        Err(failure) if takes_over(&failure) => single.push((p, true)),
                        Err(failure) => {
                            outcomes.insert(p.engagement_id.clone(), Err(failure));
                        }
                    }
                }
            }
            // Salesforce refused the whole call (not one record): each
            // engagement goes through the single-record path, which classifies
            // its own answer, so one bad call never dead-letters a batch.
            Err(failure) if failure.class == Class::Permanent => {
                single.extend(run.into_iter().map(|p| {
                    let exists = p.known.activity.is_some();
                    (p, exists)
                }));
            }
            Err(failure) => {
                for p in run {
                    outcomes.insert(p.engagement_id.clone(), Err(failure.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_to_count_and_length() {
        let items: Vec<String> = (0..5).map(|i| format!("id-{i}")).collect();
        let lens = |r: &Vec<Vec<String>>| r.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lens(&runs(items.clone(), 2, 1000, |s| s.len())), [2, 2, 1]);
        // Each item costs its length and 3 (quotes, comma): 7 here.
        assert_eq!(lens(&runs(items.clone(), 10, 14, |s| s.len())), [2, 2, 1]);
        assert_eq!(lens(&runs(items, 10, 1, |s| s.len())), [1, 1, 1, 1, 1]);
        assert!(runs(Vec::<String>::new(), 2, 10, |s| s.len()).is_empty());
    }

    #[test]
    fn a_created_or_deleted_task_goes_to_the_single_record_path() {
        let refused = |code: &str| Failure::permanent("x").with_code(code);
        assert!(takes_over(&refused("INVALID_FIELD_FOR_INSERT_UPDATE")));
        assert!(takes_over(&refused("ENTITY_IS_DELETED")));
        assert!(!takes_over(&refused("STRING_TOO_LONG")));
        assert!(!takes_over(&Failure::retry("HTTP 503")));
    }
}
