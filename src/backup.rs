//! `telehealth backup` and `telehealth restore` for the embedded mode: the services' SQLite
//! files and the local blob folder, copied while the suite runs, checked, and put back.
//!
//! A backup is a folder:
//!
//! ```text
//! manifest.json            what it holds: every file's size and SHA-256, the checks' results
//! db/<service>.db          a consistent snapshot of each service's database (VACUUM INTO)
//! blobs/…                  the blob folder (images, upload parts, thumbnails)
//! keys/, pki/, jwt/        only with --include-secrets
//! ```
//!
//! Images are immutable once written and a database refers only to images written before its
//! snapshot, so the blob folder is copied twice: once before the snapshots (the bulk), once after
//! (what arrived meanwhile). Every image the snapshots name is then checked in the copy, as is
//! every audit chain. PostgreSQL and S3 have their own tools (docs/operations.md).

mod check;
mod files;
mod restore;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use telehealth_kit::{
    Database, Part, Settings,
    config::{BlobBackend, DatabaseSettings},
};

pub use check::{PartCheck, services as check_services};
pub use files::Digest256;
pub use restore::{RestoreReport, restore};

/// The manifest's name in a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The format this version writes and reads.
const FORMAT: &str = "telehealth-backup/1";

/// What a backup holds; written last, so a folder without one is not a backup.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The `telehealth` version that took it.
    pub version: String,
    /// When the database snapshots were taken (UTC, RFC 3339).
    pub taken_at: String,
    pub secrets_included: bool,
    /// The checks of the copied data, one per service.
    pub checks: Vec<PartCheck>,
    /// Every file, by its path in the backup.
    pub files: Listing,
}

impl Manifest {
    pub fn is_intact(&self) -> bool {
        self.checks.iter().all(PartCheck::is_intact)
    }
}

/// The secret files a backup holds with `--include-secrets`, by their place in the backup and
/// where they live under `settings`: the keys sealing patients' identities and the sign-in keys,
/// the PKI, the development token signer.
fn secret_places(settings: &Settings) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("keys/patient-data.keys", settings.patient_key_file()),
        ("keys/auth-sealing.keys", settings.auth_key_file()),
        ("pki", settings.pki_dir()),
        ("jwt", settings.data_dir.join("jwt")),
    ]
}

/// `<data_dir>/db/<part>.db`, the embedded database of `part`.
pub fn database_file(data_dir: &Path, part: Part) -> PathBuf {
    data_dir.join("db").join(format!("{part}.db"))
}

/// Refuses what these commands do not cover, saying what does.
fn ensure_embedded(settings: &Settings) -> anyhow::Result<()> {
    if settings.database.url.is_some() {
        bail!(
            "the database is PostgreSQL: back it up with CloudNativePG (or pg_dump), see \
             docs/operations.md \"Backup and restore\"; these commands copy the embedded SQLite files"
        );
    }
    if settings.blobs.backend != BlobBackend::Local {
        bail!(
            "the images are in an S3 bucket: copy it with the provider's tools (docs/operations.md); \
             these commands copy the local blob folder"
        );
    }
    Ok(())
}

/// Takes a backup of the suite's embedded data into `destination`, which must not exist; the
/// suite may be running. `progress` receives a line per step.
pub async fn take(
    settings: &Settings,
    destination: &Path,
    include_secrets: bool,
    progress: impl Fn(&str),
) -> anyhow::Result<Manifest> {
    ensure_embedded(settings)?;
    if destination.exists() {
        bail!(
            "{} exists: a backup goes to a new folder",
            destination.display()
        );
    }
    // Written beside the destination and renamed at the end: a folder at the destination is
    // always a whole backup.
    let partial = partial_path(destination);
    if partial.exists() {
        bail!(
            "{} is left from an interrupted backup: remove it first",
            partial.display()
        );
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;

    // Every file of the backup with its digest, by its path in the backup.
    let mut listing = Listing::new();
    let blob_dir = settings.blob_dir();
    let copy_blobs = {
        let (blob_dir, target) = (blob_dir.clone(), partial.join("blobs"));
        move || copy_new_files(&blob_dir, &target, "blobs/")
    };
    let first = blocking(copy_blobs.clone()).await?;
    progress(&format!("blob folder copied: {} files", first.len()));
    listing.extend(first);

    let taken_at = jiff::Timestamp::now();
    for part in Part::SERVICES {
        let source = database_file(&settings.data_dir, part);
        if !source.exists() {
            continue;
        }
        snapshot(
            &settings.database,
            &settings.data_dir,
            part,
            &database_file(&partial, part),
        )
        .await?;
        progress(&format!("{part}: database snapshot taken"));
    }
    let second = blocking(copy_blobs).await?;
    progress(&format!(
        "blob folder copied again: {} new files",
        second.len()
    ));
    listing.extend(second);

    if include_secrets {
        for (place, path) in secret_places(settings) {
            let target = partial.join(place);
            listing.extend(blocking(move || copy_tree_or_file(&path, &target, place)).await?);
        }
        progress("secrets copied (keys, PKI, token signer)");
    }

    let checks = check::services(settings, &partial, &partial.join("blobs")).await?;
    for checked in &checks {
        progress(&checked.summary());
    }
    // The database files last, each back to one self-contained file: the checks opened them
    // in WAL mode.
    for part in Part::SERVICES {
        let file = database_file(&partial, part);
        if file.exists() {
            single_file(&file).await?;
        }
    }
    let db_dir = partial.join("db");
    listing.extend(blocking(move || digests_under(&db_dir, "db/")).await?);
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        taken_at: taken_at.to_string(),
        secrets_included: include_secrets,
        checks,
        files: listing,
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    let manifest_path = partial.join(MANIFEST);
    std::fs::write(&manifest_path, json)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    std::fs::File::open(&manifest_path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {}", manifest_path.display()))?;
    std::fs::rename(&partial, destination).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            destination.display()
        )
    })?;
    if let Some(parent) = destination.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::sync_folder(parent)?;
    }
    Ok(manifest)
}

/// A consistent copy of `part`'s database at one instant, taken while it is in use: SQLite's
/// `VACUUM INTO` reads inside one transaction and writes a compact new file.
async fn snapshot(
    settings: &DatabaseSettings,
    data_dir: &Path,
    part: Part,
    target: &Path,
) -> anyhow::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let target_name = target
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", target.display()))?;
    let db = Database::connect(settings, data_dir, part).await?;
    let result = sqlx::query("VACUUM INTO $1")
        .bind(target_name)
        .execute(db.pool())
        .await;
    db.close().await;
    result.with_context(|| format!("{part}: snapshot of the database failed"))?;
    Ok(())
}

/// A backup's files with their digests, by their path in the backup.
pub type Listing = std::collections::BTreeMap<String, Digest256>;

/// Folds a SQLite file's write-ahead log into it and leaves it in rollback-journal mode: one file
/// that holds everything, as `VACUUM INTO` wrote it (services put it back in WAL mode).
async fn single_file(path: &Path) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let mut connection = sqlx::AnyConnection::connect(&telehealth_kit::db::sqlite_url(path))
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    connection.execute("PRAGMA journal_mode = DELETE").await?;
    connection.close().await?;
    Ok(())
}

/// Copies every file of `from` that `to` does not hold yet; returns what it copied, named
/// `<prefix><path under from>`.
fn copy_new_files(from: &Path, to: &Path, prefix: &str) -> anyhow::Result<Listing> {
    let present = files::walk(to)?;
    let mut copied = Listing::new();
    for (name, path) in files::walk(from)? {
        if present.contains_key(&name) {
            continue;
        }
        match files::copy(&path, &to.join(&name)) {
            Ok(digest) => {
                copied.insert(format!("{prefix}{name}"), digest);
            }
            // Deleted since the listing (a detached image, a finished upload's parts): the
            // images the snapshots name are checked in the copy afterwards.
            Err(error) if !path.exists() => {
                tracing::debug!(%error, file = %name, "gone before it was copied");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(copied)
}

/// Copies a file, or every file of a folder, named `place` in the backup; nothing when it does
/// not exist.
fn copy_tree_or_file(from: &Path, to: &Path, place: &str) -> anyhow::Result<Listing> {
    if from.is_file() {
        return Ok(Listing::from([(place.to_owned(), files::copy(from, to)?)]));
    }
    files::walk(from)?
        .into_iter()
        .map(|(name, path)| {
            Ok((
                format!("{place}/{name}"),
                files::copy(&path, &to.join(&name))?,
            ))
        })
        .collect()
}

/// The digests of every file under `root`, named `<prefix><path under root>`.
fn digests_under(root: &Path, prefix: &str) -> anyhow::Result<Listing> {
    files::walk(root)?
        .into_iter()
        .map(|(name, path)| Ok((format!("{prefix}{name}"), files::digest(&path)?)))
        .collect()
}

fn partial_path(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a copy task failed")?
}
