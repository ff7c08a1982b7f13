//! The SQLite and PostgreSQL migrations of every part are written twice, once per dialect. This
//! test applies both sets and compares the schemas they produce, so the twins cannot drift:
//! the same tables, the same columns with the same kind of type and nullability, the same primary
//! keys, unique constraints and indexes (by their columns, uniqueness and partiality).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use sqlx::{Row, migrate::Migrator};
use telehealth_kit::{
    db::{Backend, Database, Migrations},
    idempotency::KeyedRequest,
    serve::ServiceDefinition,
    testing::TestDatabase,
};

/// One column as both dialects can describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    name: String,
    kind: &'static str,
    not_null: bool,
}

/// An index, a unique constraint or a primary key, by what it covers rather than its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    columns: Vec<String>,
    unique: bool,
    primary: bool,
    partial: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    columns: BTreeSet<Column>,
    indexes: BTreeSet<Index>,
}

type Schema = BTreeMap<String, Table>;

/// The family of a declared type: SQLite keeps booleans as integers and JSON as text, so only
/// the storage class is compared.
fn kind(declared: &str) -> &'static str {
    let declared = declared.to_ascii_lowercase();
    if declared.contains("int") || declared.contains("bool") {
        "integer"
    } else if declared.contains("char") || declared.contains("text") || declared.contains("json") {
        "text"
    } else if declared.contains("real") || declared.contains("double") || declared.contains("float")
    {
        "real"
    } else if declared.contains("blob") || declared.contains("bytea") {
        "bytes"
    } else {
        "other"
    }
}

/// Tables the migration tool keeps for itself.
fn is_bookkeeping(table: &str) -> bool {
    table == "_sqlx_migrations" || table.starts_with("sqlite_")
}

async fn sqlite_schema(db: &Database) -> Schema {
    let pool = db.pool();
    let tables: Vec<String> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .expect("list SQLite tables")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .filter(|name| !is_bookkeeping(name))
            .collect();
    let mut schema = Schema::new();
    for name in tables {
        let mut table = Table::default();
        let mut primary: Vec<(i64, String)> = Vec::new();
        for row in sqlx::query(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .expect("SQLite columns")
        {
            let column: String = row.get(0);
            let pk: i64 = row.get(3);
            if pk > 0 {
                primary.push((pk, column.clone()));
            }
            table.columns.insert(Column {
                kind: kind(&row.get::<String, _>(1)),
                // A primary key column is never NULL on PostgreSQL; SQLite lets a non-integer
                // key be NULL unless told otherwise, which no code here relies on.
                not_null: row.get::<i64, _>(2) != 0 || pk > 0,
                name: column,
            });
        }
        if !primary.is_empty() {
            primary.sort();
            table.indexes.insert(Index {
                columns: primary.into_iter().map(|(_, column)| column).collect(),
                unique: true,
                primary: true,
                partial: false,
            });
        }
        for row in
            sqlx::query("SELECT name, \"unique\", origin, partial FROM pragma_index_list($1)")
                .bind(&name)
                .fetch_all(pool)
                .await
                .expect("SQLite indexes")
        {
            let origin: String = row.get(2);
            if origin == "pk" {
                continue; // described above, from the columns
            }
            let index: String = row.get(0);
            let columns = sqlx::query(
                "SELECT COALESCE(name, '<expression>') FROM pragma_index_info($1) ORDER BY seqno",
            )
            .bind(&index)
            .fetch_all(pool)
            .await
            .expect("SQLite index columns")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
            table.indexes.insert(Index {
                columns,
                unique: row.get::<i64, _>(1) != 0,
                primary: false,
                partial: row.get::<i64, _>(3) != 0,
            });
        }
        schema.insert(name, table);
    }
    schema
}

async fn postgres_schema(db: &Database) -> Schema {
    let pool = db.pool();
    let mut schema = Schema::new();
    for row in sqlx::query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("list PostgreSQL tables")
    {
        let name: String = row.get(0);
        if !is_bookkeeping(&name) {
            schema.insert(name, Table::default());
        }
    }
    for row in sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL columns")
    {
        let Some(table) = schema.get_mut(&row.get::<String, _>(0)) else {
            continue;
        };
        table.columns.insert(Column {
            name: row.get(1),
            kind: kind(&row.get::<String, _>(2)),
            not_null: row.get::<String, _>(3) == "NO",
        });
    }
    for row in sqlx::query(
        "SELECT t.relname::text, ix.indisunique, ix.indisprimary, ix.indpred IS NOT NULL, \
                array_to_string(ARRAY( \
                    SELECT COALESCE(a.attname::text, '<expression>') \
                    FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) \
                    LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                        AND k.attnum <> 0 \
                    ORDER BY k.position), ',') \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace ns ON ns.oid = t.relnamespace \
         WHERE ns.nspname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL indexes")
    {
        let Some(table) = schema.get_mut(&row.get::<String, _>(0)) else {
            continue;
        };
        let columns: String = row.get(4);
        table.indexes.insert(Index {
            columns: columns.split(',').map(str::to_owned).collect(),
            unique: row.get(1),
            primary: row.get(2),
            partial: row.get(3),
        });
    }
    schema
}

/// Every difference between the two schemas, in words.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    for name in sqlite
        .keys()
        .chain(postgres.keys())
        .collect::<BTreeSet<_>>()
    {
        match (sqlite.get(name), postgres.get(name)) {
            (Some(_), None) => found.push(format!("table {name}: only on SQLite")),
            (None, Some(_)) => found.push(format!("table {name}: only on PostgreSQL")),
            (Some(left), Some(right)) => {
                for column in left.columns.symmetric_difference(&right.columns) {
                    let side = if left.columns.contains(column) {
                        "SQLite"
                    } else {
                        "PostgreSQL"
                    };
                    found.push(format!("table {name}: column {column:?} only on {side}"));
                }
                for index in left.indexes.symmetric_difference(&right.indexes) {
                    let side = if left.indexes.contains(index) {
                        "SQLite"
                    } else {
                        "PostgreSQL"
                    };
                    found.push(format!("table {name}: index {index:?} only on {side}"));
                }
            }
            (None, None) => unreachable!("the name comes from one of the two"),
        }
    }
    found
}

fn every_part() -> Vec<ServiceDefinition> {
    vec![
        telehealth_scheduling::definition(),
        telehealth_expertise::definition(),
        telehealth_wound::definition(),
        telehealth_signalling::definition(),
        telehealth_directory::definition(),
    ]
}

#[tokio::test]
async fn sqlite_and_postgresql_migrations_of_every_part_build_the_same_schema() {
    let mut drift = Vec::new();
    for part in every_part() {
        let sqlite = TestDatabase::sqlite().await;
        sqlite
            .db
            .migrate(&part.migrations)
            .await
            .expect("SQLite migrations apply");
        let Some(postgres) = TestDatabase::postgres().await else {
            sqlite.cleanup().await;
            return; // skipped with a message outside CI
        };
        assert_eq!(postgres.backend(), Backend::Postgres);
        postgres
            .db
            .migrate(&part.migrations)
            .await
            .expect("PostgreSQL migrations apply");

        let left = sqlite_schema(&sqlite.db).await;
        let right = postgres_schema(&postgres.db).await;
        assert!(
            left.len() > 1,
            "{}: the SQLite schema has tables",
            part.part
        );
        drift.extend(
            differences(&left, &right)
                .into_iter()
                .map(|difference| format!("{}: {difference}", part.part)),
        );
        sqlite.cleanup().await;
        postgres.cleanup().await;
    }
    assert!(
        drift.is_empty(),
        "the SQLite and PostgreSQL migrations disagree:\n{}",
        drift.join("\n")
    );
}

#[test]
fn a_drift_is_reported() {
    let column = |name: &str, not_null| Column {
        name: name.into(),
        kind: "text",
        not_null,
    };
    let mut sqlite = Schema::new();
    let mut postgres = Schema::new();
    sqlite.insert(
        "notes".into(),
        Table {
            columns: [column("id", true), column("body", false)].into(),
            indexes: BTreeSet::new(),
        },
    );
    postgres.insert(
        "notes".into(),
        Table {
            columns: [column("id", true), column("body", true)].into(),
            indexes: BTreeSet::new(),
        },
    );
    postgres.insert("extra".into(), Table::default());
    let found = differences(&sqlite, &postgres);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .any(|line| line == "table extra: only on PostgreSQL")
    );
}

/// A part's migrations as they were before `version` (read from its folders), to build the schema
/// of a database that has not taken the newer ones yet.
async fn migrations_before(part: &str, version: &str) -> (tempfile::TempDir, Migrations) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut leaked = Vec::new();
    for dialect in ["sqlite", "postgres"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("services")
            .join(part)
            .join("migrations")
            .join(dialect);
        let to = dir.path().join(dialect);
        std::fs::create_dir(&to).expect("dialect folder");
        for file in std::fs::read_dir(&from).expect("migrations folder") {
            let file = file.expect("migration file");
            if file.file_name().to_string_lossy().as_ref() < version {
                std::fs::copy(file.path(), to.join(file.file_name())).expect("copy");
            }
        }
        let migrator = Migrator::new(to).await.expect("older migrations");
        leaked.push(&*Box::leak(Box::new(migrator)));
    }
    let migrations = Migrations {
        sqlite: leaked[0],
        postgres: leaked[1],
    };
    (dir, migrations)
}

#[tokio::test]
async fn the_idempotency_keys_of_every_service_move_to_the_kit_table() {
    let parts = [
        (
            "scheduling",
            "idempotency_keys",
            telehealth_scheduling::definition(),
        ),
        (
            "expertise",
            "expertise_idempotency_keys",
            telehealth_expertise::definition(),
        ),
        ("wound", "idempotency_keys", telehealth_wound::definition()),
    ];
    for (name, old_table, part) in parts {
        let (_dir, older) = migrations_before(name, "0103").await;
        for test_db in TestDatabase::each_backend().await {
            let backend = test_db.backend();
            let pool = test_db.db.pool();
            test_db
                .db
                .migrate(&older)
                .await
                .expect("older migrations apply");
            let keyed = KeyedRequest::new("dr-martin", "Op", "key-1", "content");
            // The stored hash is the SHA-256 (hex) of the content, as every service wrote it.
            sqlx::query(&format!(
                "INSERT INTO {old_table} \
                 (caller, operation, idempotency_key, request_hash, result_id, created_at_us) \
                 VALUES ('dr-martin', 'Op', 'key-1', $1, 'result-1', $2), \
                        ('dr-martin', 'Op', '', '', '', 0)"
            ))
            .bind(keyed_hash("content"))
            .bind(Timestamp::now().as_microsecond())
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{name} {backend:?}: old key: {e}"));

            test_db
                .db
                .migrate(&part.migrations)
                .await
                .expect("migrations apply");

            let mut conn = pool.acquire().await.expect("acquire");
            assert_eq!(
                keyed.replay(&mut conn).await.expect("replay"),
                Some("result-1".into()),
                "{name} {backend:?}: the old key still replays its result"
            );
            let moved: i64 = sqlx::query("SELECT COUNT(*) FROM idempotency_records")
                .fetch_one(&mut *conn)
                .await
                .expect("count")
                .get(0);
            let expected = if name == "expertise" { 1 } else { 2 };
            assert_eq!(
                moved, expected,
                "{name} {backend:?}: keys moved (expertise's lock rows are not keys)"
            );
            let old = sqlx::query(&format!("SELECT COUNT(*) FROM {old_table}"))
                .fetch_one(&mut *conn)
                .await;
            assert!(old.is_err(), "{name} {backend:?}: the old table is dropped");
            drop(conn);
            test_db.cleanup().await;
        }
    }
}

fn keyed_hash(content: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(content.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
