//! `ingot cert`: device certificates from a running Ingot (dojot's certreq), and a CA
//! and server certificate for users who bring their own PKI. The work is in `pki::tool`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Keys and certificates for devices, as dojot's certreq: ./cert_<id>/{private.key,
    /// cert.pem} and ./ca/ca.pem. The keys are made here and never leave this machine.
    Request(RequestArgs),
    /// A new CA in DIR (ca.pem, ca.key), for users who bring their own PKI.
    Ca {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// A server certificate (server.pem, server.key) from the CA in --ca-dir, for
    /// `ingot serve --tls-cert/--tls-key`.
    Server {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Host names and addresses it is for (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        name: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct RequestArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://localhost:8000")]
    url: String,
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, env = "INGOT_CERT_PASSWORD")]
    password: String,
    /// The device (repeatable).
    #[arg(long, required_unless_present = "all")]
    device: Vec<String>,
    /// Every device of the user's tenant.
    #[arg(long)]
    all: bool,
    /// Where to write ./ca and ./cert_<id>.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// For an https:// URL: the CA certificate to trust (Ingot's `<data-dir>/tls/ca.pem`).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// Devices certified at once.
const CONCURRENCY: usize = 8;

pub async fn run(args: CertArgs) -> anyhow::Result<()> {
    match args.command {
        CertCommand::Request(a) => request(a).await,
        CertCommand::Ca { out } => {
            pki::tool::make_ca(&out)?;
            println!("wrote {0}/ca.pem and {0}/ca.key (keep ca.key secret)", out.display());
            Ok(())
        }
        CertCommand::Server { ca_dir, out, name } => {
            pki::tool::make_server(&ca_dir, &out, &name)?;
            println!("wrote {0}/server.pem and {0}/server.key for {1}", out.display(), name.join(", "));
            Ok(())
        }
    }
}

async fn request(a: RequestArgs) -> anyhow::Result<()> {
    let ca_pem = match &a.ca_cert {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read --ca-cert {}", p.display()))?),
        None => None,
    };
    let client = pki::tool::CertClient::login(&a.url, &a.user, &a.password, ca_pem.as_deref())
        .await
        .with_context(|| format!("cannot log in to {} as {} (check --url, --user and the password)", a.url, a.user))?;
    let devices = if a.all { client.device_ids().await? } else { a.device };
    let ca = client.save_ca(&a.out).await?;
    println!("CA certificate: {}", ca.display());
    let bar = ProgressBar::new(devices.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} devices {msg}").expect("template"));
    let client = std::sync::Arc::new(client);
    let mut failed = 0;
    for chunk in devices.chunks(CONCURRENCY) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|d| {
                let (client, d, out) = (client.clone(), d.clone(), a.out.clone());
                tokio::spawn(async move { (client.request(&d, &out).await, d) })
            })
            .collect();
        for t in tasks {
            let (result, device) = t.await?;
            match result {
                Ok(fp) => bar.println(format!("{device}: cert_{device}/cert.pem ({fp})")),
                Err(e) => {
                    failed += 1;
                    bar.println(format!("{device}: FAILED: {e}"));
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(failed == 0, "{failed} of {} devices got no certificate (see above)", devices.len());
    Ok(())
}
