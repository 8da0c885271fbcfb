//! The upstream client: HTTP/1.1 keep-alive connections pooled per origin (plain TCP or TLS), each exchange run in the request's own task, a connection reused once its response body has been read to the end.
//!
//! hyper's client runs every connection as a task of its own and hands each request and
//! response across channels; this client writes the request and reads the response in the
//! task that asked (docs/performance.md measures the difference). Idle connections are taken
//! last in first out and checked for a close or stray bytes before reuse; a request whose
//! write fails on a reused connection is sent once more on a new one (nothing was answered);
//! a response not read to the end closes its connection. Each connection keeps one timer for
//! the response-head deadline, moved only when it would fire late or has fired early, so a
//! request on a pooled connection usually costs no timer-wheel work.

pub(crate) mod codec;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::Scheme;
use http::{StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::proxy::headers::Forwarded;
use crate::proxy::UpBody;
use crate::raw_headers::RawHeaders;
use crate::rng::NameMap;
use codec::{Decoder, Framing, Step};

/// Idle connections kept per origin; the oldest goes first beyond this.
const MAX_IDLE_PER_ORIGIN: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How much is asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Request bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 64 * 1024;

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, TLS handshake, connect timeout).
    Connect(String),
    /// The connection failed while sending or before the response head.
    Request(String),
    /// No response head by the request's `head_by`.
    Timeout,
}

/// A pool of upstream connections; cheap to clone, shared by every model with the same connect timeout.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    connect_timeout: Duration,
    idle: Mutex<NameMap<Arc<str>, VecDeque<Idle>>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a request goes: the pool key, the address to dial and, over TLS, the server name.
#[derive(Clone)]
pub struct Origin {
    key: Arc<str>,
    host: Arc<str>,
    port: u16,
    tls: Option<ServerName<'static>>,
}

impl Origin {
    /// The origin of an absolute `http` or `https` URI, or None.
    pub fn of(uri: &Uri) -> Option<Origin> {
        let (scheme, authority) = (uri.scheme()?, uri.authority()?);
        let https = match scheme {
            s if *s == Scheme::HTTPS => true,
            s if *s == Scheme::HTTP => false,
            _ => return None,
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let tls = if https { Some(ServerName::try_from(host.to_string()).ok()?) } else { None };
        Some(Origin {
            key: Arc::from(format!("{scheme}://{authority}")),
            host: Arc::from(host),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            tls,
        })
    }
}

/// The TLS client configuration: webpki roots, ring, HTTP/1.1 by ALPN.
fn tls_connector() -> Result<&'static TlsConnector, String> {
    static TLS: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    })
    .as_ref()
    .map_err(Clone::clone)
}

impl Client {
    /// A new pool. Inside a runtime it also closes connections idle for longer than 90 s,
    /// every 30 s, for as long as the pool exists.
    pub fn new(connect_timeout: Duration) -> Client {
        let inner = Arc::new(Inner { connect_timeout, idle: Mutex::new(NameMap::default()) });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&inner);
            rt.spawn(sweep(weak));
        }
        Client { inner }
    }

    /// Sends `req` to `origin` on a pooled connection, or a new one.
    pub async fn request(&self, origin: &Origin, req: Outgoing<'_>) -> Result<UpstreamResponse, ClientError> {
        let chunks = req.body.into_chunks();
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let mut head = Vec::with_capacity(256 + if len <= INLINE_BODY { len } else { 0 });
        codec::encode_head(req.method, req.target, req.headers, req.passed_on.map(Forwarded::lines), len, &mut head);
        let rest = if len <= INLINE_BODY {
            chunks.iter().for_each(|c| head.extend_from_slice(c));
            VecDeque::new()
        } else {
            chunks
        };
        let by = req.head_by;
        let (mut conn, mut reused) = match self.checkout(origin) {
            Some(c) => (c, true),
            None => (self.connect(origin, by).await?, false),
        };
        loop {
            match conn.write(&head, &rest, by).await.ok_or(ClientError::Timeout)? {
                Ok(()) => break,
                // Closed while idle: the request never reached a server that could answer it.
                Err(_) if reused => {
                    conn = self.connect(origin, by).await?;
                    reused = false;
                }
                Err(e) => return Err(ClientError::Request(format!("sending the request: {e}"))),
            }
        }
        let head = conn.read_head(by).await.ok_or(ClientError::Timeout)?.map_err(ClientError::Request)?;
        let mut body = UpstreamBody {
            conn: Some(conn),
            decoder: Decoder::new(head.framing),
            eof_framed: head.framing == Framing::Eof,
            back: head.keep_alive.then(|| (self.inner.clone(), origin.key.clone())),
        };
        if body.decoder == Decoder::Done {
            body.finish();
        }
        Ok(UpstreamResponse { status: head.status, headers: head.headers, body })
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = lock(&self.inner.idle);
        let list = idle.get_mut(&origin.key)?;
        while let Some(mut c) = list.pop_back() {
            if c.since.elapsed() < IDLE_TIMEOUT && c.conn.quiet() {
                return Some(c.conn);
            }
        }
        None
    }

    /// A new connection within the connect timeout, and by `by`.
    async fn connect(&self, origin: &Origin, by: tokio::time::Instant) -> Result<Conn, ClientError> {
        let work = async {
            let tcp = TcpStream::connect((&*origin.host, origin.port))
                .await
                .map_err(|e| format!("connecting to {}: {e}", origin.key))?;
            let _ = tcp.set_nodelay(true);
            let io = match &origin.tls {
                None => Io::Plain(tcp),
                Some(name) => {
                    let tls = tls_connector()?
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS handshake with {}: {e}", origin.key))?;
                    Io::Tls(Box::new(tls))
                }
            };
            Ok(Conn { io, buf: BytesMut::with_capacity(READ_CHUNK), timer: Box::pin(tokio::time::sleep_until(by)) })
        };
        let connect_by = tokio::time::Instant::now() + self.inner.connect_timeout;
        match tokio::time::timeout_at(connect_by.min(by), work).await {
            Ok(result) => result.map_err(ClientError::Connect),
            Err(_) if by < connect_by => Err(ClientError::Timeout),
            Err(_) => Err(ClientError::Connect(format!(
                "connecting to {}: no connection within {:?}",
                origin.key, self.inner.connect_timeout
            ))),
        }
    }
}

impl Inner {
    fn put(&self, origin: Arc<str>, conn: Conn) {
        let mut idle = lock(&self.idle);
        let list = idle.entry(origin).or_default();
        if list.len() >= MAX_IDLE_PER_ORIGIN {
            list.pop_front();
        }
        list.push_back(Idle { conn, since: Instant::now() });
    }

    /// Closes idle connections past the idle timeout (the oldest are at the front).
    fn sweep(&self) {
        let mut idle = lock(&self.idle);
        for list in idle.values_mut() {
            while list.front().is_some_and(|c| c.since.elapsed() >= IDLE_TIMEOUT) {
                list.pop_front();
            }
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

async fn sweep(pool: Weak<Inner>) {
    let mut every = tokio::time::interval(IDLE_TIMEOUT / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match pool.upgrade() {
            Some(inner) => inner.sweep(),
            None => return,
        }
    }
}

/// The socket under a connection.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One upstream connection, the bytes read from it but not yet used, and its response-head timer.
struct Conn {
    io: Io,
    buf: BytesMut,
    /// Set no later than the current exchange's deadline while one is under way; between
    /// exchanges it may stand anywhere (and fire, waking whoever last waited on it).
    timer: Pin<Box<Sleep>>,
}

/// `work`, or None once `by` has passed. `timer` is moved to `by` only when it stands later, or
/// when it fires before `by`; otherwise it stays where it is, costing nothing.
async fn before<T>(timer: &mut Pin<Box<Sleep>>, by: tokio::time::Instant, work: impl Future<Output = T>) -> Option<T> {
    if timer.deadline() > by {
        timer.as_mut().reset(by);
    }
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= by {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(by);
        }
        Poll::Pending
    })
    .await
}

impl Conn {
    /// An idle connection is fit for reuse when there is nothing to read on it: no close from
    /// the server and no stray bytes. Answered from the runtime's readiness, so usually no syscall.
    fn quiet(&mut self) -> bool {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        let mut cx = Context::from_waker(Waker::noop());
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last read, or (over TLS) come from records that
            // carry no data, such as session tickets: read without waiting to find out. Nothing
            // to read means quiet; an end of stream, bytes or an error means not reusable.
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(&mut self.io).poll_read(&mut cx, &mut buf).is_pending()
            }
        }
    }

    /// Writes the request; None if `by` passes first.
    async fn write(&mut self, head: &[u8], rest: &VecDeque<Bytes>, by: tokio::time::Instant) -> Option<io::Result<()>> {
        let Conn { io, timer, .. } = self;
        let work = async move {
            io.write_all(head).await?;
            for chunk in rest {
                io.write_all(chunk).await?;
            }
            io.flush().await
        };
        before(timer, by, work).await
    }

    /// Reads the response head; None if `by` passes first.
    async fn read_head(&mut self, by: tokio::time::Instant) -> Option<Result<codec::Head, String>> {
        let Conn { io, buf, timer } = self;
        let work = async move {
            loop {
                if !buf.is_empty() {
                    if let Some(head) = codec::parse_head(buf)? {
                        return Ok(head);
                    }
                }
                buf.reserve(READ_CHUNK);
                match io.read_buf(buf).await {
                    Ok(0) => return Err("the upstream closed the connection before responding".into()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("reading the response: {e}")),
                }
            }
        };
        before(timer, by, work).await
    }
}

/// A request as the client writes it: the request line, the router's own header lines
/// (names in lower case), then the end-to-end lines passed on from the client's request (one
/// with a name the router's own lines have is left out: the router's wins), `content-length`
/// and the body. The client adds no headers of its own but framing.
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// Origin-form: the path and query.
    pub target: &'a str,
    pub headers: &'a [(&'static str, &'a [u8])],
    pub passed_on: Option<&'a Forwarded>,
    pub body: UpBody,
    /// When the client gives up waiting for the response head ([`ClientError::Timeout`]),
    /// connecting and sending included.
    pub head_by: tokio::time::Instant,
}

/// An upstream's answer: its status, its end-to-end header lines as they arrived, its body.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: RawHeaders,
    pub body: UpstreamBody,
}

/// A response body read from its connection as the caller polls; the connection goes back to
/// the pool when the body ends (if the response allows it), and closes if the body is dropped first.
pub struct UpstreamBody {
    conn: Option<Conn>,
    decoder: Decoder,
    eof_framed: bool,
    back: Option<(Arc<Inner>, Arc<str>)>,
}

/// The upstream's body broke off or was malformed.
#[derive(Debug, thiserror::Error)]
#[error("upstream body: {0}")]
pub struct BodyError(String);

impl UpstreamBody {
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some((pool, origin))) = (conn, self.back.take()) {
            // Bytes after the response would be answers to nothing: such a connection is not reused.
            if conn.buf.is_empty() {
                pool.put(origin, conn);
            }
        }
    }

    fn fail(&mut self, e: String) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        self.back = None;
        self.decoder = Decoder::Done;
        Poll::Ready(Some(Err(BodyError(e))))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.decoder == Decoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Err(e) => return this.fail(e),
                Ok(Step::More) => {
                    conn.buf.reserve(READ_CHUNK);
                    match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) if this.eof_framed => {
                            this.back = None;
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Ok(0)) => return this.fail("the connection closed before the body ended".into()),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return this.fail(e.to_string()),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the test server does after answering a request.
    #[derive(Clone, Copy)]
    enum After {
        /// Keeps the connection open for the next request.
        Wait,
        /// Closes it (silently, as an idle keep-alive timeout would, or announced in a
        /// `Connection: close` header).
        Close { announce: bool },
        /// Keeps it open but sends bytes nobody asked for, 10 ms later.
        Junk,
    }

    /// A raw HTTP/1.1 server on loopback that counts connections; each request is answered
    /// with `hello` (except `GET /hang`, never answered), then it does `after`.
    async fn server(after: After) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests here carry no body: one ends at the blank line.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let hang = buf.starts_with(b"GET /hang ");
                            buf.drain(..end + 4);
                            if hang {
                                continue;
                            }
                            let conn = match after {
                                After::Close { announce: true } => "connection: close\r\n",
                                _ => "",
                            };
                            let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n{conn}\r\nhello");
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                            match after {
                                After::Wait => {}
                                After::Close { .. } => return,
                                After::Junk => {
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    let _ = s.write_all(b"junk").await;
                                }
                            }
                        }
                    }
                });
            }
        });
        (url, conns)
    }

    /// The origin of `url` and its `host` header's value.
    fn get(url: &str) -> (Origin, String) {
        let uri: Uri = format!("{url}/x").parse().unwrap();
        (Origin::of(&uri).unwrap(), uri.authority().unwrap().to_string())
    }

    /// `GET /x` with these headers.
    fn request<'a>(headers: &'a [(&'static str, &'a [u8])]) -> Outgoing<'a> {
        request_to("/x", headers, tokio::time::Instant::now() + Duration::from_secs(10))
    }

    /// `GET target` with these headers, its head due by `head_by`.
    fn request_to<'a>(
        target: &'a str,
        headers: &'a [(&'static str, &'a [u8])],
        head_by: tokio::time::Instant,
    ) -> Outgoing<'a> {
        Outgoing { method: "GET", target, headers, passed_on: None, body: UpBody::new(Vec::new()), head_by }
    }

    async fn read_all(c: &Client, url: &str) -> String {
        let (origin, host) = get(url);
        let resp = c.request(&origin, request(&[("host", host.as_bytes())])).await.unwrap();
        let body = resp.body.collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (url, conns) = server(After::Wait).await;
        let c = Client::new(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(read_all(&c, &url).await, "hello");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_whose_response_is_unread_is_not_handed_out() {
        let (url, conns) = server(After::Wait).await;
        let c = Client::new(Duration::from_secs(1));
        let (origin, host) = get(&url);
        // Headers only: the body is not read, so its connection is not free.
        let resp = c.request(&origin, request(&[("host", host.as_bytes())])).await.unwrap();
        let body = resp.body;
        let second = read_all(&c, &url).await;
        drop(body);
        assert_eq!(second, "hello");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_an_error() {
        for announce in [true, false] {
            let (url, conns) = server(After::Close { announce }).await;
            let c = Client::new(Duration::from_secs(1));
            for _ in 0..3 {
                assert_eq!(read_all(&c, &url).await, "hello");
                // Let the close reach this side, as it would on an idle keep-alive connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(conns.load(Ordering::SeqCst), 3, "announce_close={announce}");
        }
    }

    /// Bytes that arrive on an idle connection (an answer to nothing) make it unfit for reuse.
    #[tokio::test]
    async fn an_idle_connection_that_receives_bytes_is_not_reused() {
        let (url, conns) = server(After::Junk).await;
        let c = Client::new(Duration::from_secs(1));
        assert_eq!(read_all(&c, &url).await, "hello");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read_all(&c, &url).await, "hello");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    /// The head deadline holds on a reused connection whatever its timer did in between: moved
    /// earlier, fired while the connection was idle, or still standing from an earlier request.
    #[tokio::test]
    async fn the_head_deadline_holds_on_a_reused_connection() {
        let (url, conns) = server(After::Wait).await;
        let c = Client::new(Duration::from_secs(1));
        let (origin, host) = get(&url);
        let headers = [("host", host.as_bytes())];
        let within = |ms| tokio::time::Instant::now() + Duration::from_millis(ms);
        let fetch = |target, by| {
            let req = request_to(target, &headers, by);
            let (c, origin) = (&c, &origin);
            async move {
                let started = std::time::Instant::now();
                let resp = c.request(origin, req).await;
                let body = match resp {
                    Ok(r) => Ok(r.body.collect().await.unwrap().to_bytes()),
                    Err(e) => Err(e),
                };
                (body, started.elapsed())
            }
        };
        let hangs = |by| async move {
            let (hung, waited) = fetch("/hang", by).await;
            assert!(matches!(hung, Err(ClientError::Timeout)), "{:?}", hung.map(|b| b.len()));
            assert!(waited >= Duration::from_millis(190) && waited < Duration::from_secs(2), "{waited:?}");
        };
        // A connection made with a late deadline; an unanswered request on it with an earlier one.
        assert_eq!(&fetch("/x", within(10_000)).await.0.unwrap()[..], b"hello");
        hangs(within(200)).await;
        // The timed-out connection is not reused. The new one's timer fires while it is idle;
        // the next request is not cut short, and an unanswered one still gives up on time.
        assert_eq!(&fetch("/x", within(200)).await.0.unwrap()[..], b"hello");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(&fetch("/x", within(200)).await.0.unwrap()[..], b"hello");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
        hangs(within(200)).await;
        assert_eq!(&fetch("/x", within(1_000)).await.0.unwrap()[..], b"hello");
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(Duration::from_secs(1));
        let (origin, host) = get(&format!("http://127.0.0.1:{port}"));
        match c.request(&origin, request(&[("host", host.as_bytes())])).await {
            Err(ClientError::Connect(e)) => assert!(!e.is_empty()),
            other => panic!("expected a connect error, got {:?}", other.map(|r| r.status)),
        }
    }

    /// An https origin gets a TLS handshake that checks the certificate: a self-signed one is
    /// refused as a connect error (so a fallback can take over), never trusted.
    #[tokio::test]
    async fn an_untrusted_certificate_is_a_connect_error() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = std::env::temp_dir().join(format!("sr-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is needed for the TLS test");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            acceptor.accept(s).await.map(|_| ()).map_err(|e| e.to_string())
        });
        let c = Client::new(Duration::from_secs(2));
        let (origin, host) = get(&format!("https://localhost:{port}"));
        match c.request(&origin, request(&[("host", host.as_bytes())])).await {
            Err(ClientError::Connect(e)) => assert!(e.contains("TLS handshake") && e.contains("certificate"), "{e}"),
            other => panic!("expected a connect error, got {:?}", other.map(|r| r.status)),
        }
        assert!(server.await.unwrap().is_err(), "the server saw the client give up on its certificate");
        let _ = std::fs::remove_dir_all(dir);
    }
}
