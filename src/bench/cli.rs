//! The command line of `stead-bench`, in the shape of etcd's `benchmark` tool:
//! connection and load flags are global (before or after the workload name), each
//! workload is a subcommand. This module only parses and checks flags; it never
//! opens a connection.

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::BenchError;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "stead-bench",
    about = "Load generator for etcd-compatible servers (gRPC or JSON gateway), after etcd's benchmark tool"
)]
pub struct Cli {
    #[command(flatten)]
    pub load: LoadFlags,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Flags every workload shares.
#[derive(Args, Debug, Clone)]
pub struct LoadFlags {
    /// Endpoints (host:port or http://host:port), comma-separated; connections are
    /// spread over them round-robin.
    #[arg(long, global = true, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Client protocol.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Grpc)]
    pub backend: Backend,
    /// gRPC connections (HTTP/2, shared by the clients round-robin). The gateway
    /// back-end gives every client its own HTTP/1.1 keep-alive connection instead.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients (each has at most one request in flight).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Requests in all (for `watch`: puts; for `watch-idle`: unused).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub total: u64,
    /// Key size in bytes (keys are zero-padded decimal numbers from the key space).
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys used (`put`, `txn-put`, `mixed`, `watch`).
    #[arg(long, global = true, default_value_t = 1)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of at random.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Requests per second over all clients; 0: as fast as they go.
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Print one JSON line with the summary instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Send everything to the leader: the endpoint whose member leads, as its
    /// Maintenance.Status says (etcd's benchmark `--target-leader`).
    #[arg(long, global = true)]
    pub target_leader: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Workload {
    /// Puts of `--val-size` byte values to keys from the key space.
    Put,
    /// Ranges over KEY, or [KEY, END) when END is given.
    Range {
        key: String,
        end: Option<String>,
        /// l: linearizable (ReadIndex), s: serializable (local).
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
    },
    /// Txns whose success branch puts `--txn-ops` distinct keys.
    TxnPut {
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Reads (range of one key) and puts over the key space, mixed.
    Mixed {
        /// Share of requests that are reads, 0.0 to 1.0.
        #[arg(long, default_value_t = 0.9)]
        read_ratio: f64,
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
    },
    /// Put-to-event latency: `--watchers` watch the key space's keys (spread over
    /// them), `--total` puts at `--rate`; one sample per event per watcher.
    Watch {
        #[command(flatten)]
        watchers: WatcherFlags,
    },
    /// Opens `--watchers` idle watchers, prints a JSON line once all are created,
    /// and holds them for `--hold-secs` (for measuring memory per idle watcher).
    WatchIdle {
        #[command(flatten)]
        watchers: WatcherFlags,
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Every client grants a lease, then sends keep-alives for it.
    LeaseKeepalive {
        /// TTL of each client's lease, in seconds.
        #[arg(long, default_value_t = 60)]
        lease_ttl_secs: i64,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WatcherFlags {
    /// Watchers in all.
    #[arg(long, default_value_t = 1)]
    pub watchers: usize,
    /// Watch streams the watchers are spread over (gRPC; the gateway needs one
    /// HTTP stream per watcher).
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Backend {
    Grpc,
    Gateway,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Consistency {
    L,
    S,
}

impl Consistency {
    pub fn serializable(self) -> bool {
        self == Consistency::S
    }
}

impl Workload {
    /// The workload's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range { .. } => "range",
            Workload::TxnPut { .. } => "txn-put",
            Workload::Mixed { .. } => "mixed",
            Workload::Watch { .. } => "watch",
            Workload::WatchIdle { .. } => "watch-idle",
            Workload::LeaseKeepalive { .. } => "lease-keepalive",
        }
    }
}

/// Digits needed to write every key of a key space of `size` keys.
pub fn key_digits(size: u64) -> usize {
    size.saturating_sub(1).max(1).ilog10() as usize + 1
}

impl Cli {
    /// Rejects flag combinations that would silently measure something else.
    pub fn validate(&self) -> Result<(), BenchError> {
        let l = &self.load;
        let bad = |m: String| Err(BenchError::Flags(m));
        if l.endpoints.iter().all(|e| e.trim().is_empty()) {
            return bad("--endpoints is empty".into());
        }
        if l.clients == 0 || l.conns == 0 {
            return bad("--clients and --conns must be at least 1".into());
        }
        if l.key_space_size == 0 {
            return bad("--key-space-size must be at least 1".into());
        }
        if l.key_size < key_digits(l.key_space_size) {
            return bad(format!(
                "--key-size {} cannot hold {} distinct keys (needs {} bytes)",
                l.key_size,
                l.key_space_size,
                key_digits(l.key_space_size)
            ));
        }
        match &self.workload {
            Workload::TxnPut { txn_ops } if *txn_ops == 0 || *txn_ops as u64 > l.key_space_size => {
                return bad(format!(
                    "--txn-ops must be between 1 and --key-space-size ({}): keys in one txn must differ",
                    l.key_space_size
                ));
            }
            Workload::Mixed { read_ratio, .. } if !(0.0..=1.0).contains(read_ratio) => {
                return bad(format!("--read-ratio must be between 0 and 1, got {read_ratio}"));
            }
            Workload::Watch { watchers } | Workload::WatchIdle { watchers, .. } => {
                if watchers.watchers == 0 || watchers.streams == 0 {
                    return bad("--watchers and --streams must be at least 1".into());
                }
                if matches!(self.workload, Workload::Watch { .. }) && l.val_size < super::keys::SEQ_DIGITS {
                    return bad(format!(
                        "watch puts carry their sequence number in the value: --val-size must be at least {}",
                        super::keys::SEQ_DIGITS
                    ));
                }
            }
            Workload::LeaseKeepalive { lease_ttl_secs } if *lease_ttl_secs <= 0 => {
                return bad("--lease-ttl-secs must be positive".into());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let cli = Cli::try_parse_from(std::iter::once("stead-bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.validate().map_err(|e| e.to_string())?;
        Ok(cli)
    }

    #[test]
    fn global_flags_go_before_or_after_the_workload() {
        let a = parse(&["--clients", "4", "--endpoints", "a:1,b:2", "put", "--val-size", "256"]).unwrap();
        assert_eq!(a.load.clients, 4);
        assert_eq!(a.load.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(a.load.val_size, 256);
        assert_eq!(a.load.backend, Backend::Grpc);
        let b = parse(&["range", "k", "z", "--consistency", "s", "--backend", "gateway"]).unwrap();
        match b.workload {
            Workload::Range { key, end, consistency } => {
                assert_eq!((key.as_str(), end.as_deref(), consistency), ("k", Some("z"), Consistency::S))
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(b.load.backend, Backend::Gateway);
    }

    #[test]
    fn key_size_must_hold_the_key_space() {
        assert_eq!(key_digits(1), 1);
        assert_eq!(key_digits(10), 1);
        assert_eq!(key_digits(11), 2);
        assert_eq!(key_digits(100_000), 5);
        assert!(parse(&["put", "--key-space-size", "100000", "--key-size", "5"]).is_ok());
        let err = parse(&["put", "--key-space-size", "100001", "--key-size", "5"]).unwrap_err();
        assert!(err.contains("cannot hold 100001 distinct keys"), "{err}");
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(&["--clients", "0", "put"]).is_err());
        assert!(parse(&["mixed", "--read-ratio", "1.5"]).is_err());
        assert!(parse(&["txn-put", "--txn-ops", "3"]).is_err(), "3 distinct keys from a key space of 1");
        assert!(parse(&["txn-put", "--txn-ops", "3", "--key-space-size", "3"]).is_ok());
        assert!(parse(&["watch", "--val-size", "4"]).is_err());
        assert!(parse(&["watch", "--watchers", "0", "--val-size", "16"]).is_err());
        assert!(parse(&["lease-keepalive", "--lease-ttl-secs", "0"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }
}
