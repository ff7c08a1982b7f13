//! `telehealth pki`: the development PKI.

use std::process::ExitCode;

use clap::Subcommand;
use telehealth_kit::{
    Part, Settings,
    pki::{DevPki, LEAF_DAYS, LeafKind, Validity},
    token::thumbprint_of_pem_file,
};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the dev CAs, the gateway's server certificate, every part's internal certificate
    /// and the sample devices' client certificates (missing files only).
    Init,
    /// Revoke a device's certificate: rewrites the client-facing CA's CRL (`pki/ca-crl.pem`),
    /// which a running gateway picks up within its reload interval (or on SIGHUP).
    Revoke {
        /// Device name, as given to `pki issue device`.
        device: String,
    },
    /// Issue (or re-issue) one certificate.
    Issue {
        #[command(subcommand)]
        kind: IssueKind,
        /// Validity in days.
        #[arg(long, default_value_t = LEAF_DAYS, global = true)]
        days: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssueKind {
    /// A device's client certificate (signed by the client-facing CA).
    Device {
        /// Device name: a-z, 0-9 and '-' (e.g. `nurse-tablet-2`).
        name: String,
    },
    /// A part's internal certificate (signed by the internal CA).
    Internal {
        part: Part,
        /// Extra DNS names (e.g. the Kubernetes service name).
        #[arg(long)]
        dns: Vec<String>,
    },
    /// The gateway's server certificate.
    GatewayServer {
        /// Extra DNS names clients use to reach the gateway.
        #[arg(long)]
        dns: Vec<String>,
    },
}

pub fn run(command: PkiCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let pki = DevPki::new(settings.pki_dir());
    match command {
        PkiCommand::Init => {
            let created = pki.ensure()?;
            if created.is_empty() {
                println!(
                    "dev PKI in {} is complete; nothing created",
                    pki.dir().display()
                );
            }
            for file in created {
                println!("created {}", file.display());
            }
        }
        PkiCommand::Revoke { device } => {
            let crl = pki.revoke_device(&device)?;
            println!("revoked {device}; CRL {}", crl.display());
        }
        PkiCommand::Issue { kind, days } => {
            anyhow::ensure!(
                (1..=3650).contains(&days),
                "--days must be between 1 and 3650"
            );
            let kind = match kind {
                IssueKind::Device { name } => LeafKind::Device { name },
                IssueKind::Internal { part, dns } => LeafKind::Internal { part, dns },
                IssueKind::GatewayServer { dns } => LeafKind::GatewayServer { dns },
            };
            let files = pki.issue(&kind, Validity::days(days))?;
            println!("certificate {}", files.cert.display());
            println!("key         {}", files.key.display());
            println!("x5t#S256    {}", thumbprint_of_pem_file(&files.cert)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
