//! What a backup and a restore check before calling themselves done: every service's audit
//! chain, and every stored image against its recorded size and SHA-256.

use std::path::Path;

use telehealth_images::{BlobStore, ImageStore};
use telehealth_kit::{Database, Part, Settings, audit};

/// What was found in one service's data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartCheck {
    pub part: String,
    pub audit_records: u64,
    /// The first broken link of the audit chain, if any.
    pub audit_broken: Option<String>,
    pub images: u64,
    pub image_bytes: u64,
    /// One line per missing or altered image.
    pub image_problems: Vec<String>,
}

impl PartCheck {
    pub fn is_intact(&self) -> bool {
        self.audit_broken.is_none() && self.image_problems.is_empty()
    }

    /// One line for the operator.
    pub fn summary(&self) -> String {
        let audit = match &self.audit_broken {
            None => format!("audit chain intact ({} records)", self.audit_records),
            Some(link) => format!("audit chain BROKEN: {link}"),
        };
        let images = if self.image_problems.is_empty() {
            format!("{} images intact", self.images)
        } else {
            format!(
                "{} of {} images MISSING OR ALTERED",
                self.image_problems.len(),
                self.images
            )
        };
        format!("{}: {audit}; {images}", self.part)
    }
}

/// Checks the services' data: their databases as `settings` say, on SQLite the files under
/// `data_dir` (a service without one is skipped), with the images of a local blob store in
/// `blob_dir`.
pub async fn services(
    settings: &Settings,
    data_dir: &Path,
    blob_dir: &Path,
) -> anyhow::Result<Vec<PartCheck>> {
    let mut settings = settings.clone();
    settings.data_dir = data_dir.to_path_buf();
    settings.blobs.local_dir = Some(blob_dir.to_path_buf());
    let mut checks = Vec::new();
    for part in Part::SERVICES {
        if settings.database.url.is_none() && !super::database_file(data_dir, part).exists() {
            continue;
        }
        let db = Database::connect(&settings.database, data_dir, part).await?;
        let checked = check_part(&settings, &db, part).await;
        db.close().await;
        checks.push(checked?);
    }
    Ok(checks)
}

async fn check_part(settings: &Settings, db: &Database, part: Part) -> anyhow::Result<PartCheck> {
    let chain = audit::verify(db)
        .await
        .map_err(|e| anyhow::anyhow!("{part}: cannot read the audit trail: {e}"))?;
    let blobs = BlobStore::open(settings, part)?;
    let images = ImageStore::new(db.clone(), blobs, settings.images.clone())
        .verify_all()
        .await
        .map_err(|e| anyhow::anyhow!("{part}: cannot read the images: {e}"))?;
    Ok(PartCheck {
        part: part.to_string(),
        audit_records: chain.records,
        audit_broken: chain
            .broken
            .map(|link| format!("record {}: {}", link.seq, link.reason)),
        images: images.images,
        image_bytes: images.bytes,
        image_problems: images.problems,
    })
}
