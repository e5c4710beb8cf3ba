//! The stead server: `stead` with no arguments runs a single member on
//! 127.0.0.1:2379 (clients) / :2380 (peers), data in `./default.stead`.

use std::process::ExitCode;

use stead::config::{self, LoadError, LogFormat};

fn main() -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let settings = match config::load_from(std::env::args_os(), &env) {
        Ok((_, Some(settings))) => settings,
        Ok((_, None)) => {
            print!("{}", stead::node::version_text());
            return ExitCode::SUCCESS;
        }
        Err(LoadError::Usage(e)) => {
            // clap prints --help to stdout (exit 0) and usage errors to stderr (2).
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
        Err(LoadError::Config(e)) => {
            eprintln!("stead: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log_level, settings.log_format);
    // Fail-stop: a broken invariant or storage fault anywhere stops the whole
    // process; it is never carried on in a state it cannot trust.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!("stopping: {info}");
        std::process::exit(70);
    }));
    match stead::node::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("stead: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},actix_server=warn,actix_web=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
