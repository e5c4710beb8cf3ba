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

/// Writes keys k0..k{n-1}, each with value "v".
fn put_keys(server: &Server, n: usize) {
    for i in 0..n {
        let (code, _) = post(&server.endpoint, "/v3/kv/put", &json!({"key": b64(&format!("k{i}")), "value": b64("v")}).to_string());
        assert_eq!(code, 200);
    }
}

/// Runs `stead` on an existing data dir and expects it to refuse to start.
fn boot_expecting_failure(data_dir: &std::path::Path) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stead"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", "http://127.0.0.1:0", "--listen-peer-urls", "http://127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stead");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stead started on a corrupt WAL instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wal_segments(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(data_dir.join("member/wal"))
        .expect("wal dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs
}

/// The end of the written part of a preallocated segment (the rest is zeros).
fn written_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// A record damaged in the middle of the log stops the boot with an error that
/// names the file and the offset; nothing is silently skipped.
#[test]
fn corruption_mid_wal_stops_the_boot_naming_file_and_offset() {
    let mut server = Server::start(&[]);
    put_keys(&server, 50);
    server.kill9();
    let seg = wal_segments(&server.data_dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = written_len(&bytes);
    bytes[end / 2] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, err) = boot_expecting_failure(&server.data_dir);
    assert_ne!(code, 0);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name) && err.contains("offset"), "the error must name {name} and the offset:\n{err}");
}

/// A torn last record (the crash hit mid-write) is cut off with a warning; the
/// member starts and serves everything before it.
#[test]
fn a_torn_last_record_is_truncated_with_a_warning() {
    let mut server = Server::start(&[]);
    put_keys(&server, 20);
    server.kill9();
    let seg = wal_segments(&server.data_dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = written_len(&bytes);
    // Zero the last few written bytes: the final record is now incomplete.
    for b in &mut bytes[end - 3..end] {
        *b = 0;
    }
    std::fs::write(&seg, &bytes).unwrap();
    server.restart();
    assert!(server.startup_log.iter().any(|l| l.contains("WARN") && l.contains("torn")), "{}", server.startup_log.join("\n"));
    let (_, got) = post(&server.endpoint, "/v3/kv/range", &json!({"key": b64("k0")}).to_string());
    assert_eq!(got["kvs"][0]["value"], json!(b64("v")));
}

/// Applied changes are staged in memory and reach the backend once applies
/// pause (then a flush makes them durable): after a quiet moment, a member
/// killed with SIGKILL restarts with its backend at the last write and replays
/// nothing but the entries after it (the bootstrap and publish entries of the
/// restart itself are not in the WAL yet).
#[test]
fn staged_applies_reach_the_backend_when_writes_pause() {
    let mut server = Server::start(&[]);
    put_keys(&server, 50);
    let (_, last) = post(&server.endpoint, "/v3/kv/put", &json!({"key": b64("last"), "value": b64("v")}).to_string());
    assert!(rev_of(&last).is_some(), "{last}");
    // The idle write comes within milliseconds; the flush within a second.
    std::thread::sleep(Duration::from_millis(2500));
    server.kill9();
    server.restart();
    let replayed: Vec<&String> = server.startup_log.iter().filter(|l| l.contains("WAL: replayed")).collect();
    let line = replayed.first().unwrap_or_else(|| panic!("no replay line in:\n{}", server.startup_log.join("\n")));
    // "WAL: replayed N entries (last index L, commit C), backend applied through A"
    let number_after = |marker: &str| -> u64 {
        let rest = &line[line.find(marker).unwrap_or_else(|| panic!("{marker:?} in {line}")) + marker.len()..];
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap_or_else(|_| panic!("{line}"))
    };
    let (last_index, applied) = (number_after("last index "), number_after("backend applied through "));
    assert_eq!(applied, last_index, "the backend was behind the log after a pause: {line}");
    let (code, got) = post(&server.endpoint, "/v3/kv/range", &json!({"key": b64("last")}).to_string());
    assert_eq!((code, got["count"].as_str()), (200, Some("1")), "{got}");
}
