//! The engine against a fake agent: no Node, no sockets.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::agent::{AgentResult, BoxFuture, Delivery};
use crate::error::GatewayError;

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
    /// Sessions have `steer()` / `followUp()`.
    steer: bool,
    /// What `deliver` answers: taken by the prompt in flight, or not.
    takes_deliveries: bool,
    deliveries: Mutex<Vec<(String, Delivery, String)>>,
    /// An abort releases the gate and the prompt ends `aborted`.
    abort_releases: bool,
    abort_flag: Arc<std::sync::atomic::AtomicBool>,
    /// `renew` waits for this gate.
    renew_gate: Option<Arc<Notify>>,
    /// `deliver` waits for this gate.
    deliver_gate: Option<Arc<Notify>>,
    /// What the `history` op answers (`{entries: [...]}`).
    history: Mutex<String>,
}

impl Agent for FakeAgent {
    fn create_session(
        &self,
        handle: SessionHandle,
        _key: &str,
    ) -> BoxFuture<AgentResult<SessionInfo>> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let delay = self.create_delay_ms;
        let steer = self.steer;
        let fail = self.fail_create;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if fail {
                return Err("factory exploded".to_string());
            }
            Ok(SessionInfo {
                session_id: format!("sid-{handle}"),
                message_count: 0,
                steer,
                ..Default::default()
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
        let flag = self.abort_releases.then(|| self.abort_flag.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let was_aborted = flag.is_some_and(|f| f.swap(false, Ordering::SeqCst));
            Ok(PromptOutcome {
                response: format!("echo:{}", request.text),
                stop_reason: Some(if was_aborted { "aborted" } else { "stop" }.into()),
                error_message: None,
                message_count: 2,
            })
        })
    }

    fn abort(&self, _handle: SessionHandle) -> BoxFuture<AgentResult<()>> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        if self.abort_releases {
            self.abort_flag.store(true, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                gate.notify_one();
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn release(&self, handle: SessionHandle, dispose: bool) -> BoxFuture<AgentResult<()>> {
        lock(&self.released).push((handle, dispose));
        Box::pin(async { Ok(()) })
    }

    fn renew(&self, handle: SessionHandle) -> BoxFuture<AgentResult<SessionInfo>> {
        let steer = self.steer;
        let gate = self.renew_gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(SessionInfo {
                session_id: format!("renewed-{handle}"),
                message_count: 0,
                steer,
                ..Default::default()
            })
        })
    }

    fn deliver(
        &self,
        _handle: SessionHandle,
        how: Delivery,
        request: &PromptRequest,
    ) -> BoxFuture<AgentResult<bool>> {
        lock(&self.deliveries).push((request.run_id.clone(), how, request.text.clone()));
        let taken = self.takes_deliveries;
        let gate = self.deliver_gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(taken)
        })
    }

    fn op(
        &self,
        op: crate::agent::Op,
        _handle: SessionHandle,
        _key: &str,
        _args: String,
    ) -> BoxFuture<Result<String, crate::agent::OpError>> {
        let answer = match op {
            crate::agent::Op::History => Ok(lock(&self.history).clone()),
            crate::agent::Op::Exists => Ok("false".to_string()),
            other => Err(crate::agent::OpError::not_supported(other.as_str())),
        };
        Box::pin(async move { answer })
    }

    fn log(&self, _line: &crate::agent::LogLine<'_>) {}
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

/// Submits a plain message; the run, or why it was refused.
fn send(gw: &Gateway, key: &str, text: &str) -> Result<Arc<Run>, GatewayError> {
    gw.submit(Submit {
        request: message(key, text),
        ..Default::default()
    })
    .map(|s| s.run().clone())
}

fn sent(gw: &Gateway, key: &str, text: &str) -> Arc<Run> {
    send(gw, key, text).expect("accepted")
}

/// The next entries a cursor has (`None` once it is done), waiting for them.
async fn read(c: &mut Cursor) -> Option<Vec<Entry>> {
    let mut got = Vec::new();
    let step =
        std::future::poll_fn(|cx| c.poll_next(cx, usize::MAX, |e| got.push(e.clone()))).await;
    match step {
        Step::Done(_) if got.is_empty() => None,
        _ => Some(got),
    }
}

/// The JSON of every frame a cursor has now, without waiting.
fn frames_now(c: &mut Cursor) -> Vec<String> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Step::More) = c.poll_next(&mut cx, usize::MAX, |e| {
        if let Some(f) = &e.frame {
            out.push(String::from_utf8_lossy(&f.json()).into_owned());
        }
    }) {}
    out
}

fn json_of(e: &Entry) -> String {
    e.frame
        .as_ref()
        .map(|f| String::from_utf8_lossy(&f.json()).into_owned())
        .unwrap_or_default()
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
async fn running_at_the_gate(config: Config) -> (Arc<FakeAgent>, Arc<Notify>, Gateway, Arc<Run>) {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent.clone(), config);
    let running = sent(&gw, "a", "run");
    // Let the run loop take the first message off the queue.
    until_processing(&gw, "a").await;
    (agent, gate, gw, running)
}

#[tokio::test]
async fn messages_of_one_session_run_in_order_and_each_gets_one_result() {
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), Config::for_tests());
    let runs: Vec<_> = (0..5).map(|i| sent(&gw, "a", &format!("m{i}"))).collect();
    for (i, run) in runs.iter().enumerate() {
        let result = run.wait().await;
        assert!(result.ok);
        assert_eq!(result.response, format!("echo:m{i}"));
        assert_eq!(result.run_id.as_deref(), Some(run.id.as_str()));
        assert_eq!(run.status(), RunStatus::Succeeded);
    }
    assert_eq!(*lock(&agent.prompts), vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(gw.snapshot("a").expect("exists").message_count, 2);
    let listed: Vec<String> = gw.runs("a").iter().map(|r| r.id.clone()).collect();
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed, ids, "runs are listed oldest first");
}

#[tokio::test]
async fn a_full_queue_answers_at_once_and_clear_answers_the_rest() {
    let mut config = Config::for_tests();
    config.max_queue = 2;
    let (_agent, gate, gw, running) = running_at_the_gate(config).await;
    let q1 = sent(&gw, "a", "q1");
    let q2 = sent(&gw, "a", "q2");
    let full = send(&gw, "a", "q3").err().expect("refused");
    assert_eq!(full, GatewayError::QueueFull(2));
    assert_eq!(full.to_string(), "Queue full (2 pending).");
    assert!(gw.clear_queue("a"));
    for run in [q1, q2] {
        let r = run.wait().await;
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some(QUEUE_CLEARED));
        assert_eq!(run.status(), RunStatus::Cancelled);
    }
    gate.notify_one();
    assert!(running.wait().await.ok);
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
    let a = sent(&gw, "x", "1");
    let b = sent(&gw, "x", "2");
    for run in [a, b] {
        let r = run.wait().await;
        assert_eq!(r.error.as_deref(), Some("factory exploded"));
        assert_eq!(run.status(), RunStatus::Failed);
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
    let watched = gw.subscribe("watched", None, 16).await.expect("subscribed");
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
    let mut s1 = gw.subscribe("a", None, 16).await.expect("s1");
    let mut s2 = gw.subscribe("a", None, 16).await.expect("s2");
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
    for s in [&s1, &s2] {
        let hello = String::from_utf8_lossy(&s.hello.json()).into_owned();
        assert!(hello.contains("\"type\":\"hello\""), "{hello}");
        assert!(!hello.contains("missed"), "{hello}");
    }
    let a = read(&mut s1.cursor).await.expect("frames");
    let b = read(&mut s2.cursor).await.expect("frames");
    assert_eq!(a.len(), 3);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a.seq, b.seq);
        assert!(json_of(a).contains(&format!("\"delta\":\"t{i}\"")));
    }
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_dropped_without_slowing_others() {
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), Config::for_tests());
    let mut slow = gw.subscribe("a", None, 4).await.expect("slow");
    let mut fast = gw.subscribe("a", None, 16).await.expect("fast");
    let handle = gw.find("a").expect("exists").handle;
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
        assert_eq!(read(&mut fast.cursor).await.map(|v| v.len()), Some(1));
    }
    assert!(
        read(&mut slow.cursor).await.is_none(),
        "the slow reader was ended"
    );
}

#[tokio::test]
async fn stop_answers_running_and_queued_messages() {
    let (agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let queued = sent(&gw, "a", "wait");
    let mut sub = gw.subscribe("a", None, 16).await.expect("sub");
    tokio::time::timeout(Duration::from_secs(2), gw.stop_sessions())
        .await
        .expect("stop returns promptly");
    for run in [running, queued] {
        let r = run.wait().await;
        assert_eq!(r.error.as_deref(), Some(GATEWAY_STOPPED));
        assert_eq!(run.status(), RunStatus::Cancelled);
    }
    while read(&mut sub.cursor).await.is_some() {}
    assert_eq!(agent.aborts.load(Ordering::SeqCst), 1);
    assert_eq!(gw.session_count(), 0);
    gate.notify_waiters();
}

#[tokio::test]
async fn a_run_that_ends_after_a_reset_does_not_bring_back_the_old_message_count() {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent.clone(), Config::for_tests());
    gw.ensure_session("main").await.expect("primary");
    let running = sent(&gw, "main", "long");
    until_processing(&gw, "main").await;
    // The reset renews the session (message count 0) while the old prompt is still out.
    gw.reset("main").await.expect("reset");
    assert_eq!(gw.snapshot("main").expect("exists").message_count, 0);
    // Only now does the old prompt answer, with the count of the old conversation (2).
    gate.notify_one();
    let result = running.wait().await;
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
    let abandoned = |text: &str| {
        let run = gw
            .submit(Submit {
                request: message("a", text),
                cancel_if_abandoned: true,
                ..Default::default()
            })
            .expect("accepted")
            .run()
            .clone();
        run.abandon();
        run
    };
    let gone = [abandoned("gone1"), abandoned("gone2")];
    let kept1 = sent(&gw, "a", "kept1");
    let kept2 = sent(&gw, "a", "kept2");
    gate.notify_one();
    assert!(running.wait().await.ok);
    gate.notify_one();
    assert_eq!(kept1.wait().await.response, "echo:kept1");
    gate.notify_one();
    assert_eq!(kept2.wait().await.response, "echo:kept2");
    assert_eq!(*lock(&agent.prompts), vec!["run", "kept1", "kept2"]);
    for run in gone {
        assert_eq!(run.status(), RunStatus::Cancelled);
    }
}

#[tokio::test]
async fn a_run_logs_run_start_its_events_and_run_end_with_its_id() {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent, Config::for_tests());
    let mut sub = gw.subscribe("a", None, 64).await.expect("sub");
    let run = sent(&gw, "a", "hi");
    until_processing(&gw, "a").await;
    let handle = gw.find("a").expect("exists").handle;
    gw.push_event(
        handle,
        1,
        AgentEvent::TextDelta {
            index: 0,
            delta: "x".into(),
        },
        1,
    );
    gate.notify_one();
    run.wait().await;
    while gw.snapshot("a").map(|s| s.processing).unwrap_or(true) {
        tokio::task::yield_now().await;
    }
    let frames = frames_now(&mut sub.cursor);
    let types: Vec<&str> = frames
        .iter()
        .map(|f| {
            let start = f.find("\"type\":\"").map(|i| i + 8).unwrap_or(0);
            let end = f[start..].find('"').map(|i| start + i).unwrap_or(start);
            &f[start..end]
        })
        .collect();
    assert_eq!(
        types,
        vec![
            "session_state",
            "run_start",
            "session_state",
            "token",
            "run_end",
            "session_state"
        ]
    );
    let tagged = format!("\"runId\":\"{}\"", run.id);
    assert!(
        frames[1].contains(&tagged) && frames[3].contains(&tagged) && frames[4].contains(&tagged)
    );
    assert!(frames[4].contains("\"status\":\"succeeded\""));
    assert!(!frames[0].contains("runId") && !frames[2].contains("runId"));
}

#[tokio::test]
async fn a_reconnect_after_an_id_gets_exactly_what_followed_and_ids_survive_a_reset() {
    let agent = Arc::new(FakeAgent::default());
    let mut config = Config::for_tests();
    config.replay_events = 8;
    let gw = gateway(agent, config);
    gw.ensure_session("a").await.expect("session");
    let handle = gw.find("a").expect("exists").handle;
    let push = |i: u32| {
        gw.push_event(
            handle,
            0,
            AgentEvent::TextDelta {
                index: 0,
                delta: format!("d{i}"),
            },
            1,
        )
    };
    let mut whole = gw.subscribe("a", None, 64).await.expect("whole");
    for i in 0..5 {
        push(i);
    }
    let all = read(&mut whole.cursor).await.expect("frames");
    let cut = all[1].seq;
    let mut again = gw.subscribe("a", Some(cut), 64).await.expect("again");
    assert_eq!(again.seen, cut);
    let rest = read(&mut again.cursor).await.expect("rest");
    assert_eq!(
        rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        all[2..].iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    // Past the log's reach: missed, and what is left.
    for i in 5..20 {
        push(i);
    }
    let late = gw.subscribe("a", Some(cut), 64).await.expect("late");
    assert!(String::from_utf8_lossy(&late.hello.json()).contains("\"missed\":true"));
    let unknown = gw.subscribe("a", Some(10_000), 64).await.expect("unknown");
    assert!(String::from_utf8_lossy(&unknown.hello.json()).contains("\"missed\":true"));
    // A reset of a non-primary session keeps the key's log: ids go on.
    let last = gw.log_for("a").last_seq();
    gw.reset("a").await.expect("reset");
    gw.ensure_session("a").await.expect("again");
    let fresh = gw
        .subscribe("a", Some(last), 64)
        .await
        .expect("after reset");
    assert!(!String::from_utf8_lossy(&fresh.hello.json()).contains("missed"));
    assert!(gw.log_for("a").last_seq() > last);
}

#[tokio::test]
async fn cancel_ends_a_queued_run_aborts_a_running_one_and_refuses_an_ended_one() {
    let (agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let queued = sent(&gw, "a", "later");
    assert_eq!(
        gw.cancel_run("a", &queued.id).await,
        Ok(RunStatus::Cancelled)
    );
    assert_eq!(queued.wait().await.error.as_deref(), Some(RUN_CANCELLED));
    let cancel = {
        let gw = gw.clone();
        let id = running.id.clone();
        tokio::spawn(async move { gw.cancel_run("a", &id).await })
    };
    while agent.aborts.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The fake's prompt ignores the abort and answers when released; a rejected or
    // "aborted" answer would make it `aborted`. Released, it succeeded.
    gate.notify_one();
    assert_eq!(cancel.await.expect("join"), Ok(RunStatus::Succeeded));
    assert_eq!(
        gw.cancel_run("a", &running.id).await,
        Err(GatewayError::RunEnded("succeeded"))
    );
    assert_eq!(
        gw.cancel_run("a", "nope").await,
        Err(GatewayError::RunNotFound("nope".into()))
    );
    assert_eq!(
        *lock(&agent.prompts),
        vec!["run"],
        "the cancelled run never ran"
    );
}

#[tokio::test]
async fn an_idempotent_repeat_joins_the_first_run_and_a_different_request_conflicts() {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent.clone(), Config::for_tests());
    let fp = idempotency::fingerprint("POST", "/p", b"one");
    let submit = |fp| Submit {
        request: message("a", "hi"),
        idempotency: Some(("k1".to_string(), fp)),
        ..Default::default()
    };
    let first = gw.submit(submit(fp)).expect("first");
    let again = gw.submit(submit(fp)).expect("again");
    assert!(!first.joined() && again.joined());
    assert_eq!(first.run().id, again.run().id);
    let other = idempotency::fingerprint("POST", "/p", b"two");
    assert_eq!(
        gw.submit(submit(other)).err(),
        Some(GatewayError::IdempotencyConflict)
    );
    gate.notify_one();
    assert_eq!(first.run().wait().await, again.run().wait().await);
    assert_eq!(lock(&agent.prompts).len(), 1);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Hooks for Recorder {
    fn run_started(&self, run: &Run) {
        lock(&self.0).push(format!("start {}", run.session_key));
    }
    fn run_ended(&self, run: &Run) {
        lock(&self.0).push(format!("end {} {}", run.session_key, run.status().as_str()));
    }
    fn session_created(&self, key: &str) {
        lock(&self.0).push(format!("created {key}"));
    }
    fn session_evicted(&self, key: &str) {
        lock(&self.0).push(format!("evicted {key}"));
    }
    fn subscriber_dropped(&self, key: &str, _reason: Option<End>) {
        lock(&self.0).push(format!("dropped {key}"));
    }
}

#[tokio::test(start_paused = true)]
async fn hooks_hear_sessions_runs_and_subscribers() {
    let hooks = Arc::new(Recorder::default());
    let mut config = Config::for_tests();
    config.idle = Duration::from_millis(0);
    let gw = Gateway::with_hooks(
        config,
        Arc::new(FakeAgent::default()),
        hooks.clone(),
        "main".into(),
        Handle::current(),
    );
    sent(&gw, "a", "hi").wait().await;
    drop(gw.subscribe("a", None, 8).await.expect("sub"));
    while gw.snapshot("a").map(|s| s.processing).unwrap_or(true) {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    gw.evict_idle().await;
    assert_eq!(
        *lock(&hooks.0),
        vec![
            "created a",
            "start a",
            "end a succeeded",
            "dropped a",
            "evicted a"
        ]
    );
}

#[tokio::test]
async fn nothing_of_a_run_is_logged_after_a_reset_ended_it() {
    let (agent, gate) = gated_agent();
    let gw = gateway(agent, Config::for_tests());
    gw.ensure_session("main").await.expect("primary");
    let mut sub = gw.subscribe("main", None, 64).await.expect("sub");
    let run = sent(&gw, "main", "long");
    until_processing(&gw, "main").await;
    let handle = gw.find("main").expect("exists").handle;
    let delta = |d: &str| AgentEvent::TextDelta {
        index: 0,
        delta: d.into(),
    };
    gw.push_event(handle, 1, delta("before"), 1);
    gw.reset("main").await.expect("reset");
    // pi winds the aborted prompt down after the reset answered it.
    gw.push_event(handle, 1, delta("after"), 1);
    gate.notify_one();
    assert_eq!(run.wait().await.error.as_deref(), Some(SESSION_RESET));
    while gw.snapshot("main").map(|s| s.processing).unwrap_or(true) {
        tokio::task::yield_now().await;
    }
    let frames = frames_now(&mut sub.cursor);
    let tagged = format!("\"runId\":\"{}\"", run.id);
    let end = frames
        .iter()
        .position(|f| f.contains("\"type\":\"run_end\""))
        .expect("run_end");
    assert!(frames[end].contains("\"status\":\"cancelled\""));
    assert!(frames[..end]
        .iter()
        .any(|f| f.contains("\"delta\":\"before\"")));
    assert!(
        frames[end + 1..].iter().all(|f| !f.contains(&tagged)),
        "{frames:#?}"
    );
    assert!(frames
        .last()
        .is_some_and(|f| f.contains("\"processing\":false")));
}

#[tokio::test(start_paused = true)]
async fn an_evicted_session_is_freed_and_its_log_keeps_only_its_ids() {
    let agent = Arc::new(FakeAgent::default());
    let mut config = Config::for_tests();
    config.idle = Duration::from_millis(0);
    let gw = gateway(agent, config);
    let run = sent(&gw, "a", "hi");
    run.wait().await;
    while gw.snapshot("a").map(|s| s.processing).unwrap_or(true) {
        tokio::task::yield_now().await;
    }
    let weak = Arc::downgrade(&gw.find("a").expect("exists"));
    let last = gw.log_for("a").last_seq();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(gw.evict_idle().await, vec!["a".to_string()]);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(weak.upgrade().is_none(), "nothing holds an evicted session");
    // Reading its old run afterwards finds it ended and gone, and registers no log again.
    let (_, missed) = gw.run_cursor(&run, None, false);
    assert!(missed);
    assert!(!gw.has_log("a"));
    // Its log is forgotten; the next one for the key goes on above its ids.
    let log = gw.log_for("a");
    assert!(log.is_empty());
    assert_eq!(log.last_seq(), last);
    let again = gw.subscribe("a", Some(last - 1), 8).await.expect("again");
    assert!(String::from_utf8_lossy(&again.hello.json()).contains("\"missed\":true"));
    let fresh = gw.subscribe("new", Some(0), 8).await.expect("new key");
    assert!(!String::from_utf8_lossy(&fresh.hello.json()).contains("missed"));
}

// ---- queue modes ----

/// The results of `runs`, in turn, letting gated prompts through until each has ended
/// (within 5 s in all).
async fn through_the_gate(gate: &Notify, runs: &[&Arc<Run>]) -> Vec<MessageResult> {
    let all = async {
        let mut results = Vec::new();
        for run in runs {
            loop {
                if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), run.wait()).await {
                    results.push(r);
                    break;
                }
                gate.notify_one();
            }
        }
        results
    };
    tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .expect("every run ended")
}

/// An agent made from `agent` (gated here), and session "a" running "run" at its gate.
async fn running_on(mut agent: FakeAgent) -> (Arc<FakeAgent>, Arc<Notify>, Gateway, Arc<Run>) {
    let gate = Arc::new(Notify::new());
    agent.gate = Some(gate.clone());
    let agent = Arc::new(agent);
    let gw = gateway(agent.clone(), Config::for_tests());
    let running = sent(&gw, "a", "run");
    until_processing(&gw, "a").await;
    (agent, gate, gw, running)
}

/// Submits `text` to "a" with `mode`.
fn send_mode(gw: &Gateway, text: &str, mode: Mode) -> Result<Submitted, GatewayError> {
    gw.submit(Submit {
        request: message("a", text),
        mode: Some(mode),
        ..Default::default()
    })
}

#[tokio::test]
async fn reject_refuses_a_busy_session_and_changes_nothing() {
    let (_agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let refused = send_mode(&gw, "no", Mode::Reject).err().expect("refused");
    assert_eq!(refused, GatewayError::SessionBusy(running.id.clone()));
    assert_eq!(refused.status(), 409);
    assert_eq!(gw.runs("a").len(), 1, "no run was made");
    let view = gw.queue("a").expect("queue");
    assert!(view.queued.is_empty());
    gate.notify_one();
    assert!(running.wait().await.ok);
    // Idle now: reject runs like any message.
    let own = send_mode(&gw, "yes", Mode::Reject).expect("accepted");
    gate.notify_one();
    assert_eq!(own.run().wait().await.response, "echo:yes");
}

#[tokio::test]
async fn interrupt_aborts_the_running_run_and_goes_ahead_of_the_queue() {
    let (agent, gate, gw, running) = running_on(FakeAgent {
        abort_releases: true,
        ..Default::default()
    })
    .await;
    let queued = sent(&gw, "a", "queued");
    let first = send_mode(&gw, "first", Mode::Interrupt).expect("accepted");
    let second = send_mode(&gw, "second", Mode::Interrupt).expect("accepted");
    let view = gw.queue("a").expect("queue");
    let order: Vec<&str> = view.queued.iter().map(|r| r.mode).collect();
    assert_eq!(order, vec!["interrupt", "interrupt", "queue"]);
    let r = running.wait().await;
    assert_eq!(running.status(), RunStatus::Aborted, "{r:?}");
    for r in through_the_gate(&gate, &[first.run(), second.run(), &queued]).await {
        assert!(r.ok, "{r:?}");
    }
    assert_eq!(
        *lock(&agent.prompts),
        vec!["run", "first", "second", "queued"]
    );
}

#[tokio::test]
async fn steer_goes_into_the_running_run_and_its_caller_gets_that_result() {
    let (agent, gate, gw, running) = running_on(FakeAgent {
        steer: true,
        takes_deliveries: true,
        ..Default::default()
    })
    .await;
    let steered = send_mode(&gw, "left", Mode::Steer).expect("accepted");
    let followed = send_mode(&gw, "then", Mode::FollowUp).expect("accepted");
    assert_eq!(steered.delivered(), Some(Delivery::Steer));
    assert_eq!(followed.delivered(), Some(Delivery::FollowUp));
    assert!(Arc::ptr_eq(steered.run(), &running));
    assert_eq!(gw.runs("a").len(), 1, "no run of their own");
    // Let the hand-overs reach the agent before the prompt ends.
    while lock(&agent.deliveries).len() < 2 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    let result = tokio::time::timeout(Duration::from_secs(5), steered.run().wait())
        .await
        .expect("ended");
    assert_eq!(result.response, "echo:run");
    assert_eq!(result.run_id.as_deref(), Some(running.id.as_str()));
    let deliveries = lock(&agent.deliveries).clone();
    assert_eq!(
        deliveries,
        vec![
            (running.id.clone(), Delivery::Steer, "left".to_string()),
            (running.id.clone(), Delivery::FollowUp, "then".to_string()),
        ]
    );
    assert_eq!(*lock(&agent.prompts), vec!["run"], "taken by the prompt");
}

#[tokio::test]
async fn a_hand_over_the_prompt_could_not_take_runs_as_part_of_the_same_run() {
    let (agent, gate, gw, running) = running_on(FakeAgent {
        steer: true,
        ..Default::default()
    })
    .await;
    let steered = send_mode(&gw, "late", Mode::Steer).expect("accepted");
    let result = through_the_gate(&gate, &[&running]).await.remove(0);
    assert_eq!(
        result.response, "echo:late",
        "the run answers with its last prompt"
    );
    assert_eq!(
        steered.run().result().map(|r| r.response),
        Some("echo:late".into())
    );
    assert_eq!(*lock(&agent.prompts), vec!["run", "late"]);
    assert_eq!(gw.runs("a").len(), 1);
}

#[tokio::test]
async fn steer_without_steer_support_or_a_running_run_is_queued() {
    let (agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let own = send_mode(&gw, "own", Mode::Steer).expect("accepted");
    assert!(own.delivered().is_none());
    assert!(!Arc::ptr_eq(own.run(), &running));
    assert_eq!(own.run().mode, Mode::Steer);
    assert!(lock(&agent.deliveries).is_empty());
    for r in through_the_gate(&gate, &[&running, own.run()]).await {
        assert!(r.ok, "{r:?}");
    }
    assert_eq!(
        own.run().result().map(|r| r.response),
        Some("echo:own".into())
    );
}

#[tokio::test]
async fn the_default_mode_comes_from_the_config() {
    let mut config = Config::for_tests();
    config.default_mode = Mode::Reject;
    let (_agent, gate, gw, running) = running_at_the_gate(config).await;
    let refused = send(&gw, "a", "plain").err().expect("refused by default");
    assert_eq!(refused, GatewayError::SessionBusy(running.id.clone()));
    gate.notify_one();
    assert!(running.wait().await.ok);
}

#[tokio::test]
async fn a_message_sent_while_the_primary_session_is_renewed_runs_after_the_renewal() {
    let renew_gate = Arc::new(Notify::new());
    let agent = Arc::new(FakeAgent {
        renew_gate: Some(renew_gate.clone()),
        ..Default::default()
    });
    let gw = gateway(agent.clone(), Config::for_tests());
    assert!(sent(&gw, "main", "before").wait().await.ok);
    let resetting = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.reset("main").await })
    };
    // The reset is under way (waiting for its renewal) once the epoch moved.
    while lock(&gw.find("main").expect("main").state).epoch == 0 {
        tokio::task::yield_now().await;
    }
    let during = sent(&gw, "main", "during");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(*lock(&agent.prompts), vec!["before"], "held while renewing");
    assert_eq!(during.status(), RunStatus::Queued);
    renew_gate.notify_one();
    resetting.await.expect("task").expect("reset");
    let result = tokio::time::timeout(Duration::from_secs(5), during.wait())
        .await
        .expect("ran after the renewal");
    assert_eq!(result.response, "echo:during");
    assert_eq!(*lock(&agent.prompts), vec!["before", "during"]);
}

#[tokio::test]
async fn a_run_aborted_before_it_could_run_what_was_handed_to_it_ends_aborted() {
    let deliver_gate = Arc::new(Notify::new());
    let (agent, gate, gw, running) = running_on(FakeAgent {
        deliver_gate: Some(deliver_gate.clone()),
        steer: true,
        ..Default::default()
    })
    .await;
    let steered = send_mode(&gw, "late", Mode::Steer).expect("accepted");
    assert!(steered.delivered().is_some());
    // The prompt ends normally while the hand-over is still unanswered; then an abort comes.
    gate.notify_one();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(gw.abort("a").expect("session"));
    deliver_gate.notify_one();
    let result = tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("ended");
    assert_eq!(running.status(), RunStatus::Aborted, "{result:?}");
    assert_eq!(result.error.as_deref(), Some(ABORTED));
    assert_eq!(
        *lock(&agent.prompts),
        vec!["run"],
        "the handed-over message did not run"
    );
}

#[tokio::test]
async fn at_max_sessions_the_least_recently_active_idle_session_makes_room() {
    let mut config = Config::for_tests();
    config.max_sessions = 2;
    let agent = Arc::new(FakeAgent::default());
    let gw = gateway(agent.clone(), config);
    assert!(sent(&gw, "a", "1").wait().await.ok);
    assert!(sent(&gw, "b", "2").wait().await.ok);
    // "a" is the least recently active: a third key evicts it, not "b".
    assert!(sent(&gw, "c", "3").wait().await.ok);
    assert!(gw.snapshot("a").is_none(), "a was evicted");
    assert!(gw.snapshot("b").is_some() && gw.snapshot("c").is_some());
    // Its release disposes it.
    while !lock(&agent.released).iter().any(|(_, dispose)| *dispose) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn at_max_sessions_with_none_idle_a_new_key_is_refused_and_nothing_is_queued() {
    let mut config = Config::for_tests();
    config.max_sessions = 1;
    let (agent, gate, gw, running) = running_at_the_gate(config).await;
    let refused = send(&gw, "b", "x").err();
    assert_eq!(refused, Some(GatewayError::TooManySessions));
    assert_eq!(
        gw.ensure_session("b").await.err(),
        Some(GatewayError::TooManySessions)
    );
    let result = MessageResult::refusal("b", &GatewayError::TooManySessions).expect("a result");
    assert_eq!(result.error.as_deref(), Some("Too many sessions"));
    assert!(
        gw.runs("b").is_empty(),
        "no run was made for the refused key"
    );
    gate.notify_one();
    assert!(running.wait().await.ok);
    // Idle again: the next key evicts "a".
    let next = sent(&gw, "b", "y");
    until_processing(&gw, "b").await;
    assert!(gw.snapshot("a").is_none(), "a made room");
    gate.notify_one();
    assert!(next.wait().await.ok);
    assert_eq!(lock(&agent.prompts).last().map(String::as_str), Some("y"));
}

#[tokio::test]
async fn deleting_a_session_answers_its_runs_and_forgets_it() {
    let (agent, _gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    let queued = sent(&gw, "a", "queued");
    assert_eq!(
        gw.delete_session("main", false).await.err(),
        Some(GatewayError::PrimaryDelete)
    );
    assert_eq!(gw.delete_session("a", false).await, Ok(false));
    for run in [&running, &queued] {
        let result = run.wait().await;
        assert_eq!(result.error.as_deref(), Some(SESSION_DELETED));
        assert_eq!(run.status(), RunStatus::Cancelled);
    }
    assert!(gw.snapshot("a").is_none());
    assert!(lock(&agent.released).iter().any(|(_, dispose)| *dispose));
    assert_eq!(
        gw.delete_session("a", false).await.err(),
        Some(GatewayError::SessionNotFound("a".into()))
    );
    // Purging needs options.deleteSession (the fake has none): refused, and nothing changes.
    sent(&gw, "b", "hello");
    gw.ensure_session("b").await.expect("b exists");
    assert!(matches!(
        gw.delete_session("b", true).await,
        Err(GatewayError::Op(501, _))
    ));
    assert!(
        gw.snapshot("b").is_some(),
        "a refused purge deletes nothing"
    );
}

#[tokio::test]
async fn the_history_of_a_running_run_ends_at_its_user_message() {
    let (agent, gate, gw, running) = running_at_the_gate(Config::for_tests()).await;
    *lock(&agent.history) = serde_json::json!({"entries": [
        {"id": "m1", "type": "custom", "customType": crate::history::RUN_MARKER, "data": {"runId": running.id}},
        {"id": "u1", "type": "message", "message": {"role": "user", "content": "run"}},
        {"id": "a1", "type": "message", "message": {"role": "assistant", "content": [{"type": "text", "text": "half"}]}}
    ]})
    .to_string();
    let query = HistoryQuery {
        format: crate::history::Format::Ui,
        limit: 100,
        before: None,
    };
    let page = gw.history("a", &query).await.expect("history");
    let ids: Vec<&str> = page
        .messages
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["u1"], "cut at the running run's user message");
    gate.notify_one();
    running.wait().await;
    let page = gw.history("a", &query).await.expect("history");
    let ids: Vec<&str> = page
        .messages
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["u1", running.id.as_str()], "whole once it ended");
    assert_eq!(
        gw.history("nobody", &query).await.err(),
        Some(GatewayError::SessionNotFound("nobody".into()))
    );
}

/// A config whose `bash` calls need a decision.
fn asking(timeout_ms: u64) -> Config {
    let mut config = Config::for_tests();
    config
        .approval
        .policy
        .insert("bash".into(), crate::config::Policy::Ask);
    config
        .approval
        .policy
        .insert("rm".into(), crate::config::Policy::Deny);
    config.approval.timeout = Duration::from_millis(timeout_ms);
    config
}

fn tool_call(id: &str, name: &str) -> approval::ToolCall {
    approval::ToolCall {
        id: id.into(),
        name: name.into(),
        args: crate::events::json_or_null(Some(format!(r#"{{"command":"{id}"}}"#))),
    }
}

fn handle_of(gw: &Gateway, key: &str) -> SessionHandle {
    gw.find(key).expect("session").handle
}

#[tokio::test]
async fn a_message_s_calls_are_asked_together_and_each_decided_once() {
    let (_agent, gate, gw, running) = running_at_the_gate(asking(60_000)).await;
    let mut events = gw
        .subscribe("a", None, usize::MAX)
        .await
        .expect("sub")
        .cursor;
    let h = handle_of(&gw, "a");
    let calls = || {
        vec![
            tool_call("c1", "bash"),
            tool_call("c2", "bash"),
            tool_call("c3", "read"),
        ]
    };
    let first = tokio::spawn(gw.approve_tool_call(h, tool_call("c1", "bash"), calls()));
    let pending = gw.approvals("a");
    assert_eq!(
        pending
            .iter()
            .map(|a| a.tool_call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["c1", "c2"],
        "both asked calls of the message are pending at once; read is allowed"
    );
    assert!(pending
        .iter()
        .all(|a| a.run_id.as_deref() == Some(running.id.as_str())));
    // pi reaches the second call only later: it finds its approval, and no new one is made.
    let second = tokio::spawn(gw.approve_tool_call(h, tool_call("c2", "bash"), calls()));
    tokio::task::yield_now().await;
    assert_eq!(gw.approvals("a").len(), 2);
    let (a1, a2) = (pending[0].id.clone(), pending[1].id.clone());
    let answer = gw
        .decide("a", &a1, approval::Decision::client(true, None))
        .expect("decided");
    assert!(answer.ok && answer.approved);
    assert_eq!(
        gw.decide("a", &a1, approval::Decision::client(false, None))
            .err(),
        Some(GatewayError::ApprovalDecided(a1.clone())),
        "a decision stands"
    );
    assert_eq!(
        gw.decide("a", "nope", approval::Decision::client(true, None))
            .err(),
        Some(GatewayError::ApprovalNotFound("nope".into()))
    );
    assert!(first.await.expect("task").approved);
    gw.decide(
        "a",
        &a2,
        approval::Decision::client(false, Some("no".into())),
    )
    .expect("decided");
    let denied = second.await.expect("task");
    assert_eq!(
        (denied.approved, denied.reason.as_deref()),
        (false, Some("Denied by the user: no"))
    );
    assert!(gw.approvals("a").is_empty());
    let read_allowed = gw
        .approve_tool_call(h, tool_call("c3", "read"), vec![])
        .await;
    assert!(read_allowed.approved);
    let by_policy = gw.approve_tool_call(h, tool_call("c4", "rm"), vec![]).await;
    assert_eq!(by_policy.reason.as_deref(), Some("Denied by policy"));
    let frames = frames_now(&mut events);
    let kinds: Vec<String> = frames
        .iter()
        .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
        .filter_map(|v| v["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("approval"))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "approval_request",
            "approval_request",
            "approval_resolved",
            "approval_resolved"
        ]
    );
    gate.notify_one();
    assert!(running.wait().await.ok);
}

#[tokio::test]
async fn an_abort_denies_what_is_pending_so_the_run_can_end() {
    let mut config = asking(60_000);
    config.approval.timeout = Duration::from_secs(60);
    let (_agent, gate, gw, running) = running_at_the_gate(config).await;
    let h = handle_of(&gw, "a");
    let waiting = tokio::spawn(gw.approve_tool_call(h, tool_call("c1", "bash"), vec![]));
    tokio::task::yield_now().await;
    assert_eq!(gw.approvals("a").len(), 1);
    assert!(gw.abort("a").expect("known"));
    let verdict = waiting.await.expect("task");
    assert_eq!(
        verdict.reason.as_deref(),
        Some("Denied: the run was aborted")
    );
    assert!(gw.approvals("a").is_empty());
    gate.notify_one();
    running.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_nobody_decides_is_denied_at_its_timeout() {
    let (_agent, gate, gw, running) = running_at_the_gate(asking(300)).await;
    let h = handle_of(&gw, "a");
    let verdict = gw
        .approve_tool_call(h, tool_call("c1", "bash"), vec![])
        .await;
    assert_eq!(
        verdict.reason.as_deref(),
        Some("Denied: no decision within 0.3 s")
    );
    let id = {
        let session = gw.find("a").expect("session");
        let st = lock(&session.state);
        st.approvals.decided_ids()
    };
    let decided = gw
        .approval("a", &id[0])
        .and_then(|a| a.decision())
        .expect("decided");
    assert_eq!(decided.by, approval::DecidedBy::Timeout);
    gate.notify_one();
    running.wait().await;
}

#[tokio::test]
async fn a_chat_stream_pauses_while_its_run_waits_and_reads_through_once_decided() {
    let (_agent, gate) = gated_agent();
    let gw = gateway(_agent.clone(), asking(60_000));
    let run = gw
        .submit(Submit {
            request: message("a", "chat"),
            chat_id: Some("chat-1".into()),
            ..Default::default()
        })
        .expect("accepted")
        .run()
        .clone();
    until_processing(&gw, "a").await;
    let h = handle_of(&gw, "a");
    gw.push_event(h, 1, AgentEvent::TurnStart, 0);
    gw.push_event(
        h,
        1,
        AgentEvent::ToolCallEnd {
            index: 0,
            id: "c1".into(),
            name: "bash".into(),
            input: crate::events::json_or_null(Some("{}".into())),
        },
        0,
    );
    let waiting = tokio::spawn(gw.approve_tool_call(h, tool_call("c1", "bash"), vec![]));
    tokio::task::yield_now().await;
    let chat_text = |c: &mut Cursor| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut text = String::new();
        let mut end = None;
        loop {
            match c.poll_next(&mut cx, usize::MAX, |e| {
                if let Some(chat) = &e.chat {
                    text.push_str(&String::from_utf8_lossy(chat));
                }
            }) {
                std::task::Poll::Ready(Step::More) => continue,
                std::task::Poll::Ready(Step::Done(why)) => {
                    end = Some(why);
                    break;
                }
                std::task::Poll::Pending => break,
            }
        }
        (text, end)
    };
    let (mut paused, _) = gw.run_cursor(&run, None, true);
    let (text, end) = chat_text(&mut paused);
    assert_eq!(end, Some(End::Paused), "{text}");
    assert!(text.ends_with("\"toolCallId\":\"c1\"}\n\n"), "{text}");
    let id = gw.approvals("a")[0].id.clone();
    gw.decide("a", &id, approval::Decision::client(false, None))
        .expect("decided");
    assert!(!waiting.await.expect("task").approved);
    let (mut through, _) = gw.run_cursor(&run, None, true);
    let (text, end) = chat_text(&mut through);
    assert_eq!(end, None, "a decided batch is no pause: {text}");
    assert!(text.contains("tool-output-denied"), "{text}");
    gate.notify_one();
    run.wait().await;
}

#[tokio::test]
async fn a_key_s_next_log_never_reissues_an_id_its_forgotten_log_still_logs() {
    let gw = gateway(Arc::new(FakeAgent::default()), Config::for_tests());
    let event = GatewayEvent::TurnStart { session_key: "k" };
    let log = |l: &EventLog| append(l, None, Some(&event), None, false);
    let old = gw.log_for("k");
    assert_eq!((log(&old), log(&old)), (1, 2));
    // Deleted: its log is forgotten, but the session winding down still logs its last events.
    gw.retire_log(&mut lock(&gw.inner.registry), "k", false);
    let next = gw.log_for("k");
    assert!(!Arc::ptr_eq(&old, &next));
    let late = log(&old);
    let first = log(&next);
    assert_eq!(
        (late, first),
        (3, 4),
        "one id source for the key while both live"
    );
    drop(old);
    gw.retire_log(&mut lock(&gw.inner.registry), "k", false);
    drop(next);
    let third = gw.log_for("k");
    assert_eq!(
        log(&third),
        5,
        "a forgotten log's ids stay below the next one's"
    );
    // Forgotten, logging its last event, then gone before the key's next log is made.
    gw.retire_log(&mut lock(&gw.inner.registry), "k", false);
    assert_eq!(log(&third), 6);
    drop(third);
    let fourth = gw.log_for("k");
    assert_eq!(log(&fourth), 7);
}
