//! `$batch` bodies (OData 4.0 multipart/mixed, as Microsoft's "Execute batch
//! operations using the Web API" shows them), pure: a request body read into
//! its parts — single requests and change sets — and an answer body written.

/// One request inside a batch.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// As written: absolute, or relative to the service root, or `$n`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub content_id: Option<String>,
    pub body: Vec<u8>,
}

/// A batch's top-level parts.
#[derive(Debug, Clone)]
pub enum Part {
    Single(Request),
    ChangeSet(Vec<Request>),
}

/// One answer to write back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub content_id: Option<String>,
}

pub fn boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/mixed") {
        return None;
    }
    content_type.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn split_head(part: &str) -> (Vec<(String, String)>, &str) {
    let (head, rest) = match (part.find("\r\n\r\n"), part.find("\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => (&part[..lf], &part[lf + 2..]),
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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parts<'a>(body: &'a str, boundary: &str) -> Result<Vec<&'a str>, String> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut closed = false;
    for (i, chunk) in body.split(delimiter.as_str()).enumerate() {
        if i == 0 {
            continue;
        }
        if chunk.starts_with("--") {
            closed = true;
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .ok_or("a boundary not followed by a line break")?;
        // The line break before the next delimiter belongs to it.
        let chunk = chunk
            .strip_suffix("\r\n")
            .or_else(|| chunk.strip_suffix('\n'))
            .unwrap_or(chunk);
        parts.push(chunk);
    }
    if !closed {
        return Err(format!("no closing delimiter --{boundary}--"));
    }
    Ok(parts)
}

fn request(part: &str) -> Result<Request, String> {
    let (headers, rest) = split_head(part);
    let kind = header(&headers, "content-type").unwrap_or("");
    if !kind.eq_ignore_ascii_case("application/http") {
        return Err(format!("a part of type {kind:?}, not application/http"));
    }
    let content_id = header(&headers, "content-id").map(str::to_owned);
    let (line, rest) = rest
        .split_once('\n')
        .ok_or("a part without a request line")?;
    let mut words = line.split_whitespace();
    let (Some(method), Some(url), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Err(format!("a bad request line {:?}", line.trim()));
    };
    if !version.starts_with("HTTP/") {
        return Err(format!("a bad request line {:?}", line.trim()));
    }
    let (headers, body) = if rest.starts_with("\r\n") || rest.starts_with('\n') {
        (Vec::new(), rest.trim_start_matches(['\r', '\n']))
    } else {
        split_head(rest)
    };
    Ok(Request {
        method: method.to_owned(),
        url: url.to_owned(),
        headers,
        content_id,
        body: body.trim_end_matches(['\r', '\n']).as_bytes().to_vec(),
    })
}

/// The parts of a `$batch` request body.
pub fn read(content_type: &str, body: &str) -> Result<Vec<Part>, String> {
    let boundary =
        boundary(content_type).ok_or("the content type is not multipart/mixed with a boundary")?;
    let mut out = Vec::new();
    for part in parts(body, &boundary)? {
        let (headers, rest) = split_head(part);
        let kind = header(&headers, "content-type").unwrap_or("");
        if let Some(inner) = boundary_of_changeset(kind) {
            let requests = parts(rest, &inner)?
                .into_iter()
                .map(request)
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Part::ChangeSet(requests));
        } else {
            out.push(Part::Single(request(part)?));
        }
    }
    Ok(out)
}

fn boundary_of_changeset(kind: &str) -> Option<String> {
    boundary(kind)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_answer(out: &mut String, answer: &Answer) {
    out.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = &answer.content_id {
        out.push_str(&format!("Content-ID: {id}\r\n"));
    }
    out.push_str(&format!(
        "\r\nHTTP/1.1 {} {}\r\n",
        answer.status,
        reason(answer.status)
    ));
    for (name, value) in &answer.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    if let Some(body) = &answer.body {
        out.push_str(body);
    }
    out.push_str("\r\n");
}

/// What a part answered: each request's answer, or a change set's.
pub enum Answered {
    Single(Answer),
    ChangeSet(Vec<Answer>),
}

/// The answer body and its content type.
pub fn write(answered: &[Answered], id: &str) -> (String, String) {
    let batch = format!("batchresponse_{id}");
    let mut out = String::new();
    for (i, part) in answered.iter().enumerate() {
        out.push_str(&format!("--{batch}\r\n"));
        match part {
            Answered::Single(answer) => write_answer(&mut out, answer),
            Answered::ChangeSet(answers) => {
                let changeset = format!("changesetresponse_{id}_{i}");
                out.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
                ));
                for answer in answers {
                    out.push_str(&format!("--{changeset}\r\n"));
                    write_answer(&mut out, answer);
                }
                out.push_str(&format!("--{changeset}--\r\n"));
            }
        }
    }
    out.push_str(&format!("--{batch}--\r\n"));
    (out, format!("multipart/mixed; boundary={batch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_change_set_and_a_single_request() {
        let body = "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_2\r\n\r\n\
--changeset_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
POST http://x/api/data/v9.2/annotations HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"subject\":\"a\"}\r\n\
--changeset_2--\r\n\r\n--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
GET WhoAmI HTTP/1.1\r\n\r\n\r\n--batch_1--\r\n";
        let parts = read("multipart/mixed; boundary=batch_1", body).unwrap();
        assert_eq!(parts.len(), 2);
        let Part::ChangeSet(requests) = &parts[0] else {
            panic!()
        };
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].content_id.as_deref(), Some("1"));
        assert_eq!(requests[0].body, b"{\"subject\":\"a\"}");
        let Part::Single(get) = &parts[1] else {
            panic!()
        };
        assert_eq!((get.method.as_str(), get.url.as_str()), ("GET", "WhoAmI"));
        assert!(get.body.is_empty());
        assert!(read("application/json", body).is_err());
        assert!(read("multipart/mixed; boundary=batch_1", "--batch_1\r\n").is_err());
    }

    #[test]
    fn writes_answers() {
        let (body, kind) = write(
            &[Answered::ChangeSet(vec![Answer {
                status: 204,
                headers: vec![("OData-EntityId".into(), "http://x/e(1)".into())],
                body: None,
                content_id: Some("1".into()),
            }])],
            "z",
        );
        assert_eq!(kind, "multipart/mixed; boundary=batchresponse_z");
        assert!(body.contains("HTTP/1.1 204 No Content\r\nOData-EntityId: http://x/e(1)\r\n"));
        assert!(body.ends_with("--changesetresponse_z_0--\r\n--batchresponse_z--\r\n"));
    }
}
