//! The shared database code and the audit trail, run identically on SQLite and PostgreSQL.

use sqlx::Row;
use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    db::{Backend, Migrations},
    identity::{Caller, Identity, Role},
    testing::TestDatabase,
};

static NOTES_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/fixtures/migrations/sqlite");
static NOTES_POSTGRES: sqlx::migrate::Migrator =
    sqlx::migrate!("tests/fixtures/migrations/postgres");

const NOTES: Migrations = Migrations {
    sqlite: &NOTES_SQLITE,
    postgres: &NOTES_POSTGRES,
};

fn nurse() -> Caller {
    Caller::Person(Identity {
        subject: "nurse-claire".into(),
        roles: vec![Role::Nurse],
        org: "cds-gueret".into(),
        specialty: None,
        cert_thumbprint: "thumb".into(),
    })
}

fn entry(record_id: &str) -> AuditEntry {
    AuditEntry::new(&nurse(), "GetWound", "wound", record_id, Outcome::Ok)
}

async fn migrated() -> Vec<TestDatabase> {
    let mut all = TestDatabase::each_backend().await;
    for test_db in &mut all {
        test_db.db.migrate(&NOTES).await.expect("migrations apply");
    }
    all
}

#[tokio::test]
async fn migrations_apply_twice_and_portable_sql_runs_on_both_backends() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        test_db
            .db
            .migrate(&NOTES)
            .await
            .expect("re-running migrations is a no-op");

        sqlx::query("INSERT INTO notes (id, body, written_at_us) VALUES ($1, $2, $3)")
            .bind("n1")
            .bind("pansement changé")
            .bind(1_700_000_000_000_000_i64)
            .execute(test_db.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: insert: {e}"));
        let row = sqlx::query("SELECT body, written_at_us FROM notes WHERE id = $1")
            .bind("n1")
            .fetch_one(test_db.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: select: {e}"));
        assert_eq!(
            row.get::<String, _>("body"),
            "pansement changé",
            "{backend:?}"
        );
        assert_eq!(
            row.get::<i64, _>("written_at_us"),
            1_700_000_000_000_000,
            "{backend:?}"
        );

        let duplicate =
            sqlx::query("INSERT INTO notes (id, body, written_at_us) VALUES ($1, $2, $3)")
                .bind("n1")
                .bind("again")
                .bind(0_i64)
                .execute(test_db.db.pool())
                .await
                .expect_err("primary key holds");
        assert!(
            telehealth_kit::db::is_conflict(&duplicate),
            "{backend:?}: {duplicate}"
        );
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn a_service_migration_below_version_100_is_refused() {
    static BAD: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
    let test_db = TestDatabase::sqlite().await;
    let error = test_db
        .db
        .migrate(&Migrations {
            sqlite: &BAD,
            postgres: &BAD,
        })
        .await
        .expect_err("kit versions are reserved");
    assert!(error.to_string().contains("below 100"), "{error}");
    test_db.cleanup().await;
}

#[tokio::test]
async fn audit_records_form_a_chain_that_verifies() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        for i in 1..=5 {
            let seq = audit::record(&test_db.db, &entry(&format!("w{i}")))
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: append: {e}"));
            assert_eq!(seq, i, "{backend:?}: sequence numbers have no gaps");
        }
        let report = audit::verify(&test_db.db).await.expect("verify runs");
        assert_eq!(report.records, 5, "{backend:?}");
        assert_eq!(
            report.broken, None,
            "{backend:?}: an untouched chain verifies"
        );
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_appends_never_fork_the_chain() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let db = test_db.db.clone();
                tokio::spawn(async move { audit::record(&db, &entry(&format!("w{i}"))).await })
            })
            .collect();
        for task in tasks {
            task.await
                .expect("task")
                .unwrap_or_else(|e| panic!("{backend:?}: concurrent append: {e}"));
        }
        let report = audit::verify(&test_db.db).await.expect("verify runs");
        assert_eq!(report.records, 24, "{backend:?}");
        assert_eq!(report.broken, None, "{backend:?}");
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn the_database_refuses_updates_and_deletes_of_audit_records() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        audit::record(&test_db.db, &entry("w1"))
            .await
            .expect("append");
        for statement in [
            "UPDATE audit_log SET record_id = 'w2' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 1",
        ] {
            let result = sqlx::query(statement).execute(test_db.db.pool()).await;
            assert!(
                result.is_err(),
                "{backend:?}: `{statement}` must be refused"
            );
        }
        test_db.cleanup().await;
    }
}

/// What an attacker with database admin rights does first.
async fn drop_append_only_triggers(test_db: &TestDatabase) {
    let statements: &[&str] = match test_db.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER audit_log_append_only ON audit_log"],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(test_db.db.pool())
            .await
            .expect("drop trigger");
    }
}

#[tokio::test]
async fn tampering_is_detected_and_the_first_broken_link_is_named() {
    let cases: [(&str, &str, i64); 4] = [
        (
            "altered middle record",
            "UPDATE audit_log SET record_id = 'other' WHERE seq = 3",
            3,
        ),
        (
            "deleted middle record",
            "DELETE FROM audit_log WHERE seq = 3",
            3,
        ),
        (
            "deleted newest record",
            "DELETE FROM audit_log WHERE seq = 5",
            5,
        ),
        (
            "re-chained middle record",
            "UPDATE audit_log SET prev_hash = hash WHERE seq = 2",
            2,
        ),
    ];
    for (case, tamper, broken_at) in cases {
        for test_db in migrated().await {
            let backend = test_db.backend();
            for i in 1..=5 {
                audit::record(&test_db.db, &entry(&format!("w{i}")))
                    .await
                    .expect("append");
            }
            drop_append_only_triggers(&test_db).await;
            sqlx::query(tamper)
                .execute(test_db.db.pool())
                .await
                .expect("tamper");

            let report = audit::verify(&test_db.db).await.expect("verify runs");
            let broken = report
                .broken
                .unwrap_or_else(|| panic!("{backend:?}: {case} must be detected"));
            assert_eq!(
                broken.seq, broken_at,
                "{backend:?}: {case}: {}",
                broken.reason
            );
            test_db.cleanup().await;
        }
    }
}

#[tokio::test]
async fn the_batched_writer_keeps_one_unbroken_chain_under_concurrency() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let writer = audit::AuditWriter::start(test_db.db.clone());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.record(entry(&format!("w{i}"))).await })
            })
            .collect();
        let mut sequences = Vec::new();
        for task in tasks {
            sequences.push(task.await.expect("task").expect("recorded once committed"));
        }
        sequences.sort_unstable();
        assert_eq!(
            sequences,
            (1..=200).collect::<Vec<i64>>(),
            "{backend:?}: one sequence number each"
        );
        let report = audit::verify(&test_db.db).await.expect("verify");
        assert_eq!((report.records, report.broken), (200, None), "{backend:?}");
        test_db.cleanup().await;
    }
}

async fn count_rows(pool: &sqlx::AnyPool, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count")
        .get::<i64, _>("n")
}

/// The record ids of the audit log, in the chain's order.
async fn chained_record_ids(pool: &sqlx::AnyPool) -> Vec<String> {
    sqlx::query("SELECT record_id FROM audit_log ORDER BY seq")
        .fetch_all(pool)
        .await
        .expect("read the log")
        .iter()
        .map(|row| row.get("record_id"))
        .collect()
}

#[tokio::test]
async fn staged_entries_commit_with_their_change_and_reach_the_chain_even_without_a_flush() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let pool = test_db.db.pool();
        let count = |table: &'static str| count_rows(pool, table);
        let writer = audit::AuditWriter::start(test_db.db.clone());

        // Rolled back with its change: never recorded.
        let mut tx = pool.begin().await.expect("begin");
        audit::stage(&mut tx, &entry("rolled-back"))
            .await
            .expect("stage");
        tx.rollback().await.expect("rollback");

        // Committed and flushed: in the chain when flush returns.
        let mut tx = pool.begin().await.expect("begin");
        audit::stage(&mut tx, &entry("flushed"))
            .await
            .expect("stage");
        tx.commit().await.expect("commit");
        writer.flush().await.expect("flush");
        assert_eq!(count("audit_log").await, 1, "{backend:?}");
        assert_eq!(count("audit_outbox").await, 0, "{backend:?}");

        // Committed, then the process "dies" before flushing: a writer (here a new one, as
        // after a restart or on another replica) chains it by itself within seconds.
        let mut tx = pool.begin().await.expect("begin");
        audit::stage(&mut tx, &entry("orphaned"))
            .await
            .expect("stage");
        tx.commit().await.expect("commit");
        drop(writer);
        let _restarted = audit::AuditWriter::start(test_db.db.clone());
        let mut chained = false;
        for _ in 0..60 {
            if count("audit_log").await == 2 {
                chained = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            chained,
            "{backend:?}: the orphaned entry is chained by the sweep"
        );
        let ids = chained_record_ids(pool).await;
        assert_eq!(ids, ["flushed", "orphaned"], "{backend:?}");
        let report = audit::verify(&test_db.db).await.expect("verify");
        assert_eq!((report.records, report.broken), (2, None), "{backend:?}");
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn a_flush_chains_more_staged_entries_than_one_statement_holds_in_their_order() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let pool = test_db.db.pool();
        let writer = audit::AuditWriter::start(test_db.db.clone());
        audit::record(&test_db.db, &entry("before"))
            .await
            .expect("record");
        // 1,100 staged entries: the flush chains them 512 per statement, oldest first.
        let mut tx = pool.begin().await.expect("begin");
        for i in 0..1100 {
            audit::stage(&mut tx, &entry(&format!("staged-{i:04}")))
                .await
                .expect("stage");
        }
        tx.commit().await.expect("commit");
        writer.flush().await.expect("flush");
        writer
            .record(entry("after"))
            .await
            .expect("recorded after the flush");

        let report = audit::verify(&test_db.db).await.expect("verify");
        assert_eq!((report.records, report.broken), (1102, None), "{backend:?}");
        let ids = chained_record_ids(pool).await;
        assert_eq!(
            ids.first().map(String::as_str),
            Some("before"),
            "{backend:?}"
        );
        assert_eq!(ids.last().map(String::as_str), Some("after"), "{backend:?}");
        let staged: Vec<&String> = ids[1..1101].iter().collect();
        let mut sorted = staged.clone();
        sorted.sort();
        assert_eq!(staged, sorted, "{backend:?}: in the order they were staged");
        assert_eq!(
            count_rows(pool, "audit_outbox").await,
            0,
            "{backend:?}: the outbox is empty"
        );
        test_db.cleanup().await;
    }
}
