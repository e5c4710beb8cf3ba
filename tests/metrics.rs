//! `GET /metrics` on the client port, against a real `stead` process: after known
//! traffic (JSON gateway and gRPC), etcd's metrics moved by the right amounts,
//! every instrumented actor shows its messages, and every named thread its CPU
//! time and wake-ups.

mod common;

use common::{b64, Server};
use serde_json::json;
use stead::metrics::sample;
use stead::proto::etcdserverpb as pb;

fn scrape(s: &Server) -> String {
    let mut resp = common::http_agent().get(&format!("{}/metrics", s.endpoint)).call().expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    resp.body_mut().read_to_string().expect("metrics body")
}

/// Scrapes `s` until `done` holds of the text or `secs` have passed; the last
/// scrape either way (the caller asserts on it).
fn scrape_until(s: &Server, secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let text = scrape(s);
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn value(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// A labelled sample's value, `line_prefix` being the name and labels as written.
fn labelled(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_with_traffic() {
    let s = Server::start(&[]);
    let before = scrape(&s);
    assert_eq!(value(&before, "etcd_server_has_leader"), 1.0, "{before}");
    assert_eq!(value(&before, "etcd_server_is_leader"), 1.0);
    assert!(value(&before, "etcd_server_leader_changes_seen_total") >= 1.0);

    for k in ["a", "b", "c"] {
        let (code, put) = s.post("/v3/kv/put", &json!({"key": b64(k), "value": b64("v")}).to_string());
        assert_eq!(code, 200, "{put}");
    }
    for k in ["a", "zzz"] {
        let (code, got) = s.post("/v3/kv/range", &json!({"key": b64(k)}).to_string());
        assert_eq!(code, 200, "{got}");
    }
    // A txn: one compare (a range, as etcd counts it) and two puts.
    let txn = json!({
        "compare": [{"key": b64("a"), "target": "VERSION", "result": "EQUAL", "version": "1"}],
        "success": [{"request_put": {"key": b64("t1"), "value": b64("v")}},
                    {"request_put": {"key": b64("t2"), "value": b64("v")}}],
    });
    let (code, done) = s.post("/v3/kv/txn", &txn.to_string());
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["succeeded"], json!(true), "{done}");
    let (code, del) = s.post("/v3/kv/deleterange", &json!({"key": b64("b")}).to_string());
    assert_eq!(code, 200, "{del}");
    let (_, last) = s.post("/v3/kv/put", &json!({"key": b64("c"), "value": b64("w")}).to_string());
    let revision: f64 = last["header"]["revision"].as_str().and_then(|r| r.parse().ok()).expect("a revision");
    // Refused before proposing: counted as an RPC with its code, not as a put.
    let (code, _) = s.post("/v3/kv/put", &json!({"value": b64("v")}).to_string());
    assert_eq!(code, 400);
    // Through gRPC too.
    grpc_put(&s, "g");

    // The backend commits applied writes once applies pause (2 ms): the scrape
    // that follows the last write may come first.
    let commits = "etcd_disk_backend_commit_duration_seconds_count";
    let after = scrape_until(&s, 5, |text| value(text, commits) > value(&before, commits));
    let delta = |name: &str| value(&after, name) - value(&before, name);
    // 3 + txn's 2 + 1 re-put + 1 over gRPC.
    assert_eq!(delta("etcd_mvcc_put_total"), 7.0, "{after}");
    // 2 ranges + the txn's compare.
    assert_eq!(delta("etcd_mvcc_range_total"), 3.0, "{after}");
    assert_eq!(delta("etcd_mvcc_delete_total"), 1.0, "{after}");
    assert_eq!(delta("etcd_mvcc_txn_total"), 1.0, "{after}");
    // a, c, t1, t2, g live; b deleted.
    assert_eq!(value(&after, "etcd_debugging_mvcc_keys_total"), 5.0, "{after}");
    assert_eq!(value(&after, "etcd_debugging_mvcc_current_revision"), revision + 1.0, "{after}");
    assert!(value(&after, "etcd_mvcc_db_total_size_in_bytes") > 0.0);

    assert!(delta("etcd_disk_wal_fsync_duration_seconds_count") >= 1.0, "{after}");
    assert!(value(&after, "etcd_disk_wal_fsync_duration_seconds_count") > 0.0);
    assert!(delta("etcd_disk_backend_commit_duration_seconds_count") >= 1.0, "{after}");
    assert!(delta("etcd_server_proposals_committed_total") >= 7.0, "{after}");
    assert!(value(&after, "etcd_server_proposals_applied_total") >= value(&before, "etcd_server_proposals_committed_total"));
    assert_eq!(value(&after, "etcd_server_proposals_pending"), 0.0);
    assert_eq!(value(&after, "etcd_server_proposals_failed_total"), 0.0);
    assert_eq!(value(&after, "etcd_debugging_mvcc_watcher_total"), 0.0);
    assert_eq!(value(&after, "etcd_debugging_mvcc_watch_stream_total"), 0.0);

    let rpc = |code: &str, method: &str| {
        let line = format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}}"
        );
        labelled(&after, &line) - labelled(&before, &line)
    };
    assert_eq!(rpc("OK", "Put"), 5.0, "{after}");
    assert_eq!(rpc("InvalidArgument", "Put"), 1.0, "{after}");
    assert_eq!(rpc("OK", "Txn"), 1.0, "{after}");
    // Every handled RPC is also timed: 5 OK puts and the refused one.
    let timed = |method: &str| {
        let line = format!(
            "grpc_server_handling_seconds_count{{grpc_method=\"{method}\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}}"
        );
        labelled(&after, &line) - labelled(&before, &line)
    };
    assert_eq!(timed("Put"), 6.0, "{after}");
    assert_eq!(timed("Range"), 2.0, "{after}");

    // Every instrumented actor, by message.
    for (actor, message) in [("raft", "Propose"), ("raft", "Persisted"), ("store", "Apply"), ("store", "Read"), ("wal", "Append")] {
        let line = format!("stead_actor_messages_total{{actor=\"{actor}\",message=\"{message}\"}}");
        assert!(labelled(&after, &line) >= 1.0, "{line} in:\n{after}");
    }
    assert!(labelled(&after, "stead_actor_messages_total{actor=\"raft\",message=\"Propose\"}") >= 6.0);
    for actor in ["raft", "store", "wal"] {
        let line = format!("stead_actor_handle_seconds_count{{actor=\"{actor}\"}}");
        assert!(labelled(&after, &line) >= 1.0, "{line} in:\n{after}");
    }

    // Every named thread, by what the kernel counted for it: the arbiters (one
    // each), the WAL writer, and the client port's workers, which served this
    // traffic. The write path woke the Raft thread, the WAL writer and the
    // store at least once per write.
    for thread in ["stead-raft", "stead-store", "stead-lease", "stead-auth", "stead-wal"] {
        assert_eq!(labelled(&after, &format!("stead_thread_count{{thread=\"{thread}\"}}")), 1.0, "{thread} in:\n{after}");
    }
    assert!(labelled(&after, "stead_thread_count{thread=\"stead-client\"}") >= 1.0, "{after}");
    // CPU time is counted in nanoseconds where the kernel keeps scheduler
    // statistics, else in 10 ms ticks, which this little traffic may not reach.
    let fine_grained = std::path::Path::new("/proc/thread-self/schedstat").exists();
    for thread in ["stead-raft", "stead-store", "stead-wal", "stead-client"] {
        let cpu = format!("stead_thread_cpu_seconds_total{{thread=\"{thread}\"}}");
        if fine_grained {
            assert!(labelled(&after, &cpu) > labelled(&before, &cpu), "{cpu} did not move:\n{after}");
        }
        let woke = format!("stead_thread_context_switches_total{{kind=\"voluntary\",thread=\"{thread}\"}}");
        assert!(labelled(&after, &woke) - labelled(&before, &woke) >= 7.0, "{woke}:\n{after}");
    }
}

/// Sends `sig` (`-STOP`, `-CONT`) to each of these servers (started here).
fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        let status = std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    }
}

/// Puts `key` = "v" over gRPC; the request sent and the answer.
fn grpc_put(s: &Server, key: &str) -> (pb::PutRequest, pb::PutResponse) {
    use stead::proto::etcdserverpb::kv_client::KvClient;
    let endpoint = s.endpoint.clone();
    let request = pb::PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() };
    let sent = request.clone();
    let response = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async move {
        let channel = tonic::transport::Channel::from_shared(endpoint).expect("endpoint").connect().await.expect("connect");
        let mut kv = KvClient::new(channel);
        kv.put(request).await.expect("gRPC put").into_inner()
    });
    (sent, response)
}

/// etcd's client traffic counters count the protobuf bytes of each message,
/// over gRPC and through the JSON gateway alike (etcd's gateway reaches its
/// server over gRPC); the process and backend-size series its dashboard reads
/// are there.
#[test]
fn client_traffic_counts_each_messages_bytes() {
    use prost::Message;
    let s = Server::start(&[]);
    let received = "etcd_network_client_grpc_received_bytes_total";
    let sent = "etcd_network_client_grpc_sent_bytes_total";
    let before = scrape(&s);

    let (request, response) = grpc_put(&s, "traffic");
    let after_grpc = scrape(&s);
    assert_eq!(value(&after_grpc, received) - value(&before, received), request.encoded_len() as f64);
    assert_eq!(value(&after_grpc, sent) - value(&before, sent), response.encoded_len() as f64);

    let (code, body) = s.post("/v3/kv/put", &json!({"key": b64("gateway"), "value": b64("value")}).to_string());
    assert_eq!(code, 200, "{body}");
    let answer: pb::PutResponse = serde_json::from_value(body.clone()).expect("a PutResponse");
    let asked = pb::PutRequest { key: b"gateway".to_vec(), value: b"value".to_vec(), ..Default::default() };
    let after_gateway = scrape(&s);
    assert_eq!(value(&after_gateway, received) - value(&after_grpc, received), asked.encoded_len() as f64);
    assert_eq!(value(&after_gateway, sent) - value(&after_grpc, sent), answer.encoded_len() as f64);

    assert!(value(&after_gateway, "process_resident_memory_bytes") > 1e6, "{after_gateway}");
    // Whole seconds in the prometheus crate's collector: a fresh member may read 0.
    assert!(value(&after_gateway, "process_cpu_seconds_total") >= 0.0);
    assert!(value(&after_gateway, "process_start_time_seconds") > 1.7e9);
    assert!(value(&after_gateway, "process_open_fds") > 0.0);
    let size = value(&after_gateway, "etcd_mvcc_db_total_size_in_bytes");
    assert!(size > 0.0);
    assert_eq!(value(&after_gateway, "etcd_debugging_mvcc_db_total_size_in_bytes"), size);
}

/// The watch series: one synced watcher, three events sent to it.
#[test]
fn watch_events_and_slow_watchers() {
    use stead::proto::etcdserverpb::watch_client::WatchClient;
    let s = Server::start(&[]);
    let before = scrape(&s);
    let endpoint = s.endpoint.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (requests, mut responses) = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(endpoint).expect("endpoint").connect().await.expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = pb::WatchCreateRequest { key: b"w".to_vec(), ..Default::default() };
        tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
            .await
            .expect("queue the create");
        let stream = WatchClient::new(channel)
            .watch(tokio_stream_of(rx))
            .await
            .expect("watch")
            .into_inner();
        (tx, stream)
    });
    let created = runtime.block_on(responses.message()).expect("a response").expect("the created response");
    assert!(created.created, "{created:?}");
    for v in ["1", "2", "3"] {
        let (code, put) = s.post("/v3/kv/put", &json!({"key": b64("w"), "value": b64(v)}).to_string());
        assert_eq!(code, 200, "{put}");
    }
    let mut events = 0;
    while events < 3 {
        let resp = runtime.block_on(responses.message()).expect("a response").expect("events");
        events += resp.events.len();
    }
    let after = scrape(&s);
    let moved = |name: &str| value(&after, name) - value(&before, name);
    assert_eq!(moved("etcd_debugging_mvcc_events_total"), 3.0, "{after}");
    assert_eq!(value(&after, "etcd_debugging_mvcc_watcher_total"), 1.0);
    assert_eq!(value(&after, "etcd_debugging_mvcc_slow_watcher_total"), 0.0);
    drop(requests);
}

/// A receiver as the stream of requests a tonic client sends.
fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// etcd's identity gauges name the member and the version it speaks; the
/// quota is the configured one; every `/health` answer is counted.
#[test]
fn identity_quota_and_health_checks() {
    let s = Server::start(&["--quota-backend-bytes", "123456789"]);
    let (code, status) = s.post("/v3/maintenance/status", "{}");
    assert_eq!(code, 200, "{status}");
    let id: u64 = status["header"]["member_id"].as_str().and_then(|v| v.parse().ok()).expect("a member id");
    let before = scrape(&s);
    assert_eq!(labelled(&before, &format!("etcd_server_id{{server_id=\"{id:x}\"}}")), 1.0, "{before}");
    assert_eq!(labelled(&before, "etcd_server_version{server_version=\"3.4.23\"}"), 1.0);
    assert_eq!(value(&before, "etcd_server_quota_backend_bytes"), 123456789.0);
    for _ in 0..2 {
        let resp = common::http_agent().get(&format!("{}/health", s.endpoint)).call().expect("GET /health");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let after = scrape(&s);
    assert_eq!(value(&after, "etcd_server_health_success") - value(&before, "etcd_server_health_success"), 2.0);
    assert_eq!(value(&after, "etcd_server_health_failures"), value(&before, "etcd_server_health_failures"));
}

/// A leader that cannot send its heartbeats on time (here: stopped for five
/// heartbeat intervals, less than an election timeout) counts each late one,
/// as etcd's `heartbeat_send_failures_total`.
#[test]
fn a_stalled_leader_counts_its_late_heartbeats() {
    use std::time::Duration;
    let c = common::Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let late = "etcd_server_heartbeat_send_failures_total";
    // Heartbeats flowing (both followers have answered some): a late one is
    // measured from the one before it.
    let answered = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("etcd_network_peer_round_trip_time_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n >= 2.0)
            .count()
    };
    let before = scrape_until(&c.members[leader], 5, |text| answered(text) == 2);
    signal(&[c.members[leader].pid()], "-STOP");
    std::thread::sleep(Duration::from_millis(250));
    signal(&[c.members[leader].pid()], "-CONT");
    // One late heartbeat to each of the two followers.
    let after = scrape_until(&c.members[leader], 5, |text| value(text, late) >= value(&before, late) + 2.0);
    assert!(value(&after, late) >= value(&before, late) + 2.0, "{after}");
}

/// Linearizable reads on a leader whose followers stop answering: one that
/// waits until they are back is a slow read index, one that waits past the
/// request timeout a failed one (etcd's two counters).
#[test]
fn read_indexes_without_a_quorum_are_slow_then_failed() {
    use std::time::Duration;
    let c = common::Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let followers: Vec<u32> = (0..3).filter(|&i| i != leader).map(|i| c.members[i].pid()).collect();
    let read = || c.members[leader].post("/v3/kv/range", &json!({"key": b64("k")}).to_string());
    let (slow, failed) = ("etcd_server_slow_read_indexes_total", "etcd_server_read_indexes_failed_total");
    let before = scrape(&c.members[leader]);

    // Followers stopped for longer than a slow round (500 ms), then back.
    signal(&followers, "-STOP");
    let resume = std::thread::spawn({
        let followers = followers.clone();
        move || {
            std::thread::sleep(Duration::from_millis(800));
            signal(&followers, "-CONT");
        }
    });
    let (code, answer) = read();
    resume.join().expect("resumed");
    assert_eq!(code, 200, "{answer}");
    let waited = scrape(&c.members[leader]);
    assert!(value(&waited, slow) >= value(&before, slow) + 1.0, "{waited}");
    assert_eq!(value(&waited, failed), value(&before, failed));

    // Stopped for the whole request timeout: the read fails.
    signal(&followers, "-STOP");
    let (code, answer) = read();
    signal(&followers, "-CONT");
    assert_ne!(code, 200, "{answer}");
    let gave_up = scrape(&c.members[leader]);
    assert_eq!(value(&gave_up, failed), value(&waited, failed) + 1.0, "{gave_up}");
}

/// A member that is down shows on the others as send failures to it (what
/// etcd's `etcdMembersDown` alert reads), and only to it, and as a peer link
/// no longer active.
#[test]
fn send_failures_count_messages_to_a_member_that_is_down() {
    use std::time::Duration;
    let mut c = common::Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let member_id = |i: usize| {
        let (code, status) = c.members[i].post("/v3/maintenance/status", "{}");
        assert_eq!(code, 200, "{status}");
        let id: u64 = status["header"]["member_id"].as_str().and_then(|v| v.parse().ok()).expect("a member id");
        format!("{id:x}")
    };
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (down, up) = (followers[0], followers[1]);
    let failures_to = |text: &str, id: &str| labelled(text, &format!("etcd_network_peer_sent_failures_total{{To=\"{id}\"}}"));
    let (down_id, up_id, leader_id) = (member_id(down), member_id(up), member_id(leader));
    let link = |metric: &str, remote: &str| format!("etcd_network_{metric}{{Local=\"{leader_id}\",Remote=\"{remote}\"}}");
    let before = scrape(&c.members[leader]);
    assert_eq!(labelled(&before, &link("active_peers", &down_id)), 1.0, "{before}");
    assert_eq!(labelled(&before, &link("active_peers", &up_id)), 1.0);
    c.members[down].kill9();
    // The leader heartbeats every 100 ms: each one to the dead member is dropped.
    let after =
        scrape_until(&c.members[leader], 10, |text| failures_to(text, &down_id) >= failures_to(&before, &down_id) + 3.0);
    assert!(failures_to(&after, &down_id) >= failures_to(&before, &down_id) + 3.0, "{after}");
    assert_eq!(failures_to(&after, &up_id), failures_to(&before, &up_id), "{after}");
    assert_eq!(labelled(&after, &link("active_peers", &down_id)), 0.0, "{after}");
    assert_eq!(labelled(&after, &link("active_peers", &up_id)), 1.0);
    let lost = |text: &str| labelled(text, &link("disconnected_peers_total", &down_id));
    assert_eq!(lost(&after), lost(&before) + 1.0, "{after}");
}

#[test]
fn every_member_sees_the_leader_and_applies_the_writes() {
    let c = common::Cluster::start(3, &[]);
    let leader = c.wait_leader(std::time::Duration::from_secs(10));
    let (code, put) = c.members[leader].post("/v3/kv/put", &json!({"key": b64("k"), "value": b64("v")}).to_string());
    assert_eq!(code, 200, "{put}");
    // A follower applies the put once it learns the commit index; wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (i, m) in c.members.iter().enumerate() {
        let text = loop {
            let text = scrape(m);
            if value(&text, "etcd_mvcc_put_total") >= 1.0 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(value(&text, "etcd_server_has_leader"), 1.0, "member {i}: {text}");
        assert_eq!(value(&text, "etcd_server_is_leader"), if i == leader { 1.0 } else { 0.0 }, "member {i}");
        assert_eq!(value(&text, "etcd_mvcc_put_total"), 1.0, "member {i}: {text}");
        assert_eq!(value(&text, "etcd_debugging_mvcc_keys_total"), 1.0, "member {i}");
        assert!(value(&text, "etcd_disk_wal_fsync_duration_seconds_count") > 0.0, "member {i}");
    }
    // etcd's peer traffic counters: every member has sent to and received from
    // each of the other two (heartbeats at least), labelled by their hex ids.
    let ids: Vec<String> = c
        .members
        .iter()
        .map(|m| {
            let (code, got) = m.post("/v3/kv/range", &json!({"key": b64("k")}).to_string());
            assert_eq!(code, 200, "{got}");
            let id: u64 = got["header"]["member_id"].as_str().and_then(|v| v.parse().ok()).expect("a member id");
            format!("{id:x}")
        })
        .collect();
    for (i, m) in c.members.iter().enumerate() {
        let text = scrape(m);
        for (j, other) in ids.iter().enumerate() {
            let sent = labelled(&text, &format!("etcd_network_peer_sent_bytes_total{{To=\"{other}\"}}"));
            let received = labelled(&text, &format!("etcd_network_peer_received_bytes_total{{From=\"{other}\"}}"));
            if i == j {
                assert_eq!((sent, received), (0.0, 0.0), "member {i} counts traffic with itself:\n{text}");
            } else {
                assert!(sent > 0.0, "member {i} sent nothing to {other}:\n{text}");
                assert!(received > 0.0, "member {i} received nothing from {other}:\n{text}");
                // The leader times its heartbeats' round trips to each follower.
                let rtt = labelled(&text, &format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{other}\"}}"));
                if i == leader {
                    assert!(rtt > 0.0, "the leader timed no heartbeat to {other}:\n{text}");
                }
            }
        }
    }
    // Every actor, peer links included, probes its mailbox each second: each
    // shows a depth gauge and a wait histogram once its first probe came back.
    for (i, m) in c.members.iter().enumerate() {
        let mut actors: Vec<String> = ["raft", "store", "wal", "lease", "watch", "auth"].map(String::from).to_vec();
        actors.extend(ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, id)| format!("peer-{id}")));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for actor in &actors {
            let line = format!("stead_actor_mailbox_wait_seconds_count{{actor=\"{actor}\"}}");
            let text = loop {
                let text = scrape(m);
                if labelled(&text, &line) >= 1.0 || std::time::Instant::now() > deadline {
                    break text;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            };
            assert!(labelled(&text, &line) >= 1.0, "member {i}: {line} in:\n{text}");
            assert!(text.contains(&format!("stead_actor_mailbox_depth{{actor=\"{actor}\"}}")), "member {i}: {actor}");
            // (A follower's link to the other follower may carry nothing.)
            let handled = format!("stead_actor_handle_seconds_count{{actor=\"{actor}\"}}");
            assert!(actor.starts_with("peer-") || labelled(&text, &handled) >= 1.0, "member {i}: {handled} in:\n{text}");
        }
    }
}

/// etcd's lease counters: a grant, a keep-alive on the leader and a revoke each
/// count once; a lease whose TTL runs out counts as expired.
#[test]
fn lease_counters_move_with_lease_traffic() {
    let s = Server::start(&[]);
    let before = scrape(&s);
    let (code, granted) = s.post("/v3/lease/grant", &json!({"TTL": "60"}).to_string());
    assert_eq!(code, 200, "{granted}");
    let id = granted["ID"].as_str().expect("a lease id").to_string();
    let (code, kept) = s.post("/v3/lease/keepalive", &json!({"ID": id}).to_string());
    assert_eq!(code, 200, "{kept}");
    let (code, revoked) = s.post("/v3/lease/revoke", &json!({"ID": id}).to_string());
    assert_eq!(code, 200, "{revoked}");
    // The lease actor hears of applied grants and revokes just after the client.
    let moved = |name: &str, after: &str| value(after, name) - value(&before, name);
    let after = scrape_until(&s, 5, |text| moved("etcd_debugging_lease_revoked_total", text) >= 1.0);
    for name in ["etcd_debugging_lease_granted_total", "etcd_debugging_lease_renewed_total", "etcd_debugging_lease_revoked_total"] {
        assert_eq!(moved(name, &after), 1.0, "{name} in:\n{after}");
    }
    // A revoke the client asked for is not an expiry; one the TTL runs out is.
    let expired = "etcd_debugging_server_lease_expired_total";
    assert_eq!(moved(expired, &after), 0.0, "{after}");
    let (code, granted) = s.post("/v3/lease/grant", &json!({"TTL": "1"}).to_string());
    assert_eq!(code, 200, "{granted}");
    let expiry = scrape_until(&s, 10, |text| moved(expired, text) >= 1.0);
    assert_eq!(moved(expired, &expiry), 1.0, "{expiry}");
    assert_eq!(moved("etcd_debugging_lease_revoked_total", &expiry), 2.0);
}

/// The in-memory Raft log keeps only a tail once the backend is flushed, however
/// large `--snapshot-count` is: after 6,500 writes it holds at most the 5,000
/// catch-up entries and what the next flush (every second) has not covered.
#[test]
fn the_in_memory_raft_log_stays_bounded() {
    use stead::proto::etcdserverpb::kv_client::KvClient;
    const WRITES: usize = 6500;
    const CATCH_UP: f64 = 5000.0;
    let s = Server::start(&[]);
    let endpoint = s.endpoint.clone();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async move {
        let channel = tonic::transport::Channel::from_shared(endpoint).expect("endpoint").connect().await.expect("connect");
        let writers = (0..16).map(|w| {
            let mut kv = KvClient::new(channel.clone());
            async move {
                for i in (w..WRITES).step_by(16) {
                    let put = stead::proto::etcdserverpb::PutRequest {
                        key: format!("k{i}").into_bytes(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    };
                    kv.put(put).await.expect("gRPC put");
                }
            }
        });
        futures::future::join_all(writers).await;
    });
    // The writes alone are more entries than the tail: only trimming gets below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(&s);
        let entries = value(&text, "stead_raft_log_entries");
        assert!(value(&text, "etcd_server_proposals_applied_total") >= WRITES as f64, "{text}");
        if entries <= CATCH_UP {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the in-memory log still holds {entries} entries");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A slow, steady writer's puts share backend batches: written in a pause once
/// the batch is 100 ms old, not one batch per put (each sled batch wakes sled's
/// whole I/O pool twice).
#[test]
fn a_slow_writers_puts_share_backend_batches() {
    let s = Server::start(&[]);
    let commits = "etcd_disk_backend_commit_duration_seconds_count";
    let before = scrape(&s);
    let puts = 30;
    for i in 0..puts {
        let (code, put) = s.post("/v3/kv/put", &json!({"key": b64(&format!("slow/{i}")), "value": b64("v")}).to_string());
        assert_eq!(code, 200, "{put}");
        // 20 ms: a pause long enough to have written every put on its own.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The last batch is written within 200 ms of its first put.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let written = value(&scrape(&s), commits) - value(&before, commits);
    // 30 puts over at least 600 ms: about one batch per 100 ms.
    assert!((1.0..=15.0).contains(&written), "{written} backend commits for {puts} paced puts");
    let (code, got) = s.post("/v3/kv/range", &json!({"key": b64("slow/"), "range_end": b64("slow0")}).to_string());
    assert_eq!((code, got["count"].as_str()), (200, Some("30")), "{got}");
}
