//! Replication across real `stead` processes on loopback: a statically bootstrapped
//! cluster elects a leader, every member serves every write, a killed leader is
//! replaced without losing an acknowledged write, and membership changes work as
//! etcd's Cluster API does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{b64, post, Cluster};
use serde_json::{json, Value};

fn rev(v: &Value) -> i64 {
    v["header"]["revision"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn put(endpoint: &str, key: &str, value: &str) -> (u16, Value) {
    post(endpoint, "/v3/kv/put", &json!({"key": b64(key), "value": b64(value)}).to_string())
}

fn get(endpoint: &str, key: &str, serializable: bool) -> Value {
    let (_, v) = post(endpoint, "/v3/kv/range", &json!({"key": b64(key), "serializable": serializable}).to_string());
    v
}

/// Polls a member's local (serializable) state until `key` has `value`.
fn wait_value(endpoint: &str, key: &str, value: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = get(endpoint, key, true);
        if got["kvs"][0]["value"] == json!(b64(value)) {
            return;
        }
        assert!(Instant::now() < deadline, "{endpoint} never saw {key}={value}: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_write_on_any_member_is_readable_on_all() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    for (i, writer) in cluster.members.iter().enumerate() {
        let key = format!("from-{i}");
        let (code, resp) = put(&writer.endpoint, &key, &format!("v{i}"));
        assert_eq!(code, 200, "write via member {i} (leader is {leader}): {resp}");
        for reader in &cluster.members {
            // Linearizable: the read index makes it visible at once on any member.
            let got = get(&reader.endpoint, &key, false);
            assert_eq!(got["kvs"][0]["value"], json!(b64(&format!("v{i}"))), "{got}");
        }
    }
    // Every member reports the same leader and cluster id, and its own member id.
    let (_, list) = cluster.members[0].post("/v3/cluster/member/list", "{}");
    let members = list["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{list}");
    for m in members {
        assert!(m["name"].as_str().is_some_and(|n| n.starts_with('m')), "published name: {m}");
        assert!(m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()), "published client URLs: {m}");
    }
}

#[test]
fn killing_the_leader_during_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let followers: Vec<String> =
        (0..3).filter(|i| *i != leader).map(|i| cluster.members[i].endpoint.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Writers go through the followers, which forward to whoever leads.
    let writers: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(w, endpoint)| {
            let (endpoint, stop) = (endpoint.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 5_000 {
                    let key = format!("w{w}/{i:05}");
                    let (code, resp) = put(&endpoint, &key, "x");
                    if code == 200 {
                        acked.push((key, rev(&resp)));
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    cluster.members[leader].kill9();
    let killed_at = Instant::now();
    // A new leader among the survivors within a few election timeouts (500 ms).
    let new_leader = cluster.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {:?}", killed_at.elapsed());
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, i64)> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    assert!(acked.len() > 20, "too few writes acknowledged: {}", acked.len());
    // Restart the old leader: it rejoins from its data dir and catches up.
    cluster.members[leader].restart();
    let mut last_rev = 0;
    for (key, rev_acked) in &acked {
        for m in &cluster.members {
            let got = get(&m.endpoint, key, false);
            assert_eq!(got["kvs"][0]["mod_revision"], json!(rev_acked.to_string()), "{key} lost or moved on {}: {got}", m.endpoint);
        }
        last_rev = last_rev.max(*rev_acked);
    }
    let (code, after) = put(&cluster.members[leader].endpoint, "after", "y");
    assert_eq!(code, 200, "{after}");
    assert!(rev(&after) > last_rev, "revisions went backwards after failover");
}

#[test]
fn five_members_serve_with_two_down_and_refuse_writes_with_three_down() {
    let mut cluster = Cluster::start(5, &[]);
    cluster.wait_leader(Duration::from_secs(20));
    cluster.members[0].kill9();
    cluster.members[1].kill9();
    let live = cluster.members[4].endpoint.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, resp) = put(&live, "k", "with-two-down");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no write with 3 of 5 up: {resp}");
    }
    cluster.members[2].kill9();
    let started = Instant::now();
    let (code, resp) = put(&live, "k", "with-three-down");
    assert_ne!(code, 200, "a write succeeded without a quorum: {resp}");
    let err = resp["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err == "etcdserver: no leader" || err == "etcdserver: request timed out",
        "etcd's error for a lost quorum, got {resp}"
    );
    eprintln!("refused after {:?}: {err}", started.elapsed());
    // The value from before the quorum was lost is still there (serializable read).
    assert_eq!(get(&live, "k", true)["kvs"][0]["value"], json!(b64("with-two-down")));
}

/// etcd's Cluster API on a running cluster: a learner is added (listed as
/// unstarted), is not promoted while it lags, joins with `--initial-cluster-state
/// existing` and catches up, is promoted, and takes part in writes; then a
/// follower is removed and the rest keep serving.
/// Waits (10 s at most) until the member at `endpoint` reports
/// `etcd_server_is_learner` as `want`.
fn wait_is_learner(endpoint: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut resp = common::http_agent().get(&format!("{endpoint}/metrics")).call().expect("GET /metrics");
        let text = resp.body_mut().read_to_string().expect("metrics body");
        let seen = stead::metrics::sample(&text, "etcd_server_is_learner").expect("etcd_server_is_learner");
        if seen == want {
            return;
        }
        assert!(Instant::now() < deadline, "etcd_server_is_learner {seen}, not {want}, on {endpoint}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn add_a_learner_that_joins_promote_it_then_remove_a_member() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let leader_ep = cluster.members[leader].endpoint.clone();
    put(&leader_ep, "before", "1");

    let port = common::free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    let (code, added) = post(&leader_ep, "/v3/cluster/member/add", &json!({"peerURLs": [url], "isLearner": true}).to_string());
    assert_eq!(code, 200, "{added}");
    assert_eq!(added["member"]["isLearner"], json!(true));
    assert!(added["member"].get("name").is_none(), "not started yet, so unnamed: {added}");
    let new_id = added["member"]["ID"].as_str().expect("new id").to_string();
    assert_eq!(added["members"].as_array().map(Vec::len), Some(4));
    // Every member applies the change.
    for m in &cluster.members {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, list) = m.post("/v3/cluster/member/list", "{}");
            if list["members"].as_array().map(Vec::len) == Some(4) {
                break;
            }
            assert!(Instant::now() < deadline, "{} never listed the learner: {list}", m.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (_, dup) = post(&leader_ep, "/v3/cluster/member/add", &json!({"peerURLs": [url]}).to_string());
    assert_eq!(dup["error"], json!("etcdserver: Peer URLs already exists"));
    let (_, bad) = post(&leader_ep, "/v3/cluster/member/add", &json!({"peerURLs": ["not a url"]}).to_string());
    assert_eq!(bad["error"], json!("etcdserver: given member URLs are invalid"));

    let (_, lagging) = post(&leader_ep, "/v3/cluster/member/promote", &json!({"ID": new_id}).to_string());
    assert_eq!(lagging["error"], json!("etcdserver: can only promote a learner member which is in sync with leader"));
    let voter_id = added["members"].as_array().unwrap().iter().find(|m| m.get("isLearner").is_none()).unwrap()["ID"].clone();
    let (_, not_learner) = post(&leader_ep, "/v3/cluster/member/promote", &json!({"ID": voter_id}).to_string());
    assert_eq!(not_learner["error"], json!("etcdserver: can only promote a learner member"));

    // Start the new member as etcd's docs do: the current members plus itself,
    // state "existing". It learns its id and the cluster's when a member calls.
    let (_, list) = post(&leader_ep, "/v3/cluster/member/list", "{}");
    let mut initial: Vec<String> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["ID"].as_str() != Some(new_id.as_str()))
        .map(|m| format!("{}={}", m["name"].as_str().unwrap(), m["peerURLs"][0].as_str().unwrap()))
        .collect();
    initial.push(format!("m4={url}"));
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--name", "m4", "--initial-cluster", &initial.join(","), "--initial-cluster-state", "existing",
        "--initial-cluster-token", "test-cluster", "--initial-advertise-peer-urls", &url, "--listen-peer-urls", &url,
        "--heartbeat-interval", "50", "--election-timeout", "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut learner = common::Launched::new(&tmp.path().join("m4"), args).wait_ready();
    wait_value(&learner.endpoint, "before", "1", Duration::from_secs(20));
    let (_, st) = learner.post("/v3/maintenance/status", "{}");
    assert_eq!(st["header"]["member_id"], json!(new_id), "the joined member took the id the cluster gave it");
    // Once it has applied the change that added it.
    wait_is_learner(&learner.endpoint, 1.0);

    // Caught up: promotion is accepted now.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, promoted) = post(&leader_ep, "/v3/cluster/member/promote", &json!({"ID": new_id}).to_string());
        if code == 200 {
            let m = promoted["members"].as_array().unwrap().iter().find(|m| m["ID"].as_str() == Some(&new_id)).cloned();
            assert!(m.is_some_and(|m| m.get("isLearner").is_none()), "{promoted}");
            break;
        }
        assert!(Instant::now() < deadline, "promotion never accepted: {promoted}");
        std::thread::sleep(Duration::from_millis(100));
    }
    put(&leader_ep, "after-promote", "3");
    wait_value(&learner.endpoint, "after-promote", "3", Duration::from_secs(10));
    // It applied its promotion (the put after it reached it): no longer a
    // learner, once its Raft actor has the new member table.
    wait_is_learner(&learner.endpoint, 0.0);
    // A restart of the joined member reads its identity from its own WAL.
    learner.restart();
    wait_value(&learner.endpoint, "after-promote", "3", Duration::from_secs(20));

    // Remove a follower (not the new member): the rest still commit writes.
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let (_, st) = cluster.members[victim].post("/v3/maintenance/status", "{}");
    let victim_id = st["header"]["member_id"].as_str().unwrap().to_string();
    let (code, removed) = post(&leader_ep, "/v3/cluster/member/remove", &json!({"ID": victim_id}).to_string());
    assert_eq!(code, 200, "{removed}");
    assert_eq!(removed["members"].as_array().map(Vec::len), Some(3));
    let (_, missing) = post(&leader_ep, "/v3/cluster/member/remove", &json!({"ID": victim_id}).to_string());
    assert_eq!(missing["error"], json!("etcdserver: member not found"));
    let (code, after) = put(&leader_ep, "after", "2");
    assert_eq!(code, 200, "{after}");
    let other = (0..3).find(|i| *i != leader && *i != victim).unwrap();
    wait_value(&cluster.members[other].endpoint, "after", "2", Duration::from_secs(10));
    wait_value(&learner.endpoint, "after", "2", Duration::from_secs(10));
}

#[test]
fn move_leader_hands_leadership_to_the_chosen_member() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let target = (leader + 1) % 3;
    let (_, st) = cluster.members[target].post("/v3/maintenance/status", "{}");
    let target_id = st["header"]["member_id"].as_str().unwrap().to_string();
    let (code, resp) =
        cluster.members[leader].post("/v3/maintenance/transfer-leadership", &json!({"targetID": target_id}).to_string());
    assert_eq!(code, 200, "{resp}");
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), target);
    // Asked of a member that does not lead: etcd's "not leader".
    let (_, refused) = cluster.members[leader]
        .post("/v3/maintenance/transfer-leadership", &json!({"targetID": target_id}).to_string());
    assert!(refused.get("error").is_none() || refused["error"] == json!("etcdserver: not leader"), "{refused}");
}

/// A member down for many writes comes back after the leader compacted its log
/// past what the member has: it catches up by snapshot (the leader's whole store),
/// then follows the log again.
#[test]
fn a_member_down_for_many_writes_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3, &["--snapshot-count", "50"]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let down = (leader + 1) % 3;
    cluster.members[down].kill9();
    let leader_ep = cluster.members[leader].endpoint.clone();
    for i in 0..400 {
        let (code, resp) = put(&leader_ep, &format!("k{i:04}"), &format!("v{i}"));
        assert_eq!(code, 200, "{resp}");
    }
    // Give the leader's store time to flush and Raft to compact past the gap.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.members[down].restart();
    let back = cluster.members[down].endpoint.clone();
    wait_value(&back, "k0399", "v399", Duration::from_secs(30));
    for i in [0, 1, 57, 200, 398] {
        assert_eq!(get(&back, &format!("k{i:04}"), true)["kvs"][0]["value"], json!(b64(&format!("v{i}"))));
    }
    let mut log = cluster.members[down].startup_log.clone();
    log.extend(cluster.members[down].log.try_iter());
    assert!(log.iter().any(|l| l.contains("installed a snapshot")), "caught up without a snapshot?\n{}", log.join("\n"));
    // And it follows the log afterwards.
    put(&leader_ep, "after-snapshot", "yes");
    wait_value(&back, "after-snapshot", "yes", Duration::from_secs(10));
}
