//! `stead-bench`, the load generator (issue #7), after etcd's `benchmark` tool.
//!
//! Owns: flags (`cli`), key choice (`keys`), the request workloads (`requests`:
//! put, range, txn-put, mixed, lease-keepalive), the watch workloads (`watch`:
//! put-to-event latency, idle watchers), the two back-ends (`grpc`, `gateway`),
//! statistics (`stats`) and the progress line (`progress`).
//!
//! How a run is driven: work is spread over a few worker threads (one per core at
//! most), each with its own single-threaded tokio runtime and its own connections;
//! clients are tasks on them. A shared `Pacer` hands out request indices (and
//! paces them with `--rate`); what request `i` is depends only on `i`.
//!
//! Never: talks to anything but the given endpoints; drops an error (every error
//! is counted and the first distinct messages printed); knows a server's internals.

pub mod cli;
pub mod gateway;
pub mod grpc;
pub mod keys;
pub mod progress;
pub mod requests;
pub mod stats;
pub mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cli::{Backend, Cli, LoadFlags, Workload};

/// Errors of the benchmark: its flags, its connections, and the answers it got.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Flags(String),
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{0}")]
    Setup(String),
    /// A gRPC status: its code and message, as etcd clients print them.
    #[error("rpc error: code = {code} desc = {message}")]
    Rpc { code: String, message: String },
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
    /// A success status whose answer says it did not do what was asked.
    #[error("{0}")]
    Answer(String),
}

/// One key-value request of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Range { key: Vec<u8>, range_end: Vec<u8>, serializable: bool },
    /// A txn with no compares whose success branch puts these.
    TxnPut(Vec<(Vec<u8>, Vec<u8>)>),
}

/// What a watch stream delivered, whichever back-end carried it.
#[derive(Debug)]
pub enum WatchMsg {
    Created,
    Canceled(String),
    /// The values of the events of one response.
    Events(Vec<Vec<u8>>),
}

/// One connection to one endpoint.
#[derive(Clone)]
pub enum Conn {
    Grpc(grpc::GrpcConn),
    Gateway(gateway::GatewayConn),
}

/// `http://host:port` for an endpoint given as `host:port` or a URL.
pub fn base_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

impl Conn {
    /// Connection number `n` of a run: endpoints are taken round-robin.
    pub async fn open(load: &LoadFlags, n: usize) -> Result<Conn, BenchError> {
        let endpoints: Vec<&String> = load.endpoints.iter().filter(|e| !e.trim().is_empty()).collect();
        let url = base_url(endpoints[n % endpoints.len()]);
        Ok(match load.backend {
            Backend::Grpc => Conn::Grpc(grpc::GrpcConn::connect(&url).await?),
            Backend::Gateway => {
                let conn = gateway::GatewayConn::new(&url);
                conn.probe().await?;
                Conn::Gateway(conn)
            }
        })
    }

    pub async fn exec(&self, op: &Op) -> Result<(), BenchError> {
        match self {
            Conn::Grpc(c) => c.exec(op).await,
            Conn::Gateway(c) => c.exec(op).await,
        }
    }

    /// The member id of this connection's endpoint and the leader it knows.
    async fn member_and_leader(&self) -> Result<(u64, u64), BenchError> {
        match self {
            Conn::Grpc(c) => c.member_and_leader().await,
            Conn::Gateway(c) => c.member_and_leader().await,
        }
    }
}

/// The endpoint whose member is the leader, asking each endpoint in turn.
fn leader_endpoint(load: &LoadFlags) -> Result<String, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let endpoints: Vec<&String> = load.endpoints.iter().filter(|e| !e.trim().is_empty()).collect();
        let mut answers = Vec::new();
        for (n, endpoint) in endpoints.iter().enumerate() {
            let (member, leader) = Conn::open(load, n).await?.member_and_leader().await?;
            if member != 0 && member == leader {
                return Ok(endpoint.to_string());
            }
            answers.push(format!("{endpoint}: member {member:x}, leader {leader:x}"));
        }
        Err(BenchError::Setup(format!("no endpoint is the leader ({})", answers.join("; "))))
    })
}

/// Hands out request indices `0..total` to clients, each at its time under `--rate`.
pub struct Pacer {
    next: AtomicU64,
    total: u64,
    period: Option<Duration>,
    start: OnceLock<Instant>,
}

impl Pacer {
    pub fn new(total: u64, rate_per_sec: u64) -> Pacer {
        let period = (rate_per_sec > 0).then(|| Duration::from_secs_f64(1.0 / rate_per_sec as f64));
        Pacer { next: AtomicU64::new(0), total, period, start: OnceLock::new() }
    }

    /// When the run started (fixed by the first caller).
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// The next request index, or `None` when all are taken.
    pub fn claim(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }

    /// When request `i` is due (at once without a rate).
    pub fn due(&self, i: u64) -> Instant {
        match self.period {
            Some(p) => self.start() + p.mul_f64(i as f64),
            None => self.start(),
        }
    }

    pub async fn wait_turn(&self, i: u64) {
        if self.period.is_some() {
            tokio::time::sleep_until(self.due(i).into()).await;
        }
    }
}

/// Worker threads for `items` units of work (connections): one per core at most.
pub fn worker_count(items: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    items.clamp(1, cores)
}

/// Runs `make(w)` for each worker `w` on its own thread and single-threaded tokio
/// runtime; their outputs in worker order.
pub fn on_workers<T, F, Fut>(threads: usize, make: F) -> Result<Vec<T>, BenchError>
where
    T: Send,
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = T>,
{
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let make = &make;
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| BenchError::Setup(format!("cannot start a runtime: {e}")))?;
                    let out = rt.block_on(make(w));
                    // Stream tasks may still be parked; the run is over for them.
                    rt.shutdown_background();
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| BenchError::Setup("a worker thread panicked".into()))?)
            .collect()
    })
}

/// What a run produced: a summary to print, or (`watch-idle`) nothing more, as
/// it printed its line while holding its watchers.
pub enum Outcome {
    Summary(stats::Summary),
    Printed,
}

/// Runs the workload the flags name.
pub fn run(cli: &Cli) -> Result<Outcome, BenchError> {
    cli.validate()?;
    let mut cli = cli.clone();
    if cli.load.target_leader {
        cli.load.endpoints = vec![leader_endpoint(&cli.load)?];
    }
    let cli = &cli;
    match &cli.workload {
        Workload::Watch { watchers } => watch::run_latency(&cli.load, watchers).map(Outcome::Summary),
        Workload::WatchIdle { watchers, hold_secs } => watch::run_idle(&cli.load, watchers, *hold_secs).map(|()| Outcome::Printed),
        _ => requests::run(cli).map(Outcome::Summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_urls() {
        assert_eq!(base_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
    }

    #[test]
    fn the_pacer_hands_out_each_index_once() {
        let p = Pacer::new(3, 0);
        assert_eq!((p.claim(), p.claim(), p.claim(), p.claim()), (Some(0), Some(1), Some(2), None));
    }

    #[test]
    fn a_rate_spaces_due_times_evenly() {
        let p = Pacer::new(100, 10);
        let start = p.start();
        assert_eq!(p.due(0), start);
        assert_eq!(p.due(5) - start, Duration::from_millis(500));
        let unpaced = Pacer::new(100, 0);
        assert_eq!(unpaced.due(99), unpaced.start());
    }

    #[test]
    fn workers_run_each_future_on_its_own_runtime() {
        let out = on_workers(3, |w| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            w * 10
        })
        .unwrap();
        assert_eq!(out, vec![0, 10, 20]);
    }
}
