//! What a run measured: latency samples, successes, and every error (counted, the
//! first few distinct messages kept), and the summary printed from them (text as
//! etcd's benchmark prints it, or one JSON line). No I/O but the final print.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Distinct error messages kept for the summary; later new ones are only counted.
pub const DISTINCT_ERRORS_KEPT: usize = 5;

/// Counters shared by every client of a run.
#[derive(Default)]
pub struct Tally {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    distinct: Mutex<Vec<ErrorCount>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

impl Tally {
    pub fn success(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error; keeps its message if it is one of the first few distinct.
    pub fn error(&self, message: impl Into<String>) {
        self.errors_n(message, 1);
    }

    /// Counts `n` errors with one message (e.g. events that never arrived).
    pub fn errors_n(&self, message: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        self.errors.fetch_add(n, Ordering::Relaxed);
        let message = message.into();
        // A poisoned lock only means another client panicked mid-update; the list
        // is still a list, so keep counting.
        let mut distinct = self.distinct.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = distinct.iter_mut().find(|e| e.message == message) {
            e.count += n;
        } else if distinct.len() < DISTINCT_ERRORS_KEPT {
            distinct.push(ErrorCount { message, count: n });
        }
    }

    pub fn first_errors(&self) -> Vec<ErrorCount> {
        self.distinct.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The summary of one run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub workload: String,
    pub backend: String,
    /// Operations the run set out to do (requests, or events expected for `watch`).
    pub total: u64,
    /// Operations that succeeded (each one latency sample).
    pub done: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Successful operations per second.
    pub requests_per_second: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_errors: Vec<ErrorCount>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The sample at quantile `q` (nearest rank) of ascending samples; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Builds the summary from every client's latency samples (nanoseconds).
    pub fn new(workload: &str, backend: &str, total: u64, mut latencies_ns: Vec<u64>, elapsed: Duration, tally: &Tally) -> Summary {
        latencies_ns.sort_unstable();
        let l = &latencies_ns;
        let done = l.len() as u64;
        let seconds = elapsed.as_secs_f64();
        let avg_ns = if l.is_empty() { 0 } else { (l.iter().map(|x| *x as u128).sum::<u128>() / l.len() as u128) as u64 };
        Summary {
            workload: workload.to_string(),
            backend: backend.to_string(),
            total,
            done,
            errors: tally.errors.load(Ordering::Relaxed),
            seconds,
            requests_per_second: if seconds > 0.0 { done as f64 / seconds } else { 0.0 },
            avg_ms: ms(avg_ns),
            p50_ms: ms(quantile(l, 0.50)),
            p90_ms: ms(quantile(l, 0.90)),
            p99_ms: ms(quantile(l, 0.99)),
            max_ms: ms(l.last().copied().unwrap_or(0)),
            first_errors: tally.first_errors(),
        }
    }

    pub fn json_line(&self) -> String {
        // A struct of numbers and strings always serializes.
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"error":"summary: {e}"}}"#))
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "Summary ({} over {}):\n  Total:\t{:.4} secs.\n  Done:\t{} of {}\n  Errors:\t{}\n  Requests/sec:\t{:.4}\n  Average:\t{:.4} ms\n  \
             Latency percentiles (ms):\n    50%\t{:.4}\n    90%\t{:.4}\n    99%\t{:.4}\n    max\t{:.4}\n",
            self.workload,
            self.backend,
            self.seconds,
            self.done,
            self.total,
            self.errors,
            self.requests_per_second,
            self.avg_ms,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        );
        if !self.first_errors.is_empty() {
            s.push_str("First distinct errors:\n");
            for e in &self.first_errors {
                s.push_str(&format!("  {} x {}\n", e.count, e.message));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.50), 50);
        assert_eq!(quantile(&v, 0.90), 90);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[1, 2], 0.0), 1);
    }

    #[test]
    fn summary_counts_and_converts_to_milliseconds() {
        let tally = Tally::default();
        tally.error("boom");
        let s = Summary::new("put", "grpc", 5, vec![4_000_000, 1_000_000, 3_000_000, 2_000_000], Duration::from_secs(2), &tally);
        assert_eq!((s.total, s.done, s.errors), (5, 4, 1));
        assert_eq!(s.requests_per_second, 2.0);
        assert_eq!(s.avg_ms, 2.5);
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (2.0, 4.0, 4.0, 4.0));
        let v: serde_json::Value = serde_json::from_str(&s.json_line()).unwrap();
        assert_eq!(v["done"], 4);
        assert_eq!(v["first_errors"][0]["message"], "boom");
        assert!(s.text().contains("1 x boom"));
    }

    #[test]
    fn errors_are_all_counted_and_the_first_distinct_kept() {
        let tally = Tally::default();
        for i in 0..20 {
            tally.error(format!("error {}", i % 8));
        }
        tally.errors_n("never arrived", 3);
        tally.errors_n("nothing", 0);
        assert_eq!(tally.errors.load(Ordering::Relaxed), 23);
        let kept = tally.first_errors();
        assert_eq!(kept.len(), DISTINCT_ERRORS_KEPT);
        assert_eq!(kept[0], ErrorCount { message: "error 0".into(), count: 3 });
        assert_eq!(kept[4], ErrorCount { message: "error 4".into(), count: 2 });
    }

    #[test]
    fn an_empty_run_has_zero_figures() {
        let s = Summary::new("range", "gateway", 0, vec![], Duration::ZERO, &Tally::default());
        assert_eq!((s.done, s.requests_per_second, s.p99_ms, s.max_ms), (0, 0.0, 0.0, 0.0));
    }
}
