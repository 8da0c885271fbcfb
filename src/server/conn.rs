//! One client connection: requests read in turn, each handled while the connection is watched for a close, and its response written as the body's frames become ready.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, Version};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::codec::{self, BodyFraming, RequestHead};
use super::{BodyError, ReqBody};
use crate::client::codec::{Decoder, Framing, Step};
use crate::proxy::error::{error_body, json_response};
use crate::proxy::RespBody;

/// How much room a read of a head or body gets (the buffer grows for larger bodies).
const READ_CHUNK: usize = 8 * 1024;
/// How much room a connection keeps for reads while its request is handled or its response
/// streams: enough to notice a close or the start of a pipelined request, small per open stream.
const WATCH_CHUNK: usize = 512;
/// A request head must arrive within this of the server starting to wait for it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
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
}

/// Serves requests on `io` until the client closes, a request asks to close, an error, or `stop`.
pub async fn run<F, Fut, L>(mut io: TcpStream, settings: &Settings<F, L>)
where
    F: Fn(Request<ReqBody>) -> Fut,
    Fut: Future<Output = Response<RespBody>>,
    L: Fn() -> u64,
{
    let mut buf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    let mut stopped = pin!(settings.stop.cancelled());
    let mut deadline = pin!(tokio::time::sleep(HEAD_TIMEOUT));
    loop {
        // The head: closed quietly on end of stream, timeout, or stop while idle.
        let head = loop {
            match if buf.is_empty() { Ok(None) } else { codec::parse_request(&mut buf) } {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => {
                    let resp =
                        json_response(e.status(), &error_body(e.message(), "invalid_request_error", "invalid_request"));
                    let _ = respond(&mut io, &mut out, resp, &Method::GET, Version::HTTP_11, false).await;
                    return linger(io).await;
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
                () = &mut deadline => return,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let RequestHead { parts, framing, keep_alive, expect_continue } = head;
        let method = parts.method.clone();
        let version = parts.version;
        let limit = (settings.body_limit)();

        // The body, read whole before the handler runs.
        let (body, mut reusable) = match framing {
            Framing::Length(n) if n > limit => (Err(BodyError::TooLarge { limit }), false),
            _ => {
                let continued = !expect_continue || framing == Framing::Length(0) || !buf.is_empty();
                if !continued && io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                match read_body(&mut io, &mut buf, framing, limit).await {
                    Ok(body) => (Ok(body), keep_alive),
                    Err(ReadError::Closed) => return,
                    Err(ReadError::Body(e)) => (Err(e), false),
                }
            }
        };

        // The handler, dropped (cancelling its work) if the client closes meanwhile. Bytes of
        // a next request that arrive meanwhile wait in `buf`.
        let mut handling = pin!((settings.handler)(Request::from_parts(parts, body)));
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
        reusable &= !settings.stop.is_cancelled() && !codec::wants_close(resp.headers());
        match respond(&mut io, &mut out, resp, &method, version, reusable).await {
            Ok(true) if reusable => {}
            Ok(_) => return linger(io).await,
            Err(_) => return,
        }
        deadline.as_mut().reset(tokio::time::Instant::now() + HEAD_TIMEOUT);
    }
}

enum ReadError {
    /// The client went away mid-body: there is no one to answer.
    Closed,
    Body(BodyError),
}

/// Reads a request body framed by `framing` from `buf` and then `io`, up to `limit` bytes.
async fn read_body(io: &mut TcpStream, buf: &mut BytesMut, framing: Framing, limit: u64) -> Result<Bytes, ReadError> {
    if let Framing::Length(n) = framing {
        // Usually the whole body is already here: share its bytes.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        while buf.len() < n {
            buf.reserve((n - buf.len()).min(4 * 1024 * 1024));
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        return Ok(buf.split_to(n).freeze());
    }
    let mut decoder = Decoder::new(framing);
    let mut body = BytesMut::new();
    loop {
        match decoder.step(buf) {
            Ok(Step::Data(data)) => {
                if (body.len() + data.len()) as u64 > limit {
                    return Err(ReadError::Body(BodyError::TooLarge { limit }));
                }
                body.extend_from_slice(&data);
            }
            Ok(Step::Done) => return Ok(body.freeze()),
            Ok(Step::More) => {
                buf.reserve(READ_CHUNK);
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err(ReadError::Closed),
                    Ok(_) => {}
                }
            }
            Err(e) => return Err(ReadError::Body(BodyError::Invalid(e))),
        }
    }
}

/// Writes `resp`; `Ok(true)` when its body went out whole and framed, so the connection may carry another request.
async fn respond(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response<RespBody>,
    method: &Method,
    version: Version,
    keep_alive: bool,
) -> io::Result<bool> {
    let (parts, body) = resp.into_parts();
    let framing = codec::response_framing(method, version, parts.status, &parts.headers, body.size_hint().exact());
    let keep_alive = keep_alive && framing != BodyFraming::Close;
    out.clear();
    DATE.with_borrow_mut(|d| {
        codec::encode_response_head(
            parts.status,
            &parts.headers,
            framing,
            keep_alive,
            version == Version::HTTP_10,
            d.now(),
            out,
        )
    });
    if framing == BodyFraming::None {
        io.write_all(out).await?;
        return Ok(true);
    }
    let mut body = pin!(body);
    let mut sent: u64 = 0;
    let mut big: Option<Bytes> = None;
    loop {
        // Every frame that is ready now joins this write; a large one ends the batch.
        let ended = poll_fn(|cx| {
            let mut got = false;
            loop {
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        got = true;
                        let Ok(data) = frame.into_data() else { continue };
                        if data.is_empty() {
                            continue;
                        }
                        sent += data.len() as u64;
                        if framing == BodyFraming::Chunked {
                            codec::chunk_size_line(data.len(), out);
                        }
                        if data.len() < COPY_BELOW {
                            out.extend_from_slice(&data);
                            if framing == BodyFraming::Chunked {
                                out.extend_from_slice(b"\r\n");
                            }
                        } else {
                            big = Some(data);
                            return Poll::Ready(Ok(false));
                        }
                        if out.len() >= COPY_BELOW {
                            return Poll::Ready(Ok(false));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(true)),
                    Poll::Pending if got => return Poll::Ready(Ok(false)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        let ended = match ended {
            Ok(ended) => ended,
            Err(e) => {
                // The body broke off: what was sent stands, and the close tells the client it is cut short.
                tracing::debug!(error = %e, "response body ended with an error");
                write_parts(io, out, big.take(), framing).await?;
                return Ok(false);
            }
        };
        let whole = match framing {
            BodyFraming::Length(n) if sent > n => {
                tracing::warn!(declared = n, sent, "response body longer than its content-length; closing");
                return Ok(false);
            }
            BodyFraming::Length(n) => !ended || sent == n,
            _ => true,
        };
        // (A large frame ends its batch before the body can end, so the last chunk goes here.)
        if ended && framing == BodyFraming::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        write_parts(io, out, big.take(), framing).await?;
        if ended {
            return Ok(whole && framing != BodyFraming::Close);
        }
    }
}

/// Writes `out` then `big` (with its chunk's CRLF when chunked) in as few system calls as the socket allows, and clears `out`.
async fn write_parts(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    big: Option<Bytes>,
    framing: BodyFraming,
) -> io::Result<()> {
    let crlf: &[u8] = if big.is_some() && framing == BodyFraming::Chunked { b"\r\n" } else { b"" };
    let big = big.unwrap_or_default();
    let mut slices = [IoSlice::new(out), IoSlice::new(&big), IoSlice::new(crlf)];
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
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
