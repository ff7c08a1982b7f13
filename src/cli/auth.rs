//! `telehealth auth`: the key file that seals the auth service's token-signing keys in its
//! database (the signing keys themselves rotate on their own).
//!
//! `init-keys` writes a new key file; `add-key` appends a key that seals the signing keys made
//! from the next start of the auth service on. Older keys still open the signing keys they
//! sealed; those are forgotten within a rotation period (`sign_in.key_rotation_days`), after
//! which an older sealing key may be removed from the file.

use std::process::ExitCode;

use clap::Subcommand;
use telehealth_kit::{Settings, sealed::KeyRing};

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Write a new key file where `[sign_in] key_file` points; refuses to overwrite one.
    InitKeys,
    /// Append a new sealing key to that file; it seals new signing keys once auth restarts.
    AddKey,
}

pub fn run(command: AuthCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let path = settings.auth_key_file();
    match command {
        AuthCommand::InitKeys => {
            KeyRing::create_new(&path)?;
            println!("wrote {}", path.display());
        }
        AuthCommand::AddKey => {
            let id = KeyRing::add_data_key(&path)?;
            println!(
                "added sealing key {id} to {}; restart the auth service",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
