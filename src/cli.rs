//! The command line: `telehealth up | serve | pki | token | migrate | audit | backup | restore |
//! verify | patients | call | export | health`.

mod admin;
mod auth;
mod backup;
mod call;
mod export;
mod gateway;
mod health;
mod login;
mod patients;
mod pki;
mod token;
mod up;
mod web;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use telehealth_kit::{Part, Settings};

/// One binary for the whole telehealth suite.
#[derive(Debug, Parser)]
#[command(name = "telehealth", version, about, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (also `TELEHEALTH_CONFIG`); `TELEHEALTH_*` variables override it.
    #[arg(long, global = true, env = "TELEHEALTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory (dev PKI, keys, SQLite files, blobs); overrides `data_dir` of the config.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole suite in this process on the embedded defaults (SQLite, local files, dev PKI
    /// and keys created on first start, demo data seeded on first start). Ctrl-C or SIGTERM stops
    /// it cleanly.
    Up {
        /// Start empty: no demo centre, people or patients on first start.
        #[arg(long)]
        no_demo: bool,
        /// Neither build nor serve the web client (web/); `gateway.web_root` still serves a
        /// folder when configured.
        #[arg(long)]
        no_web: bool,
    },
    /// Run one part of the suite (microservice mode), configured by file and environment.
    Serve {
        /// Which part: gateway, scheduling, expertise, wound, signalling, directory or auth.
        part: Part,
    },
    /// Manage the development PKI.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Manage development tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Apply the services' database migrations, then exit.
    Migrate {
        /// Services to migrate (default: all six).
        parts: Vec<Part>,
    },
    /// Sign in with your professional identity (or, under `up`, as a demo member): enrols this
    /// device and keeps its certificate and session for `call` and `export`.
    Login(login::LoginArgs),
    /// End the session of `login` and forget it here.
    Logout(login::LoginFolder),
    /// Call an RPC through the gateway with JSON in and out (like grpcurl).
    Call(call::CallArgs),
    /// Everything the suite holds about one patient, as one archive, for a right-of-access
    /// request (read through the gateway as the calling doctor).
    Export(export::ExportArgs),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// Copy the embedded data (SQLite files, blob folder) while the suite runs, into a new
    /// folder, checked (audit chains, every image's SHA-256).
    Backup(backup::BackupArgs),
    /// Put a backup back into the data directory (suite stopped), then check it.
    Restore(backup::RestoreArgs),
    /// Check every service's audit chain and every stored image against its recorded size and
    /// SHA-256 (any backend: after a restore, or at any time). Exit 1 if anything is broken.
    Verify,
    /// The patient register's encryption keys: create, rotate, re-encrypt.
    #[command(subcommand)]
    Patients(patients::PatientsCommand),
    /// The key file sealing the auth service's token-signing keys: create, rotate.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Ask a local part whether it is SERVING (`grpc.health.v1`) with its own certificates: the
    /// Kubernetes exec probe. Exit 0 if serving, 1 if not, 2 if it cannot be reached.
    Health(health::HealthArgs),
}

impl Cli {
    /// The settings: defaults, config file, environment, then the command-line data directory.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        Ok(settings)
    }
}

/// Runs the parsed command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let settings = cli.settings()?;
    match cli.command {
        Command::Up { no_demo, no_web } => up::run(settings, !no_demo, !no_web).await,
        Command::Serve { part } => {
            let _telemetry = telehealth_kit::telemetry::init(&settings.telemetry, part.name())?;
            crate::suite::serve_part(part, settings).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Pki(command) => pki::run(command, &settings),
        Command::Token(command) => token::run(command, &settings),
        Command::Migrate { parts } => admin::migrate(&settings, parts).await,
        Command::Audit(command) => admin::audit(command, &settings).await,
        Command::Backup(args) => backup::take(args, &settings).await,
        Command::Restore(args) => backup::restore(args, &settings).await,
        Command::Verify => backup::verify(&settings).await,
        Command::Patients(command) => patients::run(command, &settings).await,
        Command::Auth(command) => auth::run(command, &settings),
        Command::Login(args) => login::login(args, &settings).await,
        Command::Logout(folder) => login::logout(folder, &settings).await,
        Command::Call(args) => call::run(args, &settings).await,
        Command::Export(args) => export::run(args, &settings).await,
        Command::Health(args) => health::run(args, &settings).await,
    }
}
