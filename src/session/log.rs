//! The bounded per-session event log, and the cursors every reader follows through it.
//!
//! Each event a session emits is encoded once into an [`Entry`] and appended here. Readers —
//! `/events` subscribers, JS listeners, run streams, chat streams — never get a copy pushed
//! to them: each holds a [`Cursor`], an absolute position in the log, and copies out the
//! shared bytes when it is polled. So a reader costs its position, not a buffer, and a
//! reader that reconnects with `Last-Event-ID` starts again from a position in the same log.
//!
//! The log keeps at most `events.replayEvents` entries and `events.replayBytes` bytes, the
//! oldest dropped first. A reader more than its lag limit (`sse.bufferEvents`) behind the
//! head is ended, as a subscriber whose buffer filled was before.
//!
//! Ids (`seq`) are counted per log, and a key keeps its log across resets and evictions (see
//! the registry), so they increase strictly and never repeat for a key within the process.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::events::Frame;
use crate::util::lock;

use super::hooks::Hooks;

/// Bookkeeping counted against `events.replayBytes` for each entry, besides its bytes.
const ENTRY_OVERHEAD: usize = 64;

/// One event as logged: the public SSE frame (absent for chat-only detail) and, for a run
/// started from `/chat`, the UI message chunks it became.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// The run that caused it (its number, see [`super::run::Run::no`]); 0 for none.
    pub run: u64,
    pub frame: Option<Frame>,
    pub chat: Option<Bytes>,
    /// The last entry of its run (`run_end`, and the chat stream's closing chunks).
    pub run_end: bool,
    /// Non-zero: the last approval request of a batch (its number in the run). A chat stream
    /// that reads it while those approvals are still pending ends there (see [`Cursor::pause_on`]).
    pub pause: u32,
}

impl Entry {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + self.frame.as_ref().map_or(0, Frame::len)
            + self.chat.as_ref().map_or(0, Bytes::len)
    }
}

/// What a cursor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every public frame (`/events`, `addSubscriber`).
    Frames,
    /// The public frames of one run; ends after its `run_end`.
    Run(u64),
    /// The chat chunks of one run; ends after its closing chunks.
    Chat(u64),
}

/// Why a cursor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Fell more than its lag limit behind, or behind the oldest entry kept.
    Behind,
    /// The session ended (reset, eviction, stop) and everything before that was read.
    Closed,
    /// The run it follows ended.
    RunEnded,
    /// The run it follows waits for approvals (a chat stream's pause).
    Paused,
}

/// What a poll of a cursor produced (entries were handed to the visitor first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    Done(End),
}

struct Reader {
    pos: u64,
    lag_limit: u64,
    waker: Option<Waker>,
    /// Set when the reader must stop: at once (`Behind`), or once it reaches this position.
    end: Option<(End, u64)>,
    counted: bool,
}

struct State {
    entries: VecDeque<Entry>,
    /// Absolute position of `entries[0]`.
    base: u64,
    bytes: usize,
    /// Every id of this key up to here is gone from the log (or came before it existed).
    dropped_upto: u64,
    /// The newest id logged (or `dropped_upto` when nothing newer was).
    last_seq: u64,
    readers: HashMap<u64, Reader>,
    next_reader: u64,
    /// Readers that count as subscribers (they keep a session from idle eviction).
    subscribers: usize,
}

pub struct EventLog {
    key: String,
    /// Ids up to here came before this log (other logs of the key, since forgotten).
    floor: u64,
    /// Where ids come from: the last one issued. Shared with the key's previous log while
    /// that one is still alive (a deleted session winding down still logs its last events),
    /// so the two never issue the same id.
    ids: Arc<AtomicU64>,
    max_entries: usize,
    max_bytes: usize,
    hooks: Arc<dyn Hooks>,
    state: Mutex<State>,
}

/// Where a reader asked to resume from lands in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub pos: u64,
    /// Events after the asked-for id were dropped, or the id was never issued.
    pub missed: bool,
    /// The id a reader placed at `pos` has seen everything up to: what its `hello` carries.
    pub seen: u64,
}

impl EventLog {
    /// An empty log whose ids start after `floor`.
    pub fn new(
        key: String,
        max_entries: usize,
        max_bytes: usize,
        floor: u64,
        hooks: Arc<dyn Hooks>,
    ) -> EventLog {
        EventLog::with_ids(
            key,
            max_entries,
            max_bytes,
            floor,
            Arc::new(AtomicU64::new(floor)),
            hooks,
        )
    }

    /// A log for `key` that takes its ids from `ids`, the source of the key's previous log
    /// ([`EventLog::id_source`]): the two never issue the same id, whichever logs last.
    pub fn succeeding(
        key: String,
        ids: Arc<AtomicU64>,
        max_entries: usize,
        max_bytes: usize,
        hooks: Arc<dyn Hooks>,
    ) -> EventLog {
        let floor = ids.load(Ordering::Acquire);
        EventLog::with_ids(key, max_entries, max_bytes, floor, ids, hooks)
    }

    /// Where this log's ids come from, for the key's next log.
    pub fn id_source(&self) -> Arc<AtomicU64> {
        self.ids.clone()
    }

    fn with_ids(
        key: String,
        max_entries: usize,
        max_bytes: usize,
        floor: u64,
        ids: Arc<AtomicU64>,
        hooks: Arc<dyn Hooks>,
    ) -> EventLog {
        EventLog {
            key,
            floor,
            ids,
            max_entries: max_entries.max(1),
            max_bytes,
            hooks,
            state: Mutex::new(State {
                entries: VecDeque::new(),
                base: 0,
                bytes: 0,
                dropped_upto: floor,
                last_seq: floor,
                readers: HashMap::new(),
                next_reader: 1,
                subscribers: 0,
            }),
        }
    }

    pub fn hooks(&self) -> &Arc<dyn Hooks> {
        &self.hooks
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends the entry `make` builds for the next id, drops what falls out of the bounds,
    /// ends readers that fell too far behind and wakes every reader.
    pub fn append(&self, make: impl FnOnce(u64) -> Entry) -> u64 {
        self.append_with(None, make).unwrap_or(0)
    }

    /// Appends the entry another node logged as `seq` (a replica of its log, read from the
    /// cluster's stream). `None` when `seq` is not past what this log holds: a repeat.
    pub fn append_at(&self, seq: u64, make: impl FnOnce(u64) -> Entry) -> Option<u64> {
        self.append_with(Some(seq), make)
    }

    fn append_with(&self, at: Option<u64>, make: impl FnOnce(u64) -> Entry) -> Option<u64> {
        let mut wake = Vec::new();
        let seq = {
            let mut st = lock(&self.state);
            if let Some(seq) = at {
                if seq <= self.ids.load(Ordering::Acquire) {
                    return None;
                }
                self.ids.store(seq - 1, Ordering::Release);
            }
            // Under this log's lock, so its entries keep the order of their ids.
            let seq = self.ids.fetch_add(1, Ordering::AcqRel) + 1;
            let entry = make(seq);
            st.bytes += entry.cost();
            st.last_seq = seq;
            st.entries.push_back(entry);
            while st.entries.len() > self.max_entries
                || (st.bytes > self.max_bytes && st.entries.len() > 1)
            {
                let Some(old) = st.entries.pop_front() else {
                    break;
                };
                st.base += 1;
                st.bytes -= old.cost();
                st.dropped_upto = old.seq;
            }
            let head = st.base + st.entries.len() as u64;
            let base = st.base;
            for reader in st.readers.values_mut() {
                if reader.end.is_none()
                    && (head - reader.pos.min(head) > reader.lag_limit || reader.pos < base)
                {
                    reader.end = Some((End::Behind, reader.pos));
                }
                if let Some(w) = reader.waker.take() {
                    wake.push(w);
                }
            }
            seq
        };
        for w in wake {
            w.wake();
        }
        Some(seq)
    }

    /// Ends every reader once it has read what is logged now (a reset or eviction of the
    /// session: its streams end, as the seed's did).
    pub fn close_readers(&self) {
        let mut wake = Vec::new();
        {
            let mut st = lock(&self.state);
            let head = st.base + st.entries.len() as u64;
            for reader in st.readers.values_mut() {
                if reader.end.is_none() {
                    reader.end = Some((End::Closed, head));
                }
                if let Some(w) = reader.waker.take() {
                    wake.push(w);
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }

    /// Drops every entry (a retired log over the retention budget); ids stay where they were.
    pub fn clear(&self) -> usize {
        let mut st = lock(&self.state);
        let freed = st.bytes;
        st.base += st.entries.len() as u64;
        st.entries = VecDeque::new();
        st.bytes = 0;
        st.dropped_upto = st.last_seq;
        freed
    }

    /// The last id issued for this log's key by it or a log it shares its ids with.
    pub fn issued(&self) -> u64 {
        self.ids.load(Ordering::Acquire)
    }

    /// The newest id logged: what `hello` carries as its `id:`.
    pub fn last_seq(&self) -> u64 {
        lock(&self.state).last_seq
    }

    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Readers that count as subscribers of the session.
    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribers
    }

    /// The position just past the newest entry: a reader placed here gets only what comes.
    pub fn head(&self) -> u64 {
        let st = lock(&self.state);
        st.base + st.entries.len() as u64
    }

    /// Where a new reader that wants only what comes next starts.
    pub fn live(&self) -> Resume {
        let st = lock(&self.state);
        Resume {
            pos: st.base + st.entries.len() as u64,
            missed: false,
            seen: st.last_seq,
        }
    }

    /// Where a reader that has seen every id up to `after` resumes. An id this log never
    /// issued, or one whose successors were dropped, is `missed`: the reader gets what is left.
    pub fn resume_after(&self, after: u64) -> Resume {
        let st = lock(&self.state);
        let head = st.base + st.entries.len() as u64;
        // `after = 0` asks for everything: it misses something only if this log dropped some.
        let everything = after == 0 && st.dropped_upto == self.floor;
        if after > st.last_seq || (after < st.dropped_upto && !everything) {
            return Resume {
                pos: st.base,
                missed: true,
                seen: st.dropped_upto,
            };
        }
        let skip = st.entries.partition_point(|e| e.seq <= after);
        Resume {
            pos: (st.base + skip as u64).min(head),
            missed: false,
            seen: after,
        }
    }

    /// Where run `run` starts in the log, or `None` when its first entry is no longer kept
    /// (or it has none yet). `after` skips the entries up to that id.
    pub fn run_start(&self, run: u64, after: Option<u64>) -> Option<u64> {
        let st = lock(&self.state);
        let first = st.entries.iter().position(|e| e.run == run)?;
        let mut pos = first;
        if let Some(after) = after {
            pos = pos.max(st.entries.partition_point(|e| e.seq <= after));
        }
        Some(st.base + pos as u64)
    }

    /// The id of the first entry of run `run` still in the log.
    pub fn first_seq_of(&self, run: u64) -> Option<u64> {
        let st = lock(&self.state);
        st.entries.iter().find(|e| e.run == run).map(|e| e.seq)
    }

    /// The position and id of the first entry of run `run` still in the log; else the head
    /// (where whatever the run logs next will be). One look, under one lock.
    pub fn run_position(&self, run: u64) -> Result<(u64, u64), u64> {
        let st = lock(&self.state);
        match st.entries.iter().position(|e| e.run == run) {
            Some(i) => Ok((st.base + i as u64, st.entries[i].seq)),
            None => Err(st.base + st.entries.len() as u64),
        }
    }

    /// Whether any entry of run `run` is still in the log.
    pub fn has_run(&self, run: u64) -> bool {
        self.first_seq_of(run).is_some()
    }

    /// A cursor at absolute position `pos`. `lag_limit` bounds how far behind the head it may
    /// fall before it is ended; `subscriber` makes it count as a subscriber of the session.
    pub fn cursor(
        self: &Arc<Self>,
        pos: u64,
        filter: Filter,
        lag_limit: usize,
        subscriber: bool,
    ) -> Cursor {
        let mut st = lock(&self.state);
        let id = st.next_reader;
        st.next_reader += 1;
        st.readers.insert(
            id,
            Reader {
                pos,
                lag_limit: lag_limit as u64,
                waker: None,
                end: None,
                counted: subscriber,
            },
        );
        if subscriber {
            st.subscribers += 1;
        }
        drop(st);
        if subscriber {
            self.hooks.subscriber_added(&self.key);
        }
        Cursor {
            log: self.clone(),
            id,
            pos,
            filter,
            pause: None,
        }
    }
}

/// A reader's place in a log. Dropping it unregisters the reader at once.
pub struct Cursor {
    log: Arc<EventLog>,
    id: u64,
    pos: u64,
    filter: Filter,
    /// The run's open pause (see [`Cursor::pause_on`]).
    pause: Option<Arc<AtomicU32>>,
}

impl Cursor {
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// Makes this cursor stop (`End::Paused`) after an entry whose `pause` equals what
    /// `open` holds when the entry is read: the number of the run's batch of approvals that
    /// are still pending (0 when none is).
    pub fn pause_on(mut self, open: Arc<AtomicU32>) -> Cursor {
        self.pause = Some(open);
        self
    }

    /// Hands `visit` the next entries this cursor wants, up to about `budget` bytes of them.
    /// `Pending` (with the waker registered) only when there was nothing to hand over.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        mut visit: impl FnMut(&Entry),
    ) -> Poll<Step> {
        let mut st = lock(&self.log.state);
        let base = st.base;
        let len = st.entries.len() as u64;
        let end = match st.readers.get(&self.id) {
            Some(r) => r.end,
            None => Some((End::Closed, self.pos)),
        };
        if let Some((End::Behind, _)) = end {
            return Poll::Ready(Step::Done(End::Behind));
        }
        if self.pos < base {
            // What this reader had not read yet was dropped from under it.
            if let Some(r) = st.readers.get_mut(&self.id) {
                r.end = Some((End::Behind, self.pos));
            }
            return Poll::Ready(Step::Done(End::Behind));
        }
        let stop_at = match end {
            Some((_, at)) => at.min(base + len),
            None => base + len,
        };
        let mut used = 0usize;
        let mut visited = false;
        let mut finished = false;
        let mut paused = false;
        while self.pos < stop_at && used < budget {
            let Some(entry) = st.entries.get((self.pos - base) as usize) else {
                break;
            };
            self.pos += 1;
            let wanted = match self.filter {
                Filter::Frames => entry.frame.is_some(),
                Filter::Run(run) => entry.run == run && entry.frame.is_some(),
                Filter::Chat(run) => entry.run == run && entry.chat.is_some(),
            };
            if !wanted {
                continue;
            }
            visit(entry);
            visited = true;
            used += entry.cost();
            if entry.run_end && !matches!(self.filter, Filter::Frames) {
                finished = true;
                break;
            }
            if entry.pause != 0
                && self
                    .pause
                    .as_ref()
                    .is_some_and(|open| open.load(Ordering::Acquire) == entry.pause)
            {
                paused = true;
                break;
            }
        }
        let pos = self.pos;
        if let Some(r) = st.readers.get_mut(&self.id) {
            r.pos = pos;
            if !visited && !finished && end.is_none() {
                r.waker = Some(cx.waker().clone());
            }
        }
        if finished {
            return Poll::Ready(Step::Done(End::RunEnded));
        }
        if paused {
            return Poll::Ready(Step::Done(End::Paused));
        }
        if let Some((reason, at)) = end {
            if self.pos >= at {
                return Poll::Ready(Step::Done(reason));
            }
        }
        if visited {
            Poll::Ready(Step::More)
        } else if end.is_some() {
            // Closed, with more to read than fits: keep going on the next poll.
            Poll::Ready(Step::More)
        } else {
            Poll::Pending
        }
    }
}

impl Cursor {
    /// [`Cursor::poll_next`] for a reader that writes out what `pick` takes from each entry:
    /// a single piece comes back as the log's shared buffer itself, a burst already waiting is
    /// joined into one buffer (one write instead of one per event).
    pub fn poll_bytes(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        pick: impl Fn(&Entry) -> Option<Bytes>,
    ) -> Poll<(Option<Bytes>, Step)> {
        let mut single: Option<Bytes> = None;
        let mut batch: Option<BytesMut> = None;
        let polled = self.poll_next(cx, budget, |entry| {
            let Some(piece) = pick(entry) else {
                return;
            };
            match (&mut batch, single.take()) {
                (Some(b), _) => b.extend_from_slice(&piece),
                (None, None) => single = Some(piece),
                (None, Some(first)) => {
                    let mut b = BytesMut::with_capacity((first.len() + piece.len()) * 2);
                    b.extend_from_slice(&first);
                    b.extend_from_slice(&piece);
                    batch = Some(b);
                }
            }
        });
        polled.map(|step| (batch.map(BytesMut::freeze).or(single), step))
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        let removed = {
            let mut st = lock(&self.log.state);
            let removed = st.readers.remove(&self.id);
            if let Some(r) = &removed {
                if r.counted {
                    st.subscribers -= 1;
                }
            }
            removed
        };
        if let Some(r) = removed {
            if r.counted {
                let reason = r.end.map(|(e, _)| e);
                self.log.hooks.subscriber_dropped(&self.log.key, reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::GatewayEvent;
    use std::task::Waker;

    fn log(max: usize) -> Arc<EventLog> {
        Arc::new(EventLog::new(
            "k".into(),
            max,
            usize::MAX,
            0,
            Arc::new(super::super::hooks::NoHooks),
        ))
    }

    #[test]
    fn a_replica_appends_at_the_ids_it_is_given_and_skips_repeats() {
        let replica = Arc::new(EventLog::new(
            "k".into(),
            8,
            usize::MAX,
            40,
            Arc::new(super::super::hooks::NoHooks),
        ));
        let entry = |seq| Entry {
            seq,
            run: 0,
            frame: Some(Frame::encode(
                seq,
                &GatewayEvent::TurnStart { session_key: "k" },
                None,
            )),
            chat: None,
            run_end: false,
            pause: 0,
        };
        assert_eq!(replica.append_at(41, entry), Some(41));
        // Ids another node skipped (nothing logged) are skipped here too.
        assert_eq!(replica.append_at(45, entry), Some(45));
        assert_eq!(replica.append_at(45, entry), None, "a repeat");
        assert_eq!(replica.append_at(44, entry), None, "an older id");
        assert_eq!(replica.last_seq(), 45);
        // A reader resuming after 41 gets 45 next, nothing missed; after 39 (below the floor): missed.
        assert!(!replica.resume_after(41).missed);
        assert!(replica.resume_after(39).missed);
        // Bytes written back and read again are the same frame.
        let frame = Frame::encode(7, &GatewayEvent::TurnEnd { session_key: "k" }, Some("r-1"));
        let back = Frame::from_sse(frame.sse()).expect("a frame");
        assert_eq!(back.json(), frame.json());
        assert!(Frame::from_sse(bytes::Bytes::from_static(b"data: {}\n\n")).is_none());
    }

    fn push(log: &EventLog, run: u64, end: bool) -> u64 {
        log.append(|seq| Entry {
            seq,
            run,
            frame: Some(Frame::encode(
                seq,
                &GatewayEvent::TurnStart { session_key: "k" },
                None,
            )),
            chat: None,
            run_end: end,
            pause: 0,
        })
    }

    fn drain(c: &mut Cursor) -> (Vec<u64>, Option<Step>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        loop {
            match c.poll_next(&mut cx, usize::MAX, |e| seen.push(e.seq)) {
                Poll::Ready(Step::More) => continue,
                Poll::Ready(step) => return (seen, Some(step)),
                Poll::Pending => return (seen, None),
            }
        }
    }

    #[test]
    fn resume_finds_the_next_id_and_says_when_it_was_dropped() {
        let l = log(3);
        for _ in 0..5 {
            push(&l, 0, false);
        }
        // Ids 1..=5 issued; 3, 4, 5 kept.
        let at = |pos, missed, seen| Resume { pos, missed, seen };
        assert_eq!(l.resume_after(4), at(4, false, 4));
        assert_eq!(l.resume_after(2), at(2, false, 2));
        assert_eq!(l.resume_after(1), at(2, true, 2));
        assert_eq!(l.resume_after(5), at(5, false, 5));
        assert_eq!(l.resume_after(9), at(2, true, 2));
        assert_eq!(l.live(), at(5, false, 5));
        let mut c = l.cursor(l.resume_after(3).pos, Filter::Frames, 100, true);
        assert_eq!(drain(&mut c), (vec![4, 5], None));
        push(&l, 0, false);
        assert_eq!(drain(&mut c), (vec![6], None));
        assert_eq!(l.subscriber_count(), 1);
        drop(c);
        assert_eq!(l.subscriber_count(), 0);
    }

    #[test]
    fn a_reader_too_far_behind_is_ended_and_run_cursors_end_with_their_run() {
        let l = log(100);
        let mut slow = l.cursor(l.head(), Filter::Frames, 2, true);
        let mut run = l.cursor(l.head(), Filter::Run(7), usize::MAX, false);
        push(&l, 7, false);
        push(&l, 0, false);
        push(&l, 7, true);
        push(&l, 7, false);
        assert_eq!(drain(&mut slow), (vec![], Some(Step::Done(End::Behind))));
        assert_eq!(
            drain(&mut run),
            (vec![1, 3], Some(Step::Done(End::RunEnded)))
        );
        assert_eq!(l.run_start(7, None), Some(0));
        assert_eq!(
            l.run_start(7, Some(1)),
            Some(1),
            "the first position after id 1"
        );
    }

    #[test]
    fn closing_lets_readers_finish_what_was_logged() {
        let l = Arc::new(EventLog::new(
            "k".into(),
            100,
            usize::MAX,
            10,
            Arc::new(super::super::hooks::NoHooks),
        ));
        let mut c = l.cursor(l.head(), Filter::Frames, 100, true);
        push(&l, 0, false);
        l.close_readers();
        push(&l, 0, false);
        assert_eq!(drain(&mut c), (vec![11], Some(Step::Done(End::Closed))));
        assert_eq!(l.last_seq(), 12);
        l.clear();
        assert!(l.is_empty());
        assert!(l.resume_after(11).missed);
        assert!(!l.resume_after(12).missed);
        assert!(l.resume_after(3).missed, "before the floor");
    }
}
