//! Helpers for tests of the kit and of every service: fresh databases on both backends, fresh
//! blob stores (a local folder, and the S3-compatible test store), and [`ports`] for the
//! processes a test starts.
//!
//! PostgreSQL comes from `TELEHEALTH_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own schema, dropped by
//! [`TestDatabase::cleanup`]. When the server cannot be reached, the PostgreSQL half of a test is
//! skipped with a message, except under CI (`CI` set), where it fails: CI must prove both
//! backends.

pub mod fuzz;
pub mod ports;

use crate::{
    config::{BlobBackend, BlobSettings, DatabaseSettings, S3Settings},
    db::{Backend, Database},
};

/// Default PostgreSQL URL for tests.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A throwaway database.
pub struct TestDatabase {
    pub db: Database,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl TestDatabase {
    /// A new SQLite database in a temporary folder.
    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir for SQLite");
        let url = crate::db::sqlite_url(&dir.path().join("test.db"));
        let db = Database::connect_url(&url, "test", &DatabaseSettings::default())
            .await
            .expect("open SQLite test database");
        TestDatabase {
            db,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A new schema in the test PostgreSQL, or `None` (with a message) when PostgreSQL is not
    /// reachable outside CI.
    ///
    /// # Panics
    /// Under CI when PostgreSQL is not reachable.
    pub async fn postgres() -> Option<TestDatabase> {
        let url = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        match Database::connect_url(&url, &schema, &DatabaseSettings::default()).await {
            Ok(db) => Some(TestDatabase {
                db,
                cleanup: Cleanup::Postgres { url, schema },
            }),
            Err(error) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required in CI but {url} is not usable: {error}")
            }
            Err(error) => {
                eprintln!(
                    "SKIPPING the PostgreSQL half of this test: {url} is not usable ({error}); \
                     set TELEHEALTH_TEST_POSTGRES_URL or start PostgreSQL"
                );
                None
            }
        }
    }

    /// SQLite, and PostgreSQL when available: run the same assertions on each.
    pub async fn each_backend() -> Vec<TestDatabase> {
        let mut all = vec![TestDatabase::sqlite().await];
        all.extend(TestDatabase::postgres().await);
        all
    }

    /// Which backend this is, for assertion messages.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Closes the pool and removes the data.
    pub async fn cleanup(self) {
        self.db.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { url, schema } => {
                sqlx::any::install_default_drivers();
                if let Ok(pool) = sqlx::AnyPool::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            }
        }
    }
}

/// A throwaway blob store configuration: a temporary folder, or a fresh prefix in the
/// S3-compatible test store.
pub struct TestBlobs {
    /// What to put in `Settings::blobs`.
    pub settings: BlobSettings,
    /// `local` or `s3`, for assertion messages.
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestBlobs {
    /// A local folder that disappears with the value.
    pub fn local() -> TestBlobs {
        let dir = tempfile::tempdir().expect("temp dir for blobs");
        TestBlobs {
            settings: BlobSettings {
                local_dir: Some(dir.path().to_owned()),
                ..BlobSettings::default()
            },
            name: "local",
            _dir: Some(dir),
        }
    }

    /// A fresh prefix in the S3-compatible store named by `TELEHEALTH_TEST_S3_ENDPOINT` (with
    /// `…_BUCKET`, `…_ACCESS_KEY_ID`, `…_SECRET_ACCESS_KEY`, `…_REGION`; `.ci/run` starts Garage
    /// and sets them), or `None` with a message when it is not configured outside CI.
    ///
    /// # Panics
    /// Under CI when no S3 store is configured.
    pub fn s3() -> Option<TestBlobs> {
        let var = |name: &str| std::env::var(format!("TELEHEALTH_TEST_S3_{name}")).ok();
        let Some(endpoint) = var("ENDPOINT") else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "an S3 store is required in CI: set TELEHEALTH_TEST_S3_ENDPOINT (.ci/run starts Garage)"
                );
            }
            eprintln!(
                "SKIPPING the S3 half of this test: TELEHEALTH_TEST_S3_ENDPOINT is not set \
                 (run .ci/start-garage to get a local Garage)"
            );
            return None;
        };
        Some(TestBlobs {
            settings: BlobSettings {
                backend: BlobBackend::S3,
                local_dir: None,
                prefix: format!("t-{}", uuid::Uuid::new_v4().simple()),
                s3: S3Settings {
                    allow_http: endpoint.starts_with("http://"),
                    endpoint,
                    region: var("REGION").unwrap_or_else(|| "garage".into()),
                    bucket: var("BUCKET").unwrap_or_else(|| "telehealth".into()),
                    access_key_id: var("ACCESS_KEY_ID").unwrap_or_default(),
                    secret_access_key: var("SECRET_ACCESS_KEY").unwrap_or_default(),
                },
            },
            name: "s3",
            _dir: None,
        })
    }

    /// The local folder, and the S3 store when available.
    pub fn each() -> Vec<TestBlobs> {
        let mut all = vec![TestBlobs::local()];
        all.extend(TestBlobs::s3());
        all
    }
}
