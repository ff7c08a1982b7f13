//! The FHIR form of an export: one transaction `Bundle` written entry by entry, so that a
//! patient with many images never needs them all in memory (each Media carries its image
//! inline, base64, while it is written).

use std::{
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;

pub struct FhirBundle {
    out: BufWriter<std::fs::File>,
    entries: usize,
}

impl FhirBundle {
    pub fn create(path: &Path) -> anyhow::Result<FhirBundle> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut out = BufWriter::new(file);
        out.write_all(br#"{"resourceType":"Bundle","type":"transaction","entry":["#)?;
        Ok(FhirBundle { out, entries: 0 })
    }

    /// Adds a resource, to be created or updated at its id.
    pub fn add(&mut self, resource: Value) -> anyhow::Result<()> {
        if self.entries > 0 {
            self.out.write_all(b",")?;
        }
        serde_json::to_writer(&mut self.out, &telehealth_fhir::transaction_entry(resource))?;
        self.entries += 1;
        Ok(())
    }

    /// Adds a Media with the image's bytes as its content's data.
    pub fn add_media(&mut self, mut media: Value, bytes: &[u8]) -> anyhow::Result<()> {
        media["content"]["data"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        self.add(media)
    }

    /// Closes the Bundle; how many resources it holds.
    pub fn finish(mut self) -> anyhow::Result<usize> {
        self.out.write_all(b"]}")?;
        let file = self.out.into_inner().context("cannot write the Bundle")?;
        file.sync_all()?;
        Ok(self.entries)
    }
}
