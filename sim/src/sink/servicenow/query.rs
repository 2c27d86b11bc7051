//! ServiceNow's encoded queries (`sysparm_query`): conditions joined by `^`
//! (and), `^OR` (or, binding tighter than and) and `^NQ` (a new query, or'd
//! with the previous), `ORDERBY`/`ORDERBYDESC` terms, a literal `^` written
//! `^^`. String comparisons ignore case, as on the instance's database. A
//! condition on a field the table does not have is dropped (the default of
//! `glide.invalid_query.returns_no_rows`), so such a query matches more, not
//! less. Pure.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: String,
    pub operator: String,
    pub value: String,
}

/// A parsed query: or'd groups of and'ed or-lists, and the ordering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub groups: Vec<Vec<Vec<Condition>>>,
    /// (field, descending).
    pub order: Vec<(String, bool)>,
}

/// Operators, longest first so that a prefix never wins.
const OPERATORS: &[&str] = &[
    "ISNOTEMPTY",
    "ISEMPTY",
    "STARTSWITH",
    "ENDSWITH",
    "NOT LIKE",
    "NOT IN",
    "LIKE",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
];

/// The terms between unescaped `^`s.
fn terms(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push('^');
                }
            } else {
                out.push(String::new());
            }
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn condition(term: &str) -> Option<Condition> {
    let end = term
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(term.len());
    // A field name is lower case; an operator such as IN starts upper case.
    let end = term[..end]
        .find(|c: char| c.is_ascii_uppercase())
        .unwrap_or(end);
    let (field, rest) = term.split_at(end);
    let operator = OPERATORS.iter().find(|op| rest.starts_with(**op))?;
    Some(Condition {
        field: field.to_owned(),
        operator: (*operator).to_owned(),
        value: rest[operator.len()..].to_owned(),
    })
}

/// Parses `text`; `None` for a term that is no condition.
pub fn parse(text: &str) -> Option<Query> {
    let mut query = Query {
        groups: vec![Vec::new()],
        order: Vec::new(),
    };
    for term in terms(text) {
        if let Some(field) = term.strip_prefix("ORDERBYDESC") {
            query.order.push((field.to_owned(), true));
        } else if let Some(field) = term.strip_prefix("ORDERBY") {
            query.order.push((field.to_owned(), false));
        } else if let Some(rest) = term.strip_prefix("NQ") {
            query.groups.push(vec![vec![condition(rest)?]]);
        } else if let Some(rest) = term.strip_prefix("OR") {
            let or = condition(rest)?;
            match query.groups.last_mut().and_then(|g| g.last_mut()) {
                Some(list) => list.push(or),
                None => query.groups.last_mut()?.push(vec![or]),
            }
        } else {
            let and = condition(&term)?;
            query.groups.last_mut()?.push(vec![and]);
        }
    }
    Some(query)
}

fn text_of(record: &Map<String, Value>, field: &str) -> String {
    match record.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn holds(record: &Map<String, Value>, c: &Condition) -> bool {
    let have = text_of(record, &c.field).to_lowercase();
    let want = c.value.to_lowercase();
    let list = || want.split(',').map(str::trim).any(|w| w == have);
    match c.operator.as_str() {
        "=" => have == want,
        "!=" => have != want,
        "STARTSWITH" => have.starts_with(&want),
        "ENDSWITH" => have.ends_with(&want),
        "LIKE" => have.contains(&want),
        "NOT LIKE" => !have.contains(&want),
        "IN" => list(),
        "NOT IN" => !list(),
        "ISEMPTY" => have.is_empty(),
        "ISNOTEMPTY" => !have.is_empty(),
        ">" => have > want,
        ">=" => have >= want,
        "<" => have < want,
        "<=" => have <= want,
        _ => false,
    }
}

impl Query {
    /// Whether `record` matches; conditions on fields not in `fields` are
    /// dropped.
    pub fn matches(&self, record: &Map<String, Value>, fields: &BTreeSet<String>) -> bool {
        let known = |c: &&Condition| fields.contains(&c.field);
        self.groups.iter().any(|group| {
            group.iter().all(|list| {
                let kept: Vec<&Condition> = list.iter().filter(known).collect();
                kept.is_empty() || kept.iter().any(|c| holds(record, c))
            })
        })
    }

    /// Sorts `records` by the ordering (stable: creation order breaks ties).
    pub fn sort(&self, records: &mut [Map<String, Value>]) {
        for (field, descending) in self.order.iter().rev() {
            records.sort_by(|a, b| {
                let ordering = text_of(a, field).cmp(&text_of(b, field));
                if *descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn fields() -> BTreeSet<String> {
        ["a", "b", "phone"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn and_or_new_query_and_escapes() {
        let r = record(json!({"a": "x^y", "b": "2", "phone": "(415) 555-1212"}));
        let check = |q: &str, expected: bool| {
            assert_eq!(parse(q).unwrap().matches(&r, &fields()), expected, "{q}");
        };
        check("a=x^^y", true);
        check("a=X^^Y", true);
        check("a=x^b=3", false);
        check("a=z^ORb=2", true);
        check("a=z^NQb=2", true);
        check("phoneENDSWITH1212^ORb=9", true);
        check("phoneLIKE555^b!=2", false);
        check("bIN1,2,3", true);
        check("u_missing=nothing", true);
        check("u_missing=nothing^a=z", false);
        check("aISNOTEMPTY^ORDERBYsys_created_on", true);
    }

    #[test]
    fn orders() {
        let q = parse("ORDERBYDESCb").unwrap();
        let mut rows = vec![record(json!({"b": "1"})), record(json!({"b": "2"}))];
        q.sort(&mut rows);
        assert_eq!(rows[0]["b"], "2");
    }
}
