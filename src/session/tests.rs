//! The engine against a fake agent: no Node, no sockets.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::agent::{AgentResult, BoxFuture};

/// Records calls; `prompt` answers `echo:<text>` after waiting for `gate` when asked to.
#[derive(Default)]
struct FakeAgent {
    creates: AtomicU32,
    create_delay_ms: u64,
    fail_create: bool,
    prompts: Mutex<Vec<String>>,
    released: Mutex<Vec<(SessionHandle, bool)>>,
    gate: Option<Arc<Notify>>,
    aborts: AtomicU32,
}

impl Agent for FakeAgent {
    fn create_session(
        &self,
        handle: SessionHandle,
        _key: &str,
    ) -> BoxFuture<AgentResult<SessionInfo>> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let delay = self.create_delay_ms;
        let fail = self.fail_create;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if fail {
                return Err("factory exploded".to_string());
            }
            Ok(SessionInfo {
                session_id: format!("sid-{handle}"),
                message_count: 0,
            })
        })
    }

    fn prompt(
        &self,
        _handle: SessionHandle,
        request: PromptRequest,
    ) -> BoxFuture<AgentResult<PromptOutcome>> {
        lock(&self.prompts).push(request.text.clone());
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(PromptOutcome {
                response: format!("echo:{}", request.text),
                stop_reason: Some("stop".into()),
                error_message: None,
                message_count: 2,
            })
        })
    }

    fn abort(&self, _handle: SessionHandle) -> BoxFuture<AgentResult<()>> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn release(&self, handle: SessionHandle, dispose: bool) -> BoxFuture<AgentResult<()>> {
        lock(&self.released).push((handle, dispose));
        Box::pin(async { Ok(()) })
    }

    fn renew(&self, handle: SessionHandle) -> BoxFuture<AgentResult<SessionInfo>> {
        Box::pin(async move {
            Ok(SessionInfo {
                session_id: format!("renewed-{handle}"),
                message_count: 0,
            })
        })
    }

    fn log(&self, _message: &str) {}
}

fn gateway(agent: Arc<FakeAgent>, config: Config) -> Gateway {
    Gateway::new(config, agent, "main".into(), Handle::current())
}

fn message(key: &str, text: &str) -> MessageRequest {
    MessageRequest {
        session_key: key.into(),
        text: text.into(),
        ..Default::default()
    }
}

/// A fake agent whose every prompt waits for the returned gate.
fn gated_agent() -> (Arc<FakeAgent>, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let agent = Arc::new(FakeAgent {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    (agent, gate)
}

/// Waits until the run loop of `key` has taken a message off its queue.
async fn until_processing(gw: &Gateway, key: &str) {
    while !gw.snapshot(key).map(|s| s.processing).unwrap_or(false) {
        tokio::task::yield_now().await;
    }
}

/// A gateway (`config`) over a gated fake agent whose session "a" is running the message "run",
/// held at the gate until the test notifies it.
async fn running_at_the_gate(
    config: Config,
) -> (
    Arc<FakeAgent>,
    Arc<Notify>,
    Gateway,
    oneshot::Receiver<MessageResult>,
) {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent.clone(), config);
    let running = gw.enqueue(message("a", "run"), None);
    // Let the run loop take the first message off the queue.
    until_processing(&gw, "a").await;
    (agent, gate, gw, running)
}

#[tokio::test]
async fn messages_of_one_session_run_in_order_and_each_gets_one_result() {
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), Config::for_tests());
    let mut receivers = Vec::new();
    for i in 0..5 {
        receivers.push(gw.enqueue(message("a", &format!("m{i}")), None));
    }
    for (i, rx) in receivers.into_iter().enumerate() {
        let result = rx.await.expect("one result");
        assert!(result.ok);
        assert_eq!(result.response, format!("echo:m{i}"));
    }
    assert_eq!(*lock(&agent.prompts), vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(gw.snapshot("a").expect("exists").message_count, 2);
}

#[tokio::test]
async fn a_full_queue_answers_at_once_and_clear_answers_the_rest() {
    let mut config = Config::for_tests();
    config.max_queue = 2;
    let (_agent, gate, gw, running) = running_at_the_gate(config).await;
    let q1 = gw.enqueue(message("a", "q1"), None);
    let q2 = gw.enqueue(message("a", "q2"), None);
    let full = gw.enqueue(message("a", "q3"), None).await.expect("result");
    assert_eq!(full.outcome, Outcome::QueueFull);
    assert_eq!(full.error.as_deref(), Some("Queue full (2 pending)."));
    assert!(gw.clear_queue("a"));
    for rx in [q1, q2] {
        let r = rx.await.expect("result");
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some(QUEUE_CLEARED));
    }
    gate.notify_one();
    assert!(running.await.expect("result").ok);
}

#[tokio::test]
async fn concurrent_first_uses_of_a_key_share_one_creation() {
    let agent = Arc::new(FakeAgent {
        create_delay_ms: 20,
        ..Default::default()
    });
    let gw = gateway(agent.clone(), Config::for_tests());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.ensure_session("k").await.map(|s| s.handle) })
        })
        .collect();
    let mut handles = Vec::new();
    for t in tasks {
        handles.push(t.await.expect("join").expect("created"));
    }
    assert_eq!(agent.creates.load(Ordering::SeqCst), 1);
    assert!(handles.iter().all(|h| *h == handles[0]));
}

#[tokio::test]
async fn a_failed_creation_fails_every_waiter_and_leaves_nothing() {
    let agent = Arc::new(FakeAgent {
        create_delay_ms: 5,
        fail_create: true,
        ..Default::default()
    });
    let gw = gateway(agent.clone(), Config::for_tests());
    let a = gw.enqueue(message("x", "1"), None);
    let b = gw.enqueue(message("x", "2"), None);
    for rx in [a, b] {
        let r = rx.await.expect("result");
        assert_eq!(r.error.as_deref(), Some("factory exploded"));
    }
    assert_eq!(gw.session_count(), 0);
    assert!(gw.list().is_empty());
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_are_evicted_but_not_the_primary_or_a_subscribed_one() {
    let agent = Arc::new(FakeAgent::default());
    let mut config = Config::for_tests();
    config.idle = Duration::from_millis(0);
    let gw = gateway(agent.clone(), config);
    gw.ensure_session("main").await.expect("primary");
    gw.ensure_session("idle").await.expect("idle");
    let watched = gw.subscribe("watched", 16).await.expect("subscribed");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let evicted = gw.evict_idle().await;
    assert_eq!(evicted, vec!["idle".to_string()]);
    assert!(gw.snapshot("main").is_some());
    assert!(gw.snapshot("watched").is_some());
    assert_eq!(lock(&agent.released).len(), 1);
    drop(watched);
    assert_eq!(gw.evict_idle().await, vec!["watched".to_string()]);
}

#[tokio::test]
async fn subscribers_get_hello_first_then_the_same_frames_in_order() {
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), Config::for_tests());
    let mut s1 = gw.subscribe("a", 16).await.expect("s1");
    let mut s2 = gw.subscribe("a", 16).await.expect("s2");
    let handle = gw.find("a").expect("exists").handle;
    for i in 0..3 {
        gw.push_event(
            handle,
            1,
            AgentEvent::TextDelta {
                index: 0,
                delta: format!("t{i}"),
            },
            2,
        );
    }
    let hello1 = s1.rx.recv().await.expect("hello");
    assert!(String::from_utf8_lossy(&hello1.json()).contains("\"type\":\"hello\""));
    let hello2 = s2.rx.recv().await.expect("hello");
    assert!(String::from_utf8_lossy(&hello2.json()).contains("\"type\":\"hello\""));
    for i in 0..3 {
        let a = s1.rx.recv().await.expect("frame");
        let b = s2.rx.recv().await.expect("frame");
        assert_eq!(a.sse(), b.sse());
        assert!(String::from_utf8_lossy(&a.json()).contains(&format!("\"delta\":\"t{i}\"")));
    }
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_dropped_without_slowing_others() {
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), Config::for_tests());
    let mut slow = gw.subscribe("a", 4).await.expect("slow");
    let mut fast = gw.subscribe("a", 16).await.expect("fast");
    let handle = gw.find("a").expect("exists").handle;
    let _ = fast.rx.recv().await;
    for i in 0..20 {
        gw.push_event(
            handle,
            0,
            AgentEvent::TextDelta {
                index: 0,
                delta: format!("{i}"),
            },
            1,
        );
        assert!(
            fast.rx.recv().await.is_some(),
            "fast reader keeps receiving"
        );
    }
    let mut got = 0;
    while slow.rx.recv().await.is_some() {
        got += 1;
    }
    assert!(
        got <= 4,
        "slow reader got {got} frames, then its stream ended"
    );
}

#[tokio::test]
async fn stop_answers_running_and_queued_messages() {
    let (agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let queued = gw.enqueue(message("a", "wait"), None);
    let mut sub = gw.subscribe("a", 16).await.expect("sub");
    tokio::time::timeout(Duration::from_secs(2), gw.stop_sessions())
        .await
        .expect("stop returns promptly");
    for rx in [running, queued] {
        let r = rx.await.expect("result");
        assert_eq!(r.error.as_deref(), Some(GATEWAY_STOPPED));
    }
    while sub.rx.recv().await.is_some() {}
    assert_eq!(agent.aborts.load(Ordering::SeqCst), 1);
    assert_eq!(gw.session_count(), 0);
    gate.notify_waiters();
}

#[tokio::test]
async fn a_run_that_ends_after_a_reset_does_not_bring_back_the_old_message_count() {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent.clone(), Config::for_tests());
    gw.ensure_session("main").await.expect("primary");
    let running = gw.enqueue(message("main", "long"), None);
    until_processing(&gw, "main").await;
    // The reset renews the session (message count 0) while the old prompt is still out.
    gw.reset("main").await.expect("reset");
    assert_eq!(gw.snapshot("main").expect("exists").message_count, 0);
    // Only now does the old prompt answer, with the count of the old conversation (2).
    gate.notify_one();
    let result = running.await.expect("one result");
    assert_eq!(result.error.as_deref(), Some(SESSION_RESET));
    while gw.snapshot("main").map(|s| s.processing).unwrap_or(true) {
        tokio::task::yield_now().await;
    }
    assert_eq!(gw.snapshot("main").expect("exists").message_count, 0);
}

#[tokio::test]
async fn a_message_whose_sender_has_gone_does_not_run_and_frees_its_place() {
    let mut config = Config::for_tests();
    config.max_queue = 2;
    let (agent, gate, gw, running) = running_at_the_gate(config).await;
    // Two queued messages whose clients hung up, then two that still wait: the queue of two
    // has room for them because the abandoned ones hold no place.
    drop(gw.enqueue(message("a", "gone1"), None));
    drop(gw.enqueue(message("a", "gone2"), None));
    let kept1 = gw.enqueue(message("a", "kept1"), None);
    let kept2 = gw.enqueue(message("a", "kept2"), None);
    gate.notify_one();
    assert!(running.await.expect("result").ok);
    gate.notify_one();
    assert_eq!(kept1.await.expect("result").response, "echo:kept1");
    gate.notify_one();
    assert_eq!(kept2.await.expect("result").response, "echo:kept2");
    assert_eq!(*lock(&agent.prompts), vec!["run", "kept1", "kept2"]);
}
