//! Where a session lives when several gateways share Redis (SPEC section 15): placing a key
//! on this node or another, the log mirror, and replicas of other nodes' logs.
//!
//! A key is served here when its session is in this node's registry, or when this node wins
//! (or already holds) its lease. Otherwise the request goes to the owner, except an event
//! stream: that is read from the owner's log as mirrored in Redis, through a replica
//! [`EventLog`] per key that every local reader shares, so `Last-Event-ID` works across nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::{Claim, Cluster, MirrorEntry, Owner};
use crate::error::GatewayError;
use crate::events::{Frame, GatewayEvent, Snapshot};
use crate::util::lock;

use super::hooks::Hooks;
use super::log::{Entry, EventLog, Filter};
use super::run::Run;
use super::{Gateway, Subscription};

/// How a request for a key is served.
pub enum Placement {
    /// Here: the session is (or will be) in this node's registry.
    Local,
    /// On another node, which holds the key's lease.
    Remote(Owner),
    /// Not now: the cluster's Redis is unreachable, or a forwarded request met a node that
    /// does not own the key. The message of a `503`.
    Unavailable(String),
}

/// Replicas a node keeps at once (each follows its stream with a blocking read of its own,
/// and the cluster client allows as many): past it, `/events` for one more session owned
/// elsewhere answers `503`.
pub const MAX_REPLICAS: usize = crate::cluster::MAX_BLOCKING_READS;

/// How long a replica with no reader keeps following the stream before it is dropped.
const REPLICA_GRACE: Duration = Duration::from_secs(10);
/// How long one blocking read of the stream waits.
const REPLICA_BLOCK: Duration = Duration::from_secs(5);
/// How long a resuming reader waits for the stream to reach its `Last-Event-ID`.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The replicas of other nodes' logs on this node, by key.
#[derive(Default)]
pub struct Replicas {
    by_key: HashMap<String, Weak<EventLog>>,
}

/// Mirrors every log entry and ended run of this node's sessions into Redis.
pub struct Mirror {
    pub cluster: Cluster,
    pub runs_retain: Duration,
    pub primary_key: String,
}

impl Hooks for Mirror {
    fn entry_logged(&self, key: &str, entry: &Entry, run_id: Option<&str>) {
        // Each node has its own primary session: its log stays on the node.
        if key == self.primary_key {
            return;
        }
        self.cluster.mirror(
            key,
            MirrorEntry {
                seq: entry.seq,
                frame: entry.frame.as_ref().map(Frame::sse),
                chat: entry.chat.clone(),
                run_id: run_id.map(str::to_string),
                run_end: entry.run_end,
                pause: entry.pause,
            },
        );
    }

    fn run_ended(&self, run: &Run) {
        if let Ok(json) = serde_json::to_string(&run.record()) {
            self.cluster.put_run(&run.id, json, self.runs_retain);
        }
    }
}

impl Gateway {
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// Where a request for `key` is served. `hop`: the request was forwarded by another node
    /// (which found this one holding the lease), so it is not forwarded again.
    pub async fn placement(&self, key: &str, hop: bool) -> Placement {
        let Some(cluster) = self.cluster() else {
            return Placement::Local;
        };
        // The primary session is each node's own (the CLI's, the host's): never leased or moved.
        if self.is_known(key) || key == self.inner.primary_key {
            return Placement::Local;
        }
        if !cluster.healthy() {
            return Placement::Unavailable(
                "Cluster unavailable: Redis cannot be reached, and this session is not on this node"
                    .into(),
            );
        }
        match cluster.claim(key).await {
            Ok(Claim::Ours) => {
                self.take_over_log(cluster, key).await;
                cluster.hold(key);
                Placement::Local
            }
            Ok(Claim::Theirs(owner)) if hop => Placement::Unavailable(format!(
                "Session {key:?} moved: node {} holds it now; try again",
                owner.node_id
            )),
            Ok(Claim::Theirs(owner)) => Placement::Remote(owner),
            Err(e) => Placement::Unavailable(format!("Cluster unavailable: {e}")),
        }
    }

    /// A session this node takes over goes on from its last owner's log: the entries still in
    /// its stream become this node's log (so `Last-Event-ID` from before the move still
    /// resumes), and new ids follow the old ones.
    async fn take_over_log(&self, cluster: &Cluster, key: &str) {
        let config = self.config();
        match cluster.read_after(key, 0, config.replay_events).await {
            Ok(entries) if !entries.is_empty() => {
                let floor = entries[0].seq.saturating_sub(1);
                let log = Arc::new(EventLog::new(
                    key.to_string(),
                    config.replay_events,
                    config.replay_bytes,
                    floor,
                    self.inner.hooks.clone(),
                ));
                let mut runs = RunNumbers::default();
                let last = entries.last().map_or(floor, |e| e.seq);
                for entry in entries {
                    append_mirrored(&log, entry, &mut runs);
                }
                if !self.adopt_log(key, log) {
                    self.raise_log_floor(key, last);
                }
            }
            Ok(_) => {
                if let Ok(last) = cluster.last_seq(key).await {
                    self.raise_log_floor(key, last);
                }
            }
            Err(_) => {}
        }
    }

    /// A session whose lease another node took: it leaves this node (its stored conversation
    /// stays, for the new owner).
    pub(super) fn lease_lost(&self, key: &str) {
        let removed = self.withdraw(&mut lock(&self.inner.registry), key, false, false);
        if let Some(session) = removed {
            self.log(&format!(
                "warning: cluster: another node took over session {key:?}; it leaves this node"
            ));
            let this = self.clone();
            self.inner.rt.spawn(async move {
                this.retire(
                    &session,
                    "Session taken over by another gateway",
                    super::lifecycle::Retire::Dispose,
                )
                .await;
            });
        }
    }

    /// `GET /sessions/:key/events` on a node that does not own `key`: the owner's events, read
    /// from its log in Redis. `owner` is asked for the snapshot `hello` carries.
    pub async fn subscribe_replica(
        &self,
        key: &str,
        after: Option<u64>,
        lag_limit: usize,
        owner: &Owner,
    ) -> Result<Subscription, GatewayError> {
        let log = self.replica(key).await?;
        if let Some(after) = after {
            // The mirror trails the owner by a write: give it a moment to reach `after`.
            let deadline = tokio::time::Instant::now() + CATCH_UP;
            while log.last_seq() < after && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let resume = match after {
            Some(after) => log.resume_after(after),
            None => log.live(),
        };
        let snapshot = self
            .owner_snapshot(key, owner)
            .await
            .unwrap_or_else(|| Snapshot::empty(key));
        let hello = Frame::encode(
            resume.seen,
            &GatewayEvent::Hello {
                session_key: key,
                snapshot: &snapshot,
                missed: resume.missed,
            },
            None,
        );
        let cursor = log.cursor(resume.pos, Filter::Frames, lag_limit, true);
        Ok(Subscription {
            hello,
            seen: resume.seen,
            cursor,
        })
    }

    /// The replica of `key`'s log, filled from Redis and following it.
    async fn replica(&self, key: &str) -> Result<Arc<EventLog>, GatewayError> {
        let unavailable = |e: crate::cluster::ClusterError| {
            GatewayError::Unavailable(format!("Cluster unavailable: {e}"))
        };
        if let Some(log) = lock(&self.inner.replicas)
            .by_key
            .get(key)
            .and_then(Weak::upgrade)
        {
            return Ok(log);
        }
        let cluster = self.cluster().ok_or_else(|| {
            GatewayError::Unavailable("This gateway is not part of a cluster".into())
        })?;
        let config = self.config();
        let entries = cluster
            .read_after(key, 0, config.replay_events)
            .await
            .map_err(unavailable)?;
        let floor = match entries.first() {
            Some(first) => first.seq.saturating_sub(1),
            None => cluster.last_seq(key).await.map_err(unavailable)?,
        };
        let log = {
            let mut replicas = lock(&self.inner.replicas);
            // Another reader may have made it meanwhile.
            if let Some(log) = replicas.by_key.get(key).and_then(Weak::upgrade) {
                return Ok(log);
            }
            replicas.by_key.retain(|_, log| log.strong_count() > 0);
            if replicas.by_key.len() >= MAX_REPLICAS {
                return Err(GatewayError::Unavailable(format!(
                    "Too many sessions of other nodes followed here ({MAX_REPLICAS}): connect to the session's own node, or try again later"
                )));
            }
            let log = Arc::new(EventLog::new(
                key.to_string(),
                config.replay_events,
                config.replay_bytes,
                floor,
                self.inner.metrics.clone() as Arc<dyn Hooks>,
            ));
            replicas
                .by_key
                .insert(key.to_string(), Arc::downgrade(&log));
            log
        };
        let mut runs = RunNumbers::default();
        for entry in entries {
            append_mirrored(&log, entry, &mut runs);
        }
        let this = self.clone();
        let follower = log.clone();
        let key = key.to_string();
        self.inner
            .rt
            .spawn(async move { this.follow(key, follower, runs).await });
        Ok(log)
    }

    /// Keeps a replica up with the stream while anyone reads it (and a grace period after).
    async fn follow(self, key: String, log: Arc<EventLog>, mut runs: RunNumbers) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            // Only this task holds it: nobody reads it.
            if Arc::strong_count(&log) == 1 {
                let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= REPLICA_GRACE {
                    break;
                }
            } else {
                idle_since = None;
            }
            match cluster
                .read_blocking(&key, log.issued(), REPLICA_BLOCK)
                .await
            {
                Ok(entries) => {
                    for entry in entries {
                        append_mirrored(&log, entry, &mut runs);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        let mut replicas = lock(&self.inner.replicas);
        if replicas
            .by_key
            .get(&key)
            .is_some_and(|w| w.as_ptr() == Arc::as_ptr(&log))
        {
            replicas.by_key.remove(&key);
        }
    }

    /// The owner's snapshot of `key`, for a replica's `hello`; `None` if it cannot be had.
    async fn owner_snapshot(&self, key: &str, owner: &Owner) -> Option<Snapshot> {
        let cluster = self.cluster()?;
        let body = super::super::http::proxy::get_json(
            &owner.url,
            &format!("/sessions/{}", crate::util::encode_segment(key)),
            self.config().bearer_token.as_deref(),
            cluster.node_id(),
        )
        .await?;
        #[derive(serde::Deserialize)]
        struct One {
            session: Snapshot,
        }
        serde_json::from_slice::<One>(&body)
            .ok()
            .map(|one| one.session)
    }
}

/// Local numbers for the run ids a replica sees (run filters match numbers).
#[derive(Default)]
struct RunNumbers {
    by_id: HashMap<String, u64>,
}

impl RunNumbers {
    fn of(&mut self, id: &str) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1 << 40);
        // Looked up first: most entries belong to a run already seen, and need no new key.
        if let Some(&no) = self.by_id.get(id) {
            return no;
        }
        let no = NEXT.fetch_add(1, Ordering::Relaxed);
        self.by_id.insert(id.to_string(), no);
        no
    }
}

fn append_mirrored(log: &EventLog, entry: MirrorEntry, runs: &mut RunNumbers) {
    let run = entry.run_id.as_deref().map_or(0, |id| runs.of(id));
    let frame = entry.frame.and_then(Frame::from_sse);
    let chat: Option<Bytes> = entry.chat;
    log.append_at(entry.seq, |seq| Entry {
        seq,
        run,
        frame,
        chat,
        run_end: entry.run_end,
        pause: entry.pause,
    });
}
