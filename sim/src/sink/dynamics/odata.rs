//! The OData pieces of the Web API the fake reads (pure): a resource path's
//! entity set and key (`phonecalls(<guid>)`, `phonecalls(col='v')` with
//! quotes doubled), query options, and a `$filter` subset — `eq`/`ne` on a
//! string, GUID, number, boolean or `null`; `contains`, `startswith`,
//! `endswith`; `and`, `or`, `not`-free parentheses. Anything else is the
//! Web API's "Error in query syntax".

use std::collections::HashMap;

use serde_json::Value;

/// How a path names one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id(String),
    Alternate(Vec<(String, String)>),
}

/// `set`, `set(key)`, `set(key)/rest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub set: String,
    pub key: Option<Key>,
    pub rest: Option<String>,
}

pub fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Percent-decoding of a path (no `+` rule).
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path below `/api/data/v9.2/` (already percent-decoded); `None` when it
/// is not OData syntax.
pub fn resource(path: &str) -> Option<Resource> {
    let Some(open) = path.find('(') else {
        if path.is_empty() || path.contains('/') {
            return None;
        }
        return Some(Resource {
            set: path.to_owned(),
            key: None,
            rest: None,
        });
    };
    let set = &path[..open];
    // The closing parenthesis: the first one outside a quoted literal.
    let mut quoted = false;
    let mut close = None;
    for (i, c) in path[open + 1..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ')' if !quoted => {
                close = Some(open + 1 + i);
                break;
            }
            _ => {}
        }
    }
    let close = close?;
    let inside = &path[open + 1..close];
    let rest = path[close + 1..].strip_prefix('/').map(str::to_owned);
    if !path[close + 1..].is_empty() && rest.is_none() {
        return None;
    }
    let key = if is_guid(inside) {
        Key::Id(inside.to_ascii_lowercase())
    } else {
        let mut pairs = Vec::new();
        for part in split_top(inside, ',') {
            let (name, value) = part.split_once('=')?;
            let value = value.trim();
            let value = if let Some(q) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))
            {
                if q.replace("''", "").contains('\'') {
                    return None;
                }
                q.replace("''", "'")
            } else {
                value.to_owned()
            };
            pairs.push((name.trim().to_owned(), value));
        }
        Key::Alternate(pairs)
    };
    Some(Resource {
        set: set.to_owned(),
        key: Some(key),
        rest,
    })
}

/// Splits at `sep` outside quotes.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\'' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Query options by name (`$select`, `$filter`, `$top`).
pub fn options(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Compare {
        property: String,
        equal: bool,
        value: Value,
    },
    Function {
        name: String,
        property: String,
        text: String,
    },
}

/// Why a filter was refused: its syntax, or a property the type lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    Syntax,
    UnknownProperty(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(FilterError::Syntax),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            text.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            text.push(*c);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Text(text));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '-' | '.'))
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ => return Err(FilterError::Syntax),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    known: &'a dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w == word)
    }

    fn property(&self, name: String) -> Result<String, FilterError> {
        if (self.known)(&name) {
            Ok(name)
        } else {
            Err(FilterError::UnknownProperty(name))
        }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.atom()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Filter, FilterError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(FilterError::Syntax),
                }
            }
            Some(Token::Word(word))
                if matches!(word.as_str(), "contains" | "startswith" | "endswith") =>
            {
                let (Some(Token::Open), Some(Token::Word(property)), Some(Token::Comma)) =
                    (self.next(), self.next(), self.next())
                else {
                    return Err(FilterError::Syntax);
                };
                let (Some(Token::Text(text)), Some(Token::Close)) = (self.next(), self.next())
                else {
                    return Err(FilterError::Syntax);
                };
                Ok(Filter::Function {
                    name: word,
                    property: self.property(property)?,
                    text,
                })
            }
            Some(Token::Word(property)) => {
                let equal = match self.next() {
                    Some(Token::Word(op)) if op == "eq" => true,
                    Some(Token::Word(op)) if op == "ne" => false,
                    _ => return Err(FilterError::Syntax),
                };
                let value = match self.next() {
                    Some(Token::Text(text)) => Value::String(text),
                    Some(Token::Word(word)) if word == "null" => Value::Null,
                    Some(Token::Word(word)) if word == "true" => Value::Bool(true),
                    Some(Token::Word(word)) if word == "false" => Value::Bool(false),
                    Some(Token::Word(word)) if is_guid(&word) => {
                        Value::String(word.to_ascii_lowercase())
                    }
                    Some(Token::Word(word)) => match word.parse::<i64>() {
                        Ok(n) => Value::from(n),
                        Err(_) => return Err(FilterError::Syntax),
                    },
                    _ => return Err(FilterError::Syntax),
                };
                Ok(Filter::Compare {
                    property: self.property(property)?,
                    equal,
                    value,
                })
            }
            _ => Err(FilterError::Syntax),
        }
    }
}

/// Parses `text`; `known` says which properties the entity type has.
pub fn filter(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Filter, FilterError> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        known,
    };
    let filter = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(FilterError::Syntax);
    }
    Ok(filter)
}

impl Filter {
    /// Whether `record` passes. Text compares ignore case, as Dataverse's
    /// default collation does.
    pub fn matches(&self, record: &serde_json::Map<String, Value>) -> bool {
        match self {
            Filter::Or(a, b) => a.matches(record) || b.matches(record),
            Filter::And(a, b) => a.matches(record) && b.matches(record),
            Filter::Compare {
                property,
                equal,
                value,
            } => {
                let have = record.get(property).unwrap_or(&Value::Null);
                let same = match (have, value) {
                    (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                    (a, b) => a == b,
                };
                same == *equal
            }
            Filter::Function {
                name,
                property,
                text,
            } => {
                let Some(have) = record.get(property).and_then(Value::as_str) else {
                    return false;
                };
                let (have, text) = (have.to_lowercase(), text.to_lowercase());
                match name.as_str() {
                    "contains" => have.contains(&text),
                    "startswith" => have.starts_with(&text),
                    _ => have.ends_with(&text),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            resource("phonecalls(zcc_engagementid='it''s (1)')"),
            Some(Resource {
                set: "phonecalls".into(),
                key: Some(Key::Alternate(vec![(
                    "zcc_engagementid".into(),
                    "it's (1)".into()
                )])),
                rest: None,
            })
        );
        assert_eq!(
            resource("EntityDefinitions(LogicalName='phonecall')/Keys")
                .unwrap()
                .rest
                .as_deref(),
            Some("Keys")
        );
        let id = "0a0b0c0d-0000-4000-8000-00000000000A";
        assert_eq!(
            resource(&format!("annotations({id})")).unwrap().key,
            Some(Key::Id(id.to_ascii_lowercase()))
        );
        assert_eq!(resource("phonecalls(k='a'b')"), None);
        assert_eq!(resource("phonecalls(k='a')x"), None);
    }

    #[test]
    fn filters() {
        let known = |p: &str| ["telephone1", "mobilephone", "statecode"].contains(&p);
        let f = filter(
            "contains(telephone1,'1212') or contains(mobilephone,'1212') and statecode eq 0",
            &known,
        )
        .unwrap();
        let record = |t: &str, s: i64| json!({"telephone1": t, "statecode": s});
        assert!(f.matches(record("(415) 555-1212", 1).as_object().unwrap()));
        assert!(!f.matches(record("(415) 555-1213", 0).as_object().unwrap()));
        assert_eq!(
            filter("nope eq 'x'", &known),
            Err(FilterError::UnknownProperty("nope".into()))
        );
        for bad in [
            "telephone1 like 'x'",
            "contains(telephone1,'x'",
            "statecode eq",
            "(statecode eq 0",
        ] {
            assert_eq!(filter(bad, &known), Err(FilterError::Syntax), "{bad}");
        }
    }
}
