//! etcd's gRPC limits as grpc-go enforces them: a request message past
//! `--max-request-bytes` + 512 KiB is refused with ResourceExhausted and
//! grpc-go's text (not tonic's OutOfRange), and the connection stays usable;
//! one below it but past `--max-request-bytes` gets etcd's "request is too large".
//! Also etcdctl's per-endpoint clients (`endpoint status`, `defrag`), whose
//! `:authority` carries the URL scheme, are served.

mod common;

use common::Server;
use stead::proto::etcdserverpb as pb;
use stead::proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::Code;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

#[test]
fn oversize_requests_get_grpc_go_answers() {
    let s = Server::start(&["--max-request-bytes", "1000"]);
    block_on(async {
        let ch = Channel::from_shared(s.endpoint.clone()).expect("endpoint").connect().await.expect("connect");
        let mut kv = KvClient::new(ch);
        let put = |len: usize| pb::PutRequest { key: b"k".to_vec(), value: vec![b'a'; len], ..Default::default() };
        let e = kv.put(put(600_000)).await.expect_err("refused");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert_eq!(e.message(), "grpc: received message larger than max (600007 vs. 525288)");
        let e = kv.put(put(2000)).await.expect_err("refused");
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "etcdserver: request is too large"));
        kv.put(put(10)).await.expect("the same connection still serves");
    });
}

/// Runs etcdctl (Debian's etcd-client, 3.4) when it is installed.
fn etcdctl(args: &[&str]) -> Option<(i32, String, String)> {
    let out = std::process::Command::new("etcdctl").args(args).output().ok()?;
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn etcdctl_per_endpoint_clients_are_served() {
    let s = Server::start(&[]);
    let endpoints = format!("--endpoints={}", s.endpoint);
    let Some((code, out, err)) = etcdctl(&[&endpoints, "endpoint", "status"]) else {
        eprintln!("etcdctl is not installed (scripts/test installs it): skipped");
        return;
    };
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{}, ", s.endpoint)), "{out}");
    let (code, out, err) = etcdctl(&[&endpoints, "defrag"]).expect("etcdctl");
    assert_eq!((code, out), (0, format!("Finished defragmenting etcd member[{}]\n", s.endpoint)), "{err}");
    let (code, out, err) = etcdctl(&[&endpoints, "endpoint", "health"]).expect("etcdctl");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is healthy") || out.contains("is healthy"), "{out}{err}");
}
