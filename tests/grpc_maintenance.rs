//! etcd's Maintenance service beyond Status: HashKV (the key space's hash at a
//! revision, with etcd's compacted / future revision errors, on gRPC and on the
//! gateway's `/v3/maintenance/hash`) and Snapshot (the backend dump streamed in
//! chunks), against a real `stead` process.

mod common;

use common::{b64, Server};
use serde_json::json;
use stead::proto::etcdserverpb as pb;
use stead::proto::etcdserverpb::kv_client::KvClient;
use stead::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;
use tonic::Code;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(s.endpoint.clone()).expect("endpoint").connect().await.expect("gRPC connect")
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("an error status");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), text, "{status:?}");
}

#[test]
fn hash_kv_is_stable_at_a_revision_and_follows_writes() {
    let s = Server::start(&[]);
    block_on(async {
        let ch = channel(&s).await;
        let mut kv = KvClient::new(ch.clone());
        let mut m = MaintenanceClient::new(ch);
        kv.put(put("a", "1")).await.expect("put");
        kv.put(put("b", "1")).await.expect("put"); // revision 3
        let hash = |r: i64| pb::HashKvRequest { revision: r };

        let h3 = m.hash_kv(hash(3)).await.expect("hash_kv").into_inner();
        assert_eq!(h3.header.as_ref().expect("header").revision, 3);
        assert_eq!(h3.compact_revision, -1, "never compacted: {h3:?}");
        assert_eq!(m.hash_kv(hash(3)).await.expect("hash_kv").into_inner().hash, h3.hash, "stable across calls");
        assert_eq!(m.hash_kv(hash(0)).await.expect("hash_kv").into_inner().hash, h3.hash, "0 is the current revision");
        assert_ne!(m.hash_kv(hash(2)).await.expect("hash_kv").into_inner().hash, h3.hash);

        kv.put(put("a", "2")).await.expect("put"); // revision 4
        let h4 = m.hash_kv(hash(0)).await.expect("hash_kv").into_inner();
        assert_ne!(h4.hash, h3.hash, "a put changes the current hash");
        assert_eq!(h4.header.as_ref().expect("header").revision, 4);
        let again3 = m.hash_kv(hash(3)).await.expect("hash_kv").into_inner();
        assert_eq!(again3.hash, h3.hash, "the past is unchanged");
        assert_eq!(again3.header.expect("header").revision, 4, "the header names the current revision");

        assert_status(m.hash_kv(hash(5)).await, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");
        kv.compact(pb::CompactionRequest { revision: 3, physical: true }).await.expect("compact");
        assert_status(m.hash_kv(hash(3)).await, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
        assert_status(m.hash_kv(hash(2)).await, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
        let after = m.hash_kv(hash(4)).await.expect("hash_kv above the compacted revision").into_inner();
        assert_eq!(after.compact_revision, 3);
    });

    // The gateway serves HashKV at etcd's path, with etcd's JSON.
    let (code, body) = s.post("/v3/maintenance/hash", &json!({ "revision": "4" }).to_string());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["compact_revision"], "3", "{body}");
    assert!(body["hash"].as_u64().is_some(), "{body}");
    let (code, body) = s.post("/v3/maintenance/hash", &json!({ "revision": "9" }).to_string());
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["message"], "etcdserver: mvcc: required revision is a future revision", "{body}");
    let (code, body) = s.post("/v3/maintenance/hash", "{}");
    assert_eq!(code, 200, "no revision: the current one: {body}");
    assert_eq!(body["header"]["revision"], "4", "{body}");
}

#[test]
fn snapshot_streams_a_valid_dump() {
    let s = Server::start(&[]);
    let (code, body) =
        s.post("/v3/kv/put", &json!({ "key": b64("k"), "value": b64(&"v".repeat(4096)) }).to_string());
    assert_eq!(code, 200, "{body}");
    block_on(async {
        let ch = channel(&s).await;
        let mut kv = KvClient::new(ch.clone());
        // About 3 MiB of values: more than one chunk.
        let big = "x".repeat(64 * 1024);
        for i in 0..48 {
            kv.put(put(&format!("big/{i}"), &big)).await.expect("put");
        }
        let mut stream = MaintenanceClient::new(ch).snapshot(pb::SnapshotRequest {}).await.expect("snapshot").into_inner();
        let mut blob = Vec::new();
        let mut answers = 0;
        let mut last_remaining = u64::MAX;
        while let Some(answer) = stream.message().await.expect("a snapshot answer") {
            answers += 1;
            assert!(answer.remaining_bytes < last_remaining, "remaining_bytes falls");
            last_remaining = answer.remaining_bytes;
            assert!(answer.header.is_some());
            blob.extend_from_slice(&answer.blob);
        }
        assert!(answers > 1, "several chunks: {answers}");
        assert_eq!(last_remaining, 0);
        assert_eq!(blob.len() % 512, 32, "etcd's SHA-256 trailer after page-aligned data");
        let dump = stead::storage::snapshot_file::decode(&blob, false).expect("a valid snapshot file");
        let info = stead::storage::snapshot::inspect(dump).expect("a valid dump");
        assert_eq!(info.bytes, dump.len());
        assert!(info.records >= 50, "{info:?}");
    });
}
