//! The blob store behind the image pipeline: `object_store` on a local folder (embedded
//! default) or an S3-compatible bucket (production), chosen by `[blobs]`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
    aws::AmazonS3Builder, local::LocalFileSystem, path::Path, prefix::PrefixStore,
};

use telehealth_kit::{
    config::{BlobBackend, Settings},
    error::KitError,
    part::Part,
};

/// Parts of a multipart write sent to the store at once (bounds memory: chunk size × this).
const WRITE_CONCURRENCY: usize = 2;
/// Size of the parts of a multipart write (S3's minimum part size).
const WRITE_CHUNK_BYTES: usize = 5 * 1024 * 1024;

/// A handle on the configured store; cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// Opens the store `[blobs]` describes (creating the local folder if needed), rooted at
    /// `<prefix>/<part>/` so that services sharing a bucket never touch each other's objects.
    pub fn open(settings: &Settings, part: Part) -> Result<BlobStore, KitError> {
        let store: Arc<dyn ObjectStore> = match settings.blobs.backend {
            BlobBackend::Local => {
                let dir = settings.blob_dir();
                std::fs::create_dir_all(&dir).map_err(|e| KitError::io(&dir, e))?;
                let local = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| KitError::Config(format!("blobs.local_dir: {e}")))?
                    .with_automatic_cleanup(true);
                Arc::new(local)
            }
            BlobBackend::S3 => {
                // reqwest is built without a bundled provider: use ring, as the rest of the
                // process does (an error only means one is installed already).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let s3 = &settings.blobs.s3;
                // A down store must surface as UNAVAILABLE within seconds, not minutes.
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(10),
                    ..RetryConfig::default()
                };
                let mut builder = AmazonS3Builder::new()
                    .with_region(&s3.region)
                    .with_bucket_name(&s3.bucket)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key)
                    .with_allow_http(s3.allow_http)
                    .with_retry(retry);
                if !s3.endpoint.is_empty() {
                    // Self-hosted stores (Garage, MinIO…) are addressed by path, not by
                    // bucket sub-domain.
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| KitError::Config(format!("blobs.s3: {e}")))?,
                )
            }
        };
        let root = match settings.blobs.prefix.as_str() {
            "" => part.to_string(),
            prefix => format!("{prefix}/{part}"),
        };
        Ok(BlobStore {
            store: Arc::new(PrefixStore::new(store, root.as_str())),
        })
    }

    /// Stores `bytes` at `key` in one request (atomic: all or nothing).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), object_store::Error> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Starts a streamed write to `key`; nothing is visible at `key` until it finishes.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, object_store::Error> {
        let upload = self.store.put_multipart(&Path::from(key)).await?;
        Ok(BlobWriter {
            inner: Some(WriteMultipart::new_with_chunk_size(
                upload,
                WRITE_CHUNK_BYTES,
            )),
        })
    }

    /// The bytes of `key` from `offset` to the end, as the store streams them.
    pub async fn read_from(
        &self,
        key: &str,
        offset: u64,
    ) -> Result<
        impl Stream<Item = Result<Bytes, object_store::Error>> + Send + use<>,
        object_store::Error,
    > {
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&Path::from(key), options).await?;
        Ok(result.into_stream())
    }

    /// The whole of a small object (thumbnails).
    pub async fn read_all(&self, key: &str) -> Result<Option<Bytes>, object_store::Error> {
        match self.store.get(&Path::from(key)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Deletes `key`; a key that is already gone is fine. A key ending in `/` deletes everything
    /// under that prefix.
    pub async fn delete(&self, key: &str) -> Result<(), object_store::Error> {
        if let Some(prefix) = key.strip_suffix('/') {
            let keys: Vec<Path> = self
                .store
                .list(Some(&Path::from(prefix)))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await?;
            for key in keys {
                ignore_missing(self.store.delete(&key).await)?;
            }
            return Ok(());
        }
        ignore_missing(self.store.delete(&Path::from(key)).await)
    }

    /// Whether the store answers (readiness): a missing key found missing is an answer.
    pub async fn ping(&self) -> Result<(), object_store::Error> {
        match self.store.head(&Path::from("readiness/ping")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether anything is stored under `prefix` (tests and the sweeper's checks).
    pub async fn any_under(&self, prefix: &str) -> Result<bool, object_store::Error> {
        let first = self.store.list(Some(&Path::from(prefix))).next().await;
        first.transpose().map(|meta| meta.is_some())
    }
}

fn ignore_missing(result: Result<(), object_store::Error>) -> Result<(), object_store::Error> {
    match result {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// A streamed write in progress; memory stays within a few parts whatever the object's size.
/// Dropped unfinished (e.g. the client's call was cancelled mid-upload), it is aborted, so no
/// multipart upload is left behind in the store.
pub struct BlobWriter {
    inner: Option<WriteMultipart>,
}

impl BlobWriter {
    /// Appends `bytes`, waiting while earlier parts are still being sent.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), object_store::Error> {
        let inner = self.inner.as_mut().ok_or_else(finished)?;
        inner.wait_for_capacity(WRITE_CONCURRENCY).await?;
        inner.write(bytes);
        Ok(())
    }

    /// Completes the object: it becomes visible at its key.
    pub async fn finish(mut self) -> Result<(), object_store::Error> {
        let inner = self.inner.take().ok_or_else(finished)?;
        inner.finish().await.map(|_| ())
    }

    /// Gives up: nothing becomes visible.
    pub async fn abort(mut self) {
        if let Some(inner) = self.inner.take() {
            abort(inner).await;
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(abort(inner));
        }
    }
}

async fn abort(inner: WriteMultipart) {
    if let Err(error) = inner.abort().await {
        tracing::warn!(%error, "could not abort a blob write; the bucket's rule for incomplete multipart uploads cleans it");
    }
}

fn finished() -> object_store::Error {
    object_store::Error::Generic {
        store: "blobs",
        source: "the write already finished".into(),
    }
}
