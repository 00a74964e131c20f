//! The observer seam: what the engine tells whoever watches it (metrics, outbound webhooks,
//! tests). Every method has an empty default; calls are made outside the engine's locks where
//! it matters little and inside them never for long, so an observer must be quick and must
//! not call back into the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{
    Agent, AgentResult, BoxFuture, Delivery, LogLine, Op, OpError, Pending, PromptOutcome,
    PromptRequest, SessionHandle, SessionInfo,
};
use crate::events::GatewayEvent;

use super::approval::{Approval, Decision};
use super::log::{End, Entry};
use super::run::Run;

pub trait Hooks: Send + Sync + 'static {
    /// True only for [`NoHooks`]: an observer that need not be called at all.
    fn watches_nothing(&self) -> bool {
        false
    }
    /// A run left the queue and its prompt is about to be sent to the agent.
    fn run_started(&self, _run: &Run) {}
    /// A run reached its terminal status (its result is set).
    fn run_ended(&self, _run: &Run) {}
    /// A session was created (or the primary adopted) for `key`.
    fn session_created(&self, _key: &str) {}
    /// An idle session was evicted.
    fn session_evicted(&self, _key: &str) {}
    /// A reader that counts as a subscriber of `key` (an `/events` client, a JS listener)
    /// was placed in its log.
    fn subscriber_added(&self, _key: &str) {}
    /// A subscriber of `key` went away: its client left (`None`), it fell behind, or the
    /// session ended.
    fn subscriber_dropped(&self, _key: &str, _reason: Option<End>) {}
    /// An event was logged for `key` (called under the session's lock: be quick).
    fn event_logged(&self, _key: &str, _event: &GatewayEvent<'_>) {}
    /// An entry was appended to `key`'s log (under the log's lock, in the order of ids: be
    /// quick, never block); `run_id` is its run's.
    fn entry_logged(&self, _key: &str, _entry: &Entry, _run_id: Option<&str>) {}
    /// A tool call now waits for a person's decision (`run`: the run it belongs to).
    fn approval_requested(&self, _approval: &Approval, _run: Option<&Run>) {}
    /// A pending approval was decided.
    fn approval_resolved(&self, _approval: &Approval, _decision: &Decision) {}
    /// A call into the agent (a JS callback) answered after `elapsed`.
    fn agent_call(&self, _callback: &'static str, _elapsed: Duration) {}
    /// An HTTP request was answered: its route template, method and status.
    fn http_request(
        &self,
        _route: &'static str,
        _method: &'static str,
        _status: u16,
        _elapsed: Duration,
    ) {
    }
}

/// Watches nothing.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn watches_nothing(&self) -> bool {
        true
    }
}

/// Several observers as one, called in order.
pub struct Fanout(pub Vec<Arc<dyn Hooks>>);

macro_rules! fan_out {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        for hooks in &$self.0 {
            hooks.$method($($arg),*);
        }
    };
}

impl Hooks for Fanout {
    fn run_started(&self, run: &Run) {
        fan_out!(self.run_started(run));
    }
    fn run_ended(&self, run: &Run) {
        fan_out!(self.run_ended(run));
    }
    fn session_created(&self, key: &str) {
        fan_out!(self.session_created(key));
    }
    fn session_evicted(&self, key: &str) {
        fan_out!(self.session_evicted(key));
    }
    fn subscriber_added(&self, key: &str) {
        fan_out!(self.subscriber_added(key));
    }
    fn subscriber_dropped(&self, key: &str, reason: Option<End>) {
        fan_out!(self.subscriber_dropped(key, reason));
    }
    fn event_logged(&self, key: &str, event: &GatewayEvent<'_>) {
        fan_out!(self.event_logged(key, event));
    }
    fn entry_logged(&self, key: &str, entry: &Entry, run_id: Option<&str>) {
        fan_out!(self.entry_logged(key, entry, run_id));
    }
    fn approval_requested(&self, approval: &Approval, run: Option<&Run>) {
        fan_out!(self.approval_requested(approval, run));
    }
    fn approval_resolved(&self, approval: &Approval, decision: &Decision) {
        fan_out!(self.approval_resolved(approval, decision));
    }
    fn agent_call(&self, callback: &'static str, elapsed: Duration) {
        fan_out!(self.agent_call(callback, elapsed));
    }
    fn http_request(&self, route: &'static str, method: &'static str, status: u16, t: Duration) {
        fan_out!(self.http_request(route, method, status, t));
    }
}

/// Tells outbound webhooks and per-request callbacks of run ends and approval requests.
pub struct Notifier(pub crate::outbound::Outbound);

impl Hooks for Notifier {
    fn run_ended(&self, run: &Run) {
        let record = run.record();
        let event = format!("run.{}", record.status.as_str());
        let data = serde_json::to_value(&record).unwrap_or(serde_json::Value::Null);
        self.0.emit(&event, data, run.callback());
    }

    fn approval_requested(&self, approval: &Approval, run: Option<&Run>) {
        let data = serde_json::to_value(approval.view()).unwrap_or(serde_json::Value::Null);
        self.0
            .emit("approval.requested", data, run.and_then(Run::callback));
    }
}

/// The agent, timed: every call's answer is reported to [`Hooks::agent_call`] under the
/// name of its JS callback.
pub struct TimedAgent {
    pub inner: Arc<dyn Agent>,
    pub hooks: Arc<dyn Hooks>,
}

impl TimedAgent {
    fn timed<T: Send + 'static>(&self, callback: &'static str, call: BoxFuture<T>) -> BoxFuture<T> {
        let hooks = self.hooks.clone();
        let started = Instant::now();
        Box::pin(async move {
            let answer = call.await;
            hooks.agent_call(callback, started.elapsed());
            answer
        })
    }
}

impl Agent for TimedAgent {
    fn create_session(
        &self,
        handle: SessionHandle,
        key: &str,
    ) -> BoxFuture<AgentResult<SessionInfo>> {
        self.timed("createSession", self.inner.create_session(handle, key))
    }
    fn prompt(
        &self,
        handle: SessionHandle,
        request: PromptRequest,
    ) -> BoxFuture<AgentResult<PromptOutcome>> {
        self.timed("prompt", self.inner.prompt(handle, request))
    }
    fn abort(&self, handle: SessionHandle) -> BoxFuture<AgentResult<()>> {
        self.timed("abort", self.inner.abort(handle))
    }
    fn release(&self, handle: SessionHandle, dispose: bool) -> BoxFuture<AgentResult<()>> {
        self.timed("release", self.inner.release(handle, dispose))
    }
    fn renew(&self, handle: SessionHandle) -> BoxFuture<AgentResult<SessionInfo>> {
        self.timed("renew", self.inner.renew(handle))
    }
    fn deliver(
        &self,
        handle: SessionHandle,
        how: Delivery,
        request: &PromptRequest,
    ) -> BoxFuture<AgentResult<bool>> {
        self.timed("handOver", self.inner.deliver(handle, how, request))
    }
    fn clear_pending(&self, handle: SessionHandle) -> BoxFuture<AgentResult<Pending>> {
        self.timed("clearPending", self.inner.clear_pending(handle))
    }
    fn op(
        &self,
        op: Op,
        handle: SessionHandle,
        key: &str,
        args: String,
    ) -> BoxFuture<Result<String, OpError>> {
        self.timed(op.callback_label(), self.inner.op(op, handle, key, args))
    }
    fn log(&self, line: &LogLine<'_>) {
        self.inner.log(line);
    }
}
