//! multipart/form-data without copying the file: find a field, replace a field.

use bytes::Bytes;

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// One part: where its headers and content lie in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    /// Byte range of the whole part, from the start of its headers to the end of its content.
    pub start: usize,
    pub content: std::ops::Range<usize>,
}

/// The parts of a body, or an error naming what is malformed.
pub fn parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut pos = find(body, delim, 0).ok_or("multipart body has no boundary")?;
    let mut out = Vec::new();
    loop {
        let after = pos + delim.len();
        if body[after..].starts_with(b"--") {
            return Ok(out);
        }
        let start = skip_crlf(body, after).ok_or("multipart boundary is not followed by a line break")?;
        let header_end = find(body, b"\r\n\r\n", start).ok_or("multipart part headers do not end")?;
        let headers = String::from_utf8_lossy(&body[start..header_end]);
        let content_start = header_end + 4;
        let next = find(body, delim, content_start).ok_or("multipart body does not end with its closing boundary")?;
        let content_end = next
            .checked_sub(2)
            .filter(|e| body.get(*e..next) == Some(b"\r\n"))
            .ok_or("multipart part does not end with a line break")?;
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or("multipart part has no Content-Disposition")?;
        let name = param(disposition, "name").ok_or("multipart part has no name")?;
        out.push(Part {
            name,
            filename: param(disposition, "filename"),
            start,
            content: content_start..content_end.max(content_start),
        });
        pos = next;
    }
}

/// The value of `key="..."` in a Content-Disposition line.
fn param(line: &str, key: &str) -> Option<String> {
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn skip_crlf(body: &[u8], at: usize) -> Option<usize> {
    body.get(at..at + 2).filter(|s| *s == b"\r\n").map(|_| at + 2)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// The content of a text field.
pub fn text_field(body: &[u8], parts: &[Part], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|p| p.name == name && p.filename.is_none())
        .map(|p| String::from_utf8_lossy(&body[p.content.clone()]).into_owned())
}

/// The body with field `name` set to `value`, as slices of the original plus the new value,
/// so a large file part is never copied. A missing field is added before the first part.
pub fn replace_field(body: &Bytes, boundary: &str, parts: &[Part], name: &str, value: &str) -> Vec<Bytes> {
    match parts.iter().find(|p| p.name == name && p.filename.is_none()) {
        Some(p) => {
            vec![body.slice(..p.content.start), Bytes::copy_from_slice(value.as_bytes()), body.slice(p.content.end..)]
        }
        None => {
            let at = parts.first().map(|p| p.start).unwrap_or(0);
            let field = format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--{boundary}\r\n");
            vec![body.slice(..at), Bytes::from(field), body.slice(at..)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bytes {
        Bytes::from_static(b"--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\x00\x01binary\r\n--XYZ--\r\n")
    }

    #[test]
    fn finds_parts_and_fields() {
        assert_eq!(boundary("multipart/form-data; boundary=XYZ").as_deref(), Some("XYZ"));
        assert_eq!(boundary("multipart/form-data; boundary=\"XYZ\"").as_deref(), Some("XYZ"));
        assert_eq!(boundary("application/json"), None);
        let body = sample();
        let parts = parts(&body, "XYZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(&body[parts[1].content.clone()], b"RIFF\x00\x01binary");
        assert_eq!(text_field(&body, &parts, "model").as_deref(), Some("whisper-1"));
    }

    #[test]
    fn replaces_and_adds_the_model_field() {
        let body = sample();
        let p = parts(&body, "XYZ").unwrap();
        let joined: Vec<u8> = replace_field(&body, "XYZ", &p, "model", "large-v3").concat();
        let again = parts(&joined, "XYZ").unwrap();
        assert_eq!(text_field(&joined, &again, "model").as_deref(), Some("large-v3"));
        assert_eq!(&joined[again[1].content.clone()], b"RIFF\x00\x01binary");

        let no_model = Bytes::from_static(
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nDATA\r\n--B--\r\n",
        );
        let p = parts(&no_model, "B").unwrap();
        let joined: Vec<u8> = replace_field(&no_model, "B", &p, "model", "m").concat();
        let again = parts(&joined, "B").unwrap();
        assert_eq!(text_field(&joined, &again, "model").as_deref(), Some("m"));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"--XYZ",
            b"--XYZ\r\nno headers end",
            b"--XYZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XYZ--",
            b"garbage --XYZ\r\n\r\n\r\n",
        ] {
            assert!(parts(bad, "XYZ").is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
