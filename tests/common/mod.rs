//! Starts real `stead` processes for integration tests: loopback only, ephemeral
//! ports (the server binds port 0 and the harness reads the bound address from its
//! log), a temp data dir, and the process killed by its own PID when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to become ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub endpoint: String,
    extra_args: Vec<String>,
    /// Keeps the temp dir alive (and removes it) when the harness owns it.
    _tmp: Option<tempfile::TempDir>,
    pub log: mpsc::Receiver<String>,
    /// What the server logged up to and including "serving … client requests".
    pub startup_log: Vec<String>,
}

impl Server {
    /// A fresh single member in a new temp dir.
    pub fn start(extra_args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut s = Server::spawn(&data_dir, extra_args.iter().map(|s| s.to_string()).collect());
        s._tmp = Some(tmp);
        s
    }

    fn spawn(data_dir: &Path, extra_args: Vec<String>) -> Server {
        Launched::new(data_dir, extra_args).wait_ready()
    }

    /// `host:port`, as etcdctl's --endpoints takes it.
    pub fn host_port(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs, as in a crash or power loss of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same member again on its data dir (after `kill9`).
    pub fn restart(&mut self) {
        self.kill9();
        let tmp = self._tmp.take();
        let mut s = Server::spawn(&self.data_dir, self.extra_args.clone());
        s._tmp = tmp;
        *self = s;
    }

    /// POSTs a gateway request; returns (HTTP status, JSON body).
    pub fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        post(&self.endpoint, path, body)
    }
}

/// A started process not yet known to be ready: members of a cluster are all
/// launched before any is waited for, since none is ready without a quorum.
pub struct Launched {
    child: Child,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    log: mpsc::Receiver<String>,
}

impl Launched {
    pub fn new(data_dir: &Path, extra_args: Vec<String>) -> Launched {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stead"));
        // The server reads STEAD_* settings from its environment: a test runs it
        // with exactly the flags it gives, whatever the caller's shell has set.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("STEAD_")) {
            cmd.env_remove(key);
        }
        cmd.arg("--data-dir").arg(data_dir);
        for (flag, default) in [
            ("--listen-client-urls", "http://127.0.0.1:0"),
            ("--advertise-client-urls", "http://127.0.0.1:2379"),
            ("--listen-peer-urls", "http://127.0.0.1:0"),
        ] {
            if !extra_args.iter().any(|a| a == flag) {
                cmd.args([flag, default]);
            }
        }
        cmd.args(&extra_args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start stead");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Launched { child, data_dir: data_dir.to_path_buf(), extra_args, log: rx }
    }

    /// Waits for "serving insecure client requests on ADDR" and reads ADDR.
    pub fn wait_ready(mut self) -> Server {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        let endpoint = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let addr = line.split("serving insecure client requests on ").nth(1).map(|a| {
                        a.split([',', ' ']).next().unwrap_or_default().to_string()
                    });
                    seen.push(line);
                    if let Some(addr) = addr {
                        break format!("http://{addr}");
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("stead did not become ready; its log:\n{}", seen.join("\n"));
                }
            }
        };
        Server {
            child: Some(self.child),
            data_dir: self.data_dir,
            endpoint,
            extra_args: self.extra_args,
            _tmp: None,
            log: self.log,
            startup_log: seen,
        }
    }
}

/// Free loopback ports for servers that must keep their port across restarts
/// (peer URLs are part of the cluster's configuration). They are picked below
/// Linux's ephemeral range (32768+), so that no outgoing connection of a parallel
/// test can take a port while its member is down; each is checked free by binding.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut state = std::process::id() as u64 ^ (SEQ.fetch_add(1, Ordering::Relaxed) << 32)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut held = Vec::new();
    while held.len() < n {
        // xorshift: a spread of candidates in 20000..32000.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 20_000 + (state % 12_000) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// A statically bootstrapped cluster of real `stead` processes on loopback.
pub struct Cluster {
    pub members: Vec<Server>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * n);
        let (peer_ports, client_ports) = ports.split_at(n);
        let urls: Vec<String> = peer_ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        let initial: Vec<String> = urls.iter().enumerate().map(|(i, u)| format!("m{}={u}", i + 1)).collect();
        let initial = initial.join(",");
        let launched: Vec<Launched> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let mut args: Vec<String> = vec![
                    "--name".into(),
                    format!("m{}", i + 1),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--initial-cluster-token".into(),
                    "test-cluster".into(),
                    "--initial-advertise-peer-urls".into(),
                    url.clone(),
                    "--listen-peer-urls".into(),
                    url.clone(),
                    // The member list then shows each member's real client URL.
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{}", client_ports[i]),
                    "--advertise-client-urls".into(),
                    format!("http://127.0.0.1:{}", client_ports[i]),
                    "--heartbeat-interval".into(),
                    "50".into(),
                    "--election-timeout".into(),
                    "500".into(),
                ];
                args.extend(extra_args.iter().map(|s| s.to_string()));
                Launched::new(&tmp.path().join(format!("m{}", i + 1)), args)
            })
            .collect();
        let members = launched.into_iter().map(Launched::wait_ready).collect();
        Cluster { members, _tmp: tmp }
    }

    /// A cluster of members the caller started (from data dirs it prepared).
    pub fn from_members(members: Vec<Server>) -> Cluster {
        Cluster { members, _tmp: tempfile::tempdir().expect("temp dir") }
    }

    /// The index of the member every live member names as leader, if they agree.
    pub fn leader(&self) -> Option<usize> {
        let mut leader_id = None;
        let mut ids = Vec::new();
        for m in &self.members {
            if m.child.is_none() {
                ids.push(None);
                continue;
            }
            let (status, st) = m.post("/v3/maintenance/status", "{}");
            if status != 200 {
                return None;
            }
            let leader = st["leader"].as_str().map(String::from);
            if leader.is_none() || (leader_id.is_some() && leader_id != leader) {
                return None;
            }
            leader_id = leader;
            ids.push(st["header"]["member_id"].as_str().map(String::from));
        }
        ids.iter().position(|id| id.is_some() && *id == leader_id)
    }

    /// Waits (bounded) until the live members agree on a leader.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader agreed on within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

pub fn post(endpoint: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let agent = http_agent();
    let mut resp = agent
        .post(&format!("{endpoint}{path}"))
        .content_type("application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text));
    (status, json)
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A running client process (steadctl, etcdctl) whose stdout lines arrive on a
/// channel; killed by its own PID when dropped.
pub struct Spawned {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Spawned {
    /// Starts `cmd` with stdout piped (stdin and stderr as `cmd` sets them).
    pub fn start(cmd: &mut Command) -> Spawned {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Spawned { child, lines }
    }

    /// The next `n` lines, each within `timeout`.
    pub fn lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        (0..n).map(|_| self.lines.recv_timeout(timeout).expect("a line of output")).collect()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
