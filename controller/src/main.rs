//! The `swarm-operator` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use swarm_operator::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    swarm_operator::allocator::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
        .block_on(run_cli())
}

async fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match cli::execute(cli.command, cli.context.as_deref()).await {
        Ok(code) => code,
        Err(error) => {
            // anyhow prints the error with every cause it wraps, `context: cause: …`.
            eprintln!("error: {:#}", anyhow::Error::from(error));
            ExitCode::from(2)
        }
    }
}

fn init_logging(json: bool) {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // bollard logs request bodies (env values) at debug: no RUST_LOG may enable that, so a
    // second filter drops such events whatever the first one lets through.
    let filter = filter.and(tracing_subscriber::filter::filter_fn(|meta| {
        swarm_operator::redact::may_log(meta.target(), meta.level())
    }));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        let layer = layer.json().with_filter(filter);
        tracing_subscriber::registry().with(layer).init();
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init();
    }
}
