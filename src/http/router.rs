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

use bytes::Bytes;

use crate::agent::PromptKind;
use crate::config::CorsOrigins;
use crate::error::GatewayError;
use crate::session::approval::check_decision;
use crate::session::idempotency;
use crate::session::placement::Placement;
use crate::session::{
    Gateway, MessageRequest, MessageResult, Mode, Outcome, Run, Submit, Submitted,
};
use crate::util::{constant_time_eq, CatchPanic};
use crate::validate;

use super::body::{self, error, json, read_json_object, Body};
use super::chat::{self, extract_user_text, ChatBody};
use super::manage;
use super::proxy;
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

/// The route template a path falls under, as metrics label it (`other` for what no route
/// answers).
pub fn route_label(config: &crate::config::Config, path: &str) -> &'static str {
    match path {
        "/health" => return "/health",
        "/ready" => return "/ready",
        "/metrics" => return "/metrics",
        "/openapi.json" => return "/openapi.json",
        "/sessions" => return "/sessions",
        "/models" => return "/models",
        _ => {}
    }
    if config.webhook.enabled && webhook_route(&config.webhook.base_path, path).is_some() {
        return "webhook";
    }
    match session_path(path) {
        SessionPath::Session(_) => "/sessions/:key",
        SessionPath::Action(_, action) => match action {
            "events" => "/sessions/:key/events",
            "messages" => "/sessions/:key/messages",
            "abort" => "/sessions/:key/abort",
            "reset" => "/sessions/:key/reset",
            "chat" => "/sessions/:key/chat",
            "runs" => "/sessions/:key/runs",
            "queue" => "/sessions/:key/queue",
            "stats" => "/sessions/:key/stats",
            "compact" => "/sessions/:key/compact",
            "model" => "/sessions/:key/model",
            "thinking" => "/sessions/:key/thinking",
            "approvals" => "/sessions/:key/approvals",
            _ => "other",
        },
        SessionPath::Item { action, tail, .. } => match (action, tail) {
            ("runs", None) => "/sessions/:key/runs/:runId",
            ("runs", Some(_)) => "/sessions/:key/runs/:runId/events",
            ("approvals", _) => "/sessions/:key/approvals/:approvalId",
            ("chat", Some("stream")) => "/sessions/:key/chat/:chatId/stream",
            ("chat", _) => "/sessions/:key/chat/:chatId/stop",
            _ => "other",
        },
        SessionPath::Other => "other",
    }
}

/// A method as metrics label it.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One request, start to finish: answered, then counted (and logged at debug level).
pub async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let route = route_label(ctx.gateway.config(), req.uri().path());
    let method = method_label(req.method());
    let access = ctx
        .gateway
        .logs_at(crate::agent::LogLevel::Debug)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let res = answer(&ctx, req).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    ctx.gateway
        .hooks()
        .http_request(route, method, status, elapsed);
    if let Some((method, path)) = access {
        let key = match session_path(&path) {
            SessionPath::Session(k) | SessionPath::Action(k, _) => decode_segment(k),
            SessionPath::Item { key, .. } => decode_segment(key),
            SessionPath::Other => None,
        };
        ctx.gateway.log_line(&crate::agent::LogLine {
            level: crate::agent::LogLevel::Debug,
            message: &format!(
                "{method} {path} {status} {:.1}ms",
                elapsed.as_secs_f64() * 1000.0
            ),
            session_key: key.as_deref(),
            run_id: None,
        });
    }
    res
}

/// A panic anywhere below becomes a 500; the connection and the process carry on.
async fn answer(ctx: &Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    if let Err(refusal) = guard(ctx.gateway.config(), req.method(), req.headers()) {
        return refusal.response();
    }
    let cors = cors_origin(ctx, &req);
    let mut res = match CatchPanic::new(route(ctx, req)).await {
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
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("x-run-id, idempotent-replayed, location"),
        );
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// A request on a connection of the reserve (past `limits.maxConnections`): `/health`
/// answers, everything else is told to come back.
pub async fn handle_reserved(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let route = route_label(ctx.gateway.config(), req.uri().path());
    let method = method_label(req.method());
    let res = reserved(&ctx, req);
    ctx.gateway
        .hooks()
        .http_request(route, method, res.status().as_u16(), started.elapsed());
    res
}

fn reserved(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
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

/// The OpenAPI document of every route (SPEC section 14), as built into the addon.
const OPENAPI: &str = include_str!("openapi.json");

fn openapi() -> Response<Body> {
    let mut res = Response::new(body::full(Bytes::from_static(OPENAPI.as_bytes())));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// `GET /metrics`: OpenMetrics text when the scraper asks for it, else the classic format.
fn metrics(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let openmetrics = crate::metrics::wants_openmetrics(accept);
    let text = ctx.gateway.encode_metrics(openmetrics);
    let mut res = Response::new(body::full(Bytes::from(text)));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if openmetrics {
            crate::metrics::OPENMETRICS_CONTENT_TYPE
        } else {
            crate::metrics::CLASSIC_CONTENT_TYPE
        }),
    );
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

/// What a `/sessions/...` path names (its parts still percent-encoded).
#[derive(Debug, PartialEq, Eq)]
pub enum SessionPath<'a> {
    Session(&'a str),
    /// `/sessions/<key>/<action>`
    Action(&'a str, &'a str),
    /// `/sessions/<key>/runs/<runId>[/events]` and `/sessions/<key>/chat/<chatId>/<stream|stop>`
    Item {
        key: &'a str,
        action: &'a str,
        id: &'a str,
        tail: Option<&'a str>,
    },
    Other,
}

/// Splits a `/sessions/...` path into its raw (still encoded) parts.
pub fn session_path(path: &str) -> SessionPath<'_> {
    let Some(rest) = path.strip_prefix("/sessions/") else {
        return SessionPath::Other;
    };
    let mut parts = rest.split('/');
    let key = parts.next().unwrap_or("");
    if key.is_empty() {
        return SessionPath::Other;
    }
    let parts = (parts.next(), parts.next(), parts.next(), parts.next());
    match parts {
        (None, ..) => SessionPath::Session(key),
        (Some(action), None, ..)
            if matches!(
                action,
                "events"
                    | "messages"
                    | "abort"
                    | "reset"
                    | "chat"
                    | "runs"
                    | "queue"
                    | "stats"
                    | "compact"
                    | "model"
                    | "thinking"
                    | "approvals"
            ) =>
        {
            SessionPath::Action(key, action)
        }
        (Some("runs"), Some(id), None, _) if !id.is_empty() => SessionPath::Item {
            key,
            action: "runs",
            id,
            tail: None,
        },
        (Some("runs"), Some(id), Some("events"), None) if !id.is_empty() => SessionPath::Item {
            key,
            action: "runs",
            id,
            tail: Some("events"),
        },
        (Some("approvals"), Some(id), None, _) if !id.is_empty() => SessionPath::Item {
            key,
            action: "approvals",
            id,
            tail: None,
        },
        (Some("chat"), Some(id), Some(tail @ ("stream" | "stop")), None) if !id.is_empty() => {
            SessionPath::Item {
                key,
                action: "chat",
                id,
                tail: Some(tail),
            }
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
        "/openapi.json" if is_get(&method) => return openapi(),
        "/metrics" if is_get(&method) && config.metrics_public => return metrics(ctx, &req),
        "/ready" if is_get(&method) => {
            if !authorized(ctx, &req) {
                return error(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            let mut ready = json!({"ok": true, "ready": gateway.is_ready(), "sessions": gateway.session_count()});
            if let Some(cluster) = gateway.cluster() {
                ready["cluster"] = json!(if cluster.healthy() { "ok" } else { "degraded" });
                ready["nodeId"] = json!(cluster.node_id());
            }
            return json(StatusCode::OK, &ready);
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
        "/health" | "/ready" | "/openapi.json" => return method_not_allowed("GET, HEAD"),
        "/metrics" if is_get(&method) => return metrics(ctx, &req),
        "/metrics" => return method_not_allowed("GET, HEAD"),
        "/sessions" if is_get(&method) => {
            #[derive(serde::Serialize)]
            struct Sessions {
                sessions: Vec<crate::events::Snapshot>,
            }
            let sessions = gateway.list();
            return json(StatusCode::OK, &Sessions { sessions });
        }
        "/sessions" => return method_not_allowed("GET, HEAD"),
        "/models" if is_get(&method) => return manage::models(ctx).await,
        "/models" => return method_not_allowed("GET, HEAD"),
        _ => {}
    }

    let (raw_key, action, item) = match session_path(&path) {
        SessionPath::Session(k) => (k, None, None),
        SessionPath::Action(k, a) => (k, Some(a), None),
        SessionPath::Item {
            key,
            action,
            id,
            tail,
        } => (key, Some(action), Some((id, tail))),
        SessionPath::Other => return not_found(),
    };
    let key = match decode_segment(raw_key) {
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => k,
        _ => return error(StatusCode::BAD_REQUEST, "Invalid session key"),
    };
    if let Some(cluster) = gateway.cluster() {
        let events = item.is_none() && action == Some("events") && method == Method::GET;
        match gateway.placement(&key, proxy::is_hop(&req)).await {
            Placement::Local => {}
            Placement::Remote(owner) if events => {
                return replica_events(ctx, &req, &key, &owner).await
            }
            Placement::Remote(owner) => {
                return proxy::forward(req, &owner.url, cluster.node_id()).await
            }
            Placement::Unavailable(message) => {
                let mut res = error(StatusCode::SERVICE_UNAVAILABLE, &message);
                res.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return res;
            }
        }
    }
    if let Some((raw_id, tail)) = item {
        let Some(id) =
            decode_segment(raw_id).filter(|id| !id.is_empty() && id.len() <= MAX_KEY_BYTES)
        else {
            let what = match action {
                Some("chat") => "chat id",
                Some("approvals") => "approval id",
                _ => "run id",
            };
            return error(StatusCode::BAD_REQUEST, &format!("Invalid {what}"));
        };
        return match (action, tail) {
            (Some("approvals"), _) => decide_approval(ctx, req, &key, &id).await,
            (Some("runs"), None) => run_route(ctx, &req, &key, &id).await,
            (Some("runs"), Some(_)) => run_events(ctx, &req, &key, &id),
            (Some(_), Some("stream")) => chat_resume(ctx, &req, &key, &id),
            (Some(_), _) => chat_stop(ctx, req, &key, &id).await,
            (None, _) => not_found(),
        };
    }

    match (action, &method) {
        (None, m) if is_get(m) => manage::snapshot(ctx, &key).await,
        (None, &Method::DELETE) => manage::delete(ctx, &req, &key).await,
        (None, &Method::PATCH) => manage::rename(ctx, req, &key).await,
        (None, _) => method_not_allowed("GET, HEAD, PATCH, DELETE"),
        (Some("messages"), m) if is_get(m) => manage::history(ctx, &req, &key).await,
        (Some("messages"), m) if *m != Method::POST => method_not_allowed("GET, HEAD, POST"),
        (Some("stats"), m) if is_get(m) => manage::stats(ctx, &key).await,
        (Some("stats"), _) => method_not_allowed("GET, HEAD"),
        (Some("compact"), &Method::POST) => manage::compact(ctx, req, key, raw_key).await,
        (Some("model"), &Method::PUT) => manage::set_model(ctx, req, &key).await,
        (Some("model"), _) => method_not_allowed("PUT"),
        (Some("thinking"), &Method::PUT) => manage::set_thinking(ctx, req, &key).await,
        (Some("thinking"), _) => method_not_allowed("PUT"),
        (Some("events"), &Method::HEAD) => sse::head(),
        (Some("events"), &Method::GET) => {
            let after = match resume_after(&req) {
                Ok(after) => after,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            };
            match gateway.subscribe(&key, after, config.buffer_events).await {
                Ok(sub) => sse::stream(sub.cursor, Some(&sub.hello), config.heartbeat),
                // At the session cap the client is told to come back later, as on every route.
                Err(e @ GatewayError::TooManySessions) => core_error(&e),
                Err(e) => sse_error(&key, &e.to_string()),
            }
        }
        (Some("events"), _) => method_not_allowed("GET, HEAD"),
        (Some("runs"), m) if is_get(m) => {
            #[derive(serde::Serialize)]
            struct Runs {
                runs: Vec<crate::session::RunRecord>,
            }
            let runs = gateway.runs(&key).iter().map(|r| r.record()).collect();
            json(StatusCode::OK, &Runs { runs })
        }
        (Some("runs"), _) => method_not_allowed("GET, HEAD"),
        (Some("approvals"), m) if is_get(m) => {
            #[derive(serde::Serialize)]
            struct Approvals<'a> {
                approvals: Vec<crate::session::approval::ApprovalView<'a>>,
            }
            let approvals = gateway.approvals(&key);
            let approvals = approvals.iter().map(|a| a.view()).collect();
            json(StatusCode::OK, &Approvals { approvals })
        }
        (Some("approvals"), _) => method_not_allowed("GET, HEAD"),
        (Some("queue"), m) if is_get(m) => match gateway.queue(&key) {
            Some(view) => json(StatusCode::OK, &view),
            None => core_error(&GatewayError::SessionNotFound(key)),
        },
        (Some("queue"), &Method::DELETE) => match gateway.clear_all_queues(&key).await {
            Ok(cleared) => json(StatusCode::OK, &cleared),
            Err(e) => core_error(&e),
        },
        (Some("queue"), _) => method_not_allowed("GET, HEAD, DELETE"),
        (Some("messages"), &Method::POST) => {
            post_message(ctx, req, |_| Ok(key), Some(raw_key)).await
        }
        (Some("chat"), &Method::POST) => chat_route(ctx, req, key).await,
        (Some("abort"), &Method::POST) => match gateway.abort(&key) {
            Ok(ok) => json(StatusCode::OK, &json!({ "ok": ok })),
            Err(e) => core_error(&e),
        },
        // A stored conversation not in memory is loaded first, so its reset begins a new one.
        (Some("reset"), &Method::POST) => match async {
            gateway.loaded_session(&key).await?;
            gateway.reset(&key).await
        }
        .await
        {
            Ok(()) => json(StatusCode::OK, &json!({"ok": true})),
            Err(e) => core_error(&e),
        },
        (Some(_), _) => method_not_allowed("POST"),
    }
}

/// A run of `key` that another node (a previous owner) ended, from the records it kept in
/// the cluster's Redis.
async fn stored_run(ctx: &Ctx, key: &str, id: &str) -> Option<Value> {
    let cluster = ctx.gateway.cluster()?;
    let json = cluster.get_run(id).await.ok()??;
    let record: Value = serde_json::from_str(&json).ok()?;
    (record.get("sessionKey").and_then(Value::as_str) == Some(key)).then_some(record)
}

/// `GET /sessions/:key/events` for a session another node owns: its events from the log it
/// mirrors into Redis, with `Last-Event-ID` as on the owner.
async fn replica_events(
    ctx: &Ctx,
    req: &Request<Incoming>,
    key: &str,
    owner: &crate::cluster::Owner,
) -> Response<Body> {
    let config = ctx.gateway.config();
    let after = match resume_after(req) {
        Ok(after) => after,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match ctx
        .gateway
        .subscribe_replica(key, after, config.buffer_events, owner)
        .await
    {
        Ok(sub) => sse::stream(sub.cursor, Some(&sub.hello), config.heartbeat),
        Err(e) => core_error(&e),
    }
}

/// The JSON error for a core error, with its status.
/// How long a client refused with `503 Too many sessions` is asked to wait.
const TOO_MANY_SESSIONS_RETRY_AFTER: &str = "5";

pub(super) fn core_error(e: &GatewayError) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = error(status, &e.to_string());
    retry_after(&mut res, e);
    res
}

fn retry_after(res: &mut Response<Body>, e: &GatewayError) {
    if *e == GatewayError::TooManySessions {
        res.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from_static(TOO_MANY_SESSIONS_RETRY_AFTER),
        );
    }
}

/// The value of query parameter `name`, if present (not decoded: the values used here are
/// plain tokens).
pub(super) fn query_param<'a>(uri: &'a hyper::Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Where a stream resumes: `Last-Event-ID` (what a reconnecting `EventSource` sends), else
/// `?after=`. Anything but a non-negative integer is refused.
fn resume_after(req: &Request<Incoming>) -> Result<Option<u64>, String> {
    if let Some(value) = req.headers().get("last-event-id") {
        let text = value.to_str().unwrap_or("").trim();
        if text.is_empty() {
            return Ok(None);
        }
        return text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "Invalid Last-Event-ID: expected a non-negative integer".to_string());
    }
    match query_param(req.uri(), "after") {
        None => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "Invalid after: expected a non-negative integer".to_string()),
    }
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, String> {
    let mut values = req.headers().get_all("idempotency-key").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("Invalid Idempotency-Key: sent more than once".into()),
        (Some(v), None) => idempotency::check_key(v.as_bytes()).map(|k| Some(k.to_string())),
    }
}

/// Headers of a response that accepted a message.
fn run_headers(res: &mut Response<Body>, run: &Run, joined: bool) {
    if let Ok(v) = HeaderValue::from_str(&run.id) {
        res.headers_mut().insert("x-run-id", v);
    }
    if joined {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
}

/// Marks a run abandoned if the request waiting for it is dropped (its client hung up).
struct WaitGuard(Option<Arc<Run>>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            if !run.status().is_ended() {
                run.abandon();
            }
        }
    }
}

/// `GET` / `DELETE …/runs/:runId`.
async fn run_route(ctx: &Ctx, req: &Request<Incoming>, key: &str, id: &str) -> Response<Body> {
    let gateway = &ctx.gateway;
    match *req.method() {
        Method::GET | Method::HEAD => match gateway.run(key, id) {
            Some(run) => {
                #[derive(serde::Serialize)]
                struct One {
                    run: crate::session::RunRecord,
                }
                json(StatusCode::OK, &One { run: run.record() })
            }
            None => match stored_run(ctx, key, id).await {
                Some(record) => json(StatusCode::OK, &json!({ "run": record })),
                None => core_error(&GatewayError::RunNotFound(id.to_string())),
            },
        },
        Method::DELETE => match gateway.cancel_run(key, id).await {
            Ok(status) => json(
                StatusCode::OK,
                &json!({"ok": true, "runId": id, "status": status.as_str()}),
            ),
            Err(e) => core_error(&e),
        },
        _ => method_not_allowed("GET, HEAD, DELETE"),
    }
}

/// `GET …/runs/:runId/events`: the run's frames from its start (or after `Last-Event-ID`),
/// then live; ends after `run_end`.
fn run_events(ctx: &Ctx, req: &Request<Incoming>, key: &str, id: &str) -> Response<Body> {
    if !is_get(req.method()) {
        return method_not_allowed("GET, HEAD");
    }
    let gateway = &ctx.gateway;
    let Some(run) = gateway.run(key, id) else {
        return core_error(&GatewayError::RunNotFound(id.to_string()));
    };
    if req.method() == Method::HEAD {
        return sse::head();
    }
    let after = match resume_after(req) {
        Ok(after) => after,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let (cursor, missed) = gateway.run_cursor(&run, after, false);
    let hello = missed.then(|| gateway.missed_hello(key));
    if missed && run.status().is_ended() && !cursor.log().has_run(run.no) {
        // Nothing of it is left to send: say so, and end.
        let mut bytes = sse::RETRY.to_vec();
        if let Some(h) = &hello {
            bytes.extend_from_slice(&h.sse());
        }
        return sse::response(body::full(bytes));
    }
    sse::stream(cursor, hello.as_ref(), ctx.gateway.config().heartbeat)
}

/// A chat stream of `run` for a response: replayed from its `start` chunk, then live. When
/// the log no longer holds its start, the answer comes whole once the run has ended.
fn chat_stream(ctx: &Ctx, run: &Arc<Run>, cancel_on_drop: bool) -> Response<Body> {
    let gateway = &ctx.gateway;
    let (cursor, missed) = gateway.run_cursor(run, None, true);
    let body = if missed {
        chat::whole_body(run.clone())
    } else {
        let cancel = cancel_on_drop.then(|| (gateway.clone(), run.clone()));
        ChatBody::new(cursor, cancel).boxed_unsync()
    };
    chat::response(body)
}

/// `GET …/chat/:chatId/stream`: the AI SDK's resume route.
fn chat_resume(ctx: &Ctx, req: &Request<Incoming>, key: &str, chat_id: &str) -> Response<Body> {
    if !is_get(req.method()) {
        return method_not_allowed("GET, HEAD");
    }
    let Some(run) = ctx.gateway.active_chat_run(key, chat_id) else {
        let mut res = Response::new(body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        return res;
    };
    let mut res = chat_stream(ctx, &run, false);
    run_headers(&mut res, &run, false);
    res
}

/// `POST …/chat/:chatId/stop`, optionally `{runId}`.
async fn chat_stop(ctx: &Ctx, req: Request<Incoming>, key: &str, chat_id: &str) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let body = match read_body(ctx, req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let wanted = match body.get("runId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "Invalid runId: expected a string"),
    };
    let gateway = &ctx.gateway;
    match gateway.active_chat_run(key, chat_id) {
        Some(run) if wanted.as_deref().is_none_or(|id| id == run.id) => {
            let g = gateway.clone();
            let target = run.clone();
            gateway.runtime().spawn(async move {
                let _ = g.cancel(&target).await;
            });
            json(StatusCode::OK, &json!({"ok": true, "runId": run.id}))
        }
        _ => json(StatusCode::OK, &json!({"ok": false})),
    }
}

fn preflight() -> Response<Body> {
    let mut res = Response::new(body::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("authorization, content-type, idempotency-key, last-event-id"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    res
}

/// A stream that could not start (its session could not be created): one `error` event,
/// then the end — never a second set of headers, never a crash.
fn sse_error(key: &str, message: &str) -> Response<Body> {
    let frame = format!(
        "retry: 2000\n\ndata: {}\n\n",
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

/// A refused submission: a full queue (429) and `reject` on a busy session (409) answer as a
/// `GatewayMessageResult` ([`MessageResult::refusal`]), anything else as `{error}`.
fn refused(key: &str, e: &GatewayError) -> Response<Body> {
    match MessageResult::refusal(key, e) {
        Some(result) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::CONFLICT);
            let mut res = json(status, &result);
            retry_after(&mut res, e);
            res
        }
        None => core_error(e),
    }
}

/// Submits a message and answers with its result once the run ends (or, with `wait: false`,
/// at once with `202` and where to find it).
pub(super) async fn submit_message(
    ctx: &Ctx,
    submit: Submit,
    wait: bool,
    location_key: Option<&str>,
) -> Response<Body> {
    let key = submit.request.session_key.clone();
    let submitted = match ctx.gateway.submit(submit) {
        Ok(s) => s,
        Err(e) => return refused(&key, &e),
    };
    let run = submitted.run().clone();
    let mut res = if wait {
        // A message handed to a running run has no queued run of its own to give up.
        let guard = WaitGuard(submitted.delivered().is_none().then(|| run.clone()));
        let result = run.wait().await;
        drop(guard);
        json(message_status(&result), &result)
    } else {
        let mut accepted =
            json!({"runId": run.id, "status": run.status().as_str(), "sessionKey": key});
        if let Some(how) = submitted.delivered() {
            accepted["delivered"] = how.as_str().into();
        }
        let mut res = json(StatusCode::ACCEPTED, &accepted);
        if let Some(raw_key) = location_key {
            if let Ok(v) = HeaderValue::from_str(&format!("/sessions/{raw_key}/runs/{}", run.id)) {
                res.headers_mut().insert(hyper::header::LOCATION, v);
            }
        }
        res
    };
    run_headers(&mut res, &run, submitted.joined());
    res
}

/// `wait` from the body (a boolean) or the query (`true`/`false`); the body wins.
pub(super) fn wait_field(req_uri: &hyper::Uri, body: &Map<String, Value>) -> Result<bool, String> {
    match body.get("wait") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => return Ok(*b),
        Some(_) => return Err("Invalid wait: expected a boolean".into()),
    }
    match query_param(req_uri, "wait") {
        None => Ok(true),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err("Invalid wait: expected true or false".into()),
    }
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
) -> Result<(MessageRequest, Option<Mode>), String> {
    let fields = validate::message_fields(body, ctx.gateway.config())?;
    let request = MessageRequest {
        session_key: key,
        text,
        images_json: fields.images_json,
        source: fields.source,
        ..Default::default()
    };
    Ok((request, fields.mode))
}

pub(super) async fn read_body(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Map<String, Value>, body::BodyError> {
    let config = ctx.gateway.config();
    read_json_object(req, config.max_body_bytes, config.body_timeout).await
}

/// The body of a message-accepting POST, its bytes (for the idempotency fingerprint) and
/// its `Idempotency-Key`. `Err` is the response refusing it.
async fn read_submission(
    ctx: &Ctx,
    req: Request<Incoming>,
    limit: usize,
) -> Result<(Bytes, Option<String>, String), Response<Body>> {
    let idem = idempotency_key(&req).map_err(|m| error(StatusCode::BAD_REQUEST, &m))?;
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let config = ctx.gateway.config();
    let bytes = body::read_bytes(req, limit, config.body_timeout)
        .await
        .map_err(|e| e.response())?;
    Ok((bytes, idem, target))
}

fn with_fingerprint(
    idem: Option<String>,
    target: &str,
    bytes: &[u8],
) -> Option<(String, idempotency::Fingerprint)> {
    idem.map(|k| (k, idempotency::fingerprint("POST", target, bytes)))
}

/// `/messages` and webhooks: reads, checks and submits a `{text, ...}` body. `key` names the
/// session from the body; `location_key` (the path's raw key, for `/messages`) also lets
/// `wait: false` through and is what `Location` is built from.
async fn post_message(
    ctx: &Ctx,
    req: Request<Incoming>,
    key: impl FnOnce(&Map<String, Value>) -> Result<String, String>,
    location_key: Option<&str>,
) -> Response<Body> {
    let uri = req.uri().clone();
    let max = ctx.gateway.config().max_body_bytes;
    let (bytes, idem, target) = match read_submission(ctx, req, max).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let body = match body::parse_object(&bytes) {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let Some(text) = text_field(&body) else {
        return error(StatusCode::BAD_REQUEST, "Missing text");
    };
    let checked = key(&body).and_then(|key| {
        let wait = match location_key {
            Some(_) => wait_field(&uri, &body)?,
            None => true,
        };
        Ok((message_request(ctx, key, text, &body)?, wait))
    });
    let ((request, mode), wait) = match checked {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    // Only `/messages` takes a callback: a webhook's body is the sender's, not the caller's.
    let callback = match location_key {
        Some(_) => match callback_field(ctx, &body).await {
            Ok(callback) => callback,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        },
        None => None,
    };
    let idempotency = with_fingerprint(idem, &target, &bytes);
    // With several gateways, a key another node answered (before it died) is answered from
    // the record it left in Redis, and a key claimed here is recorded there.
    let shared_key = match (ctx.gateway.cluster(), &idempotency) {
        (Some(_), Some((idem, fp))) if !ctx.gateway.idempotency_known(idem, fp) => {
            match cluster_idempotency(ctx, &request.session_key, idem, fp).await {
                Ok(claimed) => claimed,
                Err(res) => return res,
            }
        }
        _ => None,
    };
    let session_key = request.session_key.clone();
    let submit = Submit {
        request,
        chat_id: None,
        cancel_if_abandoned: wait,
        idempotency,
        mode,
        callback,
    };
    let res = submit_message(ctx, submit, wait, location_key).await;
    if let (Some((idem, fp)), Some(cluster)) = (shared_key, ctx.gateway.cluster()) {
        if let Some(run_id) = res.headers().get("x-run-id").and_then(|v| v.to_str().ok()) {
            let ttl = std::time::Duration::from_millis(ctx.gateway.config().idempotency_ttl_ms);
            cluster.set_idem(&session_key, &idem, format!("{fp} {run_id}"), ttl);
        }
    }
    res
}

/// An `Idempotency-Key` new to this node, checked against Redis: `Ok(Some((key, fp)))` when
/// this request claimed it there (its run is recorded once started), `Ok(None)` to go on
/// without Redis, `Err` the answer (a conflict, or the stored result of a finished run).
async fn cluster_idempotency(
    ctx: &Ctx,
    session_key: &str,
    idem: &str,
    fp: &idempotency::Fingerprint,
) -> Result<Option<(String, String)>, Response<Body>> {
    let Some(cluster) = ctx.gateway.cluster() else {
        return Ok(None);
    };
    let fp_hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
    let ttl = std::time::Duration::from_millis(ctx.gateway.config().idempotency_ttl_ms);
    let existing = match cluster
        .remember_idem(session_key, idem, &format!("{fp_hex} -"), ttl)
        .await
    {
        Ok(None) => return Ok(Some((idem.to_string(), fp_hex))),
        Ok(Some(existing)) => existing,
        Err(_) => return Ok(None),
    };
    let (their_fp, run_id) = existing.split_once(' ').unwrap_or((existing.as_str(), "-"));
    if their_fp != fp_hex {
        return Err(core_error(&GatewayError::IdempotencyConflict));
    }
    if run_id != "-" {
        if let Some(record) = stored_run(ctx, session_key, run_id).await {
            let ended = record.get("endedAt").is_some_and(|v| !v.is_null());
            if let (true, Some(result)) = (ended, record.get("result")) {
                let ok = result.get("ok").and_then(Value::as_bool) == Some(true);
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                let mut res = json(status, result);
                if let Ok(v) = HeaderValue::from_str(run_id) {
                    res.headers_mut().insert("x-run-id", v);
                }
                res.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Err(res);
            }
        }
    }
    // Its run died with the node that had it, unanswered: this request runs it, once.
    Ok(Some((idem.to_string(), fp_hex)))
}

/// `callback: {url}`, checked against `webhooks.allowedHosts` and the addresses its host
/// resolves to (SPEC section 14). `Err` is the 400's message, naming the field.
async fn callback_field(
    ctx: &Ctx,
    body: &Map<String, Value>,
) -> Result<Option<crate::outbound::Callback>, String> {
    let callback = match body.get("callback") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(callback)) => callback,
        Some(_) => return Err("Invalid callback: expected an object {url}".into()),
    };
    if let Some(field) = callback.keys().find(|k| k.as_str() != "url") {
        return Err(format!("Invalid callback.{field}: unknown field"));
    }
    let Some(Value::String(url)) = callback.get("url") else {
        return Err("Invalid callback.url: expected a string".into());
    };
    ctx.gateway.outbound().check_callback(url).await.map(Some)
}

async fn chat_route(ctx: &Ctx, req: Request<Incoming>, key: String) -> Response<Body> {
    let max = ctx.gateway.config().max_chat_body_bytes;
    let (bytes, idem, target) = match read_submission(ctx, req, max).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let body = match chat::parse_chat_body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    match chat::continuation(&body) {
        Ok(Some(go_on)) => return chat_continuation(ctx, &key, go_on),
        Ok(None) => {}
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    }
    let config = ctx.gateway.config();
    let images_json = match chat::last_user_message(&body) {
        Some((message, index)) => match validate::chat_files(message, index, config) {
            Ok(images) => images,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        },
        None => None,
    };
    // A message may be an image alone.
    let text = match (extract_user_text(&body), &images_json) {
        (Some(text), _) => text,
        (None, Some(_)) => String::new(),
        (None, None) => return error(StatusCode::BAD_REQUEST, "Missing user message text"),
    };
    let kind = match body.get("trigger") {
        None | Some(Value::Null) => PromptKind::Prompt,
        Some(Value::String(t)) if t == "submit-message" => PromptKind::Prompt,
        Some(Value::String(t)) if t == "regenerate-message" => PromptKind::Regenerate,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid trigger: expected \"submit-message\" or \"regenerate-message\"",
            )
        }
    };
    let chat_id = match body.get("id") {
        None | Some(Value::Null) => key.clone(),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_KEY_BYTES => id.clone(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid id: expected a chat id of 1 to {MAX_KEY_BYTES} bytes"),
            )
        }
    };
    let mode = match validate::mode(body.get("mode")) {
        Ok(mode) => mode,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    // A regeneration replaces the last answer: it is never handed to a running run.
    let mode = if kind == PromptKind::Regenerate {
        Some(Mode::Queue)
    } else {
        mode
    };
    let submit = Submit {
        request: MessageRequest {
            session_key: key.clone(),
            text,
            images_json,
            source: Some("extension".into()),
            kind,
        },
        chat_id: Some(chat_id),
        cancel_if_abandoned: false,
        callback: None,
        idempotency: with_fingerprint(idem, &target, &bytes),
        mode,
    };
    let submitted = match ctx.gateway.submit(submit) {
        Ok(s) => s,
        Err(e) => return refused(&key, &e),
    };
    let run = submitted.run().clone();
    let joined = submitted.joined();
    let mut res = match submitted {
        // Handed to the running run: its remaining steps, as a new assistant message.
        Submitted::Delivered {
            chat: Some(cursor), ..
        } => {
            let message_id = uuid::Uuid::now_v7().to_string();
            chat::response(ChatBody::from_next_step(cursor, &message_id, &run).boxed_unsync())
        }
        _ => chat_stream(ctx, &run, ctx.gateway.config().chat_abort_on_disconnect),
    };
    run_headers(&mut res, &run, joined);
    res
}

/// A chat POST carrying approval decisions: they are applied (those already decided, by a
/// timeout or another client, stay as they were), and the run they belong to streams on from
/// where its chat stream paused for them.
fn chat_continuation(ctx: &Ctx, key: &str, go_on: chat::Continuation) -> Response<Body> {
    let gateway = &ctx.gateway;
    let approvals: Vec<_> = go_on
        .decisions
        .iter()
        .filter_map(|(id, _)| gateway.approval(key, id))
        .collect();
    let Some(first) = approvals.first() else {
        // None of its approvals is known (the gateway restarted, or forgot them): neither is
        // the run the message belongs to, whose id is the message's.
        let id = go_on
            .message_id
            .clone()
            .or_else(|| go_on.decisions.first().map(|(id, _)| id.clone()))
            .unwrap_or_default();
        return core_error(&GatewayError::RunNotFound(id));
    };
    let run = first.run_id.as_deref().and_then(|id| gateway.run(key, id));
    let Some(run) = run else {
        let id = first.run_id.clone().unwrap_or_default();
        return core_error(&GatewayError::RunNotFound(id));
    };
    for (id, decision) in go_on.decisions {
        // Decided meanwhile (its timeout, another client): what happened is in the stream.
        let _ = gateway.decide(key, &id, decision);
    }
    let after = approvals.iter().map(|a| a.pause_seq()).max().unwrap_or(0);
    let (cursor, missed) = gateway.run_cursor(&run, Some(after), true);
    let body = if missed || after == 0 {
        chat::whole_body(run.clone())
    } else {
        let cancel = gateway
            .config()
            .chat_abort_on_disconnect
            .then(|| (gateway.clone(), run.clone()));
        let message_id = go_on.message_id.unwrap_or_else(|| run.id.clone());
        ChatBody::continuation(cursor, &message_id, &run, cancel).boxed_unsync()
    };
    let mut res = chat::response(body);
    run_headers(&mut res, &run, false);
    res
}

/// `POST /sessions/:key/approvals/:approvalId` `{approved, reason?}`.
async fn decide_approval(ctx: &Ctx, req: Request<Incoming>, key: &str, id: &str) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let body = match read_body(ctx, req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let decision = match check_decision(body.get("approved"), body.get("reason")) {
        Ok(d) => d,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let (status, answer) = ctx.gateway.decide_answer(key, id, decision);
    json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &answer,
    )
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
    post_message(ctx, req, |body| webhook_session_key(ctx, body, route), None).await
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
        let item = |action, id, tail| SessionPath::Item {
            key: "k",
            action,
            id,
            tail,
        };
        assert_eq!(
            session_path("/sessions/k/runs/r1"),
            item("runs", "r1", None)
        );
        assert_eq!(
            session_path("/sessions/k/runs/r1/events"),
            item("runs", "r1", Some("events"))
        );
        assert_eq!(
            session_path("/sessions/k/chat/c%201/stream"),
            item("chat", "c%201", Some("stream"))
        );
        assert_eq!(
            session_path("/sessions/k/chat/c/stop"),
            item("chat", "c", Some("stop"))
        );
        for other in [
            "/sessions/k/runs/",
            "/sessions/k/runs/r1/events/x",
            "/sessions/k/chat/c",
            "/sessions/k/chat/c/other",
            "/sessions/k/events/x",
        ] {
            assert_eq!(session_path(other), SessionPath::Other, "{other}");
        }
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
