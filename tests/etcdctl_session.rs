//! Debian's etcdctl 3.4.23 (the real client, over gRPC) against a 3-member stead
//! cluster: a scripted session through kv, txn, watch, lease, lock, elect,
//! users/roles/auth, member list, endpoint health/status, alarms, defrag and
//! snapshot save (restored with steadctl into a new member). Every expected text
//! below is what etcdctl printed for the same session against a 3-member
//! etcd 3.4.23 cluster; only what differs by nature (ids, ports, sizes, raft
//! indexes, durations) is normalised.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Cluster;

struct Session {
    endpoints: String,
}

impl Session {
    /// etcdctl with the given args: (exit code, stdout, the last stderr line).
    fn run(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoints))
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl (Debian's etcd-client) on PATH");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
        let out = child.wait_with_output().expect("etcdctl output");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.starts_with('{')).unwrap_or_default().to_string();
        (out.status.code().unwrap_or(-1), normalise(&String::from_utf8_lossy(&out.stdout)), last)
    }

    /// A step that must succeed with exactly `want` on stdout (normalised).
    fn expect(&self, args: &[&str], want: &str) {
        let (code, out, err) = self.run(args, "");
        assert_eq!((code, out.as_str()), (0, want), "etcdctl {args:?}: {err}");
    }

    /// A step that must fail with `code` and etcdctl's `Error: …` line.
    fn expect_error(&self, args: &[&str], code: i32, error: &str) {
        let (got, out, err) = self.run(args, "");
        assert_eq!((got, err.as_str()), (code, error), "etcdctl {args:?}: stdout {out}");
    }
}

/// Ids, ports, sizes, indexes and durations, which differ between clusters.
fn normalise(text: &str) -> String {
    let hex16 = replace_ids(text);
    hex16
        .lines()
        .map(|l| {
            let l = replace_ports(l);
            if l.starts_with("| 127.0.0.1") {
                // endpoint status rows: keep endpoint, version, leader flags
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                format!("| {} | {} | {} | {} | {} |", cells[1], cells[3], cells[5], cells[6], cells[10])
            } else {
                l
            }
        })
        .map(|l| l + "\n")
        .collect()
}

/// Replaces every hex id (member and lease ids print as `%x`: 12 to 16 lowercase
/// hex digits, at least one a letter) with `<ID>`.
fn replace_ids(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_digit() || ('a'..='f').contains(c)).count();
        let before_ok = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        let after_ok = chars.get(i + run).is_none_or(|c| !c.is_ascii_alphanumeric());
        let has_letter = chars[i..i + run].iter().any(|c| c.is_ascii_alphabetic());
        if (12..=16).contains(&run) && before_ok && after_ok && has_letter {
            out.push_str("<ID>");
            i += run;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn replace_ports(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..at]);
        out.push_str("127.0.0.1:<PORT>");
        rest = rest[at + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[test]
fn etcdctl_session_against_a_three_member_cluster() {
    let cluster = Cluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(10));
    let eps: Vec<String> = cluster.members.iter().map(|m| m.host_port()).collect();
    let s = Session { endpoints: eps.join(",") };

    // KV and txn.
    s.expect(&["put", "foo", "bar"], "OK\n");
    s.expect(&["get", "foo"], "foo\nbar\n");
    let (code, out, _) = s.run(&["txn"], "value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo nope\n\n");
    assert_eq!((code, out.as_str()), (0, "SUCCESS\n\nOK\n"));
    s.expect(&["get", "foo", "--print-value-only"], "baz\n");

    // Watch: a put made while it runs.
    let watcher = Command::new("etcdctl")
        .args([format!("--endpoints={}", s.endpoints), "watch".into(), "foo".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_millis(800));
    s.expect(&["put", "foo", "qux"], "OK\n");
    std::thread::sleep(Duration::from_millis(800));
    let out = stop(watcher);
    assert_eq!(out, "PUT\nfoo\nqux\n");

    // Leases.
    let (code, granted, _) = s.run(&["lease", "grant", "100"], "");
    assert_eq!((code, granted.as_str()), (0, "lease <ID> granted with TTL(100s)\n"));
    let raw = Command::new("etcdctl")
        .args([format!("--endpoints={}", s.endpoints), "lease".into(), "list".into()])
        .output()
        .expect("lease list");
    let id = String::from_utf8_lossy(&raw.stdout).lines().nth(1).unwrap_or_default().trim().to_string();
    assert_eq!(id.len(), 16, "a lease id from `lease list`: {id:?}");
    s.expect(&["put", &format!("--lease={id}"), "lk", "lv"], "OK\n");
    let (code, ttl, _) = s.run(&["lease", "timetolive", &id, "--keys"], "");
    assert_eq!(code, 0);
    assert!(ttl.starts_with("lease <ID> granted with TTL(100s), remaining(") && ttl.ends_with("s), attached keys([lk])\n"), "{ttl}");
    s.expect(&["lease", "revoke", &id], "lease <ID> revoked\n");
    s.expect(&["get", "lk"], "");

    // Lock (with a command) and election.
    s.expect(&["lock", "mylock", "echo", "locked"], "locked\n");
    let campaigner = Command::new("etcdctl")
        .args([format!("--endpoints={}", s.endpoints), "elect".into(), "myelection".into(), "p1".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl elect");
    std::thread::sleep(Duration::from_millis(1500));
    let observer = Command::new("etcdctl")
        .args([format!("--endpoints={}", s.endpoints), "elect".into(), "-l".into(), "myelection".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl elect -l");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stop(observer), "myelection/<ID>\np1\n");
    assert_eq!(stop(campaigner), "myelection/<ID>\np1\n");

    // Membership and endpoints.
    let (code, members, _) = s.run(&["member", "list"], "");
    assert_eq!(code, 0);
    let mut names: Vec<&str> = members.lines().map(|l| l.split(", ").nth(2).unwrap_or_default()).collect();
    names.sort_unstable();
    assert_eq!(names, ["m1", "m2", "m3"], "{members}");
    assert!(members.lines().all(|l| l.starts_with("<ID>, started, m") && l.ends_with(", false")), "{members}");
    // etcdctl 3.4 writes endpoint health to stderr.
    let health = Command::new("etcdctl")
        .args([format!("--endpoints={}", s.endpoints), "endpoint".into(), "health".into()])
        .output()
        .expect("etcdctl endpoint health");
    let text = String::from_utf8_lossy(&health.stderr);
    assert_eq!(health.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("is healthy: successfully committed proposal")).count(), 3, "{text}");
    let (code, status, _) = s.run(&["endpoint", "status", "-w", "table"], "");
    assert_eq!(code, 0);
    let rows: Vec<&str> = status.lines().filter(|l| l.starts_with("| 127")).collect();
    assert_eq!(rows.len(), 3, "{status}");
    assert_eq!(rows.iter().filter(|r| r.contains("| true | false |")).count(), 1, "one leader: {status}");
    assert!(rows.iter().all(|r| r.contains("| 3.4.23 |")), "{status}");

    // Users, roles, auth.
    s.expect(&["user", "add", "root:pw"], "User root created\n");
    s.expect(&["role", "add", "reader"], "Role reader created\n");
    s.expect(&["role", "grant-permission", "reader", "read", "foo"], "Role reader updated\n");
    s.expect(&["user", "add", "alice:apw"], "User alice created\n");
    s.expect(&["user", "grant-role", "alice", "reader"], "Role reader is granted to user alice\n");
    s.expect(&["auth", "enable"], "Authentication Enabled\n");
    s.expect(&["get", "foo", "--user=alice:apw"], "foo\nqux\n");
    s.expect_error(&["put", "foo", "x", "--user=alice:apw"], 1, "Error: etcdserver: permission denied");
    s.expect(&["role", "get", "reader", "--user=root:pw"], "Role reader\nKV Read:\n\tfoo\nKV Write:\n");
    s.expect(&["user", "list", "--user=root:pw"], "alice\nroot\n");
    s.expect(&["auth", "disable", "--user=root:pw"], "Authentication Disabled\n");

    // Maintenance.
    s.expect(&["alarm", "list"], "");
    s.expect(
        &["defrag"],
        "Finished defragmenting etcd member[127.0.0.1:<PORT>]\n\
         Finished defragmenting etcd member[127.0.0.1:<PORT>]\n\
         Finished defragmenting etcd member[127.0.0.1:<PORT>]\n",
    );
    s.expect_error(
        &["snapshot", "save", "/nonexistent/x.db"],
        5,
        &format!("Error: snapshot must be requested to one selected node, not multiple [{}]", eps.join(" ")),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snap.db");
    let file = file.to_str().expect("utf-8 path");
    let one = Session { endpoints: eps[0].clone() };
    one.expect(&["snapshot", "save", file], &format!("Snapshot saved at {file}\n"));
    restore_and_read(file, dir.path());
}

/// The snapshot etcdctl saved, restored by steadctl into a new data dir: a new
/// single member started on it serves the keys.
fn restore_and_read(file: &str, dir: &std::path::Path) {
    let ports = common::free_ports(2);
    let (client, peer) = (format!("http://127.0.0.1:{}", ports[0]), format!("http://127.0.0.1:{}", ports[1]));
    let data = dir.join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .args(["snapshot", "restore", file, "--name", "r1"])
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--initial-cluster=r1={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .output()
        .expect("steadctl snapshot restore");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let server = common::Launched::new(
        &data,
        [
            ["--name", "r1"],
            ["--listen-client-urls", &client],
            ["--advertise-client-urls", &client],
            ["--listen-peer-urls", &peer],
            ["--initial-advertise-peer-urls", &peer],
            ["--initial-cluster", &format!("r1={peer}")],
        ]
        .concat()
        .into_iter()
        .map(String::from)
        .collect(),
    )
    .wait_ready();
    let s = Session { endpoints: server.host_port() };
    s.expect(&["get", "foo", "--print-value-only"], "qux\n");
}

/// Stops a long-running etcdctl (SIGTERM to our own child) and returns what it
/// printed, normalised.
fn stop(mut child: std::process::Child) -> String {
    use std::io::Read;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    normalise(&out)
}
