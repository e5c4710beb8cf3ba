//! The progress line on stderr, drawn only when stderr is a terminal (so logs and
//! `--json` pipes stay clean). It reads the run's counters; it never changes them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::stats::Tally;

const REDRAW_EVERY: Duration = Duration::from_millis(200);
const BAR_WIDTH: usize = 40;

/// A running progress line; `finish` (or drop) clears it.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `[#####     ] done/total` for the counts given.
pub fn bar(finished: u64, total: u64) -> String {
    let filled = if total == 0 { BAR_WIDTH } else { ((finished.min(total) as u128 * BAR_WIDTH as u128) / total as u128) as usize };
    format!("[{}{}] {finished}/{total}", "#".repeat(filled), " ".repeat(BAR_WIDTH - filled))
}

impl Progress {
    /// Starts drawing `tally`'s finished operations (done + errors) against `total`.
    pub fn start(tally: Arc<Tally>, total: u64) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let finished = tally.done.load(Ordering::Relaxed) + tally.errors.load(Ordering::Relaxed);
                    eprint!("\r{}", bar(finished, total));
                    let _ = std::io::stderr().flush();
                    std::thread::sleep(REDRAW_EVERY);
                }
                eprint!("\r{}\r", " ".repeat(BAR_WIDTH + 30));
            })
        });
        Progress { stop, thread }
    }

    pub fn finish(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion() {
        assert_eq!(bar(0, 10), format!("[{}] 0/10", " ".repeat(40)));
        assert_eq!(bar(5, 10), format!("[{}{}] 5/10", "#".repeat(20), " ".repeat(20)));
        assert_eq!(bar(12, 10), format!("[{}] 12/10", "#".repeat(40)));
        assert_eq!(bar(0, 0), format!("[{}] 0/0", "#".repeat(40)));
    }
}
