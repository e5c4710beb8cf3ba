//! `steadctl snapshot save|status|restore`: etcdctl 3.4.23's
//! `snapshot_command.go` and clientv3's `snapshot` manager.
//!
//! - `save FILE` reads the gateway's `/v3/maintenance/snapshot` stream (one
//!   endpoint only, as etcdctl) into `FILE.part`, checks etcd's SHA-256 trailer
//!   shape, syncs and renames it to `FILE`.
//! - `status FILE` reports hash, revision, total keys (records of every bucket)
//!   and file size in etcdctl's formats. The numbers are stead's (its snapshot
//!   holds stead's backend, not a bbolt file).
//! - `restore FILE` builds a fresh data dir (`member/db`, no WAL) for a member of
//!   a NEW cluster named by `--initial-cluster`: the member boots like any new
//!   member (new cluster id, new membership) on top of the snapshot's keys. The
//!   default data dir is `<name>.stead` (stead's default, where etcdctl says
//!   `<name>.etcd`).
//!
//! etcdctl's zap log lines on stderr are written in the same shape (their
//! timestamps differ by nature); stdout and exit codes are etcdctl's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::args::{GlobalArgs, SnapshotArgs, SnapshotCommand, SnapshotRestoreArgs};
use super::commands::{gateway_from, print_out};
use super::gateway::gateway_error;
use super::printer::Format;
use super::{gofmt, CtlError, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::proto::etcdserverpb::SnapshotResponse;
use crate::storage::snapshot_file;

/// etcdctl's `ExitInterrupted`: what a failed `snapshot save` exits with.
const EXIT_INTERRUPTED: i32 = 5;

pub fn snapshot(g: &GlobalArgs, a: SnapshotArgs, timeout_given: bool) -> Result<(), CtlError> {
    match a.command {
        Some(SnapshotCommand::Save(a)) => save(g, &a.args, timeout_given),
        Some(SnapshotCommand::Status(a)) => status(g, &a.args),
        Some(SnapshotCommand::Restore(a)) => restore(a),
        Some(SnapshotCommand::Other(_)) | None => super::commands::print_usage("snapshot"),
    }
}

/// A zap production log line on stderr, as clientv3's snapshot manager logs.
fn log_info(caller: &str, msg: &str, fields: &[(&str, String)]) {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut line = format!("{{\"level\":\"info\",\"ts\":{ts},\"caller\":\"{caller}\",\"msg\":");
    gofmt::json_string(msg, &mut line);
    for (k, v) in fields {
        line.push_str(&format!(",\"{k}\":"));
        gofmt::json_string(v, &mut line);
    }
    line.push_str("}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A line of the gateway's snapshot stream.
#[derive(Deserialize)]
struct Frame {
    result: Option<SnapshotResponse>,
    error: Option<serde_json::Value>,
}

fn save(g: &GlobalArgs, args: &[String], timeout_given: bool) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "snapshot save expects one argument"));
    }
    let gw = gateway_from(g)?;
    let eps = gw.endpoints();
    if eps.len() != 1 {
        let names: Vec<&str> = eps.iter().map(|e| e.given.as_str()).collect();
        return Err(CtlError::new(
            EXIT_INTERRUPTED,
            format!("snapshot must be requested to one selected node, not multiple [{}]", names.join(" ")),
        ));
    }
    let path = PathBuf::from(&args[0]);
    let part = PathBuf::from(format!("{}.part", args[0]));
    let _ = std::fs::remove_file(&part);
    let failed = |e: String| CtlError::new(EXIT_INTERRUPTED, e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|e| failed(format!("could not open {} ({})", part.display(), gofmt_io(&e))))?;
    log_info("snapshot/v3_snapshot.go:119", "created temporary db file", &[("path", part.display().to_string())]);
    // No deadline unless --command-timeout was given, as etcdctl.
    let timeout = timeout_given.then_some(g.command_timeout);
    let fetched = fetch(g, timeout, &eps[0].base_url, &eps[0].given, &mut file);
    let size = match fetched {
        Ok(size) => size,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(failed(e));
        }
    };
    if size % 512 != 32 {
        let _ = std::fs::remove_file(&part);
        return Err(failed(format!("sha256 checksum not found [bytes: {size}]")));
    }
    if let Err(e) = file.sync_all() {
        let _ = std::fs::remove_file(&part);
        return Err(failed(e.to_string()));
    }
    drop(file);
    log_info(
        "snapshot/v3_snapshot.go:142",
        "fetched snapshot",
        &[("endpoint", eps[0].given.clone()), ("size", gofmt::humanize_bytes(size))],
    );
    std::fs::rename(&part, &path).map_err(|e| {
        failed(format!("could not rename {} to {} ({})", part.display(), path.display(), gofmt_io(&e)))
    })?;
    log_info("snapshot/v3_snapshot.go:152", "saved", &[("path", path.display().to_string())]);
    print_out(format!("Snapshot saved at {}\n", args[0]).as_bytes());
    Ok(())
}

/// Streams the member's snapshot into `out`; the bytes written.
fn fetch(g: &GlobalArgs, timeout: Option<std::time::Duration>, base_url: &str, given: &str, out: &mut std::fs::File) -> Result<u64, String> {
    log_info("snapshot/v3_snapshot.go:127", "fetching snapshot", &[("endpoint", given.to_string())]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("steadctl")
        .timeout_global(timeout)
        .timeout_connect(Some(g.dial_timeout))
        .build()
        .into();
    let path = "/v3/maintenance/snapshot";
    let resp = agent
        .post(&format!("{base_url}{path}"))
        .header("Content-Type", "application/json")
        .send("{}")
        .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.into_body().read_to_string().unwrap_or_default();
        return Err(gateway_error(status, &text, path).etcdctl_text());
    }
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut line = Vec::new();
    let mut written = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err("snapshot stream ended before its last chunk".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the snapshot stream: {e}")),
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let frame: Frame = serde_json::from_slice(&line).map_err(|e| format!("bad snapshot stream line: {e}"))?;
        match frame {
            Frame { result: Some(chunk), .. } => {
                out.write_all(&chunk.blob).map_err(|e| e.to_string())?;
                written += chunk.blob.len() as u64;
                if chunk.remaining_bytes == 0 {
                    return Ok(written);
                }
            }
            Frame { error: Some(e), .. } => return Err(gateway_error(500, &e.to_string(), path).etcdctl_text()),
            _ => return Err("bad snapshot stream line: neither result nor error".into()),
        }
    }
}

/// Go's `*PathError` text for an I/O error (`no such file or directory`).
fn gofmt_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::AlreadyExists => "file exists".into(),
        _ => {
            // Rust appends " (os error N)"; Go does not.
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}

fn status(g: &GlobalArgs, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "snapshot status requires exactly one argument"));
    }
    let format =
        Format::parse(&g.write_out).ok_or_else(|| CtlError::new(EXIT_BAD_FEATURE, "unsupported output format"))?;
    let path = &args[0];
    std::fs::metadata(path).map_err(|e| CtlError::new(EXIT_ERROR, format!("stat {path}: {}", gofmt_io(&e))))?;
    let bytes = std::fs::read(path).map_err(|e| CtlError::new(EXIT_ERROR, format!("open {path}: {}", gofmt_io(&e))))?;
    let st = snapshot_file::status(&bytes).map_err(|_| CtlError::new(EXIT_ERROR, "invalid database"))?;
    let row = vec![
        format!("{:x}", st.hash),
        st.revision.to_string(),
        st.total_keys.to_string(),
        gofmt::humanize_bytes(st.total_size),
    ];
    let text = match format {
        Format::Simple => format!("{}\n", row.join(", ")),
        Format::Json => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            st.hash, st.revision, st.total_keys, st.total_size
        ),
        Format::Table => super::table::render(&["hash", "revision", "total keys", "total size"], &[row]),
        Format::Fields => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
            st.hash, st.revision, st.total_keys, st.total_size
        ),
        Format::Protobuf => return Err(CtlError::new(EXIT_BAD_FEATURE, "protobuf not supported as output format")),
    };
    print_out(text.as_bytes());
    Ok(())
}

fn restore(a: SnapshotRestoreArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::new(EXIT_BAD_ARGS, "snapshot restore requires exactly one argument"));
    }
    if !a.wal_dir.is_empty() {
        return Err(CtlError::new(EXIT_BAD_FEATURE, "steadctl does not support --wal-dir: stead keeps its WAL in <data-dir>/member/wal"));
    }
    let error = |msg: String| CtlError::new(EXIT_ERROR, msg);
    let members = crate::config::parse_initial_cluster(&a.initial_cluster, &a.initial_cluster_token)
        .map_err(|e| error(e.to_string()))?;
    let Some(me) = members.iter().find(|m| m.name == a.name) else {
        return Err(error(format!("couldn't find local name {:?} in the initial cluster configuration", a.name)));
    };
    let advertised: Vec<String> = a.initial_advertise_peer_urls.split(',').map(|u| u.trim().to_string()).collect();
    let missing: Vec<String> =
        me.peer_urls.iter().filter(|u| !advertised.contains(u)).map(|u| format!("{}={u}", a.name)).collect();
    if !missing.is_empty() {
        return Err(error(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
            missing.join(","),
            advertised.join(",")
        )));
    }
    let extra: Vec<&String> = advertised.iter().filter(|u| !me.peer_urls.contains(u)).collect();
    if !extra.is_empty() {
        let extra: Vec<&str> = extra.iter().map(|u| u.as_str()).collect();
        return Err(error(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}={}",
            extra.join(","),
            a.name,
            advertised.join(",")
        )));
    }
    let data_dir = if a.data_dir.is_empty() { format!("{}.stead", a.name) } else { a.data_dir.clone() };
    if Path::new(&data_dir).exists() {
        return Err(error(format!("data-dir {data_dir:?} exists")));
    }
    let snapshot_path = &a.args[0];
    let bytes = std::fs::read(snapshot_path)
        .map_err(|e| error(format!("open {snapshot_path}: {}", gofmt_io(&e))))?;
    let member_dir = Path::new(&data_dir).join("member");
    let fields = [
        ("path", snapshot_path.clone()),
        ("wal-dir", member_dir.join("wal").display().to_string()),
        ("data-dir", data_dir.clone()),
        ("db-dir", member_dir.join("db").display().to_string()),
    ];
    log_info("snapshot/v3_snapshot.go:296", "restoring snapshot", &fields);
    if let Err(e) = snapshot_file::restore(&bytes, a.skip_hash_check, &member_dir.join("db")) {
        // Nothing half-built is left behind for a member to start from.
        let _ = std::fs::remove_dir_all(&data_dir);
        return Err(error(e.to_string()));
    }
    log_info("snapshot/v3_snapshot.go:309", "restored snapshot", &fields);
    Ok(())
}
