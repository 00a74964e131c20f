//! `Idempotency-Key`: key → (run, fingerprint of the request), so a repeated request joins
//! the run the first one started. Kept `idempotency.ttlMs`, at most `idempotency.maxKeys`
//! keys (the oldest forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::run::Run;

/// A request's fingerprint: SHA-256 over its method, path and body.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn check_key(key: &[u8]) -> Result<&str, String> {
    if key.is_empty() || key.len() > 255 {
        return Err(format!(
            "Invalid Idempotency-Key: expected 1 to 255 characters, got {}",
            key.len()
        ));
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(
            "Invalid Idempotency-Key: only visible ASCII characters (no spaces) are allowed".into(),
        );
    }
    // All visible ASCII: valid UTF-8.
    std::str::from_utf8(key).map_err(|_| "Invalid Idempotency-Key".to_string())
}

struct Remembered {
    fingerprint: Fingerprint,
    run: Arc<Run>,
    at: u64,
}

pub struct IdempotencyStore {
    ttl_ms: u64,
    max_keys: usize,
    keys: HashMap<String, Remembered>,
    /// Keys in the order they were remembered, with when: the oldest are forgotten first.
    order: VecDeque<(String, u64)>,
}

/// What a key says about a request.
pub enum Seen {
    New,
    Same(Arc<Run>),
    Different,
}

impl IdempotencyStore {
    pub fn new(ttl_ms: u64, max_keys: usize) -> IdempotencyStore {
        IdempotencyStore {
            ttl_ms,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn check(&mut self, key: &str, fingerprint: &Fingerprint, now: u64) -> Seen {
        self.expire(now);
        match self.keys.get(key) {
            None => Seen::New,
            Some(r) if &r.fingerprint == fingerprint => Seen::Same(r.run.clone()),
            Some(_) => Seen::Different,
        }
    }

    pub fn remember(&mut self, key: String, fingerprint: Fingerprint, run: Arc<Run>, now: u64) {
        while self.keys.len() >= self.max_keys {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&old).is_some_and(|r| r.at == at) {
                self.keys.remove(&old);
            }
        }
        self.order.push_back((key.clone(), now));
        self.keys.insert(
            key,
            Remembered {
                fingerprint,
                run,
                at: now,
            },
        );
    }

    fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.ttl_ms);
        while let Some((key, at)) = self.order.front() {
            if *at >= cutoff && self.order.len() <= self.max_keys * 2 {
                break;
            }
            let (key, at) = (key.clone(), *at);
            self.order.pop_front();
            if self.keys.get(&key).is_some_and(|r| r.at == at) && at < cutoff {
                self.keys.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_conflict_expire_and_are_bounded() {
        let mut s = IdempotencyStore::new(1000, 2);
        let a = fingerprint("POST", "/sessions/k/messages", b"{\"text\":\"a\"}");
        let b = fingerprint("POST", "/sessions/k/messages", b"{\"text\":\"b\"}");
        assert_ne!(a, b);
        let run = Arc::new(Run::new("k".into(), None, false));
        assert!(matches!(s.check("x", &a, 0), Seen::New));
        s.remember("x".into(), a, run.clone(), 0);
        assert!(matches!(s.check("x", &a, 10), Seen::Same(r) if r.id == run.id));
        assert!(matches!(s.check("x", &b, 10), Seen::Different));
        assert!(matches!(s.check("x", &a, 1001), Seen::New), "expired");
        s.remember("x".into(), a, run.clone(), 1001);
        s.remember("y".into(), a, run.clone(), 1002);
        s.remember("z".into(), a, run.clone(), 1003);
        assert_eq!(s.len(), 2);
        assert!(
            matches!(s.check("x", &a, 1004), Seen::New),
            "oldest forgotten"
        );
        assert!(matches!(s.check("z", &a, 1004), Seen::Same(_)));
    }

    #[test]
    fn header_values_are_checked() {
        assert!(check_key(b"abc-123_~").is_ok());
        assert!(check_key(b"").is_err());
        assert!(check_key(&[b'a'; 256]).is_err());
        assert!(check_key(&[b'a'; 255]).is_ok());
        assert!(check_key(b"a b").is_err());
        assert!(check_key("é".as_bytes()).is_err());
    }
}
