//! Server configuration: etcd's flag names and meanings, layered with the `config`
//! crate as defaults < `cluster.toml` (top level, then the `[[member]]` table whose
//! `name` matches) < `STEAD_*` environment < command-line flags.
//!
//! Owns parsing and validation only. It must never start anything, open files other
//! than the config file, or silently ignore a setting it does not implement: an
//! unknown key, a bad value or an unsupported etcd flag is a [`ConfigError`], which
//! the binary turns into exit status 2.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use sha1::{Digest, Sha1};

/// What went wrong while reading the configuration. Each variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid value for `{key}`: {reason}")]
    BadValue { key: String, reason: String },
    #[error("`{key}` is not supported by stead yet: {why}")]
    Unsupported { key: String, why: String },
    #[error("unknown environment variable {0}: not a stead setting")]
    UnknownEnv(String),
}

/// The command line, with etcd's flag names. Values stay strings here so that the
/// `config` layering validates flags, file and environment with the same rules and
/// the same error messages.
#[derive(Debug, Parser, Default)]
#[command(name = "stead", disable_version_flag = true, about = "stead: an etcd-compatible key-value store")]
pub struct Flags {
    /// Print the version and exit (as `etcd --version`).
    #[arg(long)]
    pub version: bool,
    /// A TOML file of settings (see cluster.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Alias of --config, as etcd names it.
    #[arg(long = "config-file")]
    pub config_file: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
    #[arg(long = "listen-client-urls")]
    pub listen_client_urls: Option<String>,
    #[arg(long = "advertise-client-urls")]
    pub advertise_client_urls: Option<String>,
    #[arg(long = "listen-peer-urls")]
    pub listen_peer_urls: Option<String>,
    #[arg(long = "initial-advertise-peer-urls")]
    pub initial_advertise_peer_urls: Option<String>,
    #[arg(long = "initial-cluster")]
    pub initial_cluster: Option<String>,
    #[arg(long = "initial-cluster-token")]
    pub initial_cluster_token: Option<String>,
    #[arg(long = "initial-cluster-state")]
    pub initial_cluster_state: Option<String>,
    #[arg(long = "heartbeat-interval")]
    pub heartbeat_interval: Option<String>,
    #[arg(long = "election-timeout")]
    pub election_timeout: Option<String>,
    #[arg(long = "snapshot-count")]
    pub snapshot_count: Option<String>,
    #[arg(long = "quota-backend-bytes")]
    pub quota_backend_bytes: Option<String>,
    #[arg(long = "backend-cache-bytes")]
    pub backend_cache_bytes: Option<String>,
    #[arg(long = "max-request-bytes")]
    pub max_request_bytes: Option<String>,
    #[arg(long = "max-txn-ops")]
    pub max_txn_ops: Option<String>,
    #[arg(long = "auto-compaction-mode")]
    pub auto_compaction_mode: Option<String>,
    #[arg(long = "auto-compaction-retention")]
    pub auto_compaction_retention: Option<String>,
    #[arg(long = "listen-metrics-urls")]
    pub listen_metrics_urls: Option<String>,
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    #[arg(long = "log-format")]
    pub log_format: Option<String>,
    #[arg(long = "auth-token")]
    pub auth_token: Option<String>,
    #[arg(long = "auth-token-ttl")]
    pub auth_token_ttl: Option<String>,
    #[arg(long = "bcrypt-cost")]
    pub bcrypt_cost: Option<String>,
    #[arg(long = "max-concurrent-streams")]
    pub max_concurrent_streams: Option<String>,
    #[arg(long = "metrics")]
    pub metrics: Option<String>,
}

impl Flags {
    /// The flags given, as (config key, value), in the order of `KEYS`.
    fn given(&self) -> Vec<(&'static str, String)> {
        let all: [(&'static str, &Option<String>); 27] = [
            ("name", &self.name),
            ("data-dir", &self.data_dir),
            ("listen-client-urls", &self.listen_client_urls),
            ("advertise-client-urls", &self.advertise_client_urls),
            ("listen-peer-urls", &self.listen_peer_urls),
            ("initial-advertise-peer-urls", &self.initial_advertise_peer_urls),
            ("initial-cluster", &self.initial_cluster),
            ("initial-cluster-token", &self.initial_cluster_token),
            ("initial-cluster-state", &self.initial_cluster_state),
            ("heartbeat-interval", &self.heartbeat_interval),
            ("election-timeout", &self.election_timeout),
            ("snapshot-count", &self.snapshot_count),
            ("quota-backend-bytes", &self.quota_backend_bytes),
            ("backend-cache-bytes", &self.backend_cache_bytes),
            ("max-request-bytes", &self.max_request_bytes),
            ("max-txn-ops", &self.max_txn_ops),
            ("auto-compaction-mode", &self.auto_compaction_mode),
            ("auto-compaction-retention", &self.auto_compaction_retention),
            ("listen-metrics-urls", &self.listen_metrics_urls),
            ("log-level", &self.log_level),
            ("log-format", &self.log_format),
            ("auth-token", &self.auth_token),
            ("auth-token-ttl", &self.auth_token_ttl),
            ("bcrypt-cost", &self.bcrypt_cost),
            ("max-concurrent-streams", &self.max_concurrent_streams),
            ("metrics", &self.metrics),
            ("config", &None),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

/// etcd flags that stead recognises but does not implement yet. Giving one is an
/// error that says so, rather than "unknown flag" or, worse, silent acceptance.
const UNSUPPORTED_ETCD_FLAGS: &[&str] = &[
    "cert-file", "key-file", "client-cert-auth", "client-crl-file", "trusted-ca-file",
    "auto-tls", "peer-cert-file", "peer-key-file", "peer-client-cert-auth",
    "peer-trusted-ca-file", "peer-auto-tls", "peer-crl-file", "discovery", "discovery-srv",
    "discovery-fallback", "discovery-proxy", "proxy", "enable-v2", "wal-dir", "max-snapshots",
    "max-wals", "cors", "host-whitelist", "force-new-cluster",
    "enable-pprof", "logger", "log-outputs", "grpc-keepalive-min-time",
    "grpc-keepalive-interval", "grpc-keepalive-timeout", "listen-client-http-urls",
    "strict-reconfig-check", "pre-vote", "initial-election-tick-advance",
    "backend-batch-interval", "backend-batch-limit", "debug",
    "experimental-initial-corrupt-check", "experimental-corrupt-check-time",
    "experimental-enable-v2v3", "experimental-backend-bbolt-freelist-type",
    "experimental-enable-lease-checkpoint", "experimental-compaction-batch-limit",
    "experimental-peer-skip-client-san-verification", "experimental-watch-progress-notify-interval",
    "unsafe-no-fsync",
];

/// One member of the static bootstrap cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// etcd's member id: the first 8 bytes of SHA-1 over the sorted peer URLs and
    /// the cluster token.
    pub id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated settings a node starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    /// `--listen-metrics-urls`: extra listeners serving only `/metrics` and
    /// `/health` (none by default; the client port serves both anyway).
    pub listen_metrics: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<ClusterMember>,
    pub cluster_token: String,
    pub cluster_state: ClusterState,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
    /// `--quota-backend-bytes` as etcd reads it: 0 the default (2 GiB), negative
    /// no quota.
    pub quota_backend_bytes: i64,
    /// `--backend-cache-bytes` (stead's own): the backend's page cache budget.
    /// Small by default: the key index is in memory and the OS page cache holds
    /// the database file, so this cache only saves decoding hot pages.
    pub backend_cache_bytes: u64,
    pub max_txn_ops: usize,
    pub auto_compaction: crate::compactor::AutoCompaction,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `--auth-token`: `simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…`
    /// (checked and loaded when the auth actor starts).
    pub auth_token: String,
    /// `--auth-token-ttl`: how long a simple token lives unused.
    pub auth_token_ttl: std::time::Duration,
    /// `--bcrypt-cost` of new password hashes.
    pub bcrypt_cost: u32,
    /// `--max-concurrent-streams`: HTTP/2 streams one gRPC client connection may
    /// have open at once.
    pub max_concurrent_streams: u32,
}

impl Settings {
    /// This member's id in the initial cluster.
    pub fn member_id(&self) -> u64 {
        self.initial_cluster
            .iter()
            .find(|m| m.name == self.name)
            .map(|m| m.id)
            .unwrap_or_default()
    }

    /// etcd's cluster id: SHA-1 over the sorted member ids (8 bytes big-endian each).
    pub fn cluster_id(&self) -> u64 {
        let mut ids: Vec<u64> = self.initial_cluster.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        let mut bytes = Vec::with_capacity(ids.len() * 8);
        for id in ids {
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        first_u64_of_sha1(&bytes)
    }
}

/// The raw layered settings, with etcd's (kebab-case) key names. Unknown keys are
/// refused so that a typo in cluster.toml never passes silently.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawSettings {
    name: String,
    data_dir: Option<String>,
    listen_client_urls: String,
    advertise_client_urls: String,
    listen_peer_urls: String,
    initial_advertise_peer_urls: String,
    initial_cluster: Option<String>,
    initial_cluster_token: String,
    initial_cluster_state: String,
    heartbeat_interval: u64,
    election_timeout: u64,
    snapshot_count: u64,
    quota_backend_bytes: i64,
    backend_cache_bytes: u64,
    max_request_bytes: u64,
    max_txn_ops: u64,
    auto_compaction_mode: String,
    auto_compaction_retention: String,
    listen_metrics_urls: String,
    log_level: String,
    log_format: String,
    auth_token: String,
    auth_token_ttl: u64,
    bcrypt_cost: u32,
    max_concurrent_streams: u32,
    /// etcd's `--metrics basic|extensive`: accepted for etcd command lines;
    /// stead exports the extensive set (the gRPC handling-time histograms) at
    /// either level, as etcd 3.4 takes any other value for basic.
    #[allow(dead_code)]
    metrics: String,
    /// The per-member tables of a file; already layered in by `build`.
    #[serde(default)]
    #[allow(dead_code)]
    member: Option<config::Value>,
}

/// Every key a file, the environment or a flag may set, with its default.
const DEFAULTS: &[(&str, &str)] = &[
    ("name", "default"),
    ("listen-client-urls", "http://127.0.0.1:2379"),
    ("advertise-client-urls", "http://127.0.0.1:2379"),
    ("listen-peer-urls", "http://127.0.0.1:2380"),
    ("initial-advertise-peer-urls", "http://127.0.0.1:2380"),
    ("initial-cluster-token", "etcd-cluster"),
    ("initial-cluster-state", "new"),
    ("heartbeat-interval", "100"),
    ("election-timeout", "1000"),
    ("snapshot-count", "100000"),
    ("quota-backend-bytes", "0"),
    ("backend-cache-bytes", "16777216"),
    ("max-request-bytes", "1572864"),
    ("max-txn-ops", "128"),
    ("auto-compaction-mode", "periodic"),
    ("auto-compaction-retention", "0"),
    ("listen-metrics-urls", ""),
    ("log-level", "info"),
    ("log-format", "text"),
    ("auth-token", "simple"),
    ("auth-token-ttl", "300"),
    ("bcrypt-cost", "10"),
    // etcd's default: math.MaxUint32.
    ("max-concurrent-streams", "4294967295"),
    ("metrics", "basic"),
];

/// Below this, the backend would decode pages on almost every access.
const MIN_BACKEND_CACHE_BYTES: u64 = 1024 * 1024;

/// Keys that only make sense with a value: `data-dir` and `initial-cluster` have
/// defaults derived from other keys.
const DERIVED_KEYS: &[&str] = &["data-dir", "initial-cluster"];

/// Reads the command line (without the program name handled by clap), the config
/// file and the environment.
pub fn load_from<I, T>(args: I, env: &[(String, String)]) -> Result<(Flags, Option<Settings>), LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    if let Some(flag) = unsupported_flag(&args) {
        return Err(LoadError::Config(ConfigError::Unsupported {
            key: format!("--{flag}"),
            why: "this etcd flag is recognised but not implemented".into(),
        }));
    }
    let flags = Flags::try_parse_from(args).map_err(LoadError::Usage)?;
    if flags.version {
        return Ok((flags, None));
    }
    let settings = build(&flags, env).map_err(LoadError::Config)?;
    Ok((flags, Some(settings)))
}

/// Why loading stopped before a settings value existed.
#[derive(Debug)]
pub enum LoadError {
    /// clap's own error (also --help): it knows how to print itself and its exit code.
    Usage(clap::Error),
    Config(ConfigError),
}

fn unsupported_flag(args: &[std::ffi::OsString]) -> Option<String> {
    args.iter().skip(1).find_map(|a| {
        let a = a.to_str()?;
        let name = a.strip_prefix("--").or_else(|| a.strip_prefix('-'))?;
        let name = name.split('=').next()?;
        UNSUPPORTED_ETCD_FLAGS.contains(&name).then(|| name.to_string())
    })
}

fn build(flags: &Flags, env: &[(String, String)]) -> Result<Settings, ConfigError> {
    let mut builder = config::Config::builder();
    for (k, v) in DEFAULTS {
        builder = builder
            .set_default(*k, *v)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    }

    let file = flags.config.clone().or_else(|| flags.config_file.clone());
    let env_settings = env_overrides(env)?;
    let mut member_table = None;
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::BadValue {
            key: "config".into(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        let file_source = config::File::from_str(&text, config::FileFormat::Toml);
        builder = builder.add_source(file_source.clone());
        // The member this process is: the flag, else the environment, else the file.
        let file_only = config::Config::builder()
            .add_source(file_source)
            .build()
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
        let name = flags
            .name
            .clone()
            .or_else(|| env_settings.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone()))
            .or_else(|| file_only.get_string("name").ok())
            .unwrap_or_else(|| "default".into());
        member_table = member_section(&file_only, &name, path)?;
    }
    if let Some(table) = &member_table {
        for (k, v) in table {
            builder = builder
                .set_override(k.as_str(), v.clone())
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
    }
    for (k, v) in &env_settings {
        builder = builder
            .set_override(k.as_str(), v.as_str())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    }
    for (k, v) in flags.given() {
        builder = builder
            .set_override(k, v)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    }
    let raw: RawSettings = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    validate(raw)
}

/// `STEAD_DATA_DIR=x` sets `data-dir`. A `STEAD_` variable that names no setting is
/// an error: a typo must not pass silently.
fn env_overrides(env: &[(String, String)]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("STEAD_") else { continue };
        let key = rest.to_ascii_lowercase().replace('_', "-");
        let known = DEFAULTS.iter().any(|(d, _)| *d == key) || DERIVED_KEYS.contains(&key.as_str());
        if !known {
            return Err(ConfigError::UnknownEnv(k.clone()));
        }
        out.push((key, v.clone()));
    }
    Ok(out)
}

/// The `[[member]]` table named `name`, as key/value overrides.
fn member_section(
    file: &config::Config,
    name: &str,
    path: &std::path::Path,
) -> Result<Option<BTreeMap<String, config::Value>>, ConfigError> {
    let Ok(members) = file.get_array("member") else { return Ok(None) };
    for (i, m) in members.into_iter().enumerate() {
        let table = m.into_table().map_err(|e| ConfigError::BadValue {
            key: format!("member[{i}]"),
            reason: format!("expected a table in {}: {e}", path.display()),
        })?;
        let this = table.get("name").and_then(|v| v.clone().into_string().ok());
        if this.as_deref() == Some(name) {
            let mut table: BTreeMap<String, config::Value> = table.into_iter().collect();
            table.remove("name");
            for k in table.keys() {
                let known = DEFAULTS.iter().any(|(d, _)| d == k) || DERIVED_KEYS.contains(&k.as_str());
                if !known {
                    return Err(ConfigError::BadValue {
                        key: format!("member.{k}"),
                        reason: "unknown key".into(),
                    });
                }
            }
            return Ok(Some(table));
        }
    }
    Ok(None)
}

fn validate(raw: RawSettings) -> Result<Settings, ConfigError> {
    let bad = |key: &str, reason: String| ConfigError::BadValue { key: key.into(), reason };
    if raw.name.is_empty() {
        return Err(bad("name", "must not be empty".into()));
    }
    let listen_client = parse_listen_urls("listen-client-urls", &raw.listen_client_urls)?;
    let listen_peer = parse_listen_urls("listen-peer-urls", &raw.listen_peer_urls)?;
    let advertise_client_urls = split_urls("advertise-client-urls", &raw.advertise_client_urls)?;
    let advertise_peer_urls = split_urls("initial-advertise-peer-urls", &raw.initial_advertise_peer_urls)?;
    let token = raw.initial_cluster_token.clone();
    let initial_cluster_text = raw
        .initial_cluster
        .clone()
        .unwrap_or_else(|| format!("{}={}", raw.name, advertise_peer_urls.join(",")));
    let initial_cluster = parse_initial_cluster(&initial_cluster_text, &token)?;
    let me = initial_cluster.iter().find(|m| m.name == raw.name).ok_or_else(|| {
        bad(
            "initial-cluster",
            format!("has no member named {:?} (this member's --name)", raw.name),
        )
    })?;
    let mut mine = me.peer_urls.clone();
    mine.sort();
    let mut advertised = advertise_peer_urls.clone();
    advertised.sort();
    if mine != advertised {
        return Err(bad(
            "initial-advertise-peer-urls",
            format!(
                "{:?} does not match the peer URLs of {:?} in initial-cluster ({:?})",
                advertise_peer_urls, raw.name, me.peer_urls
            ),
        ));
    }
    let cluster_state = match raw.initial_cluster_state.as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => return Err(bad("initial-cluster-state", format!("expected \"new\" or \"existing\", got {other:?}"))),
    };
    if raw.heartbeat_interval == 0 {
        return Err(bad("heartbeat-interval", "must be at least 1 (milliseconds)".into()));
    }
    if raw.election_timeout < 5 * raw.heartbeat_interval {
        return Err(bad(
            "election-timeout",
            format!(
                "{} ms must be at least 5 times heartbeat-interval ({} ms)",
                raw.election_timeout, raw.heartbeat_interval
            ),
        ));
    }
    if raw.election_timeout > 50_000 {
        return Err(bad("election-timeout", "must be at most 50000 (milliseconds), as etcd".into()));
    }
    if raw.snapshot_count == 0 {
        return Err(bad("snapshot-count", "must be at least 1".into()));
    }
    if raw.backend_cache_bytes < MIN_BACKEND_CACHE_BYTES {
        return Err(bad("backend-cache-bytes", format!("must be at least {MIN_BACKEND_CACHE_BYTES} (1 MiB)")));
    }
    if raw.max_request_bytes == 0 {
        return Err(bad("max-request-bytes", "must be at least 1".into()));
    }
    if raw.max_txn_ops == 0 {
        return Err(bad("max-txn-ops", "must be at least 1".into()));
    }
    if !matches!(raw.auto_compaction_mode.as_str(), "periodic" | "revision") {
        let got = &raw.auto_compaction_mode;
        return Err(bad("auto-compaction-mode", format!("expected \"periodic\" or \"revision\", got {got:?}")));
    }
    let auto_compaction =
        crate::compactor::AutoCompaction::parse(&raw.auto_compaction_mode, &raw.auto_compaction_retention)
            .map_err(|reason| bad("auto-compaction-retention", reason))?;
    let listen_metrics = if raw.listen_metrics_urls.trim().is_empty() {
        Vec::new()
    } else {
        parse_listen_urls("listen-metrics-urls", &raw.listen_metrics_urls)?
    };
    let log_level = match raw.log_level.as_str() {
        l @ ("debug" | "info" | "warn" | "error") => l.to_string(),
        other => return Err(bad("log-level", format!("expected debug, info, warn or error, got {other:?}"))),
    };
    let log_format = match raw.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => return Err(bad("log-format", format!("expected \"text\" or \"json\", got {other:?}"))),
    };
    if raw.auth_token_ttl == 0 {
        return Err(bad("auth-token-ttl", "must be at least 1 (seconds)".into()));
    }
    if !(4..=31).contains(&raw.bcrypt_cost) {
        return Err(bad("bcrypt-cost", format!("{} is outside bcrypt's 4..=31", raw.bcrypt_cost)));
    }
    let data_dir = PathBuf::from(raw.data_dir.clone().unwrap_or_else(|| format!("{}.stead", raw.name)));
    Ok(Settings {
        name: raw.name,
        data_dir,
        listen_client,
        advertise_client_urls,
        listen_peer,
        listen_metrics,
        advertise_peer_urls,
        initial_cluster,
        cluster_token: token,
        cluster_state,
        heartbeat_interval_ms: raw.heartbeat_interval,
        election_timeout_ms: raw.election_timeout,
        snapshot_count: raw.snapshot_count,
        max_request_bytes: raw.max_request_bytes as usize,
        max_txn_ops: raw.max_txn_ops as usize,
        quota_backend_bytes: raw.quota_backend_bytes,
        backend_cache_bytes: raw.backend_cache_bytes,
        auto_compaction,
        log_level,
        log_format,
        auth_token: raw.auth_token,
        auth_token_ttl: std::time::Duration::from_secs(raw.auth_token_ttl),
        bcrypt_cost: raw.bcrypt_cost,
        max_concurrent_streams: raw.max_concurrent_streams,
    })
}

fn split_urls(key: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if urls.is_empty() {
        return Err(ConfigError::BadValue { key: key.into(), reason: "expected at least one URL".into() });
    }
    for u in &urls {
        url_host_port(key, u)?;
    }
    Ok(urls)
}

/// `http://host:port` → `host:port`. Only plain HTTP is served (TLS flags are refused).
fn url_host_port<'a>(key: &str, url: &'a str) -> Result<&'a str, ConfigError> {
    if url.starts_with("https://") || url.starts_with("unixs://") {
        return Err(ConfigError::Unsupported { key: key.into(), why: format!("{url}: TLS is not implemented yet") });
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| ConfigError::BadValue {
        key: key.into(),
        reason: format!("{url:?} is not a URL of the form http://host:port"),
    })?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(rest),
        _ => Err(ConfigError::BadValue { key: key.into(), reason: format!("{url:?} has no host:port") }),
    }
}

fn parse_listen_urls(key: &str, text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::new();
    for url in split_urls(key, text)? {
        let hp = url_host_port(key, &url)?;
        let addr = hp
            .to_socket_addrs()
            .map_err(|e| ConfigError::BadValue { key: key.into(), reason: format!("{url}: {e}") })?
            .next()
            .ok_or_else(|| ConfigError::BadValue { key: key.into(), reason: format!("{url}: no address") })?;
        out.push(addr);
    }
    Ok(out)
}

/// `n1=http://a:2380,n2=http://b:2380` (a name may repeat, once per peer URL).
pub fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<ClusterMember>, ConfigError> {
    let key = "initial-cluster";
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| ConfigError::BadValue {
            key: key.into(),
            reason: format!("{part:?} is not of the form name=http://host:port"),
        })?;
        url_host_port(key, url)?;
        if !by_name.contains_key(name) {
            order.push(name.to_string());
        }
        by_name.entry(name.to_string()).or_default().push(url.to_string());
    }
    if order.is_empty() {
        return Err(ConfigError::BadValue { key: key.into(), reason: "names no member".into() });
    }
    let members: Vec<ClusterMember> = order
        .into_iter()
        .map(|name| {
            let peer_urls = by_name.remove(&name).unwrap_or_default();
            let id = member_id(&peer_urls, token);
            ClusterMember { name, peer_urls, id }
        })
        .collect();
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != members.len() {
        return Err(ConfigError::BadValue { key: key.into(), reason: "two members share peer URLs".into() });
    }
    Ok(members)
}

/// etcd's member id for a statically bootstrapped member.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut bytes = urls.concat().into_bytes();
    bytes.extend_from_slice(token.as_bytes());
    first_u64_of_sha1(&bytes)
}

fn first_u64_of_sha1(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, String> {
        let mut argv = vec!["stead"];
        argv.extend_from_slice(args);
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match load_from(argv, &env) {
            Ok((_, Some(s))) => Ok(s),
            Ok((_, None)) => Err("version".into()),
            Err(LoadError::Usage(e)) => Err(e.to_string()),
            Err(LoadError::Config(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults_are_a_single_member_on_loopback() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.name, "default");
        assert_eq!(s.data_dir, PathBuf::from("default.stead"));
        assert_eq!(s.listen_client, vec!["127.0.0.1:2379".parse().unwrap()]);
        assert_eq!(s.listen_peer, vec!["127.0.0.1:2380".parse().unwrap()]);
        assert!(s.listen_metrics.is_empty(), "no separate metrics listener by default");
        assert_eq!(s.initial_cluster.len(), 1);
        assert_eq!(s.max_request_bytes, 1_572_864);
        assert_eq!(s.max_txn_ops, 128);
    }

    /// etcd's own default member (`http://localhost:2380`, token `etcd-cluster`)
    /// has id 8e9e05c52164694d and cluster id cdf818194e3a8c32.
    #[test]
    fn member_and_cluster_ids_match_etcd() {
        let s = load(
            &["--initial-advertise-peer-urls", "http://localhost:2380", "--listen-peer-urls", "http://127.0.0.1:2380"],
            &[],
        )
        .unwrap();
        assert_eq!(s.member_id(), 0x8e9e05c52164694d);
        assert_eq!(s.cluster_id(), 0xcdf818194e3a8c32);
    }

    #[test]
    fn layering_flags_over_env_over_file_member_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
heartbeat-interval = 50
election-timeout = 500
max-txn-ops = 10
initial-cluster = "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380"
[[member]]
name = "a"
initial-advertise-peer-urls = "http://127.0.0.1:12380"
listen-client-urls = "http://127.0.0.1:12379"
max-txn-ops = 20
[[member]]
name = "b"
initial-advertise-peer-urls = "http://127.0.0.1:22380"
"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = load(&["--config", p, "--name", "a"], &[]).unwrap();
        assert_eq!(s.heartbeat_interval_ms, 50);
        assert_eq!(s.max_txn_ops, 20, "member table overrides the top level");
        assert_eq!(s.listen_client, vec!["127.0.0.1:12379".parse().unwrap()]);
        let s = load(&["--config", p, "--name", "a"], &[("STEAD_MAX_TXN_OPS", "30")]).unwrap();
        assert_eq!(s.max_txn_ops, 30, "environment overrides the file");
        let s = load(&["--config", p, "--name", "a", "--max-txn-ops", "40"], &[("STEAD_MAX_TXN_OPS", "30")]).unwrap();
        assert_eq!(s.max_txn_ops, 40, "flags override the environment");
        let s = load(&["--config", p], &[("STEAD_NAME", "b")]).unwrap();
        assert_eq!(s.advertise_peer_urls, vec!["http://127.0.0.1:22380".to_string()]);
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key() {
        let e = load(&["--heartbeat-interval", "abc"], &[]).unwrap_err();
        assert!(e.contains("heartbeat-interval"), "{e}");
        let e = load(&["--initial-cluster-state", "old"], &[]).unwrap_err();
        assert!(e.contains("initial-cluster-state") && e.contains("existing"), "{e}");
        let e = load(&["--listen-client-urls", "127.0.0.1:2379"], &[]).unwrap_err();
        assert!(e.contains("listen-client-urls"), "{e}");
        let e = load(&[], &[("STEAD_HEARTBEAT", "1")]).unwrap_err();
        assert!(e.contains("STEAD_HEARTBEAT"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "heartbeat-intervall = 5\n").unwrap();
        let e = load(&["--config", path.to_str().unwrap()], &[]).unwrap_err();
        assert!(e.contains("heartbeat-intervall"), "{e}");
        std::fs::write(&path, "heartbeat-interval = \"fast\"\n").unwrap();
        let e = load(&["--config", path.to_str().unwrap()], &[]).unwrap_err();
        assert!(e.contains("heartbeat-interval"), "{e}");
    }

    /// etcd command lines with `--metrics` start stead (the extensive set is
    /// exported either way).
    #[test]
    fn the_metrics_level_is_accepted() {
        for level in ["basic", "extensive"] {
            assert!(load(&["--metrics", level], &[]).is_ok(), "--metrics {level}");
        }
        assert!(load(&[], &[("STEAD_METRICS", "extensive")]).is_ok());
    }

    #[test]
    fn backend_cache_bytes_has_a_floor() {
        assert_eq!(load(&[], &[]).unwrap().backend_cache_bytes, crate::storage::backend::DEFAULT_CACHE_BYTES);
        let s = load(&["--backend-cache-bytes", "268435456"], &[]).unwrap();
        assert_eq!(s.backend_cache_bytes, 256 << 20);
        let e = load(&["--backend-cache-bytes", "4096"], &[]).unwrap_err();
        assert!(e.contains("backend-cache-bytes") && e.contains("1 MiB"), "{e}");
    }

    #[test]
    fn listen_metrics_urls_are_parsed_like_the_other_listen_urls() {
        let s = load(&["--listen-metrics-urls", "http://127.0.0.1:2381,http://127.0.0.1:0"], &[]).unwrap();
        assert_eq!(s.listen_metrics, vec!["127.0.0.1:2381".parse().unwrap(), "127.0.0.1:0".parse().unwrap()]);
        let s = load(&[], &[("STEAD_LISTEN_METRICS_URLS", "http://127.0.0.1:9100")]).unwrap();
        assert_eq!(s.listen_metrics, vec!["127.0.0.1:9100".parse().unwrap()]);
        let e = load(&["--listen-metrics-urls", "127.0.0.1:2381"], &[]).unwrap_err();
        assert!(e.contains("listen-metrics-urls"), "{e}");
        let e = load(&["--listen-metrics-urls", "https://127.0.0.1:2381"], &[]).unwrap_err();
        assert!(e.contains("listen-metrics-urls") && e.contains("TLS"), "{e}");
    }

    #[test]
    fn unsupported_etcd_flags_fail_clearly() {
        let e = load(&["--cert-file", "x.pem"], &[]).unwrap_err();
        assert!(e.contains("--cert-file") && e.contains("not supported"), "{e}");
        let e = load(&["--auto-compaction-retention", "an hour"], &[]).unwrap_err();
        assert!(e.contains("auto-compaction-retention"), "{e}");
        let e = load(&["--listen-client-urls", "https://127.0.0.1:2379"], &[]).unwrap_err();
        assert!(e.contains("TLS"), "{e}");
    }

    #[test]
    fn the_repo_cluster_toml_is_valid_for_every_member() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml");
        for name in ["n1", "n2", "n3"] {
            let s = load(&["--config", path, "--name", name], &[]).unwrap();
            assert_eq!(s.initial_cluster.len(), 3);
            assert_eq!(s.name, name);
        }
    }
}
