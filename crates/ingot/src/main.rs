//! `ingot`: the command line. Each subcommand wires services together and runs them;
//! no logic lives here.

use clap::{Parser, Subcommand};

/// Ingot: an IoT platform in one binary.
#[derive(Parser)]
#[command(name = "ingot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Foo protocol proxy: relays Foo clients to a Foo server and reports message stats.
    Proxy(proxy::ProxyArgs),
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("INGOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr so that stdout stays free for command output (e.g. proxy stats).
    fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Proxy(args) => proxy::run(args).await.map_err(anyhow::Error::from),
        }
    })
}
