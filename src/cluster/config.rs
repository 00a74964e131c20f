//! `cluster`: the Redis this node shares with the others, how they reach it, and its lease.
//!
//! Parsed strictly, like the rest of the config: an unknown field or a bad value fails the
//! constructor with a message that names it (`Invalid config.cluster.leaseMs: …`). A Redis
//! URL may carry a password, so no message and no `Debug` output ever shows the URL itself:
//! they show [`ClusterConfig::redis_display`], host, port and database only.

use std::fmt;
use std::time::Duration;

use hyper::http::uri::Scheme;
use hyper::Uri;
use serde_json::Value;

use crate::config::{known, opt_str, req_str};

/// Default `cluster.prefix`: every Redis key this gateway writes starts with it.
pub const DEFAULT_PREFIX: &str = "pi-gateway:";
/// Longest `cluster.prefix`.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Default `cluster.leaseMs`: how long a session's ownership lasts without renewal.
pub const DEFAULT_LEASE_MS: u64 = 10_000;
/// Shortest `cluster.leaseMs`: renewals run every third of it, within the command timeout.
pub const MIN_LEASE_MS: u64 = 1_000;
/// Longest `cluster.leaseMs`: 10 min.
pub const MAX_LEASE_MS: u64 = 600_000;
/// Longest `cluster.nodeId`.
pub const MAX_NODE_ID_BYTES: usize = 128;
/// Longest `cluster.advertiseUrl`.
pub const MAX_ADVERTISE_URL_BYTES: usize = 512;
/// Longest `cluster.redisUrl`.
pub const MAX_REDIS_URL_BYTES: usize = 2048;

/// A checked `cluster` object.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]` or `redis+unix:///path[?db=n]`. May hold a
    /// password: never log it (see [`ClusterConfig::redis_display`]).
    pub redis_url: String,
    /// How the other nodes reach this one: `http://host[:port]`, without a trailing slash.
    pub advertise_url: String,
    /// This node's name in leases: 1 to 128 bytes of `[A-Za-z0-9._:-]`; a UUIDv7 by default.
    pub node_id: String,
    /// The start of every Redis key.
    pub prefix: String,
    /// `leaseMs`.
    pub lease: Duration,
}

impl ClusterConfig {
    /// Where Redis is, without user or password: `127.0.0.1:6379/0`.
    pub fn redis_display(&self) -> String {
        redis_display(&self.redis_url)
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis_display())
            .field("advertise_url", &self.advertise_url)
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Host, port and database of a Redis URL (or a unix socket's path), never its credentials.
pub fn redis_display(url: &str) -> String {
    use redis::IntoConnectionInfo as _;
    match url.into_connection_info() {
        Ok(info) => format!("{}/{}", info.addr, info.redis.db),
        Err(_) => "(an unreadable Redis URL)".to_string(),
    }
}

/// Parses `config.cluster`; absent or `null` is one node without Redis (`Ok(None)`).
pub fn parse(value: Option<&Value>) -> Result<Option<ClusterConfig>, String> {
    const NAME: &str = "config.cluster";
    let obj = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => return Err(format!("Invalid {NAME}: expected an object, got {other}")),
    };
    known(
        obj,
        NAME,
        &["redisUrl", "advertiseUrl", "nodeId", "prefix", "leaseMs"],
    )?;
    let redis_url = req_str(obj, "redisUrl", "config.cluster.redisUrl")?;
    check_redis_url(redis_url).map_err(|why| format!("Invalid config.cluster.redisUrl: {why}"))?;
    let advertise_url = req_str(obj, "advertiseUrl", "config.cluster.advertiseUrl")?;
    let advertise_url = check_advertise_url(advertise_url)
        .map_err(|why| format!("Invalid config.cluster.advertiseUrl: {why}"))?;
    let node_id = match opt_str(obj, "nodeId", "config.cluster.nodeId")? {
        Some(id) => {
            check_node_id(id).map_err(|why| format!("Invalid config.cluster.nodeId: {why}"))?;
            id.to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let prefix = match opt_str(obj, "prefix", "config.cluster.prefix")? {
        Some(p) if p.len() > MAX_PREFIX_BYTES => {
            return Err(format!(
                "Invalid config.cluster.prefix: longer than {MAX_PREFIX_BYTES} bytes ({} bytes)",
                p.len()
            ))
        }
        Some(p) => p.to_string(),
        None => DEFAULT_PREFIX.to_string(),
    };
    let lease_ms = match obj.get("leaseMs") {
        None | Some(Value::Null) => DEFAULT_LEASE_MS,
        Some(v) => v
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (MIN_LEASE_MS as f64..=MAX_LEASE_MS as f64).contains(f))
            .map(|f| f as u64)
            .ok_or_else(|| {
                format!(
                    "Invalid config.cluster.leaseMs: expected an integer from {MIN_LEASE_MS} to {MAX_LEASE_MS}, got {v}"
                )
            })?,
    };
    Ok(Some(ClusterConfig {
        redis_url: redis_url.to_string(),
        advertise_url,
        node_id,
        prefix,
        lease: Duration::from_millis(lease_ms),
    }))
}

/// A URL the `redis` crate can connect with (no TLS in this build). The reason never quotes
/// the URL: it may hold a password.
fn check_redis_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo as _;
    const EXPECTED: &str =
        "expected redis://[user:password@]host[:port][/db] or redis+unix:///path/to/socket";
    if url.len() > MAX_REDIS_URL_BYTES {
        return Err(format!(
            "longer than {MAX_REDIS_URL_BYTES} bytes ({} bytes)",
            url.len()
        ));
    }
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "redis" | "redis+unix" | "unix" | "valkey" | "valkey+unix" => {}
        "rediss" | "valkeys" => {
            return Err(format!(
                "TLS (rediss://) is not supported by this build; {EXPECTED}"
            ))
        }
        _ => return Err(EXPECTED.to_string()),
    }
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("{EXPECTED} ({})", e.detail().unwrap_or("not a valid URL")))
}

/// `http://host[:port]` with nothing after it; returned without a trailing slash.
fn check_advertise_url(text: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected http://host[:port], how the other nodes reach this one";
    if text.len() > MAX_ADVERTISE_URL_BYTES {
        return Err(format!(
            "longer than {MAX_ADVERTISE_URL_BYTES} bytes ({} bytes)",
            text.len()
        ));
    }
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("{EXPECTED}, got {text:?}"))?;
    if uri.scheme() != Some(&Scheme::HTTP) {
        return Err(format!(
            "{EXPECTED} (plain http: the nodes talk on a private network), got {text:?}"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{EXPECTED}, got {text:?}"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "must not carry credentials (user@host), got {text:?}"
        ));
    }
    if authority.host().is_empty() || authority.port_u16() == Some(0) {
        return Err(format!("{EXPECTED}, got {text:?}"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "must have no path or query ({EXPECTED}), got {text:?}"
        ));
    }
    Ok(format!("http://{authority}"))
}

fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID_BYTES {
        return Err(format!(
            "expected 1 to {MAX_NODE_ID_BYTES} bytes, got {} bytes",
            id.len()
        ));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed (letters, digits and . _ : - only), got {id:?}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> ClusterConfig {
        parse(Some(&v)).expect("valid").expect("present")
    }

    fn err(v: Value) -> String {
        parse(Some(&v)).expect_err("should be rejected")
    }

    #[test]
    fn absent_cluster_is_one_node_without_redis() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(&Value::Null)), Ok(None));
    }

    #[test]
    fn defaults_fill_in_a_minimal_cluster() {
        let c = ok(
            json!({"redisUrl": "redis://127.0.0.1:6379/0", "advertiseUrl": "http://10.0.0.5:3000/"}),
        );
        assert_eq!(
            c.advertise_url, "http://10.0.0.5:3000",
            "trailing slash dropped"
        );
        assert_eq!(c.prefix, "pi-gateway:");
        assert_eq!(c.lease, Duration::from_secs(10));
        let id = uuid::Uuid::parse_str(&c.node_id).expect("a UUID");
        assert_eq!(id.get_version_num(), 7);
        let other = ok(json!({"redisUrl": "redis://127.0.0.1", "advertiseUrl": "http://a:1"}));
        assert_ne!(c.node_id, other.node_id, "a fresh id per start");
    }

    #[test]
    fn a_full_cluster_config_parses() {
        let c = ok(json!({
            "redisUrl": "redis://user:s3cret@redis.internal:6380/2",
            "advertiseUrl": "http://gw-1.internal:3000",
            "nodeId": "gw-1.eu_west:a",
            "prefix": "",
            "leaseMs": 600000
        }));
        assert_eq!(c.node_id, "gw-1.eu_west:a");
        assert_eq!(c.prefix, "");
        assert_eq!(c.lease, Duration::from_secs(600));
        assert_eq!(c.redis_display(), "redis.internal:6380/2");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("user"),
            "{debug}"
        );
        assert!(ok(
            json!({"redisUrl": "redis+unix:///run/redis.sock", "advertiseUrl": "http://[::1]:80"})
        )
        .redis_url
        .starts_with("redis+unix"));
    }

    #[test]
    fn every_mistake_names_its_field() {
        let base = |extra: Value| {
            let mut v = json!({"redisUrl": "redis://127.0.0.1:6379", "advertiseUrl": "http://10.0.0.5:3000"});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "Invalid config.cluster: expected an object"),
            (
                base(json!({"redis": 1})),
                "Invalid config.cluster.redis: unknown field",
            ),
            (
                json!({"advertiseUrl": "http://a:1"}),
                "Invalid config.cluster.redisUrl: required",
            ),
            (
                json!({"redisUrl": "redis://a"}),
                "Invalid config.cluster.advertiseUrl: required",
            ),
            (
                base(json!({"redisUrl": 5})),
                "Invalid config.cluster.redisUrl: expected a string",
            ),
            (
                base(json!({"redisUrl": "http://127.0.0.1:6379"})),
                "Invalid config.cluster.redisUrl: expected redis://",
            ),
            (
                base(json!({"redisUrl": "127.0.0.1:6379"})),
                "Invalid config.cluster.redisUrl: expected redis://",
            ),
            (
                base(json!({"redisUrl": "rediss://:pw@a:6379"})),
                "Invalid config.cluster.redisUrl: TLS (rediss://) is not supported",
            ),
            (
                base(json!({"redisUrl": "redis://:pw@a:6379/notadb"})),
                "Invalid config.cluster.redisUrl: expected redis://",
            ),
            (
                base(json!({"advertiseUrl": "https://a:1"})),
                "Invalid config.cluster.advertiseUrl: expected http://host[:port]",
            ),
            (
                base(json!({"advertiseUrl": "a:3000"})),
                "Invalid config.cluster.advertiseUrl: expected http://host[:port]",
            ),
            (
                base(json!({"advertiseUrl": "http://a:3000/gw"})),
                "Invalid config.cluster.advertiseUrl: must have no path or query",
            ),
            (
                base(json!({"advertiseUrl": "http://a:3000/?x=1"})),
                "Invalid config.cluster.advertiseUrl: must have no path or query",
            ),
            (
                base(json!({"advertiseUrl": "http://u:p@a:3000"})),
                "Invalid config.cluster.advertiseUrl: must not carry credentials",
            ),
            (
                base(json!({"advertiseUrl": "http://a:0"})),
                "Invalid config.cluster.advertiseUrl: expected",
            ),
            (
                base(json!({"nodeId": ""})),
                "Invalid config.cluster.nodeId: expected 1 to 128 bytes, got 0",
            ),
            (
                base(json!({"nodeId": "x".repeat(129)})),
                "Invalid config.cluster.nodeId: expected 1 to 128 bytes, got 129",
            ),
            (
                base(json!({"nodeId": "gw 1"})),
                "Invalid config.cluster.nodeId: ' ' is not allowed",
            ),
            (
                base(json!({"nodeId": 1})),
                "Invalid config.cluster.nodeId: expected a string",
            ),
            (
                base(json!({"prefix": "x".repeat(257)})),
                "Invalid config.cluster.prefix: longer than 256 bytes",
            ),
            (
                base(json!({"prefix": 1})),
                "Invalid config.cluster.prefix: expected a string",
            ),
            (
                base(json!({"leaseMs": 999})),
                "Invalid config.cluster.leaseMs: expected an integer from 1000 to 600000, got 999",
            ),
            (
                base(json!({"leaseMs": 600001})),
                "Invalid config.cluster.leaseMs:",
            ),
            (
                base(json!({"leaseMs": 1500.5})),
                "Invalid config.cluster.leaseMs:",
            ),
            (
                base(json!({"leaseMs": "2000"})),
                "Invalid config.cluster.leaseMs:",
            ),
        ];
        for (value, expected) in cases {
            let e = err(value.clone());
            assert!(e.starts_with(expected), "{value}: {e}");
            assert!(!e.contains("pw@"), "no password in errors: {e}");
        }
    }
}
