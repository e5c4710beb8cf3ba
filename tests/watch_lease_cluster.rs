//! Watch and lease guarantees on a 3-member loopback cluster, under leader and
//! member kills (etcd's robustness checks, at the client edge):
//! - a watcher on a follower sees every event of a concurrent write loop exactly
//!   once, in revision order, across a leader kill and restart and the death of
//!   its own member (it reconnects elsewhere from its last revision + 1, as
//!   clientv3 resumes a watch);
//! - the keys of an expired lease are deleted on every member in one revision,
//!   the same on all (read from each member's own watch history);
//! - a lease kept alive while its leader is killed survives the failover.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{b64, Cluster};
use serde_json::{json, Value};

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// A gateway call that may fail (the member may be dead): `None` on a transport
/// error or a non-200 answer.
fn try_post(endpoint: &str, path: &str, body: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.post(&format!("{endpoint}{path}")).content_type("application/json").send(body).ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
}

/// One watch event as the test records it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    revision: i64,
    key: String,
    delete: bool,
}

/// Reads one `POST /v3/watch` stream from `endpoint`, sending its events (in
/// arrival order) to `events`; returns when the stream ends or breaks.
fn read_watch(endpoint: &str, key: &str, range_end: &str, start_revision: i64, events: &mpsc::Sender<Seen>) -> Option<i64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = json!({"create_request": {"key": b64(key), "range_end": b64(range_end), "start_revision": start_revision.to_string()}});
    let resp = agent.post(&format!("{endpoint}/v3/watch")).content_type("application/json").send(body.to_string()).ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let mut last = None;
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return last,
            Ok(_) => {}
        }
        let Ok(frame) = serde_json::from_str::<Value>(&line) else { return last };
        let result = &frame["result"];
        assert!(result["canceled"] != json!(true), "watch canceled by {endpoint}: {frame}");
        for ev in result["events"].as_array().into_iter().flatten() {
            let revision = num(&ev["kv"]["mod_revision"]);
            let key = ev["kv"]["key"].as_str().map(|k| {
                use base64::Engine;
                String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(k).unwrap_or_default()).into_owned()
            });
            let seen = Seen { revision, key: key.unwrap_or_default(), delete: ev["type"] == json!("DELETE") };
            last = Some(revision);
            if events.send(seen).is_err() {
                return last;
            }
        }
    }
}

/// A watch client as clientv3 keeps one: on `endpoints[0]` first; when its
/// stream breaks (its member died), on the next member, from the revision after
/// the last one it saw.
fn follow(endpoints: Vec<String>, key: &str, range_end: &str, start_revision: i64, stop: Arc<AtomicBool>) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    let (key, range_end) = (key.to_string(), range_end.to_string());
    std::thread::spawn(move || {
        let mut next = start_revision;
        let mut member = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(last) = read_watch(&endpoints[member % endpoints.len()], &key, &range_end, next, &tx) {
                next = last + 1;
            }
            member += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    rx
}

#[test]
fn a_follower_watcher_sees_every_write_once_in_order_across_leader_and_member_kills() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let watched = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint.clone()).collect();
    let base = try_post(&endpoints[watched], "/v3/kv/put", &json!({"key": b64("base"), "value": b64("0")}).to_string())
        .expect("first write");
    let base_rev = num(&base["header"]["revision"]);

    let stop = Arc::new(AtomicBool::new(false));
    let watcher_order = vec![endpoints[watched].clone(), endpoints[other].clone(), endpoints[leader].clone()];
    let events = follow(watcher_order, "loop/", "loop0", base_rev + 1, stop.clone());

    // The write loop: every member in turn, a dead one skipped.
    let writer = {
        let (endpoints, stop) = (endpoints.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let key = format!("loop/{i:06}");
                let body = json!({"key": b64(&key), "value": b64("v")}).to_string();
                if let Some(resp) = try_post(&endpoints[i % 3], "/v3/kv/put", &body) {
                    acked.push((key, num(&resp["header"]["revision"])));
                }
                i += 1;
            }
            acked
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(700));
    pause();
    c.members[leader].kill9();
    c.wait_leader(Duration::from_secs(20));
    pause();
    c.members[leader].restart();
    pause();
    // The watcher's own member dies: the watcher moves on from its last revision.
    c.members[watched].kill9();
    c.wait_leader(Duration::from_secs(20));
    pause();
    c.members[watched].restart();
    pause();
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer");
    assert!(acked.len() > 50, "too few writes acknowledged: {}", acked.len());

    // A last write marks the end: every revision up to it must be seen.
    let end = (0..3)
        .find_map(|i| try_post(&endpoints[i], "/v3/kv/put", &json!({"key": b64("loop/~end"), "value": b64("e")}).to_string()))
        .expect("a member takes the last write");
    let end_rev = num(&end["header"]["revision"]);
    let mut seen: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last().map(|s| s.revision) != Some(end_rev) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = events.recv_timeout(left).unwrap_or_else(|_| {
            panic!("watcher stopped at revision {:?} of {end_rev}", seen.last().map(|s| s.revision))
        });
        seen.push(ev);
    }
    // Exactly once, in order: one event per revision, every revision between
    // the first write and the last (only this loop writes under loop/).
    let revisions: Vec<i64> = seen.iter().map(|s| s.revision).collect();
    let expected: Vec<i64> = (base_rev + 1..=end_rev).collect();
    assert_eq!(revisions.len(), expected.len(), "duplicates or gaps in the watched revisions");
    assert_eq!(revisions, expected, "events out of order, duplicated or missing");
    assert!(seen.iter().all(|s| !s.delete && s.key.starts_with("loop/")));
    // Every acknowledged write is the event at its revision.
    for (key, rev) in &acked {
        let at = &seen[(rev - base_rev - 1) as usize];
        assert_eq!((&at.key, at.revision), (key, *rev), "acknowledged write not seen at its revision");
    }
}

#[test]
fn an_expired_lease_deletes_its_keys_in_one_revision_on_every_member() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let granted = try_post(&c.members[leader].endpoint, "/v3/lease/grant", r#"{"TTL":"3"}"#).expect("grant");
    let id = num(&granted["ID"]);
    let mut put_rev = 0;
    for (i, m) in c.members.iter().enumerate() {
        let body = json!({"key": b64(&format!("leased/{i}")), "value": b64("v"), "lease": id.to_string()}).to_string();
        put_rev = num(&try_post(&m.endpoint, "/v3/kv/put", &body).expect("put")["header"]["revision"]);
    }
    // Each member's own history from after the puts: the three deletes.
    let mut delete_revisions = Vec::new();
    for m in &c.members {
        let (tx, rx) = mpsc::channel();
        let endpoint = m.endpoint.clone();
        std::thread::spawn(move || read_watch(&endpoint, "leased/", "leased0", put_rev + 1, &tx));
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            let ev = rx.recv_timeout(Duration::from_secs(20)).expect("the lease's keys are deleted on every member");
            assert!(ev.delete, "only deletes follow the puts: {ev:?}");
            deletes.push(ev);
        }
        let mut keys: Vec<&str> = deletes.iter().map(|d| d.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["leased/0", "leased/1", "leased/2"]);
        assert!(deletes.iter().all(|d| d.revision == deletes[0].revision), "one revision deletes them all: {deletes:?}");
        delete_revisions.push(deletes[0].revision);
    }
    assert!(delete_revisions.iter().all(|r| *r == delete_revisions[0]), "members disagree: {delete_revisions:?}");
    assert_eq!(delete_revisions[0], put_rev + 1, "the expiry is the next write");
}

#[test]
fn a_lease_kept_alive_survives_the_death_of_its_leader() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint.clone()).collect();
    let granted = try_post(&endpoints[follower], "/v3/lease/grant", r#"{"TTL":"4"}"#).expect("grant");
    let id = num(&granted["ID"]);
    let body = json!({"key": b64("session"), "value": b64("alive"), "lease": id.to_string()}).to_string();
    try_post(&endpoints[follower], "/v3/kv/put", &body).expect("put");

    // The keep-alive client: every 500 ms, to one of the followers in turn,
    // each waiting for its answer (as steadctl's session does). One sent to a
    // follower as its leader dies is retried there against the new leader.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (endpoints, stop) = (endpoints.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ttls = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let ep = &endpoints[(leader + 1 + i % 2) % 3];
                if let Some(resp) = try_post(ep, "/v3/lease/keepalive", &format!(r#"{{"ID":"{id}"}}"#)) {
                    ttls.push(num(&resp["result"]["TTL"]));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            ttls
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    c.members[leader].kill9();
    let new_leader = c.wait_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    // Longer than the TTL under the new leader.
    std::thread::sleep(Duration::from_secs(6));
    let ttl = try_post(&endpoints[new_leader], "/v3/lease/timetolive", &format!(r#"{{"ID":"{id}","keys":true}}"#))
        .expect("timetolive");

    assert!(num(&ttl["TTL"]) > 0, "lease expired under the new leader: {ttl}");
    assert_eq!(ttl["keys"], json!([b64("session")]));
    for (i, ep) in endpoints.iter().enumerate().filter(|(i, _)| *i != leader) {
        let got = try_post(ep, "/v3/kv/range", &json!({"key": b64("session"), "serializable": true}).to_string())
            .expect("range");
        assert_eq!(got["kvs"][0]["value"], json!(b64("alive")), "member {i} lost the key: {got}");
    }
    stop.store(true, Ordering::Relaxed);
    let ttls = keeper.join().expect("keeper");
    assert!(ttls.len() > 10, "too few keep-alives answered: {ttls:?}");
    assert!(ttls.iter().all(|ttl| *ttl == 4), "a keep-alive found the lease gone: {ttls:?}");
}
