//! Unit tests without a Redis: commands as sent, replies as read, errors as classified, and a
//! cluster whose Redis is not there. `tests/cluster.rs` runs against a real `redis-server`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::{Arg, Value};

use super::stream::{parse_entries, parse_xread, xadd};
use super::*;

fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
    cmd.args_iter()
        .map(|a| match a {
            Arg::Simple(b) => b.to_vec(),
            Arg::Cursor => b"<cursor>".to_vec(),
        })
        .collect()
}

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

fn entry(seq: u64) -> MirrorEntry {
    MirrorEntry {
        seq,
        frame: None,
        chat: None,
        run_id: None,
        run_end: false,
        pause: 0,
    }
}

/// The reply Redis would give for the entries an XADD wrote: `[id, [field, value, …]]`.
fn as_reply(cmd: &redis::Cmd) -> Value {
    let a = args(cmd);
    // XADD key MAXLEN ~ n id fields…
    let fields = a[6..].iter().map(|b| bulk(b)).collect();
    Value::Array(vec![bulk(&a[5]), Value::Array(fields)])
}

#[test]
fn xadd_writes_explicit_ids_trimming_and_only_the_fields_present() {
    let full = MirrorEntry {
        seq: 42,
        frame: Some(Bytes::from_static(b"id: 42\ndata: {}\n\n")),
        chat: Some(Bytes::from_static(&[0, 255, b'\n'])),
        run_id: Some("0198-run".into()),
        run_end: true,
        pause: 3,
    };
    let a = args(&xadd("p:{log}:k", 4096, &full));
    let expected: Vec<&[u8]> = vec![
        b"XADD",
        b"p:{log}:k",
        b"MAXLEN",
        b"~",
        b"4096",
        b"42-1",
        b"f",
        b"id: 42\ndata: {}\n\n",
        b"c",
        &[0, 255, b'\n'],
        b"r",
        b"0198-run",
        b"e",
        b"1",
        b"p",
        b"3",
    ];
    assert_eq!(a, expected);
    let bare = args(&xadd(
        "k",
        10,
        &MirrorEntry {
            frame: Some(Bytes::new()),
            ..entry(7)
        },
    ));
    assert_eq!(&bare[5..], [b"7-1".to_vec(), b"f".to_vec(), Vec::new()]);
    let empty = args(&xadd("k", 10, &entry(8)));
    assert_eq!(
        &empty[6..],
        [b"_".to_vec(), Vec::new()],
        "a placeholder field"
    );
}

#[test]
fn stream_replies_read_back_into_the_entries_written() {
    let entries = vec![
        MirrorEntry {
            seq: 1,
            frame: Some(Bytes::from_static(b"id: 1\ndata: x\n\n")),
            ..entry(1)
        },
        MirrorEntry {
            chat: Some(Bytes::from_static(&[1, 2, 255])),
            run_id: Some("r".into()),
            pause: u32::MAX,
            ..entry(2)
        },
        MirrorEntry {
            run_end: true,
            ..entry(3)
        },
        entry(4),
    ];
    let reply = Value::Array(entries.iter().map(|e| as_reply(&xadd("k", 9, e))).collect());
    assert_eq!(parse_entries(reply.clone()), Ok(entries.clone()));
    // XREAD: RESP2 `[[key, entries]]` and RESP3 `{key: entries}`.
    let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"k"), reply.clone()])]);
    assert_eq!(parse_xread(resp2), Ok(entries.clone()));
    let resp3 = Value::Map(vec![(bulk(b"k"), reply)]);
    assert_eq!(parse_xread(resp3), Ok(entries));
    assert_eq!(parse_xread(Value::Nil), Ok(Vec::new()));
    assert_eq!(parse_entries(Value::Array(Vec::new())), Ok(Vec::new()));
}

#[test]
fn unreadable_entries_are_errors_that_do_not_quote_the_data() {
    let with = |id: &[u8], fields: Vec<Value>| {
        Value::Array(vec![Value::Array(vec![bulk(id), Value::Array(fields)])])
    };
    let cases = vec![
        (with(b"x-1", vec![]), "entry id \"x-1\" is not <seq>-<n>"),
        (with(b"5", vec![]), "entry id \"5\" is not <seq>-<n>"),
        (with(b"5-1", vec![bulk(b"f")]), "entry 5-1: an odd number"),
        (
            with(b"5-1", vec![bulk(b"p"), bulk(b"secret")]),
            "entry 5-1: pause is not a number",
        ),
        (
            with(b"5-1", vec![bulk(b"r"), bulk(&[255])]),
            "entry 5-1's run id is not UTF-8",
        ),
        (
            with(b"5-1", vec![bulk(b"f"), Value::Array(vec![])]),
            "expected a string, got an array",
        ),
        (Value::Int(3), "expected a list of entries, got an integer"),
        (
            Value::Array(vec![bulk(b"5-1")]),
            "expected an entry [id, fields], got a string",
        ),
    ];
    for (value, expected) in cases {
        let e = parse_entries(value).expect_err("unreadable");
        assert!(e.starts_with(expected), "{e}");
        assert!(!e.contains("secret"));
    }
    // Fields this version does not know are skipped.
    let v = with(
        b"9-1",
        vec![bulk(b"zz"), bulk(b"?"), bulk(b"e"), bulk(b"1")],
    );
    assert_eq!(
        parse_entries(v),
        Ok(vec![MirrorEntry {
            run_end: true,
            ..entry(9)
        }])
    );
}

#[test]
fn a_lease_value_names_the_node_and_its_url() {
    assert_eq!(
        Owner::parse("gw-1 http://10.0.0.5:3000"),
        Some(Owner {
            node_id: "gw-1".into(),
            url: "http://10.0.0.5:3000".into()
        })
    );
    assert_eq!(Owner::parse("gw-1"), None);
    assert_eq!(Owner::parse(" http://a"), None);
    assert_eq!(Owner::parse("gw-1 "), None);
}

#[test]
fn errors_split_into_degraded_and_answered() {
    let io: redis::RedisError =
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
    assert!(matches!(classify("x", &io), ClusterError::Unavailable(m) if m.starts_with("x: ")));
    let loading: redis::RedisError = (ErrorKind::BusyLoadingError, "loading").into();
    assert!(matches!(
        classify("x", &loading),
        ClusterError::Unavailable(_)
    ));
    let err: redis::RedisError = (ErrorKind::ResponseError, "ERR bad").into();
    assert!(matches!(classify("x", &err), ClusterError::Other(_)));
    let noauth = redis::make_extension_error("NOAUTH".into(), Some("needed".into()));
    assert!(matches!(
        classify("x", &noauth),
        ClusterError::Unavailable(_)
    ));
    let wrongtype = redis::make_extension_error("WRONGTYPE".into(), None);
    assert!(matches!(classify("x", &wrongtype), ClusterError::Other(_)));
}

fn config(port: u16) -> ClusterConfig {
    ClusterConfig {
        redis_url: format!("redis://127.0.0.1:{port}/0"),
        advertise_url: "http://127.0.0.1:1".into(),
        node_id: "unit".into(),
        prefix: "t:".into(),
        lease: Duration::from_millis(1000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_new_returns_at_once_and_every_call_is_unavailable() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let started = Instant::now();
    let cluster = Cluster::new(
        config(port),
        100,
        &Handle::current(),
        Arc::new(move |l: &str| sink.lock().expect("lock").push(l.to_string())),
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "new never waits"
    );
    assert!(!cluster.healthy());
    let t = Instant::now();
    let e = cluster.claim("k").await.expect_err("no Redis");
    assert!(matches!(e, ClusterError::Unavailable(_)), "{e:?}");
    assert!(t.elapsed() <= COMMAND_TIMEOUT + Duration::from_millis(500));
    assert!(matches!(
        cluster.read_after("k", 0, 10).await,
        Err(ClusterError::Unavailable(_))
    ));
    assert!(matches!(
        cluster
            .remember_idem("k", "i", "v", Duration::from_secs(1))
            .await,
        Err(ClusterError::Unavailable(_))
    ));
    cluster.hold("k");
    assert!(cluster.holds("k"));
    cluster.mirror("k", entry(1));
    let deadline = Instant::now() + Duration::from_secs(3);
    while cluster.mirror_dropped() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.mirror_dropped(), 1);
    cluster.shutdown();
    tokio::time::timeout(Duration::from_secs(5), cluster.stopped())
        .await
        .expect("shutdown is bounded");
    assert!(matches!(
        cluster.claim("k").await,
        Err(ClusterError::Unavailable(m)) if m.contains("stopping")
    ));
    let lines = lines.lock().expect("lock").clone();
    let degraded = lines
        .iter()
        .filter(|l| l.starts_with("warning: cluster: Redis unreachable ("))
        .count();
    assert_eq!(degraded, 1, "one line per change: {lines:?}");
    assert!(lines.iter().all(|l| !l.contains("reachable again")));
}
