//! The `stead` command line as scripts and supervisors see it: `--version`, exit
//! status 2 with a message naming the key for bad configuration, and etcd's
//! milestone log lines.

mod common;

use std::process::Command;

fn stead(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stead")).args(args).output().expect("run stead");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints_like_etcd() {
    let (code, out, _) = stead(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("stead Version: "), "{out}");
    assert!(out.contains("etcd API Version: 3.4"), "{out}");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--heartbeat-interval", "soon"], "heartbeat-interval"),
        (vec!["--election-timeout", "100", "--heartbeat-interval", "100"], "election-timeout"),
        (vec!["--initial-cluster-state", "maybe"], "initial-cluster-state"),
        (vec!["--no-such-flag"], "--no-such-flag"),
        (vec!["--cert-file", "a.pem"], "--cert-file"),
        (vec!["--auto-compaction-retention", "1d"], "auto-compaction-retention"),
        (vec!["--auto-compaction-mode", "daily"], "auto-compaction-mode"),
    ];
    for (args, key) in cases {
        let mut all = vec!["--data-dir", data];
        all.extend(args.iter());
        let (code, _, err) = stead(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(key), "{args:?} should name {key}: {err}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "heartbeat-interval = 100\nmax-txn-opps = 3\n").unwrap();
    let (code, _, err) = stead(&["--config", file.to_str().unwrap(), "--data-dir", data]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max-txn-opps"), "{err}");
    assert!(!dir.path().join("d").exists(), "a refused configuration must not create the data dir");
}

#[test]
fn milestone_log_lines_come_in_etcds_order() {
    let s = common::Server::start(&[]);
    let position = |needle: &str| {
        s.startup_log
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{}", s.startup_log.join("\n")))
    };
    let published = position("published local member to cluster");
    let capabilities = position("enabled capabilities for version");
    let ready = position("ready to serve client requests");
    let serving = position("serving insecure client requests on 127.0.0.1:");
    assert!(published < capabilities && capabilities < ready && ready < serving);
}
