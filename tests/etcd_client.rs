//! stead driven by a gRPC client nobody here wrote: the `etcd-client` crate, on
//! a 3-member cluster. KV and txn, a watch stream that lives through a leader
//! change, the lease keep-alive stream, member list, status, the snapshot
//! stream (with etcd's SHA-256 trailer shape), Hash and alarms.

mod common;

use std::time::Duration;

use common::Cluster;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect")
}

/// Bounded wait for the next watch response.
async fn next_watch(stream: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a watch response in time")
        .expect("the watch stream is healthy")
        .expect("the watch stream is open")
}

#[test]
fn etcd_client_crate_against_a_three_member_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint.clone()).collect();
    block_on(async {
        let mut kv = Client::connect(&endpoints, None).await.expect("connect");

        // KV and txn.
        kv.put("a", "1", None).await.expect("put");
        kv.put("b", "2", None).await.expect("put");
        let got = kv.get("", Some(GetOptions::new().with_prefix())).await.expect("get");
        assert_eq!(got.kvs().iter().map(|k| k.key()).collect::<Vec<_>>(), vec![b"a".as_slice(), b"b"]);
        let txn = Txn::new()
            .when([Compare::value("a", CompareOp::Equal, "1")])
            .and_then([TxnOp::put("a", "from-txn", None)])
            .or_else([TxnOp::get("a", None)]);
        assert!(kv.txn(txn).await.expect("txn").succeeded());
        let got = kv.get("a", None).await.expect("get");
        assert_eq!(got.kvs()[0].value(), b"from-txn");
        let failed = Txn::new().when([Compare::value("a", CompareOp::Equal, "1")]).or_else([TxnOp::get("b", None)]);
        assert!(!kv.txn(failed).await.expect("txn").succeeded());

        // A watch stream on a follower, through a leader change.
        let mut watcher = client(&endpoints[follower]).await;
        let mut stream = watcher.watch("w/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        let created = next_watch(&mut stream).await;
        assert!(created.created());
        kv.put("w/1", "before", None).await.expect("put");
        let first = next_watch(&mut stream).await;
        assert_eq!(first.events().len(), 1);
        assert_eq!(first.events()[0].kv().expect("kv").value(), b"before");

        let leader_id = {
            let mut c = client(&endpoints[leader]).await;
            let st = c.status().await.expect("status");
            assert_eq!(st.version(), "3.4.23");
            assert!(st.raft_index() > 0);
            st.header().expect("header").member_id()
        };
        let other_id = client(&endpoints[other]).await.status().await.expect("status").header().expect("header").member_id();
        client(&endpoints[leader]).await.move_leader(other_id).await.expect("move leader");
        let st = client(&endpoints[follower]).await.status().await.expect("status");
        assert_ne!(st.leader(), leader_id, "the leader moved");

        kv.put("w/2", "after", None).await.expect("put after the leader change");
        let second = next_watch(&mut stream).await;
        assert_eq!(second.events()[0].event_type(), EventType::Put);
        assert_eq!(second.events()[0].kv().expect("kv").value(), b"after");

        // Lease keep-alive stream.
        let lease = kv.lease_grant(10, None).await.expect("grant");
        let (mut keeper, mut responses) = kv.lease_keep_alive(lease.id()).await.expect("keep alive");
        for _ in 0..2 {
            keeper.keep_alive().await.expect("send keep-alive");
            let r = tokio::time::timeout(Duration::from_secs(10), responses.message())
                .await
                .expect("an answer in time")
                .expect("stream healthy")
                .expect("stream open");
            assert_eq!(r.id(), lease.id());
            assert!(r.ttl() > 0 && r.ttl() <= 10, "{}", r.ttl());
        }
        kv.lease_revoke(lease.id()).await.expect("revoke");

        // Member list.
        let members = kv.member_list().await.expect("member list");
        let mut names: Vec<&str> = members.members().iter().map(|m| m.name()).collect();
        names.sort_unstable();
        assert_eq!(names, ["m1", "m2", "m3"]);

        // Snapshot stream, Hash and alarms on one member.
        let mut one = client(&endpoints[follower]).await;
        let mut snapshot = one.snapshot().await.expect("snapshot");
        let mut bytes = Vec::new();
        while let Some(chunk) = snapshot.message().await.expect("snapshot chunk") {
            bytes.extend_from_slice(chunk.blob());
        }
        assert_eq!(bytes.len() % 512, 32, "etcd's SHA-256 trailer shape");
        let dump = stead::storage::snapshot_file::decode(&bytes, false).expect("a valid snapshot");
        assert!(stead::storage::snapshot::inspect(dump).expect("a valid dump").records > 0);
        assert_eq!(one.hash().await.expect("hash").hash(), one.hash().await.expect("hash").hash());
        let alarms = one
            .alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None)
            .await
            .expect("alarm list");
        assert!(alarms.alarms().is_empty());
        one.defragment().await.expect("defragment");
        assert_eq!(one.get("a", None).await.expect("get after defrag").kvs()[0].value(), b"from-txn");
    });
}

/// Auth through the crate: users, roles and permissions set up over gRPC, then a
/// client logged in with `ConnectOptions::with_user` (the token travels in the
/// metadata) may do what its role allows and gets etcd's errors for the rest.
#[test]
fn etcd_client_crate_with_auth() {
    use etcd_client::{ConnectOptions, Permission};
    let s = common::Server::start(&[]);
    block_on(async {
        let mut admin = client(&s.endpoint).await;
        admin.user_add("root", "rootpw", None).await.expect("user add root");
        admin.user_add("app", "apppw", None).await.expect("user add app");
        admin.role_add("app-rw").await.expect("role add");
        admin.role_grant_permission("app-rw", Permission::read_write("app/").with_prefix()).await.expect("grant");
        admin.user_grant_role("app", "app-rw").await.expect("grant role");
        admin.auth_enable().await.expect("auth enable");

        let options = ConnectOptions::new().with_user("app", "apppw");
        let mut app = Client::connect([s.endpoint.as_str()], Some(options)).await.expect("log in as app");
        app.put("app/x", "1", None).await.expect("put in its prefix");
        assert_eq!(app.get("app/x", None).await.expect("get").kvs()[0].value(), b"1");
        let refused = app.put("other", "1", None).await.expect_err("outside its prefix");
        assert!(refused.to_string().contains("etcdserver: permission denied"), "{refused}");

        let refused = client(&s.endpoint).await.get("app/x", None).await.expect_err("no credentials");
        assert!(refused.to_string().contains("etcdserver: user name is empty"), "{refused}");
        let wrong = Client::connect([s.endpoint.as_str()], Some(ConnectOptions::new().with_user("app", "nope"))).await;
        let wrong = wrong.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(wrong.contains("authentication failed, invalid user ID or password"), "{wrong}");

        let root = ConnectOptions::new().with_user("root", "rootpw");
        let mut root = Client::connect([s.endpoint.as_str()], Some(root)).await.expect("log in as root");
        let users = root.user_list().await.expect("user list");
        assert_eq!(users.users(), ["app", "root"]);
        root.auth_disable().await.expect("auth disable");
    });
}
