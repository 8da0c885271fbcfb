//! The upstream client: HTTP/1.1 keep-alive connections pooled per origin (plain TCP or TLS), checked out by a request and returned when its response body ends.
//!
//! hyper-util's generic pool cost a spawned task, a boxed future and a connect future's
//! worth of copying per request (docs/performance.md); this one does what the router needs:
//! last-in first-out idle connections, a request that was never written retried on another
//! connection, a connection whose response was not read to the end never reused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::proxy::UpBody;

/// Idle connections kept per origin; the oldest goes first beyond this.
const MAX_IDLE_PER_ORIGIN: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, TLS handshake, connect timeout).
    Connect(String),
    /// The connection failed while sending or before the response head.
    Request(String),
}

/// A pool of upstream connections; cheap to clone, shared by every model with the same connect timeout.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<HashMap<Arc<str>, Vec<Idle>>>,
}

struct Idle {
    tx: SendRequest<UpBody>,
    since: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a request goes: the pool key and the URI the connector dials.
#[derive(Clone)]
pub struct Origin {
    key: Arc<str>,
    uri: Uri,
}

impl Origin {
    /// The origin of an absolute URI (`scheme://authority`), or None if it has no host.
    pub fn of(uri: &Uri) -> Option<Origin> {
        let (scheme, authority) = (uri.scheme()?, uri.authority()?);
        let key: Arc<str> = Arc::from(format!("{scheme}://{authority}"));
        let uri =
            Uri::builder().scheme(scheme.clone()).authority(authority.clone()).path_and_query("/").build().ok()?;
        Some(Origin { key, uri })
    }
}

impl Client {
    pub fn new(connect_timeout: Duration) -> Client {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client { inner: Arc::new(Inner { connector, idle: Mutex::new(HashMap::new()) }) }
    }

    /// Sends `req` (origin-form URI, Host set) to `origin` on a pooled connection, or a new one.
    pub async fn request(
        &self,
        origin: &Origin,
        mut req: Request<UpBody>,
    ) -> Result<Response<PooledBody>, ClientError> {
        loop {
            let (mut tx, reused) = match self.checkout(origin) {
                Some(tx) => (tx, true),
                None => (self.connect(origin).await?, false),
            };
            if reused && tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let back = Some(Return { tx, origin: origin.key.clone(), pool: self.inner.clone() });
                    let mut body = PooledBody { body, back };
                    if body.body.is_end_stream() {
                        body.give_back();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Never written (the connection closed while idle): another connection may do.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(ClientError::Request(error_chain(e.error()))),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<UpBody>> {
        let mut idle = lock(&self.inner.idle);
        let list = idle.get_mut(&origin.key)?;
        while let Some(c) = list.pop() {
            if !c.tx.is_closed() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.tx);
            }
        }
        None
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<UpBody>, ClientError> {
        let mut connector = self.inner.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let io: MaybeHttpsStream<TokioIo<TcpStream>> =
            connector.call(origin.uri.clone()).await.map_err(|e| ClientError::Connect(error_chain(&*e)))?;
        let (tx, conn) = http1::handshake(io).await.map_err(|e| ClientError::Connect(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

impl Inner {
    fn put(&self, origin: Arc<str>, tx: SendRequest<UpBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        let list = idle.entry(origin).or_default();
        list.retain(|c| !c.tx.is_closed());
        if list.len() >= MAX_IDLE_PER_ORIGIN {
            list.remove(0);
        }
        list.push(Idle { tx, since: Instant::now() });
    }
}

/// A connection on its way back to the pool once the body it carries has ended.
struct Return {
    tx: SendRequest<UpBody>,
    origin: Arc<str>,
    pool: Arc<Inner>,
}

/// A response body that returns its connection to the pool when it has been read to the end;
/// dropped early, the connection closes with it (HTTP/1 cannot abandon a response midway).
pub struct PooledBody {
    body: Incoming,
    back: Option<Return>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(r) = self.back.take() {
            r.pool.put(r.origin, r.tx);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An error and its causes on one line; hyper's top-level message alone says little.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A raw HTTP/1.1 server on loopback that counts connections. Each request is answered
    /// with `body`; `close_after` requests on a connection, it closes it (silently, as an idle
    /// keep-alive timeout would), and `announce_close` says so in a `Connection: close` header.
    async fn server(close_after: usize, announce_close: bool) -> (String, Arc<AtomicUsize>) {
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
                    let mut served = 0;
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests here carry no body: one ends at the blank line.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            served += 1;
                            let last = served >= close_after;
                            let conn = if last && announce_close { "connection: close\r\n" } else { "" };
                            let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n{conn}\r\nhello");
                            if s.write_all(resp.as_bytes()).await.is_err() || last {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, conns)
    }

    fn get(url: &str) -> (Origin, Request<UpBody>) {
        let uri: Uri = format!("{url}/x").parse().unwrap();
        let origin = Origin::of(&uri).unwrap();
        let req = Request::get("/x")
            .header(http::header::HOST, uri.authority().unwrap().as_str())
            .body(UpBody::new(Vec::new()))
            .unwrap();
        (origin, req)
    }

    async fn read_all(c: &Client, url: &str) -> String {
        let (origin, req) = get(url);
        let resp = c.request(&origin, req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (url, conns) = server(usize::MAX, false).await;
        let c = Client::new(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(read_all(&c, &url).await, "hello");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_whose_response_is_unread_is_not_handed_out() {
        let (url, conns) = server(usize::MAX, false).await;
        let c = Client::new(Duration::from_secs(1));
        let (origin, req) = get(&url);
        // Headers only: the body is not read, so its connection is not free.
        let resp = c.request(&origin, req).await.unwrap();
        let (_, body) = resp.into_parts();
        let second = read_all(&c, &url).await;
        drop(body);
        assert_eq!(second, "hello");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_an_error() {
        for announce in [true, false] {
            let (url, conns) = server(1, announce).await;
            let c = Client::new(Duration::from_secs(1));
            for _ in 0..3 {
                assert_eq!(read_all(&c, &url).await, "hello");
                // Let the close reach this side, as it would on an idle keep-alive connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(conns.load(Ordering::SeqCst), 3, "announce_close={announce}");
        }
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(Duration::from_secs(1));
        let (origin, req) = get(&format!("http://127.0.0.1:{port}"));
        match c.request(&origin, req).await {
            Err(ClientError::Connect(e)) => assert!(!e.is_empty()),
            other => panic!("expected a connect error, got {:?}", other.map(|r| r.status())),
        }
    }
}
