//! etcd's v3 gRPC API on the client port, against a real `stead` process: the
//! generated tonic client and the real `etcdctl` 3.4.23 speak gRPC to the same
//! port the JSON gateway answers on. Each answer is the one etcd 3.4.23 gives to
//! the same request (recorded from a real etcd; cluster/member ids and terms
//! aside), errors with etcd's gRPC code and text (clients map errors back by
//! their text).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{b64, Server};
use serde_json::{json, Value};
use stead::proto::etcdserverpb as pb;
use stead::proto::etcdserverpb::auth_client::AuthClient;
use stead::proto::etcdserverpb::cluster_client::ClusterClient;
use stead::proto::etcdserverpb::kv_client::KvClient;
use stead::proto::etcdserverpb::lease_client::LeaseClient;
use stead::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use stead::proto::mvccpb::KeyValue;
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

fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key.into(), ..Default::default() }
}

fn rev(header: &Option<pb::ResponseHeader>) -> i64 {
    header.as_ref().expect("a response header").revision
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

/// Asserts a gRPC error by code and by etcd's exact text.
fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("an error status");
    assert_eq!((status.code(), status.message()), (code, text), "{status:?}");
}

#[test]
fn kv_round_trips_follow_etcd() {
    let s = Server::start(&[]);
    block_on(async {
        let mut kv_api = KvClient::new(channel(&s).await);

        // Put: a new revision per write; prev_kv returns what was there.
        let put1 = kv_api.put(put("foo", "bar")).await.expect("put").into_inner();
        let r1 = rev(&put1.header);
        assert!(r1 >= 2, "the first write gets revision 2 or later: {put1:?}");
        let header = put1.header.as_ref().expect("header");
        assert!(header.cluster_id != 0 && header.member_id != 0 && header.raft_term >= 1, "{header:?}");
        assert_eq!(put1.prev_kv, None);
        let put2 = kv_api
            .put(pb::PutRequest { prev_kv: true, ..put("foo", "baz") })
            .await
            .expect("put")
            .into_inner();
        assert_eq!(rev(&put2.header), r1 + 1);
        assert_eq!(put2.prev_kv, Some(kv("foo", "bar", r1, r1, 1)));

        // Range: one key, a prefix, count and more with a limit.
        kv_api.put(put("foo2", "x")).await.expect("put");
        let got = kv_api.range(get("foo")).await.expect("range").into_inner();
        assert_eq!((rev(&got.header), got.count, got.more), (r1 + 2, 1, false));
        assert_eq!(got.kvs, vec![kv("foo", "baz", r1, r1 + 1, 2)]);
        let prefix = pb::RangeRequest { range_end: "fop".into(), limit: 1, ..get("foo") };
        let got = kv_api.range(prefix).await.expect("range").into_inner();
        assert_eq!((got.count, got.more, got.kvs.len()), (2, true, 1));
        let old = pb::RangeRequest { revision: r1, ..get("foo") };
        let got = kv_api.range(old).await.expect("range").into_inner();
        assert_eq!(got.kvs, vec![kv("foo", "bar", r1, r1, 1)]);
        let missing = kv_api.range(get("nothing")).await.expect("range").into_inner();
        assert_eq!((missing.count, missing.kvs.len()), (0, 0));

        // Txn: the compare picks the branch; responses carry only the revision.
        let txn = |expected: &str| pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Value as i32,
                key: "foo".into(),
                target_union: Some(pb::compare::TargetUnion::Value(expected.into())),
                ..Default::default()
            }],
            success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put("foo", "qux"))) }],
            failure: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(get("foo2"))) }],
        };
        let won = kv_api.txn(txn("baz")).await.expect("txn").into_inner();
        assert!(won.succeeded);
        assert_eq!(rev(&won.header), r1 + 3);
        assert_eq!(
            won.responses,
            vec![pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse {
                    header: Some(pb::ResponseHeader { revision: r1 + 3, ..Default::default() }),
                    prev_kv: None,
                })),
            }]
        );
        let lost = kv_api.txn(txn("baz")).await.expect("txn").into_inner();
        assert!(!lost.succeeded);
        assert_eq!(rev(&lost.header), r1 + 3, "a read-only branch writes nothing");
        match &lost.responses[..] {
            [pb::ResponseOp { response: Some(pb::response_op::Response::ResponseRange(r)) }] => {
                assert_eq!(r.kvs, vec![kv("foo2", "x", r1 + 2, r1 + 2, 1)]);
            }
            other => panic!("one range response expected: {other:?}"),
        }

        // DeleteRange with prev_kv.
        let del = pb::DeleteRangeRequest { key: "foo2".into(), prev_kv: true, ..Default::default() };
        let deleted = kv_api.delete_range(del).await.expect("delete").into_inner();
        assert_eq!((rev(&deleted.header), deleted.deleted), (r1 + 4, 1));
        assert_eq!(deleted.prev_kvs, vec![kv("foo2", "x", r1 + 2, r1 + 2, 1)]);
        let again = pb::DeleteRangeRequest { key: "foo2".into(), ..Default::default() };
        let none = kv_api.delete_range(again).await.expect("delete").into_inner();
        assert_eq!((rev(&none.header), none.deleted), (r1 + 4, 0), "deleting nothing is not a revision");

        // Errors: etcd's code and text.
        assert_status(
            kv_api.range(pb::RangeRequest { revision: r1 + 100, ..get("foo") }).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        assert_status(kv_api.put(put("", "v")).await, Code::InvalidArgument, "etcdserver: key is not provided");
        assert_status(kv_api.range(get("")).await, Code::InvalidArgument, "etcdserver: key is not provided");
        let duplicate = pb::TxnRequest {
            success: vec![
                pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put("d", "1"))) },
                pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put("d", "2"))) },
            ],
            ..Default::default()
        };
        assert_status(
            kv_api.txn(duplicate).await,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );

        // A request past --max-request-bytes (1.5 MiB) but within gRPC's framing
        // allowance: etcd's own "request is too large".
        let big = "v".repeat(1024 * 1024 * 8 / 5);
        assert_status(kv_api.put(put("big", &big)).await, Code::InvalidArgument, "etcdserver: request is too large");

        // Compaction: older revisions are gone, the compacted one still reads.
        let compact_to = r1 + 1;
        let compacted = kv_api
            .compact(pb::CompactionRequest { revision: compact_to, physical: true })
            .await
            .expect("compact")
            .into_inner();
        assert_eq!(rev(&compacted.header), r1 + 4, "compaction is not a revision: {compacted:?}");
        assert_status(
            kv_api.range(pb::RangeRequest { revision: r1, ..get("foo") }).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        let at = kv_api.range(pb::RangeRequest { revision: compact_to, ..get("foo") }).await.expect("range");
        assert_eq!(at.into_inner().kvs, vec![kv("foo", "baz", r1, r1 + 1, 2)]);
        assert_status(
            kv_api.compact(pb::CompactionRequest { revision: compact_to, physical: false }).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert_status(
            kv_api.compact(pb::CompactionRequest { revision: r1 + 100, physical: false }).await,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
    });
}

#[test]
fn maintenance_status_describes_the_member() {
    let s = Server::start(&[]);
    block_on(async {
        let channel = channel(&s).await;
        let written = KvClient::new(channel.clone()).put(put("k", "v")).await.expect("put").into_inner();
        let status = MaintenanceClient::new(channel).status(pb::StatusRequest::default()).await.expect("status").into_inner();
        let header = status.header.expect("header");
        assert_eq!(status.version, "3.4.23");
        assert_eq!(header.revision, rev(&written.header));
        assert_eq!(status.leader, header.member_id, "a single member leads: {status:?}");
        assert_eq!(status.raft_term, header.raft_term);
        assert!(status.raft_index >= 2 && status.raft_applied_index >= 2, "{status:?}");
        assert!(status.db_size > 0 && !status.is_learner && status.errors.is_empty(), "{status:?}");
    });
}

#[test]
fn every_service_is_served_with_etcds_errors() {
    let s = Server::start(&[]);
    block_on(async {
        let channel = channel(&s).await;
        // The Lease service is served now (tests/lease.rs).
        let granted = LeaseClient::new(channel.clone())
            .lease_grant(pb::LeaseGrantRequest { ttl: 10, ..Default::default() })
            .await
            .expect("lease grant");
        assert_eq!(granted.into_inner().ttl, 10);
        // Auth is served (tests/steadctl_auth.rs): enabling it needs a root user.
        assert_status(
            AuthClient::new(channel.clone()).auth_enable(pb::AuthEnableRequest::default()).await,
            Code::FailedPrecondition,
            "etcdserver: root user does not exist",
        );
        // The Cluster service is served: this member lists itself.
        let members = ClusterClient::new(channel.clone())
            .member_list(pb::MemberListRequest::default())
            .await
            .expect("member list")
            .into_inner();
        assert_eq!(members.members.len(), 1, "{members:?}");
        assert_eq!(members.members[0].name, "default");
        // Maintenance is served in full (tests/maintenance.rs).
        MaintenanceClient::new(channel.clone()).defragment(pb::DefragmentRequest::default()).await.expect("defragment");
        MaintenanceClient::new(channel.clone()).hash(pb::HashRequest::default()).await.expect("hash");
        // Writes did not happen behind an error: the store is still at its start.
        let got = KvClient::new(channel).range(get("k")).await.expect("range").into_inner();
        assert_eq!(rev(&got.header), 1);
    });
}

/// Runs etcdctl 3.4.23 (the v3 API) against `endpoint`: (exit code, stdout, stderr).
fn etcdctl(s: &Server, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", s.host_port()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("etcdctl output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line etcdctl prints on stderr (its `Error: ...`; retries log before).
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn etcdctl_speaks_grpc_beside_the_gateway_on_one_port() {
    let found = Command::new("sh").arg("-c").arg("command -v etcdctl").output().is_ok_and(|o| o.status.success());
    assert!(found, "etcdctl is not installed: run the suite with scripts/test, which installs etcd 3.4 from Debian");
    let s = Server::start(&[]);

    assert_eq!(etcdctl(&s, &["put", "foo", "bar"], ""), (0, "OK\n".into(), String::new()));
    assert_eq!(etcdctl(&s, &["get", "foo"], "").1, "foo\nbar\n");
    let (code, out, err) = etcdctl(&s, &["get", "foo", "-w", "json"], "");
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).expect("etcdctl JSON");
    let r = got["header"]["revision"].as_i64().expect("revision as a JSON number");
    assert!(got["header"]["cluster_id"].is_u64() && got["header"]["member_id"].is_u64(), "{got}");
    assert_eq!(
        got["kvs"],
        json!([{"key": b64("foo"), "create_revision": r, "mod_revision": r, "version": 1, "value": b64("bar")}])
    );
    assert_eq!(got["count"], 1);

    // The JSON gateway, on the same port, sees what gRPC wrote and the reverse.
    let (status, range) = s.post("/v3/kv/range", &json!({"key": b64("foo")}).to_string());
    assert_eq!(status, 200, "{range}");
    assert_eq!(range["kvs"][0]["value"], b64("bar"));
    assert_eq!(range["header"]["revision"], r.to_string());
    let (status, _) = s.post("/v3/kv/put", &json!({"key": b64("gw"), "value": b64("json")}).to_string());
    assert_eq!(status, 200);
    assert_eq!(etcdctl(&s, &["get", "gw", "--print-value-only"], "").1, "json\n");

    // Txn, non-interactive: compares, success ops, failure ops.
    let script = "value(\"foo\") = \"bar\"\n\nput foo baz\n\nput other x\n\n";
    assert_eq!(etcdctl(&s, &["txn"], script), (0, "SUCCESS\n\nOK\n".into(), String::new()));
    assert_eq!(etcdctl(&s, &["txn"], script), (0, "FAILURE\n\nOK\n".into(), String::new()));
    assert_eq!(etcdctl(&s, &["get", "foo", "--print-value-only"], "").1, "baz\n");
    assert_eq!(etcdctl(&s, &["get", "other", "--print-value-only"], "").1, "x\n");

    assert_eq!(etcdctl(&s, &["del", "foo"], "").1, "1\n");
    assert_eq!(etcdctl(&s, &["del", "foo"], "").1, "0\n");
    let (code, out, _) = etcdctl(&s, &["get", "foo"], "");
    assert_eq!((code, out.as_str()), (0, ""));

    // etcd's errors reach etcdctl with their text, so it prints etcd's message.
    let (code, _, err) = etcdctl(&s, &["get", "foo", "--rev=1000"], "");
    assert_eq!((code, last_line(&err)), (1, "Error: etcdserver: mvcc: required revision is a future revision"));
    let (code, _, err) = etcdctl(&s, &["put", "", "v"], "");
    assert_eq!((code, last_line(&err)), (1, "Error: etcdserver: key is not provided"));

    let (code, out, _) = etcdctl(&s, &["compact", "3"], "");
    assert_eq!((code, out.as_str()), (0, "compacted revision 3\n"));
    let (code, _, err) = etcdctl(&s, &["get", "foo", "--rev=2"], "");
    assert_eq!((code, last_line(&err)), (1, "Error: etcdserver: mvcc: required revision has been compacted"));

    let (code, out, err) = etcdctl(&s, &["endpoint", "status", "-w", "json"], "");
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).expect("etcdctl JSON");
    let st = &status[0]["Status"];
    assert_eq!(status[0]["Endpoint"], s.host_port());
    assert_eq!(st["version"], "3.4.23");
    assert_eq!(st["leader"], st["header"]["member_id"]);
    assert!(st["raftIndex"].as_u64().is_some_and(|i| i > 0), "{status}");

    // Auth over gRPC: with auth off every user may list users (none yet).
    let (code, out, err) = etcdctl(&s, &["user", "list"], "");
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status line, body).
fn read_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content-length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status.trim_end().to_string(), String::from_utf8(body).expect("utf-8 body"))
}

#[test]
fn connections_are_routed_by_their_first_bytes() {
    let s = Server::start(&[]);
    let addr = s.host_port();

    // HTTP/1.1 keep-alive: several requests on one connection stay with the gateway.
    let stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let body = json!({"key": b64("k")}).to_string();
    for _ in 0..3 {
        write!(
            writer,
            "POST /v3/kv/range HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
        let (status, body) = read_response(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("\"revision\":\"1\""), "{body}");
    }

    // The HTTP/2 preface split across two segments still goes to gRPC: the server
    // answers with its SETTINGS frame (type 4), not an HTTP/1.1 status line.
    let mut h2 = TcpStream::connect(&addr).expect("connect");
    h2.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    h2.set_nodelay(true).expect("nodelay");
    h2.write_all(b"PRI * HTTP/2.0\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(100));
    h2.write_all(b"\r\nSM\r\n\r\n").expect("write");
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).expect("write an empty SETTINGS frame");
    let mut frame_header = [0u8; 9];
    h2.read_exact(&mut frame_header).expect("a frame from the server");
    assert_eq!(frame_header[3], 4, "a SETTINGS frame first: {frame_header:?}");

    // A request line that merely starts like the preface is HTTP/1.
    let mut put = TcpStream::connect(&addr).expect("connect");
    put.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    put.write_all(b"PUT /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").expect("write");
    let (status, _) = read_response(&mut BufReader::new(put));
    assert!(status.starts_with("HTTP/1.1 4"), "the gateway answers (its routes are POST): {status}");
}
