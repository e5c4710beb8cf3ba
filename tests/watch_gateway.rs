//! etcd's watch stream on the JSON gateway (`POST /v3/watch`), against a real
//! `stead` process. The expected frames are etcd 3.4.23's answers to the same
//! requests (recorded with curl against a real etcd; cluster/member ids and terms
//! aside), and the watch guarantees etcd's robustness tests check: events ordered
//! by revision, a revision's events together, no gap and no duplicate (also at
//! the seam between history and live events), compaction answered and cancelled.
//!
//! The stream is spoken over a raw socket: the request body is sent chunked, so
//! later requests (cancel, progress) go on the same stream as etcd's gateway
//! reads them; the chunked answer is read line by line with a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{b64, Server};
use serde_json::{json, Value};

/// How long any expected frame may take to arrive.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

struct WatchStream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Decoded body bytes not yet returned as a line.
    body: Vec<u8>,
}

impl WatchStream {
    /// POSTs /v3/watch with a chunked body holding `first`; checks etcd's answer
    /// headers (200, JSON, chunked).
    fn open(s: &Server, first: &Value) -> WatchStream {
        let host = s.host_port();
        let mut writer = TcpStream::connect(&host).expect("connect");
        writer.set_nodelay(true).ok();
        let head = format!(
            "POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).expect("write head");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        let mut w = WatchStream { reader, writer, body: Vec::new() };
        w.send(first);
        w.reader.get_ref().set_read_timeout(Some(FRAME_TIMEOUT)).ok();
        let mut status = String::new();
        w.reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            w.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            headers.push(line.trim().to_ascii_lowercase());
        }
        assert!(headers.iter().any(|h| h == "content-type: application/json"), "{headers:?}");
        assert!(headers.iter().any(|h| h == "transfer-encoding: chunked"), "{headers:?}");
        w
    }

    /// Sends one more request on the stream (one chunk).
    fn send(&mut self, request: &Value) {
        let data = request.to_string();
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        self.writer.write_all(chunk.as_bytes()).expect("write chunk");
    }

    /// The next `{"result": …}` frame, within `FRAME_TIMEOUT`.
    fn next(&mut self) -> Value {
        let deadline = Instant::now() + FRAME_TIMEOUT;
        loop {
            if let Some(pos) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=pos).collect();
                let frame: Value = serde_json::from_slice(&line).expect("a JSON frame");
                return frame;
            }
            assert!(Instant::now() < deadline, "no frame within {FRAME_TIMEOUT:?}");
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size (or the deadline passed)");
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("chunk size {size:?}"));
            assert!(n > 0, "the server ended the stream");
            let mut data = vec![0; n + 2];
            self.reader.read_exact(&mut data).expect("chunk");
            self.body.extend_from_slice(&data[..n]);
        }
    }

    /// The next frame's `result`, with the header's ids and term checked against
    /// the member's and then removed (they differ from etcd's recording).
    fn result(&mut self, ids: &Ids) -> Value {
        let mut frame = self.next();
        assert!(frame.get("result").is_some(), "not a result frame: {frame}");
        let result = frame["result"].take();
        strip_ids(result, ids)
    }

    /// Nothing arrives within `wait` (used after something that must not answer).
    fn silent_for(&mut self, wait: Duration) {
        self.reader.get_ref().set_read_timeout(Some(wait)).ok();
        let got = self.reader.fill_buf().map(|b| b.len()).unwrap_or(0);
        self.reader.get_ref().set_read_timeout(Some(FRAME_TIMEOUT)).ok();
        assert!(self.body.is_empty() && got == 0, "unexpected data on the stream");
    }
}

/// The member's header fields, as the gateway writes them.
struct Ids {
    cluster_id: Value,
    member_id: Value,
    raft_term: Value,
}

fn ids(s: &Server) -> Ids {
    let (_, st) = s.post("/v3/maintenance/status", "{}");
    let h = &st["header"];
    Ids { cluster_id: h["cluster_id"].clone(), member_id: h["member_id"].clone(), raft_term: h["raft_term"].clone() }
}

fn strip_ids(mut result: Value, ids: &Ids) -> Value {
    let h = result.get_mut("header").expect("every watch response has a header");
    assert_eq!(h["cluster_id"], ids.cluster_id);
    assert_eq!(h["member_id"], ids.member_id);
    assert_eq!(h["raft_term"], ids.raft_term);
    let h = h.as_object_mut().unwrap();
    h.remove("cluster_id");
    h.remove("member_id");
    h.remove("raft_term");
    result
}

fn rev_of(v: &Value) -> i64 {
    v["header"]["revision"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn put(s: &Server, k: &str, v: &str) -> i64 {
    let (code, body) = s.post("/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}).to_string());
    assert_eq!(code, 200, "{body}");
    rev_of(&body)
}

fn create(fields: Value) -> Value {
    json!({"create_request": fields})
}

/// etcd 3.4.23, `curl /v3/watch -d '{"create_request":{"key":"Zm9v","prev_kv":true}}'`
/// then put foo bar, put foo bar2, del foo (revisions 2, 3, 4 on a fresh member).
#[test]
fn live_events_in_order_with_prev_kv_as_etcd() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let base = rev_of(&s.post("/v3/kv/range", &json!({"key": b64("x")}).to_string()).1);
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("foo"), "prev_kv": true})));
    assert_eq!(w.result(&ids), json!({"header": {"revision": base.to_string()}, "created": true}));
    let r1 = put(&s, "foo", "bar");
    let r2 = put(&s, "foo", "bar2");
    let (_, del) = s.post("/v3/kv/deleterange", &json!({"key": b64("foo")}).to_string());
    let r3 = rev_of(&del);
    let (r1s, r2s, r3s) = (r1.to_string(), r2.to_string(), r3.to_string());
    assert_eq!(
        w.result(&ids),
        json!({"header": {"revision": r1s}, "events": [
            {"kv": {"key": "Zm9v", "create_revision": r1s, "mod_revision": r1s, "version": "1", "value": "YmFy"}}]})
    );
    assert_eq!(
        w.result(&ids),
        json!({"header": {"revision": r2s}, "events": [
            {"kv": {"key": "Zm9v", "create_revision": r1s, "mod_revision": r2s, "version": "2", "value": "YmFyMg=="},
             "prev_kv": {"key": "Zm9v", "create_revision": r1s, "mod_revision": r1s, "version": "1", "value": "YmFy"}}]})
    );
    assert_eq!(
        w.result(&ids),
        json!({"header": {"revision": r3s}, "events": [
            {"type": "DELETE", "kv": {"key": "Zm9v", "mod_revision": r3s},
             "prev_kv": {"key": "Zm9v", "create_revision": r1s, "mod_revision": r2s, "version": "2", "value": "YmFyMg=="}}]})
    );
}

/// A txn's events share one revision and arrive in one response (etcd: one
/// `notify` per txn), in the txn's order.
#[test]
fn txn_events_arrive_together() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("t/"), "range_end": b64("t0")})));
    assert_eq!(w.result(&ids)["created"], json!(true));
    let txn = json!({"success": [
        {"request_put": {"key": b64("t/a"), "value": b64("1")}},
        {"request_put": {"key": b64("t/b"), "value": b64("2")}},
        {"request_delete_range": {"key": b64("t/zz")}},
    ]});
    let (_, resp) = s.post("/v3/kv/txn", &txn.to_string());
    let rev = rev_of(&resp).to_string();
    let got = w.result(&ids);
    assert_eq!(got["header"]["revision"], json!(rev));
    let keys: Vec<&str> = got["events"].as_array().unwrap().iter().map(|e| e["kv"]["key"].as_str().unwrap()).collect();
    assert_eq!(keys, [b64("t/a"), b64("t/b")]);
    assert!(got["events"].as_array().unwrap().iter().all(|e| e["kv"]["mod_revision"] == json!(rev)));
}

/// A watch from an old revision replays history, then continues live, while
/// writes go on: every revision exactly once, in order (etcd's watch guarantees).
#[test]
fn history_then_live_with_no_gap_and_no_duplicate_under_writes() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let first = put(&s, "h/0", "0");
    for i in 1..100 {
        put(&s, &format!("h/{}", i % 7), &i.to_string());
    }
    let endpoint = s.endpoint.clone();
    let writer = std::thread::spawn(move || {
        let mut last = 0;
        for i in 100..300 {
            let body = json!({"key": b64(&format!("h/{}", i % 7)), "value": b64(&i.to_string())}).to_string();
            let (code, resp) = common::post(&endpoint, "/v3/kv/put", &body);
            assert_eq!(code, 200);
            last = rev_of(&resp);
        }
        last
    });
    let mut w = WatchStream::open(
        &s,
        &create(json!({"key": b64("h/"), "range_end": b64("h0"), "start_revision": first.to_string(), "prev_kv": true})),
    );
    assert_eq!(w.result(&ids)["created"], json!(true));
    let mut seen: Vec<i64> = Vec::new();
    let read_frame = |w: &mut WatchStream, seen: &mut Vec<i64>| {
        let r = w.result(&ids);
        for e in r["events"].as_array().unwrap_or_else(|| panic!("events: {r}")) {
            let rev: i64 = e["kv"]["mod_revision"].as_str().unwrap().parse().unwrap();
            // Every put after the first seven keys replaces a live value.
            if rev >= first + 7 {
                assert!(e.get("prev_kv").is_some(), "prev_kv at {rev}: {e}");
            }
            seen.push(rev);
        }
    };
    // Past the history replayed at the start, into what the writer adds meanwhile;
    // the writer never waits for this reader (a slow watcher never blocks writes).
    while seen.last().is_none_or(|l| *l < first + 150) {
        read_frame(&mut w, &mut seen);
    }
    let final_rev = writer.join().expect("writer");
    while *seen.last().unwrap() < final_rev {
        read_frame(&mut w, &mut seen);
    }
    let expected: Vec<i64> = (first..=final_rev).collect();
    assert_eq!(seen, expected, "every revision once, in order");
}

/// etcd 3.4.23 after `compact 3`: a watch from revision 2 gets `created`, then
/// `canceled` with `compact_revision` and a header without a revision.
#[test]
fn compacted_start_is_created_then_canceled_as_etcd() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let r = put(&s, "foo", "bar");
    put(&s, "foo", "bar2");
    let now = put(&s, "foo", "bar3");
    let (code, body) = s.post("/v3/kv/compaction", &json!({"revision": (r + 1).to_string()}).to_string());
    assert_eq!(code, 200, "{body}");
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("foo"), "start_revision": r.to_string()})));
    assert_eq!(w.result(&ids), json!({"header": {"revision": now.to_string()}, "created": true}));
    assert_eq!(w.result(&ids), json!({"header": {}, "canceled": true, "compact_revision": (r + 1).to_string()}));
    // At the compaction point itself, history is still there.
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("foo"), "start_revision": (r + 1).to_string(), "watch_id": "7"})));
    assert_eq!(w.result(&ids), json!({"header": {"revision": now.to_string()}, "watch_id": "7", "created": true}));
    let replay = w.result(&ids);
    assert_eq!(replay["watch_id"], json!("7"));
    assert_eq!(replay["events"].as_array().unwrap().len(), 2, "{replay}");
}

#[test]
fn prefix_from_key_and_filters() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("p/"), "range_end": b64("p0"), "watch_id": 1})));
    w.send(&create(json!({"key": b64("m"), "range_end": "AA==", "watch_id": 2})));
    w.send(&create(json!({"key": b64("p/"), "range_end": b64("p0"), "watch_id": 3, "filters": ["NOPUT"]})));
    w.send(&create(json!({"key": b64("p/"), "range_end": b64("p0"), "watch_id": 4, "filters": ["NODELETE"]})));
    for id in 1..=4 {
        assert_eq!(w.result(&ids)["watch_id"], json!(id.to_string()));
    }
    let r1 = put(&s, "p/1", "x").to_string();
    let r2 = put(&s, "a", "not watched").to_string();
    let _ = r2;
    let r3 = put(&s, "z", "from key").to_string();
    let (_, del) = s.post("/v3/kv/deleterange", &json!({"key": b64("p/1")}).to_string());
    let r4 = rev_of(&del).to_string();
    let mut got: Vec<(String, String, String)> = Vec::new();
    for _ in 0..7 {
        let r = w.result(&ids);
        let ev = &r["events"][0];
        got.push((
            r["watch_id"].as_str().unwrap().to_string(),
            ev["type"].as_str().unwrap_or("PUT").to_string(),
            ev["kv"]["mod_revision"].as_str().unwrap().to_string(),
        ));
    }
    let t = |id: &str, ty: &str, rev: &str| (id.to_string(), ty.to_string(), rev.to_string());
    assert_eq!(
        got,
        vec![
            t("1", "PUT", &r1),
            t("2", "PUT", &r1),
            t("4", "PUT", &r1),
            t("2", "PUT", &r3),
            t("1", "DELETE", &r4),
            t("2", "DELETE", &r4),
            t("3", "DELETE", &r4),
        ]
    );
}

/// etcd 3.4.23's answers on one stream: created 7, duplicate 7 refused (watch_id
/// -1 with the reason), progress (watch_id -1, the current revision), cancel 7,
/// then auto ids from 0, and an empty range refused.
#[test]
fn requests_on_one_stream_answer_as_etcd() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let rev = put(&s, "foo", "bar").to_string();
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("foo"), "watch_id": 7})));
    let h = json!({"revision": rev});
    assert_eq!(w.result(&ids), json!({"header": h, "watch_id": "7", "created": true}));
    w.send(&create(json!({"key": b64("foo"), "watch_id": 7})));
    assert_eq!(
        w.result(&ids),
        json!({"header": h, "watch_id": "-1", "created": true, "canceled": true,
               "cancel_reason": "mvcc: duplicate watch ID provided on the WatchStream"})
    );
    w.send(&json!({"progress_request": {}}));
    assert_eq!(w.result(&ids), json!({"header": h, "watch_id": "-1"}));
    w.send(&json!({"cancel_request": {"watch_id": 7}}));
    assert_eq!(w.result(&ids), json!({"header": h, "watch_id": "7", "canceled": true}));
    w.send(&json!({"cancel_request": {"watch_id": 55}})); // unknown: no answer
    w.send(&json!({})); // no request kind: ignored
    w.send(&create(json!({"key": b64("foo")})));
    assert_eq!(w.result(&ids), json!({"header": h, "created": true}));
    w.send(&create(json!({"key": b64("foo")})));
    assert_eq!(w.result(&ids), json!({"header": h, "watch_id": "1", "created": true}));
    w.send(&create(json!({"key": b64("zoo"), "range_end": b64("aoo")})));
    assert_eq!(
        w.result(&ids),
        json!({"header": h, "watch_id": "-1", "created": true, "canceled": true, "cancel_reason": "mvcc: watcher range is empty"})
    );
    // The cancelled watcher is silent; the live ones (0 and 1) see the next put.
    let next = put(&s, "foo", "again").to_string();
    let a = w.result(&ids);
    let b = w.result(&ids);
    assert_eq!((a["watch_id"].clone(), b["watch_id"].clone()), (Value::Null, json!("1")));
    assert_eq!(a["header"]["revision"], json!(next));
    w.silent_for(Duration::from_millis(300));
}

/// Many watchers on one stream each get exactly their own key's events.
#[test]
fn many_watchers_on_one_stream() {
    let s = Server::start(&[]);
    let ids = ids(&s);
    let n = 50;
    let mut w = WatchStream::open(&s, &create(json!({"key": b64("k0"), "watch_id": 100})));
    for i in 1..n {
        w.send(&create(json!({"key": b64(&format!("k{i}")), "watch_id": 100 + i})));
    }
    for i in 0..n {
        assert_eq!(w.result(&ids)["watch_id"], json!((100 + i).to_string()));
    }
    let mut revs = std::collections::HashMap::new();
    for i in (0..n).rev() {
        revs.insert((100 + i).to_string(), put(&s, &format!("k{i}"), "v").to_string());
    }
    for _ in 0..n {
        let r = w.result(&ids);
        let id = r["watch_id"].as_str().unwrap().to_string();
        assert_eq!(r["events"][0]["kv"]["mod_revision"], json!(revs[&id]), "{r}");
        revs.remove(&id);
    }
    assert!(revs.is_empty());
}

/// etcd's gateway: an undecodable first request is a 500 with gRPC code 2.
#[test]
fn undecodable_first_request_is_an_error() {
    let s = Server::start(&[]);
    let (code, body) = s.post("/v3/watch", "garbage");
    assert_eq!(code, 500);
    assert_eq!(body["code"], json!(2));
    assert!(body["error"].is_string() && body["message"] == body["error"], "{body}");
}

/// A client that goes away takes its stream and watchers with it (the hub logs
/// each closed stream at debug level); others are unaffected.
#[test]
fn a_client_going_away_closes_its_stream_only() {
    let s = Server::start(&["--log-level", "debug"]);
    let ids = ids(&s);
    let mut keep = WatchStream::open(&s, &create(json!({"key": b64("g")})));
    assert_eq!(keep.result(&ids)["created"], json!(true));
    for _ in 0..5 {
        let mut gone = WatchStream::open(&s, &create(json!({"key": b64("g")})));
        assert_eq!(gone.result(&ids)["created"], json!(true));
        drop(gone);
    }
    let deadline = Instant::now() + FRAME_TIMEOUT;
    let mut closed = 0;
    while closed < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = s.log.recv_timeout(left).unwrap_or_else(|_| panic!("only {closed} of 5 streams closed"));
        if line.contains("closed with 1 watchers") {
            closed += 1;
        }
    }
    for i in 0..3 {
        let rev = put(&s, "g", &i.to_string()).to_string();
        assert_eq!(keep.result(&ids)["header"]["revision"], json!(rev));
    }
}

/// A client that stops reading holds up neither the writes nor other watchers;
/// when it reads again it gets every revision, in order, once (its watcher fell
/// back to catching up from history).
#[test]
fn a_stalled_client_blocks_nothing_and_loses_nothing() {
    let s = Server::start(&["--log-level", "debug"]);
    let ids = ids(&s);
    let mut stalled = WatchStream::open(&s, &create(json!({"key": b64("big")})));
    let mut live = WatchStream::open(&s, &create(json!({"key": b64("big")})));
    assert_eq!(stalled.result(&ids)["created"], json!(true));
    assert_eq!(live.result(&ids)["created"], json!(true));
    // ~19 MiB of events: more than the stream buffer and the socket buffers hold.
    let value = "x".repeat(64 * 1024);
    let n = 300;
    let mut revs = Vec::new();
    let started = Instant::now();
    for _ in 0..n {
        revs.push(put(&s, "big", &value));
        // The live watcher keeps up while the other stream is stalled.
        let r = live.result(&ids);
        assert_eq!(r["events"][0]["kv"]["mod_revision"], json!(revs.last().unwrap().to_string()));
    }
    assert!(started.elapsed() < Duration::from_secs(60), "writes were held up: {:?}", started.elapsed());
    let mut seen = Vec::new();
    while seen.len() < n {
        let r = stalled.result(&ids);
        for e in r["events"].as_array().unwrap_or_else(|| panic!("events: {r}")) {
            assert_eq!(e["kv"]["value"].as_str().map(str::len), Some(b64(&value).len()));
            seen.push(e["kv"]["mod_revision"].as_str().unwrap().parse::<i64>().unwrap());
        }
    }
    assert_eq!(seen, revs, "every revision once, in order");
    assert!(s.log.try_iter().any(|l| l.contains("fell behind")), "the stalled watcher went through catch-up");
}
