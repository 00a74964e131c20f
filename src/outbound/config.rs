//! `webhooks`: where outbound webhooks go, how they are signed, retried and bounded.
//!
//! Parsed strictly, like the rest of the config: an unknown field or a bad value fails the
//! constructor with a message that names it (`Invalid config.webhooks.outbound[0].secret: …`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hyper::http::uri::Scheme;
use hyper::Uri;
use serde_json::{Map, Value};

use crate::config::{known, opt_str, req_str};

/// Most `webhooks.outbound` targets.
pub const MAX_TARGETS: usize = 16;
/// Most `webhooks.allowedHosts` entries.
pub const MAX_ALLOWED_HOSTS: usize = 256;
/// Longest webhook URL, configured or per request.
pub const MAX_URL_BYTES: usize = 2048;
/// Default `webhooks.retryScheduleMs`: 5 s, 30 s, 2 min, 10 min, 1 h.
pub const DEFAULT_RETRY_SCHEDULE_MS: [u64; 5] = [5_000, 30_000, 120_000, 600_000, 3_600_000];
/// Most entries in `webhooks.retryScheduleMs` (retries after the first attempt).
pub const MAX_RETRIES: usize = 20;
/// Longest wait before one retry: one day.
pub const MAX_RETRY_DELAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Default `webhooks.timeoutMs`: one attempt (connect and answer) has 10 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Largest `webhooks.timeoutMs`: 10 min.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Default `webhooks.maxPending`: deliveries held at once (queued, in flight, waiting to retry).
pub const DEFAULT_MAX_PENDING: usize = 1000;
/// Largest `webhooks.maxPending`.
pub const MAX_MAX_PENDING: usize = 100_000;
/// Shortest signing key, decoded (Standard Webhooks: 24 to 64 bytes; 16 is the floor we take).
pub const MIN_KEY_BYTES: usize = 16;
/// Longest signing key, decoded.
pub const MAX_KEY_BYTES: usize = 64;
/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The events an outbound webhook can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    RunSucceeded,
    RunFailed,
    RunAborted,
    RunCancelled,
    ApprovalRequested,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::RunSucceeded,
        EventType::RunFailed,
        EventType::RunAborted,
        EventType::RunCancelled,
        EventType::ApprovalRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RunSucceeded => "run.succeeded",
            EventType::RunFailed => "run.failed",
            EventType::RunAborted => "run.aborted",
            EventType::RunCancelled => "run.cancelled",
            EventType::ApprovalRequested => "approval.requested",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The HMAC key of a `whsec_…` secret, decoded. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Arc<[u8]>);

impl SigningKey {
    /// Decodes `whsec_<base64>`; the error says what is wrong, without the secret.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!("expected \"{SECRET_PREFIX}\" followed by base64 (a Standard Webhooks secret)")
        })?;
        // Standard base64, with or without its `=` padding.
        const ENGINE: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let key = ENGINE
            .decode(encoded)
            .map_err(|_| format!("the part after \"{SECRET_PREFIX}\" is not valid base64"))?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(format!(
                "the key must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {}",
                key.len()
            ));
        }
        Ok(SigningKey(key.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// The host of a webhook URL: a lowercase name (no trailing dot) or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlHost {
    Name(String),
    Ip(IpAddr),
}

/// An absolute `http`/`https` URL without credentials, checked once and kept parsed.
#[derive(Clone, Debug)]
pub struct WebhookUrl {
    /// The URL as given.
    pub text: String,
    pub uri: Uri,
    pub https: bool,
    pub host: UrlHost,
    pub port: u16,
}

impl WebhookUrl {
    /// Parses and checks a URL; the error is the reason alone (the caller names the field).
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        if text.len() > MAX_URL_BYTES {
            return Err(format!(
                "longer than {MAX_URL_BYTES} bytes ({} bytes)",
                text.len()
            ));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| format!("not an absolute http:// or https:// URL: {text:?}"))?;
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => {
                return Err(format!(
                    "the scheme must be http:// or https://, got {text:?}"
                ))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("no host in {text:?}"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "must not carry credentials (user@host) in {text:?}"
            ));
        }
        let host = parse_url_host(authority.host()).map_err(|why| format!("{why} in {text:?}"))?;
        let port = match authority.port_u16() {
            Some(0) => return Err(format!("port 0 in {text:?}")),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Ok(WebhookUrl {
            text: text.to_string(),
            uri,
            https,
            host,
            port,
        })
    }

    /// Scheme, host, port and path: what a log line may show (a query may hold a token).
    pub fn redacted(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or("");
        format!("{scheme}://{authority}{}", self.uri.path())
    }
}

/// A host as a URL carries it: `name`, `1.2.3.4` or `[v6]`.
fn parse_url_host(host: &str) -> Result<UrlHost, String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<IpAddr>()
            .map(UrlHost::Ip)
            .map_err(|_| format!("bad IPv6 address {host:?}"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(UrlHost::Ip(ip));
    }
    let name = normalise_name(host).ok_or_else(|| format!("bad host name {host:?}"))?;
    Ok(UrlHost::Name(name))
}

/// A DNS name, lowercased, without its trailing dot; None when it is not one.
fn normalise_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

/// One `webhooks.allowedHosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host. Private and loopback addresses stay refused.
    Any,
    /// `*.example.com`: any subdomain of it (stored as `.example.com`), not the name itself.
    Suffix(String),
    /// `hooks.example.com`: that name exactly.
    Name(String),
    /// `127.0.0.1`, `[::1]`: that address exactly (compared as addresses).
    Ip(IpAddr),
}

impl HostPattern {
    fn parse(text: &str) -> Option<HostPattern> {
        if text == "*" {
            return Some(HostPattern::Any);
        }
        if let Some(suffix) = text.strip_prefix("*.") {
            return normalise_name(suffix).map(|s| HostPattern::Suffix(format!(".{s}")));
        }
        match parse_url_host(text).ok()? {
            UrlHost::Ip(ip) => Some(HostPattern::Ip(ip.to_canonical())),
            UrlHost::Name(name) => Some(HostPattern::Name(name)),
        }
    }

    /// Whether a URL's host matches this entry.
    pub fn matches(&self, host: &UrlHost) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Suffix(suffix), UrlHost::Name(name)) => name.ends_with(suffix.as_str()),
            _ => self.is_exact(host),
        }
    }

    /// Whether this entry names the host itself (not by a wildcard): only then may the host
    /// reach a private, loopback or otherwise internal address.
    pub fn is_exact(&self, host: &UrlHost) -> bool {
        match (self, host) {
            (HostPattern::Name(p), UrlHost::Name(name)) => p == name,
            (HostPattern::Ip(p), UrlHost::Ip(ip)) => *p == ip.to_canonical(),
            _ => false,
        }
    }
}

/// One `webhooks.outbound` entry.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: Arc<WebhookUrl>,
    pub key: SigningKey,
    /// None: every event.
    pub events: Option<Vec<EventType>>,
}

impl Target {
    pub fn wants(&self, event: &str) -> bool {
        match &self.events {
            None => true,
            Some(events) => events.iter().any(|e| e.as_str() == event),
        }
    }
}

/// The parsed `webhooks` object.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    pub targets: Vec<Target>,
    pub allowed_hosts: Vec<HostPattern>,
    /// Signs per-request callbacks; None: callbacks are refused.
    pub callback_key: Option<SigningKey>,
    /// The wait before each retry; its length is the number of retries.
    pub retry_schedule: Vec<Duration>,
    /// One attempt: resolve, connect and answer.
    pub timeout: Duration,
    pub max_pending: usize,
}

impl Default for OutboundConfig {
    /// No targets, no callbacks, the default schedule and bounds.
    fn default() -> Self {
        OutboundConfig {
            targets: Vec::new(),
            allowed_hosts: Vec::new(),
            callback_key: None,
            retry_schedule: DEFAULT_RETRY_SCHEDULE_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

impl OutboundConfig {
    /// Whether anything can ever be sent: a target, or callbacks enabled.
    pub fn is_active(&self) -> bool {
        !self.targets.is_empty() || self.callback_key.is_some()
    }
}

/// Parses `config.webhooks` (absent or null: the default, which sends nothing).
pub fn parse(value: Option<&Value>) -> Result<OutboundConfig, String> {
    const NAME: &str = "config.webhooks";
    let obj = match value {
        None | Some(Value::Null) => return Ok(OutboundConfig::default()),
        Some(Value::Object(obj)) => obj,
        Some(other) => return Err(format!("Invalid {NAME}: expected an object, got {other}")),
    };
    known(
        obj,
        NAME,
        &[
            "outbound",
            "allowedHosts",
            "callbackSecret",
            "retryScheduleMs",
            "timeoutMs",
            "maxPending",
        ],
    )?;
    let mut config = OutboundConfig {
        targets: parse_targets(obj.get("outbound"))?,
        allowed_hosts: parse_allowed_hosts(obj.get("allowedHosts"))?,
        ..OutboundConfig::default()
    };
    if let Some(secret) = opt_str(obj, "callbackSecret", "config.webhooks.callbackSecret")? {
        config.callback_key = Some(
            SigningKey::parse(secret)
                .map_err(|why| format!("Invalid config.webhooks.callbackSecret: {why}"))?,
        );
    }
    if let Some(schedule) = parse_schedule(obj.get("retryScheduleMs"))? {
        config.retry_schedule = schedule;
    }
    config.timeout = Duration::from_millis(int_in(
        obj,
        "timeoutMs",
        "config.webhooks.timeoutMs",
        DEFAULT_TIMEOUT_MS,
        MAX_TIMEOUT_MS,
    )?);
    config.max_pending = int_in(
        obj,
        "maxPending",
        "config.webhooks.maxPending",
        DEFAULT_MAX_PENDING as u64,
        MAX_MAX_PENDING as u64,
    )? as usize;
    Ok(config)
}

fn parse_targets(value: Option<&Value>) -> Result<Vec<Target>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "Invalid config.webhooks.outbound: expected an array of {{url, secret, events?}}, got {other}"
            ))
        }
    };
    if items.len() > MAX_TARGETS {
        return Err(format!(
            "Invalid config.webhooks.outbound: at most {MAX_TARGETS} targets, got {}",
            items.len()
        ));
    }
    let mut targets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("config.webhooks.outbound[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| format!("Invalid {name}: expected an object, got {item}"))?;
        known(obj, &name, &["url", "secret", "events"])?;
        let url = req_str(obj, "url", &format!("{name}.url"))?;
        let url = WebhookUrl::parse(url).map_err(|why| format!("Invalid {name}.url: {why}"))?;
        let secret = req_str(obj, "secret", &format!("{name}.secret"))?;
        let key =
            SigningKey::parse(secret).map_err(|why| format!("Invalid {name}.secret: {why}"))?;
        let events = parse_events(obj.get("events"), &format!("{name}.events"))?;
        targets.push(Target {
            url: Arc::new(url),
            key,
            events,
        });
    }
    Ok(targets)
}

fn parse_events(value: Option<&Value>, name: &str) -> Result<Option<Vec<EventType>>, String> {
    let known_events = || {
        EventType::ALL
            .iter()
            .map(|e| format!("{:?}", e.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(format!(
                "Invalid {name}: must not be empty (leave it out for every event)"
            ))
        }
        Some(other) => {
            return Err(format!(
                "Invalid {name}: expected an array of event types, got {other}"
            ))
        }
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let event = item.as_str().and_then(EventType::parse).ok_or_else(|| {
            format!(
                "Invalid {name}[{i}]: expected one of {}, got {item}",
                known_events()
            )
        })?;
        if events.contains(&event) {
            return Err(format!(
                "Invalid {name}[{i}]: {:?} is listed twice",
                event.as_str()
            ));
        }
        events.push(event);
    }
    Ok(Some(events))
}

fn parse_allowed_hosts(value: Option<&Value>) -> Result<Vec<HostPattern>, String> {
    const NAME: &str = "config.webhooks.allowedHosts";
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "Invalid {NAME}: expected an array of host names, got {other}"
            ))
        }
    };
    if items.len() > MAX_ALLOWED_HOSTS {
        return Err(format!(
            "Invalid {NAME}: at most {MAX_ALLOWED_HOSTS} entries, got {}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().and_then(HostPattern::parse).ok_or_else(|| {
                format!(
                    "Invalid {NAME}[{i}]: expected a host name (\"hooks.example.com\"), a wildcard (\"*.example.com\" or \"*\") or an IP address (\"127.0.0.1\", \"[::1]\"), without scheme or port, got {item}"
                )
            })
        })
        .collect()
}

fn parse_schedule(value: Option<&Value>) -> Result<Option<Vec<Duration>>, String> {
    const NAME: &str = "config.webhooks.retryScheduleMs";
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "Invalid {NAME}: expected an array of delays in milliseconds, got {other}"
            ))
        }
    };
    if items.len() > MAX_RETRIES {
        return Err(format!(
            "Invalid {NAME}: at most {MAX_RETRIES} retries, got {}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            int_value(item, MAX_RETRY_DELAY_MS)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    format!(
                        "Invalid {NAME}[{i}]: expected an integer from 1 to {MAX_RETRY_DELAY_MS} (one day), got {item}"
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An integer from 1 to `max`.
fn int_value(value: &Value, max: u64) -> Option<u64> {
    let f = value.as_f64()?;
    (f.fract() == 0.0 && (1.0..=max as f64).contains(&f)).then_some(f as u64)
}

/// An optional integer field from 1 to `max`, `default` when absent.
fn int_in(
    obj: &Map<String, Value>,
    key: &str,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => int_value(v, max)
            .ok_or_else(|| format!("Invalid {name}: expected an integer from 1 to {max}, got {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn err(v: Value) -> String {
        parse(Some(&v)).expect_err("should be rejected")
    }

    #[test]
    fn absent_webhooks_send_nothing_with_the_default_bounds() {
        for v in [None, Some(&Value::Null)] {
            let c = parse(v).expect("valid");
            assert!(c.targets.is_empty() && c.callback_key.is_none() && !c.is_active());
            assert_eq!(c.timeout, Duration::from_millis(10_000));
            assert_eq!(c.max_pending, 1000);
            assert_eq!(
                c.retry_schedule,
                [5, 30, 120, 600, 3600].map(Duration::from_secs).to_vec()
            );
        }
        let c = parse(Some(&json!({}))).expect("valid");
        assert!(!c.is_active());
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(Some(&json!({
            "outbound": [
                {"url": "https://hooks.example.com/pi?token=x", "secret": SECRET},
                {"url": "http://10.0.0.5:8080/h", "secret": SECRET, "events": ["run.failed", "approval.requested"]}
            ],
            "allowedHosts": ["Hooks.Example.com", "*.Example.org", "*", "127.0.0.1", "[::1]", "::ffff:10.0.0.1"],
            "callbackSecret": SECRET,
            "retryScheduleMs": [1, 86400000],
            "timeoutMs": 600000,
            "maxPending": 100000
        })))
        .expect("valid");
        assert_eq!(c.targets.len(), 2);
        assert!(c.targets[0].url.https && c.targets[0].url.port == 443);
        assert_eq!(
            c.targets[0].url.redacted(),
            "https://hooks.example.com/pi",
            "the query is left out of log lines"
        );
        assert!(c.targets[0].wants("run.succeeded"));
        assert!(!c.targets[1].wants("run.succeeded"));
        assert!(c.targets[1].wants("approval.requested"));
        assert_eq!(
            c.allowed_hosts,
            vec![
                HostPattern::Name("hooks.example.com".into()),
                HostPattern::Suffix(".example.org".into()),
                HostPattern::Any,
                HostPattern::Ip("127.0.0.1".parse().expect("ip")),
                HostPattern::Ip("::1".parse().expect("ip")),
                HostPattern::Ip("10.0.0.1".parse().expect("ip")),
            ]
        );
        assert_eq!(
            c.callback_key.as_ref().map(|k| k.as_bytes().len()),
            Some(24)
        );
        assert_eq!(
            c.retry_schedule,
            vec![Duration::from_millis(1), Duration::from_secs(86_400)]
        );
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(c.max_pending, 100_000);
        assert!(c.is_active());
        assert!(parse(Some(&json!({"retryScheduleMs": []})))
            .expect("no retries is allowed")
            .retry_schedule
            .is_empty());
    }

    #[test]
    fn every_mistake_names_its_field() {
        let t = |extra: Value| {
            let mut target = json!({"url": "https://a.example/h", "secret": SECRET});
            if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
                t.extend(e.clone());
            }
            json!({"outbound": [{"url": "https://ok.example/", "secret": SECRET}, target]})
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!({"foo": 1}), "Invalid config.webhooks.foo: unknown field"),
            (json!([]), "Invalid config.webhooks: expected an object"),
            (json!({"outbound": {}}), "Invalid config.webhooks.outbound:"),
            (t(json!({"extra": 1})), "Invalid config.webhooks.outbound[1].extra: unknown field"),
            (t(json!({"url": null})), "Invalid config.webhooks.outbound[1].url: required"),
            (t(json!({"url": "ftp://a.example/"})), "Invalid config.webhooks.outbound[1].url: the scheme"),
            (t(json!({"url": "/relative"})), "Invalid config.webhooks.outbound[1].url:"),
            (t(json!({"url": "https://user:pw@a.example/"})), "Invalid config.webhooks.outbound[1].url: must not carry credentials"),
            (t(json!({"url": format!("https://a.example/{}", "x".repeat(2048))})), "Invalid config.webhooks.outbound[1].url: longer than 2048 bytes"),
            (t(json!({"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})), "Invalid config.webhooks.outbound[1].secret: expected \"whsec_\""),
            (t(json!({"secret": "whsec_not base64!"})), "Invalid config.webhooks.outbound[1].secret: the part after"),
            (t(json!({"secret": "whsec_c2hvcnQ="})), "Invalid config.webhooks.outbound[1].secret: the key must decode to 16 to 64 bytes, got 5"),
            (t(json!({"secret": 5})), "Invalid config.webhooks.outbound[1].secret: expected a string"),
            (t(json!({"events": []})), "Invalid config.webhooks.outbound[1].events: must not be empty"),
            (t(json!({"events": ["run.failed", "run.done"]})), "Invalid config.webhooks.outbound[1].events[1]: expected one of"),
            (t(json!({"events": ["run.failed", "run.failed"]})), "Invalid config.webhooks.outbound[1].events[1]: \"run.failed\" is listed twice"),
            (t(json!({"events": "run.failed"})), "Invalid config.webhooks.outbound[1].events: expected an array"),
            (json!({"allowedHosts": ["ok.example", "https://x.example"]}), "Invalid config.webhooks.allowedHosts[1]:"),
            (json!({"allowedHosts": ["x.example:8080"]}), "Invalid config.webhooks.allowedHosts[0]:"),
            (json!({"allowedHosts": ["*.*.example"]}), "Invalid config.webhooks.allowedHosts[0]:"),
            (json!({"allowedHosts": [""]}), "Invalid config.webhooks.allowedHosts[0]:"),
            (json!({"allowedHosts": "*"}), "Invalid config.webhooks.allowedHosts: expected an array"),
            (json!({"allowedHosts": vec!["a.example"; 257]}), "Invalid config.webhooks.allowedHosts: at most 256 entries"),
            (json!({"callbackSecret": ""}), "Invalid config.webhooks.callbackSecret: expected \"whsec_\""),
            (json!({"retryScheduleMs": [1000, 0]}), "Invalid config.webhooks.retryScheduleMs[1]: expected an integer from 1 to 86400000"),
            (json!({"retryScheduleMs": [86400001]}), "Invalid config.webhooks.retryScheduleMs[0]:"),
            (json!({"retryScheduleMs": [1.5]}), "Invalid config.webhooks.retryScheduleMs[0]:"),
            (json!({"retryScheduleMs": vec![1; 21]}), "Invalid config.webhooks.retryScheduleMs: at most 20 retries, got 21"),
            (json!({"timeoutMs": 0}), "Invalid config.webhooks.timeoutMs: expected an integer from 1 to 600000"),
            (json!({"timeoutMs": 600001}), "Invalid config.webhooks.timeoutMs:"),
            (json!({"maxPending": 100001}), "Invalid config.webhooks.maxPending: expected an integer from 1 to 100000"),
            (json!({"maxPending": "10"}), "Invalid config.webhooks.maxPending:"),
        ];
        for (value, expected) in cases {
            let e = err(value.clone());
            assert!(e.starts_with(expected), "{value}: {e}");
            assert!(!e.contains("MfKQ9r8G"), "no secret in errors: {e}");
        }
        let many: Vec<Value> = (0..17)
            .map(|_| json!({"url": "https://a.example/", "secret": SECRET}))
            .collect();
        assert!(err(json!({ "outbound": many }))
            .starts_with("Invalid config.webhooks.outbound: at most 16 targets, got 17"));
    }

    #[test]
    fn secrets_decode_with_or_without_padding_and_never_show_in_debug() {
        // 16 bytes: 24 base64 characters with `==`, 22 without.
        let padded = SigningKey::parse("whsec_AAECAwQFBgcICQoLDA0ODw==").expect("valid");
        let bare = SigningKey::parse("whsec_AAECAwQFBgcICQoLDA0ODw").expect("valid");
        assert_eq!(padded, bare);
        assert_eq!(padded.as_bytes(), (0u8..16).collect::<Vec<_>>().as_slice());
        assert_eq!(format!("{padded:?}"), "SigningKey(16 bytes)");
        let max = format!("whsec_{}", "A".repeat(88)); // 66 bytes
        assert!(SigningKey::parse(&max).is_err());
    }

    #[test]
    fn host_patterns_match_names_subdomains_and_addresses() {
        let host = |h: &str| parse_url_host(h).expect("host");
        let any = HostPattern::parse("*").expect("valid");
        let sub = HostPattern::parse("*.example.com").expect("valid");
        let name = HostPattern::parse("hooks.example.com.").expect("valid");
        let ip = HostPattern::parse("[::1]").expect("valid");
        let v4 = HostPattern::parse("127.0.0.1").expect("valid");
        assert!(any.matches(&host("10.1.2.3")) && !any.is_exact(&host("10.1.2.3")));
        assert!(sub.matches(&host("a.example.com")) && sub.matches(&host("A.B.Example.COM.")));
        assert!(!sub.matches(&host("example.com")) && !sub.matches(&host("badexample.com")));
        assert!(!sub.is_exact(&host("a.example.com")));
        assert!(
            name.matches(&host("HOOKS.example.com")) && name.is_exact(&host("hooks.example.com"))
        );
        assert!(!name.matches(&host("x.hooks.example.com")));
        assert!(ip.is_exact(&host("[0:0::1]")) && !ip.matches(&host("127.0.0.1")));
        assert!(
            v4.is_exact(&host("[::ffff:127.0.0.1]")),
            "a mapped address is the same address"
        );
        assert!(!v4.matches(&host("localhost")));
    }
}
