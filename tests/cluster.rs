//! The cluster module against a real Redis: Debian's `redis-server`, started by each test on
//! 127.0.0.1 with a free port and no persistence, killed when the test ends. Leases in
//! milliseconds, so each test takes a few seconds.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pi_gateway::cluster::{Claim, Cluster, ClusterConfig, ClusterError, MirrorEntry, Owner};
use redis::aio::MultiplexedConnection;
use tokio::runtime::Handle;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const LEASE: Duration = Duration::from_millis(1000);

/// A `redis-server` of this test's own; killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// A port with nothing on it yet; [`RedisServer::restart`] starts Redis there.
    fn not_started() -> RedisServer {
        let mut server = RedisServer::start();
        server.kill();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts Redis on this port (again) and waits until it answers `PING`.
    fn restart(&mut self) {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: these tests need a real Redis; install Debian's redis-server (apt-get install redis-server; .ci/run installs it)"
        );
        self.kill();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.pings() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer on port {} within 5 s",
            self.port
        );
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn raw(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("a raw connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Log lines a cluster wrote.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn sink(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let lines = self.0.clone();
        Arc::new(move |l: &str| lines.lock().expect("lock").push(l.to_string()))
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
    fn count(&self, start: &str) -> usize {
        self.all().iter().filter(|l| l.starts_with(start)).count()
    }
}

fn config(server: &RedisServer, node: &str, prefix: &str) -> ClusterConfig {
    ClusterConfig {
        redis_url: server.url(),
        advertise_url: format!("http://10.0.0.{}:3000", node.len()),
        node_id: node.to_string(),
        prefix: prefix.to_string(),
        lease: LEASE,
    }
}

fn node(server: &RedisServer, name: &str, prefix: &str, log_len: usize) -> (Cluster, Lines) {
    let lines = Lines::default();
    let cluster = Cluster::new(
        config(server, name, prefix),
        log_len,
        &Handle::current(),
        lines.sink(),
    );
    (cluster, lines)
}

/// Polls `check` every 20 ms until it holds or `limit` passes; whether it held.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(raw: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(raw)
        .await
        .expect("GET")
}

async fn pttl(raw: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(raw)
        .await
        .expect("PTTL")
}

fn entry(seq: u64) -> MirrorEntry {
    MirrorEntry {
        seq,
        frame: Some(Bytes::from(format!("id: {seq}\ndata: {{\"n\":{seq}}}\n\n"))),
        chat: None,
        run_id: None,
        run_end: false,
        pause: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_ours_or_names_the_holder_and_renewal_keeps_it_past_the_lease() {
    let server = RedisServer::start();
    let (a, _) = node(&server, "node-a", "t1:", 100);
    let (b, _) = node(&server, "node-bb", "t1:", 100);
    let mut raw = server.raw().await;

    assert_eq!(a.claim("s/1").await, Ok(Claim::Ours));
    assert_eq!(a.claim("s/1").await, Ok(Claim::Ours), "ours again: renewed");
    let owner_a = Owner {
        node_id: "node-a".into(),
        url: "http://10.0.0.6:3000".into(),
    };
    assert_eq!(b.claim("s/1").await, Ok(Claim::Theirs(owner_a.clone())));
    assert_eq!(b.owner("s/1").await, Ok(Some(owner_a.clone())));
    assert_eq!(b.owner("s/2").await, Ok(None));
    assert!(a.healthy() && b.healthy());
    // The key layout of the contract: `P{lease}:K` → "<nodeId> <advertiseUrl>", PX leaseMs.
    assert_eq!(
        get(&mut raw, "t1:{lease}:s/1").await.as_deref(),
        Some("node-a http://10.0.0.6:3000")
    );
    let ttl = pttl(&mut raw, "t1:{lease}:s/1").await;
    assert!(ttl > 0 && ttl <= 1000, "{ttl}");

    a.hold("s/1");
    assert!(a.holds("s/1"));
    tokio::time::sleep(LEASE * 5 / 2).await;
    assert_eq!(
        b.claim("s/1").await,
        Ok(Claim::Theirs(owner_a)),
        "renewed past leaseMs"
    );
    assert!(pttl(&mut raw, "t1:{lease}:s/1").await > 0);

    // Released: deleted at once, so the other node need not wait for it to expire.
    a.release("s/1");
    assert!(!a.holds("s/1"));
    assert!(
        eventually(Duration::from_millis(500), || async {
            get(&mut server.raw().await, "t1:{lease}:s/1")
                .await
                .is_none()
        })
        .await
    );
    assert_eq!(b.claim("s/1").await, Ok(Claim::Ours));
    // A release by a node that does not hold it leaves the holder's lease alone.
    a.release("s/1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(&mut raw, "t1:{lease}:s/1").await.as_deref(),
        Some("node-bb http://10.0.0.7:3000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_nobody_renews_expires_and_another_node_takes_over() {
    let server = RedisServer::start();
    let (a, _) = node(&server, "node-a", "t2:", 100);
    let (b, _) = node(&server, "node-b", "t2:", 100);
    // `a` claims and never renews: as if its process died.
    assert_eq!(a.claim("k").await, Ok(Claim::Ours));
    assert!(matches!(b.claim("k").await, Ok(Claim::Theirs(o)) if o.node_id == "node-a"));
    let started = Instant::now();
    assert!(
        eventually(LEASE * 2, || async {
            b.claim("k").await == Ok(Claim::Ours)
        })
        .await,
        "taken over after the lease expired"
    );
    assert!(started.elapsed() >= LEASE - Duration::from_millis(200));

    // A node that stops releases what it holds: no wait for the next owner.
    assert_eq!(a.claim("k2").await, Ok(Claim::Ours));
    a.hold("k2");
    a.shutdown();
    tokio::time::timeout(Duration::from_secs(4), a.stopped())
        .await
        .expect("shutdown is bounded");
    assert_eq!(b.claim("k2").await, Ok(Claim::Ours));
    assert!(matches!(
        a.claim("k3").await,
        Err(ClusterError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lost_hears_of_a_held_lease_another_node_replaced() {
    let server = RedisServer::start();
    let (a, lines) = node(&server, "node-a", "t3:", 100);
    let lost = Arc::new(Mutex::new(Vec::<String>::new()));
    let heard = lost.clone();
    a.on_lost(Arc::new(move |k: &str| {
        heard.lock().expect("lock").push(k.to_string())
    }));
    assert_eq!(a.claim("k").await, Ok(Claim::Ours));
    a.hold("k");
    assert_eq!(a.claim("other").await, Ok(Claim::Ours));
    a.hold("other");

    let mut raw = server.raw().await;
    let _: () = redis::cmd("DEL")
        .arg("t3:{lease}:k")
        .query_async(&mut raw)
        .await
        .expect("DEL");
    let _: () = redis::cmd("SET")
        .arg("t3:{lease}:k")
        .arg("node-z http://10.9.9.9:1")
        .arg("PX")
        .arg(10_000)
        .query_async(&mut raw)
        .await
        .expect("SET");
    assert!(
        eventually(LEASE, || async { !lost.lock().expect("lock").is_empty() }).await,
        "on_lost within a renewal period"
    );
    assert_eq!(*lost.lock().expect("lock"), vec!["k".to_string()]);
    assert!(!a.holds("k") && a.holds("other"));
    assert_eq!(
        get(&mut raw, "t3:{lease}:k").await.as_deref(),
        Some("node-z http://10.9.9.9:1"),
        "the other node's lease is left alone"
    );
    assert_eq!(
        a.claim("k").await,
        Ok(Claim::Theirs(Owner {
            node_id: "node-z".into(),
            url: "http://10.9.9.9:1".into()
        }))
    );
    assert_eq!(
        lines.count("warning: cluster: another node holds the lease"),
        1
    );
    tokio::time::sleep(LEASE / 2).await;
    assert_eq!(lost.lock().expect("lock").len(), 1, "said once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_round_trips_exact_bytes_and_ids_for_any_node() {
    let server = RedisServer::start();
    let (a, lines) = node(&server, "node-a", "t4:", 100);
    let (b, _) = node(&server, "node-b", "t4:", 100);
    let entries = vec![
        entry(1),
        MirrorEntry {
            frame: None,
            chat: Some(Bytes::from_static(&[0, 1, 255, b'\n', b'\r'])),
            run_id: Some("01980000-0000-7000-8000-000000000001".into()),
            ..entry(2)
        },
        MirrorEntry {
            run_id: Some("01980000-0000-7000-8000-000000000001".into()),
            run_end: true,
            pause: 2,
            ..entry(3)
        },
    ];
    for e in &entries {
        a.mirror("s 1", e.clone());
    }
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.last_seq("s 1").await == Ok(3)
        })
        .await
    );
    assert_eq!(b.read_after("s 1", 0, 100).await, Ok(entries.clone()));
    assert_eq!(b.read_after("s 1", 1, 100).await, Ok(entries[1..].to_vec()));
    assert_eq!(b.read_after("s 1", 0, 1).await, Ok(entries[..1].to_vec()));
    assert_eq!(b.read_after("s 1", 3, 100).await, Ok(Vec::new()));
    assert_eq!(b.first_seq("s 1").await, Ok(1));
    assert_eq!(b.last_seq("nothing").await, Ok(0));
    assert_eq!(b.first_seq("nothing").await, Ok(0));
    assert_eq!(b.read_after("nothing", 0, 10).await, Ok(Vec::new()));
    // Ids are `<seq>-1` in `P{log}:K`.
    let mut raw = server.raw().await;
    let ids: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
        .arg("t4:{log}:s 1")
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .expect("XRANGE");
    let ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1-1", "2-1", "3-1"]);

    // A blocking read wakes for the next entry.
    let reader = b.clone();
    let started = Instant::now();
    let read =
        tokio::spawn(async move { reader.read_blocking("s 1", 3, Duration::from_secs(3)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.mirror("s 1", entry(4));
    let got = read.await.expect("joined");
    assert_eq!(got, Ok(vec![entry(4)]));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // With an entry there already it answers at once; with none it waits `block`.
    assert_eq!(
        b.read_blocking("s 1", 2, Duration::from_secs(3)).await,
        Ok(vec![entries[2].clone(), entry(4)])
    );
    let started = Instant::now();
    assert_eq!(
        b.read_blocking("s 1", 4, Duration::from_millis(200)).await,
        Ok(Vec::new())
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(180) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    // Many readers at once: each on a connection of its own, none stalls the others or
    // the shared connection.
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.read_blocking("s 1", 4, Duration::from_secs(3)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    assert_eq!(b.last_seq("s 1").await, Ok(4));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "not behind the blocking reads"
    );
    a.mirror("s 1", entry(5));
    for r in readers {
        assert_eq!(r.await.expect("joined"), Ok(vec![entry(5)]));
    }

    // An id below the stream's top (two writers in a takeover race) is refused, logged, and
    // not retried.
    a.mirror("s 1", entry(10));
    a.mirror("s 1", entry(9));
    a.mirror("s 1", entry(11));
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.last_seq("s 1").await == Ok(11)
        })
        .await
    );
    assert_eq!(
        b.read_after("s 1", 5, 100).await,
        Ok(vec![entry(10), entry(11)])
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            lines.count("warning: cluster: Redis refused 1 log entries") == 1
        })
        .await,
        "{:?}",
        lines.all()
    );
    assert_eq!(a.mirror_dropped(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_trims_each_stream_to_about_max_len() {
    let server = RedisServer::start();
    let (a, _) = node(&server, "node-a", "t5:", 10);
    for seq in 1..=350 {
        a.mirror("k", entry(seq));
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            a.last_seq("k").await == Ok(350)
        })
        .await
    );
    let mut raw = server.raw().await;
    let len: usize = redis::cmd("XLEN")
        .arg("t5:{log}:k")
        .query_async(&mut raw)
        .await
        .expect("XLEN");
    // `MAXLEN ~` trims whole nodes (100 entries by default): at least 10 kept, not many more.
    assert!((10..=110).contains(&len), "{len}");
    let first = a.first_seq("k").await.expect("first");
    assert_eq!(first, 351 - len as u64);
    let all = a.read_after("k", 0, 1000).await.expect("read");
    assert_eq!(all.len(), len);
    assert!(all.iter().zip(first..).all(|(e, seq)| *e == entry(seq)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_and_coming_back_resumes_renewals_and_the_mirror() {
    let mut server = RedisServer::start();
    let (a, lines) = node(&server, "node-a", "t6:", 100);
    assert_eq!(a.claim("k").await, Ok(Claim::Ours));
    a.hold("k");
    a.mirror("k", entry(1));
    assert!(
        eventually(Duration::from_secs(2), || async {
            a.last_seq("k").await == Ok(1)
        })
        .await
    );
    assert!(a.healthy());

    server.kill();
    let down = Instant::now();
    assert!(
        eventually(Duration::from_secs(4), || async { !a.healthy() }).await,
        "degraded within a renewal period and a command timeout"
    );
    assert!(down.elapsed() < Duration::from_secs(4));
    let t = Instant::now();
    assert!(matches!(
        a.claim("other").await,
        Err(ClusterError::Unavailable(_))
    ));
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        a.holds("k"),
        "a held lease stays held: owned sessions keep working"
    );
    for seq in 2..=11 {
        a.mirror("k", entry(seq));
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            a.mirror_dropped() == 10
        })
        .await
    );
    assert_eq!(
        lines.count("warning: cluster: Redis unreachable ("),
        1,
        "{:?}",
        lines.all()
    );
    assert_eq!(
        lines.count("warning: cluster: the log mirror drops entries"),
        1
    );

    // Back, empty (no persistence): the held lease is taken again, the mirror writes again.
    server.restart();
    assert!(
        eventually(Duration::from_secs(5), || async { a.healthy() }).await,
        "{:?}",
        lines.all()
    );
    let mut raw = server.raw().await;
    assert!(
        eventually(LEASE, || async {
            get(&mut server.raw().await, "t6:{lease}:k").await.is_some()
        })
        .await,
        "renewals resumed"
    );
    assert_eq!(
        get(&mut raw, "t6:{lease}:k").await.as_deref(),
        Some("node-a http://10.0.0.6:3000")
    );
    assert!(a.holds("k"));
    a.mirror("k", entry(12));
    assert!(
        eventually(Duration::from_secs(2), || async {
            a.last_seq("k").await == Ok(12)
        })
        .await
    );
    assert!(
        lines.count("cluster: Redis reachable again") >= 1,
        "{:?}",
        lines.all()
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            lines.count("cluster: the log mirror writes again (10 entries dropped)") == 1
        })
        .await,
        "{:?}",
        lines.all()
    );
    assert_eq!(a.claim("other").await, Ok(Claim::Ours));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_never_waits_and_connects_when_redis_comes_up_later() {
    let mut server = RedisServer::not_started();
    let started = Instant::now();
    let (a, lines) = node(&server, "node-a", "t7:", 100);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(!a.healthy());
    assert!(matches!(
        a.claim("k").await,
        Err(ClusterError::Unavailable(_))
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    assert!(
        eventually(Duration::from_secs(7), || async { a.healthy() }).await,
        "{:?}",
        lines.all()
    );
    assert_eq!(a.claim("k").await, Ok(Claim::Ours));
    assert_eq!(
        lines.count("cluster: node node-a connected to Redis at 127.0.0.1:"),
        1,
        "{:?}",
        lines.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_and_idempotency_keys_are_shared_by_every_node() {
    let server = RedisServer::start();
    let (a, _) = node(&server, "node-a", "t8:", 100);
    let (b, _) = node(&server, "node-b", "t8:", 100);
    let json = r#"{"id":"r1","status":"succeeded"}"#.to_string();
    a.put_run("r1", json.clone(), Duration::from_secs(60));
    assert!(
        eventually(Duration::from_secs(2), || async {
            b.get_run("r1").await == Ok(Some(json.clone()))
        })
        .await
    );
    assert_eq!(b.get_run("r2").await, Ok(None));
    let mut raw = server.raw().await;
    let ttl = pttl(&mut raw, "t8:{run}:r1").await;
    assert!(ttl > 55_000 && ttl <= 60_000, "{ttl}");

    let day = Duration::from_secs(86_400);
    assert_eq!(
        a.remember_idem("s", "key-1", "aa11 r1", day).await,
        Ok(None)
    );
    assert_eq!(
        b.remember_idem("s", "key-1", "bb22 r2", day).await,
        Ok(Some("aa11 r1".into())),
        "the same key on another node finds the first request"
    );
    assert_eq!(
        b.remember_idem("other", "key-1", "bb22 r2", day).await,
        Ok(None),
        "keys are per session"
    );
    assert_eq!(
        get(&mut raw, "t8:{idem}:s:key-1").await.as_deref(),
        Some("aa11 r1")
    );
    let ttl = pttl(&mut raw, "t8:{idem}:s:key-1").await;
    assert!(ttl > 86_000_000, "{ttl}");
    // It expires.
    assert_eq!(
        a.remember_idem("s", "key-2", "x", Duration::from_millis(200))
            .await,
        Ok(None)
    );
    assert_eq!(
        a.remember_idem("s", "key-2", "y", day).await,
        Ok(Some("x".into()))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.remember_idem("s", "key-2", "y", day).await, Ok(None));
}
