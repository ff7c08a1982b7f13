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
    /// Seal a device's key and certificate (with the CA) as a PKCS#12 file for a browser or a
    /// phone to import, under a new one-time password printed once (never stored).
    Bundle {
        /// Device name, as given to `pki issue device` (e.g. `doctor-workstation`).
        device: String,
        /// Where to write it (default `pki/devices/<device>.p12`); readable by its owner only.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
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
        PkiCommand::Bundle { device, out } => {
            let files = pki.device_files(&device);
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e} (no device `{device}`: telehealth pki issue device {device})",
                        path.display()
                    )
                })
            };
            let bundle = telehealth_auth::bundle::seal(
                &read(&files.key)?,
                &read(&files.cert)?,
                &read(&pki.ca_file())?,
                &device,
            )?;
            let out = out.unwrap_or_else(|| files.cert.with_extension("p12"));
            telehealth_kit::pki::write_file(&out, &bundle.pkcs12, true)?;
            println!("fichier   {}", out.display());
            println!(
                "mot de passe (à usage unique, affiché une seule fois) : {}",
                bundle.password
            );
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
