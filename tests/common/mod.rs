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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stead"));
        // The server reads STEAD_* settings from its environment: a test runs it
        // with exactly the flags it gives, whatever the caller's shell has set.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("STEAD_")) {
            cmd.env_remove(key);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", "http://127.0.0.1:0"])
            .args(["--advertise-client-urls", "http://127.0.0.1:2379"])
            .args(["--listen-peer-urls", "http://127.0.0.1:0"])
            .args(&extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        let endpoint = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
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
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("stead did not become ready; its log:\n{}", seen.join("\n"));
                }
            }
        };
        Server {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            endpoint,
            extra_args,
            _tmp: None,
            log: rx,
            startup_log: seen,
        }
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
