//! Listeners: the accept loop, HTTP/1.1 connections of our own (`conn`, `codec`), and the graceful drain.

mod codec;
mod conn;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::proxy::RespBody;

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
    stop: CancellationToken,
    drain: Duration,
) where
    F: Fn(Request<ReqBody>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
    L: Fn() -> u64 + Send + Sync + 'static,
{
    let settings = Arc::new(conn::Settings { handler, body_limit, stop: stop.clone() });
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

    /// A server whose handler echoes the body (or names the body error); `/slow` waits until
    /// dropped, counting drops; `/stream` sends three frames of unknown length.
    async fn server(
        limit: u64,
    ) -> (std::net::SocketAddr, CancellationToken, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let handler = move |req: Request<ReqBody>| {
            let d = d.clone();
            async move {
                match req.uri().path() {
                    "/slow" => {
                        struct Count(Arc<AtomicUsize>);
                        impl Drop for Count {
                            fn drop(&mut self) {
                                self.0.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        let _count = Count(d);
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    "/stream" => {
                        let frames = futures_util::stream::iter(["a", "bb", "ccc"].map(|s| {
                            Ok::<_, crate::proxy::BoxError>(http_body::Frame::data(Bytes::from_static(s.as_bytes())))
                        }));
                        Response::new(http_body_util::StreamBody::new(frames).boxed_unsync())
                    }
                    _ => match req.into_body() {
                        Ok(b) => Response::new(full(b)),
                        Err(e) => {
                            let mut r = Response::new(full(Bytes::from(e.to_string())));
                            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                            r
                        }
                    },
                }
            }
        };
        let task = tokio::spawn(serve(listener, handler, move || limit, stop.clone(), Duration::from_secs(5)));
        (addr, stop, dropped, task)
    }

    /// Sends `raw`, then reads until the server closes or `until` appears; returns what was read.
    async fn exchange(conn: &mut TcpStream, raw: &[u8], until: Option<&str>) -> String {
        conn.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if until.is_some_and(|u| String::from_utf8_lossy(&got).matches(u).count() > 0) {
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

    #[tokio::test]
    async fn keep_alive_pipelining_and_chunked_request_bodies() {
        let (addr, ..) = server(1024).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Two requests in one write, the second with a chunked body; both answered in order.
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
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
    async fn bodies_over_the_limit_are_answered_then_closed() {
        let (addr, ..) = server(4).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789", None).await;
        assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
        assert!(got.contains("connection: close") && got.ends_with("request body larger than 4 bytes"), "{got}");
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n", None)
                .await;
        assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
    }

    #[tokio::test]
    async fn expect_continue_gets_100_before_the_body() {
        let (addr, ..) = server(1024).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", Some("\r\n\r\n"))
                .await;
        assert_eq!(got, "HTTP/1.1 100 Continue\r\n\r\n");
        let got = exchange(&mut c, b"ok", Some("\r\n\r\nok")).await;
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    }

    #[tokio::test]
    async fn malformed_heads_get_an_openai_shaped_400() {
        let (addr, ..) = server(1024).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut c, b"NOT HTTP AT ALL\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n") && got.contains("connection: close"), "{got}");
        let body: serde_json::Value = serde_json::from_str(&got[got.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{got}");
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got =
            exchange(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", None).await;
        assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    }

    #[tokio::test]
    async fn bodies_of_unknown_length_are_chunked_or_closed_by_version() {
        let (addr, ..) = server(1024).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut c, b"GET /stream HTTP/1.1\r\n\r\n", Some("0\r\n\r\n")).await;
        assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n"), "{got}");
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut c, b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", None).await;
        assert!(got.contains("connection: close\r\n") && !got.contains("chunked"), "{got}");
        assert!(got.ends_with("\r\n\r\nabbccc"), "{got}");
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_its_request_and_drain_closes_idle_connections() {
        let (addr, stop, dropped, task) = server(1024).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /slow HTTP/1.1\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(c);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the handler was not cancelled");
        // An idle keep-alive connection closes at once on stop, and serve returns.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut idle, b"GET /x HTTP/1.1\r\n\r\n", Some("\r\n\r\n")).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("drain did not finish").unwrap();
        let mut rest = [0u8; 16];
        assert_eq!(idle.read(&mut rest).await.unwrap(), 0);
    }
}
