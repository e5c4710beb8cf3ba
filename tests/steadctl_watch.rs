//! `steadctl watch` against stead prints what `etcdctl watch` 3.4.23 prints
//! against a real etcd 3.4.23, for the same writes: simple, json and fields
//! output, --prefix, a range, --rev (history then live), --prev-kv, the
//! compaction cancel (exit 5 and its stderr), and the argument errors. Only the
//! cluster/member ids and the raft term in `-w json` / `-w fields` are
//! normalised (both servers are fresh, so revisions agree).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{b64, Server};
use serde_json::json;

/// How long either tool may take to print what it will print.
const DEADLINE: Duration = Duration::from_secs(10);
/// A watch has printed everything once it has been silent this long.
const QUIET: Duration = Duration::from_millis(1500);

/// A real etcd 3.4 on loopback ports, in a temp dir, killed by its PID on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = common::free_ports(2);
        let (client, peer) = (format!("http://127.0.0.1:{}", ports[0]), format!("http://127.0.0.1:{}", ports[1]));
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/test installs etcd 3.4)");
        let etcd = Etcd { child, endpoint: client, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = common::http_agent()
                .post(&format!("{}/v3/kv/range", etcd.endpoint))
                .send(r#"{"key":"AA=="}"#)
                .is_ok_and(|r| r.status() == 200);
            if up {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same writes on a server: revisions 2..=6 on a fresh one.
fn writes(endpoint: &str) {
    let put = |k: &str, v: &str| {
        let (code, body) = common::post(endpoint, "/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}).to_string());
        assert_eq!(code, 200, "{body}");
    };
    put("foo", "bar");
    put("foo", "baz");
    put("fa", "x y");
    let (code, body) = common::post(endpoint, "/v3/kv/deleterange", &json!({"key": b64("foo")}).to_string());
    assert_eq!(code, 200, "{body}");
    put("foo", "qux");
}

/// What one watch run printed: stdout, stderr, and the exit code if it exited
/// by itself (None: still watching when it was killed).
#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Runs a watch; `then` is done once it has gone quiet (live writes), after
/// which it must go quiet again. The child is killed by its PID at the end.
fn run(program: &Path, endpoint: &str, args: &[&str], then: &dyn Fn()) -> Run {
    let mut child = Command::new(program)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_WATCH_KEY")
        .env_remove("ETCDCTL_WATCH_RANGE_END")
        .arg(format!("--endpoints={}", endpoint.trim_start_matches("http://")))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut out = Vec::new();
    let quiet = |out: &mut Vec<u8>| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match rx.recv_timeout(QUIET) {
                Ok(line) => out.extend(line),
                Err(_) => return,
            }
            assert!(Instant::now() < deadline, "{program:?} {args:?} never went quiet");
        }
    };
    quiet(&mut out);
    then();
    quiet(&mut out);
    // A program that closed its stdout is exiting: give it a moment to finish
    // before deciding it kept watching (its exit status can trail the EOF).
    let mut status = child.try_wait().expect("wait");
    let closing_deadline = Instant::now() + Duration::from_secs(3);
    while status.is_none() && stdout_closed(&rx, &mut out) && Instant::now() < closing_deadline {
        std::thread::sleep(Duration::from_millis(20));
        status = child.try_wait().expect("wait");
    }
    let code = match status {
        Some(status) => status.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
        out.extend(line);
    }
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).ok();
    // steadctl's `Error:  ` has two spaces (the project spec), etcdctl's one.
    let stderr = stderr.replace("Error:  ", "Error: ");
    Run { stdout: String::from_utf8_lossy(&out).into_owned(), stderr, code }
}

/// True when the stdout reader has finished (the program closed its stdout);
/// lines still queued are moved to `out`.
fn stdout_closed(rx: &mpsc::Receiver<Vec<u8>>, out: &mut Vec<u8>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(line) => out.extend(line),
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => return true,
        }
    }
}

/// Replaces the numbers after `"cluster_id":`, `"member_id":`, `"raft_term":`
/// (json) and `"ClusterID" : `, `"MemberID" : `, `"RaftTerm" : ` (fields).
fn normalise_ids(s: &str) -> String {
    let mut out = s.to_string();
    for tag in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":", "\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(tag) {
            result.push_str(&rest[..i + tag.len()]);
            rest = &rest[i + tag.len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            result.push_str(if digits > 0 { "ID" } else { "" });
            rest = &rest[digits..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

#[test]
fn steadctl_watch_on_stead_prints_what_etcdctl_prints_on_etcd() {
    let etcd = Etcd::start();
    let stead = Server::start(&[]);
    writes(&etcd.endpoint);
    writes(&stead.endpoint);
    let etcdctl = Path::new("etcdctl");
    let steadctl = Path::new(env!("CARGO_BIN_EXE_steadctl"));

    let live = |endpoint: &str| {
        let endpoint = endpoint.to_string();
        move || {
            let (code, body) =
                common::post(&endpoint, "/v3/kv/put", &json!({"key": b64("foo"), "value": b64("live")}).to_string());
            assert_eq!(code, 200, "{body}");
        }
    };
    let nothing = || {};
    let cases: &[&[&str]] = &[
        &["watch", "foo", "--rev", "2"],
        &["watch", "--prefix", "f", "--prev-kv", "--rev", "2"],
        &["watch", "foo", "fz", "--rev=2"],
        &["-w", "json", "watch", "foo", "--rev", "2", "--prev-kv"],
        &["watch", "-w", "fields", "--prefix", "f", "--rev", "3"],
    ];
    // Each case also sees one live write (so the revisions move on together).
    for args in cases {
        let want = run(etcdctl, &etcd.endpoint, args, &live(&etcd.endpoint));
        let got = run(steadctl, &stead.endpoint, args, &live(&stead.endpoint));
        assert!(!want.stdout.is_empty(), "{args:?}: etcdctl printed nothing: {want:?}");
        assert_eq!(
            Run { stdout: normalise_ids(&got.stdout), ..got },
            Run { stdout: normalise_ids(&want.stdout), ..want },
            "{args:?}"
        );
    }

    // Argument errors: same stderr and exit code, before any watch.
    let errors: &[&[&str]] = &[
        &["watch"],
        &["watch", "a", "b", "--prefix"],
        &["watch", "a", "--"],
        &["-w", "bogus", "watch", "a"],
        &["watch", "b", "a"], // an empty range: refused by the server, exit 5
    ];
    for args in errors {
        let want = run(etcdctl, &etcd.endpoint, args, &nothing);
        let got = run(steadctl, &stead.endpoint, args, &nothing);
        assert!(want.code.is_some(), "{args:?}: etcdctl kept watching: {want:?}");
        assert_eq!(got, want, "{args:?}");
    }

    // A watch from a compacted revision: the cancel, then exit 5 (json shows it).
    for endpoint in [&etcd.endpoint, &stead.endpoint] {
        let (code, body) = common::post(endpoint, "/v3/kv/compaction", &json!({"revision": "5"}).to_string());
        assert_eq!(code, 200, "{body}");
    }
    for args in [&["watch", "foo", "--rev", "2"][..], &["-w", "json", "watch", "foo", "--rev", "3"]] {
        let want = run(etcdctl, &etcd.endpoint, args, &nothing);
        let got = run(steadctl, &stead.endpoint, args, &nothing);
        assert_eq!(want.code, Some(5), "{want:?}");
        assert_eq!(
            Run { stdout: normalise_ids(&got.stdout), ..got },
            Run { stdout: normalise_ids(&want.stdout), ..want },
            "{args:?}"
        );
    }
}
