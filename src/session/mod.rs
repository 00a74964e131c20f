//! The session engine: sessions and their queues, runs, the event log and its readers.
//!
//! # Shape
//!
//! [`Gateway`] is a cheap handle (`Arc<Inner>`). Its parts, by responsibility:
//!
//! - [`registry`] — keys to sessions (one creation per key), and each key's [`EventLog`],
//!   which outlives the session so ids never restart for a key.
//! - [`run`] — [`Run`]s (every accepted message), the store of recent runs, the queue and the
//!   run loop that takes it one run at a time.
//! - [`log`] — the bounded per-session event log, and the [`Cursor`]s every reader follows:
//!   `/events` subscribers, JS listeners, run streams and chat streams alike.
//! - [`lifecycle`] — abort, cancel, clear, reset, eviction and stop.
//! - [`idempotency`] — `Idempotency-Key` → run.
//! - [`hooks`] — the observer seam metrics and outbound webhooks hang on.
//!
//! # Locks, and the order they nest in
//!
//! `idempotency` → `registry` → a session's `state` → (`log` | `runs` | a run's state).
//! The last three are leaves: nothing else is locked while one is held. No lock is held across
//! an `.await`: every call into the agent is made after the guards are dropped.
//!
//! # The promises kept here
//!
//! - One creation per key. The first request for a key inserts a `Creating` slot and spawns
//!   the creation as its own task, so a caller that goes away cannot strand the others.
//! - Exactly one result per accepted message. A run's result is set once ([`Run::finish`]);
//!   whoever ends it (the run loop, a cancel, clear, reset, stop) sets it, and every waiter —
//!   the request that sent it, idempotent repeats, `waitForRun` — reads the same one.
//! - Events in one order for everyone. An event is numbered and encoded once, under the
//!   session lock, into the log; every reader reads that one entry.
//! - A removed session (evicted, reset, stopped) is marked `removed` under its lock while the
//!   registry lock is held; a message that raced with the removal goes to a fresh session.

pub mod approval;
pub mod hooks;
pub mod idempotency;
mod lifecycle;
pub mod log;
mod manage;
pub mod placement;
mod registry;
pub mod run;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::agent::{
    Agent, Delivery, LogLevel, LogLine, PromptKind, PromptOutcome, PromptRequest, SessionHandle,
    SessionInfo,
};
use crate::config::Config;
use crate::error::GatewayError;
use crate::events::{
    empty_list_json, AgentEvent, Frame, GatewayEvent, InfoKind, Json, ModelRef, Snapshot,
};
use crate::metrics::Metrics;
use crate::outbound::{DeliveryObserver, DeliveryOutcome, Outbound};
use crate::ui_stream::Translator;
use crate::util::{lock, now_ms};

pub use hooks::{Fanout, Hooks, NoHooks, Notifier, TimedAgent};
use idempotency::{Fingerprint, IdempotencyStore, Seen};
pub use log::{Cursor, End, Entry, EventLog, Filter, Resume, Step};
pub use manage::HistoryQuery;
use registry::Registry;
use run::Queued;
pub use run::{Mode, Run, RunRecord, RunStatus, RunStore};

/// A message for a session's queue (`GatewayMessageRequest`).
#[derive(Debug, Clone, Default)]
pub struct MessageRequest {
    pub session_key: String,
    pub text: String,
    pub images_json: Option<String>,
    pub source: Option<String>,
    /// A prompt (the default), a regeneration or a compaction.
    pub kind: PromptKind,
}

/// A message to submit, with how it is to be run.
#[derive(Debug, Default)]
pub struct Submit {
    pub request: MessageRequest,
    /// The `useChat` chat id: the run's events are also logged as UI message chunks.
    pub chat_id: Option<String>,
    /// Cancel it if, still queued, its one waiter goes away ([`Run::abandon`]).
    pub cancel_if_abandoned: bool,
    /// `Idempotency-Key` and the request's fingerprint.
    pub idempotency: Option<(String, Fingerprint)>,
    /// What it does if the session is busy; `None` is `session.defaultMode`.
    pub mode: Option<Mode>,
    /// A checked per-request callback: told of the run's end (and its approvals).
    pub callback: Option<crate::outbound::Callback>,
}

/// The run that answers a submitted message: one it started, one it joined (an idempotent
/// repeat), or the running run it was handed to (`steer` / `followUp`).
pub enum Submitted {
    New(Arc<Run>),
    Joined(Arc<Run>),
    Delivered {
        run: Arc<Run>,
        how: Delivery,
        /// For a chat request: a reader of the run's chat chunks from where it was handed over.
        chat: Option<Cursor>,
    },
}

impl Submitted {
    pub fn run(&self) -> &Arc<Run> {
        match self {
            Submitted::New(r) | Submitted::Joined(r) | Submitted::Delivered { run: r, .. } => r,
        }
    }

    pub fn joined(&self) -> bool {
        matches!(self, Submitted::Joined(_))
    }

    /// How it was handed to a running run, if it was.
    pub fn delivered(&self) -> Option<Delivery> {
        match self {
            Submitted::Delivered { how, .. } => Some(*how),
            _ => None,
        }
    }
}

/// Why a message ended the way it did; decides the HTTP status and the chat's last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Completed,
    QueueFull,
    Aborted,
    Failed,
    /// Cleared, reset, cancelled or stopped before it could finish.
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
    #[serde(rename = "runId", skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip)]
    pub outcome: Outcome,
}

impl MessageResult {
    /// The result a refused submission answers with, when it answers with one: a full queue
    /// (the seed's 429 body) and `reject` on a busy session (the 409 body, naming the busy run).
    /// Other refusals are plain errors.
    pub fn refusal(session_key: &str, e: &GatewayError) -> Option<Self> {
        match e {
            GatewayError::QueueFull(_) => Some(Self::failure(
                session_key,
                e.to_string(),
                Outcome::QueueFull,
            )),
            GatewayError::SessionBusy(run_id) => {
                let mut result = Self::failure(session_key, e.to_string(), Outcome::Failed);
                result.run_id = Some(run_id.clone());
                Some(result)
            }
            GatewayError::TooManySessions => {
                Some(Self::failure(session_key, e.to_string(), Outcome::Failed))
            }
            _ => None,
        }
    }

    pub fn failure(session_key: &str, error: impl Into<String>, outcome: Outcome) -> Self {
        MessageResult {
            ok: false,
            response: String::new(),
            error: Some(error.into()),
            session_key: session_key.to_string(),
            run_id: None,
            outcome,
        }
    }
}

pub const QUEUE_CLEARED: &str = "Queue cleared";
pub const SESSION_RESET: &str = "Session reset";
pub const GATEWAY_STOPPED: &str = "Gateway stopped";
pub const RUN_CANCELLED: &str = "Run cancelled";
/// The error of a run that was aborted.
pub const ABORTED: &str = "Request was aborted";
pub const CLIENT_GONE: &str = "The client went away before the run started";
pub const SESSION_DELETED: &str = "Session deleted";

/// The run a session is working on.
struct Active {
    run: Arc<Run>,
    /// pi's `agent_start` was seen: an abort now reaches the run.
    started: bool,
    /// An abort was asked for; if it came before `agent_start`, it is sent again then.
    abort_requested: bool,
    /// For a run from `/chat` (or one a chat message was steered into): its agent events as
    /// UI message chunks.
    translator: Option<Translator>,
    /// Messages being handed to its prompt (`steer` / `followUp`) whose answer has not come.
    deliveries: u32,
    /// Messages handed over after its prompt had finished: run as further prompts of the run.
    leftover: Vec<PromptRequest>,
}

struct State {
    queue: VecDeque<Queued>,
    /// A run loop task exists for this session.
    draining: bool,
    /// The run whose `prompt` is in flight (it may already have ended, by a reset).
    active: Option<Active>,
    last_active_at: u64,
    message_count: u32,
    session_id: String,
    removed: bool,
    /// Bumped by a reset. A run's outcome carries the message count JS read when the prompt
    /// settled; it is applied only if no reset renewed the session since the run began, or a
    /// late answer from the old conversation would overwrite the renewed session's count.
    epoch: u64,
    /// The primary session is being renewed (a reset): queued runs wait until it is done, or
    /// the renewal would wipe what they said and heard.
    renewing: bool,
    /// pi's own pending steering and follow-up texts, from its latest `queue_update`.
    steering: Json,
    follow_up: Json,
    /// pi's session name, model and thinking level, as last reported.
    name: Option<String>,
    model: Option<ModelRef>,
    thinking_level: Option<String>,
    /// Tool calls waiting for a decision, and the ones decided lately.
    approvals: approval::Approvals,
}

pub struct Session {
    pub key: String,
    pub handle: SessionHandle,
    created_at: u64,
    /// The agent session has `steer()` / `followUp()`.
    steerable: bool,
    /// The agent session has `compact()`.
    compactable: bool,
    log: Arc<EventLog>,
    state: Mutex<State>,
    /// Woken when a hand-over to the running prompt has its answer.
    delivered: tokio::sync::Notify,
}

impl Session {
    fn new(key: String, handle: SessionHandle, info: SessionInfo, log: Arc<EventLog>) -> Session {
        let now = now_ms();
        Session {
            key,
            handle,
            created_at: now,
            steerable: info.steer,
            compactable: info.compact,
            log,
            delivered: tokio::sync::Notify::new(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                draining: false,
                active: None,
                last_active_at: now,
                message_count: info.message_count,
                session_id: info.session_id,
                removed: false,
                epoch: 0,
                renewing: false,
                steering: empty_list_json(),
                follow_up: empty_list_json(),
                name: info.name,
                model: info.model,
                thinking_level: info.thinking_level,
                approvals: Default::default(),
            }),
        }
    }

    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
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
            processing: st.active.is_some(),
            last_active_at: st.last_active_at,
            created_at: self.created_at,
            name: st.name.clone(),
            model: st.model.clone(),
            thinking_level: st.thinking_level.clone(),
        }
    }

    /// Logs an event that no run caused. Called with the state lock held, so every reader
    /// sees the session's events in one order.
    fn emit(&self, _st: &mut State, event: &GatewayEvent<'_>) {
        append(&self.log, None, Some(event), None, false);
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

    /// When it was last active, if it is idle now: nothing running or queued, nobody subscribed.
    fn idle_since(&self) -> Option<u64> {
        let st = lock(&self.state);
        let idle = st.active.is_none()
            && !st.draining
            && st.queue.is_empty()
            && self.log.subscriber_count() == 0;
        idle.then_some(st.last_active_at)
    }

    fn is_idle_since(&self, cutoff: u64) -> bool {
        self.idle_since().is_some_and(|at| at <= cutoff)
    }
}

/// Logs one entry: `event` (tagged with `run`'s id) and/or chat chunks.
fn append(
    log: &EventLog,
    run: Option<&Run>,
    event: Option<&GatewayEvent<'_>>,
    chat: Option<Bytes>,
    run_end: bool,
) -> u64 {
    append_entry(log, run, event, chat, run_end, 0)
}

/// [`append`], for an entry that may be a chat stream's pause ([`Entry::pause`]).
fn append_entry(
    log: &EventLog,
    run: Option<&Run>,
    event: Option<&GatewayEvent<'_>>,
    chat: Option<Bytes>,
    run_end: bool,
    pause: u32,
) -> u64 {
    if let Some(event) = event {
        log.hooks().event_logged(log.key(), event);
    }
    log.append(|seq| {
        let entry = Entry {
            seq,
            run: run.map_or(0, |r| r.no),
            frame: event.map(|e| Frame::encode(seq, e, run.map(|r| r.id.as_str()))),
            chat,
            run_end,
            pause,
        };
        // Under the log's lock: observers get a key's entries in the order of their ids.
        log.hooks()
            .entry_logged(log.key(), &entry, run.map(|r| r.id.as_str()));
        entry
    })
}

/// `GET /sessions/:key/queue`.
#[derive(Serialize)]
pub struct QueueView {
    pub running: Option<RunRecord>,
    pub queued: Vec<RunRecord>,
    /// pi's own pending steering texts.
    pub steering: Json,
    /// pi's own pending follow-up texts.
    #[serde(rename = "followUp")]
    pub follow_up: Json,
}

/// `DELETE /sessions/:key/queue`.
#[derive(Serialize)]
pub struct QueueCleared {
    pub ok: bool,
    /// Queued runs ended `cancelled`.
    pub cleared: usize,
    /// pi's steering texts removed.
    pub steering: Json,
    /// pi's follow-up texts removed.
    #[serde(rename = "followUp")]
    pub follow_up: Json,
}

/// A new reader of a session's events: the `hello` frame it starts with, then its cursor.
pub struct Subscription {
    pub hello: Frame,
    /// The id `hello` carries: the reader has seen every event up to it.
    pub seen: u64,
    pub cursor: Cursor,
}

/// Outbound deliveries, counted in the metrics and logged as warnings when they fail.
struct DeliveryLog {
    metrics: Arc<Metrics>,
    agent: Arc<dyn Agent>,
    /// The gateway's log level ([`Gateway::set_log_level`]).
    log_level: Arc<AtomicU8>,
}

impl DeliveryObserver for DeliveryLog {
    fn delivery(&self, outcome: DeliveryOutcome) {
        self.metrics.webhook_delivery(outcome.as_str());
    }

    fn warn(&self, message: &str) {
        if LogLevel::Warn as u8 >= self.log_level.load(Ordering::Relaxed) {
            let message = format!("warning: {message}");
            self.agent.log(&LogLine::plain(&message));
        }
    }
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
    hooks: Arc<dyn Hooks>,
    metrics: Arc<Metrics>,
    /// Outbound webhooks and per-request callbacks.
    outbound: Outbound,
    /// Several gateways sharing sessions through Redis (`cluster`); `None`: one node.
    cluster: Option<crate::cluster::Cluster>,
    /// Replicas of other nodes' logs, read here.
    replicas: Mutex<placement::Replicas>,
    primary_key: String,
    rt: Handle,
    registry: Mutex<Registry>,
    runs: Mutex<RunStore>,
    idempotency: Mutex<IdempotencyStore>,
    next_handle: AtomicU32,
    ready: AtomicBool,
    stats: Stats,
    /// The least [`LogLevel`] logged.
    log_level: Arc<AtomicU8>,
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    pub fn new(config: Config, agent: Arc<dyn Agent>, primary_key: String, rt: Handle) -> Gateway {
        Gateway::with_hooks(config, agent, Arc::new(NoHooks), primary_key, rt)
    }

    pub fn with_hooks(
        config: Config,
        agent: Arc<dyn Agent>,
        hooks: Arc<dyn Hooks>,
        primary_key: String,
        rt: Handle,
    ) -> Gateway {
        let idempotency =
            IdempotencyStore::new(config.idempotency_ttl_ms, config.idempotency_max_keys);
        let metrics = Arc::new(Metrics::new());
        let gateway = Gateway {
            inner: Arc::new({
                let log_level = Arc::new(AtomicU8::new(LogLevel::Info as u8));
                let outbound = Outbound::new(
                    config.webhooks.clone(),
                    &rt,
                    Arc::new(DeliveryLog {
                        metrics: metrics.clone(),
                        agent: agent.clone(),
                        log_level: log_level.clone(),
                    }),
                );
                let mut observers: Vec<Arc<dyn Hooks>> = vec![metrics.clone()];
                if config.webhooks.is_active() {
                    observers.push(Arc::new(Notifier(outbound.clone())));
                }
                let cluster = config.cluster.clone().map(|cluster_config| {
                    let log_agent = agent.clone();
                    let cluster = crate::cluster::Cluster::new(
                        cluster_config,
                        config.replay_events,
                        &rt,
                        Arc::new(move |message: &str| {
                            log_agent.log(&LogLine::plain(message));
                        }),
                    );
                    observers.push(Arc::new(placement::Mirror {
                        cluster: cluster.clone(),
                        runs_retain: std::time::Duration::from_millis(config.runs_retain_ms),
                        primary_key: primary_key.clone(),
                    }));
                    cluster
                });
                if !hooks.watches_nothing() {
                    observers.push(hooks);
                }
                let hooks: Arc<dyn Hooks> = match observers.len() {
                    1 => metrics.clone(),
                    _ => Arc::new(Fanout(observers)),
                };
                let agent = Arc::new(TimedAgent {
                    inner: agent,
                    hooks: hooks.clone(),
                });
                Inner {
                    config,
                    agent,
                    hooks,
                    metrics,
                    outbound,
                    cluster,
                    replicas: Mutex::new(placement::Replicas::default()),
                    primary_key,
                    rt,
                    registry: Mutex::new(Registry::default()),
                    runs: Mutex::new(RunStore::default()),
                    idempotency: Mutex::new(idempotency),
                    next_handle: AtomicU32::new(1),
                    ready: AtomicBool::new(false),
                    stats: Stats::default(),
                    log_level,
                }
            }),
        };
        if let Some(cluster) = gateway.cluster() {
            let weak = Arc::downgrade(&gateway.inner);
            cluster.on_lost(Arc::new(move |key: &str| {
                if let Some(inner) = weak.upgrade() {
                    Gateway { inner }.lease_lost(key);
                }
            }));
        }
        gateway
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

    /// Whoever watches the engine: its metrics, and the observers it was made with.
    pub fn hooks(&self) -> &Arc<dyn Hooks> {
        &self.inner.hooks
    }

    /// `GET /metrics`'s text (OpenMetrics when `openmetrics`, else the classic format).
    pub fn encode_metrics(&self, openmetrics: bool) -> String {
        let sessions = self.list();
        let queued = sessions.iter().map(|s| u64::from(s.queue_depth)).sum();
        self.inner
            .metrics
            .encode(sessions.len(), queued, openmetrics)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Outbound webhooks: what checks per-request callbacks and sends deliveries.
    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Logs a line of its own (`warning: ...` is a warning).
    pub fn log(&self, message: &str) {
        self.log_line(&LogLine::plain(message));
    }

    /// Logs a line about session `key`.
    pub fn log_about(&self, level: LogLevel, key: &str, message: &str) {
        self.log_line(&LogLine {
            level,
            message,
            session_key: Some(key),
            run_id: None,
        });
    }

    /// Logs `line` if the gateway logs at its level.
    pub fn log_line(&self, line: &LogLine<'_>) {
        if self.logs_at(line.level) {
            self.inner.agent.log(line);
        }
    }

    /// Whether lines of `level` are logged.
    pub fn logs_at(&self, level: LogLevel) -> bool {
        level as u8 >= self.inner.log_level.load(Ordering::Relaxed)
    }

    pub fn set_log_level(&self, level: LogLevel) {
        self.inner.log_level.store(level as u8, Ordering::Relaxed);
    }

    /// Submits a message. Synchronous, so messages enter a session's queue in the order this
    /// is called — even while the session is still being created. A full queue is refused at
    /// once; an idempotent repeat joins the run the first request started.
    pub fn submit(&self, submit: Submit) -> Result<Submitted, GatewayError> {
        let Submit {
            request,
            chat_id,
            cancel_if_abandoned,
            idempotency,
            mode,
            callback,
        } = submit;
        let mode = mode.unwrap_or(self.inner.config.default_mode);
        let now = now_ms();
        let mut idem = idempotency.as_ref().map(|_| lock(&self.inner.idempotency));
        if let (Some(store), Some((key, fingerprint))) = (idem.as_mut(), idempotency.as_ref()) {
            match store.check(key, fingerprint, now) {
                Seen::New => {}
                Seen::Same(run) => return Ok(Submitted::Joined(run)),
                Seen::Different => return Err(GatewayError::IdempotencyConflict),
            }
        }
        let chat = chat_id.is_some();
        let run = Arc::new(Run::with_mode(
            request.session_key.clone(),
            chat_id,
            cancel_if_abandoned && idempotency.is_none(),
            mode,
        ));
        if let Some(callback) = callback {
            run.set_callback(callback);
        }
        let queued = Queued {
            request: PromptRequest {
                run_id: run.id.clone(),
                text: request.text,
                images_json: request.images_json,
                source: request.source.unwrap_or_else(|| "extension".to_string()),
                kind: request.kind,
            },
            run,
        };
        let submitted = self.enqueue(&request.session_key, queued, mode, chat)?;
        if let (Some(store), Some((key, fingerprint))) = (idem.as_mut(), idempotency) {
            store.remember(key, fingerprint, submitted.run().clone(), now);
        }
        Ok(submitted)
    }

    /// Whether this node remembers `Idempotency-Key` `key` (with any request).
    pub fn idempotency_known(&self, key: &str, fingerprint: &Fingerprint) -> bool {
        !matches!(
            lock(&self.inner.idempotency).check(key, fingerprint, now_ms()),
            Seen::New
        )
    }

    /// The run `run_id` of session `key`, while it is kept.
    pub fn run(&self, key: &str, run_id: &str) -> Option<Arc<Run>> {
        lock(&self.inner.runs).get(key, run_id)
    }

    /// The session's kept runs, oldest first.
    pub fn runs(&self, key: &str) -> Vec<Arc<Run>> {
        lock(&self.inner.runs).list(key)
    }

    /// The queued or running run of chat `chat_id` in session `key`.
    pub fn active_chat_run(&self, key: &str, chat_id: &str) -> Option<Arc<Run>> {
        lock(&self.inner.runs).active_chat_run(key, chat_id)
    }

    /// An event from the agent. Synchronous and cheap: one registry lookup, one session lock,
    /// one encoding (two for a chat run: the frame and its UI chunks).
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
        let Some(session) = self.session_by_handle(handle) else {
            return;
        };
        let mut st = lock(&session.state);
        st.message_count = message_count;
        match &event {
            AgentEvent::QueueUpdate {
                steering,
                follow_up,
            } => {
                st.steering = steering.clone();
                st.follow_up = follow_up.clone();
            }
            AgentEvent::Info { kind, fields } => {
                let text =
                    |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                match kind {
                    InfoKind::SessionInfoChanged => st.name = text("name"),
                    InfoKind::ThinkingLevelChanged => st.thinking_level = text("level"),
                    InfoKind::ModelChanged => {
                        st.model = fields
                            .get("model")
                            .and_then(|m| serde_json::from_value(m.clone()).ok());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if let AgentEvent::ToolEnd { id, .. } = &event {
            self.tool_call_ended(&session, &mut st, id);
        }
        let Some(active) = st.active.as_mut() else {
            if let Some(public) = event.public(&session.key) {
                session.emit(&mut st, &public);
            }
            return;
        };
        if active.run.status().is_ended() {
            // Ended early (a reset or a stop answered it): what pi still says while it winds
            // down belongs to a run that is over, so it is not logged after its `run_end`.
            return;
        }
        if matches!(event, AgentEvent::AgentStart) {
            active.started = true;
            if active.abort_requested {
                // The abort came before the run was under way, when pi ignores it.
                self.spawn_abort(&session);
            }
        }
        let chat = match active.translator.as_mut() {
            Some(t) if event.is_chat_relevant() => {
                let mut out = BytesMut::new();
                t.event(&event, &mut out);
                (!out.is_empty()).then(|| Bytes::copy_from_slice(&out))
            }
            _ => None,
        };
        let public = event.public(&session.key);
        if public.is_none() && chat.is_none() {
            return;
        }
        append(
            &session.log,
            Some(&active.run),
            public.as_ref(),
            chat,
            false,
        );
    }

    /// A reader of `key`'s events, creating the session on demand: `hello`, then (with
    /// `after`) every logged frame after that id, then live frames. `lag_limit` bounds how far
    /// behind the head it may fall before it is ended.
    pub async fn subscribe(
        &self,
        key: &str,
        after: Option<u64>,
        lag_limit: usize,
    ) -> Result<Subscription, GatewayError> {
        let session = self.ensure_session(key).await?;
        let mut st = lock(&session.state);
        let resume = match after {
            Some(after) => session.log.resume_after(after),
            None => session.log.live(),
        };
        let snapshot = session.snapshot_of(&st);
        let hello = Frame::encode(
            resume.seen,
            &GatewayEvent::Hello {
                session_key: &session.key,
                snapshot: &snapshot,
                missed: resume.missed,
            },
            None,
        );
        let cursor = session
            .log
            .cursor(resume.pos, Filter::Frames, lag_limit, true);
        st.last_active_at = now_ms();
        Ok(Subscription {
            hello,
            seen: resume.seen,
            cursor,
        })
    }

    /// A reader of one run's entries: its public frames (`chat: false`) or its chat chunks,
    /// from its first entry (or the first after `after`). `None` in the second place when the
    /// log no longer reaches back that far (the reader starts from what is left).
    pub fn run_cursor(&self, run: &Run, after: Option<u64>, chat: bool) -> (Cursor, bool) {
        let log = self.log_to_read(&run.session_key);
        let filter = if chat {
            Filter::Chat(run.no)
        } else {
            Filter::Run(run.no)
        };
        // Read before looking in the log: a run that logs its first entry meanwhile is then
        // found there, not taken for one whose entries were dropped.
        let first = run.first_seq();
        let (pos, missed) = match after.filter(|a| first != 0 && *a >= first) {
            Some(after) => {
                let r = log.resume_after(after);
                (r.pos, r.missed)
            }
            None => match log.run_position(run.no) {
                Ok((pos, seq)) => (pos, first != 0 && seq != first),
                // Nothing of it in the log: not started yet (everything comes after the
                // head), or all of it dropped.
                Err(head) => (head, first != 0),
            },
        };
        let cursor = log.cursor(pos, filter, usize::MAX, false);
        // A chat stream ends where its run waits for approvals (`Entry::pause`).
        let cursor = if chat {
            cursor.pause_on(run.open_pause.clone())
        } else {
            cursor
        };
        (cursor, missed)
    }

    /// The `hello` a run stream starts with when its log no longer reaches back.
    pub fn missed_hello(&self, key: &str) -> Frame {
        let log = self.log_to_read(key);
        let snapshot = self.snapshot(key).unwrap_or_else(|| Snapshot::empty(key));
        Frame::encode(
            log.resume_after(0).seen,
            &GatewayEvent::Hello {
                session_key: key,
                snapshot: &snapshot,
                missed: true,
            },
            None,
        )
    }

    /// Ends `run` with `result`, once: sets its result and logs its `run_end` (with the chat
    /// stream's closing chunks). False when it had already ended.
    fn end_run(
        &self,
        log: &EventLog,
        run: &Run,
        result: MessageResult,
        translator: Option<Translator>,
    ) -> bool {
        if !run.finish(result) {
            return false;
        }
        let result = run.result().unwrap_or_else(|| {
            MessageResult::failure(&run.session_key, "No result", Outcome::Failed)
        });
        // A chat run's stream, or one a chat message was steered into, ends here too.
        let chat = (run.chat_id.is_some() || translator.is_some()).then(|| {
            let mut out = BytesMut::new();
            translator
                .unwrap_or_default()
                .finish(&result, false, &mut out);
            Bytes::copy_from_slice(&out)
        });
        let status = run.status();
        let seq = append(
            log,
            Some(run),
            Some(&GatewayEvent::RunEnd {
                session_key: &run.session_key,
                status: status.as_str(),
                error: if result.ok {
                    None
                } else {
                    result.error.as_deref()
                },
            }),
            chat,
            true,
        );
        run.set_first_seq(seq);
        let config = &self.inner.config;
        lock(&self.inner.runs).trim(
            &run.session_key,
            now_ms(),
            config.runs_retain_ms,
            config.runs_retain_per_session,
        );
        self.inner.hooks.run_ended(run);
        true
    }
}

/// Maps how `prompt` ended onto a result; the second value is the new message count. A
/// rejected prompt counts as aborted when an abort was asked for, else as failed.
fn run_result(
    key: &str,
    outcome: Result<PromptOutcome, String>,
    abort_requested: bool,
) -> (MessageResult, Option<u32>) {
    match outcome {
        Err(error) => {
            let kind = if abort_requested {
                Outcome::Aborted
            } else {
                Outcome::Failed
            };
            (MessageResult::failure(key, error, kind), None)
        }
        Ok(o) => {
            let count = Some(o.message_count);
            let (ok, outcome, default_error) = match o.stop_reason.as_deref() {
                Some("aborted") => (false, Outcome::Aborted, ABORTED),
                Some("error") => (false, Outcome::Failed, "The model reported an error"),
                _ => (true, Outcome::Completed, ""),
            };
            let result = MessageResult {
                ok,
                response: o.response,
                error: (!ok).then(|| o.error_message.unwrap_or_else(|| default_error.into())),
                session_key: key.to_string(),
                run_id: None,
                outcome,
            };
            (result, count)
        }
    }
}

#[cfg(test)]
mod tests;
