//! Outbound webhooks end to end: real receivers on 127.0.0.1, schedules in milliseconds.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pi_gateway::outbound::config::parse;
use pi_gateway::outbound::{DeliveryObserver, DeliveryOutcome, Outbound, MAX_CONCURRENT_SENDS};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::runtime::Handle;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CALLBACK_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";

/// What the observer heard.
#[derive(Default)]
struct Record {
    outcomes: Mutex<Vec<DeliveryOutcome>>,
    warnings: Mutex<Vec<String>>,
}

impl Record {
    fn outcomes(&self) -> Vec<DeliveryOutcome> {
        self.outcomes.lock().expect("lock").clone()
    }
    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().expect("lock").clone()
    }
    fn count(&self, outcome: DeliveryOutcome) -> usize {
        self.outcomes().iter().filter(|o| **o == outcome).count()
    }
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

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A hyper receiver on 127.0.0.1 answering the scripted statuses in turn (the last repeats).
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Receiver::serve(listener, statuses)
    }

    fn serve(listener: TcpListener, statuses: Vec<u16>) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, statuses) = (seen.clone(), Arc::new(statuses));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, statuses) = (log.clone(), statuses.clone());
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (log, statuses) = (log.clone(), statuses.clone());
                    async move {
                        let path = req.uri().to_string();
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let mut log = log.lock().expect("lock");
                        log.push(Seen {
                            path,
                            headers,
                            body: body.unwrap_or_default(),
                        });
                        let n = log.len() - 1;
                        let status = statuses[n.min(statuses.len() - 1)];
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A receiver that accepts connections and never answers; counts them.
async fn silent_receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

fn outbound(config: Value, record: &Arc<Record>) -> Outbound {
    let config = parse(Some(&config)).expect("valid config");
    Outbound::new(config, &Handle::current(), record.clone())
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

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Verifies a delivery the way a receiver would, with its own HMAC (not the crate's).
fn verify(seen: &Seen, secret: &str) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("prefix"))
        .expect("base64");
    let id = header(seen, "webhook-id");
    let timestamp = header(seen, "webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&seen.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let signatures = header(seen, "webhook-signature");
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "signature {signatures} does not verify (expected {expected})"
    );
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_carries_standard_webhooks_headers_and_a_signature_that_verifies() {
    let receiver = Receiver::start(vec![200]).await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({"outbound": [
            {"url": receiver.url("/hooks/pi?k=1"), "secret": SECRET, "events": ["run.succeeded", "run.failed"]}
        ]}),
        &record,
    );
    let data = json!({"runId": "r1", "sessionKey": "s", "status": "succeeded", "result": {"text": "héllo"}});
    outbound.emit("approval.requested", json!({}), None); // not subscribed: nothing sent
    outbound.emit("run.succeeded", data.clone(), None);
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::Delivered)
            == 1)
        .await
    );
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    let s = &seen[0];
    assert_eq!(s.path, "/hooks/pi?k=1");
    assert_eq!(header(s, "content-type"), "application/json");
    assert_eq!(
        header(s, "user-agent"),
        format!("pi-gateway/{}", env!("CARGO_PKG_VERSION"))
    );
    let id = header(s, "webhook-id");
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    let ts: i64 = header(s, "webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((ts - now_secs()).abs() <= 5, "{ts}");
    assert!(header(s, "webhook-signature").starts_with("v1,"));
    verify(s, SECRET);

    let body: Value = serde_json::from_slice(&s.body).expect("json body");
    assert_eq!(body["type"], "run.succeeded");
    assert_eq!(body["data"], data);
    let stamp = body["timestamp"].as_str().expect("timestamp");
    assert!(
        stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "RFC 3339 UTC with ms: {stamp}"
    );
    assert_eq!(record.outcomes(), vec![DeliveryOutcome::Delivered]);
    assert!(record.warnings().is_empty(), "{:?}", record.warnings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_then_answering_gets_three_attempts_with_one_webhook_id() {
    let receiver = Receiver::start(vec![500, 503, 204]).await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": receiver.url("/h"), "secret": SECRET}],
            "retryScheduleMs": [30, 30, 30, 30],
            "timeoutMs": 2000,
        }),
        &record,
    );
    outbound.emit("run.failed", json!({"runId": "r2"}), None);
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::Delivered)
            == 1)
        .await
    );
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);
    tokio::time::sleep(Duration::from_millis(100)).await; // no fourth attempt comes

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "three attempts");
    let id = header(&seen[0], "webhook-id");
    for s in &seen {
        assert_eq!(header(s, "webhook-id"), id, "one webhook-id across retries");
        assert_eq!(s.body, seen[0].body, "the same body every time");
        verify(s, SECRET); // each attempt signs its own timestamp
    }
    assert_eq!(
        record.outcomes(),
        vec![
            DeliveryOutcome::Retrying,
            DeliveryOutcome::Retrying,
            DeliveryOutcome::Delivered
        ]
    );
    assert!(record.warnings().is_empty(), "{:?}", record.warnings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_is_given_up_after_the_schedule() {
    let (port, accepted) = silent_receiver().await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": format!("http://127.0.0.1:{port}/slow?token=hidden"), "secret": SECRET}],
            "retryScheduleMs": [20, 20],
            "timeoutMs": 150,
        }),
        &record,
    );
    let started = Instant::now();
    outbound.emit("run.aborted", json!({}), None);
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::GivenUp)
            == 1)
        .await
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3 * 150 + 40),
        "{elapsed:?}"
    );
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "three attempts, each timed out"
    );
    assert_eq!(
        record.outcomes(),
        vec![
            DeliveryOutcome::Retrying,
            DeliveryOutcome::Retrying,
            DeliveryOutcome::GivenUp
        ]
    );
    let warnings = record.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with(&format!(
            "outbound webhook given up: run.aborted to http://127.0.0.1:{port}/slow (webhook-id msg_"
        )),
        "{w}"
    );
    assert!(
        w.contains("after 3 attempts: no answer within 150 ms"),
        "{w}"
    );
    assert!(!w.contains("hidden"), "no query in logs: {w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_until_the_receiver_is_up() {
    // A port nothing listens on (yet).
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": format!("http://127.0.0.1:{port}/late"), "secret": SECRET}],
            "retryScheduleMs": [50, 50, 50, 50, 50, 50, 50, 50],
            "timeoutMs": 1000,
        }),
        &record,
    );
    outbound.emit("run.succeeded", json!({}), None);
    assert!(
        wait_until(Duration::from_secs(2), || record
            .count(DeliveryOutcome::Retrying)
            >= 2)
        .await
    );
    assert_eq!(record.count(DeliveryOutcome::Delivered), 0);
    let receiver = Receiver::serve(
        TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind"),
        vec![200],
    );
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::Delivered)
            == 1)
        .await
    );
    assert_eq!(receiver.seen().len(), 1);
    verify(&receiver.seen()[0], SECRET);
    let outcomes = record.outcomes();
    assert_eq!(outcomes.last(), Some(&DeliveryOutcome::Delivered));
    assert!(outcomes[..outcomes.len() - 1]
        .iter()
        .all(|o| *o == DeliveryOutcome::Retrying));
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_pending_a_delivery_is_dropped_and_said_so() {
    let (port, _) = silent_receiver().await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": format!("http://127.0.0.1:{port}/h"), "secret": SECRET}],
            "timeoutMs": 5000,
            "maxPending": 2,
        }),
        &record,
    );
    outbound.emit("run.succeeded", json!({"n": 1}), None);
    outbound.emit("run.succeeded", json!({"n": 2}), None);
    assert_eq!(outbound.pending(), 2);
    outbound.emit("run.failed", json!({"n": 3}), None);
    assert_eq!(outbound.pending(), 2, "the bound holds");
    assert_eq!(record.outcomes(), vec![DeliveryOutcome::Dropped]);
    let warnings = record.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "outbound webhook dropped: run.failed to http://127.0.0.1:{port}/h (webhook-id msg_"
        )) && warnings[0].ends_with("2 deliveries are already pending (webhooks.maxPending)"),
        "{}",
        warnings[0]
    );
    outbound.shutdown();
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_waiting_retries_at_once() {
    let receiver = Receiver::start(vec![500]).await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": receiver.url("/h"), "secret": SECRET}],
            "retryScheduleMs": [60000],
            "timeoutMs": 1000,
        }),
        &record,
    );
    outbound.emit("run.failed", json!({}), None);
    outbound.emit("run.cancelled", json!({}), None);
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::Retrying)
            == 2)
        .await
    );
    assert_eq!(outbound.pending(), 2, "both wait to retry");

    let started = Instant::now();
    outbound.shutdown();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "returns at once"
    );
    assert!(
        outbound.wait_idle(Duration::from_secs(1)).await,
        "retries cancelled"
    );
    assert_eq!(receiver.seen().len(), 2, "no attempt after the stop");
    assert!(
        record
            .warnings()
            .contains(&"outbound webhooks stopped: 2 pending deliveries cancelled".to_string()),
        "{:?}",
        record.warnings()
    );
    // After the stop, nothing more is queued.
    outbound.emit("run.failed", json!({}), None);
    assert_eq!(outbound.pending(), 0);
    assert_eq!(record.count(DeliveryOutcome::Dropped), 1);
    assert!(record
        .warnings()
        .last()
        .is_some_and(|w| w.ends_with("the gateway is stopping")));
    outbound.shutdown(); // twice is fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_sixteen_attempts_are_in_flight_at_once() {
    let (port, accepted) = silent_receiver().await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": format!("http://127.0.0.1:{port}/h"), "secret": SECRET}],
            "timeoutMs": 5000,
        }),
        &record,
    );
    for _ in 0..MAX_CONCURRENT_SENDS + 4 {
        outbound.emit("run.succeeded", json!({}), None);
    }
    assert_eq!(outbound.pending(), MAX_CONCURRENT_SENDS + 4);
    assert!(
        wait_until(Duration::from_secs(2), || accepted.load(Ordering::SeqCst)
            == MAX_CONCURRENT_SENDS)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), MAX_CONCURRENT_SENDS);
    outbound.shutdown();
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);
}

fn callback_config(allowed: Value) -> Value {
    json!({"allowedHosts": allowed, "callbackSecret": CALLBACK_SECRET, "timeoutMs": 2000})
}

async fn refusal(outbound: &Outbound, url: &str) -> String {
    match outbound.check_callback(url).await {
        Err(e) => e,
        Ok(c) => panic!("{url} should be refused, got {c:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_refused_unless_the_host_is_allowed_and_public_or_listed_exactly() {
    let record = Arc::new(Record::default());

    let off = outbound(json!({"allowedHosts": ["*"]}), &record);
    assert!(!off.accepts_callbacks());
    let e = refusal(&off, "https://hooks.example.com/").await;
    assert_eq!(
        e,
        "Invalid callback.url: callbacks are not enabled on this gateway (webhooks.callbackSecret is not set)"
    );

    let any = outbound(callback_config(json!(["*"])), &record);
    assert!(any.accepts_callbacks());
    let e = refusal(&any, "http://10.1.2.3/hook").await;
    assert!(
        e.starts_with(
            "Invalid callback.url: http://10.1.2.3/hook resolves to 10.1.2.3, which is a private address"
        ),
        "{e}"
    );
    let e = refusal(&any, "http://127.0.0.1:9/").await;
    assert!(e.contains("a loopback address"), "{e}");
    let e = refusal(&any, "http://[::1]:9/").await;
    assert!(e.contains("a loopback address"), "{e}");
    let e = refusal(&any, "http://169.254.169.254/latest/meta-data").await;
    assert!(e.contains("link-local"), "{e}");
    let e = refusal(&any, "http://localhost:9/").await;
    assert!(
        e.contains("loopback"),
        "localhost resolves to loopback: {e}"
    );
    let e = refusal(&any, "ftp://hooks.example.com/").await;
    assert!(
        e.starts_with("Invalid callback.url: the scheme must be http:// or https://"),
        "{e}"
    );
    let e = refusal(&any, "hooks.example.com/x").await;
    assert!(e.starts_with("Invalid callback.url:"), "{e}");
    let e = refusal(&any, "http://u:p@hooks.example.com/").await;
    assert!(e.contains("credentials"), "{e}");
    let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    let e = refusal(&any, &long).await;
    assert!(
        e.starts_with("Invalid callback.url: longer than 2048 bytes"),
        "{e}"
    );
    let e = refusal(&any, "http://nowhere.invalid/").await;
    assert!(
        e.starts_with("Invalid callback.url: \"nowhere.invalid\" d"),
        "does not resolve: {e}"
    );

    let some = outbound(
        callback_config(json!(["hooks.example.com", "*.example.org"])),
        &record,
    );
    let e = refusal(&some, "https://evil.example.net/").await;
    assert_eq!(
        e,
        "Invalid callback.url: the host of https://evil.example.net/ is not in webhooks.allowedHosts"
    );
    let e = refusal(&some, "https://example.org/").await;
    assert!(
        e.contains("not in webhooks.allowedHosts"),
        "*.example.org is subdomains only: {e}"
    );
    let e = refusal(&some, "http://127.0.0.1/").await;
    assert!(e.contains("not in webhooks.allowedHosts"), "{e}");

    // Listed exactly: loopback is the operator's choice.
    let listed = outbound(callback_config(json!(["127.0.0.1", "localhost"])), &record);
    let c = listed
        .check_callback("http://127.0.0.1:9/cb?x=1")
        .await
        .expect("listed exactly");
    assert_eq!(c.url(), "http://127.0.0.1:9/cb?x=1");
    listed
        .check_callback("http://localhost:9/cb")
        .await
        .expect("listed exactly");
    let e = refusal(&listed, "http://127.0.0.2:9/").await;
    assert!(e.contains("not in webhooks.allowedHosts"), "{e}");
    // A wildcard never lifts the refusal, even next to an exact entry for another host.
    let wild = outbound(callback_config(json!(["*", "hooks.example.com"])), &record);
    let e = refusal(&wild, "http://127.0.0.1:9/").await;
    assert!(e.contains("loopback"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_gets_every_event_of_its_run_signed_with_the_callback_secret() {
    let target = Receiver::start(vec![200]).await;
    let cb = Receiver::start(vec![200]).await;
    let record = Arc::new(Record::default());
    let outbound = outbound(
        json!({
            "outbound": [{"url": target.url("/t"), "secret": SECRET, "events": ["run.succeeded"]}],
            "allowedHosts": ["127.0.0.1"],
            "callbackSecret": CALLBACK_SECRET,
            "timeoutMs": 2000,
        }),
        &record,
    );
    let callback = outbound
        .check_callback(&cb.url("/cb"))
        .await
        .expect("allowed");
    outbound.emit(
        "approval.requested",
        json!({"approvalId": "a1"}),
        Some(&callback),
    );
    outbound.emit("run.succeeded", json!({"runId": "r"}), Some(&callback));
    assert!(
        wait_until(Duration::from_secs(3), || record
            .count(DeliveryOutcome::Delivered)
            == 3)
        .await
    );
    assert!(outbound.wait_idle(Duration::from_secs(1)).await);

    assert_eq!(
        target.seen().len(),
        1,
        "the target only subscribed to run.succeeded"
    );
    verify(&target.seen()[0], SECRET);
    let seen = cb.seen();
    assert_eq!(seen.len(), 2, "the callback gets both events");
    let mut types: Vec<String> = seen
        .iter()
        .map(|s| {
            verify(s, CALLBACK_SECRET);
            assert_eq!(s.path, "/cb");
            let body: Value = serde_json::from_slice(&s.body).expect("json");
            body["type"].as_str().expect("type").to_string()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["approval.requested", "run.succeeded"]);
    assert_ne!(
        header(&seen[0], "webhook-id"),
        header(&seen[1], "webhook-id"),
        "one id per delivery"
    );
}
