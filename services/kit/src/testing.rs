//! Helpers for tests of the kit and of every service: fresh databases on both backends.
//!
//! PostgreSQL comes from `TELEHEALTH_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own schema, dropped by
//! [`TestDatabase::cleanup`]. When the server cannot be reached, the PostgreSQL half of a test is
//! skipped with a message, except under CI (`CI` set), where it fails: CI must prove both
//! backends.

use crate::{
    config::DatabaseSettings,
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
