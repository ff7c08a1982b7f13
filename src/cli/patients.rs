//! `telehealth patients`: the patient register's encryption keys.
//!
//! `init-keys` writes a new key file; `add-key` appends a data key, which seals from the next
//! start of the directory; `rekey` re-seals every stored field under the newest key (run it
//! after the new key is live; older keys may then be removed from the file).

use std::process::ExitCode;

use clap::Subcommand;
use telehealth_directory::patients::{core::Register, vault::Vault};
use telehealth_kit::{
    Database, Part, Settings,
    sealed::KeyRing,
    service_core::{ServiceCore, system_clock},
};

use crate::suite::service_definition;

#[derive(Debug, Subcommand)]
pub enum PatientsCommand {
    /// Write a new key file (an index key and a first data key) where `[patient_data] key_file`
    /// points; refuses to overwrite one.
    InitKeys,
    /// Append a new data key to the key file; it seals new writes once the directory restarts.
    AddKey,
    /// Re-seal every stored patient field under the newest data key of the key file.
    Rekey,
    /// Give every patient pseudonym that older appointments, requests and wounds carry a minimal
    /// provisional register record under that id (identity to complete, no consent), so that
    /// those records resolve again. Run once after upgrading; running it again adds only what is
    /// new.
    Adopt,
}

pub async fn run(command: PatientsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let path = settings.patient_key_file();
    match command {
        PatientsCommand::InitKeys => {
            KeyRing::create_new(&path)?;
            println!("wrote {}", path.display());
        }
        PatientsCommand::AddKey => {
            let id = KeyRing::add_data_key(&path)?;
            println!(
                "added data key {id} to {}; restart the directory, then run `telehealth patients rekey`",
                path.display()
            );
        }
        PatientsCommand::Rekey => {
            let keys = KeyRing::load(&path)?;
            let newest = keys
                .key_ids()
                .last()
                .map(|id| id.to_string())
                .unwrap_or_default();
            let db =
                Database::connect(&settings.database, &settings.data_dir, Part::Directory).await?;
            let definition =
                service_definition(Part::Directory).expect("the directory is a service");
            db.migrate(&definition.migrations).await?;
            let register = Register::new(
                ServiceCore::new(db.clone(), system_clock()),
                Vault::new(keys),
            );
            let rewritten = register.reencrypt().await;
            db.close().await;
            let rewritten = rewritten.map_err(|e| anyhow::anyhow!("re-encryption stopped: {e}"))?;
            println!("{rewritten} patient records re-sealed under key {newest}");
        }
        PatientsCommand::Adopt => {
            let keys = KeyRing::load(&path)?;
            let db =
                Database::connect(&settings.database, &settings.data_dir, Part::Directory).await?;
            let definition =
                service_definition(Part::Directory).expect("the directory is a service");
            db.migrate(&definition.migrations).await?;
            let register = Register::new(
                ServiceCore::new(db.clone(), system_clock()),
                Vault::new(keys),
            );
            let mut adopted = 0;
            for (part, references) in [
                (
                    Part::Scheduling,
                    "SELECT DISTINCT org_id, patient_pseudonym FROM appointments",
                ),
                (
                    Part::Expertise,
                    "SELECT DISTINCT requester_org, patient_pseudonym FROM expertise_requests \
                     WHERE patient_pseudonym <> ''",
                ),
                (
                    Part::Wound,
                    "SELECT DISTINCT org_id, patient_pseudonym FROM wounds",
                ),
            ] {
                let source =
                    Database::connect(&settings.database, &settings.data_dir, part).await?;
                let pairs: Vec<(String, String)> = sqlx::query_as(references)
                    .fetch_all(source.pool())
                    .await
                    .map_err(|e| anyhow::anyhow!("{part}: cannot read its patient references ({e}); has it run its migrations?"))?;
                source.close().await;
                for (org, pseudonym) in pairs {
                    if register
                        .adopt(&org, &pseudonym)
                        .await
                        .map_err(|e| anyhow::anyhow!("adopting a pseudonym of {org}: {e}"))?
                    {
                        adopted += 1;
                    }
                }
            }
            db.close().await;
            println!("{adopted} pseudonyms of older records adopted as provisional patients");
        }
    }
    Ok(ExitCode::SUCCESS)
}
