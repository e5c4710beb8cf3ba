//! `steadctl watch KEY -- CMD` and `steadctl watch -i` against a real `stead`:
//! the command runs once per event with etcdctl's environment (Go-quoted values,
//! as etcdctl 3.4.23 sets them), and interactive lines each start a watch.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{b64, Server, Spawned};
use serde_json::json;

const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn steadctl(s: &Server, args: &[&str]) -> Spawned {
    Spawned::start(
        Command::new(env!("CARGO_BIN_EXE_steadctl"))
            .arg(format!("--endpoints={}", s.host_port()))
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::null()),
    )
}

fn put(s: &Server, k: &str, v: &str) -> i64 {
    let (code, body) = s.post("/v3/kv/put", &json!({"key": b64(k), "value": b64(v)}).to_string());
    assert_eq!(code, 200, "{body}");
    body["header"]["revision"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}


#[test]
fn exec_form_runs_the_command_per_event_with_etcdctls_environment() {
    let s = Server::start(&[]);
    let script = r#"echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION""#;
    // From the revision of a first write: the watch is in place once it shows.
    let first = put(&s, "ex", "first").to_string();
    let w = steadctl(&s, &["watch", "--rev", &first, "ex", "--", "sh", "-c", script]);
    // PUT, key, value, then the command's line.
    assert_eq!(w.lines(4, LINE_TIMEOUT), ["PUT", "ex", "first", &format!("\"PUT\" \"ex\" \"first\" {first}")]);
    let rev = put(&s, "ex", "say \"hi\"");
    assert_eq!(w.lines(4, LINE_TIMEOUT), ["PUT", "ex", "say \"hi\"", &format!("\"PUT\" \"ex\" \"say \\\"hi\\\"\" {rev}")]);
    let (_, del) = s.post("/v3/kv/deleterange", &json!({"key": b64("ex")}).to_string());
    let rev = del["header"]["revision"].as_str().unwrap_or_default().to_string();
    assert_eq!(w.lines(4, LINE_TIMEOUT), ["DELETE", "ex", "", &format!("\"DELETE\" \"ex\" \"\" {rev}")]);
}

#[test]
fn interactive_lines_each_start_a_watch() {
    let s = Server::start(&[]);
    let first = put(&s, "ia", "0");
    put(&s, "ib/0", "0");
    let mut w = steadctl(&s, &["watch", "-i"]);
    let mut stdin = w.child.stdin.take().expect("stdin");
    writeln!(stdin, "watch --rev={first} ia").expect("line");
    stdin.flush().expect("flush");
    assert_eq!(w.lines(3, LINE_TIMEOUT), ["PUT", "ia", "0"]);
    writeln!(stdin, "watch --prefix --rev={first} ib -- echo ran").expect("line");
    stdin.flush().expect("flush");
    assert_eq!(w.lines(4, LINE_TIMEOUT), ["PUT", "ib/0", "0", "ran"]);
    put(&s, "ib/x", "1");
    assert_eq!(w.lines(4, LINE_TIMEOUT), ["PUT", "ib/x", "1", "ran"]);
    put(&s, "ia", "2");
    assert_eq!(w.lines(3, LINE_TIMEOUT), ["PUT", "ia", "2"]);
    // The end of stdin ends the run as etcdctl's: exit 3.
    drop(stdin);
    let status = w.child.wait().expect("exit");
    assert_eq!(status.code(), Some(3));
}
