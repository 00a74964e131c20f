//! Forwarding a request to the node that owns its session (SPEC section 15).
//!
//! The request goes out as it came (method, path and query, headers, a streamed body) with
//! `Host` set to the owner's address, the hop-by-hop headers and the browser's own headers
//! left out (this node has already checked them), and `x-pi-gateway-hop` naming this node:
//! a node that gets a hop for a session it does not own answers `503` instead of forwarding it
//! again. The owner's answer streams back as it is, chat and event streams included.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, HOST, RETRY_AFTER};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::body::{error, Body};

/// The header a forwarded request carries: the node that forwarded it.
pub const HOP_HEADER: &str = "x-pi-gateway-hop";

/// How long reaching the owner may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers that belong to one connection, or to the browser this node already checked.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "origin",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
];

fn client() -> &'static Client<HttpConnector, Incoming> {
    static CLIENT: OnceLock<Client<HttpConnector, Incoming>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(http)
    })
}

/// Whether `req` was forwarded by another node.
pub fn is_hop(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(HOP_HEADER)
}

/// Forwards `req` to `owner_url` (`http://host:port`, as the owner advertises itself) on
/// behalf of node `node_id`. An owner that cannot be reached is a `503` with `Retry-After`.
pub async fn forward(req: Request<Incoming>, owner_url: &str, node_id: &str) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: Uri = match format!("{}{path}", owner_url.trim_end_matches('/')).parse() {
        Ok(uri) => uri,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Cannot forward to the session's owner at {owner_url}: {e}"),
            )
        }
    };
    for name in DROPPED {
        parts.headers.remove(*name);
    }
    if let Some(authority) = uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(HOST, host);
        }
    }
    if let Ok(node) = HeaderValue::from_str(node_id) {
        parts
            .headers
            .insert(HeaderName::from_static(HOP_HEADER), node);
    }
    parts.uri = uri;
    match client().request(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            for name in DROPPED {
                parts.headers.remove(*name);
            }
            Response::from_parts(parts, StopOnError(body).boxed_unsync())
        }
        Err(e) => {
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The session's owner ({owner_url}) cannot be reached: {e}"),
            );
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
    }
}

/// `GET owner_url + path` as node `node_id` (with the gateway's bearer token): the body of a
/// `200`, else `None`. For what a node asks the owner itself (a replica's snapshot).
pub async fn get_json(
    owner_url: &str,
    path: &str,
    token: Option<&str>,
    node_id: &str,
) -> Option<Bytes> {
    static CLIENT: OnceLock<Client<HttpConnector, http_body_util::Empty<Bytes>>> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Client::builder(TokioExecutor::new()).build(http)
    });
    let uri: Uri = format!("{}{path}", owner_url.trim_end_matches('/'))
        .parse()
        .ok()?;
    let mut req = Request::get(uri.clone()).header(HOP_HEADER, node_id);
    if let Some(authority) = uri.authority() {
        req = req.header(HOST, authority.as_str());
    }
    if let Some(token) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(http_body_util::Empty::new()).ok()?;
    let res = tokio::time::timeout(CONNECT_TIMEOUT, client.request(req))
        .await
        .ok()?
        .ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    let body = tokio::time::timeout(CONNECT_TIMEOUT, res.into_body().collect())
        .await
        .ok()?
        .ok()?;
    Some(body.to_bytes())
}

/// The owner's response body; an error mid-stream (the owner went away) ends it, as the
/// owner's own connection closing would.
struct StopOnError(Incoming);

impl HttpBody for StopOnError {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
