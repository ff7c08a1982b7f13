//! The ring of signing keys in the database (SQLite and PostgreSQL), as every replica of the
//! auth service keeps it: one first key however many replicas start at once, one new key per
//! rotation published an hour before it signs, the replaced key forgotten once its tokens
//! expired, the private keys sealed at rest, and the same JWKS published by every replica.

use std::{sync::Mutex, time::Duration};

use telehealth_auth::{
    MIGRATIONS,
    core::{PUBLISH_AHEAD, Signing},
    keys::KeyRing,
    tokens::TokenPolicy,
};
use telehealth_kit::{sealed::KeyRing as SealingKeys, testing::TestDatabase};

const ROTATION: Duration = Duration::from_secs(30 * 86_400);
const LIFETIME: Duration = Duration::from_secs(300);

fn replica(sealing_key_file: &std::path::Path) -> Signing {
    Signing {
        ring: Mutex::new(KeyRing::default()),
        sealer: SealingKeys::load(sealing_key_file).expect("sealing keys"),
        policy: TokenPolicy {
            issuer: "https://telehealth.example/auth".into(),
            audience: "telehealth".into(),
            lifetime: LIFETIME,
        },
        rotation: ROTATION,
    }
}

fn signing_kid(signing: &Signing, now: u64) -> String {
    signing
        .ring
        .lock()
        .expect("ring")
        .signing_kid(now)
        .expect("a key signs")
        .to_owned()
}

#[tokio::test]
async fn replicas_share_one_sealed_ring_that_rotates_once_and_forgets_replaced_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("auth-sealing.keys");
    SealingKeys::load_or_create(&key_file, true).expect("created");
    for test in TestDatabase::each_backend().await {
        let backend = test.backend();
        test.db.migrate(&MIGRATIONS).await.expect("migrated");
        let (a, b) = (replica(&key_file), replica(&key_file));
        let t0 = 1_800_000_000;

        // Two replicas starting together: one first key between them, signing at once.
        let (first_a, first_b) = tokio::join!(a.maintain(&test.db, t0), b.maintain(&test.db, t0));
        first_a.expect("a");
        first_b.expect("b");
        a.maintain(&test.db, t0).await.expect("a again");
        let ring = a.load(&test.db).await.expect("ring");
        assert_eq!(ring.keys().len(), 1, "{backend:?}: {ring:?}");
        let first = signing_kid(&a, t0);
        assert_eq!(signing_kid(&b, t0), first, "{backend:?}");

        // Sealed at rest: the stored column is not the key.
        let mut conn = test.db.pool().acquire().await.expect("conn");
        let stored: String = sqlx::query_scalar("SELECT sealed_pkcs8 FROM auth_signing_keys")
            .fetch_one(&mut *conn)
            .await
            .expect("row");
        drop(conn);
        let plain = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &ring.keys()[0].pkcs8,
        );
        assert!(
            stored.starts_with("v1.") && !stored.contains(&plain),
            "{backend:?}"
        );

        // Rotation due on both: one new key, published now, signing an hour later.
        let t1 = t0 + ROTATION.as_secs();
        let (rotated_a, rotated_b) =
            tokio::join!(a.maintain(&test.db, t1), b.maintain(&test.db, t1));
        rotated_a.expect("a");
        rotated_b.expect("b");
        let ring = b.load(&test.db).await.expect("ring");
        assert_eq!(ring.keys().len(), 2, "{backend:?}: one new key, not two");
        assert_eq!(signing_kid(&a, t1), first, "{backend:?}: not yet");
        let published = |signing: &Signing| {
            let ring = signing.ring.lock().expect("ring").clone();
            ring.jwks().expect("jwks")
        };
        assert_eq!(
            published(&a),
            published(&b),
            "{backend:?}: every replica publishes the same"
        );
        let t2 = t1 + PUBLISH_AHEAD.as_secs();
        a.maintain(&test.db, t2).await.expect("a");
        let second = signing_kid(&a, t2);
        assert_ne!(
            second, first,
            "{backend:?}: the new key signs after the hour"
        );

        // The replaced key goes once no token it signed can be valid.
        a.maintain(&test.db, t2 + LIFETIME.as_secs())
            .await
            .expect("a");
        let ring = a.load(&test.db).await.expect("ring");
        assert_eq!(
            ring.keys()
                .iter()
                .map(|k| k.kid.as_str())
                .collect::<Vec<_>>(),
            [second.as_str()],
            "{backend:?}"
        );
        test.cleanup().await;
    }
}
