//! Where images are kept (`[blobs]`) and what uploads may be (`[images]`), shared by the
//! tele-expertise and wound services through the `telehealth-images` crate.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// The blob store: a local folder (embedded default) or an S3-compatible bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BlobSettings {
    /// `local` (default) or `s3`.
    pub backend: BlobBackend,
    /// Folder of the local backend. Default `<data_dir>/blobs`.
    pub local_dir: Option<PathBuf>,
    /// Key prefix inside the folder or bucket, e.g. `prod` to share a bucket between
    /// environments. Each service then keeps its objects under `<prefix>/<service>/`. Default
    /// empty.
    pub prefix: String,
    /// The S3 backend's connection (`[blobs.s3]`).
    pub s3: S3Settings,
}

/// Which blob store backend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    #[default]
    Local,
    S3,
}

/// An S3-compatible bucket (AWS, Garage, an HDS-certified cloud's S3...).
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `https://s3.example.fr` or `http://127.0.0.1:3900`; empty for AWS.
    pub endpoint: String,
    /// Region name (Garage: `garage`). Required.
    pub region: String,
    /// Bucket name. Required.
    pub bucket: String,
    /// Access key id. Required.
    pub access_key_id: String,
    /// Secret access key. Required. Secret: never logged.
    pub secret_access_key: String,
    /// Allow a plain `http://` endpoint (a store on loopback or inside the cluster network).
    /// Default false.
    pub allow_http: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Limits and lifetimes of image uploads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    /// Largest file accepted, in bytes (declared and actual). Default 52,428,800 (50 MiB).
    pub max_size_bytes: u64,
    /// Largest width or height, in pixels. Default 20,000.
    pub max_side_px: u32,
    /// Largest width × height. Default 200,000,000.
    pub max_pixels: u64,
    /// Upload sessions without progress for this long expire and their bytes are deleted, in
    /// seconds. Default 86,400 (24 hours).
    pub session_expiry_seconds: u64,
    /// How often expired sessions and deleted images' bytes are swept, in seconds. Default 60.
    pub sweep_interval_seconds: u64,
    /// Bytes gathered before they are written to the store as one resumable part; the
    /// acknowledged offset advances part by part. Default 4 MiB.
    pub part_size_bytes: u32,
    /// Uploads in flight per server; more are refused with RESOURCE_EXHAUSTED (each holds
    /// about 13 MiB: one part and the image's write buffers). Default 16.
    pub max_concurrent_uploads: u32,
    /// Also remove capture date and time tags (kept by default: clinically useful, not
    /// identifying alone). Default false.
    pub strip_capture_date_time: bool,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            max_size_bytes: 50 * 1024 * 1024,
            max_side_px: 20_000,
            max_pixels: 200_000_000,
            session_expiry_seconds: 24 * 3600,
            sweep_interval_seconds: 60,
            part_size_bytes: 4 * 1024 * 1024,
            max_concurrent_uploads: 16,
            strip_capture_date_time: false,
        }
    }
}

impl BlobSettings {
    /// Checks that an S3 store is fully described; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.prefix.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) && !self.prefix.is_empty()
        {
            return Err("prefix: path segments of letters, digits, - and _ separated by /".into());
        }
        if self.backend == BlobBackend::S3 {
            let s3 = &self.s3;
            for (key, value) in [
                ("region", &s3.region),
                ("bucket", &s3.bucket),
                ("access_key_id", &s3.access_key_id),
                ("secret_access_key", &s3.secret_access_key),
            ] {
                if value.is_empty() {
                    return Err(format!("s3.{key} is required when blobs.backend = \"s3\""));
                }
            }
            if s3.endpoint.starts_with("http://") && !s3.allow_http {
                return Err(
                    "s3.endpoint is plain http: set s3.allow_http = true to accept it".into(),
                );
            }
        }
        Ok(())
    }
}

impl ImageSettings {
    /// Checks the bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_size_bytes == 0 || self.max_size_bytes > (1 << 40) {
            return Err("max_size_bytes must be between 1 and 2^40".into());
        }
        if self.max_side_px == 0 || self.max_pixels == 0 {
            return Err("max_side_px and max_pixels must be positive".into());
        }
        if self.session_expiry_seconds == 0 || self.sweep_interval_seconds == 0 {
            return Err(
                "session_expiry_seconds and sweep_interval_seconds must be positive".into(),
            );
        }
        if !(1..=10_000).contains(&self.max_concurrent_uploads) {
            return Err("max_concurrent_uploads must be 1 to 10000".into());
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.part_size_bytes) {
            return Err("part_size_bytes must be between 64 KiB and 64 MiB".into());
        }
        Ok(())
    }
}
