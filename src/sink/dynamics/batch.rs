//! The Web API's `$batch` body (OData 4.0 multipart/mixed, Microsoft's
//! "Execute batch operations using the Web API"): change sets of requests,
//! each run in one transaction, and the answers read back per change set.
//! Pure.

use serde_json::Value;

/// One request of a change set.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    /// The absolute URL (`{org}/api/data/v9.2/phonecalls(…)`).
    pub url: String,
    pub body: Value,
}

/// One answer inside the batch answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The body of a `$batch` request holding `operations` as one change set,
/// and its content type.
#[cfg(test)]
pub fn request(operations: &[Operation], id: &str) -> (String, String) {
    request_many(&[operations], id)
}

/// The body of a `$batch` request holding each of `change_sets` as one
/// change set (its own transaction), and its content type.
pub fn request_many(change_sets: &[&[Operation]], id: &str) -> (String, String) {
    let batch = format!("batch_{id}");
    let mut body = String::new();
    // Content-IDs are unique across the whole batch (OData 4.01).
    let mut content_id = 0;
    for (n, operations) in change_sets.iter().enumerate() {
        let changeset = if change_sets.len() == 1 {
            format!("changeset_{id}")
        } else {
            format!("changeset_{id}_{n}")
        };
        body.push_str(&format!(
            "--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        ));
        for operation in operations.iter() {
            content_id += 1;
            body.push_str(&format!(
                "--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\n{} {} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{}\r\n",
                content_id,
                operation.method,
                operation.url,
                operation.body
            ));
        }
        body.push_str(&format!("--{changeset}--\r\n"));
    }
    body.push_str(&format!("--{batch}--\r\n"));
    (body, format!("multipart/mixed; boundary={batch}"))
}

/// One top-level part of a `$batch` answer: a change set applied (its
/// answers), or one answer alone (a change set refused: its failed
/// request's answer; nothing of it was applied).
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Applied(Vec<Answer>),
    Alone(Answer),
}

/// The `boundary` parameter of a multipart content type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Headers, then the rest after the first empty line.
fn split_head(part: &str) -> (Vec<(String, String)>, &str) {
    let (head, rest) = match (part.find("\r\n\r\n"), part.find("\n\n")) {
        (Some(crlf), _) => (&part[..crlf], &part[crlf + 4..]),
        (None, Some(lf)) => (&part[..lf], &part[lf + 2..]),
        (None, None) => (part, ""),
    };
    let headers = head
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    (headers, rest)
}

fn parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for (i, chunk) in body.split(delimiter.as_str()).enumerate() {
        // The preamble, then each part; the closing delimiter's "--" ends it.
        if i == 0 {
            continue;
        }
        if chunk.starts_with("--") {
            break;
        }
        parts.push(chunk.trim_start_matches("\r\n").trim_start_matches('\n'));
    }
    parts
}

/// Every answer of a `$batch` answer, in order (change sets flattened).
#[cfg(test)]
pub fn answers(content_type: &str, body: &str) -> Result<Vec<Answer>, String> {
    Ok(answer_parts(content_type, body)?
        .into_iter()
        .flat_map(|part| match part {
            Part::Applied(answers) => answers,
            Part::Alone(answer) => vec![answer],
        })
        .collect())
}

/// The top-level parts of a `$batch` answer, in order.
pub fn answer_parts(content_type: &str, body: &str) -> Result<Vec<Part>, String> {
    let boundary =
        boundary(content_type).ok_or_else(|| format!("not a multipart answer: {content_type}"))?;
    let mut answers = Vec::new();
    for part in parts(body, &boundary) {
        let (headers, rest) = split_head(part);
        let kind = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if kind.to_ascii_lowercase().starts_with("multipart/mixed") {
            answers.push(Part::Applied(answers_of_changeset(kind, rest)?));
        } else {
            answers.push(Part::Alone(http_answer(rest)?));
        }
    }
    Ok(answers)
}

fn answers_of_changeset(content_type: &str, body: &str) -> Result<Vec<Answer>, String> {
    let boundary = boundary(content_type).ok_or("a change set without a boundary")?;
    parts(body, &boundary)
        .into_iter()
        .map(|part| http_answer(split_head(part).1))
        .collect()
}

/// `HTTP/1.1 204 No Content`, headers, an empty line, the body.
fn http_answer(text: &str) -> Result<Answer, String> {
    let text = text.trim_start();
    let (status_line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status in {:?}", status_line.trim()))?;
    let (headers, body) = split_head(rest);
    let body = body.trim();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::Null)
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_one_change_set() {
        let (body, content_type) = request(
            &[
                Operation {
                    method: "PATCH",
                    url: "https://org/api/data/v9.2/phonecalls(k='a')".into(),
                    body: json!({"statecode": 0}),
                },
                Operation {
                    method: "POST",
                    url: "https://org/api/data/v9.2/annotations".into(),
                    body: json!({"subject": "s"}),
                },
            ],
            "x1",
        );
        assert_eq!(content_type, "multipart/mixed; boundary=batch_x1");
        assert!(body.starts_with(
            "--batch_x1\r\nContent-Type: multipart/mixed; boundary=changeset_x1\r\n\r\n--changeset_x1\r\n"
        ));
        assert!(body.contains(
            "Content-ID: 2\r\n\r\nPOST https://org/api/data/v9.2/annotations HTTP/1.1\r\n"
        ));
        assert!(body.ends_with("--changeset_x1--\r\n--batch_x1--\r\n"));
    }

    #[test]
    fn writes_several_change_sets_and_reads_each_ones_answer() {
        let op = |url: &str| Operation {
            method: "PATCH",
            url: url.into(),
            body: json!({}),
        };
        let (body, _) = request_many(&[&[op("a1"), op("a2")], &[op("b1")]], "y");
        assert_eq!(body.matches("boundary=changeset_y_").count(), 2);
        assert!(body.contains("--changeset_y_0--\r\n--batch_y\r\n"));
        assert!(body.ends_with("--changeset_y_1--\r\n--batch_y--\r\n"));
        assert!(
            body.contains("Content-ID: 3\r\n\r\nPATCH b1 HTTP/1.1"),
            "unique across the batch"
        );
        let answer = "--b\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n\
--c1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--c1--\r\n\
--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n{\"error\":{\"code\":\"0x80040217\"}}\r\n--b--\r\n";
        let parts = answer_parts("multipart/mixed; boundary=b", answer).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[0], Part::Applied(a) if a.len() == 1 && a[0].status == 204));
        assert!(matches!(&parts[1], Part::Alone(a) if a.status == 404));
    }

    #[test]
    fn reads_answers_and_errors() {
        let body = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nOData-EntityId: https://org/api/data/v9.2/phonecalls(0000)\r\n\r\n\r\n\
--changesetresponse_2--\r\n--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n\
{\"error\":{\"code\":\"0x80040203\",\"message\":\"bad\"}}\r\n--batchresponse_1--\r\n";
        let answers = answers("multipart/mixed; boundary=batchresponse_1", body).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].status, 204);
        assert_eq!(
            answers[0].header("odata-entityid"),
            Some("https://org/api/data/v9.2/phonecalls(0000)")
        );
        assert_eq!(answers[1].status, 400);
        assert_eq!(answers[1].body["error"]["code"], "0x80040203");
        assert!(super::answers("application/json", "{}").is_err());
    }
}
