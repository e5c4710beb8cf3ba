//! Leases end to end: grant, attach, TimeToLive with keys, revoke in one revision,
//! expiry through Raft on every member, keep-alive (on the leader and through a
//! follower), restart, and etcdctl 3.4.23 over gRPC printing what etcd prints.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{b64, post, Cluster, Server};
use serde_json::Value;

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
        Value::Number(n) => n.as_i64().expect("i64"),
        Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}

fn grant(endpoint: &str, ttl: i64) -> i64 {
    let (status, body) = post(endpoint, "/v3/lease/grant", &format!(r#"{{"TTL":"{ttl}"}}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(num(&body["TTL"]), ttl);
    num(&body["ID"])
}

fn put(endpoint: &str, key: &str, lease: i64) -> i64 {
    let body = format!(r#"{{"key":"{}","value":"{}","lease":"{lease}"}}"#, b64(key), b64("v"));
    let (status, body) = post(endpoint, "/v3/kv/put", &body);
    assert_eq!(status, 200, "{body}");
    num(&body["header"]["revision"])
}

/// (revision, keys) of every key, served locally (serializable).
fn all_keys(endpoint: &str) -> (i64, Vec<String>) {
    let body = format!(r#"{{"key":"{}","range_end":"{}","serializable":true}}"#, b64("\0"), b64("\0"));
    let (status, body) = post(endpoint, "/v3/kv/range", &body);
    assert_eq!(status, 200, "{body}");
    let keys = body["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    use base64::Engine;
                    let raw = base64::engine::general_purpose::STANDARD.decode(kv["key"].as_str().unwrap()).unwrap();
                    String::from_utf8(raw).unwrap()
                })
                .collect()
        })
        .unwrap_or_default();
    (num(&body["header"]["revision"]), keys)
}

fn time_to_live(endpoint: &str, id: i64) -> Value {
    let (status, body) = post(endpoint, "/v3/lease/timetolive", &format!(r#"{{"ID":"{id}","keys":true}}"#));
    assert_eq!(status, 200, "{body}");
    body
}

fn keep_alive(endpoint: &str, id: i64) -> i64 {
    let (status, body) = post(endpoint, "/v3/lease/keepalive", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(status, 200, "{body}");
    num(&body["result"]["TTL"])
}

#[test]
fn grant_attach_time_to_live_and_revoke_in_one_revision() {
    let s = Server::start(&[]);
    let id = grant(&s.endpoint, 60);
    put(&s.endpoint, "a", id);
    let rev = put(&s.endpoint, "b", id);
    put(&s.endpoint, "c", 0);

    let ttl = time_to_live(&s.endpoint, id);
    assert_eq!(num(&ttl["grantedTTL"]), 60);
    assert!((58..=60).contains(&num(&ttl["TTL"])), "{ttl}");
    assert_eq!(ttl["keys"], serde_json::json!([b64("a"), b64("b")]));

    // A put without the lease detaches its key.
    put(&s.endpoint, "b", 0);
    let ttl = time_to_live(&s.endpoint, id);
    assert_eq!(ttl["keys"], serde_json::json!([b64("a")]));
    put(&s.endpoint, "b", id);

    // Errors as etcd's.
    let (status, body) = post(&s.endpoint, "/v3/lease/grant", &format!(r#"{{"TTL":"5","ID":"{id}"}}"#));
    assert_eq!((status, body["error"].as_str()), (400, Some("etcdserver: lease already exists")));
    let (status, body) = post(&s.endpoint, "/v3/kv/put", &format!(r#"{{"key":"{}","lease":"12345"}}"#, b64("x")));
    assert_eq!((status, body["error"].as_str()), (404, Some("etcdserver: requested lease not found")));
    let (status, body) = post(&s.endpoint, "/v3/lease/grant", r#"{"TTL":"9000000001"}"#);
    assert_eq!((status, body["error"].as_str()), (400, Some("etcdserver: too large lease TTL")));
    // TTL 0/1 become the minimum (2 s with the default election timeout).
    let (_, body) = post(&s.endpoint, "/v3/lease/grant", r#"{"TTL":"1"}"#);
    assert_eq!(num(&body["TTL"]), 2);

    let (before, _) = all_keys(&s.endpoint);
    assert!(before > rev);
    let (status, body) = post(&s.endpoint, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(status, 200, "{body}");
    let revoked_at = num(&body["header"]["revision"]);
    assert_eq!(revoked_at, before + 1, "both keys deleted in ONE revision");
    let (after, keys) = all_keys(&s.endpoint);
    assert_eq!(after, revoked_at);
    assert_eq!(keys, vec!["c".to_string()]);
    let ttl = time_to_live(&s.endpoint, id);
    assert_eq!(num(&ttl["TTL"]), -1);
    let (status, body) = post(&s.endpoint, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!((status, body["error"].as_str()), (404, Some("etcdserver: requested lease not found")));
    assert_eq!(keep_alive(&s.endpoint, id), 0, "keep-alive on an unknown lease answers TTL 0");
}

#[test]
fn leases_and_their_keys_survive_a_restart() {
    let mut s = Server::start(&[]);
    let id = grant(&s.endpoint, 100);
    put(&s.endpoint, "k1", id);
    put(&s.endpoint, "k2", id);
    s.restart();
    let ttl = time_to_live(&s.endpoint, id);
    assert_eq!(num(&ttl["grantedTTL"]), 100);
    assert!(num(&ttl["TTL"]) > 90, "{ttl}");
    assert_eq!(ttl["keys"], serde_json::json!([b64("k1"), b64("k2")]));
    let (_, list) = s.post("/v3/lease/leases", "{}");
    assert_eq!(list["leases"], serde_json::json!([{"ID": id.to_string()}]));
    // Revoke after the restart still finds the keys (re-attached on load).
    let (status, _) = s.post("/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(status, 200);
    assert!(all_keys(&s.endpoint).1.is_empty());
}

#[test]
fn keep_alive_keeps_a_lease_past_its_ttl_then_it_expires() {
    let s = Server::start(&[]);
    let id = grant(&s.endpoint, 2);
    put(&s.endpoint, "alive", id);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(keep_alive(&s.endpoint, id), 2);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(all_keys(&s.endpoint).1, vec!["alive".to_string()]);
    let deadline = Instant::now() + Duration::from_secs(6);
    while !all_keys(&s.endpoint).1.is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(num(&time_to_live(&s.endpoint, id)["TTL"]), -1);
}

#[test]
fn expiry_deletes_keys_on_every_member_at_the_same_revision_and_followers_keep_alive() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = &c.members[(leader + 1) % 3].endpoint;

    // Kept alive through a follower (renewed through the log) past its TTL.
    let kept = grant(follower, 2);
    put(follower, "kept", kept);
    // Left alone: expires.
    let id = grant(&c.members[leader].endpoint, 2);
    put(follower, "gone1", id);
    put(follower, "gone2", id);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(keep_alive(follower, kept), 2);
        std::thread::sleep(Duration::from_millis(400));
    }
    // TimeToLive on a follower is the leader's answer.
    let ttl = time_to_live(follower, kept);
    assert_eq!(num(&ttl["grantedTTL"]), 2);
    assert_eq!(ttl["keys"], serde_json::json!([b64("kept")]));
    assert_eq!(num(&time_to_live(follower, id)["TTL"]), -1);

    // Every member: the expired keys gone, at the same revision.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let views: Vec<(i64, Vec<String>)> = c.members.iter().map(|m| all_keys(&m.endpoint)).collect();
        if views.iter().all(|v| v == &views[0]) && views[0].1 == vec!["kept".to_string()] {
            break;
        }
        assert!(Instant::now() < deadline, "members disagree or keys left: {views:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One revision deleted both: the revision before it still has both keys.
    let (rev, _) = all_keys(&c.members[0].endpoint);
    for m in &c.members {
        let body = format!(r#"{{"key":"{}","range_end":"{}","revision":"{}","serializable":true}}"#, b64("gone"), b64("gonf"), rev - 1);
        let (_, before) = m.post("/v3/kv/range", &body);
        assert_eq!(num(&before["count"]), 2, "{before}");
    }
}

/// The leader's last log index (its status, asked locally).
fn raft_index(endpoint: &str) -> i64 {
    let (status, body) = post(endpoint, "/v3/maintenance/status", "{}");
    assert_eq!(status, 200, "{body}");
    num(&body["raftIndex"])
}

#[test]
fn follower_keep_alives_are_relayed_to_the_leader_not_written_to_the_log() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let leader_endpoint = &c.members[leader].endpoint;
    let follower = &c.members[(leader + 1) % 3].endpoint;
    let id = grant(follower, 30);
    let gone = grant(follower, 30);
    let (status, body) = post(follower, "/v3/lease/revoke", &format!(r#"{{"ID":"{gone}"}}"#));
    assert_eq!(status, 200, "{body}");

    let before = raft_index(leader_endpoint);
    for _ in 0..100 {
        assert_eq!(keep_alive(follower, id), 30);
    }
    // A lease that is gone answers TTL 0 through the relay too.
    assert_eq!(keep_alive(follower, gone), 0);
    let after = raft_index(leader_endpoint);
    // Renewed through the log, 100 keep-alives would be 100 entries. What may
    // commit meanwhile: the leader's lease checkpoints (one entry per 5 s) and
    // the proposal clearing a checkpoint on the next keep-alive.
    assert!(after - before < 10, "{} entries for 100 follower keep-alives", after - before);
    let ttl = time_to_live(follower, id);
    assert!(num(&ttl["TTL"]) >= 28, "{ttl}");
}

/// A lease granted through one member is known to a keep-alive through any
/// other at once, though that member's lease actor may hear of the grant a
/// moment after the client had its answer (this failed one run in three
/// before keep-alives waited for the member to catch up before answering
/// "not found").
#[test]
fn a_lease_granted_through_one_member_is_kept_alive_through_any_other_at_once() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let leader_endpoint = &c.members[leader].endpoint;
    let follower = &c.members[(leader + 1) % 3].endpoint;
    // Writers keep the members' stores busy, which widens that moment.
    let other = &c.members[(leader + 2) % 3].endpoint;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (endpoint, stop) = (c.members[w % 3].endpoint.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    put(&endpoint, &format!("load/{w}/{}", n % 100), 0);
                    n += 1;
                }
            })
        })
        .collect();
    for round in 0..100 {
        let fresh = grant(if round % 2 == 0 { follower } else { other }, 30);
        assert_eq!(keep_alive(leader_endpoint, fresh), 30, "round {round}: the leader");
        let fresh = grant(other, 30);
        assert_eq!(keep_alive(follower, fresh), 30, "round {round}: through a follower");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
}

fn etcdctl(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", s.host_port()))
        .args(args)
        .output()
        .expect("run etcdctl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Outputs compared by hand against etcd 3.4.23 (same commands, same order).
#[test]
fn etcdctl_lease_commands_print_what_etcd_prints() {
    let s = Server::start(&[]);
    let (code, out, err) = etcdctl(&s, &["lease", "grant", "10"]);
    assert_eq!(code, 0, "{err}");
    let id_hex = out.strip_prefix("lease ").and_then(|r| r.strip_suffix(" granted with TTL(10s)\n")).unwrap_or_else(|| panic!("{out}"));
    assert!(i64::from_str_radix(id_hex, 16).is_ok(), "{out}");
    assert_eq!(etcdctl(&s, &["put", &format!("--lease={id_hex}"), "foo", "bar"]).1, "OK\n");
    assert_eq!(etcdctl(&s, &["put", &format!("--lease={id_hex}"), "zoo", "bar"]).1, "OK\n");
    let (_, out, _) = etcdctl(&s, &["lease", "timetolive", "--keys", id_hex]);
    let expect_prefix = format!("lease {id_hex} granted with TTL(10s), remaining(");
    assert!(out.starts_with(&expect_prefix) && out.ends_with("s), attached keys([foo zoo])\n"), "{out}");
    let (_, out, _) = etcdctl(&s, &["lease", "list"]);
    assert_eq!(out, format!("found 1 leases\n{id_hex}\n"));
    let (code, _, err) = etcdctl(&s, &["put", "--lease=1234", "x", "y"]);
    assert_eq!(code, 1);
    assert!(err.ends_with("Error: etcdserver: requested lease not found\n"), "{err}");
    let (_, out, _) = etcdctl(&s, &["lease", "revoke", id_hex]);
    assert_eq!(out, format!("lease {id_hex} revoked\n"));
    let (_, out, _) = etcdctl(&s, &["lease", "timetolive", id_hex]);
    assert_eq!(out, format!("lease {id_hex} already expired\n"));
    let (_, out, _) = etcdctl(&s, &["get", "--prefix", ""]);
    assert_eq!(out, "");
    let (code, _, err) = etcdctl(&s, &["lease", "revoke", id_hex]);
    assert_eq!(code, 1);
    assert!(err.ends_with("Error: failed to revoke lease (etcdserver: requested lease not found)\n"), "{err}");
    let (_, out, _) = etcdctl(&s, &["lease", "grant", "5"]);
    let id5 = out.split_whitespace().nth(1).unwrap().to_string();
    let (_, out, _) = etcdctl(&s, &["lease", "keep-alive", "--once", &id5]);
    assert_eq!(out, format!("lease {id5} keepalived with TTL(5)\n"));
    let (code, _, err) = etcdctl(&s, &["lease", "grant", "9000000001"]);
    assert_eq!(code, 1);
    assert!(err.ends_with("Error: failed to grant lease (etcdserver: too large lease TTL)\n"), "{err}");
}
