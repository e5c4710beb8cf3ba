//! The watch workloads. `watch`: watchers on the key space's keys (watcher `w`
//! on key `w mod key-space-size`), spread over `--streams` streams; once every
//! watcher is created the clock starts and clients put `--total` values at
//! `--rate`, each value carrying its put's sequence number; every event's latency
//! is its arrival minus its put's send time (one sample per watcher per put).
//! `watch-idle`: the same watchers, no puts; a JSON line once all are created,
//! then they are held open (to measure a server's memory per idle watcher).
//! Never counts as a success an event beyond what a stream's watchers can have
//! been sent (a duplicate), nor one for a value this run did not put.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use super::cli::{key_digits, LoadFlags, WatcherFlags};
use super::keys::{self, KeySpace};
use super::progress::Progress;
use super::stats::{Summary, Tally};
use super::{gateway, grpc, on_workers, worker_count, BenchError, Conn, Op, Pacer, WatchMsg};

/// How long events may still arrive after the last put before they count as lost.
const DRAIN: Duration = Duration::from_secs(10);
/// How often a stream reader looks up from its stream to see if the run is over.
const READER_RECHECK: Duration = Duration::from_millis(100);
/// How often a worker checks whether every watcher has been created.
const CREATED_POLL: Duration = Duration::from_millis(5);

/// Time allowed for creating `watchers` watchers.
fn setup_timeout(watchers: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(2 * watchers as u64)
}

/// One stream's worth of watchers, whichever back-end carries them.
enum WatchStream {
    Grpc(Box<grpc::GrpcWatch>),
    Gateway(gateway::GatewayWatch),
}

impl WatchStream {
    async fn open(conn: &Conn, keys: Vec<Vec<u8>>) -> Result<WatchStream, BenchError> {
        Ok(match conn {
            Conn::Grpc(c) => WatchStream::Grpc(Box::new(c.watch_stream(keys).await?)),
            Conn::Gateway(c) => WatchStream::Gateway(c.watch_streams(keys)),
        })
    }

    async fn next(&mut self) -> Result<Option<WatchMsg>, BenchError> {
        match self {
            WatchStream::Grpc(s) => s.next().await,
            WatchStream::Gateway(s) => s.next().await,
        }
    }
}

/// Which streams, keys and connections a run uses.
#[derive(Clone, Copy)]
struct Layout {
    watchers: usize,
    streams: usize,
    conns: usize,
    threads: usize,
    space: KeySpace,
}

impl Layout {
    fn new(load: &LoadFlags, flags: &WatcherFlags) -> Layout {
        let streams = flags.streams.min(flags.watchers);
        let conns = load.conns.max(1);
        let space = KeySpace { size: load.key_space_size, width: load.key_size.max(key_digits(load.key_space_size)), sequential: load.sequential_keys };
        Layout { watchers: flags.watchers, streams, conns, threads: worker_count(conns), space }
    }

    /// The keys stream `s` watches (one per watcher on it).
    fn stream_keys(&self, s: usize) -> Vec<Vec<u8>> {
        (s..self.watchers).step_by(self.streams).map(|w| self.space.key(w as u64)).collect()
    }

    /// Watchers on key number `n`.
    fn watchers_on(&self, n: u64) -> u64 {
        let k = self.space.size;
        let w = self.watchers as u64;
        w / k + u64::from(n < w % k)
    }

    /// Whether item `x` (a stream or a client, on connection `x mod conns`) runs on worker `w`.
    fn on_worker(&self, x: usize, w: usize) -> bool {
        (x % self.conns) % self.threads == w
    }
}

/// State shared by every worker and stream reader of one run.
struct Shared {
    layout: Layout,
    created: AtomicUsize,
    failed: AtomicBool,
    setup_error: Mutex<Option<BenchError>>,
    tally: Arc<Tally>,
    pacer: Pacer,
    /// Send time of put `i` in nanoseconds after the start; `u64::MAX` until sent.
    sent_ns: Vec<AtomicU64>,
    /// Events still to come for the puts made or to be made (a failed put's are
    /// taken off).
    expected: AtomicU64,
    received: AtomicU64,
    last_event_ns: AtomicU64,
    /// Workers still putting.
    putting: AtomicUsize,
    puts_over_at: OnceLock<Instant>,
    stop: AtomicBool,
}

impl Shared {
    fn fail(&self, e: BenchError) {
        self.failed.store(true, Ordering::SeqCst);
        self.setup_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    }

    fn now_ns(&self) -> u64 {
        self.pacer.start().elapsed().as_nanos() as u64
    }

    /// Whether a reader may stop: told to, or every expected event is in, or the
    /// puts are over and the drain time has passed.
    fn reading_over(&self) -> bool {
        if self.stop.load(Ordering::SeqCst) {
            return true;
        }
        if self.putting.load(Ordering::SeqCst) > 0 {
            return false;
        }
        self.received.load(Ordering::SeqCst) >= self.expected.load(Ordering::SeqCst)
            || self.puts_over_at.get().is_some_and(|t| t.elapsed() >= DRAIN)
    }

    /// Takes one event a stream delivered; `tally` is that stream's own count.
    fn on_event(&self, value: &[u8], tally: &mut StreamTally, latencies_ns: &mut Vec<u64>) {
        let now = self.now_ns();
        let Some(seq) = keys::seq_of_value(value).filter(|seq| *seq < self.sent_ns.len() as u64) else {
            return self.tally.error(format!("event for a value this run did not put ({} bytes)", value.len()));
        };
        let sent = self.sent_ns[seq as usize].load(Ordering::SeqCst);
        if sent == u64::MAX {
            return self.tally.error(format!("event for put {seq} before it was sent"));
        }
        if let Err(e) = tally.take(self.layout.space.number(seq), seq) {
            return self.tally.error(e);
        }
        latencies_ns.push(now.saturating_sub(sent));
        self.received.fetch_add(1, Ordering::SeqCst);
        self.last_event_ns.fetch_max(now, Ordering::SeqCst);
        self.tally.success();
    }
}

/// What one stream may deliver: per key number, how many of its watchers watch
/// it, so a put's events are counted at most that many times.
struct StreamTally {
    watchers_per_key: std::collections::HashMap<u64, u64>,
    events_per_put: std::collections::HashMap<u64, u64>,
}

impl StreamTally {
    fn new(layout: &Layout, s: usize) -> StreamTally {
        let mut watchers_per_key = std::collections::HashMap::new();
        for w in (s..layout.watchers).step_by(layout.streams) {
            *watchers_per_key.entry(w as u64 % layout.space.size).or_insert(0) += 1;
        }
        StreamTally { watchers_per_key, events_per_put: std::collections::HashMap::new() }
    }

    /// Counts an event of put `seq` on key number `key`, unless it is one more
    /// than this stream's watchers of that key can have been sent.
    fn take(&mut self, key: u64, seq: u64) -> Result<(), String> {
        let watching = self.watchers_per_key.get(&key).copied().unwrap_or(0);
        let seen = self.events_per_put.entry(seq).or_insert(0);
        if *seen >= watching {
            return Err(format!("event for put {seq} beyond what this stream watches (duplicate or foreign key)"));
        }
        *seen += 1;
        Ok(())
    }
}

/// Reads one stream until the run is over; its latency samples.
async fn read_stream(shared: Arc<Shared>, mut stream: WatchStream, mut tally: StreamTally) -> Vec<u64> {
    let mut latencies_ns = Vec::new();
    while !shared.reading_over() {
        let msg = match tokio::time::timeout(READER_RECHECK, stream.next()).await {
            Err(_) => continue,
            Ok(m) => m,
        };
        match msg {
            Ok(Some(WatchMsg::Created)) => {
                shared.created.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Some(WatchMsg::Events(values))) => values.iter().for_each(|v| shared.on_event(v, &mut tally, &mut latencies_ns)),
            Ok(Some(WatchMsg::Canceled(reason))) => shared.tally.error(format!("watch canceled: {reason}")),
            Ok(None) => {
                shared.tally.error("watch stream ended");
                break;
            }
            Err(e) => {
                shared.tally.error(format!("watch stream: {e}"));
                break;
            }
        }
    }
    latencies_ns
}

/// Opens this worker's connections and streams and waits until every watcher of
/// the run is created; the reader tasks.
async fn open_watchers(shared: &Arc<Shared>, load: &LoadFlags, w: usize) -> Result<(Vec<Conn>, Vec<tokio::task::JoinHandle<Vec<u64>>>), BenchError> {
    let l = shared.layout;
    let mut conns = Vec::new();
    for c in 0..l.conns {
        // Index-aligned; other workers' slots are never used here.
        conns.push(if c % l.threads == w { Some(Conn::open(load, c).await?) } else { None });
    }
    let conn = |x: usize| conns[x % l.conns].clone().ok_or_else(|| BenchError::Setup(format!("connection {} is not on this worker", x % l.conns)));
    let mut readers = Vec::new();
    for s in (0..l.streams).filter(|s| l.on_worker(*s, w)) {
        let stream = WatchStream::open(&conn(s)?, l.stream_keys(s)).await?;
        readers.push(tokio::spawn(read_stream(shared.clone(), stream, StreamTally::new(&l, s))));
    }
    let deadline = Instant::now() + setup_timeout(l.watchers);
    while shared.created.load(Ordering::SeqCst) < l.watchers {
        if shared.failed.load(Ordering::SeqCst) {
            return Err(BenchError::Setup("another worker failed".into()));
        }
        if Instant::now() >= deadline {
            let first = shared.tally.first_errors().first().map(|e| format!(" (first error: {})", e.message)).unwrap_or_default();
            return Err(BenchError::Setup(format!(
                "only {} of {} watchers were created within {:?}{first}",
                shared.created.load(Ordering::SeqCst),
                l.watchers,
                setup_timeout(l.watchers)
            )));
        }
        tokio::time::sleep(CREATED_POLL).await;
    }
    let conns = (0..l.conns).filter_map(|c| conns[c].clone()).collect();
    Ok((conns, readers))
}

/// One putting client: puts request indices until they run out.
async fn putter(shared: &Shared, conn: Conn, load: &LoadFlags) {
    let l = shared.layout;
    while let Some(i) = shared.pacer.claim() {
        shared.pacer.wait_turn(i).await;
        let op = Op::Put { key: l.space.key_for(i), value: keys::value_with_seq(i, load.val_size) };
        shared.sent_ns[i as usize].store(shared.now_ns(), Ordering::SeqCst);
        if let Err(e) = conn.exec(&op).await {
            shared.tally.error(format!("put: {e}"));
            shared.expected.fetch_sub(l.watchers_on(l.space.number(i)), Ordering::SeqCst);
        }
    }
}

async fn latency_worker(shared: Arc<Shared>, load: &LoadFlags, w: usize) -> Vec<u64> {
    let l = shared.layout;
    let (conns, readers) = match open_watchers(&shared, load, w).await {
        Ok(x) => x,
        Err(e) => {
            shared.fail(e);
            shared.stop.store(true, Ordering::SeqCst);
            shared.putting.fetch_sub(1, Ordering::SeqCst);
            return Vec::new();
        }
    };
    shared.pacer.start();
    // This worker's connections in order, for the clients mapped to them.
    let mine: Vec<usize> = (0..l.conns).filter(|c| c % l.threads == w).collect();
    let putters = (0..load.clients).filter(|k| l.on_worker(*k, w)).filter_map(|k| {
        let slot = mine.iter().position(|c| *c == k % l.conns)?;
        Some(putter(&shared, conns[slot].clone(), load))
    });
    futures::future::join_all(putters).await;
    if shared.putting.fetch_sub(1, Ordering::SeqCst) == 1 {
        let _ = shared.puts_over_at.set(Instant::now());
    }
    let mut latencies = Vec::new();
    for r in readers {
        match r.await {
            Ok(l) => latencies.extend(l),
            Err(e) => shared.tally.error(format!("stream reader failed: {e}")),
        }
    }
    latencies
}

fn shared_for(load: &LoadFlags, flags: &WatcherFlags, puts: u64) -> Arc<Shared> {
    let layout = Layout::new(load, flags);
    let expected = (0..puts).map(|i| layout.watchers_on(layout.space.number(i))).sum();
    Arc::new(Shared {
        layout,
        created: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        setup_error: Mutex::new(None),
        tally: Arc::new(Tally::default()),
        pacer: Pacer::new(puts, load.rate),
        sent_ns: (0..puts).map(|_| AtomicU64::new(u64::MAX)).collect(),
        expected: AtomicU64::new(expected),
        received: AtomicU64::new(0),
        last_event_ns: AtomicU64::new(0),
        putting: AtomicUsize::new(layout.threads),
        puts_over_at: OnceLock::new(),
        stop: AtomicBool::new(false),
    })
}

fn take_setup_error(shared: &Shared) -> Option<BenchError> {
    shared.setup_error.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// `watch`: put-to-event latency.
pub fn run_latency(load: &LoadFlags, flags: &WatcherFlags) -> Result<Summary, BenchError> {
    let shared = shared_for(load, flags, load.total);
    let total_events = shared.expected.load(Ordering::SeqCst);
    let progress = Progress::start(shared.tally.clone(), total_events);
    let latencies = on_workers(shared.layout.threads, |w| latency_worker(shared.clone(), load, w))?;
    progress.finish();
    if let Some(e) = take_setup_error(&shared) {
        return Err(e);
    }
    let missing = shared.expected.load(Ordering::SeqCst).saturating_sub(shared.received.load(Ordering::SeqCst));
    shared.tally.errors_n(format!("events that never arrived (within {DRAIN:?} of the last put)"), missing);
    let last_event = Duration::from_nanos(shared.last_event_ns.load(Ordering::SeqCst));
    let elapsed = if last_event.is_zero() { shared.pacer.start().elapsed() } else { last_event };
    let backend = format!("{:?}", load.backend).to_lowercase();
    Ok(Summary::new("watch", &backend, total_events, latencies.concat(), elapsed, &shared.tally))
}

/// `watch-idle`: creates the watchers, prints one JSON line, holds them.
pub fn run_idle(load: &LoadFlags, flags: &WatcherFlags, hold_secs: u64) -> Result<(), BenchError> {
    let shared = shared_for(load, flags, 0);
    let opened = Instant::now();
    let ready_line = OnceLock::new();
    on_workers(shared.layout.threads, |w| {
        let (shared, ready_line) = (shared.clone(), &ready_line);
        async move {
            match open_watchers(&shared, load, w).await {
                Ok(_held) => {
                    ready_line.get_or_init(|| {
                        let line = json!({
                            "workload": "watch-idle",
                            "backend": format!("{:?}", load.backend).to_lowercase(),
                            "watchers": shared.layout.watchers,
                            "created": shared.created.load(Ordering::SeqCst),
                            "streams": shared.layout.streams,
                            "setup_seconds": opened.elapsed().as_secs_f64(),
                            "hold_secs": hold_secs,
                        });
                        println!("{line}");
                    });
                    // Hold with the runtime running, so streams answer pings.
                    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
                    shared.stop.store(true, Ordering::SeqCst);
                }
                Err(e) => {
                    shared.fail(e);
                    shared.stop.store(true, Ordering::SeqCst);
                }
            }
        }
    })?;
    match take_setup_error(&shared) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(watchers: usize, streams: usize, key_space: u64) -> Layout {
        Layout {
            watchers,
            streams: streams.min(watchers),
            conns: 1,
            threads: 1,
            space: KeySpace { size: key_space, width: 8, sequential: true },
        }
    }

    #[test]
    fn watchers_spread_over_streams_and_keys() {
        let l = layout(5, 2, 3);
        // Watcher w watches key w mod 3; stream s holds watchers s, s+2, ...
        assert_eq!(l.stream_keys(0), [l.space.key(0), l.space.key(2), l.space.key(1)]);
        assert_eq!(l.stream_keys(1), [l.space.key(1), l.space.key(0)]);
        // Keys 0 and 1 have two watchers, key 2 one.
        assert_eq!((l.watchers_on(0), l.watchers_on(1), l.watchers_on(2)), (2, 2, 1));
        let total: u64 = (0..3).map(|n| l.watchers_on(n)).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn a_stream_counts_each_put_at_most_once_per_watcher_of_its_key() {
        let l = layout(5, 2, 3);
        // Stream 0 holds watchers 0, 2, 4: keys 0, 2, 1, one watcher each.
        let mut t = StreamTally::new(&l, 0);
        assert_eq!(t.take(0, 9), Ok(()));
        assert!(t.take(0, 9).is_err(), "a second event of put 9 on key 0 is a duplicate");
        assert_eq!(t.take(0, 12), Ok(()));
        // Two watchers of key 0 on one stream: two events per put.
        let l = layout(4, 1, 3);
        let mut t = StreamTally::new(&l, 0);
        assert_eq!((t.take(0, 3), t.take(0, 3)), (Ok(()), Ok(())));
        assert!(t.take(0, 3).is_err());
        assert!(StreamTally::new(&l, 0).take(7, 1).is_err(), "a key nobody here watches");
    }

    #[test]
    fn more_streams_than_watchers_are_not_opened() {
        let l = layout(3, 10, 1);
        assert_eq!(l.streams, 3);
        assert!((0..3).all(|s| l.stream_keys(s).len() == 1));
        assert_eq!(l.watchers_on(0), 3);
    }
}
