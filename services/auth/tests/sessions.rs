//! Sessions and refresh tokens on SQLite and PostgreSQL: rotation on every use, reuse ending the
//! whole session, binding to the device, expiry, sign-out, and the access tokens issued for a
//! session verifying with the published keys.

use std::time::Duration;

use telehealth_auth::{
    MIGRATIONS,
    keys::KeyRing,
    sessions::{SessionError, SessionGrant, Sessions, end_reason},
    tokens::{TokenPolicy, access_token},
};
use telehealth_kit::{identity::Role, testing::TestDatabase, token::Claims};

const DEVICE: &str = "thumbprint-of-the-doctors-laptop";
const HOUR_US: i64 = 3_600_000_000;

fn grant() -> SessionGrant {
    SessionGrant {
        subject: "dr-martin".into(),
        org: "cds-bourganeuf".into(),
        roles: vec![Role::Doctor],
        specialty: None,
        device_thumbprint: DEVICE.into(),
        provider: "psc".into(),
    }
}

async fn sessions(test: &TestDatabase) -> Sessions {
    test.db.migrate(&MIGRATIONS).await.expect("migrated");
    Sessions::new(test.db.clone(), Duration::from_secs(12 * 3600))
}

#[tokio::test]
async fn each_refresh_rotates_the_token_and_a_reused_one_ends_the_session() {
    for test in TestDatabase::each_backend().await {
        let backend = test.backend();
        let sessions = sessions(&test).await;
        let t0 = 1_800_000_000_000_000;
        let opened = sessions.open(grant(), t0).await.expect("opened");
        let first = opened.refresh_token.clone();
        let second = sessions
            .refresh(&first, DEVICE, t0 + 1)
            .await
            .expect("refreshed")
            .refresh_token;
        assert_ne!(first, second, "{backend:?}: a new token each time");
        let third = sessions
            .refresh(&second, DEVICE, t0 + 2)
            .await
            .expect("refreshed again")
            .refresh_token;

        // The first token again: copied. The whole session ends, its newest token with it.
        let reused = sessions.refresh(&first, DEVICE, t0 + 3).await;
        assert!(
            matches!(reused, Err(SessionError::Reused)),
            "{backend:?}: {reused:?}"
        );
        let after = sessions.refresh(&third, DEVICE, t0 + 4).await;
        assert!(
            matches!(&after, Err(SessionError::Ended(reason)) if reason == end_reason::REFRESH_TOKEN_REUSED),
            "{backend:?}: {after:?}"
        );
        let ended = sessions
            .get(&opened.session.id)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(ended.ended_us, Some(t0 + 3));
        test.cleanup().await;
    }
}

#[tokio::test]
async fn racing_refreshes_with_one_token_give_one_answer_and_end_the_session() {
    for test in TestDatabase::each_backend().await {
        let backend = test.backend();
        let sessions = sessions(&test).await;
        let t0 = 1_800_000_000_000_000;
        let opened = sessions.open(grant(), t0).await.expect("opened");
        let attempts = (0..8).map(|i| {
            let sessions = sessions.clone();
            let token = opened.refresh_token.clone();
            tokio::spawn(async move { sessions.refresh(&token, DEVICE, t0 + 1 + i).await })
        });
        let mut won = 0;
        let mut reused = 0;
        for attempt in attempts {
            match attempt.await.expect("joined") {
                Ok(_) => won += 1,
                Err(SessionError::Reused | SessionError::Ended(_)) => reused += 1,
                Err(other) => panic!("{backend:?}: {other:?}"),
            }
        }
        assert_eq!((won, reused), (1, 7), "{backend:?}");
        let session = sessions.get(&opened.session.id).await.expect("read");
        assert!(session.expect("kept").ended_us.is_some(), "{backend:?}");
        test.cleanup().await;
    }
}

#[tokio::test]
async fn a_refresh_token_works_only_from_its_device_until_sign_out_or_expiry() {
    for test in TestDatabase::each_backend().await {
        let backend = test.backend();
        let sessions = sessions(&test).await;
        let t0 = 1_800_000_000_000_000;
        let opened = sessions.open(grant(), t0).await.expect("opened");

        // From another device: refused, and the token is not spent.
        let stolen = sessions
            .refresh(&opened.refresh_token, "another-device", t0 + 1)
            .await;
        assert!(
            matches!(stolen, Err(SessionError::OtherDevice)),
            "{backend:?}: {stolen:?}"
        );
        let next = sessions
            .refresh(&opened.refresh_token, DEVICE, t0 + 2)
            .await
            .expect("still valid on its device");

        // An unknown token says nothing more.
        let unknown = sessions.refresh("not-a-token", DEVICE, t0 + 3).await;
        assert!(matches!(unknown, Err(SessionError::Unknown)), "{backend:?}");

        // Listed while open; sign-out ends it.
        let listed = sessions
            .of_person("dr-martin", "cds-bourganeuf", t0 + 4)
            .await
            .expect("listed");
        assert_eq!(listed.len(), 1, "{backend:?}");
        assert!(
            sessions
                .end(&opened.session.id, end_reason::SIGNED_OUT, t0 + 5)
                .await
                .expect("ended")
        );
        assert!(
            !sessions
                .end(&opened.session.id, end_reason::SIGNED_OUT, t0 + 6)
                .await
                .expect("answered"),
            "ending twice changes nothing"
        );
        let refused = sessions.refresh(&next.refresh_token, DEVICE, t0 + 7).await;
        assert!(
            matches!(&refused, Err(SessionError::Ended(r)) if r == end_reason::SIGNED_OUT),
            "{backend:?}: {refused:?}"
        );
        assert!(
            sessions
                .of_person("dr-martin", "cds-bourganeuf", t0 + 8)
                .await
                .expect("listed")
                .is_empty()
        );

        // A session lasts 12 hours at most, whatever its refreshes.
        let other = sessions.open(grant(), t0).await.expect("opened");
        let late = sessions
            .refresh(&other.refresh_token, DEVICE, t0 + 12 * HOUR_US)
            .await;
        assert!(
            matches!(late, Err(SessionError::Expired)),
            "{backend:?}: {late:?}"
        );
        test.cleanup().await;
    }
}

#[tokio::test]
async fn the_access_token_of_a_session_is_bound_to_its_device_and_verifies_with_the_jwks() {
    let test = TestDatabase::sqlite().await;
    let sessions = sessions(&test).await;
    let now = 1_800_000_000;
    let issued = sessions
        .open(grant(), now as i64 * 1_000_000)
        .await
        .expect("opened");
    let ring = KeyRing::default();
    let ring = ring.with(ring.next_key(now).expect("a key"));
    let policy = TokenPolicy {
        issuer: "https://telehealth.example/auth".into(),
        audience: "telehealth".into(),
        lifetime: Duration::from_secs(300),
    };
    let token = access_token(&ring, &policy, &issued.session, now).expect("signed");

    let header = jsonwebtoken::decode_header(&token).expect("header");
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(ring.jwks().expect("jwks")).expect("a JWKS");
    let jwk = set
        .find(header.kid.as_deref().expect("kid"))
        .expect("the key is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["https://telehealth.example/auth"]);
    validation.set_audience(&["telehealth"]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &validation,
    )
    .expect("verifies")
    .claims;
    assert_eq!(claims.sub, "dr-martin");
    assert_eq!(claims.org, "cds-bourganeuf");
    assert_eq!(claims.roles, vec![Role::Doctor]);
    assert_eq!(claims.exp - claims.iat, 300, "minutes, not hours");
    assert_eq!(claims.cnf.expect("bound").x5t_s256, DEVICE);
    test.cleanup().await;
}
