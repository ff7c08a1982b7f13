//! Sign-ins in progress, kept server side (SQLite and PostgreSQL), against the real test
//! provider: a started sign-in finishes once; a replayed, forged or late callback finds nothing
//! and never reaches the provider.

mod common;

use std::time::Duration;

use common::{browse, relying_party, secret, start_provider};
use telehealth_auth::{
    MIGRATIONS,
    logins::{LoginError, Logins},
    oidc::ClientKey,
};
use telehealth_kit::testing::TestDatabase;

const DEVICE: &str = "thumbprint-of-the-nurses-phone";

#[tokio::test]
async fn a_started_sign_in_finishes_once_and_a_forged_replayed_or_late_callback_is_refused() {
    let (key, _) = ClientKey::generate("telehealth-1").expect("key");
    let Some(provider) = start_provider(&key).await else {
        return;
    };
    let rp = relying_party(&provider, secret()).await;
    for test in TestDatabase::each_backend().await {
        let backend = test.backend();
        test.db.migrate(&MIGRATIONS).await.expect("migrated");
        let logins = Logins::new(test.db.clone(), Duration::from_secs(600));
        let t0 = 1_800_000_000_000_000;

        let url = logins
            .start(&rp, "psc", DEVICE, Some("psc-dr-martin"), t0)
            .await
            .expect("started");
        let (state, code) = browse(url).await;
        // A callback naming a sign-in never started here.
        let forged = logins
            .finish(&rp, "psc", "forged-state", &code, t0 + 1)
            .await;
        assert!(
            matches!(forged, Err(LoginError::UnknownState)),
            "{backend:?}: {forged:?}"
        );
        // The same state announced as coming from another provider.
        let crossed = logins.finish(&rp, "other", &state, &code, t0 + 1).await;
        assert!(
            matches!(crossed, Err(LoginError::UnknownState)),
            "{backend:?}"
        );

        let finished = logins
            .finish(&rp, "psc", &state, &code, t0 + 2)
            .await
            .expect("finished");
        assert_eq!(finished.person.national_id.as_deref(), Some("810100000008"));
        assert_eq!(finished.device_key, DEVICE);
        // Replayed: the sign-in is gone.
        let replayed = logins.finish(&rp, "psc", &state, &code, t0 + 3).await;
        assert!(
            matches!(replayed, Err(LoginError::UnknownState)),
            "{backend:?}: {replayed:?}"
        );

        // A callback after ten minutes is refused, and the sign-in is gone with it.
        let url = logins
            .start(&rp, "psc", DEVICE, None, t0)
            .await
            .expect("started");
        let (state, code) = browse(url).await;
        let late = logins
            .finish(&rp, "psc", &state, &code, t0 + 600_000_000)
            .await;
        assert!(
            matches!(late, Err(LoginError::Expired)),
            "{backend:?}: {late:?}"
        );

        // Abandoned sign-ins are purged once expired.
        logins
            .start(&rp, "psc", DEVICE, None, t0)
            .await
            .expect("started");
        assert_eq!(logins.purge(t0 + 1).await.expect("purged"), 0);
        assert_eq!(logins.purge(t0 + 600_000_000).await.expect("purged"), 1);
        test.cleanup().await;
    }
}
