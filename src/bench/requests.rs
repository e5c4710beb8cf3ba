//! The request workloads: `put`, `range`, `txn-put`, `mixed` and
//! `lease-keepalive`. Each client sends one request at a time, takes the next
//! index from the pacer, and records the request's latency or its error. Set-up
//! (connections, leases, keep-alive streams) finishes on every worker before the
//! clock starts, and is not measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use super::cli::{key_digits, Cli, LoadFlags, Workload};
use super::keys::{self, KeySpace};
use super::progress::Progress;
use super::stats::{Summary, Tally};
use super::{grpc, gateway, on_workers, worker_count, BenchError, Conn, Op, Pacer};

/// What request `i` of a key-value workload is; `None` for lease keep-alives.
pub fn op_for(workload: &Workload, load: &LoadFlags, i: u64) -> Option<Op> {
    let space = KeySpace { size: load.key_space_size, width: load.key_size.max(key_digits(load.key_space_size)), sequential: load.sequential_keys };
    let put = |i| Op::Put { key: space.key_for(i), value: keys::value(load.val_size) };
    match workload {
        Workload::Put => Some(put(i)),
        Workload::Range { key, end, consistency } => Some(Op::Range {
            key: key.as_bytes().to_vec(),
            range_end: end.as_deref().unwrap_or("").as_bytes().to_vec(),
            serializable: consistency.serializable(),
        }),
        Workload::TxnPut { txn_ops } => {
            // Consecutive numbers from the drawn one: distinct keys (txn_ops ≤ the
            // key space, checked with the flags), as etcd refuses duplicates.
            let base = space.number(i);
            Some(Op::TxnPut(
                (0..*txn_ops as u64).map(|j| (space.key(base + j), keys::value(load.val_size))).collect(),
            ))
        }
        Workload::Mixed { read_ratio, consistency } => Some(if keys::unit_fraction(i) < *read_ratio {
            Op::Range { key: space.key_for(i), range_end: vec![], serializable: consistency.serializable() }
        } else {
            put(i)
        }),
        Workload::LeaseKeepalive { .. } | Workload::Watch { .. } | Workload::WatchIdle { .. } => None,
    }
}

/// A client's own state for the run.
enum Session {
    Kv(Conn),
    GrpcKeepAlive(grpc::GrpcKeepAlive),
    GatewayKeepAlive(gateway::GatewayConn, i64),
}

impl Session {
    async fn open(cli: &Cli, conn: Conn) -> Result<Session, BenchError> {
        let Workload::LeaseKeepalive { lease_ttl_secs } = cli.workload else {
            return Ok(Session::Kv(conn));
        };
        Ok(match conn {
            Conn::Grpc(c) => {
                let id = c.lease_grant(lease_ttl_secs).await?;
                Session::GrpcKeepAlive(c.keepalive_stream(id).await?)
            }
            Conn::Gateway(c) => {
                let id = c.lease_grant(lease_ttl_secs).await?;
                Session::GatewayKeepAlive(c, id)
            }
        })
    }

    async fn request(&mut self, cli: &Cli, i: u64) -> Result<(), BenchError> {
        match self {
            Session::Kv(conn) => match op_for(&cli.workload, &cli.load, i) {
                Some(op) => conn.exec(&op).await,
                None => Err(BenchError::Setup(format!("{} is not a key-value workload", cli.workload.name()))),
            },
            Session::GrpcKeepAlive(ka) => ka.keepalive().await,
            Session::GatewayKeepAlive(conn, id) => conn.keepalive(*id).await,
        }
    }
}

/// Shared by every worker of one run.
struct Run<'a> {
    cli: &'a Cli,
    pacer: Pacer,
    tally: Arc<Tally>,
    setup_failed: AtomicBool,
    setup_error: Mutex<Option<BenchError>>,
    ready: Barrier,
}

async fn client(run: &Run<'_>, mut session: Session) -> Vec<u64> {
    let mut latencies_ns = Vec::new();
    while let Some(i) = run.pacer.claim() {
        run.pacer.wait_turn(i).await;
        let sent = Instant::now();
        match session.request(run.cli, i).await {
            Ok(()) => {
                latencies_ns.push(sent.elapsed().as_nanos() as u64);
                run.tally.success();
            }
            Err(e) => run.tally.error(e.to_string()),
        }
    }
    latencies_ns
}

async fn worker(run: &Run<'_>, w: usize, threads: usize, conns: usize) -> Vec<u64> {
    // Set up this worker's connections and clients; remember the first failure.
    let setup = async {
        let mut mine = Vec::new();
        for c in (0..conns).filter(|c| c % threads == w) {
            mine.push((c, Conn::open(&run.cli.load, c).await?));
        }
        let mut sessions = Vec::new();
        for k in (0..run.cli.load.clients).filter(|k| (k % conns) % threads == w) {
            let conn = mine.iter().find(|(c, _)| *c == k % conns).map(|(_, conn)| conn.clone());
            let conn = conn.ok_or_else(|| BenchError::Setup(format!("client {k} has no connection")))?;
            sessions.push(Session::open(run.cli, conn).await?);
        }
        Ok::<_, BenchError>(sessions)
    };
    let sessions = match setup.await {
        Ok(s) => s,
        Err(e) => {
            run.setup_failed.store(true, Ordering::SeqCst);
            run.setup_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
            Vec::new()
        }
    };
    // Every worker reaches the barrier, failed or not, so none waits forever.
    if run.ready.wait().is_leader() {
        run.pacer.start();
    }
    if run.setup_failed.load(Ordering::SeqCst) {
        return Vec::new();
    }
    futures::future::join_all(sessions.into_iter().map(|s| client(run, s))).await.concat()
}

pub fn run(cli: &Cli) -> Result<Summary, BenchError> {
    let load = &cli.load;
    let conns = match load.backend {
        super::cli::Backend::Grpc => load.conns.min(load.clients),
        super::cli::Backend::Gateway => load.clients,
    };
    let threads = worker_count(conns);
    let run = Run {
        cli,
        pacer: Pacer::new(load.total, load.rate),
        tally: Arc::new(Tally::default()),
        setup_failed: AtomicBool::new(false),
        setup_error: Mutex::new(None),
        ready: Barrier::new(threads),
    };
    let progress = Progress::start(run.tally.clone(), load.total);
    let latencies = on_workers(threads, |w| worker(&run, w, threads, conns))?;
    let elapsed = run.pacer.start().elapsed();
    progress.finish();
    if let Some(e) = run.setup_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let backend = format!("{:?}", load.backend).to_lowercase();
    Ok(Summary::new(cli.workload.name(), &backend, load.total, latencies.concat(), elapsed, &run.tally))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let cli = Cli::try_parse_from(std::iter::once("stead-bench").chain(args.iter().copied())).unwrap();
        cli.validate().unwrap();
        cli
    }

    #[test]
    fn put_uses_the_key_space_and_value_size() {
        let c = cli(&["put", "--key-space-size", "10", "--sequential-keys", "--val-size", "3"]);
        assert_eq!(op_for(&c.workload, &c.load, 13), Some(Op::Put { key: b"00000003".to_vec(), value: b"vvv".to_vec() }));
    }

    #[test]
    fn range_asks_for_its_key_end_and_consistency() {
        let c = cli(&["range", "a", "b", "--consistency", "s"]);
        assert_eq!(
            op_for(&c.workload, &c.load, 5),
            Some(Op::Range { key: b"a".to_vec(), range_end: b"b".to_vec(), serializable: true })
        );
    }

    #[test]
    fn txn_put_keys_are_distinct_and_wrap_in_the_space() {
        let c = cli(&["txn-put", "--txn-ops", "3", "--key-space-size", "3", "--sequential-keys", "--key-size", "1"]);
        let Some(Op::TxnPut(puts)) = op_for(&c.workload, &c.load, 2) else { panic!() };
        let keys: Vec<&[u8]> = puts.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"2", b"0", b"1"]);
    }

    #[test]
    fn mixed_follows_the_read_ratio() {
        let c = cli(&["mixed", "--read-ratio", "0.8", "--key-space-size", "100"]);
        let reads = (0..10_000).filter(|i| matches!(op_for(&c.workload, &c.load, *i), Some(Op::Range { .. }))).count();
        assert!((7_700..8_300).contains(&reads), "{reads} reads of 10,000 at 0.8");
        let all_writes = cli(&["mixed", "--read-ratio", "0"]);
        assert!((0..100).all(|i| matches!(op_for(&all_writes.workload, &all_writes.load, i), Some(Op::Put { .. }))));
    }
}
