//! The session engine: registry, FIFO queues, runs, subscribers, reset, eviction and stop.
//!
//! # Shape
//!
//! [`Gateway`] is a cheap handle (`Arc<Inner>`). The registry maps keys to sessions under
//! one mutex; each [`Session`] keeps all of its mutable state — queue, run flags, message
//! count, event sequence and subscribers — under one mutex of its own. Nothing holds a lock
//! across an `.await`: every call into the agent is made after the guard is dropped.
//!
//! # The promises kept here
//!
//! - One creation per key. The first request for a key inserts a `Creating` slot and spawns
//!   the creation as its own task, so a caller that goes away (a client that disconnects)
//!   cannot strand the others; every caller waits on a oneshot that the task answers.
//! - Exactly one result per accepted message. A queued message owns a oneshot `Responder`;
//!   whoever takes it out of the queue (the run loop, clear, reset, stop) answers it. The
//!   running message's responder sits in `State::inflight`, so a reset or a stop can answer
//!   it at once; the run loop answers it only if it is still there when `prompt` returns.
//! - Events in one order for everyone. An event is sequenced and encoded under the session
//!   lock, once, and the same [`Frame`] goes to every subscriber's bounded channel. A
//!   subscriber whose channel is full is dropped, never waited for.
//! - A removed session (evicted, reset, stopped) is marked `removed` under its lock while the
//!   registry lock is held; an enqueue that raced with the removal sees the mark and goes
//!   back to the registry for a fresh session.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Agent, PromptOutcome, PromptRequest, SessionHandle, SessionInfo};
use crate::config::Config;
use crate::events::{AgentEvent, Frame, GatewayEvent, Snapshot};
use crate::util::{lock, now_ms};

/// A message for a session's queue (`GatewayMessageRequest`).
#[derive(Debug, Clone, Default)]
pub struct MessageRequest {
    pub session_key: String,
    pub text: String,
    pub images_json: Option<String>,
    pub source: Option<String>,
}

/// Why a message ended the way it did; decides the HTTP status and the chat's last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Completed,
    QueueFull,
    Aborted,
    Failed,
    /// Cleared, reset or stopped before it could finish.
    Dropped,
}

/// `GatewayMessageResult`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageResult {
    pub ok: bool,
    pub response: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "sessionKey")]
    pub session_key: String,
    #[serde(skip)]
    pub outcome: Outcome,
}

impl MessageResult {
    pub fn failure(session_key: &str, error: impl Into<String>, outcome: Outcome) -> Self {
        MessageResult {
            ok: false,
            response: String::new(),
            error: Some(error.into()),
            session_key: session_key.to_string(),
            outcome,
        }
    }
}

pub const QUEUE_CLEARED: &str = "Queue cleared";
pub const SESSION_RESET: &str = "Session reset";
pub const GATEWAY_STOPPED: &str = "Gateway stopped";

/// What the chat stream of one message hears about its run.
#[derive(Debug)]
pub enum RunSignal {
    Started,
    Event(AgentEvent),
}

/// The sending half of a message's run tap; bounded, and dropped (with `overflowed` set)
/// when its reader falls `sse.bufferEvents` behind.
#[derive(Debug)]
pub struct Tap {
    tx: mpsc::Sender<RunSignal>,
    overflowed: Arc<AtomicBool>,
}

/// The reading half, held by the chat stream.
#[derive(Debug)]
pub struct TapReceiver {
    pub rx: mpsc::Receiver<RunSignal>,
    overflowed: Arc<AtomicBool>,
}

impl TapReceiver {
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

pub fn tap(capacity: usize) -> (Tap, TapReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    (
        Tap {
            tx,
            overflowed: overflowed.clone(),
        },
        TapReceiver { rx, overflowed },
    )
}

impl Tap {
    /// False when the tap should be dropped (reader gone or too far behind).
    fn send(&self, signal: RunSignal) -> bool {
        match self.tx.try_send(signal) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

type Responder = oneshot::Sender<MessageResult>;

struct Queued {
    request: PromptRequest,
    responder: Responder,
    tap: Option<Tap>,
}

struct Inflight {
    responder: Option<Responder>,
    tap: Option<Tap>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Frame>,
}

struct State {
    queue: VecDeque<Queued>,
    /// A run loop task exists for this session.
    draining: bool,
    /// A `prompt` is in flight.
    processing: bool,
    inflight: Option<Inflight>,
    last_active_at: u64,
    message_count: u32,
    session_id: String,
    seq: u64,
    subscribers: Vec<Subscriber>,
    next_subscriber: u64,
    removed: bool,
    /// Bumped by a reset. A run's outcome carries the message count JS read when the prompt
    /// settled; it is applied only if no reset renewed the session since the run began, or a
    /// late answer from the old conversation would overwrite the renewed session's count.
    epoch: u64,
}

pub struct Session {
    pub key: String,
    pub handle: SessionHandle,
    created_at: u64,
    state: Mutex<State>,
}

impl Session {
    fn new(key: String, handle: SessionHandle, info: SessionInfo) -> Session {
        let now = now_ms();
        Session {
            key,
            handle,
            created_at: now,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                draining: false,
                processing: false,
                inflight: None,
                last_active_at: now,
                message_count: info.message_count,
                session_id: info.session_id,
                seq: 0,
                subscribers: Vec::new(),
                next_subscriber: 1,
                removed: false,
                epoch: 0,
            }),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_of(&lock(&self.state))
    }

    fn snapshot_of(&self, st: &State) -> Snapshot {
        Snapshot {
            session_key: self.key.clone(),
            session_id: st.session_id.clone(),
            message_count: st.message_count,
            queue_depth: st.queue.len() as u32,
            processing: st.processing,
            last_active_at: st.last_active_at,
            created_at: self.created_at,
        }
    }

    /// Sequences, encodes once and fans out one event. Called with the state lock held, so
    /// every subscriber sees the session's events in one order.
    fn emit(&self, st: &mut State, event: &GatewayEvent<'_>) {
        st.seq += 1;
        if st.subscribers.is_empty() {
            return;
        }
        let frame = Frame::encode(st.seq, event);
        // A full channel means the reader is `bufferEvents` behind: drop it rather than wait
        // or grow. A closed one means the reader has gone.
        st.subscribers
            .retain(|sub| sub.tx.try_send(frame.clone()).is_ok());
    }

    fn emit_state(&self, st: &mut State) {
        let snapshot = self.snapshot_of(st);
        self.emit(
            st,
            &GatewayEvent::SessionState {
                session_key: &self.key,
                snapshot: &snapshot,
            },
        );
    }

    fn emit_error_or_abort(&self, st: &mut State, outcome: Outcome, error: &str) {
        match outcome {
            Outcome::Aborted => self.emit(
                st,
                &GatewayEvent::Aborted {
                    session_key: &self.key,
                },
            ),
            Outcome::Failed => self.emit(
                st,
                &GatewayEvent::Error {
                    session_key: &self.key,
                    error,
                },
            ),
            _ => {}
        }
    }

    /// Takes every message still owed a result (queued and running) and answers it.
    fn drop_pending(&self, st: &mut State, reason: &str) {
        for queued in st.queue.drain(..) {
            let _ =
                queued
                    .responder
                    .send(MessageResult::failure(&self.key, reason, Outcome::Dropped));
        }
        if let Some(inflight) = st.inflight.as_mut() {
            inflight.tap = None;
            if let Some(responder) = inflight.responder.take() {
                let _ = responder.send(MessageResult::failure(&self.key, reason, Outcome::Dropped));
            }
        }
    }

    fn is_idle_since(&self, cutoff: u64) -> bool {
        let st = lock(&self.state);
        !st.processing
            && !st.draining
            && st.queue.is_empty()
            && st.subscribers.is_empty()
            && st.last_active_at <= cutoff
    }
}

/// A live subscription: frames arrive on `rx`; dropping it unsubscribes at once.
pub struct Subscription {
    pub rx: mpsc::Receiver<Frame>,
    pub guard: SubscriptionGuard,
}

pub struct SubscriptionGuard {
    session: Weak<Session>,
    id: u64,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let Some(session) = self.session.upgrade() {
            lock(&session.state).subscribers.retain(|s| s.id != self.id);
        }
    }
}

type Waiter = oneshot::Sender<Result<Arc<Session>, String>>;

enum Slot {
    Ready(Arc<Session>),
    /// Being created: who waits for the session, and the messages sent meanwhile, in the
    /// order they were sent (they enter the queue in that order once it exists).
    Creating {
        waiters: Vec<Waiter>,
        pending: Vec<Queued>,
    },
}

#[derive(Default)]
struct Registry {
    by_key: HashMap<String, Slot>,
    by_handle: HashMap<SessionHandle, Arc<Session>>,
}

/// Counters exposed for tests and benchmarks.
#[derive(Default)]
pub struct Stats {
    /// Bytes of agent-event payload that crossed into the core.
    pub event_bytes: AtomicU64,
    pub events: AtomicU64,
}

struct Inner {
    config: Config,
    agent: Arc<dyn Agent>,
    primary_key: String,
    rt: Handle,
    registry: Mutex<Registry>,
    next_handle: AtomicU32,
    ready: AtomicBool,
    stats: Stats,
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// Why a session-scoped call could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    Failed(String),
}

impl Gateway {
    pub fn new(config: Config, agent: Arc<dyn Agent>, primary_key: String, rt: Handle) -> Gateway {
        Gateway {
            inner: Arc::new(Inner {
                config,
                agent,
                primary_key,
                rt,
                registry: Mutex::new(Registry::default()),
                next_handle: AtomicU32::new(1),
                ready: AtomicBool::new(false),
                stats: Stats::default(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn primary_key(&self) -> &str {
        &self.inner.primary_key
    }

    pub fn runtime(&self) -> &Handle {
        &self.inner.rt
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    pub fn log(&self, message: &str) {
        self.inner.agent.log(message);
    }

    fn find(&self, key: &str) -> Option<Arc<Session>> {
        match lock(&self.inner.registry).by_key.get(key) {
            Some(Slot::Ready(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn session_count(&self) -> usize {
        lock(&self.inner.registry)
            .by_key
            .values()
            .filter(|s| matches!(s, Slot::Ready(_)))
            .count()
    }

    /// The session for `key`, created on first use. Concurrent first uses share one
    /// creation; a failed or timed-out creation fails them all and leaves nothing behind.
    pub async fn ensure_session(&self, key: &str) -> Result<Arc<Session>, String> {
        let rx = {
            let mut reg = lock(&self.inner.registry);
            match reg.by_key.get_mut(key) {
                Some(Slot::Ready(session)) => {
                    lock(&session.state).last_active_at = now_ms();
                    return Ok(session.clone());
                }
                Some(Slot::Creating { waiters, .. }) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    rx
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    reg.by_key.insert(
                        key.to_string(),
                        Slot::Creating {
                            waiters: vec![tx],
                            pending: Vec::new(),
                        },
                    );
                    self.spawn_create(key.to_string());
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| Err("Session creation was abandoned".to_string()))
    }

    fn spawn_create(&self, key: String) {
        let this = self.clone();
        self.inner.rt.spawn(async move { this.create(key).await });
    }

    async fn create(&self, key: String) {
        let handle = self.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.config.create_timeout;
        let created = match tokio::time::timeout(
            timeout,
            self.inner.agent.create_session(handle, &key),
        )
        .await
        {
            Ok(result) => result,
            // Whatever the factory produces later is disposed by the binding, which finds
            // nobody waiting for it.
            Err(_) => Err(format!(
                "createSession timed out after {} ms",
                timeout.as_millis()
            )),
        };
        // One lock from taking the `Creating` slot to inserting the session: no other
        // request may find the key absent in between and start a second creation.
        let mut reg = lock(&self.inner.registry);
        let (waiters, pending) = match reg.by_key.remove(&key) {
            Some(Slot::Creating { waiters, pending }) => (waiters, pending),
            other => {
                // stop() took the slot (and answered everyone) while JS was creating: the
                // late session must not linger.
                if let Some(other) = other {
                    reg.by_key.insert(key.clone(), other);
                }
                drop(reg);
                if created.is_ok() {
                    let agent = self.inner.agent.clone();
                    let dispose = key != self.inner.primary_key;
                    self.inner.rt.spawn(async move {
                        let _ = agent.release(handle, dispose).await;
                    });
                }
                return;
            }
        };
        let result = match created {
            Ok(info) => {
                let session = Arc::new(Session::new(key.clone(), handle, info));
                reg.by_key.insert(key, Slot::Ready(session.clone()));
                reg.by_handle.insert(handle, session.clone());
                {
                    let mut st = lock(&session.state);
                    session.emit_state(&mut st);
                }
                for queued in pending {
                    self.push(&session, queued, false);
                }
                Ok(session)
            }
            Err(error) => {
                for queued in pending {
                    let _ = queued.responder.send(MessageResult::failure(
                        &key,
                        error.clone(),
                        Outcome::Failed,
                    ));
                }
                Err(error)
            }
        };
        drop(reg);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Queues a message; the receiver yields its one result. A full queue answers at once.
    /// Synchronous, so messages enter a session's queue in the order this is called — even
    /// while the session is still being created.
    pub fn enqueue(
        &self,
        request: MessageRequest,
        tap: Option<Tap>,
    ) -> oneshot::Receiver<MessageResult> {
        let (responder, rx) = oneshot::channel();
        let key = request.session_key;
        let queued = Queued {
            request: PromptRequest {
                text: request.text,
                images_json: request.images_json,
                source: request.source.unwrap_or_else(|| "extension".to_string()),
            },
            responder,
            tap,
        };
        let mut reg = lock(&self.inner.registry);
        match reg.by_key.get_mut(&key) {
            // A session in the registry is never `removed`: removal takes it out first,
            // under this same lock.
            Some(Slot::Ready(session)) => {
                let session = session.clone();
                self.push(&session, queued, true);
            }
            Some(Slot::Creating { pending, .. }) => {
                // The first pending message runs as soon as the session exists.
                let max = self.inner.config.max_queue;
                if pending.len() > max {
                    let _ = queued.responder.send(queue_full(&key, max));
                } else {
                    pending.push(queued);
                }
            }
            None => {
                reg.by_key.insert(
                    key.clone(),
                    Slot::Creating {
                        waiters: Vec::new(),
                        pending: vec![queued],
                    },
                );
                self.spawn_create(key);
            }
        }
        rx
    }

    /// Appends to a session's queue and makes sure its run loop is going.
    fn push(&self, session: &Arc<Session>, queued: Queued, check_full: bool) {
        let mut st = lock(&session.state);
        let max = self.inner.config.max_queue;
        if check_full && st.queue.len() >= max {
            // Messages whose senders have gone hold no place in the queue.
            st.queue.retain(|q| !q.responder.is_closed());
        }
        if check_full && st.queue.len() >= max {
            let _ = queued.responder.send(queue_full(&session.key, max));
            return;
        }
        st.last_active_at = now_ms();
        st.queue.push_back(queued);
        session.emit_state(&mut st);
        if !st.draining {
            st.draining = true;
            let this = self.clone();
            let session = session.clone();
            self.inner
                .rt
                .spawn(async move { this.drain(session).await });
        }
    }

    /// The run loop of one session: one message at a time, in order, until the queue is empty.
    async fn drain(&self, session: Arc<Session>) {
        loop {
            let (request, epoch) = {
                let mut st = lock(&session.state);
                if st.removed {
                    st.draining = false;
                    return;
                }
                let Some(next) = st.queue.pop_front() else {
                    st.draining = false;
                    return;
                };
                if next.responder.is_closed() {
                    // Whoever sent it has gone (a client that hung up): its result would
                    // reach nobody, so it does not run.
                    st.last_active_at = now_ms();
                    session.emit_state(&mut st);
                    continue;
                }
                st.processing = true;
                st.last_active_at = now_ms();
                let tap = next.tap.filter(|t| t.send(RunSignal::Started));
                st.inflight = Some(Inflight {
                    responder: Some(next.responder),
                    tap,
                });
                session.emit_state(&mut st);
                (next.request, st.epoch)
            };

            let outcome = self.inner.agent.prompt(session.handle, request).await;
            let result = run_result(&session.key, outcome);

            let mut st = lock(&session.state);
            if let Some(count) = result.1.filter(|_| st.epoch == epoch) {
                st.message_count = count;
            }
            let result = result.0;
            session.emit_error_or_abort(
                &mut st,
                result.outcome,
                result.error.as_deref().unwrap_or(""),
            );
            st.processing = false;
            st.last_active_at = now_ms();
            session.emit_state(&mut st);
            if let Some(inflight) = st.inflight.take() {
                // Close the tap before answering, so the chat stream has read every event
                // of the run by the time it reads the result.
                drop(inflight.tap);
                if let Some(responder) = inflight.responder {
                    let _ = responder.send(result);
                }
            }
        }
    }

    /// An event from the agent. Synchronous and cheap: one registry lookup, one session lock,
    /// one encoding.
    pub fn push_event(
        &self,
        handle: SessionHandle,
        message_count: u32,
        event: AgentEvent,
        payload_bytes: usize,
    ) {
        self.inner.stats.events.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stats
            .event_bytes
            .fetch_add(payload_bytes as u64, Ordering::Relaxed);
        let Some(session) = lock(&self.inner.registry).by_handle.get(&handle).cloned() else {
            return;
        };
        let mut st = lock(&session.state);
        st.message_count = message_count;
        if let Some(public) = event.public(&session.key) {
            session.emit(&mut st, &public);
        }
        if event.is_chat_relevant() {
            if let Some(inflight) = st.inflight.as_mut() {
                if let Some(tap) = inflight.tap.as_ref() {
                    if !tap.send(RunSignal::Event(event)) {
                        inflight.tap = None;
                    }
                }
            }
        }
    }

    /// Subscribes to a session's events, creating the session on demand; `hello` comes first.
    /// `capacity` bounds how far behind the reader may fall before it is dropped.
    pub async fn subscribe(&self, key: &str, capacity: usize) -> Result<Subscription, String> {
        let session = self.ensure_session(key).await?;
        let mut st = lock(&session.state);
        let (tx, rx) = mpsc::channel(capacity.max(2));
        st.seq += 1;
        let snapshot = session.snapshot_of(&st);
        let hello = Frame::encode(
            st.seq,
            &GatewayEvent::Hello {
                session_key: &session.key,
                snapshot: &snapshot,
            },
        );
        // The channel is new and has room: this cannot fail.
        let _ = tx.try_send(hello);
        let id = st.next_subscriber;
        st.next_subscriber += 1;
        st.subscribers.push(Subscriber { id, tx });
        st.last_active_at = now_ms();
        drop(st);
        Ok(Subscription {
            rx,
            guard: SubscriptionGuard {
                session: Arc::downgrade(&session),
                id,
            },
        })
    }

    /// Asks the running prompt to stop. False when nothing is running.
    pub fn abort(&self, key: &str) -> Result<bool, SessionError> {
        let session = self.find(key).ok_or(SessionError::NotFound)?;
        if !lock(&session.state).processing {
            return Ok(false);
        }
        let this = self.clone();
        self.inner
            .rt
            .spawn(async move { this.abort_run(&session).await });
        Ok(true)
    }

    async fn abort_run(&self, session: &Arc<Session>) {
        if let Err(e) = self.inner.agent.abort(session.handle).await {
            let mut st = lock(&session.state);
            session.emit(
                &mut st,
                &GatewayEvent::Error {
                    session_key: &session.key,
                    error: &e,
                },
            );
        }
    }

    /// Drops every queued (not running) message of a session, each answered `Queue cleared`.
    pub fn clear_queue(&self, key: &str) -> bool {
        let Some(session) = self.find(key) else {
            return false;
        };
        let mut st = lock(&session.state);
        for queued in st.queue.drain(..) {
            let _ =
                queued
                    .responder
                    .send(MessageResult::failure(key, QUEUE_CLEARED, Outcome::Dropped));
        }
        session.emit_state(&mut st);
        true
    }

    /// Resets a session. The primary one is renewed in place and keeps its subscribers;
    /// any other is aborted, disposed and forgotten, and its streams end.
    pub async fn reset(&self, key: &str) -> Result<(), SessionError> {
        if key == self.inner.primary_key {
            let session = self.find(key).ok_or(SessionError::NotFound)?;
            let running = {
                let mut st = lock(&session.state);
                st.epoch += 1;
                session.drop_pending(&mut st, SESSION_RESET);
                session.emit_state(&mut st);
                st.processing
            };
            if running {
                self.abort_run(&session).await;
            }
            let info = self
                .inner
                .agent
                .renew(session.handle)
                .await
                .map_err(SessionError::Failed)?;
            let mut st = lock(&session.state);
            st.session_id = info.session_id;
            st.message_count = info.message_count;
            st.last_active_at = now_ms();
            session.emit_state(&mut st);
            return Ok(());
        }

        let session = {
            let mut reg = lock(&self.inner.registry);
            let Some(Slot::Ready(session)) = reg.by_key.get(key) else {
                return Err(SessionError::NotFound);
            };
            let session = session.clone();
            reg.by_key.remove(key);
            reg.by_handle.remove(&session.handle);
            lock(&session.state).removed = true;
            session
        };
        self.retire(&session, SESSION_RESET, true).await;
        Ok(())
    }

    /// Ends a session that is already out of the registry: answers what it owed, ends its
    /// streams, aborts its run and releases it in JS.
    async fn retire(&self, session: &Arc<Session>, reason: &str, dispose: bool) {
        let running = {
            let mut st = lock(&session.state);
            st.removed = true;
            session.drop_pending(&mut st, reason);
            session.emit_state(&mut st);
            st.subscribers.clear();
            st.processing
        };
        if running {
            self.abort_run(session).await;
        }
        if let Err(e) = self.inner.agent.release(session.handle, dispose).await {
            self.log(&format!("releasing session {} failed: {e}", session.key));
        }
    }

    pub fn snapshot(&self, key: &str) -> Option<Snapshot> {
        self.find(key).map(|s| s.snapshot())
    }

    /// Snapshots of every session, oldest first (the seed's Map order).
    pub fn list(&self) -> Vec<Snapshot> {
        let mut sessions: Vec<Arc<Session>> = lock(&self.inner.registry)
            .by_key
            .values()
            .filter_map(|s| match s {
                Slot::Ready(s) => Some(s.clone()),
                Slot::Creating { .. } => None,
            })
            .collect();
        sessions.sort_by_key(|s| (s.created_at, s.handle));
        sessions.iter().map(|s| s.snapshot()).collect()
    }

    /// One idle sweep with the seed's rules: never the primary, a busy, queued or
    /// subscribed session. Returns the evicted keys.
    pub async fn evict_idle(&self) -> Vec<String> {
        let cutoff = now_ms().saturating_sub(self.inner.config.idle.as_millis() as u64);
        let evicted: Vec<Arc<Session>> = {
            let mut reg = lock(&self.inner.registry);
            let keys: Vec<String> = reg
                .by_key
                .iter()
                .filter_map(|(key, slot)| match slot {
                    Slot::Ready(s) if *key != self.inner.primary_key && s.is_idle_since(cutoff) => {
                        Some(key.clone())
                    }
                    _ => None,
                })
                .collect();
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(Slot::Ready(session)) = reg.by_key.remove(&key) {
                    reg.by_handle.remove(&session.handle);
                    lock(&session.state).removed = true;
                    out.push(session);
                }
            }
            out
        };
        let mut keys = Vec::with_capacity(evicted.len());
        for session in evicted {
            if let Err(e) = self.inner.agent.release(session.handle, true).await {
                self.log(&format!("disposing session {} failed: {e}", session.key));
            }
            self.log(&format!("evicted idle session {}", session.key));
            keys.push(session.key.clone());
        }
        keys
    }

    /// Runs [`Gateway::evict_idle`] every `session.sweepIntervalMs` until the task is dropped.
    pub async fn sweep_forever(self) {
        let period = self
            .inner
            .config
            .sweep_interval
            .max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.evict_idle().await;
        }
    }

    /// Ends every session: pending messages answered `Gateway stopped`, streams ended, runs
    /// aborted, non-primary sessions disposed, the primary released to its owner.
    pub async fn stop_sessions(&self) {
        let sessions: Vec<Arc<Session>> = {
            let mut reg = lock(&self.inner.registry);
            let mut out = Vec::new();
            for (key, slot) in reg.by_key.drain() {
                match slot {
                    Slot::Ready(s) => {
                        lock(&s.state).removed = true;
                        out.push(s);
                    }
                    Slot::Creating { waiters, pending } => {
                        for w in waiters {
                            let _ = w.send(Err(GATEWAY_STOPPED.to_string()));
                        }
                        for queued in pending {
                            let _ = queued.responder.send(MessageResult::failure(
                                &key,
                                GATEWAY_STOPPED,
                                Outcome::Dropped,
                            ));
                        }
                    }
                }
            }
            reg.by_handle.clear();
            out
        };
        let primary = self.inner.primary_key.clone();
        let tasks: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                let this = self.clone();
                let dispose = session.key != primary;
                self.inner
                    .rt
                    .spawn(async move { this.retire(&session, GATEWAY_STOPPED, dispose).await })
            })
            .collect();
        // Every pending message was answered synchronously inside `retire`; what is left is
        // waiting for JS to abort and dispose, which a stuck callback must not turn into a
        // `stop()` that never returns.
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(self.inner.config.shutdown_timeout, all)
            .await
            .is_err()
        {
            self.log("stop: some sessions did not finish aborting or disposing in time");
        }
    }
}

fn queue_full(key: &str, max: usize) -> MessageResult {
    MessageResult::failure(
        key,
        format!("Queue full ({max} pending)."),
        Outcome::QueueFull,
    )
}

/// Maps how `prompt` ended onto a result; the second value is the new message count.
fn run_result(key: &str, outcome: Result<PromptOutcome, String>) -> (MessageResult, Option<u32>) {
    match outcome {
        Err(error) => {
            let kind = if error.to_ascii_lowercase().contains("abort") {
                Outcome::Aborted
            } else {
                Outcome::Failed
            };
            (MessageResult::failure(key, error, kind), None)
        }
        Ok(o) => {
            let count = Some(o.message_count);
            let result = match o.stop_reason.as_deref() {
                Some("aborted") => MessageResult {
                    ok: false,
                    response: o.response,
                    error: Some(
                        o.error_message
                            .unwrap_or_else(|| "Request was aborted".into()),
                    ),
                    session_key: key.to_string(),
                    outcome: Outcome::Aborted,
                },
                Some("error") => MessageResult {
                    ok: false,
                    response: o.response,
                    error: Some(
                        o.error_message
                            .unwrap_or_else(|| "The model reported an error".into()),
                    ),
                    session_key: key.to_string(),
                    outcome: Outcome::Failed,
                },
                _ => MessageResult {
                    ok: true,
                    response: o.response,
                    error: None,
                    session_key: key.to_string(),
                    outcome: Outcome::Completed,
                },
            };
            (result, count)
        }
    }
}

#[cfg(test)]
mod tests;
