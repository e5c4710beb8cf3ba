//! The member's threads, as the kernel sees them: names them, and turns what
//! Linux counts for each (`/proc/self/task/<tid>/`) into the `stead_thread_*`
//! metrics, by thread name: CPU time, time spent runnable but waiting for a CPU,
//! and context switches. Each arbiter hosts a known set of actors (see
//! `node::run`), so these are the actors' own costs, including the ones an
//! actor's handling-time histogram cannot see (waking, being woken, waiting for
//! a core).
//!
//! Owns only the reading and the bookkeeping between scrapes. It reads files, so
//! it must never run on an actor's event loop (the scrape calls it on the
//! blocking pool). Elsewhere than Linux there is no `/proc`: nothing is read and
//! the metrics stay empty.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{CounterVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Names the calling thread (`top -H`, `ps -L`, and the `thread` label here).
/// Linux keeps 15 bytes of it. Best effort: a thread left unnamed is still
/// counted, under the name it had.
pub fn name_current_thread(name: &str) {
    if let Err(e) = std::fs::write("/proc/thread-self/comm", name) {
        tracing::debug!("cannot name thread {name}: {e}");
    }
}

/// What the kernel counts for one thread, cumulative since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    cpu_seconds: f64,
    wait_seconds: f64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

/// One live thread.
#[derive(Debug, Clone, PartialEq)]
struct ThreadSample {
    tid: u64,
    /// Its name with a trailing `-<n>` dropped: threads of one pool share a label.
    group: String,
    counts: Counts,
}

/// The kernel's clock ticks per second for `stat`'s times (USER_HZ, fixed at
/// 100 on Linux whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// `sled-io-3` → `sled-io`; names without a numbered suffix stay whole.
fn group_of(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, n)) if !head.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    }
}

/// utime + stime from a `stat` line; the name field may hold spaces and
/// parentheses, so fields are counted after its closing one.
fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// (on a CPU, waiting on a run queue), in seconds, from `schedstat`'s first two
/// fields (nanoseconds: finer than `stat`'s ticks).
fn parse_schedstat_seconds(schedstat: &str) -> Option<(f64, f64)> {
    let mut fields = schedstat.split_whitespace().map(|f| f.parse::<u64>().ok());
    let run_ns = fields.next()??;
    let wait_ns = fields.next()??;
    Some((run_ns as f64 / 1e9, wait_ns as f64 / 1e9))
}

/// (voluntary, involuntary) context switches from `status`.
fn parse_status_switches(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("voluntary_ctxt_switches:"), field("nonvoluntary_ctxt_switches:"))
}

/// Every thread of this process that could be read (one that exits midway is
/// skipped).
fn read_threads() -> Vec<ThreadSample> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u64 = task.file_name().to_str()?.parse().ok()?;
            let dir = task.path();
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
            let name = read("comm")?;
            // A kernel without scheduler statistics has no `schedstat`: CPU time
            // then comes from `stat`, in ticks, and no wait is counted.
            let (cpu_seconds, wait_seconds) = match read("schedstat").as_deref().and_then(parse_schedstat_seconds) {
                Some(both) => both,
                None => (parse_stat_cpu_seconds(&read("stat")?)?, 0.0),
            };
            let (voluntary_switches, involuntary_switches) = parse_status_switches(&read("status")?);
            Some(ThreadSample {
                tid,
                group: group_of(name.trim_end()).to_string(),
                counts: Counts { cpu_seconds, wait_seconds, voluntary_switches, involuntary_switches },
            })
        })
        .collect()
}

/// The `stead_thread_*` metrics and what they had counted per thread at the
/// last scrape: a group's counters grow by what its live threads did since
/// then, so a pool thread that exits never makes them go down.
pub struct ThreadMetrics {
    cpu_seconds: CounterVec,
    wait_seconds: CounterVec,
    switches: IntCounterVec,
    threads: IntGaugeVec,
    state: Mutex<Seen>,
}

/// What the last scrape found.
#[derive(Default)]
struct Seen {
    /// Each live thread's counts.
    counts: HashMap<u64, Counts>,
    /// Every name ever seen, so a name whose threads all exited shows 0.
    groups: HashSet<String>,
}

impl ThreadMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<ThreadMetrics> {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("stead").subsystem("thread");
        let metrics = ThreadMetrics {
            cpu_seconds: CounterVec::new(
                opts("cpu_seconds_total", "CPU time used by the member's threads of this name (user and system)."),
                &["thread"],
            )?,
            wait_seconds: CounterVec::new(
                opts(
                    "runqueue_wait_seconds_total",
                    "Time the member's threads of this name were runnable but waiting for a CPU.",
                ),
                &["thread"],
            )?,
            switches: IntCounterVec::new(
                opts(
                    "context_switches_total",
                    "Context switches of the member's threads of this name: voluntary (it waited) or involuntary (preempted).",
                ),
                &["thread", "kind"],
            )?,
            threads: IntGaugeVec::new(opts("count", "The member's live threads of this name."), &["thread"])?,
            state: Mutex::new(Seen::default()),
        };
        registry.register(Box::new(metrics.cpu_seconds.clone()))?;
        registry.register(Box::new(metrics.wait_seconds.clone()))?;
        registry.register(Box::new(metrics.switches.clone()))?;
        registry.register(Box::new(metrics.threads.clone()))?;
        Ok(metrics)
    }

    /// Reads every thread and moves the metrics on. Blocking (reads `/proc`).
    pub fn refresh(&self) {
        self.apply(read_threads());
    }

    fn apply(&self, samples: Vec<ThreadSample>) {
        let mut seen = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut live: HashMap<u64, Counts> = HashMap::with_capacity(samples.len());
        let mut per_group: HashMap<&str, i64> = HashMap::new();
        for s in &samples {
            let before = seen.counts.get(&s.tid).copied().unwrap_or_default();
            let now = s.counts;
            let g = s.group.as_str();
            self.cpu_seconds.with_label_values(&[g]).inc_by((now.cpu_seconds - before.cpu_seconds).max(0.0));
            self.wait_seconds.with_label_values(&[g]).inc_by((now.wait_seconds - before.wait_seconds).max(0.0));
            self.switches
                .with_label_values(&[g, "voluntary"])
                .inc_by(now.voluntary_switches.saturating_sub(before.voluntary_switches));
            self.switches
                .with_label_values(&[g, "involuntary"])
                .inc_by(now.involuntary_switches.saturating_sub(before.involuntary_switches));
            *per_group.entry(g).or_default() += 1;
            live.insert(s.tid, now);
        }
        for g in &seen.groups {
            if !per_group.contains_key(g.as_str()) {
                self.threads.with_label_values(&[g.as_str()]).set(0);
            }
        }
        for (g, n) in per_group {
            self.threads.with_label_values(&[g]).set(n);
            seen.groups.insert(g.to_string());
        }
        seen.counts = live;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_threads_share_a_group() {
        assert_eq!(group_of("sled-io-3"), "sled-io");
        assert_eq!(group_of("stead-raft"), "stead-raft");
        assert_eq!(group_of("actix-rt|system"), "actix-rt|system");
        assert_eq!(group_of("-7"), "-7");
        assert_eq!(group_of("a-"), "a-");
    }

    #[test]
    fn proc_lines_parse() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 99";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_schedstat_seconds("198832216 24494127 885\n"), Some((0.198832216, 0.024494127)));
        assert_eq!(parse_schedstat_seconds("198832216\n"), None);
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t813\nnonvoluntary_ctxt_switches:\t72\n";
        assert_eq!(parse_status_switches(status), (813, 72));
        assert_eq!(parse_stat_cpu_seconds("garbage"), None);
    }

    fn counter(metrics: &ThreadMetrics, group: &str) -> (f64, u64) {
        let cpu = metrics.cpu_seconds.with_label_values(&[group]).get();
        let switches = metrics.switches.with_label_values(&[group, "voluntary"]).get();
        (cpu, switches)
    }

    #[test]
    fn counters_grow_by_what_live_threads_did_and_never_shrink() {
        let metrics = ThreadMetrics::new(&Registry::new()).expect("metrics");
        let sample = |tid, group: &str, cpu, switches| ThreadSample {
            tid,
            group: group.to_string(),
            counts: Counts { cpu_seconds: cpu, voluntary_switches: switches, ..Counts::default() },
        };
        metrics.apply(vec![sample(1, "pool", 1.0, 10), sample(2, "pool", 2.0, 20)]);
        assert_eq!(counter(&metrics, "pool"), (3.0, 30));
        // Thread 2 exits; thread 1 works on; thread 3 starts.
        metrics.apply(vec![sample(1, "pool", 1.5, 12), sample(3, "pool", 0.25, 1)]);
        assert_eq!(counter(&metrics, "pool"), (3.75, 33));
        assert_eq!(metrics.threads.with_label_values(&["pool"]).get(), 2);
        metrics.apply(Vec::new());
        assert_eq!(counter(&metrics, "pool"), (3.75, 33));
        assert_eq!(metrics.threads.with_label_values(&["pool"]).get(), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_named_thread_is_read_under_its_name() {
        let metrics = ThreadMetrics::new(&Registry::new()).expect("metrics");
        let worker = std::thread::spawn(move || {
            name_current_thread("stead-test-7");
            // Work until the kernel has counted some CPU time for this thread;
            // bounded, for a machine too busy to give it any.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut x = 0u64;
            loop {
                for _ in 0..1_000_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                metrics.refresh();
                let counted = metrics.cpu_seconds.with_label_values(&["stead-test"]).get() > 0.0;
                if counted || std::time::Instant::now() > deadline {
                    return metrics;
                }
            }
        });
        let metrics = worker.join().expect("worker");
        assert_eq!(metrics.threads.with_label_values(&["stead-test"]).get(), 1);
        assert!(metrics.cpu_seconds.with_label_values(&["stead-test"]).get() > 0.0);
    }
}
