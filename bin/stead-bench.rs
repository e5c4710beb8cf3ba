//! `stead-bench`: a load generator for etcd-compatible servers, in the manner of
//! etcd's `benchmark` tool, over gRPC (default) or the JSON gateway. The code
//! lives in `stead::bench`; this only parses flags, runs, prints, and sets the
//! exit code (0: no errors; 1: some requests failed; 2: the run could not start).

use std::io::Write;

use clap::Parser;
use stead::bench::{self, cli::Cli, Outcome};

fn main() {
    let cli = Cli::parse();
    match bench::run(&cli) {
        Ok(Outcome::Summary(summary)) => {
            let text = if cli.load.json { summary.json_line() + "\n" } else { summary.text() };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            if summary.errors > 0 {
                std::process::exit(1);
            }
        }
        Ok(Outcome::Printed) => {}
        Err(e) => {
            eprintln!("stead-bench: {e}");
            std::process::exit(2);
        }
    }
}
