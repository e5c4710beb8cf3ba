//! steadctl's behaviour that needs no server, checked on the real binary:
//! exit codes and texts as etcdctl 3.4.23 prints them (captured from it).
//! The full side-by-side comparison against etcdctl is scripts/compare-etcdctl.sh.

use std::process::{Command, Output};

fn steadctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .output()
        .expect("run steadctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_is_the_one_deliberate_difference() {
    let out = steadctl(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("steadctl version: {}\nAPI version: 3.4\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_like_etcdctl() {
    // (args, exit code, stderr)
    let cases: &[(&[&str], i32, &str)] = &[
        (&["get"], 128, "Error:  get command needs one argument as key and an optional argument as range_end\n"),
        (&["del"], 128, "Error:  del command needs one argument as key and an optional argument as range_end\n"),
        (&["compaction"], 128, "Error:  compaction command needs 1 argument\n"),
        (&["compaction", "abc"], 1, "Error:  strconv.ParseInt: parsing \"abc\": invalid syntax\n"),
        (&["put", "k", "v", "--lease=zz"], 128, "Error:  bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"),
        (&["get", "k", "--consistency=x"], 4, "Error:  unknown consistency flag \"x\"\n"),
        (&["get", "k", "-w", "xml"], 4, "Error:  unsupported output format\n"),
        (&["txn", "extra"], 128, "Error:  txn command does not accept argument\n"),
        (&["put", "k", "v", "--badflag"], 1, "Error: unknown flag: --badflag\n\nError:  unknown flag: --badflag\n"),
    ];
    for (args, code, stderr) in cases {
        let out = steadctl(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), *stderr, "{args:?}");
    }
}

#[test]
fn unsupported_flags_and_commands_fail_clearly() {
    let out = steadctl(&["--cert=client.pem", "get", "k"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stderr), "Error:  steadctl does not support --cert (TLS) yet\n");
    // etcdctl's interactive watch ends with stdin (here: empty), exit 3.
    let out = steadctl(&["watch", "k", "-i"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "Error:  Error reading watch request line: EOF\n");
}

#[test]
fn unreachable_endpoint_times_out_like_etcdctl() {
    let out = steadctl(&["--endpoints=127.0.0.1:1", "--command-timeout=300ms", "get", "k"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error:  context deadline exceeded\n");
    // clientv3's retry warnings, as etcdctl 3.4 prints them, with --debug.
    let out = steadctl(&["--endpoints=127.0.0.1:1", "--command-timeout=300ms", "--debug", "get", "k"]);
    let err = text(&out.stderr);
    assert!(err.ends_with("\nError:  context deadline exceeded\n"), "{err}");
    assert!(err.contains("\"msg\":\"retrying of unary invoker failed\""), "{err}");
}
