//! Auth through steadctl against stead: the project spec's session line for line
//! (passwords piped to the prompts, which print on stdout as etcdctl's do), the
//! permission matrix over the JSON gateway, and users and tokens across a
//! 3-member cluster.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{b64, Cluster, Server};
use serde_json::Value;

/// steadctl with `stdin` piped in: (exit code, stdout, stderr).
fn steadctl(ep: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .arg(format!("--endpoints={ep}"))
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_USER")
        .env_remove("ETCDCTL_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run steadctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("steadctl output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn spec_session_runs_line_for_line() {
    let s = Server::start(&[]);
    let ep = s.host_port();
    // (args, piped stdin, exit code, stdout, stderr)
    let session: &[(&[&str], &str, i32, &str, &str)] = &[
        (&["auth", "enable"], "", 1, "", "Error:  etcdserver: root user does not exist\n"),
        (
            &["user", "add", "root"],
            "rootpw\nrootpw\n",
            0,
            "Password of root: \nType password of root again for confirmation: \nUser root created\n",
            "",
        ),
        (&["auth", "enable"], "", 0, "Authentication Enabled\n", ""),
        (&["user", "list"], "", 1, "", "Error:  etcdserver: user name not found\n"),
        (&["user", "list", "--user=root"], "rootpw\n", 0, "Password: \nroot\n", ""),
        (&["user", "get", "root", "--user=root"], "rootpw\n", 0, "Password: \nUser: root\nRoles: root\n", ""),
        (
            &["user", "add", "mengyuan", "--user=root"],
            "mypw\nmypw\nrootpw\n",
            0,
            "Password of mengyuan: \nType password of mengyuan again for confirmation: \nPassword: \nUser mengyuan created\n",
            "",
        ),
        (&["put", "key1", "v1", "--user=mengyuan"], "mypw\n", 1, "Password: \n", "Error:  etcdserver: permission denied\n"),
        (&["role", "add", "rw_key_", "--user=root"], "rootpw\n", 0, "Password: \nRole rw_key_ created\n", ""),
        (
            &["--user=root", "role", "grant-permission", "rw_key_", "readwrite", "key", "--prefix=true"],
            "rootpw\n",
            0,
            "Password: \nRole rw_key_ updated\n",
            "",
        ),
        (
            &["--user=root", "user", "grant-role", "mengyuan", "rw_key_"],
            "rootpw\n",
            0,
            "Password: \nRole rw_key_ is granted to user mengyuan\n",
            "",
        ),
        (&["put", "key1", "v1", "--user=mengyuan"], "mypw\n", 0, "Password: \nOK\n", ""),
        (&["put", "k1", "v1", "--user=mengyuan"], "mypw\n", 1, "Password: \n", "Error:  etcdserver: permission denied\n"),
        (&["user", "list", "--user=mengyuan"], "mypw\n", 1, "Password: \n", "Error:  etcdserver: permission denied\n"),
        (
            &["user", "grant-role", "mengyuan", "root", "--user=root"],
            "rootpw\n",
            0,
            "Password: \nRole root is granted to user mengyuan\n",
            "",
        ),
        (&["user", "list", "--user=mengyuan"], "mypw\n", 0, "Password: \nmengyuan\nroot\n", ""),
    ];
    for (i, (args, stdin, code, stdout, stderr)) in session.iter().enumerate() {
        let got = steadctl(&ep, args, stdin);
        assert_eq!(got, (*code, stdout.to_string(), stderr.to_string()), "step {} {args:?}", i + 1);
    }
    // The key mengyuan wrote is there; a wrong password is refused at login.
    let (code, out, _) = steadctl(&ep, &["get", "key1", "--user=root:rootpw"], "");
    assert_eq!((code, out.as_str()), (0, "key1\nv1\n"));
    let (code, _, err) = steadctl(&ep, &["get", "key1", "--user=root:nope"], "");
    assert_eq!((code, err.as_str()), (2, "Error:  etcdserver: authentication failed, invalid user ID or password\n"));
}

/// A token for `user:password` from the gateway.
fn token(ep: &str, user: &str, password: &str) -> String {
    let (status, body) = call(ep, None, "/v3/auth/authenticate", &format!(r#"{{"name":"{user}","password":"{password}"}}"#));
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("a token").to_string()
}

/// A gateway call with an optional token: (HTTP status, body).
fn call(ep: &str, token: Option<&str>, path: &str, body: &str) -> (u16, Value) {
    let agent = common::http_agent();
    let mut req = agent.post(format!("http://{ep}{path}")).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", t);
    }
    let mut resp = req.send(body).expect("gateway call");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn setup_users(ep: &str) {
    let root_calls = [
        ("/v3/auth/user/add", r#"{"name":"root","password":"rootpw"}"#.to_string()),
        ("/v3/auth/user/add", r#"{"name":"reader","password":"rpw"}"#.to_string()),
        ("/v3/auth/user/add", r#"{"name":"writer","password":"wpw"}"#.to_string()),
        ("/v3/auth/user/add", r#"{"name":"other","password":"opw"}"#.to_string()),
        ("/v3/auth/role/add", r#"{"name":"r"}"#.to_string()),
        ("/v3/auth/role/add", r#"{"name":"w"}"#.to_string()),
        ("/v3/auth/role/add", r#"{"name":"o"}"#.to_string()),
        ("/v3/auth/role/grant", format!(r#"{{"name":"r","perm":{{"permType":"READ","key":"{}","range_end":"{}"}}}}"#, b64("a/"), b64("a0"))),
        ("/v3/auth/role/grant", format!(r#"{{"name":"w","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#, b64("a/"), b64("a0"))),
        ("/v3/auth/role/grant", format!(r#"{{"name":"o","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#, b64("b/"), b64("b0"))),
        ("/v3/auth/user/grant", r#"{"user":"reader","role":"r"}"#.to_string()),
        ("/v3/auth/user/grant", r#"{"user":"writer","role":"w"}"#.to_string()),
        ("/v3/auth/user/grant", r#"{"user":"other","role":"o"}"#.to_string()),
        ("/v3/kv/put", format!(r#"{{"key":"{}","value":"{}"}}"#, b64("a/k"), b64("v0"))),
        ("/v3/auth/enable", "{}".to_string()),
    ];
    for (path, body) in root_calls {
        let (status, resp) = call(ep, None, path, &body);
        assert_eq!(status, 200, "{path}: {resp}");
    }
}

/// Every API against every kind of caller: allowed calls succeed, refused ones
/// get etcd's error and change nothing.
#[test]
fn permission_matrix() {
    let s = Server::start(&[]);
    let ep = s.host_port();
    setup_users(&ep);
    let root = token(&ep, "root", "rootpw");
    let reader = token(&ep, "reader", "rpw");
    let writer = token(&ep, "writer", "wpw");
    let other = token(&ep, "other", "opw");
    // A wrong password gets no token.
    let (status, body) = call(&ep, None, "/v3/auth/authenticate", r#"{"name":"reader","password":"nope"}"#);
    assert_eq!((status, body["error"].as_str()), (400, Some("etcdserver: authentication failed, invalid user ID or password")));

    let denied = "etcdserver: permission denied";
    let empty = "etcdserver: user name is empty";
    let get = format!(r#"{{"key":"{}"}}"#, b64("a/k"));
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("a/k"), b64("changed"));
    let del = format!(r#"{{"key":"{}"}}"#, b64("a/k"));
    let txn = format!(
        r#"{{"compare":[{{"key":"{}","target":"VERSION","version":"0","result":"GREATER"}}],"success":[{{"request_put":{{"key":"{}","value":"{}"}}}}]}}"#,
        b64("a/k"),
        b64("a/k"),
        b64("changed")
    );
    let member_add = r#"{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}"#;
    // (caller name, token, path, body, expected error or None for success)
    let cases: Vec<(&str, Option<&str>, &str, &str, Option<&str>)> = vec![
        ("nobody", None, "/v3/kv/range", &get, Some(empty)),
        ("nobody", None, "/v3/kv/put", &put, Some(empty)),
        ("bad token", Some("bogus.1"), "/v3/kv/range", &get, Some("etcdserver: invalid auth token")),
        ("reader", Some(&reader), "/v3/kv/range", &get, None),
        ("reader", Some(&reader), "/v3/kv/put", &put, Some(denied)),
        ("reader", Some(&reader), "/v3/kv/deleterange", &del, Some(denied)),
        ("reader", Some(&reader), "/v3/kv/txn", &txn, Some(denied)),
        ("other", Some(&other), "/v3/kv/range", &get, Some(denied)),
        ("other", Some(&other), "/v3/kv/put", &put, Some(denied)),
        ("writer", Some(&writer), "/v3/kv/compaction", r#"{"revision":"1"}"#, Some(denied)),
        ("writer", Some(&writer), "/v3/auth/user/list", "{}", Some(denied)),
        ("writer", Some(&writer), "/v3/cluster/member/add", member_add, Some(denied)),
        ("writer", Some(&writer), "/v3/kv/txn", &txn, None),
        ("writer", Some(&writer), "/v3/kv/range", &get, None),
        ("root", Some(&root), "/v3/auth/user/list", "{}", None),
        ("root", Some(&root), "/v3/kv/range", &get, None),
    ];
    for (who, tok, path, body, want) in cases {
        let before = call(&ep, Some(&root), "/v3/kv/range", &get).1;
        let (status, resp) = call(&ep, tok, path, body);
        match want {
            None => assert_eq!(status, 200, "{who} {path}: {resp}"),
            Some(err) => {
                assert_eq!(resp["error"].as_str(), Some(err), "{who} {path}: {status} {resp}");
                let after = call(&ep, Some(&root), "/v3/kv/range", &get).1;
                assert_eq!(before["kvs"], after["kvs"], "{who} {path}: a refused call changed the key");
            }
        }
    }
    // Maintenance calls refuse non-root with the auth package's own text.
    let (status, resp) = call(&ep, Some(&writer), "/v3/maintenance/hash", "{}");
    assert_eq!((status, resp["error"].as_str()), (500, Some("auth: permission denied")));
    // A watch on a range the caller cannot read is created and canceled at once.
    let (status, line) = {
        use std::io::BufRead;
        let agent = common::http_agent();
        let resp = agent
            .post(format!("http://{ep}/v3/watch"))
            .header("Authorization", &other)
            .send(format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64("a/k")))
            .expect("watch");
        let status = resp.status().as_u16();
        let mut line = String::new();
        std::io::BufReader::new(resp.into_body().into_reader()).read_line(&mut line).expect("a frame");
        (status, line)
    };
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(first["result"]["canceled"], Value::Bool(true), "{line}");
    assert_eq!(
        first["result"]["cancel_reason"].as_str(),
        Some("rpc error: code = PermissionDenied desc = etcdserver: permission denied")
    );
}

/// A user added through one member logs in on another; a password change
/// voids the old tokens on every member.
#[test]
fn users_and_tokens_across_a_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(std::time::Duration::from_secs(10));
    let eps: Vec<String> = cluster.members.iter().map(|s| s.host_port()).collect();
    let (a, b) = (&eps[leader], &eps[(leader + 1) % 3]);
    for body in [r#"{"name":"root","password":"rootpw"}"#, r#"{"name":"alice","password":"apw"}"#] {
        assert_eq!(call(a, None, "/v3/auth/user/add", body).0, 200);
    }
    assert_eq!(call(a, None, "/v3/auth/enable", "{}").0, 200);
    // Added on one member, logged in on another; the token works everywhere.
    let alice = token(b, "alice", "apw");
    let root = token(b, "root", "rootpw");
    for ep in &eps {
        let (status, body) = call(ep, Some(&root), "/v3/auth/user/get", r#"{"name":"alice"}"#);
        assert_eq!(status, 200, "{ep}: {body}");
        assert_eq!(call(ep, Some(&alice), "/v3/auth/user/get", r#"{"name":"alice"}"#).0, 200, "{ep}");
    }
    // A new password: the old token is void on every member, the new one works.
    assert_eq!(call(a, Some(&root), "/v3/auth/user/changepw", r#"{"name":"alice","password":"apw2"}"#).0, 200);
    for ep in &eps {
        get_alice_until(ep, &alice, "old token still accepted", |_, body| {
            body["error"].as_str() == Some("etcdserver: invalid auth token")
        });
    }
    let (status, body) = call(b, None, "/v3/auth/authenticate", r#"{"name":"alice","password":"apw"}"#);
    assert_eq!((status, body["error"].as_str()), (400, Some("etcdserver: authentication failed, invalid user ID or password")));
    let fresh = token(b, "alice", "apw2");
    // The token is known to a member once it has applied the login (as in
    // etcd): `a` may answer a moment after `b` did, and only with this error.
    get_alice_until(a, &fresh, "the fresh token never worked", |status, body| {
        if status != 200 {
            assert_eq!(body["error"].as_str(), Some("etcdserver: invalid auth token"), "{body}");
        }
        status == 200
    });
}

/// Asks `ep` for user alice with `token` until `settled` accepts the answer,
/// for up to 5 s: a member learns of an auth change (a login, a new password)
/// when it applies it, a moment after the member that answered it.
fn get_alice_until(ep: &str, token: &str, what: &str, settled: impl Fn(u16, &Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, body) = call(ep, Some(token), "/v3/auth/user/get", r#"{"name":"alice"}"#);
        if settled(status, &body) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{ep}: {what}: {body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `--auth-token jwt,…`: a token signed by one member is honoured by every
/// member holding the key; any auth change makes it stale, and a fresh login
/// works again.
#[test]
fn jwt_tokens_work_on_every_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, b"a shared HMAC secret for the test cluster").expect("write secret");
    let flag = format!("--auth-token=jwt,priv-key={},sign-method=HS256,ttl=10m", secret.display());
    let cluster = Cluster::start(3, &[&flag]);
    let leader = cluster.wait_leader(std::time::Duration::from_secs(10));
    let eps: Vec<String> = cluster.members.iter().map(|s| s.host_port()).collect();
    let a = &eps[leader];
    for body in [r#"{"name":"root","password":"rootpw"}"#, r#"{"name":"alice","password":"apw"}"#] {
        assert_eq!(call(a, None, "/v3/auth/user/add", body).0, 200);
    }
    assert_eq!(call(a, None, "/v3/auth/enable", "{}").0, 200);
    let root = token(&eps[(leader + 1) % 3], "root", "rootpw");
    assert_eq!(root.split('.').count(), 3, "a JWT: {root}");
    for ep in &eps {
        assert_eq!(call(ep, Some(&root), "/v3/auth/user/list", "{}").0, 200, "{ep}");
    }
    // A forged token is refused.
    let forged = format!("{}x", root);
    assert_eq!(call(a, Some(&forged), "/v3/auth/user/list", "{}").1["error"].as_str(), Some("etcdserver: invalid auth token"));
    // An auth change makes every earlier token stale.
    assert_eq!(call(a, Some(&root), "/v3/auth/user/changepw", r#"{"name":"alice","password":"apw2"}"#).0, 200);
    let (_, body) = call(a, Some(&root), "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("k")));
    assert_eq!(body["error"].as_str(), Some("etcdserver: revision of auth store is old"), "{body}");
    let root = token(a, "root", "rootpw");
    assert_eq!(call(a, Some(&root), "/v3/auth/user/list", "{}").0, 200);
}

/// Users, roles and the enabled flag live in the backend: a restarted member
/// still enforces them. (Simple tokens live in memory; the log replayed at
/// start may assign recent ones again, as etcd's replay does.)
#[test]
fn auth_state_survives_a_restart() {
    let mut s = Server::start(&[]);
    let ep = s.host_port();
    setup_users(&ep);
    s.restart();
    let ep = s.host_port();
    let get = format!(r#"{{"key":"{}"}}"#, b64("a/k"));
    assert_eq!(call(&ep, None, "/v3/kv/range", &get).1["error"].as_str(), Some("etcdserver: user name is empty"));
    let reader = token(&ep, "reader", "rpw");
    assert_eq!(call(&ep, Some(&reader), "/v3/kv/range", &get).0, 200);
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("a/k"), b64("x"));
    assert_eq!(call(&ep, Some(&reader), "/v3/kv/put", &put).1["error"].as_str(), Some("etcdserver: permission denied"));
}

/// The member's own requests run as root (etcd's `WithRoot`): with auth on, a
/// lease still expires and its keys go, though no user asked for the revoke.
#[test]
fn leases_expire_with_auth_on() {
    let s = Server::start(&[]);
    let ep = s.host_port();
    setup_users(&ep);
    let writer = token(&ep, "writer", "wpw");
    let (status, granted) = call(&ep, Some(&writer), "/v3/lease/grant", r#"{"TTL":"2"}"#);
    assert_eq!(status, 200, "{granted}");
    let id = granted["ID"].as_str().expect("a lease id").to_string();
    let put = format!(r#"{{"key":"{}","value":"{}","lease":"{id}"}}"#, b64("a/leased"), b64("v"));
    assert_eq!(call(&ep, Some(&writer), "/v3/kv/put", &put).0, 200);
    let get = format!(r#"{{"key":"{}"}}"#, b64("a/leased"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, body) = call(&ep, Some(&writer), "/v3/kv/range", &get);
        if body.get("kvs").is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the leased key outlived its lease: {body}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
