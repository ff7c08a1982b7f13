//! `telehealth migrate` and `telehealth audit verify`.

use std::process::ExitCode;

use clap::Subcommand;
use telehealth_kit::{Database, Part, Settings, audit};

use crate::suite::service_definition;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute a service's audit hash chain and report the first broken link (exit code 1).
    Verify {
        /// Services whose trail to check (default: all five).
        parts: Vec<Part>,
    },
}

pub async fn migrate(settings: &Settings, parts: Vec<Part>) -> anyhow::Result<ExitCode> {
    for part in services_or_all(parts)? {
        let definition = service_definition(part).ok_or_else(|| not_a_service(part))?;
        let db = Database::connect(&settings.database, &settings.data_dir, part).await?;
        db.migrate(&definition.migrations).await?;
        db.close().await;
        println!("{part}: migrations applied");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(command: AuditCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { parts } = command;
    let mut all_intact = true;
    for part in services_or_all(parts)? {
        let db = Database::connect(&settings.database, &settings.data_dir, part).await?;
        let report = audit::verify(&db).await;
        db.close().await;
        let report = report.map_err(|e| {
            anyhow::anyhow!(
                "{part}: cannot read the audit trail ({e}); has the service run its migrations?"
            )
        })?;
        match report.broken {
            None => println!("{part}: audit chain intact ({} records)", report.records),
            Some(link) => {
                all_intact = false;
                println!(
                    "{part}: audit chain BROKEN at record {}: {} ({} records read)",
                    link.seq, link.reason, report.records
                );
            }
        }
    }
    Ok(if all_intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn services_or_all(parts: Vec<Part>) -> anyhow::Result<Vec<Part>> {
    if parts.is_empty() {
        return Ok(Part::SERVICES.to_vec());
    }
    if let Some(gateway) = parts.iter().find(|p| **p == Part::Gateway) {
        return Err(not_a_service(*gateway));
    }
    Ok(parts)
}

fn not_a_service(part: Part) -> anyhow::Error {
    anyhow::anyhow!("{part} has no database; choose among scheduling, expertise, wound, signalling")
}
