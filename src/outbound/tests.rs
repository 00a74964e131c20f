//! Unit tests that need the module's insides (a `Callback` built without the request-time
//! check, to show the send-time check on its own). The end-to-end tests are in
//! `tests/outbound.rs`.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[derive(Default)]
struct Record {
    outcomes: Mutex<Vec<DeliveryOutcome>>,
    warnings: Mutex<Vec<String>>,
}

impl DeliveryObserver for Record {
    fn delivery(&self, outcome: DeliveryOutcome) {
        crate::util::lock(&self.outcomes).push(outcome);
    }
    fn warn(&self, message: &str) {
        crate::util::lock(&self.warnings).push(message.to_string());
    }
}

fn config(value: serde_json::Value) -> OutboundConfig {
    config::parse(Some(&value)).expect("valid config")
}

/// A receiver on 127.0.0.1 that answers 200 to anything and counts connections.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_no_longer_passes_the_check_at_send_time_is_refused_and_never_sent() {
    let (port, hits) = receiver().await;
    // `localhost` matches the wildcard but resolves to loopback, and is not listed exactly.
    let config = config(serde_json::json!({
        "allowedHosts": ["*"],
        "callbackSecret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "retryScheduleMs": [10, 10],
        "timeoutMs": 2000,
    }));
    let record = Arc::new(Record::default());
    let outbound = Outbound::new(config, &Handle::current(), record.clone());
    let text = format!("http://localhost:{port}/cb?token=secret-token");
    assert!(outbound.check_callback(&text).await.is_err());
    // As if it had passed at request time and the name had moved inward since.
    let callback = Callback {
        url: Arc::new(WebhookUrl::parse(&text).expect("url")),
    };
    outbound.emit("run.succeeded", serde_json::json!({}), Some(&callback));
    assert!(outbound.wait_idle(Duration::from_secs(3)).await);
    assert_eq!(
        *crate::util::lock(&record.outcomes),
        vec![DeliveryOutcome::Refused],
        "refused once, not retried"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection was made");
    let warnings = crate::util::lock(&record.warnings).clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with("outbound webhook refused: run.succeeded to http://localhost:"),
        "{w}"
    );
    assert!(
        w.contains("webhook-id msg_") && w.contains("loopback"),
        "{w}"
    );
    assert!(
        !w.contains("secret-token"),
        "the query stays out of logs: {w}"
    );
    assert!(!format!("{callback:?}").contains("secret-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_name_is_connected_to_at_a_checked_address_with_its_own_host_header() {
    // The pinned request carries the callback's own authority as `Host`.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let head = Arc::new(Mutex::new(String::new()));
    let seen = head.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            *crate::util::lock(&seen) = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let config = config(serde_json::json!({
        "allowedHosts": ["localhost"],
        "callbackSecret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "retryScheduleMs": [],
        "timeoutMs": 2000,
    }));
    let record = Arc::new(Record::default());
    let outbound = Outbound::new(config, &Handle::current(), record.clone());
    let callback = outbound
        .check_callback(&format!("http://LocalHost:{port}/cb?x=1"))
        .await
        .expect("listed exactly");
    outbound.emit(
        "run.failed",
        serde_json::json!({"runId": "r1"}),
        Some(&callback),
    );
    assert!(outbound.wait_idle(Duration::from_secs(3)).await);
    assert_eq!(
        *crate::util::lock(&record.outcomes),
        vec![DeliveryOutcome::Delivered]
    );
    let head = crate::util::lock(&head).clone();
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("POST /cb?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        lower.contains(&format!("\r\nhost: localhost:{port}\r\n")),
        "{head}"
    );
}

#[test]
fn outcomes_have_stable_names() {
    let names: Vec<&str> = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retrying,
        DeliveryOutcome::GivenUp,
        DeliveryOutcome::Dropped,
        DeliveryOutcome::Refused,
    ]
    .into_iter()
    .map(DeliveryOutcome::as_str)
    .collect();
    assert_eq!(
        names,
        ["delivered", "retrying", "given_up", "dropped", "refused"]
    );
}
