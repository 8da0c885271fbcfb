//! Listeners: the accept loop, HTTP/1.1 connections of our own (`conn`, `codec`), and the graceful drain.

mod codec;
mod conn;

pub use conn::Timeouts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, Uri, Version};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxy::RespBody;
use crate::raw_headers::RawHeaders;

/// A request as handlers get it: its head as it arrived, header lines unparsed (no header map
/// is built for the few a handler reads), and its body, read whole.
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: RawHeaders,
    pub body: ReqBody,
}

/// A response as a handler hands it to the server.
pub enum Reply {
    /// Built with the `http` types (admin, the simulator, the router's own answers): its header
    /// map is written less the framing and connection headers, which the server decides (a
    /// `connection: close` in it closes the connection after the response).
    Built(Response<RespBody>),
    /// Relayed from an upstream: the router's own header lines, then the upstream's end-to-end
    /// lines as they arrived (a name in both is written once, the router's), and the body; no
    /// header map is built for it.
    Relayed { status: StatusCode, own: Vec<(&'static str, HeaderValue)>, passed_on: RawHeaders, body: RespBody },
}

impl From<Response<RespBody>> for Reply {
    fn from(resp: Response<RespBody>) -> Reply {
        Reply::Built(resp)
    }
}

/// A request body as the handler gets it: read whole by the server first.
pub type ReqBody = Result<Bytes, BodyError>;

/// Why the server could not hand over a request body; the connection closes after the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// Serves connections until `stop` is cancelled, then lets in-flight requests and streams
/// finish for up to `drain`, then closes what is left and returns. `body_limit` is read for each request: a body
/// larger than it is not read, and the handler gets `BodyError::TooLarge`.
pub async fn serve<F, Fut, L>(
    listener: TcpListener,
    handler: F,
    body_limit: L,
    timeouts: Timeouts,
    stop: CancellationToken,
    drain: Duration,
) where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
    L: Fn() -> u64 + Send + Sync + 'static,
{
    let settings = Arc::new(conn::Settings { handler, body_limit, stop: stop.clone(), timeouts });
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let settings = Arc::clone(&settings);
        conns.spawn(async move { conn::run(stream, &settings).await });
    }
    drop(listener);
    // Idle connections close at once on `stop`; busy ones after their current response.
    let drained = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() && !drain.is_zero() {
        tracing::warn!(left = conns.len(), "drain timeout reached; closing the remaining connections");
    }
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::proxy::full;

    /// Counts drops of what it guards.
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(s: &'static str) -> Result<http_body::Frame<Bytes>, crate::proxy::BoxError> {
        Ok(http_body::Frame::data(Bytes::from_static(s.as_bytes())))
    }

    struct Server {
        addr: std::net::SocketAddr,
        stop: CancellationToken,
        /// Handlers (`/slow`) and bodies (`/forever`) dropped so far.
        dropped: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    /// A server whose handler echoes the body (413 for a body over `limit`, 400 for a broken
    /// one); `/slow` never answers; `/stream` sends three frames at once; `/late` sends its one
    /// frame after 300 ms; `/wait` answers after 300 ms; `/forever` sends one frame and then nothing.
    async fn server(limit: u64, timeouts: Timeouts) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let handler = move |req: Request| {
            let d = d.clone();
            async move {
                let stream = |frames: futures_util::stream::BoxStream<'static, _>| {
                    Response::new(http_body_util::StreamBody::new(frames).boxed_unsync())
                };
                use futures_util::StreamExt;
                Reply::from(match req.uri.path() {
                    "/slow" => {
                        let _count = Count(d);
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    "/stream" => stream(futures_util::stream::iter([frame("a"), frame("bb"), frame("ccc")]).boxed()),
                    "/late" => stream(
                        futures_util::stream::once(async {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            frame("late")
                        })
                        .boxed(),
                    ),
                    "/badlen" | "/nocontent" => {
                        let mut r = Response::new(full(Bytes::from_static(b"xyz")));
                        let (len, status) = if req.uri.path() == "/badlen" {
                            ("abc", StatusCode::OK)
                        } else {
                            ("5", StatusCode::NO_CONTENT)
                        };
                        *r.status_mut() = status;
                        r.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static(len));
                        r
                    }
                    "/broken" => {
                        stream(futures_util::stream::iter([frame("part"), Err("upstream broke".into())]).boxed())
                    }
                    "/wait" => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Response::new(full(Bytes::from_static(b"waited")))
                    }
                    "/forever" => {
                        let count = Count(d);
                        let rest = futures_util::stream::pending().map(move |x| {
                            let _ = &count;
                            x
                        });
                        stream(futures_util::stream::iter([frame("first")]).chain(rest).boxed())
                    }
                    _ => {
                        let (status, body) = match req.body {
                            Ok(b) => (StatusCode::OK, b),
                            Err(e @ BodyError::TooLarge { .. }) => {
                                (StatusCode::PAYLOAD_TOO_LARGE, e.to_string().into())
                            }
                            Err(e @ BodyError::Invalid(_)) => (StatusCode::BAD_REQUEST, e.to_string().into()),
                        };
                        let mut r = Response::new(full(body));
                        *r.status_mut() = status;
                        r
                    }
                })
            }
        };
        let task =
            tokio::spawn(serve(listener, handler, move || limit, timeouts, stop.clone(), Duration::from_secs(5)));
        Server { addr, stop, dropped, task }
    }

    fn short() -> Timeouts {
        let t = Duration::from_millis(300);
        Timeouts { head: t, body_idle: t, send_idle: t }
    }

    /// Sends `raw`, then reads until the server closes or `until` appears; returns what was read.
    async fn exchange(conn: &mut TcpStream, raw: &[u8], until: Option<&str>) -> String {
        conn.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if until.is_some_and(|u| String::from_utf8_lossy(&got).contains(u)) {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => panic!("no answer; got so far: {}", String::from_utf8_lossy(&got)),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    async fn wait_for(count: &AtomicUsize, n: usize) -> bool {
        for _ in 0..100 {
            if count.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn keep_alive_pipelining_and_chunked_request_bodies() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        // Two requests in one write, the second with a chunked body; both answered in order.
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        let got = exchange(&mut c, raw, Some("abcde")).await;
        let first = got.find("hello").expect(&got);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("content-length: 5\r\n") && got.contains("date: "), "{got}");
        assert!(got[first..].contains("HTTP/1.1 200 OK\r\n") && got.ends_with("abcde"), "{got}");
        assert!(!got.contains("connection: close"), "{got}");
        // The connection is still open for a third.
        let got = exchange(&mut c, b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("connection: close\r\n"), "{got}");
    }

    #[tokio::test]
    async fn the_head_timeout_runs_from_the_end_of_the_last_response() {
        // Head timeout 300 ms. Requests 200 ms apart carry the connection past 300 ms from its
        // start (the timer, moved lazily, fires then and must move on, not close); once idle, it
        // closes about 300 ms after the last response.
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        for word in ["one", "two", "three"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{word}", word.len());
            let got = exchange(&mut c, raw.as_bytes(), Some(word)).await;
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with(word), "{got}");
            if word != "three" {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let idle = std::time::Instant::now();
        let mut rest = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), c.read(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "the idle connection was not closed: {read:?}");
        let waited = idle.elapsed();
        assert!(waited >= Duration::from_millis(250), "closed {waited:?} after the last response");
    }

    #[tokio::test]
    async fn a_body_in_several_reads_is_read_whole() {
        let s = server(1 << 20, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let body = "x".repeat(100_000);
        c.write_all(format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).await.unwrap();
        for part in body.as_bytes().chunks(30_000) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.write_all(part).await.unwrap();
        }
        let got = exchange(&mut c, b"GET /next HTTP/1.1\r\nConnection: close\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n"), "{}", &got[..200]);
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_answered_then_closed() {
        let s = server(4, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789", None).await;
        assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
        assert!(got.contains("connection: close") && got.ends_with("request body larger than 4 bytes"), "{got}");
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n", None)
                .await;
        assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
    }

    #[tokio::test]
    async fn chunk_lines_must_be_strict() {
        let s = server(1024, short()).await;
        for bad in
            ["5\nhello\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n", " 5\r\nhello\r\n0\r\n\r\n", "5;a\nhello\r\n0\r\n\r\n"]
        {
            let mut c = TcpStream::connect(s.addr).await.unwrap();
            let raw = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{bad}");
            let got = exchange(&mut c, raw.as_bytes(), None).await;
            assert!(got.starts_with("HTTP/1.1 400 ") && got.contains("connection: close"), "{bad:?}: {got}");
        }
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 501 "), "{got}");
    }

    #[tokio::test]
    async fn expect_continue_gets_100_before_the_body() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", Some("\r\n\r\n"))
                .await;
        assert_eq!(got, "HTTP/1.1 100 Continue\r\n\r\n");
        let got = exchange(&mut c, b"ok", Some("\r\n\r\nok")).await;
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    }

    #[tokio::test]
    async fn malformed_heads_get_an_openai_shaped_400() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"NOT HTTP AT ALL\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n") && got.contains("connection: close"), "{got}");
        let body: serde_json::Value = serde_json::from_str(&got[got.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{got}");
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    }

    #[tokio::test]
    async fn bodies_of_unknown_length_are_chunked_or_closed_by_version() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"GET /stream HTTP/1.1\r\n\r\n", Some("0\r\n\r\n")).await;
        assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n"), "{got}");
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", None).await;
        assert!(got.contains("connection: close\r\n") && !got.contains("chunked"), "{got}");
        assert!(got.ends_with("\r\n\r\nabbccc"), "{got}");
    }

    #[tokio::test]
    async fn the_head_goes_out_before_a_slow_first_frame() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let started = std::time::Instant::now();
        let head = exchange(&mut c, b"GET /late HTTP/1.1\r\n\r\n", Some("\r\n\r\n")).await;
        assert!(started.elapsed() < Duration::from_millis(250), "the head waited for the body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && !head.contains("late"), "{head}");
        let rest = exchange(&mut c, b"", Some("0\r\n\r\n")).await;
        assert_eq!(rest, "4\r\nlate\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_its_request_or_its_stream() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /slow HTTP/1.1\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(c);
        assert!(wait_for(&s.dropped, 1).await, "the handler was not cancelled");
        // A stream waiting for its next frame: the client's close drops the body.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"GET /forever HTTP/1.1\r\n\r\n", Some("first\r\n")).await;
        assert!(got.ends_with("5\r\nfirst\r\n"), "{got}");
        assert_eq!(s.dropped.load(Ordering::SeqCst), 1);
        drop(c);
        assert!(wait_for(&s.dropped, 2).await, "the stream's body was not dropped");
    }

    #[tokio::test]
    async fn drain_closes_idle_connections_at_once_and_busy_ones_after_their_response() {
        let long = Timeouts { head: Duration::from_secs(30), ..short() };
        let s = server(1024, long).await;
        let mut idle = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut idle, b"GET /x HTTP/1.1\r\n\r\n", Some("\r\n\r\n")).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        let mut busy = TcpStream::connect(s.addr).await.unwrap();
        busy.write_all(b"GET /wait HTTP/1.1\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.stop.cancel();
        let mut rest = [0u8; 16];
        let started = std::time::Instant::now();
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), idle.read(&mut rest)).await.unwrap().unwrap(), 0);
        assert!(started.elapsed() < Duration::from_millis(200), "the idle connection was not closed at once");
        let got = exchange(&mut busy, b"", None).await;
        assert!(got.contains("connection: close\r\n") && got.ends_with("waited"), "{got}");
        tokio::time::timeout(Duration::from_secs(3), s.task).await.expect("drain did not finish").unwrap();
    }

    #[tokio::test]
    async fn clients_that_stall_are_given_up() {
        let s = server(1 << 20, short()).await;
        // A head that never completes, and a body that stops halfway: both closed, no answer.
        for raw in [&b"POST / HTTP/1.1\r\nContent-Le"[..], b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345"] {
            let mut c = TcpStream::connect(s.addr).await.unwrap();
            let started = std::time::Instant::now();
            assert_eq!(exchange(&mut c, raw, None).await, "");
            assert!(started.elapsed() < Duration::from_secs(3));
        }
        // A client that sends requests but never reads: once the socket buffers are full the
        // server stops waiting and closes.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let big = vec![b'x'; 1 << 20];
        let mut req = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        req.extend_from_slice(&big);
        let writer = async {
            for _ in 0..64 {
                if c.write_all(&req).await.is_err() {
                    return true;
                }
            }
            false
        };
        let closed =
            tokio::time::timeout(Duration::from_secs(10), writer).await.expect("the server kept the connection");
        assert!(closed, "the server kept reading from a client that never reads");
    }

    #[tokio::test]
    async fn lengths_the_handler_got_wrong_are_not_sent_on() {
        let s = server(1024, short()).await;
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let got = exchange(&mut c, b"GET /badlen HTTP/1.1\r\n\r\n", Some("xyz")).await;
        assert!(got.contains("content-length: 3\r\n") && !got.contains("abc"), "{got}");
        let got = exchange(&mut c, b"GET /nocontent HTTP/1.1\r\nConnection: close\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 204 ") && !got.contains("content-length"), "{got}");
        assert!(got.ends_with("\r\n\r\n"), "a 204 carried a body: {got}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_resets_the_connection() {
        let s = server(1024, short()).await;
        // Close-delimited (HTTP/1.0): only a reset tells the client the body is cut short.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /broken HTTP/1.0\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("no end") {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e.kind()),
            }
        };
        assert_eq!(ended, Err(std::io::ErrorKind::ConnectionReset));
    }
}
