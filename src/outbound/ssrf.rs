//! Where a per-request callback may go.
//!
//! A callback URL comes from a client, and the gateway usually runs next to things a client
//! must not reach (a cloud metadata service, an admin port on loopback, the office network).
//! So a callback is sent only when its host is in `webhooks.allowedHosts` and every address
//! it resolves to is public — unless the host (or address) is listed exactly, which is how an
//! operator says "this internal receiver is fine". The check runs when the request comes in
//! and again before every attempt, and the connection goes to an address that passed it, so a
//! name that resolves differently later (DNS rebinding) cannot steer a retry inward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::config::{HostPattern, UrlHost, WebhookUrl};

/// Longest wait for the resolver.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most resolved addresses kept (and tried in turn) for one callback.
pub const MAX_ADDRESSES: usize = 8;

/// Why a callback cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Refused by policy: never sent, whatever the retries.
    Refused(String),
    /// The name did not resolve (now): an error at the door, a retry later.
    Unresolved(String),
}

impl CheckError {
    pub fn message(&self) -> &str {
        match self {
            CheckError::Refused(m) | CheckError::Unresolved(m) => m,
        }
    }
}

/// Checks the host against `allowedHosts`, resolves it and checks every address.
/// Returns the addresses a connection may go to (at least one).
pub async fn resolve_checked(
    allowed: &[HostPattern],
    url: &WebhookUrl,
    dns_timeout: Duration,
) -> Result<Vec<SocketAddr>, CheckError> {
    if !allowed.iter().any(|p| p.matches(&url.host)) {
        return Err(CheckError::Refused(format!(
            "the host of {} is not in webhooks.allowedHosts",
            url.redacted()
        )));
    }
    let exact = allowed.iter().any(|p| p.is_exact(&url.host));
    let addrs: Vec<SocketAddr> = match &url.host {
        UrlHost::Ip(ip) => vec![SocketAddr::new(*ip, url.port)],
        UrlHost::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), url.port));
            match tokio::time::timeout(dns_timeout, lookup).await {
                Ok(Ok(found)) => found.take(MAX_ADDRESSES).collect(),
                Ok(Err(e)) => {
                    return Err(CheckError::Unresolved(format!(
                        "{name:?} does not resolve ({e})"
                    )))
                }
                Err(_) => {
                    return Err(CheckError::Unresolved(format!(
                        "{name:?} did not resolve within {} ms",
                        dns_timeout.as_millis()
                    )))
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(CheckError::Unresolved(format!(
            "{} resolves to no address",
            url.redacted()
        )));
    }
    if !exact {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(CheckError::Refused(format!(
                "{} resolves to {}, which is {}; list the host exactly in webhooks.allowedHosts to allow it",
                url.redacted(),
                bad.ip(),
                kind(bad.ip())
            )));
        }
    }
    Ok(addrs)
}

/// Whether an address is reachable on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, broadcast, multicast, documentation, benchmarking, reserved,
/// nor an IPv6 form of one of those (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", including the unspecified address
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata services
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s {
        // ::/96 (unspecified, loopback, IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped).
        [0, 0, 0, 0, 0, 0, _, _] => false,
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // NAT64 well-known prefix: the IPv4 address it reaches decides.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // 6to4: the embedded IPv4 address decides.
        [0x2002, hi, lo, ..] => is_public_v4(embedded_v4(hi, lo)),
        _ => {
            let first = s[0];
            !(
                (first == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (64:ff9b:1::/48)
                || (first == 0x100 && s[1..4] == [0, 0, 0]) // discard-only (100::/64)
                || (first == 0x2001 && s[1] < 0x200) // IETF protocol assignments, Teredo (2001::/23)
                || (first == 0x2001 && s[1] == 0xdb8) // documentation
                || (first & 0xfff0) == 0x3ff0 // documentation (3fff::/20)
                || (first & 0xfe00) == 0xfc00 // unique local (fc00::/7)
                || (first & 0xffc0) == 0xfe80 // link-local (fe80::/10)
                || (first & 0xffc0) == 0xfec0 // site-local, deprecated (fec0::/10)
                || (first & 0xff00) == 0xff00
                // multicast
            )
        }
    }
}

/// Why an address is not public, for the error message.
fn kind(ip: IpAddr) -> &'static str {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else {
        match ip {
            IpAddr::V4(v4) if v4.is_private() => "a private address",
            IpAddr::V4(v4) if v4.is_link_local() => "a link-local address",
            IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => {
                "a private (unique local) address"
            }
            IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "a link-local address",
            _ => "a non-public address",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for text in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert!(!is_public(ip), "{text} should not be public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert!(is_public(ip), "{text} should be public");
        }
    }

    fn url(text: &str) -> WebhookUrl {
        WebhookUrl::parse(text).expect("url")
    }

    fn patterns(list: &[&str]) -> Vec<HostPattern> {
        let value = serde_json::json!({ "allowedHosts": list });
        super::super::config::parse(Some(&value))
            .expect("valid")
            .allowed_hosts
    }

    #[tokio::test]
    async fn only_an_exact_entry_lifts_the_internal_address_refusal() {
        let t = DNS_TIMEOUT;
        let refused = |r: Result<Vec<SocketAddr>, CheckError>| match r {
            Err(CheckError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let m = refused(resolve_checked(&patterns(&["*"]), &url("http://10.1.2.3/"), t).await);
        assert!(m.contains("10.1.2.3, which is a private address"), "{m}");
        let m =
            refused(resolve_checked(&patterns(&["a.example"]), &url("http://b.example/"), t).await);
        assert!(m.contains("not in webhooks.allowedHosts"), "{m}");
        let m =
            refused(resolve_checked(&patterns(&["*"]), &url("http://[::ffff:7f00:1]:9/"), t).await);
        assert!(m.contains("loopback"), "{m}");
        let ok = resolve_checked(
            &patterns(&["[::ffff:127.0.0.1]"]),
            &url("http://127.0.0.1:9/"),
            t,
        )
        .await
        .expect("listed exactly");
        assert_eq!(ok, vec!["127.0.0.1:9".parse().expect("addr")]);
        let ok = resolve_checked(&patterns(&["*"]), &url("https://1.1.1.1/"), t)
            .await
            .expect("public");
        assert_eq!(ok, vec!["1.1.1.1:443".parse().expect("addr")]);
    }
}
