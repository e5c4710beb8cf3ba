//! The side-by-side check as part of the suite: the same steadctl/etcdctl command
//! list (scripts/compare-etcdctl.sh: put, get with every flag, del, txn, compaction,
//! endpoint health/status, errors; simple, json, fields, table) runs with
//! `etcdctl` 3.4.23 against a real etcd and with `steadctl` against a real stead,
//! and every stdout, stderr and exit code must match. `scripts/test` installs etcd.

use std::process::Command;

#[test]
fn steadctl_on_stead_prints_what_etcdctl_prints_on_etcd() {
    for tool in ["etcd", "etcdctl"] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is not installed: run the suite with scripts/test, which installs etcd 3.4 from Debian");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compare-etcdctl.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("--stead-bin")
        .arg(env!("CARGO_BIN_EXE_stead"))
        .env("STEADCTL", env!("CARGO_BIN_EXE_steadctl"))
        .output()
        .expect("run compare-etcdctl.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "steadctl/stead differ from etcdctl/etcd:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
}

/// The cluster commands (member list in every format, endpoint status/health
/// --cluster, member add --learner / promote / update / remove and their errors,
/// move-leader) on a 3-member etcd and a 3-member stead: same output
/// (scripts/compare-etcdctl-cluster.sh).
#[test]
fn cluster_commands_on_stead_print_what_etcdctl_prints_on_etcd() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compare-etcdctl-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("STEAD", env!("CARGO_BIN_EXE_stead"))
        .env("STEADCTL", env!("CARGO_BIN_EXE_steadctl"))
        .output()
        .expect("run compare-etcdctl-cluster.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cluster commands differ:\n{stdout}\n{stderr}");
}
