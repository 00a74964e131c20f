//! Many gateways on one Redis (SPEC section 15): session leases, each session's event log
//! mirrored to a Redis Stream, run records and idempotency keys. No napi here.
//!
//! # Layout
//!
//! - [`config`] — the `cluster` config object, its defaults and bounds.
//! - `lease`    — the Lua scripts behind claim, renewal and release, and the lease task.
//! - `stream`   — the log mirror's writer, stream entries to and from Redis, blocking reads.
//! - this file  — [`Cluster`], the handle the gateway goes through, connection and health.
//!
//! # Keys (`P` = prefix, `K` = session key as is)
//!
//! - `P{lease}:K` → `"<nodeId> <advertiseUrl>"`, set with a TTL of `leaseMs`.
//! - `P{log}:K` → a Stream, one entry per log entry with id `<seq>-1`, fields `f` frame,
//!   `c` chat, `r` run id, `e` = `1` on a run's last entry, `p` pause number (each absent when
//!   empty), trimmed with `MAXLEN ~ replayEvents`.
//! - `P{run}:<runId>` → a run record's JSON, with a TTL of `runs.retainMs`.
//! - `P{idem}:K:<key>` → `"<fingerprint> <runId>"`, with a TTL of `idempotency.ttlMs`.
//!
//! # Connections
//!
//! Commands go through one [`ConnectionManager`] (one multiplexed TCP connection that
//! reconnects by itself when it breaks). It is made by a background task, so
//! [`Cluster::new`] neither blocks nor fails when Redis is down: until the first connection
//! is up, a command waits for it within its timeout, and once the first attempt failed,
//! commands fail at once until the task (retrying with backoff) succeeds. Every command is
//! bounded by [`COMMAND_TIMEOUT`]. A blocking `XREAD` would stall every command behind it on
//! a multiplexed connection, so blocking reads take connections of their own from a small
//! pool (see `stream`).
//!
//! # Health
//!
//! [`Cluster::healthy`] is false until the first connection, and after any command fails for
//! want of Redis (no connection, a timeout, Redis loading or refusing us); the next command
//! that gets an answer makes it true again. Each change is one log line. A heartbeat (`PING`,
//! or the lease renewals when leases are held) runs every `leaseMs / 3`, so the state is
//! current on an idle node too.
//!
//! # Leases while Redis is down
//!
//! A held lease stays held: the sessions this node runs keep working. Renewal resumes with the
//! connection, and a lease that expired meanwhile is taken again if nobody else took it;
//! if someone did, the key is dropped from the held set and `on_lost` is called.
//!
//! # Shutdown
//!
//! [`Cluster::shutdown`] cancels one token every task selects on. The mirror writer then
//! writes what is still queued (the next owner resumes from it), after which the lease task
//! releases every held lease, all within [`SHUTDOWN_TIMEOUT`]; then the connection is
//! dropped. [`Cluster::stopped`] resolves when that is done.

pub mod config;

mod lease;
mod stream;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, ErrorKind, FromRedisValue, RedisError, RedisResult};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::util::lock;
pub use config::ClusterConfig;

/// How long one command may take: waiting for the connection, sending, the answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Log entries queued for the mirror writer; past it, entries are dropped (and counted).
pub const MIRROR_QUEUE: usize = 65_536;
/// Log entries written in one pipeline.
pub const MIRROR_BATCH: usize = 1024;
/// Entries one blocking read returns at most.
pub const READ_BLOCKING_COUNT: usize = 1000;
/// Blocking reads at once: each holds a connection to Redis while it waits.
pub const MAX_BLOCKING_READS: usize = 256;
/// Idle blocking-read connections kept for the next read.
pub const MAX_IDLE_BLOCKING: usize = 16;
/// Release requests queued for the lease task; past it a lease is left to expire.
pub const RELEASE_QUEUE: usize = 65_536;
/// How long shutdown spends writing the queued log entries and releasing leases.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait before retrying the first connection; it doubles up to the max.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(200);
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(5);

/// The node holding a session's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node_id: String,
    /// Its `advertiseUrl`: `http://host:port`.
    pub url: String,
}

impl Owner {
    /// A lease's value, `"<nodeId> <advertiseUrl>"`.
    fn parse(value: &str) -> Option<Owner> {
        let (node_id, url) = value.split_once(' ')?;
        (!node_id.is_empty() && !url.is_empty()).then(|| Owner {
            node_id: node_id.to_string(),
            url: url.to_string(),
        })
    }
}

/// What [`Cluster::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the lease now (taken, or renewed).
    Ours,
    /// Another node holds it.
    Theirs(Owner),
}

/// One log entry as mirrored to a session's stream (see [`crate::session::log::Entry`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorEntry {
    pub seq: u64,
    /// The whole SSE frame, `id: …\ndata: …\n\n`.
    pub frame: Option<Bytes>,
    pub chat: Option<Bytes>,
    pub run_id: Option<String>,
    pub run_end: bool,
    pub pause: u32,
}

/// Why a cluster operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// Redis cannot be reached (no connection, no answer in time, loading, refusing us), or
    /// the gateway is stopping: the cluster is degraded; a `503`.
    Unavailable(String),
    /// Redis answered, with an error or with data this gateway cannot read.
    Other(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Unavailable(why) | ClusterError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClusterError {}

/// The gateway's view of the cluster: a cheap handle, shared by clones. When the last clone
/// is dropped, the cluster shuts down as [`Cluster::shutdown`] does.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

/// Shuts the tasks down when the last [`Cluster`] handle goes (they hold `Shared`, not this).
struct DropGuard(Arc<Shared>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Where the first connection stands.
#[derive(Clone)]
enum Conn {
    /// The first attempt is under way: commands wait for it (within their timeout).
    Connecting,
    /// The last attempt failed, for this reason; the connect task is retrying.
    Failed(String),
    /// Connected (the manager reconnects by itself from now on).
    Ready(ConnectionManager),
    /// Shut down.
    Closed,
}

/// The log sink, and `on_lost`.
type Callback = Arc<dyn Fn(&str) + Send + Sync>;

const STARTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

struct Shared {
    config: ClusterConfig,
    /// `"<nodeId> <advertiseUrl>"`: the value of every lease this node holds.
    lease_value: String,
    /// `leaseMs`, for `PX`.
    lease_ms: u64,
    log: Callback,
    rt: Handle,
    /// None if the URL cannot be used (config parsing prevents it); every command then fails.
    client: Option<Client>,
    conn: watch::Sender<Conn>,
    /// STARTING, UP or DOWN.
    health: AtomicU8,
    /// The first success was logged (as "connected"; later ones as "reachable again").
    connected_once: AtomicBool,
    scripts: lease::Scripts,
    /// Leases renewed by the lease task.
    held: Mutex<HashSet<String>>,
    on_lost: Mutex<Option<Callback>>,
    releases: mpsc::Sender<String>,
    mirror_tx: mpsc::Sender<(String, MirrorEntry)>,
    /// `MAXLEN ~` of every XADD.
    log_len: AtomicUsize,
    /// Entries dropped by the mirror, in all.
    mirror_dropped: AtomicU64,
    /// Entries dropped in the current episode; `mirror_dropping` while it lasts.
    episode_dropped: AtomicU64,
    mirror_dropping: AtomicBool,
    blocking: stream::BlockingPool,
    stopping: AtomicBool,
    cancel: CancellationToken,
    /// Cancelled when the mirror writer has finished (its last batch written or given up).
    mirror_done: CancellationToken,
    tracker: TaskTracker,
}

impl Cluster {
    /// Starts connecting in the background and returns at once; Redis may be down.
    /// `log_len`: `MAXLEN ~` of the log streams (`events.replayEvents`). `log`: one line per
    /// health change, dropped mirror entries, lost leases.
    pub fn new(
        config: ClusterConfig,
        log_len: usize,
        rt: &Handle,
        log: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Cluster {
        let (client, conn) = match Client::open(config.redis_url.as_str()) {
            Ok(client) => (Some(client), Conn::Connecting),
            Err(e) => (
                None,
                Conn::Failed(format!(
                    "the Redis URL cannot be used: {}",
                    e.detail().unwrap_or("invalid")
                )),
            ),
        };
        let (releases, release_rx) = mpsc::channel(RELEASE_QUEUE);
        let (mirror_tx, mirror_rx) = mpsc::channel(MIRROR_QUEUE);
        let lease_ms = config.lease.as_millis().max(1) as u64;
        let shared = Arc::new(Shared {
            lease_value: format!("{} {}", config.node_id, config.advertise_url),
            lease_ms,
            config,
            log,
            rt: rt.clone(),
            client,
            conn: watch::Sender::new(conn),
            health: AtomicU8::new(STARTING),
            connected_once: AtomicBool::new(false),
            scripts: lease::Scripts::new(),
            held: Mutex::new(HashSet::new()),
            on_lost: Mutex::new(None),
            releases,
            mirror_tx,
            log_len: AtomicUsize::new(log_len.max(1)),
            mirror_dropped: AtomicU64::new(0),
            episode_dropped: AtomicU64::new(0),
            mirror_dropping: AtomicBool::new(false),
            blocking: stream::BlockingPool::new(),
            stopping: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            mirror_done: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        if shared.client.is_some() {
            shared
                .tracker
                .spawn_on(connect_task(shared.clone()), &shared.rt);
        } else if let Conn::Failed(why) = &*shared.conn.borrow() {
            shared.mark_down(why);
        }
        shared
            .tracker
            .spawn_on(lease::lease_task(shared.clone(), release_rx), &shared.rt);
        shared
            .tracker
            .spawn_on(stream::mirror_task(shared.clone(), mirror_rx), &shared.rt);
        Cluster {
            _guard: Arc::new(DropGuard(shared.clone())),
            shared,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.shared.config.node_id
    }

    pub fn advertise_url(&self) -> &str {
        &self.shared.config.advertise_url
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.shared.config
    }

    /// False while Redis is unreachable (degraded), and before the first connection.
    pub fn healthy(&self) -> bool {
        self.shared.health.load(Ordering::Acquire) == UP
    }

    /// Changes `MAXLEN ~` for the entries written from now on.
    pub fn set_log_len(&self, n: usize) {
        self.shared.log_len.store(n.max(1), Ordering::Relaxed);
    }

    /// Log entries the mirror dropped (queue full, Redis down, refused by Redis), in all.
    pub fn mirror_dropped(&self) -> u64 {
        self.shared.mirror_dropped.load(Ordering::Relaxed)
    }

    // ----- leases -----

    /// Takes `key`'s lease if it is free, renews it if it is ours, or names its holder.
    pub async fn claim(&self, key: &str) -> Result<Claim, ClusterError> {
        self.shared.running()?;
        let shared = &self.shared;
        let lease_key = shared.key("lease", key);
        let value: Vec<u8> = shared
            .run("claiming a lease", |mut c| async move {
                shared
                    .scripts
                    .claim
                    .key(&lease_key)
                    .arg(&shared.lease_value)
                    .arg(shared.lease_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if value == shared.lease_value.as_bytes() {
            return Ok(Claim::Ours);
        }
        shared.owner_of(key, &value).map(Claim::Theirs)
    }

    /// Who holds `key`'s lease (this node included), if anyone.
    pub async fn owner(&self, key: &str) -> Result<Option<Owner>, ClusterError> {
        self.shared.running()?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.shared.key("lease", key));
        let value: Option<Vec<u8>> = self.shared.query("reading a lease", &cmd).await?;
        value.map(|v| self.shared.owner_of(key, &v)).transpose()
    }

    /// Keeps `key`'s lease: renewed every `leaseMs / 3` until [`Cluster::release`]; if
    /// another node takes it, the key is dropped and `on_lost` called.
    pub fn hold(&self, key: &str) {
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        lock(&self.shared.held).insert(key.to_string());
    }

    /// Whether `key`'s lease is being held (see [`Cluster::hold`]).
    pub fn holds(&self, key: &str) -> bool {
        lock(&self.shared.held).contains(key)
    }

    /// Stops renewing `key`'s lease and deletes it if it is still ours (in the background).
    pub fn release(&self, key: &str) {
        lock(&self.shared.held).remove(key);
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        // Full: the lease expires by itself within leaseMs.
        let _ = self.shared.releases.try_send(key.to_string());
    }

    /// Called (from the lease task: keep it quick) with each held key another node took.
    pub fn on_lost(&self, f: Arc<dyn Fn(&str) + Send + Sync>) {
        *lock(&self.shared.on_lost) = Some(f);
    }

    // ----- the log mirror -----

    /// Queues `entry` for `key`'s stream; never waits. Dropped (counted, logged once per
    /// episode) when the queue is full or Redis is down.
    pub fn mirror(&self, key: &str, entry: MirrorEntry) {
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match self.shared.mirror_tx.try_send((key.to_string(), entry)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self
                .shared
                .mirror_drop(1, &format!("its queue of {MIRROR_QUEUE} entries is full")),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The highest seq in `key`'s stream; 0 if it has none.
    pub async fn last_seq(&self, key: &str) -> Result<u64, ClusterError> {
        self.shared.running()?;
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.shared.key("log", key))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        self.shared.edge_seq(key, &cmd).await
    }

    /// The oldest seq still in `key`'s stream; 0 if it has none.
    pub async fn first_seq(&self, key: &str) -> Result<u64, ClusterError> {
        self.shared.running()?;
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.shared.key("log", key))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        self.shared.edge_seq(key, &cmd).await
    }

    /// Up to `count` entries of `key`'s stream with a seq above `after`, oldest first.
    pub async fn read_after(
        &self,
        key: &str,
        after: u64,
        count: usize,
    ) -> Result<Vec<MirrorEntry>, ClusterError> {
        self.shared.running()?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.shared.key("log", key))
            .arg(format!("({after}-1"))
            .arg("+")
            .arg("COUNT")
            .arg(count);
        let value: redis::Value = self.shared.query("reading a log", &cmd).await?;
        stream::parse_entries(value).map_err(|why| self.shared.unreadable(key, &why))
    }

    /// Entries of `key`'s stream with a seq above `after` (up to [`READ_BLOCKING_COUNT`]),
    /// waiting up to `block` for the first; empty if none came. On a connection of its own.
    pub async fn read_blocking(
        &self,
        key: &str,
        after: u64,
        block: Duration,
    ) -> Result<Vec<MirrorEntry>, ClusterError> {
        self.shared.running()?;
        stream::read_blocking(&self.shared, key, after, block).await
    }

    // ----- runs and idempotency -----

    /// Stores a run record for `ttl`, in the background.
    pub fn put_run(&self, run_id: &str, record_json: String, ttl: Duration) {
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let shared = self.shared.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(shared.key("run", run_id))
            .arg(record_json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let run_id = run_id.to_string();
        self.shared.tracker.spawn_on(
            async move {
                if let Err(ClusterError::Other(why)) =
                    shared.query::<()>("storing a run record", &cmd).await
                {
                    (shared.log)(&format!(
                        "warning: cluster: run {run_id} not stored in Redis: {why}"
                    ));
                }
            },
            &self.shared.rt,
        );
    }

    /// A run record's JSON, if Redis still has it.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<String>, ClusterError> {
        self.shared.running()?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.shared.key("run", run_id));
        let value: Option<Vec<u8>> = self.shared.query("reading a run record", &cmd).await?;
        value
            .map(|v| {
                String::from_utf8(v).map_err(|_| {
                    ClusterError::Other(format!("run record {run_id:?} in Redis is not UTF-8"))
                })
            })
            .transpose()
    }

    /// Remembers `value` under `key`'s idempotency key `idem` for `ttl`, unless it is taken:
    /// `None` if stored, `Some(existing value)` if another request got there first.
    pub async fn remember_idem(
        &self,
        key: &str,
        idem: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, ClusterError> {
        self.shared.running()?;
        let shared = &self.shared;
        let idem_key = format!("{}:{idem}", shared.key("idem", key));
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let existing: Option<Vec<u8>> = shared
            .run("remembering an idempotency key", |mut c| async move {
                shared
                    .scripts
                    .remember
                    .key(&idem_key)
                    .arg(value)
                    .arg(ttl_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        existing
            .map(|v| {
                String::from_utf8(v).map_err(|_| {
                    ClusterError::Other(format!(
                        "idempotency key {idem:?} of {key:?} holds a value that is not UTF-8"
                    ))
                })
            })
            .transpose()
    }

    /// Sets `key`'s idempotency key `idem` to `value` for `ttl`, whatever it held (the run a
    /// claimed key ended up starting). Fire and forget.
    pub fn set_idem(&self, key: &str, idem: &str, value: String, ttl: Duration) {
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let shared = self.shared.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}:{idem}", shared.key("idem", key)))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.shared.tracker.spawn_on(
            async move {
                if let Err(ClusterError::Other(why)) =
                    shared.query::<()>("storing an idempotency key", &cmd).await
                {
                    (shared.log)(&format!(
                        "warning: cluster: an idempotency key was not stored in Redis: {why}"
                    ));
                }
            },
            &self.shared.rt,
        );
    }

    // ----- shutdown -----

    /// Stops the tasks: the queued log entries are written and the held leases released in
    /// the background, within [`SHUTDOWN_TIMEOUT`] (see [`Cluster::stopped`]). Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Resolves once [`Cluster::shutdown`]'s work is done (at most [`SHUTDOWN_TIMEOUT`] and a
    /// command's timeout after it). Waits forever if shutdown was never called.
    pub async fn stopped(&self) {
        self.shared.tracker.wait().await;
    }
}

impl Shared {
    /// `P{kind}:K`.
    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{{{kind}}}:{key}", self.config.prefix)
    }

    fn running(&self) -> Result<(), ClusterError> {
        if self.stopping.load(Ordering::Acquire) {
            Err(ClusterError::Unavailable("the gateway is stopping".into()))
        } else {
            Ok(())
        }
    }

    fn owner_of(&self, key: &str, value: &[u8]) -> Result<Owner, ClusterError> {
        std::str::from_utf8(value)
            .ok()
            .and_then(Owner::parse)
            .ok_or_else(|| {
                ClusterError::Other(format!(
                    "the lease of session {key:?} holds a value this gateway cannot read (expected \"<nodeId> <url>\")"
                ))
            })
    }

    fn unreadable(&self, key: &str, why: &str) -> ClusterError {
        ClusterError::Other(format!("the log stream of session {key:?}: {why}"))
    }

    async fn edge_seq(&self, key: &str, cmd: &redis::Cmd) -> Result<u64, ClusterError> {
        let value: redis::Value = self.query("reading a log", cmd).await?;
        let entries = stream::parse_entries(value).map_err(|why| self.unreadable(key, &why))?;
        Ok(entries.first().map_or(0, |e| e.seq))
    }

    /// One command, bounded, its outcome feeding the health state.
    async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, ClusterError> {
        self.run(what, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs `op` on the shared connection within [`COMMAND_TIMEOUT`] (waiting for the
    /// connection included); a success marks Redis reachable, a connection failure or a
    /// timeout marks it unreachable.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.manager().await?;
            op(conn).await.map_err(|e| classify(what, &e))
        };
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Unavailable(format!(
                "{what}: no answer from Redis within {} ms",
                COMMAND_TIMEOUT.as_millis()
            ))),
        };
        match &result {
            Ok(_) => self.mark_up(),
            Err(ClusterError::Unavailable(why)) => self.mark_down(why),
            Err(ClusterError::Other(_)) => {}
        }
        result
    }

    /// The shared connection; waits while the first attempt is under way.
    async fn manager(&self) -> Result<ConnectionManager, ClusterError> {
        let mut rx = self.conn.subscribe();
        let state = rx
            .wait_for(|c| !matches!(c, Conn::Connecting))
            .await
            .map(|c| c.clone())
            .unwrap_or(Conn::Closed);
        match state {
            Conn::Ready(m) => Ok(m),
            Conn::Failed(why) => Err(ClusterError::Unavailable(format!(
                "not connected to Redis at {}: {why}",
                self.config.redis_display()
            ))),
            Conn::Connecting | Conn::Closed => {
                Err(ClusterError::Unavailable("the gateway is stopping".into()))
            }
        }
    }

    fn mark_up(&self) {
        let before = self.health.swap(UP, Ordering::AcqRel);
        if !self.connected_once.swap(true, Ordering::AcqRel) {
            (self.log)(&format!(
                "cluster: node {} connected to Redis at {}",
                self.config.node_id,
                self.config.redis_display()
            ));
        } else if before == DOWN {
            (self.log)("cluster: Redis reachable again");
        }
    }

    fn mark_down(&self, why: &str) {
        if self.health.swap(DOWN, Ordering::AcqRel) != DOWN {
            (self.log)(&format!(
                "warning: cluster: Redis unreachable ({why}): degraded"
            ));
        }
    }

    /// Counts `n` dropped mirror entries; the first of an episode is logged.
    fn mirror_drop(&self, n: usize, why: &str) {
        self.mirror_dropped.fetch_add(n as u64, Ordering::Relaxed);
        self.episode_dropped.fetch_add(n as u64, Ordering::Relaxed);
        if !self.mirror_dropping.swap(true, Ordering::AcqRel) {
            (self.log)(&format!(
                "warning: cluster: the log mirror drops entries ({why}); readers on other nodes will miss them"
            ));
        }
    }

    /// A batch went through: ends a dropping episode, saying how many went missing.
    fn mirror_flowing(&self) {
        if self.mirror_dropping.swap(false, Ordering::AcqRel) {
            let n = self.episode_dropped.swap(0, Ordering::Relaxed);
            (self.log)(&format!(
                "cluster: the log mirror writes again ({n} entries dropped)"
            ));
        }
    }

    fn shutdown(self: &Arc<Self>) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        self.tracker.close();
    }
}

/// Whether an error means Redis cannot be used (degraded) or Redis answered with an error.
fn classify(what: &str, e: &RedisError) -> ClusterError {
    let answered = match e.kind() {
        ErrorKind::ResponseError
        | ErrorKind::TypeError
        | ErrorKind::ExecAbortError
        | ErrorKind::NoScriptError
        | ErrorKind::ParseError => true,
        // WRONGTYPE and the like; refusals to let us in are degraded, not answers.
        ErrorKind::ExtensionError => !matches!(
            e.code(),
            Some("NOAUTH" | "NOPERM" | "WRONGPASS" | "MISCONF" | "OOM")
        ),
        _ => false,
    };
    if answered {
        ClusterError::Other(format!("{what}: {e}"))
    } else {
        ClusterError::Unavailable(format!("{what}: {e}"))
    }
}

/// Makes the first connection, retrying with backoff until it succeeds or shutdown.
async fn connect_task(shared: Arc<Shared>) {
    let Some(client) = shared.client.clone() else {
        return;
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT)
        // Reconnection after a break: a few quick tries, then the next command tries again.
        .set_number_of_retries(2)
        .set_factor(100)
        .set_max_delay(1000);
    let mut delay = CONNECT_RETRY_MIN;
    loop {
        // One plain attempt first: the manager's own first connection retries with backoff
        // (seconds), and commands waiting for it would time out meanwhile.
        let attempt = async {
            let probe = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
            drop(
                client
                    .get_multiplexed_async_connection_with_config(&probe)
                    .await?,
            );
            ConnectionManager::new_with_config(client.clone(), config.clone()).await
        };
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT * 3, attempt);
        let outcome = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            outcome = attempt => outcome,
        };
        let why = match outcome {
            Ok(Ok(manager)) => {
                // A ping proves it (and logs the connection).
                shared.conn.send_replace(Conn::Ready(manager));
                let _ = shared.query::<()>("connecting", &redis::cmd("PING")).await;
                return;
            }
            Ok(Err(e)) => format!("connecting: {e}"),
            Err(_) => format!(
                "connecting: no connection within {} ms",
                (CONNECT_TIMEOUT * 3).as_millis()
            ),
        };
        shared.conn.send_replace(Conn::Failed(why.clone()));
        shared.mark_down(&why);
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(CONNECT_RETRY_MAX);
    }
}

#[cfg(test)]
mod tests;
