//! `steadctl`: etcdctl-compatible command line client for stead (see `stead::ctl`).

fn main() {
    std::process::exit(stead::ctl::run(std::env::args_os()));
}
