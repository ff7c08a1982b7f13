//! `telehealth token`: development access tokens.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Subcommand;
use telehealth_kit::{
    Settings,
    identity::Role,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed dev JWT (ES256) for a person, bound to a client certificate.
    Mint {
        /// Subject: the person's stable id.
        #[arg(long)]
        sub: String,
        /// A role (repeat for several): doctor, nurse, specialist, coordinator, patient, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// The person's organisation (centre or hospital id).
        #[arg(long)]
        org: String,
        /// The specialist's specialty, e.g. dermatology.
        #[arg(long)]
        specialty: Option<String>,
        /// The client certificate (PEM) the token is bound to (RFC 8705 `cnf.x5t#S256`).
        #[arg(long, value_name = "PEM", required_unless_present = "unbound")]
        bind_cert: Option<PathBuf>,
        /// Mint a token bound to no certificate (only accepted by a gateway with binding off).
        #[arg(long, conflicts_with = "bind_cert")]
        unbound: bool,
        /// Lifetime, e.g. `15m`, `1h`, `3600s`, `1d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Audience (`aud`).
        #[arg(long, default_value = DEFAULT_AUDIENCE)]
        audience: String,
    },
}

pub fn run(command: TokenCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let TokenCommand::Mint {
        sub,
        roles,
        org,
        specialty,
        bind_cert,
        unbound: _,
        ttl,
        audience,
    } = command;
    let signer = DevSigner::new(settings.data_dir.join("jwt"));
    anyhow::ensure!(
        signer.key_file().exists(),
        "no dev signing key in {}: run `telehealth up` or `telehealth token` with the right --data-dir",
        signer.key_file().display()
    );
    anyhow::ensure!(!sub.trim().is_empty(), "--sub must not be empty");
    anyhow::ensure!(!org.trim().is_empty(), "--org must not be empty");
    let cert_thumbprint = bind_cert
        .as_deref()
        .map(thumbprint_of_pem_file)
        .transpose()?;
    let token = signer.mint(&MintRequest {
        subject: sub,
        roles,
        org,
        specialty,
        cert_thumbprint,
        ttl,
        audience,
    })?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Parses `90s`, `15m`, `1h`, `1d` (at most 30 days).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 15m, 1h or 1d"))?;
    let seconds = match unit {
        "s" | "" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => return Err(format!("unknown unit in `{text}`; use s, m, h or d")),
    };
    if seconds == 0 || seconds > 30 * 86_400 {
        return Err(format!("`{text}`: a token lives between 1 s and 30 days"));
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn ttl_accepts_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "0s", "1y", "31d", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "`{bad}` must be refused");
        }
    }
}
