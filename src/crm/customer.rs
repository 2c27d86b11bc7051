//! Customer lookup's rules and cache (DESIGN.md §3.5 "Customer"): which of a
//! CRM's matches links the activity, and a per-sink cache of the answer by
//! E.164 number so each number is looked up once and "unlinked" is logged
//! once; [`CustomerCache::contact`], the whole lookup of a CRM that links
//! contacts only, around the CRM's own search. A search that fails is not
//! cached (the delivery fails and is retried).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;

use crate::crm::phone::{self, Region};
use crate::failure::Failure;
use crate::interaction::Interaction;

/// The consumer's number in E.164 (`region` for numbers without a country
/// code); `None`: nothing to link.
pub fn number_of(aggregate: &Interaction, region: Option<Region>) -> Option<String> {
    aggregate
        .consumer()
        .number
        .as_deref()
        .and_then(|n| phone::normalise(n, region))
}

/// The ids among a CRM search's `found` (id, its phones as stored) with a
/// phone equal to `number` in E.164: CRMs store phones as free text, and
/// their searches pre-filter.
pub fn matching<'a>(
    found: impl IntoIterator<Item = &'a (String, Vec<String>)>,
    number: &str,
    region: Option<Region>,
) -> Vec<String> {
    found
        .into_iter()
        .filter(|(_, phones)| {
            phones
                .iter()
                .any(|p| phone::normalise(p, region).as_deref() == Some(number))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Entries kept before the cache starts over (bounded memory).
const CACHE_LIMIT: usize = 10_000;

/// A CRM record a number matched, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customer {
    Contact(String),
    Lead(String),
}

impl Customer {
    pub fn id(&self) -> &str {
        match self {
            Customer::Contact(id) | Customer::Lead(id) => id,
        }
    }
}

/// Exactly one Contact → it; no Contact and exactly one Lead → it; else
/// `None` (unlinked). `contacts` and `leads` are the ids whose phone equals
/// the number in E.164.
pub fn choose(contacts: &[String], leads: &[String]) -> Option<Customer> {
    match (contacts, leads) {
        ([contact], _) => Some(Customer::Contact(contact.clone())),
        ([], [lead]) => Some(Customer::Lead(lead.clone())),
        _ => None,
    }
}

/// The answers so far, by E.164 number.
#[derive(Debug, Default)]
pub struct CustomerCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    found: HashMap<String, Option<Customer>>,
    logged: HashSet<String>,
}

impl CustomerCache {
    /// `Some(answer)` when `number` was looked up before.
    pub fn get(&self, number: &str) -> Option<Option<Customer>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.found.get(number).cloned()
    }

    /// Keeps the answer for `number`; says (once per number) why it is
    /// unlinked when it is.
    pub fn put(
        &self,
        sink: &str,
        number: &str,
        answer: Option<Customer>,
        contacts: usize,
        leads: usize,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.found.len() >= CACHE_LIMIT {
            state.found.clear();
        }
        if answer.is_none()
            && state.logged.len() < CACHE_LIMIT
            && state.logged.insert(number.to_owned())
        {
            tracing::info!(
                sink,
                contacts,
                leads,
                "no single Contact or Lead has this customer's number; activities stay unlinked"
            );
        }
        state.found.insert(number.to_owned(), answer);
    }

    /// The one contact whose phone is the consumer's number, for a CRM that
    /// links contacts only: the cached answer, else `search(number)` (the
    /// CRM's search, answering (id, phones)) matched in E.164 and cached.
    /// No number, no match or several: `None`. A failed search fails the
    /// delivery.
    pub async fn contact<F, Fut>(
        &self,
        sink: &str,
        aggregate: &Interaction,
        region: Option<Region>,
        search: F,
    ) -> Result<Option<String>, Failure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Vec<(String, Vec<String>)>, Failure>>,
    {
        let Some(number) = number_of(aggregate, region) else {
            return Ok(None);
        };
        if let Some(known) = self.get(&number) {
            return Ok(known.map(|c| c.id().to_owned()));
        }
        let found = search(number.clone()).await?;
        let contacts = matching(&found, &number, region);
        let answer = choose(&contacts, &[]);
        self.put(sink, &number, answer.clone(), contacts.len(), 0);
        Ok(answer.map(|c| c.id().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn contact_then_lead_else_nothing() {
        assert_eq!(
            choose(&ids(1, "c"), &ids(2, "l")),
            Some(Customer::Contact("c0".into()))
        );
        assert_eq!(
            choose(&ids(0, "c"), &ids(1, "l")),
            Some(Customer::Lead("l0".into()))
        );
        assert_eq!(choose(&ids(2, "c"), &ids(1, "l")), None);
        assert_eq!(choose(&ids(0, "c"), &ids(2, "l")), None);
        assert_eq!(choose(&[], &[]), None);
    }

    #[test]
    fn matches_in_e164_only() {
        let us = Region::parse("US");
        let found = vec![
            ("a".to_owned(), vec!["(415) 555-1212".to_owned()]),
            ("b".to_owned(), vec!["+1 415 555 1213".to_owned()]),
            (
                "c".to_owned(),
                vec!["x".to_owned(), "415.555.1212".to_owned()],
            ),
        ];
        assert_eq!(matching(&found, "+14155551212", us), ["a", "c"]);
        assert!(matching(&found, "+14155550000", us).is_empty());
    }

    #[test]
    fn caches_answers() {
        let cache = CustomerCache::default();
        assert_eq!(cache.get("+14155551212"), None);
        cache.put("sf", "+14155551212", None, 0, 0);
        assert_eq!(cache.get("+14155551212"), Some(None));
    }
}
