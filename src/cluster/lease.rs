//! Leases: who owns a session. Taken with `SET NX PX`, renewed while ours, deleted while
//! ours — each as one Lua script, so the check and the change are one atomic step in Redis.
//!
//! One task per node renews every held lease every `leaseMs / 3` (one script call per
//! [`RENEW_CHUNK`] keys), and deletes released ones. Releases go through the same task on
//! purpose: a renewal that was already under way when a key was released finishes before the
//! key's delete is sent, so a released lease is never brought back by a late renewal.
//!
//! With no lease held, the task pings instead: the health state stays current on an idle node.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::util::lock;

use super::{Shared, SHUTDOWN_TIMEOUT};

/// Leases renewed (or released) by one script call.
pub const RENEW_CHUNK: usize = 256;

/// Takes the lease if it is free, renews it if it is ours; returns its value after.
/// KEYS[1] lease key; ARGV[1] our value, ARGV[2] lease in ms.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
";

/// For each key: 1 if the lease is ours now (renewed, or taken again after it expired while
/// nobody held it), 0 if another node holds it. KEYS lease keys; ARGV as CLAIM.
const RENEW: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == false then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  elseif v == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
";

/// Deletes each lease that is ours; returns how many. KEYS lease keys; ARGV[1] our value.
const RELEASE: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n
";

/// Stores the value unless the key exists; returns nil if stored, else the value there.
/// KEYS[1] key; ARGV[1] value, ARGV[2] ttl in ms.
const REMEMBER: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// The scripts, hashed once. `invoke_async` sends EVALSHA and loads the script when Redis
/// does not know it (after a restart).
pub(super) struct Scripts {
    pub claim: Script,
    pub renew: Script,
    pub release: Script,
    pub remember: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            remember: Script::new(REMEMBER),
        }
    }
}

/// Renews held leases until shutdown, deleting released ones in between; at shutdown, waits
/// for the mirror writer's last batch and releases everything held.
pub(super) async fn lease_task(shared: Arc<Shared>, mut releases: mpsc::Receiver<String>) {
    let period = (shared.config.lease / 3).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(first) = releases.recv() => {
                let mut keys = vec![first];
                while keys.len() < RENEW_CHUNK {
                    match releases.try_recv() {
                        Ok(key) => keys.push(key),
                        Err(_) => break,
                    }
                }
                // Held again since (released, then claimed anew): keep it.
                keys.retain(|k| !lock(&shared.held).contains(k));
                release(&shared, &keys).await;
            }
            _ = tick.tick() => renew(&shared).await,
        }
    }

    // Stopping. The queued log entries go first: whoever takes a session over next reads its
    // log from the stream. Then every lease this node has goes back at once.
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    let _ = tokio::time::timeout_at(deadline, shared.mirror_done.cancelled()).await;
    releases.close();
    let mut keys: Vec<String> = lock(&shared.held).drain().collect();
    while let Ok(key) = releases.try_recv() {
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        let _ = tokio::time::timeout_at(deadline, release(&shared, &keys)).await;
    }
    shared.blocking.clear();
    shared.conn.send_replace(super::Conn::Closed);
}

/// One renewal round over every held lease.
async fn renew(shared: &Arc<Shared>) {
    let keys: Vec<String> = lock(&shared.held).iter().cloned().collect();
    if keys.is_empty() {
        let _ = shared.query::<()>("heartbeat", &redis::cmd("PING")).await;
        return;
    }
    let mut lost = Vec::new();
    for chunk in keys.chunks(RENEW_CHUNK) {
        let mut invocation = shared.scripts.renew.prepare_invoke();
        for key in chunk {
            invocation.key(shared.key("lease", key));
        }
        invocation.arg(&shared.lease_value).arg(shared.lease_ms);
        let flags = shared
            .run("renewing leases", |mut c| async move {
                invocation.invoke_async::<Vec<i64>>(&mut c).await
            })
            .await;
        match flags {
            Ok(flags) => lost.extend(
                chunk
                    .iter()
                    .zip(flags)
                    .filter(|(_, ours)| *ours == 0)
                    .map(|(key, _)| key.clone()),
            ),
            // Redis down (logged by `run`): every lease stays held, to be renewed next round.
            Err(_) => return,
        }
    }
    if lost.is_empty() {
        return;
    }
    let on_lost = lock(&shared.on_lost).clone();
    for key in lost {
        // Released meanwhile: nothing was lost.
        if !lock(&shared.held).remove(&key) {
            continue;
        }
        (shared.log)(&format!(
            "warning: cluster: another node holds the lease of session {key:?} now"
        ));
        if let Some(f) = &on_lost {
            f(&key);
        }
    }
}

/// Deletes the leases of `keys` that are still ours.
async fn release(shared: &Arc<Shared>, keys: &[String]) {
    for chunk in keys.chunks(RENEW_CHUNK) {
        let mut invocation = shared.scripts.release.prepare_invoke();
        for key in chunk {
            invocation.key(shared.key("lease", key));
        }
        invocation.arg(&shared.lease_value);
        // Failed: the leases expire by themselves within leaseMs.
        let released = shared
            .run("releasing leases", |mut c| async move {
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
        if released.is_err() {
            return;
        }
    }
}
