//! etcd's space quota and alarms, Defragment and Hash against real `stead`
//! processes: a member past `--quota-backend-bytes` raises NOSPACE (kept across
//! a restart), writes that grow the store fail with etcd's error while reads,
//! deletes and compaction work; delete + compact + defrag shrink the backend and,
//! once disarmed, writes work again (etcd's documented recovery). Hash is equal
//! on members holding the same data.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{b64, Cluster, Server};
use serde_json::{json, Value};
use stead::proto::etcdserverpb as pb;
use stead::proto::etcdserverpb::kv_client::KvClient;
use stead::proto::etcdserverpb::lease_client::LeaseClient;
use stead::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;
use tonic::Code;

const NOSPACE_TEXT: &str = "etcdserver: mvcc: database space exceeded";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string()).expect("endpoint").connect().await.expect("gRPC connect")
}

fn steadctl(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run steadctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn db_size(s: &Server) -> u64 {
    let (_, st) = s.post("/v3/maintenance/status", "{}");
    st["dbSize"].as_str().and_then(|v| v.parse().ok()).expect("dbSize")
}

fn put_body(key: &str, value: &str) -> String {
    json!({"key": b64(key), "value": b64(value)}).to_string()
}

fn get(endpoint: &str, path: &str) -> (u16, String, String) {
    let mut resp = common::http_agent().get(&format!("{endpoint}{path}")).call().expect("GET");
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (resp.status().as_u16(), content_type, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn nospace_alarm_blocks_growth_until_defragmented_and_disarmed() {
    let mut s = Server::start(&["--quota-backend-bytes", "600000"]);
    let (_, st) = s.post("/v3/maintenance/status", "{}");
    let member_id: u64 = st["header"]["member_id"].as_str().and_then(|v| v.parse().ok()).expect("member id");
    assert!(st.get("errors").is_none(), "no alarm yet: {st}");

    // Fill the backend: its size is read after each flush, so a few writes may
    // pass the quota before one is refused; bounded by a count, not a clock.
    let value = "v".repeat(20_000);
    let mut refused = None;
    for i in 0..400 {
        let (status, body) = s.post("/v3/kv/put", &put_body(&format!("k{i:03}"), &value));
        if status != 200 {
            refused = Some((status, body));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = refused.expect("a put past the quota is refused");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body, json!({"error": NOSPACE_TEXT, "message": NOSPACE_TEXT, "code": 8}));

    // The member raised NOSPACE for itself; it is listed, in Status and /health.
    let (_, alarms) = s.post("/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    assert_eq!(alarms, json!({"alarms": [{"memberID": member_id.to_string(), "alarm": "NOSPACE"}]}));
    let (_, st) = s.post("/v3/maintenance/status", "{}");
    assert_eq!(st["errors"], json!([format!("memberID:{member_id} alarm:NOSPACE ")]));
    assert_eq!(get(&s.endpoint, "/health"), (503, "text/plain; charset=utf-8".into(), "{\"health\":\"false\"}\n".into()));
    assert_eq!(get(&s.endpoint, "/health?exclude=NOSPACE").0, 200);
    let (code, out, err) = steadctl(&s.endpoint, &["alarm", "list"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, format!("memberID:{member_id} alarm:NOSPACE \n").as_str(), ""));

    // Alarms are state: they survive a restart.
    s.restart();
    let (_, alarms) = s.post("/v3/maintenance/alarm", "{}");
    assert_eq!(alarms["alarms"].as_array().map(Vec::len), Some(1), "{alarms}");

    block_on(async {
        let ch = channel(&s.endpoint).await;
        let mut kv = KvClient::new(ch.clone());
        let mut lease = LeaseClient::new(ch.clone());
        // Growth is refused with etcd's code and text, also a txn with a put and
        // a lease grant; a read-only txn, ranges and deletes still work.
        let small = pb::PutRequest { key: b"x".to_vec(), value: b"y".to_vec(), ..Default::default() };
        let e = kv.put(small.clone()).await.expect_err("put refused");
        assert_eq!((e.code(), e.message()), (Code::ResourceExhausted, NOSPACE_TEXT));
        let txn = pb::TxnRequest {
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(small.clone())) }],
            ..Default::default()
        };
        assert_eq!(kv.txn(txn).await.expect_err("txn refused").code(), Code::ResourceExhausted);
        let e = lease.lease_grant(pb::LeaseGrantRequest { ttl: 10, id: 0 }).await.expect_err("grant refused");
        assert_eq!((e.code(), e.message()), (Code::ResourceExhausted, NOSPACE_TEXT));
        let all = pb::RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), count_only: true, ..Default::default() };
        let before = kv.range(all.clone()).await.expect("range").into_inner().count;
        assert!(before > 0);
        let reads = pb::TxnRequest {
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(all.clone())) }],
            ..Default::default()
        };
        kv.txn(reads).await.expect("read-only txn");
        let deleted = kv
            .delete_range(pb::DeleteRangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() })
            .await
            .expect("delete")
            .into_inner();
        assert_eq!(deleted.deleted, before);
        let revision = deleted.header.expect("header").revision;
        kv.compact(pb::CompactionRequest { revision, physical: true }).await.expect("compact");
    });

    // Defragment gives the space back (sled never shrinks its files itself).
    let before = db_size(&s);
    let (code, out, err) = steadctl(&s.endpoint, &["defrag"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, format!("Finished defragmenting etcd member[{}]\n", s.endpoint).as_str(), ""));
    let after = db_size(&s);
    assert!(after < before && after < 600_000, "defrag: {before} -> {after} bytes");

    // Disarmed, writes work again.
    let (code, out, _) = steadctl(&s.endpoint, &["alarm", "disarm"]);
    assert_eq!((code, out), (0, format!("memberID:{member_id} alarm:NOSPACE \n")));
    let (code, out, _) = steadctl(&s.endpoint, &["alarm", "list"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(s.post("/v3/kv/put", &put_body("x", "y")).0, 200);
    assert_eq!(get(&s.endpoint, "/health").0, 200);
}

#[test]
fn alarms_apply_on_every_member_and_corrupt_refuses_writes() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;
    let activate = json!({"action": "ACTIVATE", "memberID": "5", "alarm": "CORRUPT"}).to_string();
    let (status, body) = c.members[follower].post("/v3/maintenance/alarm", &activate);
    assert_eq!((status, body), (200, json!({"alarms": [{"memberID": "5", "alarm": "CORRUPT"}]})));
    for m in &c.members {
        let (status, body) = m.post("/v3/kv/put", &put_body("a", "1"));
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["message"], json!("etcdserver: corrupt cluster"));
        let (_, st) = m.post("/v3/maintenance/status", "{}");
        assert_eq!(st["errors"], json!(["memberID:5 alarm:CORRUPT "]));
    }
    let deactivate = json!({"action": "DEACTIVATE", "memberID": "5", "alarm": "CORRUPT"}).to_string();
    assert_eq!(c.members[leader].post("/v3/maintenance/alarm", &deactivate).0, 200);
    assert_eq!(c.members[follower].post("/v3/kv/put", &put_body("a", "1")).0, 200);
}

#[test]
fn hash_is_equal_on_members_with_the_same_data() {
    let c = Cluster::start(3, &[]);
    c.wait_leader(Duration::from_secs(20));
    for i in 0..20 {
        assert_eq!(c.members[i % 3].post("/v3/kv/put", &put_body(&format!("k{i}"), "v")).0, 200);
    }
    let hashes = |c: &Cluster| -> Vec<(u32, i64)> {
        block_on(async {
            let mut out = Vec::new();
            for m in &c.members {
                let mut client = MaintenanceClient::new(channel(&m.endpoint).await);
                let h = client.hash(pb::HashRequest {}).await.expect("hash").into_inner();
                out.push((h.hash, h.header.expect("header").revision));
            }
            out
        })
    };
    // Followers apply a moment after the leader: poll, bounded by attempts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let h = hashes(&c);
        if h.iter().all(|x| *x == h[0] && x.1 == 21) {
            break h[0].0;
        }
        assert!(Instant::now() < deadline, "members never agreed: {h:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hashes(&c)[0].0, first, "stable while nothing changes");
    assert_eq!(c.members[0].post("/v3/kv/put", &put_body("k0", "changed")).0, 200);
    let (_, body): (u16, Value) = c.members[0].post("/v3/kv/range", &json!({"key": b64("k0")}).to_string());
    assert_eq!(body["kvs"][0]["value"], json!(b64("changed")));
    assert_ne!(hashes(&c)[0].0, first, "a write changes the hash");

    // `defrag --cluster`: every member, each on its own line.
    let (code, out, err) = steadctl(&c.members[0].endpoint, &["defrag", "--cluster"]);
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> =
        c.members.iter().map(|m| format!("Finished defragmenting etcd member[{}]", m.endpoint)).collect();
    want.sort_unstable();
    assert_eq!(lines, want);
}
