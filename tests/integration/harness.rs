//! Running the real binary in a temporary data directory.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The `telehealth` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_telehealth"))
}

/// Runs `telehealth --data-dir <dir> <args>` to completion.
pub fn telehealth(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("TELEHEALTH_CONFIG")
        .output()
        .expect("the telehealth binary runs")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
