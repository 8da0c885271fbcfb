//! One client connection: requests read in turn, each handled while the connection is watched for a close, and its response written as the body's frames become ready.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, StatusCode, Version};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::codec::{self, BodyFraming, RequestHead};
use super::{BodyError, Reply, Request};
use crate::client::codec::{Decoder, Framing, Step};
use crate::proxy::error::{error_body, json_response};
use crate::raw_headers::RawHeaders;

/// How much room a read of a head or body gets (the buffer grows for larger bodies).
const READ_CHUNK: usize = 8 * 1024;
/// How much room a connection keeps for reads while its request is handled or its response
/// streams: enough to notice a close or the start of a pipelined request, small per open stream.
const WATCH_CHUNK: usize = 512;
/// A connection's buffers are replaced by small ones between requests when they grew past this.
const KEEP_BUFFER: usize = 64 * 1024;
/// Bytes of chunked framing (size lines, extensions, trailers) allowed beyond a body's limit.
const FRAMING_SLACK: u64 = 64 * 1024;
/// How long the server waits on a client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must arrive within this of the server starting to wait for it.
    pub head: Duration,
    /// A request body that stops arriving for this long is given up (the connection closes).
    pub body_idle: Duration,
    /// A client that takes no bytes of its response for this long is given up (the connection
    /// closes and the upstream's body is dropped, as when the client leaves).
    pub send_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            head: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            send_idle: Duration::from_secs(60),
        }
    }
}

/// Response data smaller than this is copied next to the head and other small frames so a
/// response usually leaves in one write; larger frames are written from their own memory.
const COPY_BELOW: usize = 16 * 1024;
/// After an error answer that leaves a body unread, the client's bytes are read and dropped
/// for up to this long (and this much) before closing, so the answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// The parts of a server every connection shares.
pub struct Settings<F, L> {
    pub handler: F,
    pub body_limit: L,
    pub stop: CancellationToken,
    pub timeouts: Timeouts,
}

/// Serves requests on `io` until the client closes, a request asks to close, an error, or `stop`.
pub async fn run<F, Fut, L>(mut io: TcpStream, settings: &Settings<F, L>)
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Reply>,
    L: Fn() -> u64,
{
    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    let mut stopped = pin!(settings.stop.cancelled());
    let t = settings.timeouts;
    // The head timeout runs from the end of the previous response. Moving the timer each request
    // costs a timer-wheel removal and insertion, so it is moved lazily: each response only notes
    // when it ended, and the timer, when it fires, moves itself to the noted time's deadline
    // unless that has passed.
    let mut deadline = pin!(tokio::time::sleep(t.head));
    let mut idle_since = tokio::time::Instant::now();
    loop {
        // The head: closed quietly on end of stream, timeout, or stop while idle.
        let head = loop {
            match if buf.is_empty() { Ok(None) } else { codec::parse_request(&mut buf) } {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    let resp =
                        json_response(e.status(), &error_body(e.message(), "invalid_request_error", "invalid_request"));
                    let sent = respond(
                        &mut io,
                        &mut buf,
                        &mut out,
                        resp.into(),
                        &Method::GET,
                        Version::HTTP_11,
                        false,
                        t.send_idle,
                    );
                    if sent.await != Sent::Gone {
                        linger(io).await;
                    }
                    return;
                }
            }
            if buf.is_empty() && settings.stop.is_cancelled() {
                return;
            }
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => read,
                () = &mut stopped, if buf.is_empty() => return,
                () = &mut deadline => {
                    let due = idle_since + t.head;
                    if tokio::time::Instant::now() >= due {
                        return;
                    }
                    deadline.as_mut().reset(due);
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let RequestHead { method, uri, version, headers, framing, keep_alive, expect_continue } = head;
        let limit = (settings.body_limit)();

        // The body, read whole before the handler runs.
        let (body, mut reusable) = match framing {
            Framing::Length(n) if n > limit => (Err(BodyError::TooLarge { limit }), false),
            _ => {
                if expect_continue && framing != Framing::Length(0) && buf.is_empty() {
                    out.clear();
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if write_parts(&mut io, &mut out, None, BodyFraming::None, t.send_idle).await.is_err() {
                        return;
                    }
                }
                match read_body(&mut io, &mut buf, framing, limit, t.body_idle).await {
                    Ok(body) => (Ok(body), keep_alive),
                    Err(ReadError::Closed) => return,
                    Err(ReadError::Body(e)) => (Err(e), false),
                }
            }
        };

        // The handler, dropped (cancelling its work) if the client closes meanwhile. Bytes of
        // a next request that arrive meanwhile wait in `buf`.
        let req = Request { method: method.clone(), uri, version, headers, body };
        let mut handling = pin!((settings.handler)(req));
        buf.reserve(WATCH_CHUNK);
        let resp = loop {
            tokio::select! {
                biased;
                resp = &mut handling => break resp,
                read = io.read_buf(&mut buf), if buf.len() < codec::MAX_HEAD => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => buf.reserve(WATCH_CHUNK),
                },
            }
        };
        reusable &= !settings.stop.is_cancelled() && !wants_close(&resp);
        match respond(&mut io, &mut buf, &mut out, resp, &method, version, reusable, t.send_idle).await {
            Sent::Whole if reusable => {}
            Sent::Whole | Sent::Short => return linger(io).await,
            Sent::Broken => {
                let _ = io.set_zero_linger();
                return;
            }
            Sent::Gone => return,
        }
        // A large upload grew the buffer: keep a small one for the next request.
        if buf.capacity() > KEEP_BUFFER {
            buf = BytesMut::from(&buf[..]);
        }
        if out.capacity() > KEEP_BUFFER {
            out = Vec::new();
        }
        idle_since = tokio::time::Instant::now();
    }
}

enum ReadError {
    /// The client went away mid-body: there is no one to answer.
    Closed,
    Body(BodyError),
}

/// Reads a request body framed by `framing` from `buf` and then `io`, up to `limit` bytes of
/// body (and, for chunked bodies, `FRAMING_SLACK` more bytes on the wire).
async fn read_body(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    framing: Framing,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, ReadError> {
    if let Framing::Length(n) = framing {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        // Usually the whole body is already here: share its bytes.
        if buf.len() >= n {
            return Ok(buf.split_to(n).freeze());
        }
        // Otherwise it gets its own buffer of its exact size, read to its end and no further.
        let mut body = BytesMut::with_capacity(n);
        body.extend_from_slice(&buf.split());
        while body.len() < n {
            let want = n - body.len();
            match read_some(io, &mut (&mut body).limit(want), idle).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        return Ok(body.freeze());
    }
    let mut decoder = Decoder::new(framing);
    let mut body = BytesMut::new();
    let mut wire = buf.len() as u64;
    loop {
        match decoder.step_strict(buf) {
            Ok(Step::Data(data)) => {
                if (body.len() + data.len()) as u64 > limit {
                    return Err(ReadError::Body(BodyError::TooLarge { limit }));
                }
                body.extend_from_slice(&data);
            }
            Ok(Step::Done) => return Ok(body.freeze()),
            Ok(Step::More) if wire > limit.saturating_add(FRAMING_SLACK) => {
                return Err(ReadError::Body(BodyError::TooLarge { limit }))
            }
            Ok(Step::More) => {
                buf.reserve(READ_CHUNK);
                match read_some(io, buf, idle).await {
                    Ok(0) | Err(_) => return Err(ReadError::Closed),
                    Ok(n) => wire += n as u64,
                }
            }
            Err(e) => return Err(ReadError::Body(BodyError::Invalid(e))),
        }
    }
}

/// How a response went out.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Whole and framed: the connection may carry another request.
    Whole,
    /// Shorter than the handler's `content-length` said: close, the framing shows the cut.
    Short,
    /// The body broke off: reset the connection so even a close-delimited body reads as cut.
    Broken,
    /// The client left, stopped taking bytes, or a write failed: nothing more to say.
    Gone,
}

/// Whether the handler asked for the connection to close after its response.
fn wants_close(reply: &Reply) -> bool {
    match reply {
        Reply::Built(resp) => codec::wants_close(resp.headers()),
        Reply::Relayed { .. } => false,
    }
}

/// Writes `reply`, watching the client for a close while the body waits for its next frame.
#[allow(clippy::too_many_arguments)]
async fn respond(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    reply: Reply,
    method: &Method,
    version: Version,
    keep_alive: bool,
    idle: Duration,
) -> Sent {
    out.clear();
    let head = Head { method, version, keep_alive };
    let (framing, body) = match reply {
        Reply::Built(resp) => {
            let (parts, body) = resp.into_parts();
            // An unreadable length is not sent on; 1xx and 204 responses carry none (RFC 9110 8.6).
            let declared = match codec::content_length(&parts.headers) {
                Ok(n) if !(parts.status.is_informational() || parts.status == StatusCode::NO_CONTENT) => n,
                _ => None,
            };
            let own = codec::handler_lines(&parts.headers);
            (head.write(parts.status, &own, None, declared, body.size_hint().exact(), out), body)
        }
        Reply::Relayed { status, own, passed_on, body } => {
            (head.write(status, &own, Some(&passed_on), None, body.size_hint().exact(), out), body)
        }
    };
    if framing == BodyFraming::None {
        return match write_parts(io, out, None, framing, idle).await {
            Ok(()) => Sent::Whole,
            Err(_) => Sent::Gone,
        };
    }
    let mut body = pin!(body);
    let mut sent: u64 = 0;
    let mut big: Option<Bytes> = None;
    loop {
        // Every frame that is ready now joins this write (a large one ends the batch); the head
        // goes out at once if the body has nothing yet. While the body waits, a close from the
        // client ends the response (and drops the body, which cancels the upstream's).
        let batch = poll_fn(|cx| loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if framing == BodyFraming::Chunked {
                        codec::chunk_size_line(data.len(), out);
                    }
                    if data.len() >= COPY_BELOW {
                        big = Some(data);
                        return Poll::Ready(Batch::More);
                    }
                    out.extend_from_slice(&data);
                    if framing == BodyFraming::Chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    if out.len() >= COPY_BELOW {
                        return Poll::Ready(Batch::More);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "response body ended with an error");
                    return Poll::Ready(Batch::Broken);
                }
                Poll::Ready(None) => return Poll::Ready(Batch::End),
                Poll::Pending if !out.is_empty() => return Poll::Ready(Batch::More),
                Poll::Pending => {
                    return if client_left(io, buf, cx) { Poll::Ready(Batch::Gone) } else { Poll::Pending }
                }
            }
        })
        .await;
        match batch {
            Batch::Gone => return Sent::Gone,
            Batch::Broken => {
                // What was sent stands; the reset tells the client it is cut short.
                let _ = write_parts(io, out, big.take(), framing, idle).await;
                return Sent::Broken;
            }
            Batch::More | Batch::End => {}
        }
        let ended = batch == Batch::End;
        if let BodyFraming::Length(n) = framing {
            if sent > n {
                tracing::warn!(declared = n, sent, "response body longer than its content-length; closing");
                return Sent::Broken;
            }
        }
        // (A large frame ends its batch before the body can end, so the last chunk goes here.)
        if ended && framing == BodyFraming::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if write_parts(io, out, big.take(), framing, idle).await.is_err() {
            return Sent::Gone;
        }
        if ended {
            return match framing {
                BodyFraming::Length(n) if sent < n => Sent::Short,
                BodyFraming::Close => Sent::Short,
                _ => Sent::Whole,
            };
        }
    }
}

/// What a response head depends on besides the response: the request and the connection.
struct Head<'a> {
    method: &'a Method,
    version: Version,
    keep_alive: bool,
}

impl Head<'_> {
    /// Decides the framing and appends the head to `out`.
    fn write<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: StatusCode,
        own: &[(N, V)],
        passed_on: Option<&RawHeaders>,
        declared: Option<u64>,
        exact: Option<u64>,
        out: &mut Vec<u8>,
    ) -> BodyFraming {
        let framing = codec::response_framing(self.method, self.version, status, declared, exact);
        let keep_alive = self.keep_alive && framing != BodyFraming::Close;
        let http10 = self.version == Version::HTTP_10;
        DATE.with_borrow_mut(|d| {
            codec::encode_response_head(status, own, passed_on, framing, declared, keep_alive, http10, d.now(), out)
        });
        framing
    }
}

/// What one look at the response body found.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    /// Frames to write, and more to come.
    More,
    /// The last frames (or none) to write.
    End,
    Broken,
    Gone,
}

/// Whether the client has closed (or its socket failed), seen without waiting. Bytes it sends
/// meanwhile (a pipelined request) are kept in `buf` up to a head's size; after that the
/// connection is not watched until the response ends.
fn client_left(io: &mut TcpStream, buf: &mut BytesMut, cx: &mut std::task::Context<'_>) -> bool {
    loop {
        if buf.len() >= codec::MAX_HEAD {
            return false;
        }
        match io.poll_read_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => {
                buf.reserve(WATCH_CHUNK);
                match io.try_read_buf(buf) {
                    Ok(0) => return true,
                    Ok(_) => {}
                    // The readiness was stale; polling again registers for the next event.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return true,
                }
            }
        }
    }
}

/// One read of more body bytes, within `idle`.
async fn read_some<B: BufMut>(io: &mut TcpStream, buf: &mut B, idle: Duration) -> io::Result<usize> {
    tokio::time::timeout(idle, io.read_buf(buf)).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Writes `out` then `big` (with its chunk's CRLF when chunked) in as few system calls as the socket allows, and clears `out`.
async fn write_parts(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    big: Option<Bytes>,
    framing: BodyFraming,
    idle: Duration,
) -> io::Result<()> {
    let crlf: &[u8] = if big.is_some() && framing == BodyFraming::Chunked { b"\r\n" } else { b"" };
    let big = big.unwrap_or_default();
    let mut slices = [IoSlice::new(out), IoSlice::new(&big), IoSlice::new(crlf)];
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        // Written at once when the socket can take the bytes; the timer only when it cannot.
        let n = match io.try_write_vectored(slices) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::select! {
                biased;
                n = io.write_vectored(slices) => n?,
                () = tokio::time::sleep(idle) => return Err(io::ErrorKind::TimedOut.into()),
            },
            n => n?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    out.clear();
    Ok(())
}

/// Closes after an answer that may leave unread bytes: the write side first, then the client's
/// remaining bytes read and dropped for a bounded time, so the answer arrives instead of a reset.
async fn linger(mut io: TcpStream) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 16 * 1024];
    let mut dropped = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while dropped < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// The `Date` header value, formatted once per second per thread.
struct DateCache {
    second: u64,
    text: Vec<u8>,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache { second: 0, text: Vec::new() }) };
}
