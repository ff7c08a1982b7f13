//! `telehealth`: see `telehealth --help`. Everything it does lives in the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything touches jsonwebtoken: token verification with ring.
    telehealth_gateway::crypto::install();
    let cli = telehealth::cli::Cli::parse();
    match telehealth::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
