//! `ingot load`: a device simulator / load generator for a running Ingot.
//!
//! `ingot load mqtt` provisions N devices through the HTTP API, opens one MQTT 3.1.1
//! connection per device (rumqttc) and either publishes QoS 1 readings
//! `{"seq": k, "temperature": x}` — at a fixed total rate or as fast as the server
//! acknowledges them — for a bounded time, or (`--idle`) just holds the connections.
//! It then checks that every acknowledged reading is queryable in history and reports
//! end-to-end messages/s, publish→PUBACK latency, sampled publish→visible latency and,
//! given `--server-pid`, the server's memory and CPU. See [`mqtt`] for the method.
//!
//! Loopback only and bounded in devices and time: it is a benchmark tool, not a way to
//! load someone else's server.

pub mod agent;
pub mod agents;
mod api;
pub mod collector;
pub mod fakeiot;
pub mod http_load;
pub mod mqtt;
pub mod pacing;
mod procfs;
pub mod report;
pub mod streams;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Most devices (and connections) one run may use.
pub const MAX_DEVICES: usize = 50_000;
/// Longest publishing (or holding) phase.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// `ingot load …`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub command: LoadCommand,
}

#[derive(Subcommand, Debug)]
pub enum LoadCommand {
    /// MQTT devices publishing QoS 1 readings (or holding idle connections); reports
    /// messages/s end to end, PUBACK and history-visibility latency.
    Mqtt(MqttArgs),
    /// HTTP users sending one request over and over (here, or spread over `ingot agent`s
    /// with --agents); requests/s, errors, latency percentiles.
    Http(http_load::HttpArgs),
    /// Real-time fan-out: N WebSocket (kafka-ws) or SSE subscribers of one device that
    /// publishes at a fixed rate; deliveries/s, publish→delivery latency, server memory
    /// per subscriber.
    Streams(streams::StreamsArgs),
    /// fakeiot's client (seed 000): `test` (compliance), `run` (traffic), `bench`
    /// (POST /metrics throughput and latency).
    Fakeiot(fakeiot::FakeiotArgs),
}

/// Which Ingot a load runs against, and as whom.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Base URL of Ingot's HTTP API (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub http: String,
    /// Ingot's MQTT address, host:port (loopback only); several, separated by commas (the
    /// nodes of a cluster), take the connections in turn.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: String,
    /// User that provisions the devices.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// That user's password (not needed with --plain-broker).
    #[arg(long, env = "INGOT_LOAD_PASSWORD", default_value = "", hide_default_value = true)]
    pub password: String,
    /// The user's tenant (the MQTT username is `tenant:device`).
    #[arg(long, default_value = "admin")]
    pub tenant: String,
}

impl Target {
    /// The MQTT addresses, checked to be loopback.
    pub(crate) fn mqtt_addrs(&self) -> Result<Vec<SocketAddr>, LoadError> {
        self.mqtt.split(',').map(|a| loopback_addr("MQTT", a.trim())).collect()
    }

    /// The MQTT addresses and the HTTP API's, checked to be loopback.
    pub(crate) fn addrs(&self) -> Result<(Vec<SocketAddr>, SocketAddr), LoadError> {
        let mqtt = self.mqtt_addrs()?;
        let hostport = self
            .http
            .strip_prefix("http://")
            .ok_or_else(|| LoadError::Args("--http must start with http://".into()))?
            .trim_end_matches('/');
        let http = loopback_addr("HTTP", hostport.split('/').next().unwrap_or(hostport))?;
        Ok((mqtt, http))
    }
}

/// Settings of `ingot load mqtt`.
#[derive(Args, Debug, Clone)]
pub struct MqttArgs {
    #[command(flatten)]
    pub target: Target,
    /// Devices to create, one MQTT connection each.
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Total publish rate in messages/s over all connections; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// How long to publish (or, with --idle, to hold the connections): 500ms, 15s, 2m.
    #[arg(long, default_value = "10s", value_parser = pacing::parse_duration)]
    pub duration: Duration,
    /// Only open the connections and hold them (memory per idle connection).
    #[arg(long)]
    pub idle: bool,
    /// MQTT over mutual TLS: `--mqtt` is the MQTTS port, this is the CA certificate to
    /// trust (`<data-dir>/tls/ca.pem`), and every device gets a certificate of its own
    /// (`POST /x509/v1/certificates`) instead of a secret.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: sign every device's CSR with this private key (PEM, e.g. an RSA-2048
    /// key from openssl) instead of a new ECDSA P-256 key per device.
    #[arg(long, requires = "tls_ca")]
    pub tls_key_pem: Option<PathBuf>,
    /// Unacknowledged QoS 1 publishes per connection.
    #[arg(long, default_value_t = 4)]
    pub inflight: u16,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// MQTT keep-alive.
    #[arg(long, default_value = "60s", value_parser = pacing::parse_duration)]
    pub keep_alive: Duration,
    /// One publish→visible-in-history sample is taken at most this often (0 = none).
    #[arg(long, default_value = "20ms", value_parser = pacing::parse_duration)]
    pub sample_interval: Duration,
    /// How long to wait for outstanding PUBACKs, and then for history, after publishing.
    #[arg(long, default_value = "60s", value_parser = pacing::parse_duration)]
    pub drain_timeout: Duration,
    /// Process id of the server (same machine): its RSS and CPU time are sampled; several,
    /// separated by commas (the nodes of a cluster), are added up.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Name of this run in the report and the summary row.
    #[arg(long, default_value = "mqtt")]
    pub label: String,
    /// Append the result as one Markdown table row to this file (header first if it is empty).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Spread the devices over these `ingot agent`s (`host:port`, comma-separated): each
    /// connects and publishes its share, this command provisions, checks history and
    /// merges their measurements (histograms exactly). Not with --idle or --tls-ca.
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<String>,
    /// The agents' token (`ingot agent --token`).
    #[arg(long, env = "INGOT_AGENT_TOKEN")]
    pub agent_token: Option<String>,
    /// `--mqtt` is a plain MQTT broker (e.g. Mosquitto, to compare with): no API, no
    /// devices provisioned, no credentials, no history to check; the same connections
    /// and publishes, measured up to their PUBACKs.
    #[arg(long, conflicts_with_all = ["tls_ca", "agents"])]
    pub plain_broker: bool,
}

impl MqttArgs {
    /// The MQTT addresses, checked to be loopback.
    pub(crate) fn mqtt_addrs(&self) -> Result<Vec<SocketAddr>, LoadError> {
        self.target.mqtt_addrs()
    }
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("HTTP request ({context}) failed: {source}")]
    Http { context: String, source: reqwest::Error },
    #[error("{context}: HTTP {status}: {body}")]
    Api { context: String, status: u16, body: String },
    #[error("no MQTT connection could be opened (first error: {0})")]
    NoConnection(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A fakeiot check or run failed (fakeiot exits with 255 then).
    #[error("check failed: {0}")]
    Check(String),
}

/// Runs one `ingot load` command to completion.
pub async fn run(args: LoadArgs) -> Result<(), LoadError> {
    match args.command {
        LoadCommand::Mqtt(args) => mqtt::run(args).await,
        LoadCommand::Http(args) => http_load::run(args).await,
        LoadCommand::Fakeiot(args) => fakeiot::run(args).await,
        LoadCommand::Streams(args) => streams::run(args).await,
    }
}

/// Resolves `host:port` and insists on a loopback address.
pub(crate) fn loopback_addr(what: &str, addr: &str) -> Result<SocketAddr, LoadError> {
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| LoadError::Args(format!("{what} address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| LoadError::Args(format!("{what} address {addr:?} resolves to nothing")))?;
    if !resolved.ip().is_loopback() {
        return Err(LoadError::Args(format!(
            "{what} address {addr} is not loopback: ingot load runs on loopback only"
        )));
    }
    Ok(resolved)
}

impl MqttArgs {
    /// Checks bounds and the loopback rule; returns the MQTT and HTTP socket addresses.
    pub(crate) fn validate(&self) -> Result<(Vec<SocketAddr>, SocketAddr), LoadError> {
        if self.devices == 0 || self.devices > MAX_DEVICES {
            return Err(LoadError::Args(format!("--devices must be between 1 and {MAX_DEVICES}")));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LoadError::Args("--duration must be between 1ms and 1h".into()));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(LoadError::Args("--rate must be 0 (unlimited) or positive".into()));
        }
        if self.inflight == 0 || self.connect_concurrency == 0 {
            return Err(LoadError::Args("--inflight and --connect-concurrency must be at least 1".into()));
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return Err(LoadError::Args("--keep-alive must be 0 or at least 1s".into()));
        }
        self.target.addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback_addr("MQTT", "127.0.0.1:1883").is_ok());
        assert!(loopback_addr("MQTT", "[::1]:1883").is_ok());
        assert!(matches!(loopback_addr("MQTT", "192.0.2.1:1883"), Err(LoadError::Args(_))));
    }
}
