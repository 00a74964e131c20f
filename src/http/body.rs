//! Response bodies, JSON responses, and reading a request's JSON body within its limit.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use std::convert::Infallible;

/// Every response body: a full buffer, nothing, or a stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().boxed_unsync()
}

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(full(bytes));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    res
}

pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct E<'a> {
        error: &'a str,
    }
    json(status, &E { error: message })
}

/// Why a body could not be read as a JSON object.
#[derive(Debug)]
pub enum BodyError {
    TooLarge(usize),
    /// Refused by its declared length, before any of it was read.
    TooLargeDeclared(usize),
    Invalid,
    /// The client went away or the stream broke mid-upload.
    Broken,
    /// The body did not arrive within `limits.bodyTimeoutMs`: the connection closes.
    TimedOut(std::time::Duration),
}

impl BodyError {
    pub fn response(&self) -> Response<Body> {
        match self {
            BodyError::TooLarge(limit) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body too large (limit {limit} bytes)"),
            ),
            BodyError::TooLargeDeclared(limit) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body too large (limit {limit} bytes)"),
            ),
            BodyError::Invalid => error(StatusCode::BAD_REQUEST, "Invalid JSON body"),
            BodyError::Broken => error(StatusCode::BAD_REQUEST, "Request body could not be read"),
            BodyError::TimedOut(limit) => {
                let mut res = error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("Request body timed out (limit {} ms)", limit.as_millis()),
                );
                res.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                res
            }
        }
    }
}

/// Reads the body as a JSON object. An empty body is `{}` (as in the seed); anything that is
/// not an object is `Invalid`. A declared or actual length past `limit` stops reading at once.
pub async fn read_json_object(
    req: Request<Incoming>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Map<String, Value>, BodyError> {
    let bytes = read_bytes(req, limit, timeout).await?;
    parse_object(&bytes)
}

/// Reads the whole body within `limit` bytes and `timeout`: a client that sends its body
/// slowly, or not at all, cannot hold the connection (and its slot) for longer.
pub async fn read_bytes(
    req: Request<Incoming>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError> {
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > limit as u64 {
            // What the client is already sending is read and dropped (within bounds) beside the
            // answer, so the 413 reaches it instead of a reset from a socket closed with unread
            // data.
            tokio::spawn(discard(req.into_body(), timeout));
            return Err(BodyError::TooLargeDeclared(limit));
        }
    }
    let mut body = req.into_body();
    let read = async {
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(BodyError::Broken);
            };
            if let Some(data) = frame.data_ref() {
                if buf.len() + data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                buf.extend_from_slice(data);
            }
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(Err(BodyError::TooLarge(limit))) => {
            // As for a declared length: the rest is drained so the 413 is read, not reset.
            tokio::spawn(discard(body, timeout));
            Err(BodyError::TooLarge(limit))
        }
        Ok(result) => result,
    }
}

/// Bytes drained of a refused body before the connection is closed anyway; the time is the
/// body's own (`limits.bodyTimeoutMs`), which the client had to send it in the first place.
const DISCARD_MAX_BYTES: usize = 16 * 1024 * 1024;

async fn discard(mut body: Incoming, timeout: std::time::Duration) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > DISCARD_MAX_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// The pure half of [`read_json_object`].
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(BodyError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_are_accepted() {
        assert!(parse_object(b"").expect("empty is {}").is_empty());
        assert!(parse_object(b" \n").expect("blank is {}").is_empty());
        assert!(parse_object(br#"{"text":"hi"}"#).is_ok());
        for bad in [&b"[1]"[..], b"\"s\"", b"null", b"{", b"{\"a\":}", b"12"] {
            assert!(
                matches!(parse_object(bad), Err(BodyError::Invalid)),
                "{bad:?}"
            );
        }
    }
}
