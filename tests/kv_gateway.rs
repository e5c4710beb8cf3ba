//! The KV API over etcd's JSON gateway, against a real `stead` process: each case
//! is a request and the answer etcd 3.4.23 gives to it (recorded from a real etcd
//! with the same request; cluster/member ids and terms aside).

mod common;

use common::{b64, Server};
use serde_json::{json, Value};

fn rev(v: &Value) -> i64 {
    v["header"]["revision"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn strip_header(mut v: Value) -> Value {
    if let Some(h) = v.get_mut("header") {
        *h = json!({"revision": h["revision"].clone()});
    }
    v
}

#[test]
fn put_range_delete_follow_etcd_revisions() {
    let s = Server::start(&[]);
    let (code, put1) = s.post("/v3/kv/put", &json!({"key": b64("foo"), "value": b64("bar")}).to_string());
    assert_eq!(code, 200, "{put1}");
    let r1 = rev(&put1);
    assert!(r1 >= 2, "the first write gets revision 2 or later: {put1}");
    let header = &put1["header"];
    assert!(header["cluster_id"].is_string() && header["member_id"].is_string() && header["raft_term"].is_string());

    let (_, put2) = s.post("/v3/kv/put", &json!({"key": b64("foo"), "value": b64("baz"), "prev_kv": true}).to_string());
    assert_eq!(rev(&put2), r1 + 1);
    assert_eq!(
        put2["prev_kv"],
        json!({"key": b64("foo"), "create_revision": r1.to_string(), "mod_revision": r1.to_string(), "version": "1", "value": b64("bar")})
    );

    let (_, got) = s.post("/v3/kv/range", &json!({"key": b64("foo")}).to_string());
    assert_eq!(
        strip_header(got),
        json!({"header": {"revision": (r1 + 1).to_string()},
               "kvs": [{"key": b64("foo"), "create_revision": r1.to_string(), "mod_revision": (r1 + 1).to_string(), "version": "2", "value": b64("baz")}],
               "count": "1"})
    );

    // A range at the first revision still sees the old value (MVCC history).
    let (_, old) = s.post("/v3/kv/range", &json!({"key": b64("foo"), "revision": r1}).to_string());
    assert_eq!(old["kvs"][0]["value"], json!(b64("bar")));

    let (_, del) = s.post("/v3/kv/deleterange", &json!({"key": b64("foo"), "prev_kv": true}).to_string());
    assert_eq!(del["deleted"], json!("1"));
    assert_eq!(del["prev_kvs"][0]["version"], json!("2"));
    let (_, gone) = s.post("/v3/kv/range", &json!({"key": b64("foo")}).to_string());
    assert_eq!(strip_header(gone), json!({"header": {"revision": (r1 + 2).to_string()}}));

    // Re-created: a new generation, version 1 again.
    let (_, _) = s.post("/v3/kv/put", &json!({"key": b64("foo"), "value": b64("new")}).to_string());
    let (_, again) = s.post("/v3/kv/range", &json!({"key": b64("foo")}).to_string());
    assert_eq!(again["kvs"][0]["version"], json!("1"));
    assert_eq!(again["kvs"][0]["create_revision"], json!((r1 + 3).to_string()));
}

#[test]
fn range_options_match_etcd() {
    let s = Server::start(&[]);
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "4")] {
        let (code, body) = s.post("/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}).to_string());
        assert_eq!(code, 200, "{body}");
    }
    // prefix-style range [a, c), limit with more and total count
    let (_, r) = s.post("/v3/kv/range", &json!({"key": b64("a"), "range_end": b64("d"), "limit": 2}).to_string());
    assert_eq!(r["kvs"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["more"], json!(true));
    assert_eq!(r["count"], json!("3"));
    // from-key ("\0"), sorted by value descending
    let (_, r) = s.post(
        "/v3/kv/range",
        &json!({"key": b64("a"), "range_end": "AA==", "sort_order": "DESCEND", "sort_target": "VALUE"}).to_string(),
    );
    let keys: Vec<&str> = r["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec![b64("d"), b64("a"), b64("c"), b64("b")]);
    // count_only and keys_only
    let (_, r) = s.post("/v3/kv/range", &json!({"key": b64("a"), "range_end": "AA==", "count_only": true}).to_string());
    assert_eq!(strip_header(r)["count"], json!("4"));
    let (_, r) = s.post("/v3/kv/range", &json!({"key": b64("a"), "rangeEnd": b64("b"), "keysOnly": true}).to_string());
    assert!(r["kvs"][0].get("value").is_none(), "{r}");
    // a range_end below the key returns nothing
    let (_, r) = s.post("/v3/kv/range", &json!({"key": b64("c"), "range_end": b64("a")}).to_string());
    assert!(r.get("kvs").is_none() && r.get("count").is_none(), "{r}");
    // min/max mod revision filters
    let (_, all) = s.post("/v3/kv/range", &json!({"key": b64("a"), "range_end": "AA=="}).to_string());
    let c_mod = all["kvs"][2]["mod_revision"].as_str().unwrap().to_string();
    let (_, r) = s.post("/v3/kv/range", &json!({"key": b64("a"), "range_end": "AA==", "min_mod_revision": c_mod}).to_string());
    assert_eq!(r["kvs"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["count"], json!("4"), "count is every key in the range, as etcd");
}

#[test]
fn txn_compares_branches_and_nested_headers_match_etcd() {
    let s = Server::start(&[]);
    let (_, first) = s.post(
        "/v3/kv/txn",
        &json!({"compare": [{"key": b64("foo"), "target": "VERSION", "result": "EQUAL", "version": "0"}],
                "success": [{"request_put": {"key": b64("foo"), "value": b64("1")}},
                            {"request_range": {"key": b64("foo")}},
                            {"request_delete_range": {"key": b64("x")}}],
                "failure": [{"request_range": {"key": b64("foo")}}]})
        .to_string(),
    );
    let r = rev(&first);
    assert_eq!(first["succeeded"], json!(true));
    let rs = r.to_string();
    assert_eq!(
        first["responses"],
        json!([{"response_put": {"header": {"revision": rs}}},
               {"response_range": {"header": {"revision": rs},
                                   "kvs": [{"key": b64("foo"), "create_revision": rs, "mod_revision": rs, "version": "1", "value": b64("1")}],
                                   "count": "1"}},
               {"response_delete_range": {"header": {"revision": rs}}}])
    );
    // The same txn again fails its compare: `succeeded` is omitted, the failure
    // branch runs, a nested txn's header is empty.
    let (_, second) = s.post(
        "/v3/kv/txn",
        &json!({"compare": [{"key": b64("foo"), "target": "VERSION", "result": "EQUAL", "version": "0"}],
                "success": [{"request_put": {"key": b64("foo"), "value": b64("1")}}],
                "failure": [{"request_txn": {"success": [{"request_range": {"key": b64("foo")}}]}}]})
        .to_string(),
    );
    assert!(second.get("succeeded").is_none(), "{second}");
    assert_eq!(rev(&second), r);
    assert_eq!(second["responses"][0]["response_txn"]["header"], json!({}));
    assert_eq!(second["responses"][0]["response_txn"]["succeeded"], json!(true));
    // value compare on a missing key is false; mod compare on a missing key uses 0
    let (_, third) = s.post(
        "/v3/kv/txn",
        &json!({"compare": [{"key": b64("nope"), "target": "MOD", "result": "LESS", "mod_revision": "100"}]}).to_string(),
    );
    assert_eq!(third["succeeded"], json!(true));
    let (_, fourth) = s.post(
        "/v3/kv/txn",
        &json!({"compare": [{"key": b64("nope"), "target": "VALUE", "result": "NOT_EQUAL", "value": b64("x")}]}).to_string(),
    );
    assert!(fourth.get("succeeded").is_none(), "{fourth}");
}

/// Every error: etcd's text and gRPC code in `{"error","message","code"}`, the
/// HTTP status etcd's gateway uses, and the store unchanged afterwards.
#[test]
fn bad_requests_get_etcd_errors_and_change_nothing() {
    let s = Server::start(&["--max-txn-ops", "4", "--max-request-bytes", "1024"]);
    let (_, put) = s.post("/v3/kv/put", &json!({"key": b64("k"), "value": b64("v")}).to_string());
    let before = rev(&put);
    let cases: Vec<(&str, String, u16, &str, i64)> = vec![
        ("/v3/kv/put", json!({"key": ""}).to_string(), 400, "etcdserver: key is not provided", 3),
        ("/v3/kv/range", "".to_string(), 400, "etcdserver: key is not provided", 3),
        ("/v3/kv/range", json!({"key": b64("k"), "revision": 1000}).to_string(), 400, "etcdserver: mvcc: required revision is a future revision", 11),
        ("/v3/kv/put", json!({"key": b64("missing"), "ignore_value": true}).to_string(), 400, "etcdserver: key not found", 3),
        ("/v3/kv/put", json!({"key": b64("k"), "lease": "5"}).to_string(), 404, "etcdserver: requested lease not found", 5),
        ("/v3/kv/put", json!({"key": b64("k"), "lease": "5", "ignore_lease": true}).to_string(), 400, "etcdserver: lease is provided", 3),
        ("/v3/kv/txn", json!({"success": [{"request_put": {"key": b64("a"), "value": b64("1")}}, {"request_delete_range": {"key": b64("a")}}]}).to_string(), 400, "etcdserver: duplicate key given in txn request", 3),
        ("/v3/kv/txn", json!({"success": (0..5).map(|i| json!({"request_range": {"key": b64(&format!("k{i}"))}})).collect::<Vec<_>>()}).to_string(), 400, "etcdserver: too many operations in txn request", 3),
        ("/v3/kv/put", json!({"key": b64("big"), "value": b64(&"x".repeat(2000))}).to_string(), 400, "etcdserver: request is too large", 3),
        ("/v3/kv/compaction", json!({"revision": 1000}).to_string(), 400, "etcdserver: mvcc: required revision is a future revision", 11),
    ];
    for (path, body, status, text, code) in cases {
        let (got_status, got) = s.post(path, &body);
        assert_eq!((got_status, &got["error"], &got["message"], &got["code"]), (status, &json!(text), &json!(text), &json!(code)), "{path} {body}");
    }
    // Malformed JSON: 400, code 3, the parser's message.
    let (status, got) = s.post("/v3/kv/range", r#"{"key":"Zm9v","#);
    assert_eq!(status, 400);
    assert_eq!(got["code"], json!(3));
    assert!(got["error"].as_str().is_some_and(|e| !e.is_empty()));
    let (status, got) = s.post("/v3/kv/range", r#"{"key":"Zm9v","limit":"x"}"#);
    assert_eq!((status, &got["code"]), (400, &json!(3)), "{got}");
    // Unknown fields are ignored, as etcd's gateway does.
    let (status, _) = s.post("/v3/kv/range", &json!({"key": b64("k"), "bogus": 1}).to_string());
    assert_eq!(status, 200);

    let (_, after) = s.post("/v3/kv/range", &json!({"key": b64("k")}).to_string());
    assert_eq!(rev(&after), before, "no refused request changed the store");
}

#[test]
fn compaction_boundaries_match_etcd() {
    let s = Server::start(&[]);
    let mut revs = Vec::new();
    for v in ["1", "2", "3"] {
        let (_, p) = s.post("/v3/kv/put", &json!({"key": b64("c"), "value": b64(v)}).to_string());
        revs.push(rev(&p));
    }
    let (status, body) = s.post("/v3/kv/compaction", &json!({"revision": revs[1]}).to_string());
    assert_eq!(status, 200, "{body}");
    // At the compacted revision: still readable. Below: compacted.
    let (status, at) = s.post("/v3/kv/range", &json!({"key": b64("c"), "revision": revs[1]}).to_string());
    assert_eq!(status, 200);
    assert_eq!(at["kvs"][0]["value"], json!(b64("2")));
    let (_, below) = s.post("/v3/kv/range", &json!({"key": b64("c"), "revision": revs[0]}).to_string());
    assert_eq!(below["error"], json!("etcdserver: mvcc: required revision has been compacted"));
    let (_, again) = s.post("/v3/kv/compaction", &json!({"revision": revs[1]}).to_string());
    assert_eq!(again["error"], json!("etcdserver: mvcc: required revision has been compacted"));
}

#[test]
fn health_and_version_answer_like_etcd() {
    let s = Server::start(&[]);
    let agent = common::http_agent();
    let mut resp = agent.get(&format!("{}/health", s.endpoint)).call().expect("GET /health");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), r#"{"health":"true"}"#);
    let mut resp = agent.get(&format!("{}/version", s.endpoint)).call().expect("GET /version");
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["etcdcluster"], json!("3.4.0"));
    assert!(v["etcdserver"].as_str().is_some_and(|s| s.starts_with("3.4.")));
    let (status, st) = s.post("/v3/maintenance/status", "{}");
    assert_eq!(status, 200);
    assert_eq!(st["leader"], st["header"]["member_id"], "a single member leads itself: {st}");
}

/// `--auto-compaction-mode periodic --auto-compaction-retention 2s`: history older
/// than the retention gets compacted without anyone asking (etcd's periodic
/// compactor, sampled every tenth of the retention).
#[test]
fn periodic_auto_compaction_compacts_old_history() {
    let s = Server::start(&["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"]);
    let (_, first) = s.post("/v3/kv/put", &json!({"key": b64("ac"), "value": b64("1")}).to_string());
    let first_rev = rev(&first);
    for v in 2..5 {
        s.post("/v3/kv/put", &json!({"key": b64("ac"), "value": b64(&v.to_string())}).to_string());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, got) = s.post("/v3/kv/range", &json!({"key": b64("ac"), "revision": first_rev}).to_string());
        if got["error"] == json!("etcdserver: mvcc: required revision has been compacted") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "revision {first_rev} was never compacted: {got}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, latest) = s.post("/v3/kv/range", &json!({"key": b64("ac")}).to_string());
    assert_eq!(latest["kvs"][0]["value"], json!(b64("4")), "compaction keeps the latest value");
}
