//! Minimal multipart/form-data parsing for the audio and image endpoints (whole body already in memory).

use bytes::Bytes;

/// One form field or file.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) data: Bytes,
}

impl Part {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Guards against pathological bodies made of thousands of empty parts.
const MAX_PARTS: usize = 1000;

/// The first part called `name`.
pub(crate) fn field<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
    parts.iter().find(|p| p.name == name)
}

/// The boundary parameter of a `multipart/form-data` content type, or None for any other type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = split_params(content_type).into_iter();
    let mime = params.next()?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .find_map(|p| {
            let (key, value) = p.split_once('=')?;
            key.trim().eq_ignore_ascii_case("boundary").then(|| unquote(value.trim()))
        })
        // RFC 2046 limits boundaries to 70 characters; longer ones indicate a broken client.
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// Splits a header value on ';' outside double quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

/// Parses a complete multipart body. Accepts CRLF or bare LF line endings because hand-written test
/// clients often get them wrong, and the sim should be lenient where real servers are.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0).ok_or("multipart body has no boundary delimiter")?;
    let mut parts = Vec::new();
    loop {
        let mut i = pos + delim.len();
        if body[i..].starts_with(b"--") {
            return Ok(parts);
        }
        while i < body.len() && (body[i] == b' ' || body[i] == b'\t') {
            i += 1;
        }
        i = skip_newline(body, i).ok_or("malformed multipart delimiter line")?;
        let (header_end, content_start) = header_end(body, i).ok_or("multipart part has no end of headers")?;
        let headers = String::from_utf8_lossy(&body[i..header_end]);
        let (content_end, next) =
            next_delimiter(body, &delim, content_start).ok_or("multipart body is not terminated")?;
        parts.push(make_part(&headers, body.slice(content_start..content_end))?);
        if parts.len() > MAX_PARTS {
            return Err(format!("multipart body has more than {MAX_PARTS} parts"));
        }
        pos = next;
    }
}

fn skip_newline(body: &[u8], i: usize) -> Option<usize> {
    if body[i..].starts_with(b"\r\n") {
        Some(i + 2)
    } else if body[i..].starts_with(b"\n") {
        Some(i + 1)
    } else {
        None
    }
}

/// Returns (end of header block, start of content); an immediate blank line means no headers at all.
fn header_end(body: &[u8], i: usize) -> Option<(usize, usize)> {
    if let Some(start) = skip_newline(body, i) {
        return Some((i, start));
    }
    let crlf = find(body, b"\r\n\r\n", i).map(|p| (p, p + 4));
    let lf = find(body, b"\n\n", i).map(|p| (p, p + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Finds the line break + delimiter ending a part's content: returns (content end, delimiter start).
fn next_delimiter(body: &[u8], delim: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut needle = Vec::with_capacity(delim.len() + 1);
    needle.push(b'\n');
    needle.extend_from_slice(delim);
    let at = find(body, &needle, from)?;
    let content_end = if at > from && body[at - 1] == b'\r' { at - 1 } else { at };
    Some((content_end, at + 1))
}

fn make_part(headers: &str, data: Bytes) -> Result<Part, String> {
    let name = headers
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("content-disposition"))
        .flat_map(|(_, value)| split_params(value).into_iter().skip(1))
        .find_map(|param| {
            let (k, v) = param.split_once('=')?;
            k.trim().eq_ignore_ascii_case("name").then(|| unquote(v.trim()))
        })
        .ok_or("multipart part has no name in Content-Disposition")?;
    Ok(Part { name, data })
}

/// Byte-substring search; scanning for the first byte keeps it fast enough for 64 MiB bodies.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let last_start = haystack.len() - needle.len();
    let mut i = from;
    while i <= last_start {
        let offset = haystack[i..=last_start].iter().position(|b| *b == needle[0])?;
        let at = i + offset;
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc123").as_deref(), Some("abc123"));
        assert_eq!(boundary("Multipart/Form-Data;boundary=\"a b;c\"").as_deref(), Some("a b;c"));
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }

    #[test]
    fn parses_fields_and_files() {
        let b = body(
            "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;b.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\nhello\r\nworld\r\n--XyZ--\r\n",
        );
        let parts = parse(&b, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text(), "whisper-1");
        let file = field(&parts, "file").unwrap();
        assert_eq!(file.text(), "hello\r\nworld");
    }

    #[test]
    fn accepts_bare_lf_and_empty_content() {
        let b = body("--b\nContent-Disposition: form-data; name=\"x\"\n\n\n--b\nContent-Disposition: form-data; name=y\n\nv\n--b--");
        let parts = parse(&b, "b").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].text(), "");
        assert_eq!(parts[1].name, "y");
        assert_eq!(parts[1].text(), "v");
    }

    #[test]
    fn binary_content_survives() {
        let mut raw = b"--q\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".to_vec();
        raw.extend_from_slice(&[0, 159, 146, 150, b'\r', b'-', 255]);
        raw.extend_from_slice(b"\r\n--q--\r\n");
        let parts = parse(&Bytes::from(raw), "q").unwrap();
        assert_eq!(&parts[0].data[..], &[0, 159, 146, 150, b'\r', b'-', 255]);
    }

    #[test]
    fn rejects_broken_bodies() {
        assert!(parse(&body("no delimiters here"), "b").is_err());
        assert!(parse(&body("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunterminated"), "b").is_err());
        assert!(parse(&body("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--"), "b").is_err());
        assert!(parse(&body("--bXX"), "b").is_err());
    }
}
