//! A small, honest SOQL subset: `SELECT f1, f2 FROM Obj [WHERE c [AND c …]] [ORDER BY f
//! [ASC|DESC]] [LIMIT n]` with conditions `field = literal` and `field IN (literal, …)` over
//! the fake's objects. Anything outside it is refused the way Salesforce refuses a query it
//! cannot parse (`MALFORMED_QUERY`), an unknown object (`INVALID_TYPE`) or field
//! (`INVALID_FIELD`), with the message shape Salesforce uses: the query, a caret line,
//! `ERROR at Row:1:Column:N` and the reason (SOQL and SOSL Reference; REST API "Query").
//! String comparisons ignore case, as SOQL's `=` does on text; ids compare in 18-character form.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::schema::{self, FieldDef, FieldType, ObjectKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub any_of: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub object: ObjectKind,
    pub fields: Vec<String>,
    pub conditions: Vec<Condition>,
    pub order_by: Option<(String, bool)>,
    pub limit: Option<usize>,
}

/// A refused query: the error code and the full Salesforce-shaped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(char),
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Word(chars[start..i].iter().collect()), column));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let raw: String = chars[start..i].iter().collect();
            let number = raw
                .parse()
                .map_err(|_| (column, format!("unexpected token: {raw}")))?;
            tokens.push((Token::Number(number), column));
        } else if c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err((column, "unexpected token: <EOF>".into())),
                    Some('\\') => {
                        let escaped = chars
                            .get(i + 1)
                            .copied()
                            .ok_or((column, "unexpected token: <EOF>".to_owned()))?;
                        value.push(match escaped {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push((Token::Text(value), column));
        } else if matches!(c, ',' | '(' | ')' | '=') {
            tokens.push((Token::Symbol(c), column));
            i += 1;
        } else {
            return Err((column, format!("unexpected token: '{c}'")));
        }
    }
    Ok(tokens)
}

fn error(query: &str, code: &'static str, column: usize, reason: &str) -> QueryError {
    let caret = format!("{}^", " ".repeat(column.saturating_sub(1)));
    QueryError {
        code,
        message: format!("\n{query}\n{caret}\nERROR at Row:1:Column:{column}\n{reason}"),
    }
}

fn no_such_column(field: &str, object: ObjectKind) -> String {
    format!(
        "No such column '{field}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
        object.name()
    )
}

struct Parser<'a> {
    query: &'a str,
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(token, _)| token)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.at)
            .map_or(self.query.chars().count() + 1, |(_, column)| *column)
    }

    fn unexpected(&self) -> QueryError {
        let shown = match self.peek() {
            None => "<EOF>".to_owned(),
            Some(Token::Word(w)) => w.clone(),
            Some(Token::Text(t)) => format!("'{t}'"),
            Some(Token::Number(n)) => n.to_string(),
            Some(Token::Symbol(s)) => format!("'{s}'"),
        };
        error(
            self.query,
            "MALFORMED_QUERY",
            self.column(),
            &format!("unexpected token: {shown}"),
        )
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), QueryError> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn symbol(&mut self, symbol: char) -> bool {
        if self.peek() == Some(&Token::Symbol(symbol)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Result<(String, usize), QueryError> {
        match self.tokens.get(self.at) {
            Some((Token::Word(word), column)) => {
                self.at += 1;
                Ok((word.clone(), *column))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self) -> Result<Literal, QueryError> {
        let literal = match self.peek() {
            Some(Token::Text(text)) => Literal::Text(text.clone()),
            Some(Token::Number(number)) => Literal::Number(*number),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        Ok(literal)
    }
}

const RESERVED: &[&str] = &[
    "FROM", "WHERE", "AND", "OR", "IN", "LIMIT", "ORDER", "BY", "SELECT", "NOT",
];

/// Parses `text` against the org's objects (`fields_of` gives each object's fields).
pub fn parse(
    text: &str,
    fields_of: &dyn Fn(ObjectKind) -> Vec<FieldDef>,
) -> Result<Query, QueryError> {
    let tokens = tokenize(text)
        .map_err(|(column, reason)| error(text, "MALFORMED_QUERY", column, &reason))?;
    let mut parser = Parser {
        query: text,
        tokens,
        at: 0,
    };
    parser.expect_keyword("SELECT")?;
    let mut selected = Vec::new();
    loop {
        let (name, column) = parser.identifier()?;
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
            parser.at -= 1;
            return Err(parser.unexpected());
        }
        selected.push((name, column));
        if !parser.symbol(',') {
            break;
        }
    }
    parser.expect_keyword("FROM")?;
    let (object_name, object_column) = parser.identifier()?;
    let Some(object) = ObjectKind::parse(&object_name) else {
        return Err(error(
            text,
            "INVALID_TYPE",
            object_column,
            &format!(
                "sObject type '{object_name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
            ),
        ));
    };
    let fields = fields_of(object);
    let resolve = |name: &str, column: usize| -> Result<String, QueryError> {
        schema::find(&fields, name)
            .map(|field| field.name.clone())
            .ok_or_else(|| error(text, "INVALID_FIELD", column, &no_such_column(name, object)))
    };
    let mut query = Query {
        object,
        fields: Vec::new(),
        conditions: Vec::new(),
        order_by: None,
        limit: None,
    };
    for (name, column) in selected {
        query.fields.push(resolve(&name, column)?);
    }
    if parser.keyword("WHERE") {
        loop {
            let (name, column) = parser.identifier()?;
            let field = resolve(&name, column)?;
            if schema::find(&fields, &field).is_some_and(|f| !f.filterable) {
                return Err(error(
                    text,
                    "INVALID_FIELD",
                    column,
                    &format!("field '{field}' can not be filtered in query call"),
                ));
            }
            let any_of = if parser.symbol('=') {
                vec![parser.literal()?]
            } else if parser.keyword("IN") {
                if !parser.symbol('(') {
                    return Err(parser.unexpected());
                }
                let mut values = vec![parser.literal()?];
                while parser.symbol(',') {
                    values.push(parser.literal()?);
                }
                if !parser.symbol(')') {
                    return Err(parser.unexpected());
                }
                values
            } else {
                return Err(parser.unexpected());
            };
            query.conditions.push(Condition { field, any_of });
            if !parser.keyword("AND") {
                break;
            }
        }
    }
    if parser.keyword("ORDER") {
        parser.expect_keyword("BY")?;
        let (name, column) = parser.identifier()?;
        let field = resolve(&name, column)?;
        let ascending = if parser.keyword("DESC") {
            false
        } else {
            parser.keyword("ASC");
            true
        };
        query.order_by = Some((field, ascending));
    }
    if parser.keyword("LIMIT") {
        match parser.peek() {
            Some(Token::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => {
                query.limit = Some(*n as usize);
                parser.at += 1;
            }
            _ => return Err(parser.unexpected()),
        }
    }
    if parser.peek().is_some() {
        return Err(parser.unexpected());
    }
    // SOQL and SOSL Reference, "ContentDocumentLink": a query must filter on
    // ContentDocumentId or LinkedEntityId.
    if object == ObjectKind::ContentDocumentLink
        && !query
            .conditions
            .iter()
            .any(|c| c.field == "ContentDocumentId" || c.field == "LinkedEntityId")
    {
        return Err(QueryError {
            code: "MALFORMED_QUERY",
            message: "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN operator.".to_owned(),
        });
    }
    Ok(query)
}

/// A condition's literal prepared once per query: ids in their 18-character form.
fn prepare(field: Option<&FieldDef>, literal: &Literal) -> Literal {
    match literal {
        Literal::Text(wanted)
            if field.is_some_and(|f| matches!(f.kind, FieldType::Id | FieldType::Reference)) =>
        {
            // An id literal that is not a well-formed id matches nothing.
            super::id::canonical(wanted).map_or(Literal::Bool(false), Literal::Text)
        }
        other => other.clone(),
    }
}

fn matches(is_id: bool, stored: Option<&Value>, literal: &Literal) -> bool {
    let stored = stored.unwrap_or(&Value::Null);
    match (literal, stored) {
        (Literal::Null, value) => value.is_null(),
        (Literal::Text(wanted), Value::String(have)) => {
            if is_id {
                have == wanted
            } else {
                have.eq_ignore_ascii_case(wanted)
            }
        }
        (Literal::Number(wanted), Value::Number(have)) => have.as_f64() == Some(*wanted),
        (Literal::Bool(wanted), Value::Bool(have)) => wanted == have,
        _ => false,
    }
}

/// Runs `query` over `records`; each answered record carries `attributes` and the selected
/// fields in the order asked.
pub fn run(
    query: &Query,
    fields: &[FieldDef],
    records: &[Cow<'_, Map<String, Value>>],
    version: &str,
) -> Value {
    let conditions: Vec<(&str, bool, Vec<Literal>)> = query
        .conditions
        .iter()
        .map(|condition| {
            let field = schema::find(fields, &condition.field);
            let is_id =
                field.is_some_and(|f| matches!(f.kind, FieldType::Id | FieldType::Reference));
            (
                condition.field.as_str(),
                is_id,
                condition.any_of.iter().map(|l| prepare(field, l)).collect(),
            )
        })
        .collect();
    let mut hits: Vec<&Map<String, Value>> = records
        .iter()
        .map(AsRef::as_ref)
        .filter(|record| {
            conditions.iter().all(|(name, is_id, any_of)| {
                let stored = record.get(*name);
                any_of
                    .iter()
                    .any(|literal| matches(*is_id, stored, literal))
            })
        })
        .collect();
    if let Some((field, ascending)) = &query.order_by {
        hits.sort_by(|a, b| {
            let key =
                |r: &Map<String, Value>| r.get(field).map(Value::to_string).unwrap_or_default();
            let ordering = key(a).cmp(&key(b));
            if *ascending {
                ordering
            } else {
                ordering.reverse()
            }
        });
    }
    if let Some(limit) = query.limit {
        hits.truncate(limit);
    }
    let object = query.object.name();
    let rows: Vec<Value> = hits
        .iter()
        .map(|record| {
            let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
            let url = format!("/services/data/{version}/sobjects/{object}/{id}");
            let mut row = Map::new();
            row.insert("attributes".into(), json!({"type": object, "url": url}));
            for name in &query.fields {
                let value = if name == "VersionData" {
                    json!(format!("{url}/VersionData"))
                } else {
                    record.get(name).cloned().unwrap_or(Value::Null)
                };
                row.insert(name.clone(), value);
            }
            Value::Object(row)
        })
        .collect();
    json!({"totalSize": rows.len(), "done": true, "records": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(kind: ObjectKind) -> Vec<FieldDef> {
        schema::fields(
            kind,
            Some(&super::super::org::ExternalIdField::proper("Ext__c")),
        )
    }

    fn check(text: &str, expected: Result<&str, (&str, &str)>) {
        let got = parse(text, &fields_of);
        match (got, expected) {
            (Ok(query), Ok(object)) => assert_eq!(query.object.name(), object, "{text}"),
            (Err(error), Err((code, reason))) => {
                assert_eq!(error.code, code, "{text}: {}", error.message);
                assert!(error.message.ends_with(reason), "{text}: {}", error.message);
            }
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn accepts_the_supported_subset() {
        check(
            "SELECT Id, Title FROM ContentVersion WHERE FirstPublishLocationId = '00TFk0000000001AAA' AND PathOnClient = 'a.mp3'",
            Ok("ContentVersion"),
        );
        check(
            "select id from task where ext__c in ('a', 'b') limit 2",
            Ok("Task"),
        );
        check(
            "SELECT Id FROM Contact ORDER BY LastName DESC LIMIT 5",
            Ok("Contact"),
        );
        check(
            "SELECT Id FROM Task WHERE CallDurationInSeconds = 5 AND WhoId = null",
            Ok("Task"),
        );
    }

    #[test]
    fn refuses_the_rest_as_salesforce_does() {
        check(
            "SELECT Id FRM Task",
            Err(("MALFORMED_QUERY", "unexpected token: FRM")),
        );
        check(
            "SELECT Id FROM Task WHERE Subject LIKE 'x%'",
            Err(("MALFORMED_QUERY", "unexpected token: LIKE")),
        );
        check(
            "SELECT Id FROM Task WHERE Subject = 'x' OR Subject = 'y'",
            Err(("MALFORMED_QUERY", "unexpected token: OR")),
        );
        check(
            "SELECT Id FROM Task WHERE Subject = 'x",
            Err(("MALFORMED_QUERY", "unexpected token: <EOF>")),
        );
        check(
            "SELECT Nope FROM Task",
            Err((
                "INVALID_FIELD",
                "Please reference your WSDL or the describe call for the appropriate names.",
            )),
        );
        check(
            "SELECT Id FROM Widget__c",
            Err((
                "INVALID_TYPE",
                "Please reference your WSDL or the describe call for the appropriate names.",
            )),
        );
        check(
            "SELECT Id FROM Task WHERE Description = 'x'",
            Err((
                "INVALID_FIELD",
                "field 'Description' can not be filtered in query call",
            )),
        );
    }

    #[test]
    fn error_message_points_at_the_column() {
        let error = parse("SELECT Id FRM Task", &fields_of)
            .err()
            .map(|e| e.message);
        assert_eq!(
            error.as_deref(),
            Some(
                "\nSELECT Id FRM Task\n          ^\nERROR at Row:1:Column:11\nunexpected token: FRM"
            )
        );
    }
}
