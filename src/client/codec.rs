//! HTTP/1.1 on the wire, without I/O: the request head, the response head, how the body is framed, and the body decoder.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};

use crate::proxy::headers::is_hop_by_hop;
use crate::raw_headers::RawHeaders;

/// A response head larger than this is refused.
pub const MAX_HEAD: usize = 64 * 1024;
/// More response headers than this are refused.
const MAX_HEADERS: usize = 128;
/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;

/// Appends `METHOD target HTTP/1.1`, the router's own `headers` (lower-case names; framing and
/// connection headers are the client's to write), the end-to-end lines `passed_on` that
/// `headers` does not name, and `content-length: len` to `out`.
pub fn encode_head(
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    passed_on: Option<&RawHeaders>,
    len: usize,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let own =
        headers.iter().filter(|(name, _)| !matches!(*name, "content-length" | "transfer-encoding" | "connection"));
    write_lines(own.map(|(n, v)| (n.as_bytes(), *v)), passed_on, out);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa_u64(len as u64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a head's header lines to `out`: the sender's `own`, then the end-to-end lines
/// `passed_on` as they arrived, less one `own` also names (the sender's wins) and less any
/// framing or hop-by-hop line (passed-on lines should hold none; skipped all the same, so no
/// caller can send a second framing). Returns whether a `date` line was written.
pub fn write_lines<'a>(
    own: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    passed_on: Option<&'a RawHeaders>,
    out: &mut Vec<u8>,
) -> bool {
    let passed = passed_on.iter().flat_map(|raw| raw.iter());
    let end_to_end = passed.filter(|(name, _)| !is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"content-length"));
    let kept = end_to_end.filter(|(name, _)| !own.clone().any(|(set, _)| set.eq_ignore_ascii_case(name)));
    let mut has_date = false;
    for (name, value) in own.clone().chain(kept) {
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    has_date
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: RawHeaders,
    pub framing: Framing,
    /// The connection may carry another request once this body ends.
    pub keep_alive: bool,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// At end of stream; the connection cannot be reused.
    Eof,
}

/// Parses a final response head from the front of `buf`, consuming it (and any interim 1xx
/// heads before it). `Ok(None)`: more bytes are needed.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, String> {
    loop {
        let mut raw = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut raw) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(format!("response head larger than {MAX_HEAD} bytes"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
        let code = resp.code.unwrap_or(0);
        let http11 = resp.version == Some(1);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err("the upstream switched protocols (101), which the router does not support".into());
            }
            let _ = buf.split_to(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
        // Connection-level and framing headers are read here and not passed on: the response
        // handed back carries end-to-end headers only (RFC 9110 section 7.6.1), and whoever
        // sends the body on frames it again.
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        let mut lines = Vec::with_capacity(resp.headers.len());
        let mut conn = Connection::default();
        let mut chunked = None;
        let mut length = Ok(None);
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                length = length.and_then(|l| add_content_length(l, h.value));
            } else if name.eq_ignore_ascii_case(b"connection") {
                conn.read(h.value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = tokens(h.value).next_back().map(|t| t.eq_ignore_ascii_case(b"chunked")).or(chunked);
            } else if !is_hop_by_hop(name) {
                let (n, v) = (at(name), at(h.value));
                lines.push((n, n + name.len() as u32, v, v + h.value.len() as u32));
            }
        }
        let head = buf.split_to(len).freeze();
        let mut headers = RawHeaders::new(head, lines);
        if !conn.listed.is_empty() {
            let listed = |name: &[u8]| conn.listed.iter().any(|l| l.eq_ignore_ascii_case(name));
            if listed(b"content-length") {
                length = Ok(None);
            }
            headers = headers.filtered(|name| !listed(name));
        }
        let framing = match chunked {
            // Transfer-Encoding overrides Content-Length.
            Some(true) if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED => Framing::Chunked,
            Some(_) => framing(status, length, true)?,
            None => framing(status, length, false)?,
        };
        let keep_alive = framing != Framing::Eof && if http11 { !conn.close } else { conn.keep_alive };
        return Ok(Some(Head { status, headers, framing, keep_alive }));
    }
}

/// What a message's `Connection` headers say (responses here, requests in `server/`).
#[derive(Default)]
pub struct Connection {
    pub close: bool,
    pub keep_alive: bool,
    /// Other header names it lists, which are hop-by-hop too.
    pub listed: Vec<Vec<u8>>,
}

impl Connection {
    pub fn read(&mut self, value: &[u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.listed.push(t.to_vec());
            }
        }
    }
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// RFC 9112 section 6.3, for responses to requests that are not HEAD. `transfer_coded`:
/// a Transfer-Encoding other than chunked was sent, so the body runs to the end of the connection.
/// `length`: what the Content-Length headers said.
fn framing(status: StatusCode, length: Result<Option<u64>, String>, transfer_coded: bool) -> Result<Framing, String> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if transfer_coded {
        return Ok(Framing::Eof);
    }
    Ok(length?.map_or(Framing::Eof, Framing::Length))
}

/// The single length the `Content-Length` headers agree on, if any (a message's or a
/// handler's response; `server/` uses it too).
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    headers.get_all(CONTENT_LENGTH).iter().try_fold(None, |length, v| add_content_length(length, v.as_bytes()))
}

/// The length after one more `Content-Length` value (a comma-separated list, as some senders
/// fold repeated headers): every length listed must agree.
pub fn add_content_length(mut length: Option<u64>, value: &[u8]) -> Result<Option<u64>, String> {
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        let n = decimal(part).ok_or_else(|| format!("invalid content-length {:?}", String::from_utf8_lossy(part)))?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting content-length values".into());
        }
        length = Some(n);
    }
    Ok(length)
}

/// A non-empty run of ASCII digits as a number, if it fits.
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| match d {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(d - b'0')),
        _ => None,
    })
}

/// `n` in decimal digits, written into `buf` without allocating.
pub fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Where the body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to the empty one.
    Trailers,
    Eof,
    Done,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// More bytes are needed from the connection.
    More,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::Eof => Decoder::Eof,
        }
    }

    /// Decodes from the front of `buf`, consuming what it used; body bytes share `buf`'s memory.
    /// Lenient as a client should be with a server (bare LF line ends, spaces around the size).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        self.step_with(buf, false)
    }

    /// `step` as a server must read a client's chunks: CRLF line ends only and the size in hex
    /// digits only, so this server cannot read a body's end where a proxy in front reads another.
    pub fn step_strict(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        self.step_with(buf, true)
    }

    fn step_with(&mut self, buf: &mut BytesMut, strict: bool) -> Result<Step, String> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::Done),
                Decoder::Length(n) | Decoder::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    let left = n - take as u64;
                    *self = match (*self, left) {
                        (Decoder::Length(_), 0) => Decoder::Done,
                        (Decoder::Length(_), _) => Decoder::Length(left),
                        (_, 0) => Decoder::ChunkEnd,
                        _ => Decoder::ChunkData(left),
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Decoder::Eof => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf, strict)? else { return Ok(Step::More) };
                    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                    let digits = if strict { digits.trim_ascii_end() } else { digits.trim_ascii() };
                    if strict && !digits.iter().all(u8::is_ascii_hexdigit) {
                        return Err(format!("invalid chunk size {:?}", String::from_utf8_lossy(digits)));
                    }
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| !d.is_empty())
                        .and_then(|d| u64::from_str_radix(d, 16).ok())
                        .ok_or_else(|| format!("invalid chunk size {:?}", String::from_utf8_lossy(digits)))?;
                    *self = if size == 0 { Decoder::Trailers } else { Decoder::ChunkData(size) };
                }
                Decoder::ChunkEnd => {
                    let Some(line) = take_line(buf, strict)? else { return Ok(Step::More) };
                    if !line.is_empty() {
                        return Err("chunk data longer than its size".into());
                    }
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers => {
                    let Some(line) = take_line(buf, strict)? else { return Ok(Step::More) };
                    if line.is_empty() {
                        *self = Decoder::Done;
                    }
                }
            }
        }
    }
}

/// Takes one line (without its CRLF, or bare LF unless `strict`) from the front of `buf`.
fn take_line(buf: &mut BytesMut, strict: bool) -> Result<Option<Bytes>, String> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if strict && (i == 0 || buf[i - 1] != b'\r') => Err("a chunk line not ended by CRLF".into()),
        Some(i) => {
            let mut line = buf.split_to(i + 1).freeze();
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(format!("chunk line longer than {MAX_LINE} bytes")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, String> {
        parse_head(&mut BytesMut::from(text))
    }

    #[test]
    fn request_head_has_the_routers_framing_only() {
        let h: [(&str, &[u8]); 4] =
            [("host", b"up:8080"), ("content-length", b"999"), ("transfer-encoding", b"chunked"), ("x-a", b"b")];
        let mut out = Vec::new();
        encode_head("POST", "/v1/chat/completions?x=1", &h, None, 12, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: up:8080\r\nx-a: b\r\ncontent-length: 12\r\n\r\n"
        );
    }

    #[test]
    fn passed_on_lines_follow_the_requests_own_headers_which_win() {
        let h: [(&str, &[u8]); 1] = [("host", b"up")];
        let client = RawHeaders::from_pairs([("Host", "router"), ("Content-Type", "application/json"), ("X-B", "b")]);
        let mut out = Vec::new();
        encode_head("POST", "/", &h, Some(&client), 2, &mut out);
        let want =
            "POST / HTTP/1.1\r\nhost: up\r\nContent-Type: application/json\r\nX-B: b\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").unwrap().unwrap();
        assert_eq!((h.status, h.framing, h.keep_alive), (StatusCode::OK, Framing::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
        let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: Close\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_heads_wait() {
        let mut buf =
            BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\nrest");
        let h = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::CREATED);
        assert_eq!(&buf[..], b"rest");
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le").unwrap().is_none());
        assert!(head("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(head("garbage\r\n\r\n").is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(head(&huge).is_err());
    }

    #[test]
    fn only_end_to_end_headers_are_handed_back() {
        let h = head(concat!(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 12\r\nUpgrade: h2c\r\nTrailer: x\r\n",
            "X-Private: secret\r\nContent-Type: text/event-stream\r\n\r\n"
        ))
        .unwrap()
        .unwrap();
        let names: Vec<&[u8]> = h.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"Content-Type"[..]]);
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
    }

    #[test]
    fn header_values_keep_their_bytes() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.get("content-type"), Some(&b"text/event-stream"[..]));
        let multi: Vec<&[u8]> =
            h.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"x-multi")).map(|(_, v)| v).collect();
        assert_eq!(multi, [b"a", b"b"]);
    }

    /// Feeds `wire` to a decoder in pieces of `piece` bytes and returns the body and what was left.
    fn decode(framing: Framing, wire: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>, bool), String> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.step(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::Done => return Ok((body, buf.to_vec(), true)),
                Step::More if fed >= wire.len() => return Ok((body, buf.to_vec(), false)),
                Step::More => {
                    let end = (fed + piece).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\ntrailer: x\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 64, 1000] {
            let (body, rest, done) = decode(Framing::Chunked, wire, piece).unwrap();
            assert!(done, "piece {piece}");
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "piece {piece}");
            // The decoder stops at the end of the message; a short read may not have fed the rest.
            assert!(b"NEXT".starts_with(&rest), "piece {piece}: {rest:?}");
        }
        // Bare LF line endings are accepted.
        let (body, _, done) = decode(Framing::Chunked, b"3\nabc\n0\n\n", 4).unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        assert!(decode(Framing::Chunked, b"zz\r\nhello\r\n", 64).is_err());
        assert!(decode(Framing::Chunked, b"\r\n", 64).is_err());
        assert!(decode(Framing::Chunked, b"2\r\nhello\r\n", 64).is_err());
        assert!(decode(Framing::Chunked, &[b'1'; MAX_LINE + 10], 64).is_err());
        // Cut off: not an error here, just not done; the connection's EOF makes it one.
        let (_, _, done) = decode(Framing::Chunked, b"5\r\nhel", 64).unwrap();
        assert!(!done);
    }

    #[test]
    fn length_and_eof_bodies() {
        let (body, rest, done) = decode(Framing::Length(5), b"helloEXTRA", 3).unwrap();
        assert_eq!((body.as_slice(), done), (&b"hello"[..], true));
        assert!(b"EXTRA".starts_with(&rest));
        let (body, _, done) = decode(Framing::Length(0), b"", 3).unwrap();
        assert_eq!((body.len(), done), (0, true));
        let (body, _, done) = decode(Framing::Eof, b"until the end", 4).unwrap();
        assert_eq!((body.as_slice(), done), (&b"until the end"[..], false));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0u64, 7, 10, 65_536, u64::MAX] {
            assert_eq!(itoa_u64(n, &mut [0; 20]), n.to_string().as_bytes());
            assert_eq!(decimal(n.to_string().as_bytes()), Some(n));
        }
        for bad in ["", "-1", "+1", "1 2", "18446744073709551616", "0x1"] {
            assert_eq!(decimal(bad.as_bytes()), None, "{bad}");
        }
    }
}
