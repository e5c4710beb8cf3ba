//! quorum-floor: what one quorum write costs on this machine with nothing but
//! the disk and loopback TCP in the way, for reading `bench/compare.sh`'s
//! "put, 1 client" row against.
//!
//! The members are threads of this one process. Each appends 128-byte records
//! to its own log file, preallocated and zero-filled as stead's WAL segments
//! are, with `write` + `fdatasync` on a writer thread of its own (a server may
//! not block the loop that serves its network). The leader sends each record
//! to every follower over loopback TCP, hands its own copy to its writer, and
//! answers the client once a majority has the record durable. The client sends
//! `--total` records one after another and times each round trip.
//!
//! There is no HTTP/2, no protobuf, no Raft log and no state machine: a real
//! server can only add to these figures. `--inline-sync` writes on the network
//! thread instead, which no server may do, to show what the hand-off costs.
//!
//!   cargo run --release --example quorum-floor -- [--members N] [--total N]
//!       [--dir DIR] [--inline-sync] [--json]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc as async_mpsc;

/// Bytes per record; a record starts with its sequence number (u64, little endian).
const RECORD: usize = 128;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "quorum-floor",
    about = "The floor of a quorum write on this machine (see the module doc)"
)]
struct Args {
    /// Members, the leader included; a write waits for a majority.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    members: u16,
    /// Writes, sent one after another by one client.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    total: u32,
    /// Where the members' log files go (a temp dir under it); the system temp dir if not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// fdatasync on the thread that serves the network (no hand-off to a writer thread).
    #[arg(long)]
    inline_sync: bool,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// One member's log: records appended at increasing offsets of a file whose
/// blocks are already allocated and written, so an fdatasync carries data only.
struct Log {
    file: File,
    offset: u64,
}

impl Log {
    fn create(path: &Path, records: u32) -> io::Result<Log> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let size = (u64::from(records) * RECORD as u64).next_multiple_of(1 << 20);
        let zeros = vec![0u8; 1 << 20];
        for start in (0..size).step_by(zeros.len()) {
            file.write_all_at(&zeros, start)?;
        }
        file.sync_all()?;
        Ok(Log { file, offset: 0 })
    }

    fn append(&mut self, record: &[u8; RECORD]) -> io::Result<()> {
        self.file.write_all_at(record, self.offset)?;
        self.offset += RECORD as u64;
        self.file.sync_data()
    }
}

fn seq_of(bytes: &[u8]) -> u64 {
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(seq)
}

/// A writer thread for `log`: appends what it is sent, then reports the record's
/// sequence number to `durable`. Ends when the sender is dropped or on an error.
fn spawn_writer(
    mut log: Log,
    mut durable: impl FnMut(u64) -> io::Result<()> + Send + 'static,
) -> (
    mpsc::Sender<[u8; RECORD]>,
    thread::JoinHandle<io::Result<()>>,
) {
    let (tx, rx) = mpsc::channel::<[u8; RECORD]>();
    let handle = thread::spawn(move || {
        for record in rx {
            log.append(&record)?;
            durable(seq_of(&record))?;
        }
        Ok(())
    });
    (tx, handle)
}

/// A follower: takes the leader's records from `conn`, makes each durable and
/// acknowledges it with its sequence number.
fn follow(conn: StdTcpStream, mut log: Log, inline_sync: bool) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = conn.try_clone()?;
    let mut acks = conn;
    let mut record = [0u8; RECORD];
    if inline_sync {
        while read_record(&mut reader, &mut record)? {
            log.append(&record)?;
            acks.write_all(&record[..8])?;
        }
        return Ok(());
    }
    let (to_writer, writer) = spawn_writer(log, move |seq| acks.write_all(&seq.to_le_bytes()));
    while read_record(&mut reader, &mut record)? {
        if to_writer.send(record).is_err() {
            break; // the writer failed: its error is returned below
        }
    }
    drop(to_writer);
    writer
        .join()
        .map_err(|_| io::Error::other("a follower's writer panicked"))?
}

/// Reads one record; `false` at a clean end of stream.
fn read_record(conn: &mut impl Read, record: &mut [u8; RECORD]) -> io::Result<bool> {
    match conn.read_exact(record) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The leader: one single-threaded loop serves the client and the followers;
/// a record is answered once `majority` members (itself after its own
/// fdatasync) have it durable.
async fn lead(
    client: TcpListener,
    followers: Vec<std::net::SocketAddr>,
    log: Log,
    inline_sync: bool,
) -> io::Result<()> {
    let members = followers.len() + 1;
    let majority = members / 2 + 1;
    // Every durable report, the leader's own and the followers' acks, in one queue.
    let (durable_tx, mut durable_rx) = async_mpsc::unbounded_channel::<u64>();
    let mut links = Vec::new();
    for addr in followers {
        let conn = TcpStream::connect(addr).await?;
        conn.set_nodelay(true)?;
        let (mut acks, link) = conn.into_split();
        let report = durable_tx.clone();
        tokio::task::spawn_local(async move {
            let mut ack = [0u8; 8];
            while acks.read_exact(&mut ack).await.is_ok() {
                if report.send(u64::from_le_bytes(ack)).is_err() {
                    break;
                }
            }
        });
        links.push(link);
    }
    let mut own = if inline_sync {
        OwnCopy::Inline(log)
    } else {
        let report = durable_tx.clone();
        let (tx, handle) = spawn_writer(log, move |seq| {
            report
                .send(seq)
                .map_err(|_| io::Error::other("the leader is gone"))
        });
        OwnCopy::Writer(tx, handle)
    };
    let (mut conn, _) = client.accept().await?;
    conn.set_nodelay(true)?;
    let mut record = [0u8; RECORD];
    let mut seq = 0u64;
    loop {
        match conn.read_exact(&mut record).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        seq += 1;
        record[..8].copy_from_slice(&seq.to_le_bytes());
        for link in &mut links {
            link.write_all(&record).await?;
        }
        let mut have = 0;
        match &mut own {
            OwnCopy::Writer(writer, _) => writer
                .send(record)
                .map_err(|_| io::Error::other("the leader's writer failed"))?,
            OwnCopy::Inline(log) => {
                log.append(&record)?;
                have += 1;
            }
        }
        while have < majority {
            let durable = durable_rx
                .recv()
                .await
                .ok_or_else(|| io::Error::other("reports ended"))?;
            // Late acks of earlier records (a slower follower's) are not this one's.
            if durable == seq {
                have += 1;
            }
        }
        conn.write_all(&record[..8]).await?;
    }
    match own {
        OwnCopy::Writer(writer, handle) => {
            drop(writer);
            handle
                .join()
                .map_err(|_| io::Error::other("the leader's writer panicked"))?
        }
        OwnCopy::Inline(_) => Ok(()),
    }
}

/// How the leader makes its own copy durable.
enum OwnCopy {
    Inline(Log),
    Writer(
        mpsc::Sender<[u8; RECORD]>,
        thread::JoinHandle<io::Result<()>>,
    ),
}

/// Latencies of one run, sorted.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn quantile_ms(&self, q: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
        self.latencies[i].as_secs_f64() * 1e3
    }

    fn mean_ms(&self) -> f64 {
        self.latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / self.latencies.len() as f64
    }
}

/// Starts the members, sends `total` writes one after another, and stops them.
fn run(args: &Args, dir: &Path) -> io::Result<Run> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0");
    let mut members = Vec::new();
    let mut follower_addrs = Vec::new();
    for i in 1..args.members {
        let listener = bind()?;
        follower_addrs.push(listener.local_addr()?);
        let log = Log::create(&dir.join(format!("member{i}.log")), args.total)?;
        let inline = args.inline_sync;
        members.push(thread::spawn(move || {
            follow(listener.accept()?.0, log, inline)
        }));
    }
    let client_listener = bind()?;
    let client_addr = client_listener.local_addr()?;
    client_listener.set_nonblocking(true)?;
    let log = Log::create(&dir.join("member0.log"), args.total)?;
    let inline = args.inline_sync;
    members.push(thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let tasks = tokio::task::LocalSet::new();
        tasks.block_on(&runtime, async move {
            lead(
                TcpListener::from_std(client_listener)?,
                follower_addrs,
                log,
                inline,
            )
            .await
        })
    }));

    let mut conn = StdTcpStream::connect(client_addr)?;
    conn.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(args.total as usize);
    let record = [0x5a; RECORD];
    let mut ack = [0u8; 8];
    let start = Instant::now();
    for _ in 0..args.total {
        let sent = Instant::now();
        conn.write_all(&record)?;
        conn.read_exact(&mut ack)?;
        latencies.push(sent.elapsed());
    }
    let elapsed = start.elapsed();
    drop(conn); // the leader ends, which closes the followers' links
    for member in members {
        member
            .join()
            .map_err(|_| io::Error::other("a member panicked"))??;
    }
    latencies.sort();
    Ok(Run { latencies, elapsed })
}

fn main() {
    let args = Args::parse();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let outcome = tempfile::Builder::new()
        .prefix("quorum-floor")
        .tempdir_in(&base)
        .and_then(|dir| run(&args, dir.path()));
    let run = match outcome {
        Ok(run) => run,
        Err(e) => {
            eprintln!("quorum-floor: {e}");
            std::process::exit(1);
        }
    };
    let per_sec = run.latencies.len() as f64 / run.elapsed.as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "members": args.members,
                "inline_sync": args.inline_sync,
                "requests": run.latencies.len(),
                "requests_per_second": per_sec,
                "mean_ms": run.mean_ms(),
                "p50_ms": run.quantile_ms(0.5),
                "p90_ms": run.quantile_ms(0.9),
                "p99_ms": run.quantile_ms(0.99),
                "max_ms": run.quantile_ms(1.0),
            })
        );
    } else {
        println!(
            "{} members, {} writes{}: {:.0} writes/s; mean {:.3} ms, p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3}",
            args.members,
            run.latencies.len(),
            if args.inline_sync { ", fdatasync inline" } else { "" },
            per_sec,
            run.mean_ms(),
            run.quantile_ms(0.5),
            run.quantile_ms(0.9),
            run.quantile_ms(0.99),
            run.quantile_ms(1.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence_numbers(path: &Path, records: usize) -> Vec<u64> {
        let bytes = std::fs::read(path).unwrap();
        bytes.chunks(RECORD).take(records).map(seq_of).collect()
    }

    /// Every member's log holds every record, in order, whichever way it syncs;
    /// one latency per write.
    #[test]
    fn every_member_logs_every_write_in_order() {
        for inline_sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let args = Args {
                members: 3,
                total: 25,
                dir: None,
                inline_sync,
                json: false,
            };
            let run = run(&args, dir.path()).unwrap();
            assert_eq!(run.latencies.len(), 25);
            let expected: Vec<u64> = (1..=25).collect();
            for member in 0..3 {
                let path = dir.path().join(format!("member{member}.log"));
                assert_eq!(
                    sequence_numbers(&path, 25),
                    expected,
                    "member {member}, inline {inline_sync}"
                );
                assert_eq!(
                    sequence_numbers(&path, 26)[25],
                    0,
                    "nothing past the last write"
                );
            }
        }
    }

    #[test]
    fn one_member_answers_after_its_own_sync() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            members: 1,
            total: 5,
            dir: None,
            inline_sync: false,
            json: false,
        };
        let run = run(&args, dir.path()).unwrap();
        assert_eq!(run.latencies.len(), 5);
        assert_eq!(
            sequence_numbers(&dir.path().join("member0.log"), 5),
            vec![1, 2, 3, 4, 5]
        );
    }
}
