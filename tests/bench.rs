//! `stead-bench` against a real single `stead`: every workload, over both
//! back-ends, runs briefly and its `--json` line accounts for every operation
//! (all done, zero errors); a request the server refuses is counted as an error
//! with its etcd message, not dropped; `watch-idle` reports every watcher created;
//! `--target-leader` on a 3-member cluster sends every request to the leader.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// A bench run here is a few hundred requests; far longer means it hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs stead-bench with `args` against `server`; (exit code, stdout, stderr).
fn bench(server: &Server, args: &[&str]) -> (i32, String, String) {
    bench_at(&server.host_port(), args)
}

/// Runs stead-bench with `args` against `endpoints` (comma-separated).
fn bench_at(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stead-bench"))
        .args(["--endpoints", endpoints, "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stead-bench");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for stead-bench") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stead-bench {args:?} ran over {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    (status.code().unwrap_or(-1), out, err)
}

fn summary(server: &Server, args: &[&str]) -> Value {
    let (code, out, err) = bench(server, args);
    let line: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?} {err}"));
    assert_eq!(code, 0, "{args:?}: {line} {err}");
    line
}

fn assert_all_done(line: &Value, workload: &str, backend: &str, total: u64) {
    assert_eq!(line["workload"], workload, "{line}");
    assert_eq!(line["backend"], backend, "{line}");
    assert_eq!(line["total"], total, "{line}");
    assert_eq!(line["done"], total, "{line}");
    assert_eq!(line["errors"], 0, "{line}");
    assert_eq!(line["first_errors"], serde_json::json!([]), "{line}");
    assert!(line["requests_per_second"].as_f64().unwrap_or(0.0) > 0.0, "{line}");
    let (p50, p99, max) = (line["p50_ms"].as_f64(), line["p99_ms"].as_f64(), line["max_ms"].as_f64());
    assert!(p50 <= p99 && p99 <= max && max > Some(0.0), "{line}");
}

#[test]
fn every_workload_accounts_for_every_request_over_both_backends() {
    let server = Server::start(&[]);
    for backend in ["grpc", "gateway"] {
        let common = ["--backend", backend, "--clients", "4", "--conns", "2", "--total", "200"];
        let run = |rest: &[&str]| summary(&server, &[&common[..], rest].concat());
        assert_all_done(&run(&["put", "--key-space-size", "50"]), "put", backend, 200);
        // The key space above is 50 keys of 8 bytes: 00000000 .. 00000049.
        let one = run(&["range", "00000007", "--consistency", "l"]);
        assert_all_done(&one, "range", backend, 200);
        assert_all_done(&run(&["range", "00000000", "00000050", "--consistency", "s"]), "range", backend, 200);
        assert_all_done(&run(&["txn-put", "--txn-ops", "4", "--key-space-size", "50"]), "txn-put", backend, 200);
        assert_all_done(&run(&["mixed", "--read-ratio", "0.5", "--key-space-size", "50"]), "mixed", backend, 200);
        assert_all_done(&run(&["lease-keepalive"]), "lease-keepalive", backend, 200);
        // 40 puts to 3 keys watched by 7 watchers (3 on key 0, 2 each on keys 1
        // and 2), sequential keys: puts 0, 3, 6, ... (14 of them) reach 3 watchers,
        // the other 26 reach 2: 94 events.
        let watch = summary(
            &server,
            &[
                "--backend", backend, "--clients", "2", "--total", "40", "--rate", "200", "--key-space-size", "3",
                "--sequential-keys", "watch", "--watchers", "7", "--streams", "3",
            ],
        );
        assert_all_done(&watch, "watch", backend, 94);
    }
}

#[test]
fn refused_requests_are_counted_with_their_message() {
    let server = Server::start(&[]);
    // Over etcd's default 1.5 MiB request limit.
    let (code, out, _) = bench(&server, &["--total", "3", "put", "--val-size", "2000000"]);
    assert_eq!(code, 1, "{out}");
    let line: Value = serde_json::from_str(out.trim()).expect("json line");
    assert_eq!((line["done"].as_u64(), line["errors"].as_u64()), (Some(0), Some(3)), "{line}");
    assert_eq!(line["first_errors"][0]["count"], 3, "{line}");
    let message = line["first_errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("etcdserver: request is too large"), "{line}");
}

#[test]
fn idle_watchers_are_all_created_and_held() {
    let server = Server::start(&[]);
    for backend in ["grpc", "gateway"] {
        let (code, out, err) =
            bench(&server, &["--backend", backend, "watch-idle", "--watchers", "40", "--streams", "4", "--hold-secs", "0"]);
        assert_eq!(code, 0, "{out} {err}");
        let line: Value = serde_json::from_str(out.trim()).expect("json line");
        assert_eq!((line["watchers"].as_u64(), line["created"].as_u64()), (Some(40), Some(40)), "{line}");
    }
}

/// Puts each member has answered (gRPC and gateway alike), from its metrics.
fn puts_answered(cluster: &common::Cluster) -> Vec<f64> {
    const PUTS: &str = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    cluster
        .members
        .iter()
        .map(|m| {
            let mut resp = common::http_agent().get(&format!("{}/metrics", m.endpoint)).call().expect("GET /metrics");
            let text = resp.body_mut().read_to_string().expect("metrics body");
            text.lines().find_map(|l| l.strip_prefix(PUTS)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
        })
        .collect()
}

#[test]
fn target_leader_sends_every_request_to_the_leader_only() {
    let cluster = common::Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let endpoints: Vec<String> = cluster.members.iter().map(Server::host_port).collect();
    // The leader last, so the first endpoints asked are followers.
    let mut ordered = endpoints.clone();
    ordered.swap(leader, 2);
    for backend in ["grpc", "gateway"] {
        let before = puts_answered(&cluster);
        let args = ["--backend", backend, "--conns", "3", "--clients", "3", "--total", "30", "--target-leader", "put"];
        let (code, out, err) = bench_at(&ordered.join(","), &args);
        let line: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{backend}: {e}: {out:?} {err}"));
        assert_eq!(code, 0, "{backend}: {line} {err}");
        assert_all_done(&line, "put", backend, 30);
        let after = puts_answered(&cluster);
        let answered: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let expected: Vec<f64> = (0..3).map(|i| if i == leader { 30.0 } else { 0.0 }).collect();
        assert_eq!(answered, expected, "{backend}: puts answered by each member (leader is member {leader})");
    }
}

#[test]
fn an_unreachable_endpoint_stops_the_run_with_a_clear_error() {
    let port = common::free_ports(1)[0];
    for backend in ["grpc", "gateway"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stead-bench"))
            .args(["--endpoints", &format!("127.0.0.1:{port}"), "--backend", backend, "--total", "1", "put"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start stead-bench");
        let status = child.wait().expect("wait");
        let mut err = String::new();
        child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read");
        assert_eq!(status.code(), Some(2), "{backend}: {err}");
        assert!(err.contains(&format!("cannot connect to http://127.0.0.1:{port}")), "{backend}: {err}");
    }
}
