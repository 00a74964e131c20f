//! Routing, auth and the route handlers (SPEC section 4), as one flat match.
//!
//! Order matters and follows the seed: `/health` and `/ready` first, then webhooks (which
//! carry their own secret instead of the bearer token), then bearer auth for everything
//! else — so an unauthenticated client learns nothing about which paths exist.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, VARY};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::CorsOrigins;
use crate::session::{tap, Gateway, MessageRequest, MessageResult, Outcome, SessionError};
use crate::util::{constant_time_eq, CatchPanic};
use crate::validate;

use super::body::{self, error, json, read_json_object, Body};
use super::chat::{self, extract_user_text, ChatBody};
use super::sse;

/// Session keys longer than this (after decoding) are refused.
pub const MAX_KEY_BYTES: usize = validate::MAX_KEY_BYTES;

/// Enables `GET /__test/panic`, which panics inside the handler (for the panic-containment test).
pub const TEST_PANIC_ENV: &str = "PI_GATEWAY_TEST_PANIC_ROUTE";

pub struct Ctx {
    pub gateway: Gateway,
    panic_route: bool,
}

impl Ctx {
    pub fn new(gateway: Gateway) -> Ctx {
        Ctx {
            gateway,
            panic_route: std::env::var_os(TEST_PANIC_ENV).is_some(),
        }
    }
}

/// Why the guard refused a request, before anything was read or queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Host,
    Origin,
    CrossSite,
    ContentType(String),
}

impl Refusal {
    fn response(&self) -> Response<Body> {
        match self {
            Refusal::Host => error(StatusCode::FORBIDDEN, "Host not allowed"),
            Refusal::Origin => error(StatusCode::FORBIDDEN, "Origin not allowed"),
            Refusal::CrossSite => error(StatusCode::FORBIDDEN, "Cross-site request refused"),
            Refusal::ContentType(t) => error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Unsupported Content-Type {t}: send application/json"),
            ),
        }
    }
}

/// The host name of a `Host` header: without port or trailing dot; IPv6 keeps its brackets.
/// Case is kept: compare with `eq_ignore_ascii_case`.
pub fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or("")
    };
    name.trim_end_matches('.')
}

/// Names that only ever resolve to this machine (any case).
pub fn is_loopback_name(name: &str) -> bool {
    const SUFFIX: &str = ".localhost";
    let suffix_at = name.len().wrapping_sub(SUFFIX.len());
    if name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("[::1]")
        || (name.len() > SUFFIX.len()
            && name.is_char_boundary(suffix_at)
            && name[suffix_at..].eq_ignore_ascii_case(SUFFIX))
    {
        return true;
    }
    name.parse::<std::net::Ipv4Addr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The browser-safety checks of SPEC section 16, in order: `Host` (DNS rebinding), `Origin`,
/// `Sec-Fetch-Site`, and the content types an HTML form or a `no-cors` fetch can send.
/// A browser cannot forge any of these headers, and a non-browser client has no reason to
/// send them, so curl and scripts are unaffected. Runs on every request: it allocates only
/// to describe a refusal.
pub fn guard(
    config: &crate::config::Config,
    method: &Method,
    headers: &hyper::HeaderMap,
) -> Result<(), Refusal> {
    let host_header = headers.get(HOST);
    let host = host_header.and_then(|h| h.to_str().ok()).map(str::trim);
    if config.is_loopback() || !config.allowed_hosts.is_empty() {
        match host {
            Some(host) => {
                let name = host_name(host);
                let listed = config
                    .allowed_hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name));
                if !is_loopback_name(name) && !listed {
                    return Err(Refusal::Host);
                }
            }
            // A Host that is not text: no browser sends that.
            None if host_header.is_some() => return Err(Refusal::Host),
            None => {}
        }
    }

    let mut cors_allowed = false;
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().map_err(|_| Refusal::Origin)?;
        let own = match (host, origin.strip_prefix("http://")) {
            (Some(host), Some(rest)) => rest.eq_ignore_ascii_case(host),
            _ => false,
        };
        cors_allowed = match &config.cors {
            Some(CorsOrigins::Any) => true,
            Some(CorsOrigins::List(list)) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            None => false,
        };
        if !own && !cors_allowed {
            return Err(Refusal::Origin);
        }
    }

    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("cross-site").trim();
        let same = site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
        if !same && !cors_allowed {
            return Err(Refusal::CrossSite);
        }
    }

    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(Ok(value)) = headers.get(CONTENT_TYPE).map(HeaderValue::to_str) {
            let media = value.split(';').next().unwrap_or("").trim();
            let is = |t: &str| media.eq_ignore_ascii_case(t);
            let from_browser = headers.contains_key(ORIGIN)
                || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
            if is("text/plain")
                || is("multipart/form-data")
                || (is("application/x-www-form-urlencoded") && from_browser)
            {
                return Err(Refusal::ContentType(media.to_ascii_lowercase()));
            }
        }
    }
    Ok(())
}

/// One request, start to finish. A panic anywhere below becomes a 500; the connection and
/// the process carry on.
pub async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    if let Err(refusal) = guard(ctx.gateway.config(), req.method(), req.headers()) {
        return refusal.response();
    }
    let cors = cors_origin(&ctx, &req);
    let mut res = match CatchPanic::new(route(&ctx, req)).await {
        Ok(res) => res,
        Err(message) => {
            ctx.gateway
                .log(&format!("request handler panicked: {message}"));
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    };
    if let Some(origin) = cors {
        let h = res.headers_mut();
        h.insert("access-control-allow-origin", origin);
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// A request on a connection of the reserve (past `limits.maxConnections`): `/health`
/// answers, everything else is told to come back.
pub async fn handle_reserved(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    if let Err(refusal) = guard(ctx.gateway.config(), req.method(), req.headers()) {
        return refusal.response();
    }
    if req.uri().path() == "/health" && is_get(req.method()) {
        return health(&ctx.gateway);
    }
    let mut res = error(StatusCode::SERVICE_UNAVAILABLE, "Too many connections");
    res.headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    res.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn health(gateway: &Gateway) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({"ok": true, "ready": gateway.is_ready()}),
    )
}

/// The value of `Access-Control-Allow-Origin` for this request, when CORS allows it.
fn cors_origin(ctx: &Ctx, req: &Request<Incoming>) -> Option<HeaderValue> {
    let allowed = ctx.gateway.config().cors.as_ref()?;
    let origin = req.headers().get(ORIGIN)?;
    match allowed {
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::List(list) => {
            let text = origin.to_str().ok()?;
            list.iter()
                .any(|o| o.eq_ignore_ascii_case(text))
                .then(|| origin.clone())
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    res
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "Not found")
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// Percent-decodes one path segment, once. Malformed escapes and invalid UTF-8 are refused.
pub fn decode_segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a `/sessions/...` path names.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionPath<'a> {
    Session(&'a str),
    Action(&'a str, &'a str),
    Other,
}

/// Splits `/sessions/<key>[/<action>]` into its raw (still encoded) parts.
pub fn session_path(path: &str) -> SessionPath<'_> {
    let Some(rest) = path.strip_prefix("/sessions/") else {
        return SessionPath::Other;
    };
    let mut parts = rest.split('/');
    let key = parts.next().unwrap_or("");
    if key.is_empty() {
        return SessionPath::Other;
    }
    match (parts.next(), parts.next()) {
        (None, _) => SessionPath::Session(key),
        (Some(action), None)
            if matches!(action, "events" | "messages" | "abort" | "reset" | "chat") =>
        {
            SessionPath::Action(key, action)
        }
        _ => SessionPath::Other,
    }
}

/// The webhook route named by `path`, if it is `basePath` or below it (by whole segments).
pub fn webhook_route<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let route = rest.trim_start_matches('/');
    Some(if route.is_empty() { "default" } else { route })
}

fn authorized(ctx: &Ctx, req: &Request<Incoming>) -> bool {
    let Some(token) = ctx.gateway.config().bearer_token.as_deref() else {
        return true;
    };
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Some((scheme, presented)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

async fn route(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let gateway = &ctx.gateway;
    let config = gateway.config();

    if method == Method::OPTIONS && config.cors.is_some() {
        return preflight();
    }

    match path.as_str() {
        "/health" if is_get(&method) => return health(gateway),
        "/ready" if is_get(&method) => {
            if !authorized(ctx, &req) {
                return error(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            return json(
                StatusCode::OK,
                &json!({"ok": true, "ready": gateway.is_ready(), "sessions": gateway.session_count()}),
            );
        }
        _ => {}
    }

    if config.webhook.enabled {
        if let Some(route) = webhook_route(&config.webhook.base_path, &path) {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let route = route.to_string();
            return webhook(ctx, req, &route).await;
        }
    }

    if !authorized(ctx, &req) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }

    if ctx.panic_route && path == "/__test/panic" {
        panic!("test panic inside a request handler");
    }

    match path.as_str() {
        "/health" | "/ready" => return method_not_allowed("GET, HEAD"),
        "/sessions" if is_get(&method) => {
            #[derive(serde::Serialize)]
            struct Sessions {
                sessions: Vec<crate::events::Snapshot>,
            }
            let sessions = gateway.list();
            return json(StatusCode::OK, &Sessions { sessions });
        }
        "/sessions" => return method_not_allowed("GET, HEAD"),
        _ => {}
    }

    let (raw_key, action) = match session_path(&path) {
        SessionPath::Session(k) => (k, None),
        SessionPath::Action(k, a) => (k, Some(a)),
        SessionPath::Other => return not_found(),
    };
    let key = match decode_segment(raw_key) {
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => k,
        _ => return error(StatusCode::BAD_REQUEST, "Invalid session key"),
    };

    match (action, &method) {
        (None, m) if is_get(m) => match gateway.snapshot(&key) {
            Some(session) => {
                // A struct, not json!(): serde_json's map would sort the snapshot's keys.
                #[derive(serde::Serialize)]
                struct One {
                    session: crate::events::Snapshot,
                }
                json(StatusCode::OK, &One { session })
            }
            None => error(StatusCode::NOT_FOUND, &format!("Session not found: {key}")),
        },
        (None, _) => method_not_allowed("GET, HEAD"),
        (Some("events"), &Method::HEAD) => sse::head(),
        (Some("events"), &Method::GET) => match gateway.subscribe(&key, config.buffer_events).await
        {
            Ok(sub) => sse::stream(sub, config.heartbeat),
            Err(e) => sse_error(&key, &e),
        },
        (Some("events"), _) => method_not_allowed("GET, HEAD"),
        (Some("messages"), &Method::POST) => messages(ctx, req, key).await,
        (Some("chat"), &Method::POST) => chat_route(ctx, req, key).await,
        (Some("abort"), &Method::POST) => match gateway.abort(&key) {
            Ok(ok) => json(StatusCode::OK, &json!({ "ok": ok })),
            Err(_) => error(StatusCode::NOT_FOUND, &format!("Session not found: {key}")),
        },
        (Some("reset"), &Method::POST) => match gateway.reset(&key).await {
            Ok(()) => json(StatusCode::OK, &json!({"ok": true})),
            Err(SessionError::NotFound) => {
                error(StatusCode::NOT_FOUND, &format!("Session not found: {key}"))
            }
            Err(SessionError::Failed(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        },
        (Some(_), _) => method_not_allowed("POST"),
    }
}

fn preflight() -> Response<Body> {
    let mut res = Response::new(body::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    res
}

/// A stream that could not start (its session could not be created): one `error` event,
/// then the end — never a second set of headers, never a crash.
fn sse_error(key: &str, message: &str) -> Response<Body> {
    let frame = format!(
        "data: {}\n\n",
        json!({"type": "error", "sessionKey": key, "error": message})
    );
    sse::response(body::full(frame))
}

fn message_status(result: &MessageResult) -> StatusCode {
    match result.outcome {
        _ if result.ok => StatusCode::OK,
        Outcome::QueueFull => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn run_message(ctx: &Ctx, request: MessageRequest) -> Response<Body> {
    let key = request.session_key.clone();
    let rx = ctx.gateway.enqueue(request, None);
    let result = rx.await.unwrap_or_else(|_| {
        MessageResult::failure(
            &key,
            "The message was dropped without a result",
            Outcome::Failed,
        )
    });
    json(message_status(&result), &result)
}

fn text_field(body: &Map<String, Value>) -> Option<String> {
    body.get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned)
}

/// A message for `key` from a request body, its fields checked at the door; `Err` is the
/// message of the `400`.
fn message_request(
    ctx: &Ctx,
    key: String,
    text: String,
    body: &Map<String, Value>,
) -> Result<MessageRequest, String> {
    let fields = validate::message_fields(body, ctx.gateway.config())?;
    Ok(MessageRequest {
        session_key: key,
        text,
        images_json: fields.images_json,
        source: fields.source,
    })
}

async fn read_body(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Map<String, Value>, body::BodyError> {
    let config = ctx.gateway.config();
    read_json_object(req, config.max_body_bytes, config.body_timeout).await
}

async fn messages(ctx: &Ctx, req: Request<Incoming>, key: String) -> Response<Body> {
    let body = match read_body(ctx, req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let Some(text) = text_field(&body) else {
        return error(StatusCode::BAD_REQUEST, "Missing text");
    };
    match message_request(ctx, key, text, &body) {
        Ok(request) => run_message(ctx, request).await,
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn chat_route(ctx: &Ctx, req: Request<Incoming>, key: String) -> Response<Body> {
    let config = ctx.gateway.config();
    let bytes = match body::read_bytes(req, config.max_chat_body_bytes, config.body_timeout).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let body = match chat::parse_chat_body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let Some(text) = extract_user_text(&body) else {
        return error(StatusCode::BAD_REQUEST, "Missing user message text");
    };
    let (tap, tap_rx) = tap(config.buffer_events);
    let request = MessageRequest {
        session_key: key,
        text,
        images_json: None,
        source: Some("extension".into()),
    };
    let mut rx = ctx.gateway.enqueue(request, Some(tap));
    // A full queue is known at once: answer it as /messages does, before any stream starts.
    let rx = match rx.try_recv() {
        Ok(result) if result.outcome == Outcome::QueueFull => {
            return json(StatusCode::TOO_MANY_REQUESTS, &result)
        }
        Ok(result) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(result);
            rx
        }
        Err(_) => rx,
    };
    chat::response(ChatBody::new(tap_rx, rx).boxed_unsync())
}

/// The session a webhook reaches: `<prefix><route>:<sender>`, or the body's `sessionKey` when
/// `webhook.allowRequestSessionKey` allows it, and only under the prefix — never the primary
/// or an interactive session.
fn webhook_session_key(
    ctx: &Ctx,
    body: &Map<String, Value>,
    route: &str,
) -> Result<String, String> {
    let config = &ctx.gateway.config().webhook;
    let prefix = config.session_key_prefix.as_str();
    match body.get("sessionKey") {
        None | Some(Value::Null) => {}
        Some(_) if !config.allow_request_session_key => {
            return Err(
                "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)"
                    .into(),
            )
        }
        Some(Value::String(key)) => {
            validate::session_key(key, "sessionKey")?;
            if !key.starts_with(prefix) || key.len() == prefix.len() {
                return Err(format!(
                    "Invalid sessionKey: must start with {prefix:?} and name a session after it"
                ));
            }
            if key == ctx.gateway.primary_key() {
                return Err("Invalid sessionKey: the primary session is not reachable from webhooks".into());
            }
            return Ok(key.clone());
        }
        Some(_) => return Err("Invalid sessionKey: expected a string".into()),
    }
    if route.len() > MAX_KEY_BYTES {
        return Err(format!(
            "Invalid webhook route: longer than {MAX_KEY_BYTES} bytes"
        ));
    }
    let sender = match body.get("sender") {
        None | Some(Value::Null) => "default",
        Some(Value::String(s)) if s.is_empty() => "default",
        Some(Value::String(s)) if s.len() <= MAX_KEY_BYTES => s.as_str(),
        Some(Value::String(_)) => {
            return Err(format!("Invalid sender: longer than {MAX_KEY_BYTES} bytes"))
        }
        Some(_) => return Err("Invalid sender: expected a string".into()),
    };
    let key = format!("{prefix}{route}:{sender}");
    if key.len() > MAX_KEY_BYTES {
        // Name what the client sent that made it too long.
        let field = if matches!(body.get("sender"), Some(Value::String(s)) if !s.is_empty()) {
            "sender"
        } else {
            "webhook route"
        };
        return Err(format!(
            "Invalid {field}: the session key it makes ({prefix}<route>:<sender>) is longer than {MAX_KEY_BYTES} bytes"
        ));
    }
    Ok(key)
}

async fn webhook(ctx: &Ctx, req: Request<Incoming>, route: &str) -> Response<Body> {
    let config = ctx.gateway.config();
    if let Some(secret) = config.webhook.secret.as_deref() {
        let mut values = req.headers().get_all("x-pi-webhook-secret").iter();
        let presented = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes(),
            _ => b"",
        };
        if !constant_time_eq(presented, secret.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, "Invalid webhook secret");
        }
    }
    let body = match read_body(ctx, req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let Some(text) = text_field(&body) else {
        return error(StatusCode::BAD_REQUEST, "Missing text");
    };
    let key = match webhook_session_key(ctx, &body, route) {
        Ok(k) => k,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match message_request(ctx, key, text, &body) {
        Ok(request) => run_message(ctx, request).await,
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_split_into_key_and_action() {
        assert_eq!(session_path("/sessions/a"), SessionPath::Session("a"));
        assert_eq!(
            session_path("/sessions/a%2Fb/events"),
            SessionPath::Action("a%2Fb", "events")
        );
        assert_eq!(session_path("/sessions/"), SessionPath::Other);
        assert_eq!(session_path("/sessions/a/bogus"), SessionPath::Other);
        assert_eq!(session_path("/sessions/a/events/x"), SessionPath::Other);
        assert_eq!(session_path("/sessions//events"), SessionPath::Other);
        assert_eq!(session_path("/sessionsx/a"), SessionPath::Other);
    }

    #[test]
    fn keys_are_decoded_once_and_strictly() {
        assert_eq!(decode_segment("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode_segment("%252F").as_deref(), Some("%2F"));
        assert_eq!(decode_segment("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(decode_segment("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_segment("%E0%A4%A"), None);
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%C3"), None);
    }

    fn check(
        config: &crate::config::Config,
        method: Method,
        headers: &[(&'static str, &str)],
    ) -> Result<(), Refusal> {
        let mut map = hyper::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        guard(config, &method, &map)
    }

    #[test]
    fn the_guard_refuses_rebound_hosts_on_loopback() {
        let mut c = crate::config::Config::for_tests();
        for ok in [
            "localhost",
            "LOCALHOST:3000",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "app.localhost",
            "localhost.",
        ] {
            assert_eq!(check(&c, Method::GET, &[("host", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "localhost.evil",
        ] {
            assert_eq!(
                check(&c, Method::GET, &[("host", bad)]),
                Err(Refusal::Host),
                "{bad}"
            );
        }
        assert_eq!(
            check(&c, Method::GET, &[]),
            Ok(()),
            "no Host: not a browser"
        );
        c.allowed_hosts = vec!["gw.test".into()];
        assert_eq!(check(&c, Method::GET, &[("host", "GW.test:8080")]), Ok(()));
        c.bind = "0.0.0.0".parse().expect("ip");
        assert_eq!(
            check(&c, Method::GET, &[("host", "other.test")]),
            Err(Refusal::Host)
        );
        c.allowed_hosts.clear();
        assert_eq!(
            check(&c, Method::GET, &[("host", "other.test")]),
            Ok(()),
            "no list, not loopback"
        );
    }

    #[test]
    fn the_guard_refuses_foreign_origins_and_cross_site_requests() {
        let mut c = crate::config::Config::for_tests();
        let host = ("host", "127.0.0.1:3000");
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, ("origin", "http://127.0.0.1:3000")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, ("origin", "http://127.0.0.1:3001")]
            ),
            Err(Refusal::Origin)
        );
        assert_eq!(
            check(&c, Method::GET, &[host, ("origin", "null")]),
            Err(Refusal::Origin)
        );
        assert_eq!(
            check(&c, Method::GET, &[host, ("sec-fetch-site", "cross-site")]),
            Err(Refusal::CrossSite)
        );
        assert_eq!(
            check(&c, Method::GET, &[host, ("sec-fetch-site", "same-site")]),
            Err(Refusal::CrossSite)
        );
        assert_eq!(
            check(&c, Method::GET, &[host, ("sec-fetch-site", "same-origin")]),
            Ok(())
        );
        assert_eq!(
            check(&c, Method::GET, &[host, ("sec-fetch-site", "none")]),
            Ok(())
        );
        c.cors = Some(CorsOrigins::List(vec!["http://app.test".into()]));
        let allowed = [
            host,
            ("origin", "http://app.test"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(check(&c, Method::POST, &allowed), Ok(()));
        assert_eq!(
            check(&c, Method::POST, &[host, ("origin", "http://other.test")]),
            Err(Refusal::Origin)
        );
        c.cors = Some(CorsOrigins::Any);
        assert_eq!(check(&c, Method::POST, &[host, ("origin", "null")]), Ok(()));
    }

    #[test]
    fn the_guard_refuses_form_content_types() {
        let c = crate::config::Config::for_tests();
        let host = ("host", "localhost");
        let form = |t: &str| Err(Refusal::ContentType(t.into()));
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, ("content-type", "text/plain;charset=UTF-8")]
            ),
            form("text/plain")
        );
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, ("content-type", "Multipart/Form-Data; boundary=x")]
            ),
            form("multipart/form-data")
        );
        let urlencoded = ("content-type", "application/x-www-form-urlencoded");
        assert_eq!(
            check(&c, Method::POST, &[host, urlencoded]),
            Ok(()),
            "curl -d"
        );
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, urlencoded, ("sec-fetch-mode", "navigate")]
            ),
            form("application/x-www-form-urlencoded")
        );
        assert_eq!(
            check(
                &c,
                Method::POST,
                &[host, ("content-type", "application/json")]
            ),
            Ok(())
        );
        assert_eq!(check(&c, Method::POST, &[host]), Ok(()));
        assert_eq!(
            check(&c, Method::GET, &[host, ("content-type", "text/plain")]),
            Ok(())
        );
    }

    #[test]
    fn webhooks_match_whole_segments() {
        assert_eq!(webhook_route("/webhook", "/webhook"), Some("default"));
        assert_eq!(webhook_route("/webhook", "/webhook/"), Some("default"));
        assert_eq!(
            webhook_route("/webhook", "/webhook/slack/x"),
            Some("slack/x")
        );
        assert_eq!(webhook_route("/webhook", "/webhooks-x"), None);
        assert_eq!(webhook_route("/webhook", "/other"), None);
    }
}
