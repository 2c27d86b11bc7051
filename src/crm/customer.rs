//! Customer lookup's rules and cache (DESIGN.md §3.5 "Customer"): which of a
//! CRM's matches links the activity, and a per-sink cache of the answer by
//! E.164 number so each number is looked up once and "unlinked" is logged
//! once. The search itself is each CRM's; a search that fails is not cached
//! (the delivery fails and is retried).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

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
    fn caches_answers() {
        let cache = CustomerCache::default();
        assert_eq!(cache.get("+14155551212"), None);
        cache.put("sf", "+14155551212", None, 0, 0);
        assert_eq!(cache.get("+14155551212"), Some(None));
    }
}
