//! Idempotency keys on both engines: the first answer is replayed, another request under the
//! same key is refused, keys are scoped to the caller and the RPC, racing retries queue behind
//! the first attempt, and old keys are purged.

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    db::Migrations,
    idempotency::{self, Claim, IdempotencyError, KeyedRequest},
    testing::TestDatabase,
};

static NOTES_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/fixtures/migrations/sqlite");
static NOTES_POSTGRES: sqlx::migrate::Migrator =
    sqlx::migrate!("tests/fixtures/migrations/postgres");

const NOTES: Migrations = Migrations {
    sqlite: &NOTES_SQLITE,
    postgres: &NOTES_POSTGRES,
};

async fn migrated() -> Vec<TestDatabase> {
    let mut all = TestDatabase::each_backend().await;
    for test_db in &mut all {
        test_db.db.migrate(&NOTES).await.expect("migrations apply");
    }
    all
}

fn booking(subject: &str, key: &str, content: &str) -> KeyedRequest {
    KeyedRequest::new(subject, "BookAppointment", key, content)
}

#[tokio::test]
async fn a_retry_replays_the_first_result_and_other_content_is_a_conflict() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let now = Timestamp::now();
        let first = booking("dr-martin", "k1", "9:00 with nurse-claire");

        let mut tx = test_db.db.pool().begin().await.expect("begin");
        assert_eq!(
            first.replay(&mut tx).await.expect("replay"),
            None,
            "{backend:?}: new key"
        );
        first.record(&mut tx, "appt-1", now).await.expect("record");
        tx.commit().await.expect("commit");

        let mut conn = test_db.db.pool().acquire().await.expect("acquire");
        let again = booking("dr-martin", "k1", "9:00 with nurse-claire");
        assert_eq!(
            again.replay(&mut conn).await.expect("replay"),
            Some("appt-1".into()),
            "{backend:?}: the same request replays the first result"
        );
        assert_eq!(
            again.claim(&mut conn, "appt-2", now).await.expect("claim"),
            Claim::Replay("appt-1".into()),
            "{backend:?}: claiming a recorded key replays it"
        );
        let other = booking("dr-martin", "k1", "10:00 with nurse-claire");
        assert!(
            matches!(
                other.replay(&mut conn).await,
                Err(IdempotencyError::Conflict)
            ),
            "{backend:?}: other content under the same key is a conflict"
        );
        assert!(
            matches!(
                other.claim(&mut conn, "appt-3", now).await,
                Err(IdempotencyError::Conflict)
            ),
            "{backend:?}: and cannot be claimed"
        );
        assert!(
            matches!(
                again.record(&mut conn, "appt-4", now).await,
                Err(IdempotencyError::Raced)
            ),
            "{backend:?}: recording a key someone holds is refused"
        );
        drop(conn);
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller_and_the_rpc() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let now = Timestamp::now();
        let mut conn = test_db.db.pool().acquire().await.expect("acquire");
        booking("dr-martin", "same", "a")
            .record(&mut conn, "appt-1", now)
            .await
            .expect("record");
        let cases = [
            ("another caller", booking("dr-durand", "same", "b")),
            (
                "another RPC",
                KeyedRequest::new("dr-martin", "CreateDraft", "same", "b"),
            ),
        ];
        for (case, request) in cases {
            assert_eq!(
                request.replay(&mut conn).await.expect("replay"),
                None,
                "{backend:?}: {case} does not see the key"
            );
            assert_eq!(
                request.claim(&mut conn, case, now).await.expect("claim"),
                Claim::First,
                "{backend:?}: {case} has a key of its own"
            );
        }
        drop(conn);
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn a_refused_request_leaves_no_key_behind() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let request = booking("dr-martin", "k", "a");
        let mut tx = test_db.db.pool().begin().await.expect("begin");
        assert_eq!(
            request
                .claim(&mut tx, "appt-1", Timestamp::now())
                .await
                .expect("claim"),
            Claim::First
        );
        tx.rollback().await.expect("rollback");
        let mut conn = test_db.db.pool().acquire().await.expect("acquire");
        assert_eq!(
            booking("dr-martin", "k", "other")
                .replay(&mut conn)
                .await
                .expect("replay"),
            None,
            "{backend:?}: the key is free again, even for another request"
        );
        drop(conn);
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_racing_its_first_attempt_waits_for_it_and_replays_it() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let now = Timestamp::now();
        let request = booking("nurse-claire", "race", "a");
        let mut first = test_db.db.pool().begin().await.expect("begin");
        assert_eq!(
            request
                .claim(&mut first, "appt-1", now)
                .await
                .expect("claim"),
            Claim::First
        );
        let pool = test_db.db.pool().clone();
        let retry = {
            let request = request.clone();
            tokio::spawn(async move {
                let mut tx = pool.begin().await.expect("begin");
                let claim = request.claim(&mut tx, "appt-2", now).await;
                tx.commit().await.expect("commit");
                claim
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !retry.is_finished(),
            "{backend:?}: the retry waits for the first attempt"
        );
        first.commit().await.expect("commit");
        let claim = retry.await.expect("join").expect("claim");
        assert_eq!(
            claim,
            Claim::Replay("appt-1".into()),
            "{backend:?}: then replays its result"
        );
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn the_lock_queues_a_callers_transactions_of_one_rpc() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let now = Timestamp::now();
        let mut first = test_db.db.pool().begin().await.expect("begin");
        idempotency::lock(&mut first, "dr-martin", "CreateDraft", now)
            .await
            .expect("lock");
        let pool = test_db.db.pool().clone();
        let second = tokio::spawn(async move {
            let mut tx = pool.begin().await.expect("begin");
            idempotency::lock(&mut tx, "dr-martin", "CreateDraft", now)
                .await
                .expect("lock");
            tx.commit().await.expect("commit");
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "{backend:?}: the second waits");
        first.commit().await.expect("commit");
        second
            .await
            .expect("the second goes on once the first commits");
        assert!(
            idempotency::parse_key("").is_err(),
            "the lock's empty key is never a client's key"
        );
        test_db.cleanup().await;
    }
}

#[tokio::test]
async fn keys_older_than_the_retention_are_purged() {
    for test_db in migrated().await {
        let backend = test_db.backend();
        let now = Timestamp::now();
        let week = SignedDuration::from_hours(24 * 7);
        let mut conn = test_db.db.pool().acquire().await.expect("acquire");
        let old = booking("dr-martin", "old", "a");
        let recent = booking("dr-martin", "recent", "a");
        old.record(
            &mut conn,
            "appt-old",
            now - week - SignedDuration::from_secs(1),
        )
        .await
        .expect("record");
        recent
            .record(
                &mut conn,
                "appt-recent",
                now - week + SignedDuration::from_secs(60),
            )
            .await
            .expect("record");

        let purged = idempotency::purge(&mut conn, now - week)
            .await
            .expect("purge");

        assert_eq!(purged, 1, "{backend:?}: only the old key");
        assert_eq!(
            old.replay(&mut conn).await.expect("replay"),
            None,
            "{backend:?}"
        );
        assert_eq!(
            recent.replay(&mut conn).await.expect("replay"),
            Some("appt-recent".into()),
            "{backend:?}: the recent key is kept"
        );
        drop(conn);
        test_db.cleanup().await;
    }
}
