//! Ending things: abort, cancel, clear, reset, idle eviction and stop. Each answers every run
//! it ends (a result set once, a `run_end` logged), so no waiter is left hanging.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::{LogLevel, Op, Pending};
use crate::error::GatewayError;
use crate::events::{empty_list_json, GatewayEvent};
use crate::util::{lock, now_ms};

use super::registry::Slot;
use super::run::{Run, RunStatus};
use super::{
    append, Gateway, MessageResult, Outcome, QueueCleared, QueueView, Session, State,
    GATEWAY_STOPPED, QUEUE_CLEARED, RUN_CANCELLED, SESSION_RESET,
};

/// How long `stop` waits for outbound webhook deliveries still in flight.
const OUTBOUND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What becomes of a retired session's agent session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retire {
    /// Released, not disposed (the primary, which belongs to its owner).
    Keep,
    /// Disposed.
    Dispose,
    /// Disposed after a new conversation was begun for its key (a reset).
    Fresh,
}

/// How long `DELETE …/runs/:runId` waits for an aborted run to end before answering.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Asks the running prompt to stop. False when nothing is running.
    pub fn abort(&self, key: &str) -> Result<bool, GatewayError> {
        let session = self
            .find(key)
            .ok_or_else(|| GatewayError::SessionNotFound(key.to_string()))?;
        let mut st = lock(&session.state);
        let Some(active) = st.active.as_mut() else {
            return Ok(false);
        };
        active.abort_requested = true;
        // A call waiting for a decision is denied: pi does not look at its abort signal while
        // its hook waits.
        self.deny_approvals(&session, &mut st);
        drop(st);
        self.spawn_abort(&session);
        Ok(true)
    }

    pub(super) fn spawn_abort(&self, session: &Arc<Session>) {
        let this = self.clone();
        let session = session.clone();
        self.inner
            .rt
            .spawn(async move { this.abort_run(&session).await });
    }

    async fn abort_run(&self, session: &Arc<Session>) {
        if let Err(e) = self.inner.agent.abort(session.handle).await {
            let st = lock(&session.state);
            // Tagged with the run it was meant to stop, while that run is still going.
            let run = st
                .active
                .as_ref()
                .map(|a| a.run.clone())
                .filter(|r| !r.status().is_ended());
            append(
                &session.log,
                run.as_deref(),
                Some(&GatewayEvent::Error {
                    session_key: &session.key,
                    error: &e,
                }),
                None,
                false,
            );
        }
    }

    /// Cancels run `run_id` of `key`: a queued run ends `cancelled` at once; a running one is
    /// aborted, and this waits (up to [`CANCEL_WAIT`]) for it to end. Answers the status then.
    pub async fn cancel_run(&self, key: &str, run_id: &str) -> Result<RunStatus, GatewayError> {
        let run = self
            .run(key, run_id)
            .ok_or_else(|| GatewayError::RunNotFound(run_id.to_string()))?;
        self.cancel(&run).await
    }

    /// [`Gateway::cancel_run`] for a run in hand.
    pub async fn cancel(&self, run: &Arc<Run>) -> Result<RunStatus, GatewayError> {
        let status = run.status();
        if status.is_ended() {
            return Err(GatewayError::RunEnded(status.as_str()));
        }
        let key = run.session_key.as_str();
        let cancelled = MessageResult::failure(key, RUN_CANCELLED, Outcome::Dropped);
        // Still waiting for its session to be created?
        {
            let mut reg = lock(&self.inner.registry);
            if let Some(Slot::Creating { pending, .. }) = reg.by_key.get_mut(key) {
                if let Some(i) = pending.iter().position(|q| Arc::ptr_eq(&q.run, run)) {
                    pending.remove(i);
                    drop(reg);
                    let log = self.log_for(key);
                    self.end_run(&log, run, cancelled, None);
                    return Ok(run.status());
                }
            }
        }
        if let Some(session) = self.find(key) {
            let running = {
                let mut st = lock(&session.state);
                if let Some(i) = st.queue.iter().position(|q| Arc::ptr_eq(&q.run, run)) {
                    st.queue.remove(i);
                    self.end_run(&session.log, run, cancelled, None);
                    session.emit_state(&mut st);
                    return Ok(run.status());
                }
                let running = st
                    .active
                    .as_mut()
                    .filter(|a| Arc::ptr_eq(&a.run, run))
                    .map(|a| a.abort_requested = true)
                    .is_some();
                if running {
                    self.deny_approvals(&session, &mut st);
                }
                running
            };
            if running {
                self.spawn_abort(&session);
                let _ = tokio::time::timeout(CANCEL_WAIT, run.wait()).await;
                return Ok(run.status());
            }
        }
        // Between queue and result (or its session went away): it ends on its own.
        let _ = tokio::time::timeout(CANCEL_WAIT, run.wait()).await;
        Ok(run.status())
    }

    /// Drops every queued (not running) message of a session, each answered `Queue cleared`.
    /// False when the session is unknown. pi's own queue is cleared by `index.js` (JS) or
    /// [`Gateway::clear_all_queues`] (HTTP).
    pub fn clear_queue(&self, key: &str) -> bool {
        self.clear_runs(key).is_some()
    }

    /// [`Gateway::clear_queue`], counting the runs it ended.
    fn clear_runs(&self, key: &str) -> Option<usize> {
        self.find(key).map(|session| self.clear_runs_of(&session))
    }

    fn clear_runs_of(&self, session: &Session) -> usize {
        let key = session.key.as_str();
        let mut st = lock(&session.state);
        let queued: Vec<_> = st.queue.drain(..).collect();
        for queued in &queued {
            self.end_run(
                &session.log,
                &queued.run,
                MessageResult::failure(key, QUEUE_CLEARED, Outcome::Dropped),
                None,
            );
        }
        session.emit_state(&mut st);
        queued.len()
    }

    /// `DELETE /sessions/:key/queue`: the gateway's queue, and pi's own pending steering and
    /// follow-up messages (their callers still get the running run's result). pi's
    /// `clearQueue()` sends its own `queue_update` with the emptied lists.
    pub async fn clear_all_queues(&self, key: &str) -> Result<QueueCleared, GatewayError> {
        let session = self
            .find(key)
            .ok_or_else(|| GatewayError::SessionNotFound(key.to_string()))?;
        let cleared = self.clear_runs_of(&session);
        let removed = if session.steerable {
            self.inner
                .agent
                .clear_pending(session.handle)
                .await
                .map_err(GatewayError::Agent)?
        } else {
            Pending {
                steering: empty_list_json(),
                follow_up: empty_list_json(),
            }
        };
        let mut st = lock(&session.state);
        st.steering = empty_list_json();
        st.follow_up = empty_list_json();
        Ok(QueueCleared {
            ok: true,
            cleared,
            steering: removed.steering,
            follow_up: removed.follow_up,
        })
    }

    /// `GET /sessions/:key/queue`: the running run, the queued ones and pi's pending texts.
    pub fn queue(&self, key: &str) -> Option<QueueView> {
        let Some(session) = self.find(key) else {
            // Messages waiting for the session's creation are its queue.
            let pending = self.pending_runs(key)?;
            return Some(QueueView {
                running: None,
                queued: pending.iter().map(|r| r.record()).collect(),
                steering: empty_list_json(),
                follow_up: empty_list_json(),
            });
        };
        let st = lock(&session.state);
        Some(QueueView {
            running: st
                .active
                .as_ref()
                .filter(|a| !a.run.status().is_ended())
                .map(|a| a.run.record()),
            queued: st.queue.iter().map(|q| q.run.record()).collect(),
            steering: st.steering.clone(),
            follow_up: st.follow_up.clone(),
        })
    }

    /// Ends every run still owed a result (queued and running) with `reason`.
    fn drop_pending(&self, session: &Session, st: &mut State, reason: &str) {
        // Decided (denied) before the runs end, so their `approval_resolved` precede `run_end`.
        self.deny_approvals(session, st);
        for queued in st.queue.drain(..).collect::<Vec<_>>() {
            self.end_run(
                &session.log,
                &queued.run,
                MessageResult::failure(&session.key, reason, Outcome::Dropped),
                None,
            );
        }
        if let Some(active) = st.active.as_mut() {
            let translator = active.translator.take();
            let run = active.run.clone();
            self.end_run(
                &session.log,
                &run,
                MessageResult::failure(&session.key, reason, Outcome::Dropped),
                translator,
            );
        }
    }

    /// Resets a session. The primary one is renewed in place and keeps its subscribers;
    /// any other is aborted, disposed and forgotten, and its streams end (its log stays, so a
    /// client that reconnects continues the same ids).
    pub async fn reset(&self, key: &str) -> Result<(), GatewayError> {
        if key == self.inner.primary_key {
            let session = self
                .find(key)
                .ok_or_else(|| GatewayError::SessionNotFound(key.to_string()))?;
            let running = {
                let mut st = lock(&session.state);
                st.epoch += 1;
                st.renewing = true;
                self.drop_pending(&session, &mut st, SESSION_RESET);
                session.emit_state(&mut st);
                st.active.is_some()
            };
            if running {
                self.abort_run(&session).await;
            }
            let renewed = self.inner.agent.renew(session.handle).await;
            let mut st = lock(&session.state);
            // Messages sent meanwhile run now, in the renewed conversation.
            st.renewing = false;
            self.start_draining(&session, &mut st);
            let info = renewed.map_err(GatewayError::Agent)?;
            st.session_id = info.session_id;
            st.message_count = info.message_count;
            // A renewed session starts with pi's queue empty.
            st.steering = empty_list_json();
            st.follow_up = empty_list_json();
            st.last_active_at = now_ms();
            session.emit_state(&mut st);
            return Ok(());
        }

        let session = self
            .withdraw(&mut lock(&self.inner.registry), key, true, true)
            .ok_or_else(|| GatewayError::SessionNotFound(key.to_string()))?;
        self.retire(&session, SESSION_RESET, Retire::Fresh).await;
        self.release_reservation(key);
        Ok(())
    }

    /// Holds `key` while its session is being retired: messages sent meanwhile wait, as they do
    /// while a session is created, so the key's next session never runs beside the old one
    /// (which may still be stopping its prompt, and would write to the same stored conversation).
    pub(super) fn reserve(&self, reg: &mut super::registry::Registry, key: &str) {
        reg.by_key.insert(
            key.to_string(),
            Slot::Creating {
                waiters: Vec::new(),
                pending: Vec::new(),
            },
        );
    }

    /// Ends the hold of [`Gateway::reserve`] once the old session is released: the key is
    /// forgotten, or, when messages came meanwhile, its next session is created for them.
    pub(super) fn release_reservation(&self, key: &str) {
        let mut reg = lock(&self.inner.registry);
        match reg.by_key.get(key) {
            Some(Slot::Creating { waiters, pending })
                if waiters.is_empty() && pending.is_empty() =>
            {
                reg.by_key.remove(key);
            }
            Some(Slot::Creating { .. }) => {
                drop(reg);
                self.spawn_create(key.to_string());
            }
            _ => {}
        }
    }

    /// Ends a session that is already out of the registry: answers what it owed, ends its
    /// streams, aborts its run and releases it in JS.
    pub(super) async fn retire(&self, session: &Arc<Session>, reason: &str, how: Retire) {
        let dispose = how != Retire::Keep;
        let running = {
            let mut st = lock(&session.state);
            st.removed = true;
            self.drop_pending(session, &mut st, reason);
            session.emit_state(&mut st);
            session.log.close_readers();
            st.active.is_some()
        };
        if running {
            self.abort_run(session).await;
        }
        if how == Retire::Fresh {
            // A reset: the key's next session must not continue this conversation.
            if let Err(e) = self
                .inner
                .agent
                .op(Op::Fresh, session.handle, &session.key, "{}".into())
                .await
            {
                if e.status != 501 {
                    self.log_about(
                        LogLevel::Warn,
                        &session.key,
                        &format!(
                            "starting a new conversation for session {} failed: {}",
                            session.key, e.message
                        ),
                    );
                }
            }
        }
        // Bounded: a key held for this retirement must not be held by a JS call that never ends.
        match tokio::time::timeout(
            CANCEL_WAIT,
            self.inner.agent.release(session.handle, dispose),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.log_about(
                LogLevel::Warn,
                &session.key,
                &format!("releasing session {} failed: {e}", session.key),
            ),
            Err(_) => self.log_about(
                LogLevel::Warn,
                &session.key,
                &format!(
                    "releasing session {} did not finish within {} s",
                    session.key,
                    CANCEL_WAIT.as_secs()
                ),
            ),
        }
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
            keys.iter()
                .filter_map(|key| self.withdraw(&mut reg, key, false, false))
                .collect()
        };
        // Disposed all at once: one slow dispose must not hold up the others.
        let tasks: Vec<_> = evicted
            .into_iter()
            .map(|session| {
                let this = self.clone();
                self.inner.rt.spawn(async move {
                    this.dispose_evicted(&session, true).await;
                    session.key.clone()
                })
            })
            .collect();
        let mut keys = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Ok(key) = task.await {
                keys.push(key);
            }
        }
        keys
    }

    /// Runs [`Gateway::evict_idle`] (and forgets runs past their retention) every
    /// `session.sweepIntervalMs` until the task is dropped.
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
            let config = &self.inner.config;
            lock(&self.inner.runs).prune_all(
                now_ms(),
                config.runs_retain_ms,
                config.runs_retain_per_session,
            );
        }
    }

    /// Ends every session: pending messages answered `Gateway stopped`, streams ended, runs
    /// aborted, non-primary sessions disposed, the primary released to its owner.
    pub async fn stop_sessions(&self) {
        let sessions: Vec<Arc<Session>> = {
            let mut reg = lock(&self.inner.registry);
            let mut out = Vec::new();
            let slots: Vec<(String, Slot)> = reg.by_key.drain().collect();
            for (key, slot) in slots {
                match slot {
                    Slot::Ready(s) => {
                        lock(&s.state).removed = true;
                        out.push(s);
                    }
                    Slot::Creating { waiters, pending } => {
                        for w in waiters {
                            let _ = w.send(Err(GatewayError::Stopped));
                        }
                        let log = self.log_in(&mut reg, &key);
                        for queued in pending {
                            self.end_run(
                                &log,
                                &queued.run,
                                MessageResult::failure(&key, GATEWAY_STOPPED, Outcome::Dropped),
                                None,
                            );
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
                let how = if session.key == primary {
                    Retire::Keep
                } else {
                    Retire::Dispose
                };
                self.inner
                    .rt
                    .spawn(async move { this.retire(&session, GATEWAY_STOPPED, how).await })
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
        // The last runs' webhooks get a short grace; what is still pending after it (a
        // receiver that is down, a retry far off) is cancelled and logged.
        let outbound = &self.inner.outbound;
        if outbound.pending() > 0 {
            let grace = OUTBOUND_GRACE.min(self.inner.config.shutdown_timeout);
            outbound.wait_idle(grace).await;
        }
        outbound.shutdown();
        // Leases go back at once: another node may take the sessions without waiting.
        if let Some(cluster) = &self.inner.cluster {
            cluster.shutdown();
            cluster.stopped().await;
        }
    }
}
