//! `GET /sessions/:key/events` as a response body: frames from the subscription, a `: ping`
//! comment when the stream has been idle for `sse.heartbeatMs`, and an end when the
//! subscription's channel closes (stop, reset, or the reader fell too far behind).
//!
//! Dropping the body (the client went away) drops the subscription guard, which removes the
//! subscriber from its session at once rather than at the next event.

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

use crate::session::Subscription;

use super::body::{self, Body as BoxBody};

const PING: &[u8] = b": ping\n\n";

/// Frames already waiting are written together up to about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

pub struct SseBody {
    sub: Subscription,
    heartbeat: Duration,
    idle: Pin<Box<Sleep>>,
    done: bool,
}

impl SseBody {
    pub fn new(sub: Subscription, heartbeat: Duration) -> SseBody {
        SseBody {
            sub,
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
        match self.sub.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                let next = Instant::now() + self.heartbeat;
                self.idle.as_mut().reset(next);
                // One frame goes out as the shared buffer itself; a burst that is already
                // waiting goes out as one write instead of one per event.
                let first = frame.sse();
                let Ok(second) = self.sub.rx.try_recv() else {
                    return Poll::Ready(Some(Ok(BodyFrame::data(first))));
                };
                let mut batch = BytesMut::with_capacity(first.len() * 4);
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second.sse());
                while batch.len() < BATCH_BYTES {
                    match self.sub.rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more.sse()),
                        Err(_) => break,
                    }
                }
                return Poll::Ready(Some(Ok(BodyFrame::data(batch.freeze()))));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            let next = Instant::now() + self.heartbeat;
            self.idle.as_mut().reset(next);
            return Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from_static(PING)))));
        }
        Poll::Pending
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

pub fn stream(sub: Subscription, heartbeat: Duration) -> Response<BoxBody> {
    use http_body_util::BodyExt;
    response(SseBody::new(sub, heartbeat).boxed_unsync())
}

/// HEAD on the events route: the headers, no subscription.
pub fn head() -> Response<BoxBody> {
    response(body::empty())
}
