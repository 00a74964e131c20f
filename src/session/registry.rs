//! The registry: keys to sessions (one creation per key), handles to sessions, and each key's
//! event log.
//!
//! A key's log outlives its session: a non-primary session that is reset or evicted leaves
//! its log here ("retired"), and the next session for the key continues it, so ids never
//! restart and a client reconnecting with `Last-Event-ID` learns exactly what it missed.
//! Retired logs are bounded. The log of an evicted session (idle, nobody subscribed) is
//! forgotten at once; the logs of reset sessions keep their frames, at most
//! [`RETIRED_LOG_BYTES`] in all (the oldest emptied first) and [`MAX_RETIRED_LOGS`] of them (the
//! oldest forgotten first). A log made for a key after its last one was forgotten starts its ids
//! above every id a forgotten log reached, so ids still never repeat for a key: the gateway keeps
//! one number for that, not one per key — except while a forgotten log may still be logging (a
//! deleted session answers its runs after it left the registry): the key's next log then takes
//! its ids from the same source.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::agent::{LogLevel, SessionHandle};
use crate::error::GatewayError;
use crate::events::Snapshot;
use crate::util::{lock, now_ms};

use super::log::EventLog;
use super::run::{interrupts_ahead, Mode, Queued, Run};
use super::{Gateway, MessageResult, Outcome, Session, Submitted};

/// Bytes the logs of reset sessions together may hold before the oldest are emptied.
pub const RETIRED_LOG_BYTES: usize = 16 * 1024 * 1024;
/// Logs of reset sessions kept before the oldest are forgotten.
pub const MAX_RETIRED_LOGS: usize = 1_000;

type Waiter = oneshot::Sender<Result<Arc<Session>, GatewayError>>;

pub(super) enum Slot {
    Ready(Arc<Session>),
    /// Being created: who waits for the session, and the messages sent meanwhile, in the
    /// order they were sent (they enter the queue in that order once it exists).
    Creating {
        waiters: Vec<Waiter>,
        pending: Vec<Queued>,
    },
}

#[derive(Default)]
pub(super) struct Registry {
    pub by_key: HashMap<String, Slot>,
    pub by_handle: HashMap<SessionHandle, Arc<Session>>,
    logs: HashMap<String, Arc<EventLog>>,
    /// Logs without a session, oldest first (a key may appear more than once).
    retired: VecDeque<(String, Arc<EventLog>)>,
    /// Those of them that still hold frames (from resets), oldest first.
    retired_full: VecDeque<Arc<EventLog>>,
    /// Every id a forgotten log reached is at most this.
    forgotten_floor: u64,
    /// The id sources of forgotten logs that may still be logging (a deleted session winding
    /// down): the key's next log takes its ids from the same source. One no log uses any more
    /// is folded into `forgotten_floor` ([`Registry::fold_forgotten`]).
    forgotten: HashMap<String, Arc<AtomicU64>>,
}

impl Registry {
    /// Folds the id sources no log uses any more into `forgotten_floor`.
    fn fold_forgotten(&mut self) {
        let floor = &mut self.forgotten_floor;
        self.forgotten.retain(|_, ids| {
            let alive = Arc::strong_count(ids) > 1;
            if !alive {
                *floor = (*floor).max(ids.load(Ordering::Acquire));
            }
            alive
        });
    }
}

impl Gateway {
    /// Makes `log` the log of `key` unless it has one: false when it had.
    pub(super) fn adopt_log(&self, key: &str, log: Arc<EventLog>) -> bool {
        let mut reg = lock(&self.inner.registry);
        if reg.logs.contains_key(key) {
            return false;
        }
        reg.logs.insert(key.to_string(), log);
        true
    }

    /// Ids of `key`'s next log start after `floor` (a session taken over from another node).
    pub(super) fn raise_log_floor(&self, key: &str, floor: u64) {
        let mut reg = lock(&self.inner.registry);
        if reg.logs.contains_key(key) {
            return;
        }
        if let Some(ids) = reg.forgotten.get(key) {
            ids.fetch_max(floor, Ordering::AcqRel);
        }
        reg.forgotten_floor = reg.forgotten_floor.max(floor);
    }

    pub(super) fn find(&self, key: &str) -> Option<Arc<Session>> {
        match lock(&self.inner.registry).by_key.get(key) {
            Some(Slot::Ready(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub(super) fn session_by_handle(&self, handle: SessionHandle) -> Option<Arc<Session>> {
        lock(&self.inner.registry).by_handle.get(&handle).cloned()
    }

    /// The log of `key`, made on first use.
    pub fn log_for(&self, key: &str) -> Arc<EventLog> {
        let mut reg = lock(&self.inner.registry);
        self.log_in(&mut reg, key)
    }

    #[cfg(test)]
    pub(super) fn has_log(&self, key: &str) -> bool {
        lock(&self.inner.registry).logs.contains_key(key)
    }

    /// The log of `key` for reading only: when the key has none any more (its session was
    /// evicted, so all its runs have ended), an empty one that is not registered, so a reader
    /// of an old run does not bring a log back for a key nobody uses.
    pub(super) fn log_to_read(&self, key: &str) -> Arc<EventLog> {
        let reg = lock(&self.inner.registry);
        if let Some(log) = reg.logs.get(key) {
            return log.clone();
        }
        Arc::new(EventLog::new(
            key.to_string(),
            1,
            0,
            reg.forgotten_floor,
            self.inner.hooks.clone(),
        ))
    }

    pub(super) fn log_in(&self, reg: &mut Registry, key: &str) -> Arc<EventLog> {
        if let Some(log) = reg.logs.get(key) {
            return log.clone();
        }
        let config = &self.inner.config;
        let hooks = self.inner.hooks.clone();
        reg.fold_forgotten();
        let log = Arc::new(match reg.forgotten.remove(key) {
            Some(ids) => EventLog::succeeding(
                key.to_string(),
                ids,
                config.replay_events,
                config.replay_bytes,
                hooks,
            ),
            None => EventLog::new(
                key.to_string(),
                config.replay_events,
                config.replay_bytes,
                reg.forgotten_floor,
                hooks,
            ),
        });
        reg.logs.insert(key.to_string(), log.clone());
        log
    }

    /// Marks `key`'s log as having no session: kept with its frames (`keep_frames`, a reset)
    /// within the bounds above, or forgotten (an eviction).
    pub(super) fn retire_log(&self, reg: &mut Registry, key: &str, keep_frames: bool) {
        if !keep_frames {
            reg.fold_forgotten();
            if let Some(log) = reg.logs.remove(key) {
                reg.forgotten_floor = reg.forgotten_floor.max(log.issued());
                reg.forgotten.insert(key.to_string(), log.id_source());
            }
            return;
        }
        let log = self.log_in(reg, key);
        reg.retired.push_back((key.to_string(), log.clone()));
        reg.retired_full.push_back(log);
        // Forget the oldest past the count bound (unless their key has a session again).
        while reg.retired.len() > MAX_RETIRED_LOGS {
            let Some((old, log)) = reg.retired.pop_front() else {
                break;
            };
            let current = reg.logs.get(&old).is_some_and(|l| Arc::ptr_eq(l, &log));
            if current && !reg.by_key.contains_key(&old) {
                reg.logs.remove(&old);
                reg.forgotten_floor = reg.forgotten_floor.max(log.issued());
            }
        }
        // Empty the oldest kept frames past the byte bound.
        reg.retired_full
            .retain(|l| !l.is_empty() && Arc::strong_count(l) > 1);
        let mut total: usize = reg.retired_full.iter().map(|l| l.bytes()).sum();
        while total > RETIRED_LOG_BYTES {
            let Some(log) = reg.retired_full.pop_front() else {
                break;
            };
            total -= log.clear();
        }
    }

    pub fn session_count(&self) -> usize {
        lock(&self.inner.registry)
            .by_key
            .values()
            .filter(|s| matches!(s, Slot::Ready(_)))
            .count()
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

    /// The session for `key`, created on first use. Concurrent first uses share one
    /// creation; a failed or timed-out creation fails them all and leaves nothing behind.
    pub async fn ensure_session(&self, key: &str) -> Result<Arc<Session>, GatewayError> {
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
                    self.make_room(&mut reg)?;
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
        rx.await.unwrap_or_else(|_| {
            Err(GatewayError::Agent(
                "Session creation was abandoned".to_string(),
            ))
        })
    }

    pub(super) fn spawn_create(&self, key: String) {
        let this = self.clone();
        self.inner.rt.spawn(async move { this.create(key).await });
    }

    async fn create(&self, key: String) {
        let handle = self
            .inner
            .next_handle
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let log = self.log_in(&mut reg, &key);
        let result = match created {
            Ok(info) => {
                let session = Arc::new(Session::new(key.clone(), handle, info, log));
                reg.by_key.insert(key.clone(), Slot::Ready(session.clone()));
                reg.by_handle.insert(handle, session.clone());
                {
                    let mut st = lock(&session.state);
                    session.emit_state(&mut st);
                }
                for queued in pending {
                    self.push(&session, queued, false);
                }
                self.inner.hooks.session_created(&key);
                Ok(session)
            }
            Err(error) => {
                for queued in pending {
                    self.end_run(
                        &log,
                        &queued.run,
                        MessageResult::failure(&key, error.clone(), Outcome::Failed),
                        None,
                    );
                }
                self.retire_log(&mut reg, &key, true);
                Err(GatewayError::Agent(error))
            }
        };
        drop(reg);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Puts a run in its session's queue (or with the messages waiting for the session to
    /// exist), starting the creation on first use. A full queue refuses it.
    pub(super) fn enqueue(
        &self,
        key: &str,
        queued: Queued,
        mode: Mode,
        chat: bool,
    ) -> Result<Submitted, GatewayError> {
        let max = self.inner.config.max_queue;
        let run = queued.run.clone();
        let mut reg = lock(&self.inner.registry);
        match reg.by_key.get_mut(key) {
            // A session in the registry is never `removed`: removal takes it out first,
            // under this same lock.
            Some(Slot::Ready(session)) => {
                let session = session.clone();
                return self.place(&session, queued, mode, chat);
            }
            Some(Slot::Creating { pending, .. }) => {
                // Nothing runs before the session exists: only `reject` and `interrupt` care
                // about the messages already waiting.
                if mode == Mode::Reject {
                    if let Some(first) = pending.first() {
                        return Err(GatewayError::SessionBusy(first.run.id.clone()));
                    }
                }
                // The first pending message runs as soon as the session exists.
                if pending.len() > max {
                    return Err(GatewayError::QueueFull(max));
                }
                lock(&self.inner.runs).insert(queued.run.clone());
                if mode == Mode::Interrupt {
                    let at = interrupts_ahead(pending.iter().map(|q| &q.run));
                    pending.insert(at, queued);
                } else {
                    pending.push(queued);
                }
                // A key held while its deleted session is retired has no log yet: the run is
                // read from the one it will be logged in.
                self.log_in(&mut reg, key);
            }
            None => {
                self.make_room(&mut reg)?;
                lock(&self.inner.runs).insert(queued.run.clone());
                reg.by_key.insert(
                    key.to_string(),
                    Slot::Creating {
                        waiters: Vec::new(),
                        pending: vec![queued],
                    },
                );
                // The log exists from the first message on, so a run can be read at once.
                self.log_in(&mut reg, key);
                self.spawn_create(key.to_string());
            }
        }
        Ok(Submitted::New(run))
    }

    /// Makes room for one more session under `session.maxSessions`: at the cap, the least
    /// recently active idle non-primary session is evicted (disposed in the background, its
    /// log forgotten, as the idle sweep does); with none idle, [`GatewayError::TooManySessions`].
    fn make_room(&self, reg: &mut Registry) -> Result<(), GatewayError> {
        if reg.by_key.len() < self.inner.config.max_sessions {
            return Ok(());
        }
        let oldest = reg
            .by_key
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Ready(s) if *key != self.inner.primary_key => Some((s.idle_since()?, key)),
                _ => None,
            })
            .min()
            .map(|(_, key)| key.clone());
        let session = oldest
            .and_then(|key| self.withdraw(reg, &key, false, false))
            .ok_or(GatewayError::TooManySessions)?;
        let this = self.clone();
        self.inner
            .rt
            .spawn(async move { this.dispose_evicted(&session, false).await });
        Ok(())
    }

    /// Takes the ready session of `key` out of the registry: marked `removed`, its handle
    /// forgotten, its log retired (`keep_frames`: kept for a reconnect, as after a reset). With
    /// `hold`, the key stays held ([`Gateway::reserve`]) until the caller releases it.
    pub(super) fn withdraw(
        &self,
        reg: &mut Registry,
        key: &str,
        hold: bool,
        keep_frames: bool,
    ) -> Option<Arc<Session>> {
        let Some(Slot::Ready(session)) = reg.by_key.get(key) else {
            return None;
        };
        let session = session.clone();
        if hold {
            self.reserve(reg, key);
        } else {
            reg.by_key.remove(key);
            // Gone from this node: another may take the key.
            if let Some(cluster) = &self.inner.cluster {
                cluster.release(key);
            }
        }
        reg.by_handle.remove(&session.handle);
        lock(&session.state).removed = true;
        self.retire_log(reg, key, keep_frames);
        Some(session)
    }

    /// Disposes an evicted session and says so in the log: evicted by the idle sweep, or
    /// (`idle` false) to make room under `session.maxSessions`.
    pub(super) async fn dispose_evicted(&self, session: &Session, idle: bool) {
        if let Err(e) = self.inner.agent.release(session.handle, true).await {
            self.log_about(
                LogLevel::Warn,
                &session.key,
                &format!("disposing session {} failed: {e}", session.key),
            );
        }
        let message = if idle {
            format!("evicted idle session {}", session.key)
        } else {
            format!(
                "evicted session {} (session.maxSessions reached)",
                session.key
            )
        };
        self.log_about(LogLevel::Info, &session.key, &message);
        self.inner.hooks.session_evicted(&session.key);
    }

    /// Whether a session for `key` is in memory or being created.
    pub(super) fn is_known(&self, key: &str) -> bool {
        lock(&self.inner.registry).by_key.contains_key(key)
    }

    /// The queued runs of a session still being created (`None`: no such slot).
    pub(super) fn pending_runs(&self, key: &str) -> Option<Vec<Arc<Run>>> {
        match lock(&self.inner.registry).by_key.get(key) {
            Some(Slot::Creating { pending, .. }) => {
                Some(pending.iter().map(|q| q.run.clone()).collect())
            }
            _ => None,
        }
    }
}
