//! etcd's lock and election services (`v3lockpb.Lock`, `v3electionpb.Election`)
//! on the JSON gateway and gRPC, and `steadctl lock` / `steadctl elect` on a
//! 3-member cluster. Expected answers and error texts are etcd 3.4.23's for the
//! same requests (recorded with curl and etcdctl against a real etcd); the
//! cluster ids in headers aside.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{b64, post, Cluster, Server, Spawned};
use serde_json::{json, Value};
use stead::proto::v3electionpb as epb;
use stead::proto::v3electionpb::election_client::ElectionClient;
use stead::proto::v3lockpb;
use stead::proto::v3lockpb::lock_client::LockClient;

/// How long anything expected may take to happen.
const WAIT: Duration = Duration::from_secs(15);
/// How long something that must not happen (yet) is given to happen anyway.
const QUIET: Duration = Duration::from_millis(1500);

fn num(v: &Value) -> i64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64()).unwrap_or(0)
}

fn grant(s: &Server, id: i64, ttl: i64) {
    let (code, body) = s.post("/v3/lease/grant", &format!(r#"{{"ID":"{id}","TTL":"{ttl}"}}"#));
    assert_eq!(code, 200, "{body}");
}

/// A gateway call on its own thread: its answer arrives on the channel.
fn post_in_background(endpoint: &str, path: &'static str, body: Value) -> mpsc::Receiver<(u16, Value)> {
    let (tx, rx) = mpsc::channel();
    let endpoint = endpoint.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(post(&endpoint, path, &body.to_string()));
    });
    rx
}

fn keys_under(s: &Server, prefix: &str, end: &str) -> Vec<String> {
    keys_under_at(&s.endpoint, prefix, end)
}

fn keys_under_at(endpoint: &str, prefix: &str, end: &str) -> Vec<String> {
    let (_, got) = post(endpoint, "/v3/kv/range", &json!({"key": b64(prefix), "range_end": b64(end), "keys_only": true}).to_string());
    got["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(kv["key"].as_str().unwrap_or_default()).unwrap_or_default();
            String::from_utf8_lossy(&raw).into_owned()
        })
        .collect()
}

/// Polls until `cond` holds (bounded by `WAIT`).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error body etcd's gateway gives for an error of its recipe servers: HTTP
/// 500, code 2 (Unknown), the text twice.
fn assert_recipe_error(answer: (u16, Value), text: &str) {
    assert_eq!(answer, (500, json!({"error": text, "message": text, "code": 2})));
}

#[test]
fn gateway_lock_waits_for_older_keys_and_answers_as_etcd() {
    let s = Server::start(&[]);
    grant(&s, 100, 30);
    grant(&s, 200, 30);
    // Uncontended: the key is NAME/<lease in hex>, the header the put's.
    let (code, first) = s.post("/v3/lock/lock", &json!({"name": b64("my"), "lease": "100"}).to_string());
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["key"], json!(b64("my/64")));
    let lock_rev = num(&first["header"]["revision"]);
    // The same lease again: the same key, already held (etcd re-finds it).
    let (_, again) = s.post("/v3/lock/lock", &json!({"name": b64("my"), "lease": "100"}).to_string());
    assert_eq!((again["key"].clone(), num(&again["header"]["revision"])), (json!(b64("my/64")), lock_rev));

    let waiter = post_in_background(&s.endpoint, "/v3/lock/lock", json!({"name": b64("my"), "lease": "200"}));
    assert!(waiter.recv_timeout(QUIET).is_err(), "the second locker must wait for the first");
    assert_eq!(keys_under(&s, "my/", "my0"), ["my/64", "my/c8"]);
    let (code, unlocked) = s.post("/v3/lock/unlock", &json!({"key": b64("my/64")}).to_string());
    assert_eq!(code, 200, "{unlocked}");
    let (code, second) = waiter.recv_timeout(WAIT).expect("the waiter gets the lock once the holder unlocks");
    assert_eq!(code, 200, "{second}");
    assert_eq!(second["key"], json!(b64("my/c8")));
    assert_eq!(num(&second["header"]["revision"]), num(&unlocked["header"]["revision"]));

    // Errors, as etcd's gateway answers them.
    assert_recipe_error(
        s.post("/v3/lock/lock", &json!({"name": b64("my"), "lease": "12345"}).to_string()),
        "etcdserver: requested lease not found",
    );
    assert_recipe_error(s.post("/v3/lock/unlock", "{}"), "etcdserver: key is not provided");
    // No lease: a fresh one of etcd's session TTL (60 s) is granted for it.
    let (code, fresh) = s.post("/v3/lock/lock", &json!({"name": b64("free")}).to_string());
    assert_eq!(code, 200, "{fresh}");
    let (_, leases) = s.post("/v3/lease/leases", "{}");
    assert_eq!(leases["leases"].as_array().map(Vec::len), Some(3), "{leases}");
}

#[test]
fn a_waiter_whose_client_leaves_or_whose_lease_expires_is_removed() {
    let s = Server::start(&[]);
    grant(&s, 100, 60);
    grant(&s, 300, 60);
    grant(&s, 400, 2);
    let (code, _) = s.post("/v3/lock/lock", &json!({"name": b64("w"), "lease": "100"}).to_string());
    assert_eq!(code, 200);

    // A client that goes away while waiting: its key is deleted.
    let body = json!({"name": b64("w"), "lease": "300"}).to_string();
    let mut conn = TcpStream::connect(s.host_port()).expect("connect");
    write!(
        conn,
        "POST /v3/lock/lock HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.host_port(),
        body.len()
    )
    .expect("send");
    eventually("the waiter's key is put", || keys_under(&s, "w/", "w0").len() == 2);
    drop(conn);
    eventually("the waiter's key is deleted once its client is gone", || keys_under(&s, "w/", "w0") == ["w/64"]);

    // A waiter whose lease expires: its wait fails instead of lasting for ever.
    let waiter = post_in_background(&s.endpoint, "/v3/lock/lock", json!({"name": b64("w"), "lease": "400"}));
    let (code, answer) = waiter.recv_timeout(WAIT).expect("the wait ends when the lease expires");
    assert_eq!(code, 500, "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("w/190 was deleted while waiting")), "{answer}");
    assert_eq!(keys_under(&s, "w/", "w0"), ["w/64"]);
}

#[test]
fn gateway_election_campaign_proclaim_leader_observe_resign_as_etcd() {
    let s = Server::start(&[]);
    grant(&s, 100, 60);
    grant(&s, 300, 60);
    assert_recipe_error(s.post("/v3/election/leader", &json!({"name": b64("el")}).to_string()), "election: no leader");
    assert_recipe_error(s.post("/v3/election/proclaim", r#"{"value":"eA=="}"#), "\"leader\" field must be provided");
    assert_recipe_error(s.post("/v3/election/resign", "{}"), "\"leader\" field must be provided");

    // Observe before anyone campaigns: the first leader, then each change.
    let mut observer = TcpStream::connect(s.host_port()).expect("connect");
    let body = json!({"name": b64("el")}).to_string();
    write!(
        observer,
        "POST /v3/election/observe HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.host_port(),
        body.len()
    )
    .expect("send");
    observer.set_read_timeout(Some(WAIT)).ok();
    let mut observed = BufReader::new(observer);
    let mut next_leader = move || -> (String, String) {
        // Chunked framing: size lines and blank lines are skipped.
        loop {
            let mut line = String::new();
            observed.read_line(&mut line).expect("an observed leader");
            if let Ok(frame) = serde_json::from_str::<Value>(line.trim()) {
                let kv = &frame["result"]["kv"];
                return (kv["key"].as_str().unwrap_or_default().into(), kv["value"].as_str().unwrap_or_default().into());
            }
        }
    };

    let (code, elected) =
        s.post("/v3/election/campaign", &json!({"name": b64("el"), "lease": "100", "value": b64("v1")}).to_string());
    assert_eq!(code, 200, "{elected}");
    let rev = num(&elected["leader"]["rev"]);
    assert_eq!(
        elected["leader"],
        json!({"name": b64("el"), "key": b64("el/64"), "rev": rev.to_string(), "lease": "100"})
    );
    assert_eq!(next_leader(), (b64("el/64"), b64("v1")));
    let second = post_in_background(
        &s.endpoint,
        "/v3/election/campaign",
        json!({"name": b64("el"), "lease": "300", "value": b64("v2")}),
    );
    let leader_key = json!({"name": b64("el"), "key": b64("el/64"), "rev": rev.to_string(), "lease": "100"});
    assert_recipe_error(
        s.post("/v3/election/proclaim", &json!({"leader": {"name": b64("el"), "key": b64("el/64"), "rev": (rev + 1).to_string(), "lease": "100"}, "value": b64("x")}).to_string()),
        "election: not leader",
    );
    let (code, _) = s.post("/v3/election/proclaim", &json!({"leader": leader_key, "value": b64("v1b")}).to_string());
    assert_eq!(code, 200);
    assert_eq!(next_leader(), (b64("el/64"), b64("v1b")));
    let (_, leader) = s.post("/v3/election/leader", &json!({"name": b64("el")}).to_string());
    assert_eq!((leader["kv"]["key"].clone(), leader["kv"]["value"].clone()), (json!(b64("el/64")), json!(b64("v1b"))));
    assert!(second.recv_timeout(QUIET).is_err(), "the second campaigner waits while the first leads");

    let (code, _) = s.post("/v3/election/resign", &json!({"leader": leader_key}).to_string());
    assert_eq!(code, 200);
    let (code, second) = second.recv_timeout(WAIT).expect("the second campaigner leads after the resign");
    assert_eq!(code, 200, "{second}");
    assert_eq!(second["leader"]["key"], json!(b64("el/12c")));
    assert_eq!(next_leader(), (b64("el/12c"), b64("v2")));
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// gRPC: etcd's services by their names; errors are Unknown with etcd's text; a
/// Lock call the client abandons leaves no waiter behind.
#[test]
fn grpc_lock_and_election() {
    let s = Server::start(&[]);
    grant(&s, 100, 60);
    grant(&s, 200, 60);
    block_on(async {
        let channel = tonic::transport::Channel::from_shared(s.endpoint.clone()).expect("endpoint").connect().await.expect("connect");
        let mut locks = LockClient::new(channel.clone());
        let mut elections = ElectionClient::new(channel);
        let held = locks.lock(v3lockpb::LockRequest { name: b"g".to_vec(), lease: 100 }).await.expect("lock").into_inner();
        assert_eq!(held.key, b"g/64");
        // A second locker gives up waiting (its call is dropped): its key goes.
        let waiting = locks.lock(v3lockpb::LockRequest { name: b"g".to_vec(), lease: 200 });
        assert!(tokio::time::timeout(QUIET, waiting).await.is_err(), "the second locker must wait");
        let endpoint = s.endpoint.clone();
        tokio::task::spawn_blocking(move || {
            eventually("the abandoned waiter's key is deleted", || keys_under_at(&endpoint, "g/", "g0") == ["g/64"])
        })
        .await
        .expect("check");
        let none = elections.leader(epb::LeaderRequest { name: b"nobody".to_vec() }).await.expect_err("no leader");
        assert_eq!((none.code(), none.message()), (tonic::Code::Unknown, "election: no leader"));
        let missing = locks.lock(v3lockpb::LockRequest { name: b"g".to_vec(), lease: 999 }).await.expect_err("no such lease");
        assert_eq!((missing.code(), missing.message()), (tonic::Code::Unknown, "etcdserver: requested lease not found"));
    });
}

/// A running steadctl.
struct Running(Spawned);

impl Running {
    fn start(endpoint: &str, args: &[&str]) -> Running {
        Running(Spawned::start(
            Command::new(env!("CARGO_BIN_EXE_steadctl"))
                .arg(format!("--endpoints={endpoint}"))
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit()),
        ))
    }

    fn line(&self) -> String {
        self.0.lines.recv_timeout(WAIT).expect("a line of output")
    }

    fn quiet(&self) -> bool {
        self.0.lines.recv_timeout(QUIET).is_err()
    }

    /// SIGINT (as Ctrl-C), then the exit code.
    fn interrupt(mut self) -> i32 {
        let pid = self.0.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        self.wait()
    }

    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "steadctl did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn steadctl_lock_excludes_a_second_locker_until_the_first_exits() {
    let c = Cluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let (a, b) = (c.members[0].host_port(), c.members[1].host_port());
    let first = Running::start(&a, &["lock", "--ttl", "5", "job"]);
    let key = first.line();
    assert!(key.starts_with("job/") && key.len() > 4, "{key}");
    assert_eq!(first.line(), "", "the lock key is printed as get prints it (empty value)");
    let second = Running::start(&b, &["lock", "job", "--", "sh", "-c", "echo got $ETCD_LOCK_KEY"]);
    assert!(second.quiet(), "the second locker ran while the first held the lock");
    // The first holds the lock longer than its session TTL: it is kept alive.
    std::thread::sleep(Duration::from_secs(6));
    assert!(second.quiet(), "the first's session expired while it held the lock");
    assert_eq!(first.interrupt(), 0, "SIGINT unlocks and exits 0");
    let got = second.line();
    assert!(got.starts_with("got job/") && got != format!("got {key}"), "{got}");
    let mut second = second;
    assert_eq!(second.wait(), 0);
    // Both unlocked: nothing left under the lock's prefix.
    eventually("no lock keys left", || keys_under(&c.members[2], "job/", "job0").is_empty());

    // A holder killed outright: the next locker gets the lock once the
    // session lease expires.
    let third = Running::start(&a, &["lock", "--ttl", "3", "job"]);
    third.line();
    let fourth = Running::start(&b, &["lock", "job", "--", "echo", "fourth"]);
    drop(third);
    assert_eq!(fourth.line(), "fourth");
}

#[test]
fn steadctl_elect_second_campaigner_leads_after_the_first_resigns() {
    let c = Cluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    let endpoints: Vec<String> = c.members.iter().map(|m| m.host_port()).collect();
    let observer = Running::start(&endpoints[2], &["elect", "-l", "pick"]);
    let first = Running::start(&endpoints[0], &["elect", "pick", "p1"]);
    let first_key = first.line();
    assert!(first_key.starts_with("pick/"), "{first_key}");
    assert_eq!(first.line(), "p1");
    assert_eq!((observer.line(), observer.line()), (first_key.clone(), "p1".to_string()));
    let second = Running::start(&endpoints[1], &["elect", "pick", "p2"]);
    assert!(second.quiet(), "the second campaigner led while the first did");
    assert_eq!(first.interrupt(), 0, "SIGINT resigns and exits 0");
    let second_key = second.line();
    assert!(second_key.starts_with("pick/") && second_key != first_key, "{second_key}");
    assert_eq!(second.line(), "p2");
    assert_eq!((observer.line(), observer.line()), (second_key, "p2".to_string()));
    let (_, leader) = c.members[0].post("/v3/election/leader", &json!({"name": b64("pick")}).to_string());
    assert_eq!(leader["kv"]["value"], json!(b64("p2")));
    assert_eq!(second.interrupt(), 0);
    assert_eq!(observer.interrupt(), 0, "the observer exits 0 on SIGINT");
}

/// etcdctl's lock (clientv3's Mutex over KV, Watch and Lease gRPC) and
/// steadctl's (the server's Lock service) use the same keys, so each excludes
/// the other on a stead member.
#[test]
fn etcdctl_and_steadctl_locks_exclude_each_other() {
    let s = Server::start(&[]);
    let etcdctl = Running(Spawned::start(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", s.host_port()))
            .args(["lock", "shared"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit()),
    ));
    let key = etcdctl.line();
    assert!(key.starts_with("shared/"), "{key}");
    let steadctl = Running::start(&s.host_port(), &["lock", "shared", "--", "echo", "steadctl holds it"]);
    assert!(steadctl.quiet(), "steadctl got the lock etcdctl holds");
    assert_eq!(etcdctl.interrupt(), 0);
    assert_eq!(steadctl.line(), "steadctl holds it");
}
