//! Runs: every accepted message is a [`Run`] with an id, a status and, once it ends, a result.
//! Here too: the store that keeps recent runs for `GET …/runs`, and the run loop that takes a
//! session's queue one run at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use serde::Serialize;
use tokio::sync::watch;

use crate::agent::PromptRequest;
use crate::events::GatewayEvent;
use crate::ui_stream::Translator;
use crate::util::{lock, now_ms};

use super::{append, run_result, Active, Gateway, MessageResult, Outcome, Session, CLIENT_GONE};

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

struct RunState {
    status: RunStatus,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    result: Option<MessageResult>,
}

/// One accepted message.
pub struct Run {
    /// UUIDv7: unique across processes and restarts, and sorted by creation time.
    pub id: String,
    /// A small number for this process, unique per gateway: what log entries are tagged with.
    pub no: u64,
    pub session_key: String,
    /// The `useChat` chat id, for runs started from `/chat`.
    pub chat_id: Option<String>,
    pub created_at: u64,
    /// Cancelled, if still queued, when the one caller waiting for it goes away (a `/messages`
    /// client that hung up without an `Idempotency-Key`: nobody could ever read its result).
    pub cancel_if_abandoned: bool,
    abandoned: AtomicBool,
    /// The id of its first log entry (`run_start`, or `run_end` for a run that never ran).
    first_seq: AtomicU64,
    state: Mutex<RunState>,
    done: watch::Sender<bool>,
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
        Run {
            id: uuid::Uuid::now_v7().to_string(),
            no: RUN_NUMBERS.fetch_add(1, Ordering::Relaxed),
            session_key,
            chat_id,
            created_at: now_ms(),
            cancel_if_abandoned,
            abandoned: AtomicBool::new(false),
            first_seq: AtomicU64::new(0),
            state: Mutex::new(RunState {
                status: RunStatus::Queued,
                started_at: None,
                ended_at: None,
                result: None,
            }),
            done: watch::channel(false).0,
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

    pub fn record(&self) -> RunRecord {
        let st = lock(&self.state);
        RunRecord {
            run_id: self.id.clone(),
            session_key: self.session_key.clone(),
            status: st.status,
            mode: "queue",
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
        {
            let mut st = lock(&self.state);
            if st.status.is_ended() {
                return false;
            }
            result.run_id = Some(self.id.clone());
            st.status = RunStatus::of(result.outcome);
            st.ended_at = Some(now_ms());
            st.result = Some(result);
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
        true
    }

    /// The run loop of one session: one run at a time, in order, until the queue is empty.
    async fn drain(&self, session: Arc<Session>) {
        loop {
            let (run, request, epoch) = {
                let mut st = lock(&session.state);
                if st.removed {
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
                    t.start(&next.run.id, &mut out);
                    bytes::Bytes::copy_from_slice(&out)
                });
                st.active = Some(Active {
                    run: next.run.clone(),
                    started: false,
                    abort_requested: false,
                    translator,
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

            let outcome = self.inner.agent.prompt(session.handle, request).await;

            let mut st = lock(&session.state);
            let abort_requested = st.active.as_ref().is_some_and(|a| a.abort_requested);
            let (result, count) = run_result(&session.key, outcome, abort_requested);
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
