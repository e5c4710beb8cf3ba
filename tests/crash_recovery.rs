//! A write is acknowledged only once durable: kill -9 a real `stead` in the middle
//! of a concurrent write loop, restart it on the same data dir, and every
//! acknowledged write must be there, at the revision it was acknowledged with.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{b64, post, Server};
use serde_json::{json, Value};

const WRITERS: usize = 4;
/// Bounded: each writer stops after this many writes even if the kill is late.
const MAX_WRITES_PER_WRITER: usize = 5_000;

fn rev_of(v: &Value) -> Option<i64> {
    v["header"]["revision"].as_str()?.parse().ok()
}

/// Runs the write loop against `endpoint` until `stop`, returning what was acked:
/// (key, value, revision).
fn write_loop(endpoint: String, round: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<(String, String, i64)>>> {
    (0..WRITERS)
        .map(|w| {
            let endpoint = endpoint.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = common::http_agent();
                let mut acked = Vec::new();
                for i in 0..MAX_WRITES_PER_WRITER {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("r{round}/w{w}/{i:05}");
                    let value = format!("value-{round}-{w}-{i}");
                    let body = json!({"key": b64(&key), "value": b64(&value)}).to_string();
                    let resp = agent.post(&format!("{endpoint}/v3/kv/put")).content_type("application/json").send(&body);
                    let Ok(mut resp) = resp else { break }; // the server is gone
                    if resp.status().as_u16() != 200 {
                        break;
                    }
                    let Ok(text) = resp.body_mut().read_to_string() else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { break };
                    if let Some(rev) = rev_of(&v) {
                        acked.push((key, value, rev));
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn kill9_during_writes_loses_no_acknowledged_write() {
    crash_rounds(&[]);
}

/// The same with backend flushes, WAL snapshot markers and Raft log compaction
/// every 100 applied entries: a restart then replays from the marker, and the
/// backend's consistent index decides which entries are applied again.
#[test]
fn kill9_with_frequent_snapshots_loses_no_acknowledged_write() {
    crash_rounds(&["--snapshot-count", "100"]);
}

fn crash_rounds(args: &[&str]) {
    let mut server = Server::start(args);
    let all_acked: Arc<Mutex<Vec<(String, String, i64)>>> = Arc::default();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = write_loop(server.endpoint.clone(), round, stop.clone());
        // Let writes flow, then kill while they are in flight.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(700));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut round_acked = 0;
        for w in writers {
            let acked = w.join().expect("writer thread");
            round_acked += acked.len();
            all_acked.lock().unwrap().extend(acked);
        }
        assert!(round_acked > 0, "round {round}: no write was acknowledged in {:?}", started.elapsed());
        eprintln!("round {round}: {round_acked} writes acknowledged before kill -9");
        server.restart();

        let acked = all_acked.lock().unwrap().clone();
        let mut max_rev = 0;
        for (key, value, rev) in &acked {
            let (status, got) = post(&server.endpoint, "/v3/kv/range", &json!({"key": b64(key)}).to_string());
            assert_eq!(status, 200, "{got}");
            let kv = &got["kvs"][0];
            assert_eq!(kv["value"], json!(b64(value)), "acknowledged write of {key} lost after kill -9 (round {round})");
            assert_eq!(kv["mod_revision"], json!(rev.to_string()), "{key} changed revision across the crash");
            max_rev = max_rev.max(*rev);
        }
        // Revisions go on from where they were: never reused.
        let (_, p) = post(&server.endpoint, "/v3/kv/put", &json!({"key": b64("after"), "value": b64("x")}).to_string());
        assert!(rev_of(&p).unwrap_or(0) > max_rev, "revision went backwards after restart: {p}");
    }
}
