//! HTTP/1.x requests on the wire, without I/O: the request head and its body's framing, and the response head.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::client::codec::{self, tokens, Connection, Framing};
use crate::raw_headers::RawHeaders;

/// A request head larger than this is refused (431).
pub const MAX_HEAD: usize = 64 * 1024;
/// More request headers than this are refused (431).
const MAX_HEADERS: usize = 128;

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// Every header line as it arrived, framing and connection headers included.
    pub headers: RawHeaders,
    /// How its body is framed: `Length` or `Chunked`, never `Eof`.
    pub framing: Framing,
    /// The client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// Why a request head was refused; the connection closes after the answer.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 431: the head or its header count is over the limit.
    TooLarge(String),
    /// 400: not an HTTP/1.x request the router can read.
    Invalid(String),
    /// 501: a transfer coding the router does not decode.
    Unsupported(String),
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Invalid(_) => StatusCode::BAD_REQUEST,
            HeadError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            HeadError::TooLarge(m) | HeadError::Invalid(m) | HeadError::Unsupported(m) => m,
        }
    }
}

/// Parses a request head from the front of `buf`, consuming it. `Ok(None)`: more bytes are needed.
/// Empty lines before a request are skipped (RFC 9112 section 2.2).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let blank = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let _ = buf.split_to(blank);
    let mut raw = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HeadError::TooLarge(format!("request head larger than {MAX_HEAD} bytes")))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge(format!("more than {MAX_HEADERS} request headers")))
        }
        Err(e) => return Err(HeadError::Invalid(format!("invalid HTTP/1.1 request head: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge(format!("request head larger than {MAX_HEAD} bytes")));
    }
    let version = if req.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Invalid("invalid request method".into()))?;
    // Where the target and each header sit in the head, so they can share its bytes; the
    // framing and connection headers are read on the way.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let path = req.path.unwrap_or_default().as_bytes();
    let target = at(path) as usize..at(path) as usize + path.len();
    let mut lines = Vec::with_capacity(req.headers.len());
    let mut conn = Connection::default();
    // The transfer codings of every Transfer-Encoding header, in order: (how many, the last is chunked).
    let mut codings: Option<(usize, bool)> = None;
    let mut expect_continue = false;
    // Read in the loop rather than looked up after; an error counts only if the length is used.
    let (mut has_length, mut length) = (false, Ok(None));
    for h in req.headers.iter() {
        let (name, raw) = (h.name.as_bytes(), h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            has_length = true;
            length = length.and_then(|l| codec::add_content_length(l, raw));
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.read(raw);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let (count, last) = codings.unwrap_or_default();
            let chunked = tokens(raw).next_back().map_or(last, |t| t.eq_ignore_ascii_case(b"chunked"));
            codings = Some((count + tokens(raw).count(), chunked));
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = raw.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        let (n, v) = (at(name), at(raw));
        lines.push((n, n + name.len() as u32, v, v + raw.len() as u32));
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|e| HeadError::Invalid(format!("invalid request target: {e}")))?;
    let framing = match codings {
        // A request whose length cannot be known is refused (RFC 9112 section 6.3), and so is
        // one with both framings, the shape of request smuggling.
        Some((_, false)) => {
            return Err(HeadError::Invalid("transfer-encoding whose last coding is not chunked".into()))
        }
        Some(_) if has_length => return Err(HeadError::Invalid("both transfer-encoding and content-length".into())),
        Some(_) if version == Version::HTTP_10 => {
            return Err(HeadError::Invalid("transfer-encoding in an HTTP/1.0 request".into()))
        }
        Some((1, true)) => Framing::Chunked,
        Some(_) => return Err(HeadError::Unsupported("transfer codings other than chunked are not supported".into())),
        None => Framing::Length(length.map_err(HeadError::Invalid)?.unwrap_or(0)),
    };
    let keep_alive = if version == Version::HTTP_11 { !conn.close } else { conn.keep_alive && !conn.close };
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers: RawHeaders::new(head, lines),
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11,
    }))
}

/// The single length the `Content-Length` headers agree on, if any.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    codec::content_length(headers).map_err(HeadError::Invalid)
}

/// How a response body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client and a body of unknown length).
    Close,
}

/// Decides a response's framing (RFC 9112 section 6): the handler's valid `Content-Length`
/// (`declared`) if it set one, else the body's exact size, else chunked for HTTP/1.1 and close
/// for HTTP/1.0.
pub fn response_framing(
    request_method: &Method,
    version: Version,
    status: StatusCode,
    declared: Option<u64>,
    exact_size: Option<u64>,
) -> BodyFraming {
    if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return BodyFraming::None;
    }
    if request_method == Method::HEAD {
        return BodyFraming::None;
    }
    match declared.or(exact_size) {
        Some(n) => BodyFraming::Length(n),
        None if version == Version::HTTP_11 => BodyFraming::Chunked,
        None => BodyFraming::Close,
    }
}

/// A handler's header map as lines, less the framing and connection headers (the server
/// decides those).
pub fn handler_lines(headers: &HeaderMap) -> Vec<(&[u8], &[u8])> {
    headers
        .iter()
        .filter(|(n, _)| !(*n == CONNECTION || *n == TRANSFER_ENCODING || *n == CONTENT_LENGTH || *n == "keep-alive"))
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect()
}

/// Appends the status line and headers of a response to `out`: the handler's own lines
/// (without framing or connection headers), then the end-to-end lines it passes on as they
/// arrived (a proxied upstream's; one the handler also set is left out, the handler's wins),
/// then the framing the server decided (`content-length` is the body's length, or for a
/// bodiless answer the `declared` one), the connection header, and `date` if missing.
#[allow(clippy::too_many_arguments)]
pub fn encode_response_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    status: StatusCode,
    own: &[(N, V)],
    passed_on: Option<&RawHeaders>,
    framing: BodyFraming,
    declared: Option<u64>,
    keep_alive: bool,
    http10: bool,
    date: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let has_date = codec::write_lines(own.iter().map(|(n, v)| (n.as_ref(), v.as_ref())), passed_on, out);
    let length = match framing {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::None => declared,
        BodyFraming::Chunked | BodyFraming::Close => None,
    };
    if let Some(n) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(codec::itoa_u64(n, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    if framing == BodyFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk's size line (`{hex}\r\n`) to `out`, without allocating.
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// Whether the handler asked for the connection to close after its response.
pub fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::DATE;
    use http::HeaderValue;

    fn parse(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(raw))
    }

    #[test]
    fn a_request_head_is_read_and_consumed() {
        let mut buf = BytesMut::from(
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Two: 1\r\nX-Two: 2\r\n\r\nhello",
        );
        let head = parse_request(&mut buf).unwrap().unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/v1/chat/completions");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"x-two")).count(), 2);
        assert_eq!(head.headers.get("content-length"), Some(&b"5"[..]), "every line is kept");
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn partial_heads_wait_for_more_and_leading_blank_lines_are_skipped() {
        assert!(parse("POST / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let head = parse("\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.uri.path(), "/healthz");
        assert_eq!(head.framing, Framing::Length(0));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |raw: &str| parse(raw).unwrap().unwrap().keep_alive;
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn body_framing_is_read_and_ambiguous_framing_refused() {
        let framing = |raw: &str| parse(raw).map(|h| h.unwrap().framing);
        assert_eq!(framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Ok(Framing::Chunked));
        assert_eq!(framing("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n"), Ok(Framing::Length(7)));
        let unsupported = parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(matches!(unsupported, Err(HeadError::Unsupported(_))));
        let split = parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(split, Err(HeadError::Unsupported(_))));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
        for bad in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Err(HeadError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn expect_continue_is_seen_on_http11_only() {
        assert!(
            parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .unwrap()
                .expect_continue
        );
        assert!(
            !parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .unwrap()
                .expect_continue
        );
    }

    #[test]
    fn oversize_and_garbage_heads_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&big), Err(HeadError::TooLarge(_))));
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(matches!(parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(HeadError::TooLarge(_))));
        assert!(matches!(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Err(HeadError::Invalid(_))));
        assert!(matches!(parse("hello there\r\n\r\n"), Err(HeadError::Invalid(_))));
    }

    #[test]
    fn response_framing_prefers_the_handlers_length_then_the_exact_size() {
        let f = response_framing;
        assert_eq!(f(&Method::POST, Version::HTTP_11, StatusCode::OK, None, Some(3)), BodyFraming::Length(3));
        assert_eq!(f(&Method::POST, Version::HTTP_11, StatusCode::OK, None, None), BodyFraming::Chunked);
        assert_eq!(f(&Method::POST, Version::HTTP_10, StatusCode::OK, None, None), BodyFraming::Close);
        assert_eq!(f(&Method::HEAD, Version::HTTP_11, StatusCode::OK, None, Some(3)), BodyFraming::None);
        assert_eq!(f(&Method::GET, Version::HTTP_11, StatusCode::NO_CONTENT, None, None), BodyFraming::None);
        assert_eq!(f(&Method::POST, Version::HTTP_11, StatusCode::OK, Some(9), None), BodyFraming::Length(9));
    }

    #[test]
    fn response_heads_carry_framing_date_and_connection() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        let mut out = Vec::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        let lines = handler_lines(&h);
        encode_response_head(StatusCode::OK, &lines, None, BodyFraming::Length(12), None, true, false, b"D", &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 12\r\ndate: D\r\n\r\n");
        out.clear();
        let f = BodyFraming::Chunked;
        encode_response_head(StatusCode::NOT_FOUND, &lines, None, f, None, false, false, b"D", &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nx-a: 1\r\ntransfer-encoding: chunked\r\ndate: D\r\nconnection: close\r\n\r\n"
        );
        out.clear();
        let mut h = HeaderMap::new();
        h.insert(DATE, HeaderValue::from_static("upstream"));
        let lines = handler_lines(&h);
        encode_response_head(StatusCode::OK, &lines, None, BodyFraming::Length(0), None, true, true, b"D", &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ndate: upstream\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
        // A bodiless answer (to HEAD, say) carries the length the handler declared.
        out.clear();
        let none = BodyFraming::None;
        encode_response_head(StatusCode::OK, &lines, None, none, Some(7), true, false, b"D", &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ndate: upstream\r\ncontent-length: 7\r\n\r\n");
    }

    #[test]
    fn passed_on_lines_follow_the_handlers_headers_which_win() {
        let upstream = "HTTP/1.1 200 OK\r\nX-Request-Id: up\r\nDate: D0\r\nX-B: b\r\nContent-Length: 2\r\n\r\n";
        let raw = codec::parse_head(&mut BytesMut::from(upstream)).unwrap().unwrap().headers;
        let own: [(&[u8], &[u8]); 1] = [(b"x-request-id", b"ours")];
        let mut out = Vec::new();
        let f = BodyFraming::Length(2);
        encode_response_head(StatusCode::OK, &own, Some(&raw), f, None, true, false, b"D", &mut out);
        let want = "HTTP/1.1 200 OK\r\nx-request-id: ours\r\nDate: D0\r\nX-B: b\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Framing and hop-by-hop lines handed over by mistake are not written.
        let raw =
            RawHeaders::from_pairs([("Content-Length", "99"), ("Transfer-Encoding", "gzip"), ("Connection", "x")]);
        let mut out = Vec::new();
        encode_response_head(StatusCode::OK, &own, Some(&raw), f, None, true, false, b"D", &mut out);
        let want = "HTTP/1.1 200 OK\r\nx-request-id: ours\r\ncontent-length: 2\r\ndate: D\r\n\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
