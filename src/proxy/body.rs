//! Bodies on the proxy path: the upstream request body, and the response body observed on its way to the client.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::capture::{Capture, Captured, Format};
use super::BoxError;
use crate::client::UpstreamBody;

/// The request body sent upstream: the client's bytes as one or more shared slices, written
/// by the upstream client (`client/`) behind the request head.
#[derive(Debug, Default)]
pub struct UpBody {
    chunks: VecDeque<Bytes>,
}

impl UpBody {
    pub fn new(mut chunks: Vec<Bytes>) -> UpBody {
        chunks.retain(|c| !c.is_empty());
        // In place: the list's own buffer becomes the queue's.
        UpBody { chunks: VecDeque::from(chunks) }
    }

    pub fn into_chunks(self) -> VecDeque<Bytes> {
        self.chunks
    }
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    IdleTimeout,
    TotalTimeout,
    UpstreamError,
    /// The client went away before the end.
    ClientGone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::TotalTimeout => "total_timeout",
            Outcome::UpstreamError => "stream_error",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// What the observer learns when the body ends, however it ends.
pub struct Finished {
    pub outcome: Outcome,
    pub answer: Answer,
    /// When the body ended.
    pub at: Instant,
    /// When the first data frame arrived, if one did.
    pub first_byte_at: Option<Instant>,
}

/// What the capture holds when the body ends: read there when it only meters usage (cheap);
/// handed over unread when the answer is to be compared, so that its reader (the shadow job, in
/// its own task) reads it outside the client's write, not inside the write's batch.
pub enum Answer {
    Read(Captured),
    Unread(Box<Capture>),
}

impl Answer {
    pub fn read(self) -> Captured {
        match self {
            Answer::Read(captured) => captured,
            Answer::Unread(mut capture) => capture.finish(),
        }
    }
}

/// The upstream's body passed through frame by frame as it arrives, with an idle and a
/// total deadline, feeding a bounded capture, and reporting once to `F` when it ends.
pub struct Observed<F: FnOnce(Finished)> {
    inner: UpstreamBody,
    idle: Duration,
    total_deadline: tokio::time::Instant,
    /// When the body gives up: the earlier of the idle and total deadlines. None until the body
    /// first has to wait after a frame (or at the start), when the idle clock starts: a body whose
    /// frames are ready when polled reads no clock for it.
    deadline: Option<tokio::time::Instant>,
    /// One timer for both clocks, made and set to `deadline` only when the body has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    capture: Option<Capture>,
    on_finish: Option<F>,
    first_byte_at: Option<Instant>,
}

/// A body deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("upstream stream {0}")]
pub struct StreamTimeout(&'static str);

impl<F: FnOnce(Finished)> Observed<F> {
    pub fn new(
        inner: UpstreamBody,
        idle: Duration,
        total_deadline: Instant,
        capture: Capture,
        on_finish: F,
    ) -> Observed<F> {
        Observed {
            inner,
            idle,
            total_deadline: tokio::time::Instant::from_std(total_deadline),
            deadline: None,
            timer: None,
            capture: Some(capture),
            on_finish: Some(on_finish),
            first_byte_at: None,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let (Some(done), Some(capture)) = (self.on_finish.take(), self.capture.as_mut()) {
            if outcome != Outcome::Complete {
                capture.cut_short();
            }
            let answer = match capture.is_usage_only() {
                true => Answer::Read(capture.finish()),
                false => Answer::Unread(Box::new(std::mem::replace(capture, Capture::usage_only(Format::Other, 0)))),
            };
            self.capture = None;
            done(Finished { outcome, answer, at: Instant::now(), first_byte_at: self.first_byte_at });
        }
    }
}

impl<F: FnOnce(Finished) + Unpin> Body for Observed<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(capture)) = (frame.data_ref(), this.capture.as_mut()) {
                    this.first_byte_at.get_or_insert_with(Instant::now);
                    capture.push(data);
                }
                this.deadline = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Outcome::UpstreamError);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let (idle, total) = (this.idle, this.total_deadline);
                let deadline = *this.deadline.get_or_insert_with(|| (tokio::time::Instant::now() + idle).min(total));
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let (outcome, what) = if tokio::time::Instant::now() >= this.total_deadline {
                    (Outcome::TotalTimeout, "exceeded the total timeout")
                } else {
                    (Outcome::IdleTimeout, "was idle for longer than the idle timeout")
                };
                this.finish(outcome);
                Poll::Ready(Some(Err(Box::new(StreamTimeout(what)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(Finished)> Drop for Observed<F> {
    fn drop(&mut self) {
        let outcome = if self.inner.is_end_stream() { Outcome::Complete } else { Outcome::ClientGone };
        self.finish(outcome);
    }
}
