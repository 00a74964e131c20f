//! `GatewayConfig`: the seed's fields plus optional limits, each with a safe default.
//!
//! The JS wrapper hands the config over as JSON; everything is validated here so that a bad
//! field fails the constructor with a message that names it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::session::Mode;

/// Default `limits.maxBodyBytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default `limits.headerTimeoutMs`: a client has 10 s to send its request head.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default `limits.maxConnections`: open TCP connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `sse.heartbeatMs`: a `: ping` comment on idle streams.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Default `sse.bufferEvents`: frames queued for one subscriber before it is disconnected.
pub const DEFAULT_BUFFER_EVENTS: usize = 4096;
/// Default `session.sweepIntervalMs`: how often idle sessions are looked for.
pub const DEFAULT_SWEEP_INTERVAL_MS: u64 = 60_000;
/// Default `session.createTimeoutMs`: how long `createSession` may take.
pub const DEFAULT_CREATE_TIMEOUT_MS: u64 = 30_000;
/// Default `shutdownTimeoutMs`: how long `stop()` waits for connections to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 2_000;
/// Default `limits.bodyTimeoutMs`: a client has 30 s to send a whole request body.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default `limits.maxChatBodyBytes`: 8 MiB (a `useChat` body carries the whole conversation).
pub const DEFAULT_MAX_CHAT_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default `limits.maxImages`: images in one message.
pub const DEFAULT_MAX_IMAGES: usize = 8;
/// Default `limits.maxImageBytes`: 5 MiB per image, decoded.
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Default `limits.reserveConnections`: connections past the cap that may still ask `/health`.
pub const DEFAULT_RESERVE_CONNECTIONS: usize = 32;
/// Default `events.replayEvents`: frames a session's log keeps for replay.
pub const DEFAULT_REPLAY_EVENTS: usize = 4096;
/// Default `events.replayBytes`: bytes a session's log keeps for replay (4 MiB).
pub const DEFAULT_REPLAY_BYTES: usize = 4 * 1024 * 1024;
/// Default `runs.retainMs`: how long an ended run stays readable (1 h).
pub const DEFAULT_RUNS_RETAIN_MS: u64 = 60 * 60 * 1000;
/// Default `runs.retainPerSession`: ended runs kept per session.
pub const DEFAULT_RUNS_RETAIN_PER_SESSION: usize = 100;
/// Default `idempotency.ttlMs`: how long an `Idempotency-Key` is remembered (24 h).
pub const DEFAULT_IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Default `idempotency.maxKeys`: keys remembered at most.
pub const DEFAULT_IDEMPOTENCY_MAX_KEYS: usize = 100_000;
/// Default `session.maxSessions`: sessions in memory at once.
pub const DEFAULT_MAX_SESSIONS: u64 = 1000;
/// Largest `session.maxSessions`.
pub const MAX_MAX_SESSIONS: u64 = 1_000_000;
/// Default `webhook.sessionKeyPrefix`.
pub const DEFAULT_WEBHOOK_KEY_PREFIX: &str = "webhook:";
/// Default `approval.timeoutMs`: a pending approval is denied after 120 s.
pub const DEFAULT_APPROVAL_TIMEOUT_MS: u64 = 120_000;
/// Largest `approval.timeoutMs`: one day.
pub const MAX_APPROVAL_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest tool name a policy may name.
pub const MAX_TOOL_NAME_BYTES: usize = 128;
/// Default `chat.protocol`: the `ai` major whose UI message stream the chat route speaks.
pub const DEFAULT_CHAT_PROTOCOL: u8 = 6;

/// What happens when the agent calls a tool (`approval.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Ask,
    Deny,
}

impl Policy {
    fn parse(text: &str) -> Option<Policy> {
        Some(match text {
            "allow" => Policy::Allow,
            "ask" => Policy::Ask,
            "deny" => Policy::Deny,
            _ => return None,
        })
    }
}

/// `approval`: which tool calls a person decides on, and how long they have.
#[derive(Debug, Clone, Default)]
pub struct ApprovalConfig {
    /// Tool name → policy; `"*"` is every tool not named.
    pub policy: std::collections::HashMap<String, Policy>,
    pub timeout: Duration,
}

impl ApprovalConfig {
    /// Whether any tool call can be held or blocked (JS installs its hook only then).
    pub fn is_active(&self) -> bool {
        self.policy.values().any(|p| *p != Policy::Allow)
    }

    pub fn policy_for(&self, tool: &str) -> Policy {
        self.policy
            .get(tool)
            .or_else(|| self.policy.get("*"))
            .copied()
            .unwrap_or(Policy::Allow)
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub enabled: bool,
    /// Without a trailing slash; empty when the configured base path is `/`.
    pub base_path: String,
    pub secret: Option<String>,
    /// Whether a webhook body may name its session (`sessionKey`), under `session_key_prefix`.
    pub allow_request_session_key: bool,
    pub session_key_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    /// The bind address as the user wrote it, reported back by `getAddress()`.
    pub bind_text: String,
    pub port: u16,
    pub bearer_token: Option<String>,
    pub idle: Duration,
    pub max_queue: usize,
    pub sweep_interval: Duration,
    pub create_timeout: Duration,
    /// `session.defaultMode`: what a message without `mode` does while its session is busy.
    pub default_mode: Mode,
    /// `session.maxSessions`: at the cap a new session evicts the least recently active idle one.
    pub max_sessions: usize,
    pub webhook: WebhookConfig,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub heartbeat: Duration,
    pub buffer_events: usize,
    pub cors: Option<CorsOrigins>,
    pub shutdown_timeout: Duration,
    /// Host names (lowercase, no port) allowed in `Host` besides the loopback names.
    pub allowed_hosts: Vec<String>,
    pub body_timeout: Duration,
    pub max_chat_body_bytes: usize,
    pub max_images: usize,
    pub max_image_bytes: usize,
    pub reserve_connections: usize,
    pub replay_events: usize,
    pub replay_bytes: usize,
    pub runs_retain_ms: u64,
    pub runs_retain_per_session: usize,
    pub idempotency_ttl_ms: u64,
    pub idempotency_max_keys: usize,
    /// A chat client that disconnects aborts (or cancels) its run.
    pub chat_abort_on_disconnect: bool,
    /// `chat.protocol`: 5, 6 or 7 (the `ai` major of the clients). From 6 on, approvals use the
    /// SDK's own approval chunks; with 5, a `data-approval-request` part.
    pub chat_protocol: u8,
    pub approval: ApprovalConfig,
    /// `metrics.public`: `GET /metrics` answers without the bearer token.
    pub metrics_public: bool,
    /// `webhooks`: outbound webhooks and per-request callbacks.
    pub webhooks: crate::outbound::config::OutboundConfig,
    /// `cluster`: several gateways sharing sessions through Redis; `None`: one node.
    pub cluster: Option<crate::cluster::config::ClusterConfig>,
}

impl Config {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// A config for tests: loopback, port 0, no auth, webhooks off.
    pub fn for_tests() -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_text: "127.0.0.1".into(),
            port: 0,
            bearer_token: None,
            idle: Duration::from_secs(60 * 60),
            max_queue: 16,
            sweep_interval: Duration::from_millis(DEFAULT_SWEEP_INTERVAL_MS),
            create_timeout: Duration::from_millis(DEFAULT_CREATE_TIMEOUT_MS),
            default_mode: Mode::Queue,
            max_sessions: DEFAULT_MAX_SESSIONS as usize,
            webhook: WebhookConfig {
                enabled: false,
                base_path: "/webhook".into(),
                secret: None,
                allow_request_session_key: false,
                session_key_prefix: DEFAULT_WEBHOOK_KEY_PREFIX.into(),
            },
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            buffer_events: DEFAULT_BUFFER_EVENTS,
            cors: None,
            shutdown_timeout: Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MS),
            allowed_hosts: Vec::new(),
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            max_chat_body_bytes: DEFAULT_MAX_CHAT_BODY_BYTES,
            max_images: DEFAULT_MAX_IMAGES,
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            reserve_connections: DEFAULT_RESERVE_CONNECTIONS,
            replay_events: DEFAULT_REPLAY_EVENTS,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            runs_retain_ms: DEFAULT_RUNS_RETAIN_MS,
            runs_retain_per_session: DEFAULT_RUNS_RETAIN_PER_SESSION,
            idempotency_ttl_ms: DEFAULT_IDEMPOTENCY_TTL_MS,
            idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
            chat_abort_on_disconnect: false,
            chat_protocol: DEFAULT_CHAT_PROTOCOL,
            approval: ApprovalConfig {
                policy: Default::default(),
                timeout: Duration::from_millis(DEFAULT_APPROVAL_TIMEOUT_MS),
            },
            metrics_public: false,
            webhooks: Default::default(),
            cluster: None,
        }
    }

    /// Parses and validates the JSON form of `GatewayConfig`.
    pub fn from_json(text: &str) -> Result<Config, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("Invalid config: {e}"))?;
        let root = value
            .as_object()
            .ok_or_else(|| "Invalid config: expected an object".to_string())?;

        known(
            root,
            "config",
            &[
                "bind",
                "port",
                "bearerToken",
                "session",
                "webhook",
                "limits",
                "sse",
                "cors",
                "shutdownTimeoutMs",
                "allowedHosts",
                "events",
                "runs",
                "idempotency",
                "chat",
                "approval",
                "metrics",
                "webhooks",
                "cluster",
            ],
        )?;
        let bind_text = req_str(root, "bind", "config.bind")?;
        let bind = parse_bind(bind_text)?;
        let port = req_num(root, "port", "config.port")?;
        if !(port.fract() == 0.0 && (0.0..=65535.0).contains(&port)) {
            return Err(format!(
                "Invalid config.port: expected an integer from 0 to 65535, got {port}"
            ));
        }
        let bearer_token = non_empty_secret(root, "bearerToken", "config.bearerToken")?;

        let session = req_obj(root, "session", "config.session")?;
        known(
            session,
            "config.session",
            &[
                "idleMinutes",
                "maxQueuePerSession",
                "sweepIntervalMs",
                "createTimeoutMs",
                "defaultMode",
                "maxSessions",
            ],
        )?;
        let idle_minutes = req_num(session, "idleMinutes", "config.session.idleMinutes")?;
        if !(0.0..=MAX_IDLE_MINUTES).contains(&idle_minutes) {
            return Err(format!(
                "Invalid config.session.idleMinutes: expected a number from 0 to {MAX_IDLE_MINUTES}, got {idle_minutes}"
            ));
        }
        let max_queue = positive_int(
            session,
            "maxQueuePerSession",
            "config.session.maxQueuePerSession",
            None,
        )?;
        let sweep_ms = positive_int(
            session,
            "sweepIntervalMs",
            "config.session.sweepIntervalMs",
            Some(DEFAULT_SWEEP_INTERVAL_MS),
        )?;
        let create_ms = positive_int(
            session,
            "createTimeoutMs",
            "config.session.createTimeoutMs",
            Some(DEFAULT_CREATE_TIMEOUT_MS),
        )?;

        let webhook = req_obj(root, "webhook", "config.webhook")?;
        known(
            webhook,
            "config.webhook",
            &[
                "enabled",
                "basePath",
                "secret",
                "allowRequestSessionKey",
                "sessionKeyPrefix",
            ],
        )?;
        let enabled = opt_bool(webhook, "enabled", "config.webhook.enabled")?;
        let base_path =
            opt_str(webhook, "basePath", "config.webhook.basePath")?.unwrap_or("/webhook");
        if !base_path.starts_with('/') {
            return Err(format!(
                "Invalid config.webhook.basePath: must start with \"/\", got {base_path:?}"
            ));
        }
        let secret = non_empty_secret(webhook, "secret", "config.webhook.secret")?;
        let allow_request_session_key = opt_bool(
            webhook,
            "allowRequestSessionKey",
            "config.webhook.allowRequestSessionKey",
        )?;
        let session_key_prefix = opt_str(
            webhook,
            "sessionKeyPrefix",
            "config.webhook.sessionKeyPrefix",
        )?
        .unwrap_or(DEFAULT_WEBHOOK_KEY_PREFIX);
        if session_key_prefix.is_empty() || session_key_prefix.len() > MAX_PREFIX_BYTES {
            return Err(format!(
                "Invalid config.webhook.sessionKeyPrefix: expected 1 to {MAX_PREFIX_BYTES} bytes, got {session_key_prefix:?}"
            ));
        }

        let empty = Map::new();
        let limits = opt_obj(root, "limits", "config.limits")?.unwrap_or(&empty);
        known(
            limits,
            "config.limits",
            &[
                "maxBodyBytes",
                "headerTimeoutMs",
                "maxConnections",
                "bodyTimeoutMs",
                "maxChatBodyBytes",
                "maxImages",
                "maxImageBytes",
                "reserveConnections",
            ],
        )?;
        let sse = opt_obj(root, "sse", "config.sse")?.unwrap_or(&empty);
        known(sse, "config.sse", &["heartbeatMs", "bufferEvents"])?;

        let cors = match root.get("cors") {
            None | Some(Value::Null) => None,
            Some(Value::Object(cors)) => {
                known(cors, "config.cors", &["origins"])?;
                parse_cors(cors.get("origins"))?
            }
            Some(other) => {
                return Err(format!(
                    "Invalid config.cors: expected an object, got {other}"
                ))
            }
        };
        let allowed_hosts = parse_allowed_hosts(root.get("allowedHosts"))?;

        Config::finish(
            bind,
            bind_text,
            port,
            bearer_token,
            idle_minutes,
            max_queue,
            sweep_ms,
            create_ms,
            WebhookConfig {
                enabled,
                base_path: base_path.trim_end_matches('/').to_string(),
                secret,
                allow_request_session_key,
                session_key_prefix: session_key_prefix.to_string(),
            },
            limits,
            sse,
            (cors, allowed_hosts),
            root,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        bind: IpAddr,
        bind_text: &str,
        port: f64,
        bearer_token: Option<String>,
        idle_minutes: f64,
        max_queue: u64,
        sweep_ms: u64,
        create_ms: u64,
        webhook: WebhookConfig,
        limits: &Map<String, Value>,
        sse: &Map<String, Value>,
        (cors, allowed_hosts): (Option<CorsOrigins>, Vec<String>),
        root: &Map<String, Value>,
    ) -> Result<Config, String> {
        let session = req_obj(root, "session", "config.session")?;
        let max_sessions = positive_int(
            session,
            "maxSessions",
            "config.session.maxSessions",
            Some(DEFAULT_MAX_SESSIONS),
        )
        .ok()
        .filter(|n| *n <= MAX_MAX_SESSIONS)
        .ok_or_else(|| {
            format!(
                "Invalid config.session.maxSessions: expected an integer from 1 to {MAX_MAX_SESSIONS}, got {}",
                session.get("maxSessions").map(|v| v.to_string()).unwrap_or_default()
            )
        })?;

        let default_mode = match opt_str(session, "defaultMode", "config.session.defaultMode")? {
            None => Mode::Queue,
            Some(text) => Mode::parse(text).ok_or_else(|| {
                format!(
                    "Invalid config.session.defaultMode: expected one of {}, got {text:?}",
                    Mode::EXPECTED
                )
            })?,
        };

        let body_timeout_ms = positive_int(
            limits,
            "bodyTimeoutMs",
            "config.limits.bodyTimeoutMs",
            Some(DEFAULT_BODY_TIMEOUT_MS),
        )?;
        let max_chat_body = positive_int(
            limits,
            "maxChatBodyBytes",
            "config.limits.maxChatBodyBytes",
            Some(DEFAULT_MAX_CHAT_BODY_BYTES as u64),
        )?;
        let max_images = positive_int(
            limits,
            "maxImages",
            "config.limits.maxImages",
            Some(DEFAULT_MAX_IMAGES as u64),
        )?;
        let max_image_bytes = positive_int(
            limits,
            "maxImageBytes",
            "config.limits.maxImageBytes",
            Some(DEFAULT_MAX_IMAGE_BYTES as u64),
        )?;
        let reserve_connections = positive_int(
            limits,
            "reserveConnections",
            "config.limits.reserveConnections",
            Some(DEFAULT_RESERVE_CONNECTIONS as u64),
        )?;
        let max_body = positive_int(
            limits,
            "maxBodyBytes",
            "config.limits.maxBodyBytes",
            Some(DEFAULT_MAX_BODY_BYTES as u64),
        )?;
        let header_ms = positive_int(
            limits,
            "headerTimeoutMs",
            "config.limits.headerTimeoutMs",
            Some(DEFAULT_HEADER_TIMEOUT_MS),
        )?;
        let max_connections = positive_int(
            limits,
            "maxConnections",
            "config.limits.maxConnections",
            Some(DEFAULT_MAX_CONNECTIONS as u64),
        )?;
        let heartbeat_ms = positive_int(
            sse,
            "heartbeatMs",
            "config.sse.heartbeatMs",
            Some(DEFAULT_HEARTBEAT_MS),
        )?;
        let buffer_events = positive_int(
            sse,
            "bufferEvents",
            "config.sse.bufferEvents",
            Some(DEFAULT_BUFFER_EVENTS as u64),
        )?;
        let empty = Map::new();
        let events = opt_obj(root, "events", "config.events")?.unwrap_or(&empty);
        known(events, "config.events", &["replayEvents", "replayBytes"])?;
        let runs = opt_obj(root, "runs", "config.runs")?.unwrap_or(&empty);
        known(runs, "config.runs", &["retainMs", "retainPerSession"])?;
        let idempotency = opt_obj(root, "idempotency", "config.idempotency")?.unwrap_or(&empty);
        known(idempotency, "config.idempotency", &["ttlMs", "maxKeys"])?;
        let chat = opt_obj(root, "chat", "config.chat")?.unwrap_or(&empty);
        known(chat, "config.chat", &["abortOnDisconnect", "protocol"])?;
        let chat_protocol = match chat.get("protocol") {
            None | Some(Value::Null) => DEFAULT_CHAT_PROTOCOL,
            Some(Value::Number(n)) if matches!(n.as_u64(), Some(5..=7)) => {
                n.as_u64().unwrap_or(6) as u8
            }
            Some(other) => {
                return Err(format!(
                    "Invalid config.chat.protocol: expected 5, 6 or 7, got {other}"
                ))
            }
        };
        let approval = parse_approval(root.get("approval"))?;
        let metrics = opt_obj(root, "metrics", "config.metrics")?.unwrap_or(&empty);
        known(metrics, "config.metrics", &["public"])?;
        let metrics_public = opt_bool(metrics, "public", "config.metrics.public")?;
        let webhooks = crate::outbound::config::parse(root.get("webhooks"))?;
        let cluster = crate::cluster::config::parse(root.get("cluster"))?;
        let replay_events = positive_int(
            events,
            "replayEvents",
            "config.events.replayEvents",
            Some(DEFAULT_REPLAY_EVENTS as u64),
        )?;
        let replay_bytes = positive_int(
            events,
            "replayBytes",
            "config.events.replayBytes",
            Some(DEFAULT_REPLAY_BYTES as u64),
        )?;
        let runs_retain_ms = positive_int(
            runs,
            "retainMs",
            "config.runs.retainMs",
            Some(DEFAULT_RUNS_RETAIN_MS),
        )?;
        let runs_retain_per_session = positive_int(
            runs,
            "retainPerSession",
            "config.runs.retainPerSession",
            Some(DEFAULT_RUNS_RETAIN_PER_SESSION as u64),
        )?;
        let idempotency_ttl_ms = positive_int(
            idempotency,
            "ttlMs",
            "config.idempotency.ttlMs",
            Some(DEFAULT_IDEMPOTENCY_TTL_MS),
        )?;
        let idempotency_max_keys = positive_int(
            idempotency,
            "maxKeys",
            "config.idempotency.maxKeys",
            Some(DEFAULT_IDEMPOTENCY_MAX_KEYS as u64),
        )?;
        let chat_abort_on_disconnect =
            opt_bool(chat, "abortOnDisconnect", "config.chat.abortOnDisconnect")?;
        let shutdown_ms = positive_int(
            root,
            "shutdownTimeoutMs",
            "config.shutdownTimeoutMs",
            Some(DEFAULT_SHUTDOWN_TIMEOUT_MS),
        )?;
        Ok(Config {
            bind,
            bind_text: bind_text.to_string(),
            port: port as u16,
            bearer_token,
            idle: Duration::from_secs_f64(idle_minutes * 60.0),
            max_queue: max_queue as usize,
            sweep_interval: Duration::from_millis(sweep_ms),
            create_timeout: Duration::from_millis(create_ms),
            default_mode,
            max_sessions: max_sessions as usize,
            webhook,
            max_body_bytes: max_body as usize,
            header_timeout: Duration::from_millis(header_ms),
            max_connections: max_connections as usize,
            heartbeat: Duration::from_millis(heartbeat_ms),
            buffer_events: buffer_events as usize,
            cors,
            shutdown_timeout: Duration::from_millis(shutdown_ms),
            allowed_hosts,
            body_timeout: Duration::from_millis(body_timeout_ms),
            max_chat_body_bytes: max_chat_body as usize,
            max_images: max_images as usize,
            max_image_bytes: max_image_bytes as usize,
            reserve_connections: reserve_connections as usize,
            replay_events: replay_events as usize,
            replay_bytes: replay_bytes as usize,
            runs_retain_ms,
            runs_retain_per_session: runs_retain_per_session as usize,
            idempotency_ttl_ms,
            idempotency_max_keys: idempotency_max_keys as usize,
            chat_abort_on_disconnect,
            chat_protocol,
            approval,
            metrics_public,
            webhooks,
            cluster,
        })
    }

    /// True when the bind address only accepts connections from this machine.
    pub fn is_loopback(&self) -> bool {
        self.bind.is_loopback()
    }
}

/// `approval: {policy: {tool: "allow" | "ask" | "deny"}, timeoutMs}`.
fn parse_approval(value: Option<&Value>) -> Result<ApprovalConfig, String> {
    let empty = Map::new();
    let obj = match value {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(format!(
                "Invalid config.approval: expected an object, got {other}"
            ))
        }
    };
    known(obj, "config.approval", &["policy", "timeoutMs"])?;
    let mut policy = std::collections::HashMap::new();
    match obj.get("policy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(rules)) => {
            for (tool, rule) in rules {
                if tool.is_empty() || tool.len() > MAX_TOOL_NAME_BYTES {
                    return Err(format!(
                        "Invalid config.approval.policy: a tool name must be 1 to {MAX_TOOL_NAME_BYTES} bytes, got {tool:?}"
                    ));
                }
                let parsed = rule.as_str().and_then(Policy::parse).ok_or_else(|| {
                    format!(
                        "Invalid config.approval.policy.{tool}: expected \"allow\", \"ask\" or \"deny\", got {rule}"
                    )
                })?;
                policy.insert(tool.clone(), parsed);
            }
        }
        Some(other) => {
            return Err(format!(
                "Invalid config.approval.policy: expected an object of tool names, got {other}"
            ))
        }
    }
    let timeout_ms = positive_int(
        obj,
        "timeoutMs",
        "config.approval.timeoutMs",
        Some(DEFAULT_APPROVAL_TIMEOUT_MS),
    )?;
    if timeout_ms > MAX_APPROVAL_TIMEOUT_MS {
        return Err(format!(
            "Invalid config.approval.timeoutMs: expected at most {MAX_APPROVAL_TIMEOUT_MS} (one day), got {timeout_ms}"
        ));
    }
    Ok(ApprovalConfig {
        policy,
        timeout: Duration::from_millis(timeout_ms),
    })
}

fn parse_bind(text: &str) -> Result<IpAddr, String> {
    if text == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let trimmed = text.trim_start_matches('[').trim_end_matches(']');
    trimmed.parse::<IpAddr>().map_err(|_| {
        format!("Invalid config.bind: expected an IP address or \"localhost\", got {text:?}")
    })
}

/// The longest `webhook.sessionKeyPrefix` accepted.
pub const MAX_PREFIX_BYTES: usize = 256;

/// Refuses fields this version does not know: a typo (`sesion`) must not silently fall back
/// to a default.
/// Refuses fields this version does not know, naming the first.
pub(crate) fn known(obj: &Map<String, Value>, name: &str, fields: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "Invalid {name}.{unknown}: unknown field (known: {})",
            fields.join(", ")
        )),
        None => Ok(()),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, name: &str) -> Result<bool, String> {
    match obj.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => Ok(false),
        Some(other) => Err(format!("Invalid {name}: expected a boolean, got {other}")),
    }
}

/// A secret that may be absent but not empty: `""` would read as "no auth" by mistake.
fn non_empty_secret(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<String>, String> {
    match opt_str(obj, key, name)? {
        Some("") => Err(format!(
            "Invalid {name}: must not be empty (leave it out to disable it)"
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// `cors.origins`: `"*"` or a list of exact origins, `http(s)://host[:port]`.
fn parse_cors(origins: Option<&Value>) -> Result<Option<CorsOrigins>, String> {
    match origins {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "*" => Ok(Some(CorsOrigins::Any)),
        Some(Value::Array(items)) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = format!("config.cors.origins[{i}]");
                let origin = item
                    .as_str()
                    .ok_or_else(|| format!("Invalid {name}: expected a string, got {item}"))?;
                if origin == "*" {
                    return Ok(Some(CorsOrigins::Any));
                }
                check_origin(origin).map_err(|why| format!("Invalid {name}: {why}"))?;
                list.push(origin.to_ascii_lowercase());
            }
            Ok(Some(CorsOrigins::List(list)))
        }
        Some(other) => Err(format!(
            "Invalid config.cors.origins: expected \"*\" or an array of origins, got {other}"
        )),
    }
}

/// An origin as a browser sends it: scheme, host, optional port; nothing else.
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    if rest.is_empty() {
        return Err(format!("{origin:?} has no host"));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@' | ' '))
    {
        return Err(format!(
            "{origin:?} cannot match any browser's Origin: remove {c:?} and what follows (an origin has no path or trailing slash)"
        ));
    }
    Ok(())
}

fn parse_allowed_hosts(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str() {
                Some(h)
                    if (!h.is_empty() && !h.contains(['/', ' ', ':']))
                        || (h.starts_with('[') && h.ends_with(']')) =>
                {
                    Ok(h.to_ascii_lowercase())
                }
                _ => Err(format!(
                    "Invalid config.allowedHosts[{i}]: expected a host name without scheme or port, got {item}"
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "Invalid config.allowedHosts: expected an array of host names, got {other}"
        )),
    }
}

pub(crate) fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("Invalid {name}: required")),
        Some(other) => Err(format!("Invalid {name}: expected a string, got {other}")),
    }
}

pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) => Ok(None),
        Some(other) => Err(format!("Invalid {name}: expected a string, got {other}")),
    }
}

fn req_num(obj: &Map<String, Value>, key: &str, name: &str) -> Result<f64, String> {
    match obj.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("Invalid {name}: not a finite number")),
        None | Some(Value::Null) => Err(format!("Invalid {name}: required")),
        Some(other) => Err(format!("Invalid {name}: expected a number, got {other}")),
    }
}

fn req_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<&'a Map<String, Value>, String> {
    match obj.get(key) {
        Some(Value::Object(o)) => Ok(o),
        None | Some(Value::Null) => Err(format!("Invalid {name}: required")),
        Some(other) => Err(format!("Invalid {name}: expected an object, got {other}")),
    }
}

fn opt_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match obj.get(key) {
        Some(Value::Object(o)) => Ok(Some(o)),
        None | Some(Value::Null) => Ok(None),
        Some(other) => Err(format!("Invalid {name}: expected an object, got {other}")),
    }
}

/// The largest count, size or duration accepted (that of `setTimeout`): 2^31 - 1.
pub const MAX_INT: u64 = 2_147_483_647;
/// The largest `session.idleMinutes` accepted (about 19 years).
pub const MAX_IDLE_MINUTES: f64 = 1e7;

/// An integer from 1 to [`MAX_INT`]; `default` is used when the field is absent (None means required).
fn positive_int(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
    default: Option<u64>,
) -> Result<u64, String> {
    match obj.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| format!("Invalid {name}: required")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (1.0..=MAX_INT as f64).contains(&f) => Ok(f as u64),
            _ => Err(format!(
                "Invalid {name}: expected an integer from 1 to {MAX_INT}, got {n}"
            )),
        },
        Some(other) => Err(format!(
            "Invalid {name}: expected an integer from 1 to {MAX_INT}, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        serde_json::json!({
            "bind": "127.0.0.1", "port": 0,
            "session": {"idleMinutes": 30, "maxQueuePerSession": 8},
            "webhook": {"enabled": false, "basePath": "/webhook"}
        })
    }

    fn err_with(patch: impl FnOnce(&mut Value)) -> String {
        let mut v = base();
        patch(&mut v);
        Config::from_json(&v.to_string()).expect_err("config should be rejected")
    }

    #[test]
    fn the_seed_config_parses_with_defaults() {
        let c = Config::from_json(&base().to_string()).expect("valid");
        assert_eq!(c.port, 0);
        assert_eq!(c.max_queue, 8);
        assert_eq!(c.idle, Duration::from_secs(1800));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.buffer_events, DEFAULT_BUFFER_EVENTS);
        assert_eq!(c.webhook.base_path, "/webhook");
        assert!(c.cors.is_none());
        assert!(c.bearer_token.is_none());
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        assert!(err_with(|v| v["port"] = 70000.into()).contains("config.port"));
        assert!(err_with(|v| v["port"] = (-1).into()).contains("config.port"));
        assert!(err_with(|v| v["bind"] = "not an address".into()).contains("config.bind"));
        assert!(err_with(|v| v["session"]["idleMinutes"] = (-5).into())
            .contains("config.session.idleMinutes"));
        assert!(err_with(|v| v["webhook"]["basePath"] = "hook".into())
            .contains("config.webhook.basePath"));
        assert!(err_with(|v| v["session"]["maxQueuePerSession"] = 0.into())
            .contains("maxQueuePerSession"));
        assert!(
            err_with(|v| v["limits"] = serde_json::json!({"maxBodyBytes": "big"}))
                .contains("config.limits.maxBodyBytes")
        );
    }

    #[test]
    fn config_mistakes_are_errors_that_name_the_field() {
        assert!(err_with(|v| v["sesion"] = serde_json::json!({})).contains("config.sesion"));
        assert!(err_with(|v| v["session"]["idleMinute"] = 3.into())
            .contains("config.session.idleMinute"));
        assert!(
            err_with(|v| v["limits"] = serde_json::json!({"maxBody": 3}))
                .contains("config.limits.maxBody")
        );
        assert!(err_with(|v| v["bearerToken"] = "".into()).contains("config.bearerToken"));
        assert!(err_with(|v| v["webhook"]["secret"] = "".into()).contains("config.webhook.secret"));
        assert!(err_with(|v| v["webhook"]["sessionKeyPrefix"] = "".into())
            .contains("config.webhook.sessionKeyPrefix"));
        for bad in [
            "http://a.test/",
            "http://a.test/path",
            "a.test",
            "ftp://a.test",
            "http://",
        ] {
            let e =
                err_with(|v| v["cors"] = serde_json::json!({"origins": ["http://ok.test", bad]}));
            assert!(e.contains("config.cors.origins[1]"), "{bad}: {e}");
        }
        assert!(
            err_with(|v| v["allowedHosts"] = serde_json::json!(["http://x"]))
                .contains("config.allowedHosts[0]")
        );
        assert!(
            err_with(|v| v["limits"] = serde_json::json!({"bodyTimeoutMs": 0}))
                .contains("config.limits.bodyTimeoutMs")
        );
    }

    #[test]
    fn new_limits_have_defaults() {
        let c = Config::from_json(&base().to_string()).expect("valid");
        assert_eq!(
            c.body_timeout,
            Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS)
        );
        assert_eq!(c.max_chat_body_bytes, DEFAULT_MAX_CHAT_BODY_BYTES);
        assert_eq!(c.max_images, DEFAULT_MAX_IMAGES);
        assert_eq!(c.max_image_bytes, DEFAULT_MAX_IMAGE_BYTES);
        assert_eq!(c.reserve_connections, DEFAULT_RESERVE_CONNECTIONS);
        assert!(!c.webhook.allow_request_session_key);
        assert_eq!(c.webhook.session_key_prefix, "webhook:");
        assert!(c.allowed_hosts.is_empty());
    }

    #[test]
    fn fractional_idle_minutes_and_cors_lists_are_accepted() {
        let mut v = base();
        v["session"]["idleMinutes"] = 0.01.into();
        v["cors"] = serde_json::json!({"origins": ["http://a.test", "https://B.test:8443"]});
        let c = Config::from_json(&v.to_string()).expect("valid");
        assert_eq!(c.idle, Duration::from_millis(600));
        assert_eq!(
            c.cors,
            Some(CorsOrigins::List(vec![
                "http://a.test".into(),
                "https://b.test:8443".into()
            ]))
        );
        v["cors"] = serde_json::json!({"origins": "*"});
        assert_eq!(
            Config::from_json(&v.to_string()).expect("valid").cors,
            Some(CorsOrigins::Any)
        );
    }
}
