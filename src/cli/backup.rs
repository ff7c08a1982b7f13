//! `telehealth backup`, `telehealth restore` and `telehealth verify`.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use telehealth_kit::Settings;

use crate::backup;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// New folder to write the backup into (it must not exist).
    pub destination: PathBuf,
    /// Also copy the keys sealing patients' identities and sign-in keys, the PKI and the token
    /// signer. Without it, keep a copy of those apart: a backup holding them is as secret as
    /// they are.
    #[arg(long)]
    pub include_secrets: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Folder of a backup taken by `telehealth backup`.
    pub source: PathBuf,
    /// Move the data in place aside (into `<data_dir>/replaced-<time>`) and restore over it.
    #[arg(long)]
    pub replace: bool,
}

fn progress(line: &str) {
    eprintln!("{line}");
}

pub async fn take(args: BackupArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let manifest =
        backup::take(settings, &args.destination, args.include_secrets, progress).await?;
    let bytes: u64 = manifest.files.values().map(|f| f.size).sum();
    println!(
        "backup written to {}: {} files, {bytes} bytes, taken at {}",
        args.destination.display(),
        manifest.files.len(),
        manifest.taken_at
    );
    if !args.include_secrets {
        println!(
            "the keys are not in it: keep {} and {} (and the PKI) apart, they are needed to restore",
            settings.patient_key_file().display(),
            settings.auth_key_file().display()
        );
    }
    if manifest.is_intact() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("the copied data failed its checks (above): the backup is kept, look into it");
        Ok(ExitCode::FAILURE)
    }
}

pub async fn restore(args: RestoreArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let report = backup::restore(settings, &args.source, args.replace, progress).await?;
    println!(
        "restored {} files ({} bytes) into {}",
        report.files,
        report.bytes,
        settings.data_dir.display()
    );
    if let Some(aside) = &report.moved_aside {
        println!("the data it replaced is in {}", aside.display());
    }
    for key in &report.missing_secrets {
        println!(
            "MISSING {}: put the key file kept apart back before starting (a start without it \
             would create a new key, and the restored identities would stay unreadable)",
            key.display()
        );
    }
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn verify(settings: &Settings) -> anyhow::Result<ExitCode> {
    let checks = backup::check_services(settings, &settings.data_dir, &settings.blob_dir()).await?;
    for checked in &checks {
        println!("{}", checked.summary());
        for problem in &checked.image_problems {
            println!("  {problem}");
        }
    }
    Ok(if checks.iter().all(backup::PartCheck::is_intact) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
