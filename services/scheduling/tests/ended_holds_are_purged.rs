//! Holds are kept after they end (so that a late `ReleaseHold` answers `released: false`), but
//! not for ever: the idempotency purge forgets them, and the busy time of lapsed ones, once they
//! ended before its retention. On SQLite and PostgreSQL.

use jiff::{SignedDuration, Timestamp};
use sqlx::Row;
use telehealth_kit::{
    Part, idempotency, identity::Caller, record::ActorRecord, testing::TestDatabase,
};
use telehealth_scheduling::{
    domain::Interval,
    store::{self, HoldEnd, HoldRow},
};

fn hold(id: &str, start: Timestamp, expires_at: Timestamp) -> HoldRow {
    HoldRow {
        hold_id: id.to_owned(),
        org_id: "cds-gueret".to_owned(),
        doctor: "dr-martin".to_owned(),
        nurse: None,
        time: Interval {
            start,
            end: start + SignedDuration::from_mins(30),
        },
        expires_at,
        created_by: ActorRecord::of(&Caller::Service(Part::Scheduling)),
        ended: None,
    }
}

#[tokio::test]
async fn holds_that_ended_before_the_retention_are_forgotten_and_the_others_kept() {
    for test in TestDatabase::each_backend().await {
        let db = &test.db;
        db.migrate(&telehealth_scheduling::definition().migrations)
            .await
            .expect("migrations");
        let mut conn = db.pool().acquire().await.expect("connection");
        let now = Timestamp::now();
        let cutoff = now - SignedDuration::from_hours(24 * 7);
        let long_ago = cutoff - SignedDuration::from_hours(1);
        let recently = cutoff + SignedDuration::from_hours(1);
        // Lapsed long ago (its busy time was never freed), released long ago, consumed recently,
        // lapsed recently, still running.
        let cases = [
            ("lapsed-old", long_ago, None, false),
            (
                "released-old",
                now,
                Some((HoldEnd::Released, long_ago)),
                false,
            ),
            (
                "consumed-recent",
                long_ago,
                Some((HoldEnd::Consumed, recently)),
                true,
            ),
            ("lapsed-recent", recently, None, true),
            ("running", now + SignedDuration::from_mins(5), None, true),
        ];
        for (id, expires_at, ended, _) in &cases {
            let row = hold(id, now + SignedDuration::from_hours(48), *expires_at);
            store::insert_hold(&mut conn, &row).await.expect("hold");
            store::occupy(&mut conn, "dr-martin", id, row.time, Some(*expires_at))
                .await
                .expect("busy time");
            if let Some((how, at)) = ended {
                store::end_hold(&mut conn, id, *how, *at)
                    .await
                    .expect("ended");
            }
        }

        idempotency::purge_with(&mut conn, cutoff, &store::PURGE_ENDED_HOLDS)
            .await
            .expect("purge");

        for (id, _, _, kept) in &cases {
            let found = store::hold(&mut conn, id).await.expect("read").is_some();
            assert_eq!(found, *kept, "{id} on {:?}", test.backend());
        }
        let busy: Vec<String> = sqlx::query("SELECT owner_id FROM busy_time ORDER BY owner_id")
            .fetch_all(&mut *conn)
            .await
            .expect("busy time")
            .iter()
            .map(|row| row.try_get("owner_id").expect("owner"))
            .collect();
        assert_eq!(
            busy,
            ["lapsed-recent", "running"],
            "only unfinished holds and recently lapsed ones keep busy time ({:?})",
            test.backend()
        );
        drop(conn);
        test.cleanup().await;
    }
}
