//! `stead-bench`: a load generator for etcd-compatible servers, in the manner of
//! etcd's `benchmark` tool. It speaks etcd's JSON gateway, so the same run measures
//! stead and etcd alike. Today: `put` and `range`; more arrive with the
//! observability issue.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "stead-bench", about = "Load generator for etcd-compatible servers (JSON gateway)")]
struct Cli {
    /// Gateway endpoints (host:port or http://host:port), comma-separated; clients
    /// are spread over them.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrent clients (each with its own keep-alive connection).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Print one JSON line with the summary instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Puts of `--val-size` byte values to keys from a key space.
    Put {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Distinct keys written (keys cycle through them).
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Keys in order rather than spread.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Ranges over one key (written first if missing).
    Range {
        key: String,
        /// l: linearizable (ReadIndex), s: serializable (local).
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Consistency {
    L,
    S,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base_url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") { endpoint.trim_end_matches('/').to_string() } else { format!("http://{endpoint}") }
}

/// The request body for the `i`-th request of a run.
fn body_for(cmd: &Command, i: u64) -> (String, &'static str) {
    match cmd {
        Command::Put { key_size, val_size, key_space_size, sequential_keys } => {
            let n = if *sequential_keys { i % key_space_size } else { i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % key_space_size };
            let mut key = format!("{n:0width$}", width = *key_size).into_bytes();
            key.truncate((*key_size).max(1));
            let value = vec![b'v'; *val_size];
            (format!(r#"{{"key":"{}","value":"{}"}}"#, b64(&key), b64(&value)), "/v3/kv/put")
        }
        Command::Range { key, consistency } => {
            let serializable = matches!(consistency, Consistency::S);
            (format!(r#"{{"key":"{}","serializable":{serializable}}}"#, b64(key.as_bytes())), "/v3/kv/range")
        }
    }
}

struct Summary {
    total: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn run(cli: &Cli) -> Summary {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let latencies: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cli.clients.max(1))
            .map(|c| {
                let url = base_url(&cli.endpoints[c % cli.endpoints.len()]);
                let (next, errors, first_error) = (next.clone(), errors.clone(), first_error.clone());
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= cli.total {
                            break lat;
                        }
                        let (body, path) = body_for(&cli.command, i);
                        let t = Instant::now();
                        let ok = match agent.post(&format!("{url}{path}")).content_type("application/json").send(&body) {
                            Ok(mut resp) => {
                                let status = resp.status().as_u16();
                                let text = resp.body_mut().read_to_string().unwrap_or_default();
                                if status != 200 {
                                    first_error.lock().map(|mut e| e.get_or_insert(format!("HTTP {status}: {text}")).clone()).ok();
                                }
                                status == 200
                            }
                            Err(e) => {
                                first_error.lock().map(|mut f| f.get_or_insert(e.to_string()).clone()).ok();
                                false
                            }
                        };
                        if ok {
                            lat.push(t.elapsed().as_micros() as u64);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = started.elapsed();
    if let Ok(Some(e)) = first_error.lock().map(|e| e.clone()) {
        eprintln!("stead-bench: first error: {e}");
    }
    let mut latencies_us = latencies;
    latencies_us.sort_unstable();
    Summary { total: cli.total, errors: errors.load(Ordering::Relaxed), elapsed, latencies_us }
}

fn main() {
    let cli = Cli::parse();
    if let Command::Range { key, .. } = &cli.command {
        // Make sure the key exists, so a range reads something.
        let url = base_url(&cli.endpoints[0]);
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key.as_bytes()), b64(b"bench"));
        if let Err(e) = ureq::post(&format!("{url}/v3/kv/put")).content_type("application/json").send(&body) {
            eprintln!("stead-bench: cannot write the range key: {e}");
            std::process::exit(1);
        }
    }
    let s = run(&cli);
    let ok = s.latencies_us.len() as f64;
    let throughput = ok / s.elapsed.as_secs_f64();
    let l = &s.latencies_us;
    let avg = if l.is_empty() { 0.0 } else { l.iter().sum::<u64>() as f64 / ok / 1000.0 };
    let (p50, p90, p99) = (percentile(l, 0.50), percentile(l, 0.90), percentile(l, 0.99));
    let max = l.last().copied().unwrap_or(0) as f64 / 1000.0;
    let mut out = std::io::stdout().lock();
    if cli.json {
        let _ = writeln!(
            out,
            r#"{{"total":{},"errors":{},"seconds":{:.3},"requests_per_second":{:.1},"avg_ms":{:.3},"p50_ms":{:.3},"p90_ms":{:.3},"p99_ms":{:.3},"max_ms":{:.3}}}"#,
            s.total, s.errors, s.elapsed.as_secs_f64(), throughput, avg, p50, p90, p99, max
        );
    } else {
        let _ = writeln!(out, "Summary:\n  Total:\t{:.4} secs.\n  Requests/sec:\t{:.1}\n  Errors:\t{}", s.elapsed.as_secs_f64(), throughput, s.errors);
        let _ = writeln!(out, "Latency (ms): avg {avg:.3}  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  max {max:.3}");
    }
    if s.errors > 0 {
        std::process::exit(1);
    }
}
