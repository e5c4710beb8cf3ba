//! gRPC `etcdserverpb.Watch/Watch` against a real `stead` process: the real
//! `etcdctl` 3.4.23 watching over gRPC prints what it prints against etcd (lines
//! recorded from a real etcd 3.4.23 for the same writes), and the generated tonic
//! client sees etcd's created / events / cancel answers on one stream. Writes go
//! through the JSON gateway, on the same port.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{b64, Server};
use serde_json::{json, Value};
use stead::proto::etcdserverpb as pb;
use stead::proto::etcdserverpb::watch_client::WatchClient;
use stead::proto::etcdserverpb::watch_request::RequestUnion;
use tonic::transport::Channel;

/// How long any expected line or answer may take to arrive.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn rev_of(v: &Value) -> i64 {
    v["header"]["revision"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn put(s: &Server, k: &str, v: &str) -> i64 {
    let (code, body) = s.post("/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}).to_string());
    assert_eq!(code, 200, "{body}");
    rev_of(&body)
}

fn del(s: &Server, k: &str) -> i64 {
    let (code, body) = s.post("/v3/kv/deleterange", &json!({"key": b64(k)}).to_string());
    assert_eq!(code, 200, "{body}");
    rev_of(&body)
}

fn compact(s: &Server, rev: i64) {
    let (code, body) = s.post("/v3/kv/compaction", &json!({"revision": rev.to_string()}).to_string());
    assert_eq!(code, 200, "{body}");
}

/// Waits (bounded) for `n` "watch stream … closed" lines in the server's debug log.
fn await_streams_closed(s: &Server, n: usize) {
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut closed = 0;
    while closed < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = s.log.recv_timeout(left).unwrap_or_else(|_| panic!("only {closed} of {n} watch streams closed"));
        if line.contains("watch stream") && line.contains("closed with") {
            closed += 1;
        }
    }
}

/// A running `etcdctl watch …` child: its stdout lines arrive on a channel.
struct Etcdctl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Etcdctl {
    fn watch(s: &Server, args: &[&str]) -> Etcdctl {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", s.host_port()))
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl (etcd 3.4.23's; scripts/test installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Etcdctl { child, lines }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(LINE_TIMEOUT).expect("a line from etcdctl watch within the deadline")
    }

    fn expect(&self, want: &[&str]) {
        let got: Vec<String> = want.iter().map(|_| self.line()).collect();
        assert_eq!(got, want);
    }

    /// For a watch from the current revision: writes `key` until etcdctl shows
    /// a write (its watcher is then live), then one last marker write that it
    /// must show; every later write is seen.
    fn sync(&self, s: &Server, key: &str) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        for i in 0.. {
            put(s, key, &format!("warm-{i}"));
            if self.lines.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "etcdctl watch never showed a write");
        }
        put(s, key, "ready");
        while self.line() != "ready" {}
    }

    /// Waits (bounded) for etcdctl to exit on its own: (exit code, stderr).
    fn exit(mut self) -> (i32, String) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut err = String::new();
                self.child.stderr.take().expect("stderr").read_to_string(&mut err).ok();
                return (status.code().unwrap_or(-1), err);
            }
            assert!(Instant::now() < deadline, "etcdctl watch did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcdctl {
    /// Kills the child by its own PID (no-op if it already exited).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl 3.4.23's lines for the same writes against etcd 3.4.23 (recorded):
/// `watch foo`, `watch --prefix f --prev-kv --rev R`, `watch foo fz` (a range),
/// `-w json`; killing etcdctl closes its stream on the server.
#[test]
fn etcdctl_watch_over_grpc_prints_what_it_prints_against_etcd() {
    let s = Server::start(&["--log-level", "debug"]);
    let plain = Etcdctl::watch(&s, &["foo"]);
    plain.sync(&s, "foo");
    let range = Etcdctl::watch(&s, &["foo", "fz", "-w", "json"]);
    // The range watcher is live once it shows a write to a key in its range.
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut synced = false;
    while !synced {
        put(&s, "fq", "sync");
        while let Ok(_line) = plain.lines.recv_timeout(Duration::from_millis(10)) {}
        synced = range.lines.recv_timeout(Duration::from_millis(200)).is_ok();
        assert!(Instant::now() < deadline, "the range watch never showed a write");
    }
    put(&s, "fq", "ready");
    while !range.line().contains("cmVhZHk=") {}

    // foo is there from the sync: its create revision and version go on.
    let (_, got) = s.post("/v3/kv/range", &json!({"key": b64("foo")}).to_string());
    let num = |v: &Value| v.as_str().and_then(|s| s.parse::<i64>().ok()).expect("a number");
    let (foo_created, foo_version) = (num(&got["kvs"][0]["create_revision"]), num(&got["kvs"][0]["version"]));
    let first = put(&s, "foo", "bar");
    del(&s, "foo");
    put(&s, "foo", "x y");
    put(&s, "fzz", "out of range");
    put(&s, "fp", "v1");

    plain.expect(&["PUT", "foo", "bar", "DELETE", "foo", "", "PUT", "foo", "x y"]);

    // -w json: clientv3's WatchResponse as etcdctl prints it, one line each.
    let ids = {
        let (_, st) = s.post("/v3/maintenance/status", "{}");
        let h = &st["header"];
        let n = |v: &Value| v.as_str().expect("an id").parse::<u64>().expect("a number");
        (n(&h["cluster_id"]), n(&h["member_id"]), n(&h["raft_term"]))
    };
    let json_line = |rev: i64, event: &str| {
        format!(
            r#"{{"Header":{{"cluster_id":{},"member_id":{},"revision":{rev},"raft_term":{}}},"Events":[{event}],"CompactRevision":0,"Canceled":false,"Created":false}}"#,
            ids.0, ids.1, ids.2
        )
    };
    let got: Vec<String> = (0..4).map(|_| range.line()).collect();
    assert_eq!(
        got,
        [
            json_line(first, &format!(r#"{{"kv":{{"key":"Zm9v","create_revision":{foo_created},"mod_revision":{first},"version":{},"value":"YmFy"}}}}"#, foo_version + 1)),
            json_line(first + 1, &format!(r#"{{"type":1,"kv":{{"key":"Zm9v","mod_revision":{}}}}}"#, first + 1)),
            json_line(first + 2, &format!(r#"{{"kv":{{"key":"Zm9v","create_revision":{0},"mod_revision":{0},"version":1,"value":"eCB5"}}}}"#, first + 2)),
            json_line(first + 4, &format!(r#"{{"kv":{{"key":"ZnA=","create_revision":{0},"mod_revision":{0},"version":1,"value":"djE="}}}}"#, first + 4)),
        ]
    );

    // From a past revision, with the previous values: history, then live.
    let history = Etcdctl::watch(&s, &["--prefix", "f", "--prev-kv", "--rev", &first.to_string()]);
    history.expect(&[
        "PUT", "foo", "ready", "foo", "bar", //
        "DELETE", "foo", "bar", "foo", "", //
        "PUT", "foo", "x y", //
        "PUT", "fzz", "out of range", //
        "PUT", "fp", "v1",
    ]);
    put(&s, "fp", "v2");
    history.expect(&["PUT", "fp", "v1", "fp", "v2"]);

    // Killing the clients closes their streams on the server.
    drop(plain);
    drop(range);
    drop(history);
    await_streams_closed(&s, 3);
}

/// A watch from a compacted revision: etcdctl prints etcd's cancel reason and
/// exits 5 (ExitInterrupted), as against etcd 3.4.23.
#[test]
fn etcdctl_watch_from_a_compacted_revision_exits_as_against_etcd() {
    let s = Server::start(&[]);
    put(&s, "foo", "a");
    let r = put(&s, "foo", "b");
    compact(&s, r);
    let w = Etcdctl::watch(&s, &["foo", "--rev", "2"]);
    let (code, stderr) = w.exit();
    assert_eq!(code, 5);
    assert_eq!(
        stderr,
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
         Error: watch is canceled by the server\n"
    );
    let w = Etcdctl::watch(&s, &["foo", "--rev", "2", "-w", "json"]);
    let line = w.line();
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(
        (&v["Events"], &v["CompactRevision"], &v["Canceled"], &v["Created"]),
        (&json!([]), &json!(r), &json!(true), &json!(false)),
        "{line}"
    );
    assert_eq!(v["Header"].get("revision"), None, "a compaction cancel has no revision: {line}");
    assert_eq!(w.exit().0, 5);
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

fn create(key: &str, f: impl FnOnce(&mut pb::WatchCreateRequest)) -> pb::WatchRequest {
    let mut c = pb::WatchCreateRequest { key: key.into(), ..Default::default() };
    f(&mut c);
    pb::WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) }
}

fn cancel(watch_id: i64) -> pb::WatchRequest {
    pb::WatchRequest { request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id })) }
}

/// The generated tonic client on one bidirectional stream: created answers with
/// etcd's automatic ids, events per watcher, a cancel, a compacted start (created,
/// then canceled with the compact revision); the client half-closing its side
/// does not end the stream (as etcd), dropping the call closes it on the server.
#[test]
fn tonic_client_sees_created_events_and_cancel() {
    let s = Server::start(&["--log-level", "debug"]);
    block_on(async {
        let channel = Channel::from_shared(s.endpoint.clone()).expect("endpoint").connect().await.expect("connect");
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut stream = WatchClient::new(channel).watch(rx).await.expect("watch call").into_inner();
        macro_rules! next {
            () => {
                tokio::time::timeout(LINE_TIMEOUT, stream.message())
                    .await
                    .expect("an answer within the deadline")
                    .expect("a good stream")
                    .expect("the stream goes on")
            };
        }

        tx.unbounded_send(create("k", |_| {})).unwrap();
        let created = next!();
        assert!(created.created && !created.canceled && created.watch_id == 0, "{created:?}");
        let header = created.header.expect("header");
        assert!(header.cluster_id != 0 && header.member_id != 0 && header.raft_term >= 1 && header.revision == 1);

        tx.unbounded_send(create("z", |c| c.prev_kv = true)).unwrap();
        let created = next!();
        assert!(created.created && created.watch_id == 1, "{created:?}");

        let r = put(&s, "k", "v1");
        let got = next!();
        assert_eq!((got.watch_id, got.header.as_ref().unwrap().revision, got.events.len()), (0, r, 1), "{got:?}");
        let kv = got.events[0].kv.as_ref().unwrap();
        assert_eq!((kv.key.as_slice(), kv.value.as_slice(), kv.mod_revision), (&b"k"[..], &b"v1"[..], r));

        tx.unbounded_send(cancel(0)).unwrap();
        let canceled = next!();
        assert!(canceled.canceled && !canceled.created && canceled.watch_id == 0, "{canceled:?}");

        put(&s, "k", "v2"); // no watcher left on k
        put(&s, "z", "z1");
        let r = put(&s, "z", "z2");
        let got = next!();
        assert_eq!(got.watch_id, 1, "{got:?}");
        let got = if got.header.as_ref().unwrap().revision < r { next!() } else { got };
        assert_eq!((got.watch_id, got.header.as_ref().unwrap().revision), (1, r), "{got:?}");
        let prev = got.events[0].prev_kv.as_ref().expect("prev_kv asked for");
        assert_eq!(prev.value, b"z1");

        // A start below the compaction: created, then canceled with etcd's figure.
        compact(&s, r);
        tx.unbounded_send(create("k", |c| c.start_revision = 2)).unwrap();
        let created = next!();
        assert!(created.created && !created.canceled && created.watch_id == 2, "{created:?}");
        let canceled = next!();
        assert!(canceled.canceled && canceled.watch_id == 2 && canceled.compact_revision == r, "{canceled:?}");

        // Half-close: etcd goes on sending to the watchers already there.
        drop(tx);
        let r = put(&s, "z", "z3");
        let got = next!();
        assert_eq!((got.watch_id, got.header.as_ref().unwrap().revision), (1, r), "{got:?}");
        drop(stream);
    });
    await_streams_closed(&s, 1);
}
