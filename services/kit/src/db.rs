//! The database each service owns: SQLite (embedded default) or PostgreSQL.
//!
//! One code path for both: services talk to an `sqlx::AnyPool` with portable SQL (`$1`
//! placeholders work on both), and keep two migration folders (`migrations/sqlite`,
//! `migrations/postgres`) where the dialects differ. With SQLite each service has its own file;
//! with PostgreSQL each service has its own schema in the configured database, so services never
//! share tables even when they share a server.

use std::{path::Path, time::Duration};

use futures::future::BoxFuture;
use sqlx::{
    AnyPool, Connection, Executor,
    any::AnyPoolOptions,
    migrate::{Migration, MigrationSource, Migrator},
};

use crate::{config::DatabaseSettings, error::KitError, part::Part};

/// Migrations of the shared kit (the audit log), applied before each service's own.
static KIT_SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static KIT_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// A pooled connection idle this long is checked before it is handed out again.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Which engine is behind a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's migrations, one set per dialect. Versions must be 100 or more: 1-99 belong to
/// the kit.
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// A connection pool to one service's database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL only: the URL and schema, for the LISTEN connection of the event bus.
    postgres: Option<(String, String)>,
}

impl Database {
    /// Connects `part` to its database as `settings` and `data_dir` say: its SQLite file
    /// `<data_dir>/db/<part>.db` by default, or its schema in the configured PostgreSQL.
    pub async fn connect(
        settings: &DatabaseSettings,
        data_dir: &Path,
        part: Part,
    ) -> Result<Self, KitError> {
        let url = match &settings.url {
            Some(url) => url.clone(),
            None => {
                let dir = data_dir.join("db");
                std::fs::create_dir_all(&dir).map_err(|e| KitError::io(&dir, e))?;
                sqlite_url(&dir.join(format!("{part}.db")))
            }
        };
        let schema = format!("{}{}", settings.schema_prefix, part.name());
        Self::connect_url(&url, &schema, settings).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`). On PostgreSQL, `schema` is created if
    /// needed and put first on every connection's search path.
    pub async fn connect_url(
        url: &str,
        schema: &str,
        settings: &DatabaseSettings,
    ) -> Result<Self, KitError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(KitError::Config(
                "database url must start with sqlite: or postgres://".into(),
            ));
        };
        if !schema.starts_with(|c: char| c.is_ascii_lowercase())
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(KitError::Config(format!("invalid schema name `{schema}`")));
        }

        if backend == Backend::Postgres {
            // Create the schema once, on a plain connection, before the pool points at it.
            let bootstrap = AnyPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            bootstrap
                .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await?;
            bootstrap.close().await;
        }

        let search_path = format!("SET search_path TO {schema}");
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_seconds))
            // sqlx checks every connection it takes back (a round trip on its release); checking
            // it again when it is handed out would cost a second round trip per use. Only a
            // connection idle for a while, which a server restart may have cut since, is checked.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                let search_path = search_path.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // WAL lets readers work while one writer commits; busy_timeout makes
                            // concurrent writers queue instead of failing with SQLITE_BUSY.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Backend::Postgres => {
                            conn.execute(search_path.as_str()).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let postgres = (backend == Backend::Postgres).then(|| (url.to_owned(), schema.to_owned()));
        Ok(Database {
            pool,
            backend,
            postgres,
        })
    }

    /// Applies the kit's migrations, then the service's, in one versioned sequence.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), KitError> {
        let (kit, own) = match self.backend {
            Backend::Sqlite => (&KIT_SQLITE, service.sqlite),
            Backend::Postgres => (&KIT_POSTGRES, service.postgres),
        };
        if let Some(clash) = own.iter().find(|m| m.version < 100) {
            return Err(KitError::Config(format!(
                "service migration {} uses a version below 100, reserved for the kit",
                clash.version
            )));
        }
        let all: Vec<Migration> = kit.iter().chain(own.iter()).cloned().collect();
        let migrator = Migrator::new(MigrationList(all)).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// PostgreSQL URL and schema (`None` on SQLite).
    pub fn postgres_target(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|(url, schema)| (url.as_str(), schema.as_str()))
    }

    /// Checks that the database answers; readiness follows it.
    pub async fn ping(&self) -> Result<(), KitError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (waits for the ones in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL of a SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// True when `error` is a unique or exclusion constraint violation: the database refused a
/// conflicting write (a double booking, a second claimer, a concurrent audit append).
pub fn is_conflict(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || db.code().is_some_and(|code| {
                    // 23P01: PostgreSQL exclusion_violation; 40001: serialization_failure.
                    code == "23P01" || code == "40001"
                })
        }
        _ => false,
    }
}

/// A fixed list of migrations, so the kit's and a service's can run as one sequence.
#[derive(Debug)]
struct MigrationList(Vec<Migration>);

impl<'s> MigrationSource<'s> for MigrationList {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}
