//! The interaction aggregate (DESIGN.md §3.5 "Its content is a fold, not a
//! replay"): per `engagement_id`, what every record of the engagement says
//! about it — direction, channel, queue, flow, consumer, agents, start and
//! end, every note's latest text, the dispositions, the stored files.
//!
//! Pure. [`Interaction::of`] turns one record (its [`View`], `event_ts`,
//! revision and stored files) into an aggregate of one; [`Interaction::merge`]
//! is a join: commutative, associative and idempotent, so folding the same
//! records in any order, duplicates included, gives the same aggregate. Each
//! field is a small lattice: a register that keeps the value with the
//! greatest (time, value), a minimum, a maximum, or a map of those.
//!
//! The journal stores one per engagement, updated in the commit that stores a
//! record; CRM sinks render it. This module reads only the record's view and
//! its `media` entries, never Zoom's JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{Consumer, MediaEntry, Party, View};

#[cfg(test)]
mod tests;

/// A value and the time it was said; merging keeps the latest, and of two
/// said at the same time the greater value, so the choice never depends on
/// the order records arrive in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Latest<T> {
    at: i64,
    value: T,
}

fn latest<T: Ord + Clone>(mine: &mut Option<Latest<T>>, theirs: &Option<Latest<T>>) {
    if theirs > mine {
        mine.clone_from(theirs);
    }
}

fn earliest(mine: &mut Option<i64>, theirs: Option<i64>) {
    *mine = match (*mine, theirs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// The aggregate of one engagement. Build it with [`Interaction::of`] and
/// [`Interaction::merge`] (or [`fold`]); read it with the accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    engagement_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    direction: Option<Latest<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<Latest<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel_source: Option<Latest<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<Latest<Party>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<Latest<Party>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer_number: Option<Latest<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer_name: Option<Latest<String>>,
    /// By agent id (`id:…`), or by name for an agent without one (`name:…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    agents: BTreeMap<String, Agent>,
    /// Earliest start and latest end seen (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    notes: BTreeMap<String, NoteState>,
    /// The current disposition: the greatest (time, event_ts, id, name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disposition: Option<DispositionVersion>,
    /// Every distinct disposition name, with the earliest time it was given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    disposition_names: BTreeMap<String, i64>,
    /// The stored files, by location.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, MediaEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Agent {
    /// When the agent first appeared (event_ts), for the listing order.
    first_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Latest<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NoteState {
    /// The earliest version's time: notes are listed by it.
    first_at: i64,
    current: NoteVersion,
}

/// Field order is the precedence: time, then revision, then the text (only
/// so that the choice is total).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct NoteVersion {
    at: i64,
    revision: u32,
    text: String,
}

/// Field order is the precedence of DESIGN.md §3.5's "current disposition":
/// `last_modified_time` (else `event_ts`), then `event_ts`, then the id (the
/// name only makes the choice total).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct DispositionVersion {
    at: i64,
    event_ts: i64,
    id: String,
    name: Option<String>,
}

/// A note as a sink renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    pub note_id: &'a str,
    /// The text of the latest version.
    pub text: &'a str,
    /// The latest version's `last_modified_time` (else its `event_ts`), ms.
    pub modified_ms: i64,
    pub revision: u32,
}

/// An RFC 3339 instant as ms since the epoch (`…T10:00:00Z` and
/// `…T10:00:00.000Z` are the same instant).
pub fn instant_ms(text: &str) -> Option<i64> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

impl Interaction {
    /// What one record says about its engagement: `None` when it has no
    /// `engagement_id`. `files` are the record's stored `media` entries
    /// (empty until the media stage has handed it on).
    pub fn of(
        view: &View,
        event_ts: i64,
        revision: u32,
        files: &[MediaEntry],
    ) -> Option<Interaction> {
        let engagement_id = view.engagement_id.clone()?;
        let said = |value: &Option<String>| {
            value.clone().map(|value| Latest {
                at: event_ts,
                value,
            })
        };
        let consumer = view.consumer.clone().unwrap_or_default();
        let mut agents = BTreeMap::new();
        for agent in &view.agents {
            let key = match (&agent.id, &agent.name) {
                (Some(id), _) => format!("id:{id}"),
                (None, Some(name)) => format!("name:{name}"),
                (None, None) => continue,
            };
            let entry = Agent {
                first_at: event_ts,
                id: agent.id.clone(),
                name: said(&agent.name),
            };
            match agents.entry(key) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    slot.get_mut().merge(&entry);
                }
            }
        }
        let modified = view.last_modified.as_deref().and_then(instant_ms);
        let mut notes = BTreeMap::new();
        if let Some(note_id) = &view.note_id {
            let at = modified.unwrap_or(event_ts);
            notes.insert(
                note_id.clone(),
                NoteState {
                    first_at: at,
                    current: NoteVersion {
                        at,
                        revision,
                        text: view.note.clone().unwrap_or_default(),
                    },
                },
            );
        }
        let mut disposition = None;
        let mut disposition_names = BTreeMap::new();
        if let Some(given) = &view.disposition {
            let at = modified.unwrap_or(event_ts);
            if let Some(name) = &given.name {
                disposition_names.insert(name.clone(), at);
            }
            disposition = Some(DispositionVersion {
                at,
                event_ts,
                id: given.id.clone().unwrap_or_default(),
                name: given.name.clone(),
            });
        }
        Some(Interaction {
            engagement_id,
            direction: said(&view.direction),
            channel: said(&view.channel),
            channel_source: said(&view.channel_source),
            queue: view.queue.clone().map(|value| Latest {
                at: event_ts,
                value,
            }),
            flow: view.flow.clone().map(|value| Latest {
                at: event_ts,
                value,
            }),
            consumer_number: said(&consumer.number),
            consumer_name: said(&consumer.name),
            agents,
            start_ms: view.start_time.as_deref().and_then(instant_ms),
            end_ms: view.end_time.as_deref().and_then(instant_ms),
            notes,
            disposition,
            disposition_names,
            files: files
                .iter()
                .map(|file| (file.location.clone(), file.clone()))
                .collect(),
        })
    }

    /// Joins what `other` knows into `self`. Meant for aggregates of the same
    /// engagement; of two different ids the smaller stays (so the join stays
    /// order-independent even then).
    pub fn merge(&mut self, other: &Interaction) {
        if self.engagement_id.is_empty() || other.engagement_id < self.engagement_id {
            self.engagement_id.clone_from(&other.engagement_id);
        }
        latest(&mut self.direction, &other.direction);
        latest(&mut self.channel, &other.channel);
        latest(&mut self.channel_source, &other.channel_source);
        latest(&mut self.queue, &other.queue);
        latest(&mut self.flow, &other.flow);
        latest(&mut self.consumer_number, &other.consumer_number);
        latest(&mut self.consumer_name, &other.consumer_name);
        for (key, agent) in &other.agents {
            match self.agents.get_mut(key) {
                Some(mine) => mine.merge(agent),
                None => {
                    self.agents.insert(key.clone(), agent.clone());
                }
            }
        }
        earliest(&mut self.start_ms, other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        for (note_id, note) in &other.notes {
            match self.notes.get_mut(note_id) {
                Some(mine) => {
                    mine.first_at = mine.first_at.min(note.first_at);
                    if note.current > mine.current {
                        mine.current.clone_from(&note.current);
                    }
                }
                None => {
                    self.notes.insert(note_id.clone(), note.clone());
                }
            }
        }
        if other.disposition > self.disposition {
            self.disposition.clone_from(&other.disposition);
        }
        for (name, at) in &other.disposition_names {
            let mine = self.disposition_names.entry(name.clone()).or_insert(*at);
            *mine = (*mine).min(*at);
        }
        for (location, file) in &other.files {
            match self.files.get_mut(location) {
                // The same object stored twice (the media stage re-ran):
                // the greater entry, whatever the order.
                Some(mine) if file > mine => mine.clone_from(file),
                Some(_) => {}
                None => {
                    self.files.insert(location.clone(), file.clone());
                }
            }
        }
    }

    pub fn engagement_id(&self) -> &str {
        &self.engagement_id
    }

    /// `inbound` or `outbound`.
    pub fn direction(&self) -> Option<&str> {
        self.direction.as_ref().map(|l| l.value.as_str())
    }

    /// `voice`, `video`, `messaging`, `email`.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_ref().map(|l| l.value.as_str())
    }

    pub fn channel_source(&self) -> Option<&str> {
        self.channel_source.as_ref().map(|l| l.value.as_str())
    }

    /// The latest queue named by the engagement's records.
    pub fn queue(&self) -> Option<&Party> {
        self.queue.as_ref().map(|l| &l.value)
    }

    pub fn flow(&self) -> Option<&Party> {
        self.flow.as_ref().map(|l| &l.value)
    }

    /// The customer: the latest number and name given.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            number: self.consumer_number.as_ref().map(|l| l.value.clone()),
            name: self.consumer_name.as_ref().map(|l| l.value.clone()),
        }
    }

    /// Every agent, in the order they first appeared (then by id or name).
    pub fn agents(&self) -> Vec<Party> {
        let mut agents: Vec<(&i64, &String, &Agent)> = self
            .agents
            .iter()
            .map(|(key, agent)| (&agent.first_at, key, agent))
            .collect();
        agents.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        agents
            .into_iter()
            .map(|(_, _, agent)| Party {
                id: agent.id.clone(),
                name: agent.name.as_ref().map(|l| l.value.clone()),
            })
            .collect()
    }

    /// Earliest start seen, ms since the epoch.
    pub fn start_ms(&self) -> Option<i64> {
        self.start_ms
    }

    /// Latest end seen, ms since the epoch.
    pub fn end_ms(&self) -> Option<i64> {
        self.end_ms
    }

    /// Whole seconds from start to end, when both are known (never negative).
    pub fn duration_seconds(&self) -> Option<u64> {
        let (start, end) = (self.start_ms?, self.end_ms?);
        Some((end.saturating_sub(start).max(0) / 1000) as u64)
    }

    /// Every note, as its latest version, oldest first (by the time of its
    /// first version, then `note_id`).
    pub fn notes(&self) -> Vec<Note<'_>> {
        let mut notes: Vec<(i64, &String, &NoteState)> = self
            .notes
            .iter()
            .map(|(id, note)| (note.first_at, id, note))
            .collect();
        notes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        notes
            .into_iter()
            .map(|(_, note_id, note)| Note {
                note_id,
                text: &note.current.text,
                modified_ms: note.current.at,
                revision: note.current.revision,
            })
            .collect()
    }

    /// The current disposition (DESIGN.md §3.5 "Precise rules").
    pub fn disposition(&self) -> Option<Party> {
        self.disposition.as_ref().map(|d| Party {
            id: (!d.id.is_empty()).then(|| d.id.clone()),
            name: d.name.clone(),
        })
    }

    /// Every distinct disposition name, in the order first given (then by
    /// name).
    pub fn disposition_names(&self) -> Vec<&str> {
        let mut names: Vec<(i64, &str)> = self
            .disposition_names
            .iter()
            .map(|(name, at)| (*at, name.as_str()))
            .collect();
        names.sort();
        names.into_iter().map(|(_, name)| name).collect()
    }

    /// The stored files, by location.
    pub fn files(&self) -> impl Iterator<Item = &MediaEntry> {
        self.files.values()
    }

    /// The earliest moment the aggregate knows of the engagement (its start,
    /// else the first agent, note or disposition; ms since the epoch): a
    /// time that only moves earlier as records merge, for a CRM field that
    /// must always be set (HubSpot's `hs_timestamp`).
    pub fn earliest_ms(&self) -> Option<i64> {
        let mut earliest_at = None;
        earliest(&mut earliest_at, self.start_ms);
        earliest(&mut earliest_at, self.end_ms);
        for agent in self.agents.values() {
            earliest(&mut earliest_at, Some(agent.first_at));
        }
        for note in self.notes.values() {
            earliest(&mut earliest_at, Some(note.first_at));
        }
        for at in self.disposition_names.values() {
            earliest(&mut earliest_at, Some(*at));
        }
        earliest_at
    }

    /// The stored form (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the stored form; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Interaction> {
        serde_json::from_slice(bytes).ok()
    }
}

impl Agent {
    fn merge(&mut self, other: &Agent) {
        self.first_at = self.first_at.min(other.first_at);
        if other.id > self.id {
            self.id.clone_from(&other.id);
        }
        latest(&mut self.name, &other.name);
    }
}

/// One record, as the fold takes it.
#[derive(Debug, Clone, Copy)]
pub struct Fact<'a> {
    pub view: &'a View,
    pub event_ts: i64,
    pub revision: u32,
    pub files: &'a [MediaEntry],
}

/// The aggregates of these records, by engagement id (records without one
/// are left out). Any order of the same records gives the same map.
pub fn fold<'a>(records: impl IntoIterator<Item = Fact<'a>>) -> BTreeMap<String, Interaction> {
    let mut out: BTreeMap<String, Interaction> = BTreeMap::new();
    for fact in records {
        let Some(one) = Interaction::of(fact.view, fact.event_ts, fact.revision, fact.files) else {
            continue;
        };
        match out.get_mut(one.engagement_id()) {
            Some(known) => known.merge(&one),
            None => {
                out.insert(one.engagement_id.clone(), one);
            }
        }
    }
    out
}
