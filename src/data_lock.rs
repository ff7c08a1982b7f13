//! The lock on an embedded data directory: every process running parts on it holds it shared,
//! `telehealth restore` holds it alone, so a restore never replaces files under a running suite.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::Path,
};

use anyhow::{Context, bail};

/// The lock file, inside the data directory.
const LOCK_FILE: &str = ".lock";
/// Present while a restore is putting files back: a restore that stopped half way leaves it, and
/// nothing starts on the half-restored data.
const RESTORE_MARKER: &str = ".restore-incomplete";

/// A held lock on a data directory; released when dropped (or when the process ends, however
/// it ends: the kernel releases it).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Taken by a process that runs parts on `data_dir`: several may hold it at once.
    pub fn shared(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        let file = open(data_dir)?;
        match file.try_lock_shared() {
            Ok(()) if data_dir.join(RESTORE_MARKER).exists() => bail!(
                "a restore into {} did not finish: run `telehealth restore` again before starting",
                data_dir.display()
            ),
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "{} is being restored: start the suite once `telehealth restore` has finished",
                data_dir.display()
            ),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("cannot lock {}", data_dir.display()))
            }
        }
    }

    /// Taken by a restore: refused while any process runs parts on `data_dir`.
    pub fn exclusive(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        let file = open(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "the suite is running on {}: stop it (and every `telehealth serve` using it) first",
                data_dir.display()
            ),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("cannot lock {}", data_dir.display()))
            }
        }
    }
}

/// The mark of a restore in progress; [`RestoreMarker::clear`] once every file is back.
#[derive(Debug)]
pub struct RestoreMarker {
    path: std::path::PathBuf,
}

impl RestoreMarker {
    pub fn set(data_dir: &Path) -> anyhow::Result<RestoreMarker> {
        let path = data_dir.join(RESTORE_MARKER);
        File::create(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RestoreMarker { path })
    }

    pub fn clear(self) -> anyhow::Result<()> {
        std::fs::remove_file(&self.path)
            .with_context(|| format!("cannot remove {}", self.path.display()))
    }
}

fn open(data_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_waits_for_every_running_part_and_parts_wait_for_a_restore() {
        let dir = tempfile::tempdir().expect("dir");
        let first = DataDirLock::shared(dir.path()).expect("a first part");
        let second = DataDirLock::shared(dir.path()).expect("a second part beside it");
        let refused = DataDirLock::exclusive(dir.path()).expect_err("restore under a running part");
        assert!(refused.to_string().contains("running"), "{refused}");
        drop((first, second));
        let restore = DataDirLock::exclusive(dir.path()).expect("restore once they stopped");
        let refused = DataDirLock::shared(dir.path()).expect_err("start during a restore");
        assert!(refused.to_string().contains("being restored"), "{refused}");
        drop(restore);
        DataDirLock::shared(dir.path()).expect("start after the restore");
    }

    #[test]
    fn nothing_starts_on_a_restore_that_stopped_half_way() {
        let dir = tempfile::tempdir().expect("dir");
        let marker = RestoreMarker::set(dir.path()).expect("marker");
        let refused = DataDirLock::shared(dir.path()).expect_err("half-restored");
        assert!(refused.to_string().contains("did not finish"), "{refused}");
        marker.clear().expect("clear");
        DataDirLock::shared(dir.path()).expect("start once the restore finished");
    }
}
