//! Checking every stored image against its record: after a restore (database and blob store
//! brought back separately), or at any time on a running system.

use super::{ImageError, ImageStore, records, store::stored};

/// Images read per database query; each one's bytes are then read and hashed one at a time, so
/// memory stays at one image (bounded by `images.max_size_bytes`).
const PAGE: i64 = 100;

/// What a check of every stored image found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Images whose record was read.
    pub images: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// One line per image whose bytes are missing or differ from its recorded size and SHA-256.
    pub problems: Vec<String>,
}

impl ImageStore {
    /// Reads every completed image's bytes and compares them with the size and SHA-256 recorded
    /// at upload. Only a failure to read the database is an error: a missing or altered image is
    /// a line of the report.
    pub async fn verify_all(&self) -> Result<IntegrityReport, ImageError> {
        let mut report = IntegrityReport::default();
        let mut after = String::new();
        loop {
            let page = records::images_after(self.db.pool(), &after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = last.image_id.clone();
            for row in page {
                report.images += 1;
                let id = row.image_id.clone();
                let checked = match stored(row) {
                    Ok(image) => self.read_all(&image).await.map(|bytes| bytes.len()),
                    Err(error) => Err(error),
                };
                match checked {
                    Ok(size) => report.bytes += size as u64,
                    Err(ImageError::ImageNotFound) => {
                        report
                            .problems
                            .push(format!("image {id}: its bytes are missing"));
                    }
                    Err(error) => report.problems.push(format!("image {id}: {error}")),
                }
            }
        }
    }
}
