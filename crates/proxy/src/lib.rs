//! `ingot proxy`: a transparent proxy for the Foo protocol (seed 001).
//!
//! Foo clients connect to `--listen`; each connection is relayed byte for byte to the Foo
//! server at `--forward`. On the way the proxy counts the messages (REQ, ACK, NAK and
//! malformed lines, see [`frame`]) and reports them as JSON on SIGUSR2 (stdout) and over
//! HTTP (`--http`), with the counters saved every second to `--recovery-path` so that a
//! restart continues where the crash left off.
//!
//! Modules, bottom up: [`frame`] (classify one line), [`scanner`] (find lines in a
//! stream), [`stats`] (totals and the sliding window), [`recovery`] (the state file),
//! [`relay`] (one connection), [`workers`] (connection threads), [`http`] (reporting
//! endpoints); this file wires them up.
//!
//! Crate choices: tokio for I/O and signals, axum 0.8 for HTTP (the project's choice),
//! serde_json with a struct to keep the report's key order, memchr to find newlines fast.

pub mod frame;
pub mod http;
pub mod recovery;
pub mod relay;
pub mod scanner;
pub mod stats;
pub mod workers;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

use crate::relay::{RelayConfig, RelayError};
use crate::stats::{Counters, Stats, unix_now};
use crate::workers::Workers;

/// How long to wait for the Foo server to accept a connection.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client refused for lack of a backend may take to notice the close.
const REFUSED_CLIENT_LINGER: Duration = Duration::from_secs(1);
/// A half-closed connection whose other direction stays silent this long is closed.
const HALF_CLOSED_IDLE: Duration = Duration::from_secs(60);
/// Pause after an accept error such as "too many open files", so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How often the counters are written to the recovery file.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Options of `ingot proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Address Foo clients connect to; `:PORT` means every interface.
    #[arg(long, env = "INGOT_PROXY_LISTEN", default_value = ":8002")]
    pub listen: String,
    /// Address of the Foo server; `:PORT` means this host.
    #[arg(long, env = "INGOT_PROXY_FORWARD", default_value = "localhost:8001")]
    pub forward: String,
    /// Address of the HTTP server for /stats, /metrics and health checks.
    #[arg(long, env = "INGOT_PROXY_HTTP", default_value = "0.0.0.0:8088")]
    pub http: String,
    /// File the counters are saved to every second and restored from at start.
    #[arg(long, env = "INGOT_PROXY_RECOVERY_PATH", default_value = ".data/recovery.json")]
    pub recovery_path: PathBuf,
    /// Longest line accepted in either direction; a longer one closes that connection.
    #[arg(long, env = "INGOT_PROXY_MAX_LINE_BYTES", default_value_t = 64 * 1024)]
    pub max_line_bytes: usize,
}

/// Everything that stops the proxy from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid option: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("recovery directory {path}: {source}")]
    RecoveryDir { path: PathBuf, source: io::Error },
    #[error("cannot install signal handler: {0}")]
    Signal(io::Error),
    #[error("cannot start connection workers: {0}")]
    Workers(io::Error),
    #[error("HTTP server: {0}")]
    Http(io::Error),
}

/// Runs the proxy until SIGTERM or SIGINT, then saves the counters one last time.
pub async fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    if args.max_line_bytes == 0 {
        return Err(ProxyError::Config("--max-line-bytes must be at least 1".into()));
    }
    // Signal handlers first: SIGUSR2's default action would kill the process.
    let usr2 = signal(SignalKind::user_defined2()).map_err(ProxyError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;

    let stats = Arc::new(Stats::with_counters(restore_counters(&args.recovery_path)?));

    let listener = bind(&args.listen).await?;
    let http_listener = bind(&args.http).await?;
    let listen_addr = local_addr(&listener, &args.listen)?;
    let http_addr = local_addr(&http_listener, &args.http)?;
    let forward = Arc::<str>::from(with_default_host(&args.forward, "127.0.0.1"));

    let router = http::router(Arc::clone(&stats));
    let mut http_task = tokio::spawn(async move { axum::serve(http_listener, router).await });
    let (stop_saver, saver_stopped) = tokio::sync::oneshot::channel();
    let saver = tokio::spawn(save_until_stopped(Arc::clone(&stats), args.recovery_path.clone(), saver_stopped));
    let reporter = tokio::spawn(report_on_sigusr2(Arc::clone(&stats), usr2));
    // Tests and scripts read the bound addresses from this line (ports may be 0).
    info!(listen = %listen_addr, http = %http_addr, forward = %forward, "foo proxy ready");

    let config = RelayConfig { max_line_bytes: args.max_line_bytes, half_closed_idle: HALF_CLOSED_IDLE };
    let worker_stats = Arc::clone(&stats);
    let workers = Workers::start(worker_count(), move |client, peer| {
        serve_client(client, peer, Arc::clone(&forward), config, Arc::clone(&worker_stats))
    })
    .map_err(ProxyError::Workers)?;
    let outcome = tokio::select! {
        () = accept_loop(listener, &workers) => Ok(()),
        _ = term.recv() => { info!("SIGTERM received, stopping"); Ok(()) }
        _ = interrupt.recv() => { info!("SIGINT received, stopping"); Ok(()) }
        http = &mut http_task => Err(ProxyError::Http(match http {
            Ok(Err(e)) => e,
            Ok(Ok(())) => io::Error::other("stopped"),
            Err(join) => io::Error::other(join),
        })),
    };

    reporter.abort();
    http_task.abort();
    // Not `abort`: a save in flight runs on a blocking thread that an abort does not stop,
    // and it could land after (and over) the final one. The saver finishes it, then saves
    // the final counters itself.
    let _ = stop_saver.send(());
    if let Err(e) = saver.await {
        warn!(error = %e, "the recovery saver failed; saving the counters directly");
        save_now(&stats, &args.recovery_path).await;
    }
    info!(path = %args.recovery_path.display(), "counters saved, proxy stopped");
    outcome
}

/// One connection worker per core.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Accepts clients forever; each is handed to a connection worker.
async fn accept_loop(listener: TcpListener, workers: &Workers) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => workers.dispatch(client, peer),
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning; the
                // pending connection stays in the backlog until descriptors are free again.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// Counts a connection as active for as long as it lives.
struct ActiveConnection<'a>(&'a Stats);

impl<'a> ActiveConnection<'a> {
    fn open(stats: &'a Stats) -> Self {
        stats.connections.accepted.fetch_add(1, Ordering::Relaxed);
        stats.connections.active.fetch_add(1, Ordering::Relaxed);
        ActiveConnection(stats)
    }
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_client(client: TcpStream, peer: SocketAddr, forward: Arc<str>, config: RelayConfig, stats: Arc<Stats>) {
    let _active = ActiveConnection::open(&stats);
    let server = match tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(&*forward)).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => return refuse_client(client, peer, &forward, &e.to_string(), &stats).await,
        Err(_) => return refuse_client(client, peer, &forward, "connect timed out", &stats).await,
    };
    // Foo messages are small and latency matters more than packet count.
    if let Err(e) = client.set_nodelay(true).and_then(|()| server.set_nodelay(true)) {
        debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    debug!(%peer, "connection opened");
    match relay::relay(client, server, config, &stats).await {
        Ok(summary) => debug!(
            %peer,
            client_to_server_bytes = summary.client_to_server_bytes,
            server_to_client_bytes = summary.server_to_client_bytes,
            "connection closed"
        ),
        Err(e @ RelayError::LineTooLong { .. }) => {
            stats.connections.line_too_long.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, error = %e, "closing connection: line too long");
        }
        Err(e @ RelayError::HalfClosedIdle { .. }) => info!(%peer, error = %e, "closing idle half-closed connection"),
        Err(e) => debug!(%peer, error = %e, "connection ended with an error"),
    }
}

/// The backend is unreachable: close this client cleanly (FIN, not reset) and carry on.
async fn refuse_client(mut client: TcpStream, peer: SocketAddr, forward: &str, reason: &str, stats: &Stats) {
    stats.connections.backend_unavailable.fetch_add(1, Ordering::Relaxed);
    warn!(%peer, %forward, reason, "backend unavailable, closing client connection");
    let _ = client.shutdown().await;
    // Closing a socket with unread input sends a reset, so read (and drop) what the client
    // already sent until it closes too, for a bounded time.
    let _ = tokio::time::timeout(REFUSED_CLIENT_LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Prints the stats as one JSON line on stdout for every SIGUSR2 (signals that arrive
/// while one is being handled are merged by the OS, so a storm costs a few lines).
async fn report_on_sigusr2(stats: Arc<Stats>, mut usr2: tokio::signal::unix::Signal) {
    let mut stdout = tokio::io::stdout();
    while usr2.recv().await.is_some() {
        let mut line = stats.report().to_json();
        line.push('\n');
        if let Err(e) = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.flush().await
        }
        .await
        {
            warn!(error = %e, "cannot write stats to stdout");
        }
    }
}

/// Loads the saved counters, or starts from zero when there are none or they are unreadable.
fn restore_counters(path: &Path) -> Result<Counters, ProxyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ProxyError::RecoveryDir { path: dir.to_owned(), source })?;
    }
    let now = unix_now();
    match recovery::load(path) {
        Ok(Some(snapshot)) => {
            info!(path = %path.display(), age_s = now.saturating_sub(snapshot.saved_at), "counters restored");
            Ok(snapshot.restore(now))
        }
        Ok(None) => Ok(Counters::new(now)),
        Err(e) => {
            match recovery::set_aside(path) {
                Ok(aside) => warn!(error = %e, moved_to = %aside.display(), "starting from zero"),
                Err(move_err) => warn!(error = %e, %move_err, "starting from zero"),
            }
            Ok(Counters::new(now))
        }
    }
}

/// Saves the counters every [`SAVE_INTERVAL`] until told to stop, then once more: the one
/// task that writes the recovery file, so two saves never race on its temporary file.
async fn save_until_stopped(stats: Arc<Stats>, path: PathBuf, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(SAVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        let result = save_blocking(&stats, &path).await;
        // Log a failing disk once, not every second.
        match (&result, failing) {
            (Err(e), false) => warn!(error = %e, "cannot save recovery file"),
            (Ok(()), true) => info!(path = %path.display(), "recovery file saved again"),
            _ => {}
        }
        failing = result.is_err();
    }
    save_now(&stats, &path).await;
}

async fn save_now(stats: &Arc<Stats>, path: &Path) {
    if let Err(e) = save_blocking(stats, path).await {
        warn!(error = %e, "cannot save recovery file");
    }
}

async fn save_blocking(stats: &Arc<Stats>, path: &Path) -> Result<(), String> {
    let snapshot = recovery::Snapshot::of(&stats.counters(), unix_now());
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || recovery::save(&path, &snapshot)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(join) => Err(join.to_string()),
    }
}

/// Connection storms should queue, not be dropped: std's default backlog (128) is small.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: &str) -> Result<TcpListener, ProxyError> {
    let addr = with_default_host(addr, "0.0.0.0");
    let bind_err = |source: io::Error| ProxyError::Bind { addr: addr.clone(), source };
    let mut last_error = io::Error::new(io::ErrorKind::AddrNotAvailable, "address resolves to nothing");
    for socket_addr in tokio::net::lookup_host(&addr).await.map_err(bind_err)? {
        let socket = if socket_addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
        // SO_REUSEADDR lets a restarted proxy bind while old connections sit in TIME_WAIT.
        let listener = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(socket_addr)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match listener {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = e,
        }
    }
    Err(bind_err(last_error))
}

fn local_addr(listener: &TcpListener, addr: &str) -> Result<SocketAddr, ProxyError> {
    listener.local_addr().map_err(|source| ProxyError::Bind { addr: addr.to_owned(), source })
}

/// `:8002` (Go's "every interface" / "this host" form) becomes `HOST:8002`.
fn with_default_host(addr: &str, host: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("{host}:{port}"),
        None => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_only_addresses_get_a_host() {
        assert_eq!(with_default_host(":8002", "0.0.0.0"), "0.0.0.0:8002");
        assert_eq!(with_default_host("localhost:8001", "127.0.0.1"), "localhost:8001");
        assert_eq!(with_default_host("[::1]:8001", "127.0.0.1"), "[::1]:8001");
    }
}
