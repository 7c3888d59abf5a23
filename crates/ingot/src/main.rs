//! `ingot`: the command line. Each subcommand wires services together and runs them;
//! no logic lives here.

mod cert;
mod migrate;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the request paths allocate many small, short-lived
/// buffers across threads, where glibc's allocator cost about 13% of the server's CPU in a
/// profile of `POST /metrics` (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas,
/// where a 2 MB page is resident as soon as one of its bytes is: with 10,000 idle MQTT
/// connections, whose state is spread thin over many pages, the server held 295 MB
/// (243 MB of it huge pages) one run and 186 MB without them, the same figures as runs
/// where the kernel happened to hand out none. Full-rate ingest was the same either way
/// (BENCHMARKS.md, issue 16). Before anything else, so that no arena gets them. With
/// `MIMALLOC_ALLOW_THP` set, mimalloc's own option decides instead.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(e) = nix::sys::prctl::set_thp_disable(true)
    {
        eprintln!("ingot: cannot turn transparent huge pages off ({e}); memory use may be higher");
    }
}

/// Ingot: an IoT platform in one binary.
#[derive(Parser)]
#[command(
    name = "ingot",
    version,
    about = "Ingot: an IoT platform in one binary (dojot-compatible API, MQTT, history, seat metering, Foo proxy)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: HTTP(S) API, MQTT device agent, history, console (embedded storage, no external services).
    Serve(Box<serve::ServeArgs>),
    /// Copy an installation's data from its SQLite database into an empty PostgreSQL database, verified.
    Migrate(migrate::MigrateArgs),
    /// Foo protocol proxy: relays Foo clients to a Foo server and reports message stats.
    Proxy(proxy::ProxyArgs),
    /// Load generator / device simulator against a running Ingot (loopback only).
    Load(Box<load::LoadArgs>),
    /// Device certificates from a running Ingot (dojot's certreq), or a CA and server
    /// certificate of your own.
    Cert(cert::CertArgs),
    /// Load-test agent with go-lo's API: upload a load test, queue jobs, results to a collector.
    Agent(load::agent::AgentArgs),
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_env("INGOT_LOG").unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,rustls=error"));
    // Logs go to stderr so that stdout stays free for command output (e.g. proxy stats).
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("INGOT_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

fn main() -> anyhow::Result<()> {
    no_huge_pages();
    let cli = Cli::parse();
    init_logging();
    // Fault injection (the `FAILPOINTS` variable) exists only in test builds, where the
    // end-to-end tests use it to kill the history writer; release builds compile it out.
    let _failpoints = fail::has_failpoints().then(fail::FailScenario::setup);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        // Bounded: the store runs every read and write on this pool, the MQTT agent's too.
        runtime.max_blocking_threads(usize::from(args.blocking_threads));
    }
    let rt = runtime.enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Cert(args) => cert::run(args).await,
            Command::Proxy(args) => proxy::run(args).await.map_err(anyhow::Error::from),
            Command::Agent(args) => load::agent::run(args).await.map_err(anyhow::Error::from),
            Command::Load(args) => match load::run(*args).await {
                // fakeiot's exit code for a failed check.
                Err(load::LoadError::Check(msg)) => {
                    eprintln!("FAIL: {msg}");
                    std::process::exit(255);
                }
                other => Ok(other?),
            },
        }
    })
}
