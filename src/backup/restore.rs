//! `telehealth restore`: a backup checked against its manifest, put back in place of the data
//! directory's (which is moved aside, never deleted), then checked again where it now lives.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use telehealth_kit::Settings;

use super::{FORMAT, MANIFEST, Manifest, PartCheck, check, ensure_embedded, files};
use crate::data_lock::{DataDirLock, RestoreMarker};

/// Damaged files named in the error of a refused restore.
const DAMAGED_SHOWN: usize = 5;

/// What a restore did and found.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub files: usize,
    pub bytes: u64,
    /// Where the data it replaced was moved, if there was any.
    pub moved_aside: Option<PathBuf>,
    /// The checks of the restored data, one per service.
    pub checks: Vec<PartCheck>,
    /// Secret files the restored data needs that are neither in the backup nor in place.
    pub missing_secrets: Vec<PathBuf>,
}

impl RestoreReport {
    /// Every audit chain and image intact, and every key the data needs in place.
    pub fn is_complete(&self) -> bool {
        self.checks.iter().all(PartCheck::is_intact) && self.missing_secrets.is_empty()
    }
}

/// Restores the backup in `source` into the data directory of `settings`; the suite must be
/// stopped. Data already there is refused unless `replace`, and then moved aside.
pub async fn restore(
    settings: &Settings,
    source: &Path,
    replace: bool,
    progress: impl Fn(&str),
) -> anyhow::Result<RestoreReport> {
    ensure_embedded(settings)?;
    let manifest = read_manifest(source)?;
    let _lock = DataDirLock::exclusive(&settings.data_dir)?;

    let verified = {
        let (source, manifest) = (source.to_path_buf(), manifest.clone());
        super::blocking(move || damaged_files(&source, &manifest)).await?
    };
    if !verified.is_empty() {
        bail!(
            "the backup in {} is damaged: {} files differ from its manifest ({}); nothing was \
             restored",
            source.display(),
            verified.len(),
            verified
                .iter()
                .take(DAMAGED_SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    progress(&format!(
        "backup of {} checked: {} files intact",
        manifest.taken_at,
        manifest.files.len()
    ));

    let places = places(settings, &manifest);
    let occupied: Vec<&PathBuf> = places
        .iter()
        .map(|(_, target)| target)
        .filter(|target| holds_files(target))
        .collect();
    if !occupied.is_empty() && !replace {
        bail!(
            "{} already holds data; restore with --replace to move it aside (into {}) first",
            occupied[0].display(),
            settings.data_dir.join("replaced-<time>").display()
        );
    }

    let marker = RestoreMarker::set(&settings.data_dir)?;
    let moved_aside = if occupied.is_empty() {
        None
    } else {
        let aside = settings.data_dir.join(format!(
            "replaced-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ));
        for (place, target) in &places {
            if target.exists() {
                let to = aside.join(place);
                std::fs::create_dir_all(to.parent().expect("a place has a parent"))?;
                std::fs::rename(target, &to).with_context(|| {
                    format!(
                        "cannot move {} aside to {} (the blob folder must be on the data \
                         directory's file system)",
                        target.display(),
                        to.display()
                    )
                })?;
            }
        }
        progress(&format!("data in place moved to {}", aside.display()));
        Some(aside)
    };

    let (files, bytes) = {
        let (source, manifest, places) = (source.to_path_buf(), manifest.clone(), places.clone());
        super::blocking(move || put_back(&source, &manifest, &places)).await?
    };
    marker.clear()?;
    progress(&format!("{files} files restored ({bytes} bytes)"));

    let checks = check::services(settings, &settings.data_dir, &settings.blob_dir()).await?;
    for checked in &checks {
        progress(&checked.summary());
    }
    let missing_secrets = [settings.patient_key_file(), settings.auth_key_file()]
        .into_iter()
        .filter(|key| !key.exists())
        .collect();
    Ok(RestoreReport {
        files,
        bytes,
        moved_aside,
        checks,
        missing_secrets,
    })
}

fn read_manifest(source: &Path) -> anyhow::Result<Manifest> {
    let path = source.join(MANIFEST);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a backup (no readable {MANIFEST}; an interrupted backup has none)",
            source.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} is in format `{}`; this version reads `{FORMAT}`",
            path.display(),
            manifest.format
        );
    }
    for name in manifest.files.keys() {
        if name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            bail!("{} names a file outside the backup: {name}", path.display());
        }
    }
    Ok(manifest)
}

/// The files of the backup whose size or SHA-256 is not the manifest's (or that are missing).
fn damaged_files(source: &Path, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let mut damaged = Vec::new();
    for (name, expected) in &manifest.files {
        match files::digest(&source.join(name)) {
            Ok(actual) if actual == *expected => {}
            _ => damaged.push(name.clone()),
        }
    }
    Ok(damaged)
}

/// Where each top-level place of the backup goes: the databases and blob folder always, the
/// secrets when the backup holds them.
fn places(settings: &Settings, manifest: &Manifest) -> Vec<(String, PathBuf)> {
    let mut places = vec![
        ("db".to_owned(), settings.data_dir.join("db")),
        ("blobs".to_owned(), settings.blob_dir()),
    ];
    if manifest.secrets_included {
        places.extend(
            super::secret_places(settings)
                .into_iter()
                .map(|(place, path)| (place.to_owned(), path)),
        );
    }
    places
}

fn holds_files(path: &Path) -> bool {
    path.is_file() || files::walk(path).is_ok_and(|found| !found.is_empty())
}

/// Copies every file of the manifest to its place, checking each copy; returns the number of
/// files and bytes.
fn put_back(
    source: &Path,
    manifest: &Manifest,
    places: &[(String, PathBuf)],
) -> anyhow::Result<(usize, u64)> {
    let mut bytes = 0;
    for (name, expected) in &manifest.files {
        let Some(target) = target_of(name, places) else {
            continue;
        };
        let copied = files::copy(&source.join(name), &target)?;
        if copied != *expected {
            bail!(
                "{name} changed while it was restored ({} now); run the restore again",
                target.display()
            );
        }
        bytes += copied.size;
    }
    for (_, target) in places {
        if target.is_dir() {
            files::sync_folder(target)?;
        }
    }
    Ok((manifest.files.len(), bytes))
}

/// Where `name` (a path in the backup) goes: under the place it starts with.
fn target_of(name: &str, places: &[(String, PathBuf)]) -> Option<PathBuf> {
    places.iter().find_map(|(place, path)| {
        if name == place {
            Some(path.clone())
        } else {
            name.strip_prefix(place.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| path.join(rest))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_of_a_backup_goes_under_its_place_and_nowhere_else() {
        let places = vec![
            ("db".to_owned(), PathBuf::from("/data/db")),
            (
                "keys/patient-data.keys".to_owned(),
                PathBuf::from("/secrets/p.keys"),
            ),
            ("pki".to_owned(), PathBuf::from("/pki")),
        ];
        assert_eq!(
            target_of("db/wound.db", &places),
            Some(PathBuf::from("/data/db/wound.db"))
        );
        assert_eq!(
            target_of("keys/patient-data.keys", &places),
            Some(PathBuf::from("/secrets/p.keys"))
        );
        assert_eq!(
            target_of("pki/ca.pem", &places),
            Some(PathBuf::from("/pki/ca.pem"))
        );
        assert_eq!(target_of("pkiX/ca.pem", &places), None);
        assert_eq!(target_of("blobs/x", &places), None);
    }
}
