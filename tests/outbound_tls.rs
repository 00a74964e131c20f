//! Outbound webhooks over HTTPS, against a receiver with a certificate made for the test.
//!
//! In its own file, so its own process: it points `SSL_CERT_FILE` (process-wide) at that
//! certificate before the client is built, which is how the system roots are replaced.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pi_gateway::outbound::config::parse;
use pi_gateway::outbound::{DeliveryObserver, DeliveryOutcome, Outbound};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::json;
use tokio::runtime::Handle;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Record {
    outcomes: Mutex<Vec<DeliveryOutcome>>,
    warnings: Mutex<Vec<String>>,
}

impl DeliveryObserver for Record {
    fn delivery(&self, outcome: DeliveryOutcome) {
        self.outcomes.lock().expect("lock").push(outcome);
    }
    fn warn(&self, message: &str) {
        self.warnings
            .lock()
            .expect("lock")
            .push(message.to_string());
    }
}

/// A self-signed certificate for `localhost` only (no IP address in it), made by openssl.
fn make_cert(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        // An end-entity certificate (webpki refuses a CA certificate as a server's own).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => Some((cert, key)),
        Ok(out) => panic!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("note: skipping the HTTPS webhook test, openssl is not available ({e})");
            None
        }
    }
}

/// A blocking rustls receiver on 127.0.0.1 answering 200 to each request; counts requests.
fn tls_receiver(cert: &Path, key: &Path) -> (u16, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (config, count) = (config.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                let Ok(conn) = ServerConnection::new(config) else {
                    return;
                };
                let mut tls = BufReader::new(StreamOwned::new(conn, stream));
                // Request head, then a content-length body; a failed handshake ends here.
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    match tls.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if tls.read_exact(&mut body).is_err() {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let tls = tls.get_mut();
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, served)
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_and_callbacks_are_verified_against_the_trusted_roots() {
    let dir = std::env::temp_dir().join(format!("pi-gateway-outbound-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let Some((cert, key)) = make_cert(&dir) else {
        return;
    };
    // Before any client is built: the only root is the test's own certificate.
    std::env::set_var("SSL_CERT_FILE", &cert);
    std::env::remove_var("SSL_CERT_DIR");
    let (port, served) = tls_receiver(&cert, &key);

    let record = Arc::new(Record::default());
    let config = parse(Some(&json!({
        "outbound": [
            // The certificate names `localhost`: verified.
            {"url": format!("https://localhost:{port}/t"), "secret": SECRET, "events": ["run.succeeded"]},
            // The same receiver by address: the certificate does not name it, so it fails.
            {"url": format!("https://127.0.0.1:{port}/t"), "secret": SECRET, "events": ["run.failed"]},
        ],
        "allowedHosts": ["localhost"],
        "callbackSecret": SECRET,
        "retryScheduleMs": [],
        "timeoutMs": 3000,
    })))
    .expect("valid config");
    let outbound = Outbound::new(config, &Handle::current(), record.clone());
    assert!(
        record.warnings.lock().expect("lock").is_empty(),
        "the roots loaded from SSL_CERT_FILE"
    );

    outbound.emit("run.succeeded", json!({}), None);
    assert!(
        wait_until(Duration::from_secs(5), || outbound.pending() == 0).await,
        "delivered over HTTPS"
    );
    assert_eq!(
        *record.outcomes.lock().expect("lock"),
        vec![DeliveryOutcome::Delivered],
        "{:?}",
        record.warnings.lock().expect("lock")
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // A callback to a listed name goes to the checked address and still checks the name.
    let callback = outbound
        .check_callback(&format!("https://localhost:{port}/cb"))
        .await
        .expect("listed exactly");
    outbound.emit("approval.requested", json!({}), Some(&callback));
    assert!(wait_until(Duration::from_secs(5), || outbound.pending() == 0).await);
    assert_eq!(
        *record.outcomes.lock().expect("lock"),
        vec![DeliveryOutcome::Delivered, DeliveryOutcome::Delivered]
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);

    outbound.emit("run.failed", json!({}), None);
    assert!(wait_until(Duration::from_secs(5), || outbound.pending() == 0).await);
    assert_eq!(
        record.outcomes.lock().expect("lock").last(),
        Some(&DeliveryOutcome::GivenUp),
        "a certificate that does not name the host is refused"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "nothing reached the receiver"
    );
    let warnings = record.warnings.lock().expect("lock").clone();
    assert!(
        warnings.len() == 1 && warnings[0].contains("certificate"),
        "{warnings:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
