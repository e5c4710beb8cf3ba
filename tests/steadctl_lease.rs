//! steadctl's lease commands against stead: grant, put --lease, timetolive
//! (--keys), list, keep-alive --once, revoke, timetolive after revoke. Output
//! shapes are etcdctl 3.4.23's (captured from it against etcd 3.4.23); lease
//! IDs differ between runs and are checked as 16 hex digits.

mod common;

use std::process::{Command, Output};

fn steadctl(ep: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steadctl"))
        .arg(format!("--endpoints={ep}"))
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_WRITE_OUT")
        .output()
        .expect("run steadctl")
}

fn ok(ep: &str, args: &[&str]) -> String {
    let out = steadctl(ep, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: stderr {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lease_commands_print_like_etcdctl() {
    let s = common::Server::start(&[]);
    let ep = s.host_port();

    let granted = ok(&ep, &["lease", "grant", "100"]);
    let id = granted.split(' ').nth(1).expect("lease id").to_string();
    assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{granted:?}");
    assert_eq!(granted, format!("lease {id} granted with TTL(100s)\n"));
    let dec = i64::from_str_radix(&id, 16).unwrap();

    assert_eq!(ok(&ep, &["put", "k1", "v1", &format!("--lease={id}")]), "OK\n");
    assert_eq!(ok(&ep, &["put", "k2", "v2", &format!("--lease={id}")]), "OK\n");
    let got = ok(&ep, &["get", "k1", "-w", "json"]);
    assert!(got.contains(&format!("\"lease\":{dec}")), "{got}");

    let ttl = ok(&ep, &["lease", "timetolive", &id, "--keys"]);
    let ok_ttl = [99, 100]
        .iter()
        .any(|r| ttl == format!("lease {id} granted with TTL(100s), remaining({r}s), attached keys([k1 k2])\n"));
    assert!(ok_ttl, "{ttl:?}");
    let ttl = ok(&ep, &["lease", "timetolive", &id]);
    assert!(ttl.starts_with(&format!("lease {id} granted with TTL(100s), remaining(")) && !ttl.contains("keys"), "{ttl:?}");
    let json = ok(&ep, &["-w", "json", "lease", "timetolive", &id, "--keys"]);
    assert!(json.contains(&format!("\"id\":{dec},\"ttl\":")), "{json}");
    assert!(json.ends_with(",\"granted-ttl\":100,\"keys\":[\"azE=\",\"azI=\"]}\n"), "{json}");

    let list = ok(&ep, &["lease", "list"]);
    assert_eq!(list, format!("found 1 leases\n{id}\n"));
    let json = ok(&ep, &["-w", "json", "lease", "list"]);
    assert!(json.ends_with(&format!(",\"leases\":[{{\"id\":{dec}}}]}}\n")), "{json}");

    assert_eq!(ok(&ep, &["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(100)\n"));
    let json = ok(&ep, &["-w", "json", "lease", "keep-alive", "--once", &id]);
    assert!(json.ends_with(&format!(",\"ID\":{dec},\"TTL\":100}}\n")), "{json}");

    assert_eq!(ok(&ep, &["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(&ep, &["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    let json = ok(&ep, &["-w", "json", "lease", "timetolive", &id]);
    assert!(json.ends_with(&format!("\"id\":{dec},\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}}\n")), "{json}");
    assert_eq!(ok(&ep, &["get", "k", "--prefix"]), "");
    assert_eq!(ok(&ep, &["lease", "list"]), "found 0 leases\n");

    // Errors: etcdctl's texts and exit codes.
    let out = steadctl(&ep, &["lease", "keep-alive", "--once", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error:  etcdserver: requested lease not found\n");
    let out = steadctl(&ep, &["lease", "revoke", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .ends_with("Error:  failed to revoke lease (etcdserver: requested lease not found)\n"));
    let out = steadctl(&ep, &["lease", "keep-alive", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("lease {id} expired or revoked.\n"));
    let out = steadctl(&ep, &["lease", "timetolive", "zz"]);
    assert_eq!(out.status.code(), Some(128));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error:  bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex\n"
    );
    let out = steadctl(&ep, &["lease", "grant"]);
    assert_eq!(out.status.code(), Some(128));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error:  lease grant command needs TTL argument\n");
}
