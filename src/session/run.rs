//! Runs: every accepted message is a [`Run`] with an id, a status and, once it ends, a result.
//! Here too: the store that keeps recent runs for `GET …/runs`, and the run loop that takes a
//! session's queue one run at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use serde::Serialize;
use tokio::sync::watch;

use crate::agent::{Delivery, PromptRequest};
use crate::error::GatewayError;
use crate::events::GatewayEvent;
use crate::ui_stream::Translator;
use crate::util::{lock, now_ms};

use super::{
    append, run_result, Active, Filter, Gateway, MessageResult, Outcome, Session, State, Submitted,
    ABORTED, CLIENT_GONE,
};

/// `queued | running | succeeded | failed | aborted | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Aborted,
    /// Cleared, reset, deleted, stopped or cancelled before it finished.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_ended(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    fn of(outcome: Outcome) -> RunStatus {
        match outcome {
            Outcome::Completed => RunStatus::Succeeded,
            Outcome::Aborted => RunStatus::Aborted,
            Outcome::Failed | Outcome::QueueFull => RunStatus::Failed,
            Outcome::Dropped => RunStatus::Cancelled,
        }
    }
}

/// What a message sent while its session is busy does (SPEC section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// FIFO behind the runs before it.
    #[default]
    Queue,
    /// Into the running run, after its current tool calls (`session.steer`).
    Steer,
    /// Into the running run, when it would otherwise stop (`session.followUp`).
    FollowUp,
    /// Abort the running run and run this one next, ahead of the queue.
    Interrupt,
    /// Refused (`409`) while the session is busy.
    Reject,
}

impl Mode {
    /// The accepted values, for error messages.
    pub const EXPECTED: &'static str = "queue, steer, followUp, interrupt, reject";

    pub fn parse(text: &str) -> Option<Mode> {
        Some(match text {
            "queue" => Mode::Queue,
            "steer" => Mode::Steer,
            "followUp" => Mode::FollowUp,
            "interrupt" => Mode::Interrupt,
            "reject" => Mode::Reject,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Queue => "queue",
            Mode::Steer => "steer",
            Mode::FollowUp => "followUp",
            Mode::Interrupt => "interrupt",
            Mode::Reject => "reject",
        }
    }
}

struct RunState {
    status: RunStatus,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    result: Option<MessageResult>,
    /// Called with the result by `finish`, in the thread that ends the run.
    listeners: Vec<Listener>,
}

/// What [`Run::on_finish`] takes.
type Listener = Box<dyn FnOnce(&MessageResult) + Send>;

/// One accepted message.
pub struct Run {
    /// UUIDv7: unique across processes and restarts, and sorted by creation time.
    pub id: String,
    /// A small number for this process, unique per gateway: what log entries are tagged with.
    pub no: u64,
    pub session_key: String,
    /// The `useChat` chat id, for runs started from `/chat`.
    pub chat_id: Option<String>,
    /// The mode the message was sent with.
    pub mode: Mode,
    pub created_at: u64,
    /// Cancelled, if still queued, when the one caller waiting for it goes away (a `/messages`
    /// client that hung up without an `Idempotency-Key`: nobody could ever read its result).
    pub cancel_if_abandoned: bool,
    abandoned: AtomicBool,
    /// The id of its first log entry (`run_start`, or `run_end` for a run that never ran).
    first_seq: AtomicU64,
    state: Mutex<RunState>,
    done: watch::Sender<bool>,
    /// The number of its batch of approvals still pending, that its chat stream pauses at
    /// (0: none). See [`super::approval`].
    pub(super) open_pause: Arc<AtomicU32>,
    /// Where its per-request callback goes (`callback: {url}` on `POST …/messages`).
    callback: std::sync::OnceLock<crate::outbound::Callback>,
}

/// `GET …/runs/:runId`'s `run`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    pub session_key: String,
    pub status: RunStatus,
    pub mode: &'static str,
    pub created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<MessageResult>,
}

static RUN_NUMBERS: AtomicU64 = AtomicU64::new(1);

impl Run {
    pub fn new(session_key: String, chat_id: Option<String>, cancel_if_abandoned: bool) -> Run {
        Run::with_mode(session_key, chat_id, cancel_if_abandoned, Mode::Queue)
    }

    pub fn with_mode(
        session_key: String,
        chat_id: Option<String>,
        cancel_if_abandoned: bool,
        mode: Mode,
    ) -> Run {
        Run {
            id: uuid::Uuid::now_v7().to_string(),
            no: RUN_NUMBERS.fetch_add(1, Ordering::Relaxed),
            session_key,
            chat_id,
            mode,
            created_at: now_ms(),
            cancel_if_abandoned,
            abandoned: AtomicBool::new(false),
            first_seq: AtomicU64::new(0),
            state: Mutex::new(RunState {
                status: RunStatus::Queued,
                started_at: None,
                ended_at: None,
                result: None,
                listeners: Vec::new(),
            }),
            done: watch::channel(false).0,
            open_pause: Arc::new(AtomicU32::new(0)),
            callback: std::sync::OnceLock::new(),
        }
    }

    pub fn status(&self) -> RunStatus {
        lock(&self.state).status
    }

    pub fn result(&self) -> Option<MessageResult> {
        lock(&self.state).result.clone()
    }

    pub fn ended_at(&self) -> Option<u64> {
        lock(&self.state).ended_at
    }

    /// When it started and ended (ms since the epoch), as far as it has.
    pub fn times(&self) -> (Option<u64>, Option<u64>) {
        let st = lock(&self.state);
        (st.started_at, st.ended_at)
    }

    pub fn record(&self) -> RunRecord {
        let st = lock(&self.state);
        RunRecord {
            run_id: self.id.clone(),
            session_key: self.session_key.clone(),
            status: st.status,
            mode: self.mode.as_str(),
            created_at: self.created_at,
            started_at: st.started_at,
            ended_at: st.ended_at,
            result: st.result.clone(),
        }
    }

    /// Its result, once it has one; every waiter gets the same.
    pub async fn wait(&self) -> MessageResult {
        let mut rx = self.done.subscribe();
        // The sender lives as long as the run, so this returns once `finish` has run.
        let _ = rx.wait_for(|done| *done).await;
        self.result().unwrap_or_else(|| {
            MessageResult::failure(
                &self.session_key,
                "The message was dropped without a result",
                Outcome::Failed,
            )
        })
    }

    /// Calls `listener` with its result, synchronously in the thread that ends the run
    /// (before that thread goes on to the session's next run), or at once if it has ended.
    /// What keeps results of one session in the order its runs ended, where `wait`'s wake-up
    /// may be scheduled late.
    pub fn on_finish(&self, listener: impl FnOnce(&MessageResult) + Send + 'static) {
        let mut st = lock(&self.state);
        match st.result.clone() {
            Some(result) => {
                drop(st);
                listener(&result);
            }
            None => st.listeners.push(Box::new(listener)),
        }
    }

    pub(super) fn set_callback(&self, callback: crate::outbound::Callback) {
        let _ = self.callback.set(callback);
    }

    /// Its per-request callback, if it was given one.
    pub fn callback(&self) -> Option<&crate::outbound::Callback> {
        self.callback.get()
    }

    /// Queued → running. False when it is no longer queued.
    pub(super) fn mark_running(&self) -> bool {
        let mut st = lock(&self.state);
        if st.status != RunStatus::Queued {
            return false;
        }
        st.status = RunStatus::Running;
        st.started_at = Some(now_ms());
        true
    }

    /// Sets the result, once: false when the run had already ended. Every waiter wakes.
    pub(super) fn finish(&self, mut result: MessageResult) -> bool {
        let (listeners, result) = {
            let mut st = lock(&self.state);
            if st.status.is_ended() {
                return false;
            }
            result.run_id = Some(self.id.clone());
            st.status = RunStatus::of(result.outcome);
            st.ended_at = Some(now_ms());
            let listeners = std::mem::take(&mut st.listeners);
            // A copy only for the listeners, outside the lock.
            let copy = (!listeners.is_empty()).then(|| result.clone());
            st.result = Some(result);
            (listeners, copy)
        };
        if let Some(result) = result {
            for listener in listeners {
                listener(&result);
            }
        }
        self.done.send_replace(true);
        true
    }

    /// The waiting caller went away.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    pub(super) fn is_abandoned(&self) -> bool {
        self.cancel_if_abandoned && self.abandoned.load(Ordering::Acquire)
    }

    pub(super) fn set_first_seq(&self, seq: u64) {
        let _ = self
            .first_seq
            .compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The id of its first log entry; 0 while it has none.
    pub fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::Acquire)
    }
}

/// What the run loop does next once a run's prompt has returned.
enum Next {
    /// A hand-over has not had its answer yet.
    Wait,
    /// Run a message the prompt could not take.
    Prompt(PromptRequest),
    Done,
}

/// Where an `interrupt` goes: after the interrupting runs at the front of the queue.
pub(super) fn interrupts_ahead<'a>(queue: impl Iterator<Item = &'a Arc<Run>>) -> usize {
    queue.take_while(|r| r.mode == Mode::Interrupt).count()
}

/// A message waiting in a session's queue.
pub(super) struct Queued {
    pub run: Arc<Run>,
    pub request: PromptRequest,
}

/// Recent runs, by id and by session key (oldest first). Runs still queued or running are
/// always kept; ended ones for `runs.retainMs`, at most `runs.retainPerSession` per key.
#[derive(Default)]
pub struct RunStore {
    by_id: HashMap<String, Arc<Run>>,
    by_key: HashMap<String, VecDeque<Arc<Run>>>,
}

impl RunStore {
    pub fn insert(&mut self, run: Arc<Run>) {
        self.by_id.insert(run.id.clone(), run.clone());
        self.by_key
            .entry(run.session_key.clone())
            .or_default()
            .push_back(run);
    }

    /// The run `id` of session `key` (a run of another session is not found).
    pub fn get(&self, key: &str, id: &str) -> Option<Arc<Run>> {
        self.by_id.get(id).filter(|r| r.session_key == key).cloned()
    }

    pub fn list(&self, key: &str) -> Vec<Arc<Run>> {
        self.by_key
            .get(key)
            .map(|runs| runs.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The oldest run of chat `chat_id` in session `key` that has not ended.
    pub fn active_chat_run(&self, key: &str, chat_id: &str) -> Option<Arc<Run>> {
        self.by_key.get(key)?.iter().find_map(|r| {
            (r.chat_id.as_deref() == Some(chat_id) && !r.status().is_ended()).then(|| r.clone())
        })
    }

    /// Forgets ended runs of `key` past the retention bounds.
    pub fn prune(&mut self, key: &str, now: u64, retain_ms: u64, retain_per_key: usize) {
        let Some(runs) = self.by_key.get_mut(key) else {
            return;
        };
        let cutoff = now.saturating_sub(retain_ms);
        // The common case, checked without looking at every run: few runs, none expired yet.
        if runs.len() <= retain_per_key && runs.front().is_none_or(|r| r.created_at >= cutoff) {
            return;
        }
        let mut ended = runs.iter().filter(|r| r.status().is_ended()).count();
        let by_id = &mut self.by_id;
        runs.retain(|r| {
            let Some(ended_at) = r.ended_at() else {
                return true;
            };
            if ended > retain_per_key || ended_at < cutoff {
                ended -= 1;
                by_id.remove(&r.id);
                return false;
            }
            true
        });
        if runs.is_empty() {
            self.by_key.remove(key);
        }
    }

    /// Keeps at most `retain_per_key` ended runs of `key` after one more ended: the oldest
    /// runs are the ended ones (a session runs its queue in order), so this is usually one
    /// look at the front. Expiry by age is the sweeper's ([`RunStore::prune_all`]).
    pub fn trim(&mut self, key: &str, now: u64, retain_ms: u64, retain_per_key: usize) {
        let Some(runs) = self.by_key.get_mut(key) else {
            return;
        };
        while runs.len() > retain_per_key {
            match runs.front() {
                Some(r) if r.status().is_ended() => {
                    if let Some(r) = runs.pop_front() {
                        self.by_id.remove(&r.id);
                    }
                }
                // A run still going is older than the ones that ended (cancelled runs can
                // end out of order): count exactly.
                _ => return self.prune(key, now, retain_ms, retain_per_key),
            }
        }
    }

    /// [`RunStore::prune`] for every key (the sweeper's pass).
    pub fn prune_all(&mut self, now: u64, retain_ms: u64, retain_per_key: usize) {
        let keys: Vec<String> = self.by_key.keys().cloned().collect();
        for key in keys {
            self.prune(&key, now, retain_ms, retain_per_key);
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

// ---- the queue and the run loop ----

impl Gateway {
    /// Appends to a session's queue and makes sure its run loop is going. With `check_full`
    /// (a new submission), a full queue refuses it (false) after purging runs nobody waits for.
    pub(super) fn push(&self, session: &Arc<Session>, queued: Queued, check_full: bool) -> bool {
        let mut st = lock(&session.state);
        self.push_locked(session, &mut st, queued, check_full)
    }

    fn push_locked(
        &self,
        session: &Arc<Session>,
        st: &mut State,
        queued: Queued,
        check_full: bool,
    ) -> bool {
        let max = self.inner.config.max_queue;
        if check_full && st.queue.len() >= max {
            // Runs whose only waiter has gone hold no place in the queue.
            let (gone, kept): (Vec<Queued>, Vec<Queued>) =
                st.queue.drain(..).partition(|q| q.run.is_abandoned());
            st.queue = kept.into();
            for q in gone {
                self.end_run(
                    &session.log,
                    &q.run,
                    MessageResult::failure(&session.key, CLIENT_GONE, Outcome::Dropped),
                    None,
                );
            }
        }
        if check_full && st.queue.len() >= max {
            return false;
        }
        if check_full {
            lock(&self.inner.runs).insert(queued.run.clone());
        }
        st.last_active_at = now_ms();
        if check_full && queued.run.mode == Mode::Interrupt {
            // Ahead of the queue, behind the interrupting messages already waiting.
            let at = interrupts_ahead(st.queue.iter().map(|q| &q.run));
            st.queue.insert(at, queued);
        } else {
            st.queue.push_back(queued);
        }
        session.emit_state(st);
        self.start_draining(session, st);
        true
    }

    /// Makes sure the session's run loop is going, unless a renewal holds it back.
    pub(super) fn start_draining(&self, session: &Arc<Session>, st: &mut State) {
        if !st.draining && !st.renewing && !st.queue.is_empty() {
            st.draining = true;
            let this = self.clone();
            let session = session.clone();
            self.inner
                .rt
                .spawn(async move { this.drain(session).await });
        }
    }

    /// Places a new message in a ready session by its mode: queued (ahead of the queue for
    /// `interrupt`, which also aborts the running run), handed to the running run (`steer`,
    /// `followUp`), or refused (`reject`) while the session is busy.
    pub(super) fn place(
        &self,
        session: &Arc<Session>,
        queued: Queued,
        mode: Mode,
        chat: bool,
    ) -> Result<Submitted, GatewayError> {
        let mut st = lock(&session.state);
        let st = &mut *st;
        let running = st.active.as_mut().filter(|a| !a.run.status().is_ended());
        match (mode, running) {
            (Mode::Reject, running) => {
                let busy = running.map(|a| &a.run).or(st.queue.front().map(|q| &q.run));
                if let Some(busy) = busy {
                    return Err(GatewayError::SessionBusy(busy.id.clone()));
                }
            }
            (Mode::Steer | Mode::FollowUp, Some(active))
                if session.steerable && !active.abort_requested =>
            {
                let how = if mode == Mode::Steer {
                    Delivery::Steer
                } else {
                    Delivery::FollowUp
                };
                st.last_active_at = now_ms();
                return Ok(self.hand_over(session, active, how, queued.request, chat));
            }
            _ => {}
        }
        let run = queued.run.clone();
        if !self.push_locked(session, st, queued, true) {
            return Err(GatewayError::QueueFull(self.inner.config.max_queue));
        }
        if mode == Mode::Interrupt {
            if let Some(active) = st.active.as_mut().filter(|a| !a.run.status().is_ended()) {
                active.abort_requested = true;
                self.deny_approvals(session, st);
                self.spawn_abort(session);
            }
        }
        Ok(Submitted::New(run))
    }

    /// Hands `request` to the running run (the caller checked there is one, not being
    /// aborted): its chat stream says so (`data-steering`), and the agent gets it in the
    /// background. Whatever the agent could not take runs as a further prompt of the run.
    fn hand_over(
        &self,
        session: &Arc<Session>,
        active: &mut Active,
        how: Delivery,
        mut request: PromptRequest,
        chat: bool,
    ) -> Submitted {
        let run = active.run.clone();
        request.run_id = run.id.clone();
        active.deliveries += 1;
        if chat && active.translator.is_none() {
            // A chat message steered into a run from `/messages`: its events become chunks
            // from here on, for this message's stream.
            active.translator = Some(Translator::default());
        }
        let cursor = chat.then(|| {
            session
                .log
                .cursor(session.log.head(), Filter::Chat(run.no), usize::MAX, false)
                .pause_on(run.open_pause.clone())
        });
        if let Some(t) = active.translator.as_mut() {
            let mut out = BytesMut::new();
            t.steering(&request.text, how.as_str(), &mut out);
            append(&session.log, Some(&run), None, Some(out.freeze()), false);
        }
        let this = self.clone();
        let session = session.clone();
        let target = run.clone();
        self.inner.rt.spawn(async move {
            let answer = this
                .inner
                .agent
                .deliver(session.handle, how, &request)
                .await;
            {
                let mut st = lock(&session.state);
                if let Some(active) = st.active.as_mut().filter(|a| Arc::ptr_eq(&a.run, &target)) {
                    active.deliveries = active.deliveries.saturating_sub(1);
                    match answer {
                        Ok(true) => {}
                        Ok(false) => active.leftover.push(request),
                        Err(e) => {
                            this.log(&format!(
                                "warning: handing a message to the running prompt of session {:?} failed ({e}); it runs after that prompt instead",
                                session.key
                            ));
                            active.leftover.push(request);
                        }
                    }
                }
            }
            session.delivered.notify_one();
        });
        Submitted::Delivered {
            run,
            how,
            chat: cursor,
        }
    }

    /// The run loop of one session: one run at a time, in order, until the queue is empty.
    async fn drain(&self, session: Arc<Session>) {
        loop {
            let (run, request, epoch) = {
                let mut st = lock(&session.state);
                if st.removed || st.renewing {
                    // A renewal restarts the loop when it is done (`start_draining`).
                    st.draining = false;
                    return;
                }
                let Some(next) = st.queue.pop_front() else {
                    st.draining = false;
                    return;
                };
                if next.run.is_abandoned() {
                    // Whoever sent it has gone (a client that hung up): its result would
                    // reach nobody, so it does not run.
                    self.end_run(
                        &session.log,
                        &next.run,
                        MessageResult::failure(&session.key, CLIENT_GONE, Outcome::Dropped),
                        None,
                    );
                    st.last_active_at = now_ms();
                    session.emit_state(&mut st);
                    continue;
                }
                if !next.run.mark_running() {
                    continue;
                }
                st.last_active_at = now_ms();
                let mut translator = next.run.chat_id.as_ref().map(|_| Translator::default());
                let chat = translator.as_mut().map(|t| {
                    let mut out = BytesMut::new();
                    t.start(&next.run.session_key, &next.run.id, &mut out);
                    bytes::Bytes::copy_from_slice(&out)
                });
                st.active = Some(Active {
                    run: next.run.clone(),
                    started: false,
                    abort_requested: false,
                    translator,
                    deliveries: 0,
                    leftover: Vec::new(),
                });
                let seq = append(
                    &session.log,
                    Some(&next.run),
                    Some(&GatewayEvent::RunStart {
                        session_key: &session.key,
                    }),
                    chat,
                    false,
                );
                next.run.set_first_seq(seq);
                session.emit_state(&mut st);
                (next.run, next.request, st.epoch)
            };
            self.inner.hooks.run_started(&run);

            let mut outcome = self.inner.agent.prompt(session.handle, request).await;
            // Set when messages handed to the run are dropped because it is being aborted:
            // the run then ends aborted, whatever its last prompt said.
            let mut cut_short = false;
            // Messages handed over while it ran: wait for each hand-over's answer; those the
            // prompt could no longer take run now, as further prompts of this run.
            loop {
                let next = {
                    let mut st = lock(&session.state);
                    match st.active.as_mut() {
                        None => Next::Done,
                        Some(a) if a.deliveries > 0 => Next::Wait,
                        Some(a) => {
                            let go_on = !a.abort_requested
                                && !run.status().is_ended()
                                && matches!(&outcome, Ok(o) if o.stop_reason.as_deref() != Some("aborted"));
                            if go_on && !a.leftover.is_empty() {
                                Next::Prompt(a.leftover.remove(0))
                            } else {
                                // Their callers get this run's result, like everyone's: an
                                // aborted one if the abort is why they do not run.
                                cut_short |= !a.leftover.is_empty() && a.abort_requested;
                                a.leftover.clear();
                                Next::Done
                            }
                        }
                    }
                };
                match next {
                    Next::Wait => session.delivered.notified().await,
                    Next::Prompt(request) => {
                        outcome = self.inner.agent.prompt(session.handle, request).await
                    }
                    Next::Done => break,
                }
            }

            let mut st = lock(&session.state);
            let abort_requested = st.active.as_ref().is_some_and(|a| a.abort_requested);
            let (mut result, count) = run_result(&session.key, outcome, abort_requested);
            if cut_short && result.outcome == Outcome::Completed {
                result.ok = false;
                result.outcome = Outcome::Aborted;
                result.error = Some(ABORTED.to_string());
            }
            if let Some(count) = count.filter(|_| st.epoch == epoch) {
                st.message_count = count;
            }
            let error = result.error.as_deref().unwrap_or("");
            // A run a reset or stop already ended has logged its `run_end`: nothing of it after.
            let outcome = if run.status().is_ended() {
                Outcome::Completed
            } else {
                result.outcome
            };
            match outcome {
                Outcome::Aborted => append(
                    &session.log,
                    Some(&run),
                    Some(&GatewayEvent::Aborted {
                        session_key: &session.key,
                    }),
                    None,
                    false,
                ),
                Outcome::Failed => append(
                    &session.log,
                    Some(&run),
                    Some(&GatewayEvent::Error {
                        session_key: &session.key,
                        error,
                    }),
                    None,
                    false,
                ),
                _ => 0,
            };
            // Approvals its calls never asked for (pi refused them first) end with it.
            self.deny_approvals_of(&session, &mut st, &run);
            let translator = st.active.take().and_then(|a| a.translator);
            self.end_run(&session.log, &run, result, translator);
            st.last_active_at = now_ms();
            session.emit_state(&mut st);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(key: &str) -> Arc<Run> {
        let run = Arc::new(Run::new(key.into(), None, false));
        run.mark_running();
        run.finish(MessageResult::failure(key, "x", Outcome::Failed));
        run
    }

    #[test]
    fn finish_calls_its_listeners_before_it_returns_in_the_order_they_came() {
        let run = Run::new("k".into(), None, false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for n in 0..3 {
            let seen = seen.clone();
            run.on_finish(move |r| lock(&seen).push((n, r.error.clone())));
        }
        assert!(lock(&seen).is_empty());
        assert!(run.finish(MessageResult::failure("k", "done", Outcome::Failed)));
        let done = Some("done".to_string());
        assert_eq!(
            *lock(&seen),
            vec![(0, done.clone()), (1, done.clone()), (2, done)]
        );
    }

    #[test]
    fn a_run_ends_once_and_keeps_its_first_result() {
        let run = Run::new("k".into(), None, false);
        assert_eq!(run.status(), RunStatus::Queued);
        assert!(run.mark_running());
        assert!(!run.mark_running());
        assert!(run.finish(MessageResult::failure(
            "k",
            "Request was aborted",
            Outcome::Aborted
        )));
        assert!(!run.finish(MessageResult::failure("k", "late", Outcome::Failed)));
        assert_eq!(run.status(), RunStatus::Aborted);
        // A listener added after the end is called at once, with the first result.
        let (tx, rx) = std::sync::mpsc::channel();
        run.on_finish(move |r| tx.send(r.error.clone()).unwrap_or(()));
        assert_eq!(
            rx.try_recv().ok().flatten().as_deref(),
            Some("Request was aborted")
        );
        let result = run.result().expect("result");
        assert_eq!(result.run_id.as_deref(), Some(run.id.as_str()));
        assert_eq!(result.error.as_deref(), Some("Request was aborted"));
    }

    #[test]
    fn the_store_keeps_live_runs_and_a_bounded_tail_of_ended_ones() {
        let mut store = RunStore::default();
        let live = Arc::new(Run::new("k".into(), Some("c".into()), false));
        store.insert(live.clone());
        let ended: Vec<_> = (0..5).map(|_| ended("k")).collect();
        for r in &ended {
            store.insert(r.clone());
        }
        store.prune("k", now_ms(), 60_000, 2);
        let ids: Vec<String> = store.list("k").iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            vec![live.id.clone(), ended[3].id.clone(), ended[4].id.clone()]
        );
        assert!(store.get("k", &ended[0].id).is_none());
        assert!(store.get("other", &live.id).is_none());
        assert_eq!(
            store.active_chat_run("k", "c").map(|r| r.id.clone()),
            Some(live.id.clone())
        );
        store.prune("k", now_ms() + 120_000, 60_000, 2);
        assert_eq!(store.len(), 1);
    }
}
