//! Session logs as Redis Streams: the mirror writer (owner side), entries to and from Redis,
//! and blocking reads (any node).
//!
//! # The writer
//!
//! [`super::Cluster::mirror`] only queues. One task takes whatever is queued (up to
//! [`MIRROR_BATCH`]) and sends it as one pipeline of `XADD`s, so a burst of events costs one
//! round trip, and entries of one key reach Redis in the order they were logged. Each entry
//! gets the explicit id `<seq>-1`: a reader on another node resumes from the same ids as a
//! reader of the owner. Redis refuses an id not above the stream's top (two nodes wrote the
//! same log in a takeover race): that entry is logged and dropped, not retried.
//!
//! While Redis is known to be down, batches are dropped without trying (the heartbeat finds
//! out when it is back); like a full queue, that is counted and logged once per episode.
//!
//! # Blocking reads
//!
//! `XREAD BLOCK` holds its connection until an entry comes or the time is up, and a
//! multiplexed connection answers in order: one blocking read would stall every command
//! behind it. So each blocking read takes a connection of its own from a pool (at most
//! [`MAX_BLOCKING_READS`] at once, [`MAX_IDLE_BLOCKING`] kept between reads).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::util::lock;

use super::{
    classify, ClusterError, MirrorEntry, Shared, COMMAND_TIMEOUT, CONNECT_TIMEOUT, DOWN,
    MAX_BLOCKING_READS, MAX_IDLE_BLOCKING, MIRROR_BATCH, READ_BLOCKING_COUNT, SHUTDOWN_TIMEOUT,
};

/// The `XADD` of one entry: `XADD <key> MAXLEN ~ <n> <seq>-1 f … [c …] [r …] [e 1] [p …]`.
pub(super) fn xadd(stream_key: &str, max_len: usize, entry: &MirrorEntry) -> Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream_key)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg(format!("{}-1", entry.seq));
    let mut fields = 0;
    if let Some(frame) = &entry.frame {
        cmd.arg("f").arg(frame.as_ref());
        fields += 1;
    }
    if let Some(chat) = &entry.chat {
        cmd.arg("c").arg(chat.as_ref());
        fields += 1;
    }
    if let Some(run) = &entry.run_id {
        cmd.arg("r").arg(run.as_str());
        fields += 1;
    }
    if entry.run_end {
        cmd.arg("e").arg("1");
        fields += 1;
    }
    if entry.pause != 0 {
        cmd.arg("p").arg(entry.pause);
        fields += 1;
    }
    if fields == 0 {
        // A stream entry needs a field; readers skip ones they do not know.
        cmd.arg("_").arg("");
    }
    cmd
}

/// Entries from an `XRANGE`/`XREVRANGE` reply (an array of `[id, [field, value, …]]`), or
/// from an `XREAD` reply (`nil`, or the one stream's `[key, entries]`, as an array or a map).
pub(super) fn parse_entries(value: Value) -> Result<Vec<MirrorEntry>, String> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.into_iter().map(parse_entry).collect(),
        other => Err(format!("expected a list of entries, got {}", kind(&other))),
    }
}

pub(super) fn parse_xread(value: Value) -> Result<Vec<MirrorEntry>, String> {
    let streams: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                    Ok([key, entries]) => Ok((key, entries)),
                    Err(_) => Err("a stream in XREAD's reply is not [key, entries]".to_string()),
                },
                other => Err(format!(
                    "expected [key, entries] in XREAD's reply, got {}",
                    kind(&other)
                )),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("expected XREAD's streams, got {}", kind(&other))),
    };
    let mut out = Vec::new();
    for (_, entries) in streams {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

fn parse_entry(value: Value) -> Result<MirrorEntry, String> {
    let Value::Array(parts) = value else {
        return Err(format!(
            "expected an entry [id, fields], got {}",
            kind(&value)
        ));
    };
    let Ok([id, fields]) = <[Value; 2]>::try_from(parts) else {
        return Err("an entry is not [id, fields]".into());
    };
    let id = text(bytes(id)?, "an entry id")?;
    let seq = id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse::<u64>().ok())
        .ok_or_else(|| format!("entry id {id:?} is not <seq>-<n>"))?;
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            if flat.len() % 2 != 0 {
                return Err(format!("entry {id}: an odd number of field values"));
            }
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(name), Some(value)) = (it.next(), it.next()) {
                pairs.push((name, value));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        Value::Nil => Vec::new(),
        other => return Err(format!("entry {id}: expected fields, got {}", kind(&other))),
    };
    let mut entry = MirrorEntry {
        seq,
        frame: None,
        chat: None,
        run_id: None,
        run_end: false,
        pause: 0,
    };
    for (name, value) in pairs {
        let name = bytes(name)?;
        let value = bytes(value)?;
        match name.as_slice() {
            b"f" => entry.frame = Some(Bytes::from(value)),
            b"c" => entry.chat = Some(Bytes::from(value)),
            b"r" => entry.run_id = Some(text(value, &format!("entry {id}'s run id"))?),
            b"e" => entry.run_end = value == b"1",
            b"p" => {
                entry.pause = text(value, &format!("entry {id}'s pause"))?
                    .parse()
                    .map_err(|_| format!("entry {id}: pause is not a number"))?
            }
            _ => {}
        }
    }
    Ok(entry)
}

fn bytes(value: Value) -> Result<Vec<u8>, String> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        other => Err(format!("expected a string, got {}", kind(&other))),
    }
}

fn text(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

/// A reply's kind, for errors (never its bytes: they may be a conversation).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => "a string",
        Value::Array(_) | Value::Set(_) => "an array",
        Value::Map(_) => "a map",
        Value::ServerError(_) => "an error",
        _ => "another type",
    }
}

/// Writes queued entries until shutdown, then what is still queued (within the shutdown
/// timeout), then says it is done.
pub(super) async fn mirror_task(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<(String, MirrorEntry)>,
) {
    let _done = shared.mirror_done.clone().drop_guard();
    let mut batch = Vec::with_capacity(MIRROR_BATCH);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            n = rx.recv_many(&mut batch, MIRROR_BATCH) => {
                if n == 0 {
                    return;
                }
                write(&shared, &mut batch).await;
            }
        }
    }
    rx.close();
    let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
        while rx.recv_many(&mut batch, MIRROR_BATCH).await > 0 {
            write(&shared, &mut batch).await;
        }
    })
    .await;
}

/// One pipeline of `XADD`s for `batch`, which is left empty.
async fn write(shared: &Shared, batch: &mut Vec<(String, MirrorEntry)>) {
    let n = batch.len();
    if shared.health.load(std::sync::atomic::Ordering::Acquire) == DOWN {
        batch.clear();
        shared.mirror_drop(n, "Redis is unreachable");
        return;
    }
    let max_len = shared.log_len.load(std::sync::atomic::Ordering::Relaxed);
    let mut pipe = redis::pipe();
    for (key, entry) in batch.iter() {
        pipe.add_command(xadd(&shared.key("log", key), max_len, entry));
    }
    let pipe = &pipe;
    let replies = shared
        .run("writing the log mirror", |mut c| async move {
            c.send_packed_commands(pipe, 0, n).await
        })
        .await;
    let replies = match replies {
        Ok(replies) => replies,
        Err(e) => {
            batch.clear();
            shared.mirror_drop(n, &e.to_string());
            return;
        }
    };
    shared.mirror_flowing();
    // Refused entries (an id not above the stream's top, a key of another type): logged
    // once per batch, not retried.
    let mut refused = 0;
    let mut first = None;
    for ((key, entry), reply) in batch.iter().zip(&replies) {
        if let Value::ServerError(e) = reply {
            refused += 1;
            if first.is_none() {
                first = Some(format!(
                    "seq {} of session {key:?}: {} {}",
                    entry.seq,
                    e.code(),
                    e.details().unwrap_or("")
                ));
            }
        }
    }
    batch.clear();
    if let Some(first) = first {
        shared
            .mirror_dropped
            .fetch_add(refused, std::sync::atomic::Ordering::Relaxed);
        (shared.log)(&format!(
            "warning: cluster: Redis refused {refused} log entries, not retried (first: {first}); another node may have written the same log"
        ));
    }
}

/// Connections for blocking reads, and the bound on how many at once.
pub(super) struct BlockingPool {
    idle: std::sync::Mutex<Vec<MultiplexedConnection>>,
    permits: Semaphore,
}

impl BlockingPool {
    pub fn new() -> BlockingPool {
        BlockingPool {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_BLOCKING_READS),
        }
    }

    /// Drops the idle connections.
    pub fn clear(&self) {
        lock(&self.idle).clear();
    }

    fn take(&self) -> Option<MultiplexedConnection> {
        lock(&self.idle).pop()
    }

    fn put_back(&self, conn: MultiplexedConnection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(conn);
        }
    }
}

/// `XREAD BLOCK <ms> COUNT <n> STREAMS <key> <after>-1` on a connection of its own.
pub(super) async fn read_blocking(
    shared: &Shared,
    key: &str,
    after: u64,
    block: Duration,
) -> Result<Vec<MirrorEntry>, ClusterError> {
    // `BLOCK 0` would wait forever.
    let block_ms = block.as_millis().clamp(1, u64::MAX as u128) as u64;
    let Ok(Ok(_permit)) = tokio::time::timeout(block, shared.blocking.permits.acquire()).await
    else {
        return Err(ClusterError::Other(format!(
            "{MAX_BLOCKING_READS} blocking reads are waiting already"
        )));
    };
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("BLOCK")
        .arg(block_ms)
        .arg("COUNT")
        .arg(READ_BLOCKING_COUNT)
        .arg("STREAMS")
        .arg(shared.key("log", key))
        .arg(format!("{after}-1"));
    let bound = Duration::from_millis(block_ms) + COMMAND_TIMEOUT;
    let outcome = tokio::time::timeout(bound, async {
        // A pooled connection may have died with a Redis restart: then one fresh try.
        let mut reused = shared.blocking.take();
        loop {
            let was_reused = reused.is_some();
            let mut conn = match reused.take() {
                Some(conn) => conn,
                None => connect(shared).await?,
            };
            match cmd.query_async::<Value>(&mut conn).await {
                Ok(value) => {
                    shared.blocking.put_back(conn);
                    return Ok(value);
                }
                Err(e) if was_reused && (e.is_io_error() || e.is_unrecoverable_error()) => continue,
                Err(e) => return Err(classify("reading a log (blocking)", &e)),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(ClusterError::Unavailable(format!(
            "reading a log (blocking): no answer from Redis within {} ms",
            bound.as_millis()
        )))
    });
    match outcome {
        Ok(value) => {
            shared.mark_up();
            parse_xread(value).map_err(|why| {
                ClusterError::Other(format!("the log stream of session {key:?}: {why}"))
            })
        }
        Err(e) => {
            if let ClusterError::Unavailable(why) = &e {
                shared.mark_down(why);
            }
            Err(e)
        }
    }
}

async fn connect(shared: &Shared) -> Result<MultiplexedConnection, ClusterError> {
    let client = shared
        .client
        .as_ref()
        .ok_or_else(|| ClusterError::Unavailable("the Redis URL cannot be used".to_string()))?;
    let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| classify("connecting for a blocking read", &e))
}
