//! Event streams as response bodies: `GET /sessions/:key/events` and a run's
//! `GET …/runs/:runId/events`. Each is a cursor into the session's log: it writes `retry:` and
//! its first frame, then copies out the shared frames as the log grows, with a `: ping` comment
//! when the stream has been idle for `sse.heartbeatMs`. It ends when its cursor does (the
//! session ended, the reader fell too far behind, or the run it follows ended).
//!
//! Dropping the body (the client went away) drops the cursor, which unregisters the reader
//! at once rather than at the next event.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame as BodyFrame, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::Response;
use tokio::time::{Instant, Sleep};

use crate::events::Frame;
use crate::session::{Cursor, Step};

use super::body::{self, Body as BoxBody};

const PING: &[u8] = b": ping\n\n";

/// How long a client waits before it reconnects (SPEC section 10).
pub const RETRY: &[u8] = b"retry: 2000\n\n";

/// Frames already waiting are written together up to about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

pub struct SseBody {
    cursor: Cursor,
    /// `retry:` and the first frame, written before anything from the log.
    first: Option<Bytes>,
    heartbeat: Duration,
    idle: Pin<Box<Sleep>>,
    done: bool,
}

impl SseBody {
    /// A stream that starts with `retry:` and `first` (the `hello`, when there is one).
    pub fn new(cursor: Cursor, first: Option<&Frame>, heartbeat: Duration) -> SseBody {
        let mut start = BytesMut::with_capacity(RETRY.len() + first.map_or(0, Frame::len));
        start.extend_from_slice(RETRY);
        if let Some(frame) = first {
            start.extend_from_slice(&frame.sse());
        }
        SseBody {
            cursor,
            first: Some(start.freeze()),
            heartbeat,
            idle: Box::pin(tokio::time::sleep(heartbeat)),
            done: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(BodyFrame::data(first))));
        }
        let polled = self.cursor.poll_bytes(cx, BATCH_BYTES, |entry| {
            entry.frame.as_ref().map(Frame::sse)
        });
        let data = match polled {
            Poll::Ready((data, step)) => {
                self.done = matches!(step, Step::Done(_));
                data
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    let next = Instant::now() + self.heartbeat;
                    self.idle.as_mut().reset(next);
                    return Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from_static(PING)))));
                }
                return Poll::Pending;
            }
        };
        match data {
            Some(data) => {
                let next = Instant::now() + self.heartbeat;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(BodyFrame::data(data))))
            }
            None if self.done => Poll::Ready(None),
            // Entries were skipped (not this reader's): look again at once.
            None => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The event-stream headers of the seed.
pub fn response(body: BoxBody) -> Response<BoxBody> {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    res
}

pub fn stream(cursor: Cursor, first: Option<&Frame>, heartbeat: Duration) -> Response<BoxBody> {
    use http_body_util::BodyExt;
    response(SseBody::new(cursor, first, heartbeat).boxed_unsync())
}

/// HEAD on the events route: the headers, no subscription.
pub fn head() -> Response<BoxBody> {
    response(body::empty())
}
