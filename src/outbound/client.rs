//! The HTTP(S) clients that carry deliveries: hyper-util's pooled client over rustls.
//!
//! Two clients share one TLS config. Configured targets go through the plain one: the operator
//! wrote them, so they resolve and connect like any client would. Callbacks go through the
//! other, which is only ever handed URIs whose host is an address that passed the SSRF check
//! (see `ssrf`): the connector never resolves a name itself, so what it connects to is what
//! was checked. The name the receiver's certificate must carry (and the `Host` header) still
//! come from the callback URL: the URI carries it as its userinfo part (`name@1.2.3.4:443`),
//! where the TLS server-name resolver finds it. Userinfo also keeps pooled connections apart by
//! name, and never leaves the process (requests go out in origin form with our own `Host`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::config::{UrlHost, WebhookUrl};

/// The `user-agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("pi-gateway/", env!("CARGO_PKG_VERSION"));
/// Response body bytes read (and discarded) before a connection is given up instead.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Idle pooled connections kept per host.
const POOL_IDLE_PER_HOST: usize = 4;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why one attempt failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (a retry may work; another address may too).
    Connect(String),
    /// Anything after the connection: a non-2xx status, a broken exchange.
    Failed(String),
}

impl SendError {
    pub fn into_message(self) -> String {
        match self {
            SendError::Connect(m) | SendError::Failed(m) => m,
        }
    }
}

/// The two clients, or why there are none.
pub struct Clients {
    targets: Result<HttpsClient, String>,
    callbacks: Result<HttpsClient, String>,
}

/// The headers of one attempt.
pub struct Signed<'a> {
    pub id: &'a str,
    pub timestamp: u64,
    pub signature: &'a str,
}

impl Clients {
    /// Builds both clients; `warn` hears why HTTPS will not work (never a panic).
    pub fn new(connect_timeout: Duration, warn: &dyn Fn(&str)) -> Clients {
        let tls = match tls_config(warn) {
            Ok(tls) => tls,
            Err(why) => {
                warn(&format!(
                    "outbound webhooks: TLS setup failed ({why}); no webhook can be sent"
                ));
                return Clients {
                    targets: Err(format!("TLS setup failed: {why}")),
                    callbacks: Err(format!("TLS setup failed: {why}")),
                };
            }
        };
        Clients {
            targets: Ok(client(tls.clone(), connect_timeout, false)),
            callbacks: Ok(client(tls, connect_timeout, true)),
        }
    }

    /// One attempt to a configured target.
    pub async fn send_target(
        &self,
        url: &WebhookUrl,
        body: Bytes,
        signed: &Signed<'_>,
    ) -> Result<(), SendError> {
        let client = self
            .targets
            .as_ref()
            .map_err(|e| SendError::Connect(e.clone()))?;
        let request = request(url.uri.clone(), None, body, signed)?;
        exchange(client, request).await
    }

    /// One attempt to a callback, at an address that passed the SSRF check.
    pub async fn send_callback(
        &self,
        url: &WebhookUrl,
        addr: SocketAddr,
        body: Bytes,
        signed: &Signed<'_>,
    ) -> Result<(), SendError> {
        let client = self
            .callbacks
            .as_ref()
            .map_err(|e| SendError::Connect(e.clone()))?;
        let uri = pinned_uri(url, addr).map_err(SendError::Failed)?;
        let host = url.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host = HeaderValue::from_str(host)
            .map_err(|_| SendError::Failed(format!("bad host in {}", url.redacted())))?;
        let request = request(uri, Some(host), body, signed)?;
        exchange(client, request).await
    }
}

/// The callback URL with its host replaced by `addr`, and for HTTPS the name it had as the
/// userinfo (for the certificate check).
fn pinned_uri(url: &WebhookUrl, addr: SocketAddr) -> Result<Uri, String> {
    let mut authority = String::new();
    if let (true, UrlHost::Name(name)) = (url.https, &url.host) {
        authority.push_str(name);
        authority.push('@');
    }
    authority.push_str(&addr.to_string());
    let path = url.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Uri::builder()
        .scheme(if url.https { "https" } else { "http" })
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("cannot address {}: {e}", url.redacted()))
}

fn request(
    uri: Uri,
    host: Option<HeaderValue>,
    body: Bytes,
    signed: &Signed<'_>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header("webhook-id", signed.id)
        .header("webhook-timestamp", signed.timestamp)
        .header("webhook-signature", signed.signature);
    if let Some(host) = host {
        builder = builder.header(HOST, host);
    }
    builder
        .body(Full::new(body))
        .map_err(|e| SendError::Failed(format!("cannot build the request: {e}")))
}

/// Sends, then reads and discards a bounded response body. Redirects are not followed: a
/// 3xx is a failure like any other non-2xx.
async fn exchange(client: &HttpsClient, request: Request<Full<Bytes>>) -> Result<(), SendError> {
    let response = client.request(request).await.map_err(|e| {
        let text = chain(&e);
        if e.is_connect() {
            SendError::Connect(format!("cannot connect: {text}"))
        } else {
            SendError::Failed(text)
        }
    })?;
    let status = response.status();
    // Reading the body lets the connection go back to the pool; a body past the bound (or a
    // broken one) only costs that connection.
    let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await;
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Failed(format!(
            "answered HTTP {}",
            status.as_u16()
        )))
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// rustls on ring (installed explicitly, whatever the process default), trusting the system's
/// roots (read by rustls-native-certs, where `SSL_CERT_FILE`/`SSL_CERT_DIR` replace them, as
/// for OpenSSL). Without any roots, HTTPS deliveries fail (and say so) while HTTP ones still go.
fn tls_config(warn: &dyn Fn(&str)) -> Result<ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let builder = || {
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())
    };
    match builder()?.with_native_roots() {
        Ok(with_roots) => Ok(with_roots.with_no_client_auth()),
        Err(e) => {
            warn(&format!(
                "outbound webhooks: no system root certificates could be loaded ({e}); HTTPS deliveries will fail (set SSL_CERT_FILE to a CA bundle)"
            ));
            Ok(builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth())
        }
    }
}

fn client(tls: ClientConfig, connect_timeout: Duration, pinned: bool) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = if pinned {
        builder.with_server_name_resolver(server_name_from_userinfo)
    } else {
        builder
    };
    let connector = builder.enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .build(connector)
}

/// The TLS server name of a pinned callback URI: its userinfo (the callback's host name), or
/// its host when it has none (the callback named an IP address).
fn server_name_from_userinfo(
    uri: &Uri,
) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let name = match authority.split_once('@') {
        Some((name, _)) => name,
        None => {
            let host = uri.host().unwrap_or_default();
            host.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
        }
    };
    ServerName::try_from(name.to_string())
}
