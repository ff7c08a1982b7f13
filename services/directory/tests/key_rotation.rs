//! Key rotation of the patient register, on SQLite and PostgreSQL: a new data key seals new
//! writes while older keys still open what they sealed; re-encryption moves every stored field
//! to the new key, after which the old key can leave the key file; searches keep working.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD};
use sqlx::Row;
use telehealth_directory::patients::{
    core::{Created, Register},
    ins::{Ins, InsKind},
    model::{
        Address, ConsentAct, ConsentInput, Contact, Decision, IdentityTraits, Method, PatientInput,
        SearchCriteria, Sex,
    },
    vault::Vault,
};
use telehealth_kit::{
    identity::{Caller, Identity, Role},
    sealed::KeyRing,
    service_core::ServiceCore,
    testing::TestDatabase,
};

/// A key file's text with the index key and the data keys `ids` (key bytes follow the id).
fn keys(ids: &[&str]) -> KeyRing {
    let mut text = format!("index {}\n", STANDARD.encode([42u8; 32]));
    for id in ids {
        let byte = id.bytes().last().unwrap_or(0);
        text.push_str(&format!("data {id} {}\n", STANDARD.encode([byte; 32])));
    }
    KeyRing::parse(&text).expect("valid key file")
}

fn doctor() -> Caller {
    Caller::Person(Identity {
        subject: "dr-cle".into(),
        roles: vec![Role::Doctor],
        org: "cds-cle".into(),
        specialty: None,
        cert_thumbprint: "t".into(),
    })
}

fn input() -> PatientInput {
    PatientInput {
        identity: IdentityTraits {
            birth_name: "ROCHE".into(),
            first_names: "Émilie".into(),
            used_first_name: "Émilie".into(),
            used_name: String::new(),
            sex: Sex::Female,
            birth_date: "1950-06-01".parse().expect("date"),
            birth_place_code: "87085".into(),
        },
        ins: Some(Ins::parse("279035121518989", InsKind::Nir, true).expect("valid INS")),
        contact: Contact::default(),
        address: Some(Address {
            lines: vec!["3 place Denis Dussoubs".into()],
            postal_code: "87000".into(),
            city: "Limoges".into(),
            country: "FR".into(),
            access_note: String::new(),
        }),
        gp: None,
        care_team: Vec::new(),
    }
}

fn register(db: &telehealth_kit::Database, ring: KeyRing) -> Register {
    let clock = Arc::new(jiff::Timestamp::now);
    Register::new(ServiceCore::new(db.clone(), clock), Vault::new(ring))
}

/// The key ids of every sealed birth name and consent note stored.
async fn stored_key_ids(db: &telehealth_kit::Database) -> Vec<String> {
    let mut conn = db.pool().acquire().await.expect("connection");
    let mut ids = Vec::new();
    for sql in [
        "SELECT birth_name_sealed AS v FROM patients",
        "SELECT note_sealed AS v FROM consents",
    ] {
        for row in sqlx::query(sql).fetch_all(&mut *conn).await.expect("rows") {
            let value: String = row.try_get("v").expect("text");
            ids.push(value.split('.').nth(1).expect("v1.<key>.<data>").to_owned());
        }
    }
    ids
}

#[tokio::test]
async fn a_new_key_seals_old_keys_still_open_and_rekey_moves_everything_to_the_new_key() {
    for test in TestDatabase::each_backend().await {
        let db = &test.db;
        db.migrate(&telehealth_directory::definition().migrations)
            .await
            .expect("migrations");
        let caller = doctor();

        let before = register(db, keys(&["k1"]));
        let Created::Patient(patient) = before
            .create(&caller, input(), false)
            .await
            .expect("created")
        else {
            panic!("no duplicate in an empty register");
        };
        before
            .record_consent(
                &caller,
                &patient.id,
                ConsentInput {
                    act: ConsentAct::TeleExpertise,
                    target_org_id: String::new(),
                    decision: Decision::Given,
                    method: Method::Oral,
                    document_ref: String::new(),
                    note: "accord oral".into(),
                },
            )
            .await
            .expect("consent");
        assert_eq!(
            stored_key_ids(db).await,
            ["k1", "k1"],
            "{:?}",
            test.backend()
        );

        // The new key is added: old records still open, new writes use it.
        let rotated = register(db, keys(&["k1", "k2"]));
        let read = rotated
            .get(&caller, &patient.id)
            .await
            .expect("old key opens");
        assert_eq!(read.identity.birth_name, "ROCHE");
        let mut other = input();
        other.identity.birth_name = "FAURE".into();
        other.ins = None;
        rotated
            .create(&caller, other, true)
            .await
            .expect("created under k2");
        let mut stored = stored_key_ids(db).await;
        stored.sort();
        assert_eq!(stored, ["k1", "k1", "k2"]);

        // Re-encryption moves every field to k2; then k1 may leave the key file.
        assert_eq!(rotated.reencrypt().await.expect("rekeyed"), 1);
        assert!(stored_key_ids(db).await.iter().all(|id| id == "k2"));
        assert_eq!(rotated.reencrypt().await.expect("nothing left"), 0);
        let after = register(db, keys(&["k2"]));
        let read = after.get(&caller, &patient.id).await.expect("k2 opens");
        assert_eq!(read.identity.first_names, "Émilie");
        assert_eq!(
            after
                .list_consents(&caller, &patient.id)
                .await
                .expect("consents")[0]
                .note,
            "accord oral"
        );
        let found = after
            .search(
                &caller,
                SearchCriteria {
                    name: Some("roche".into()),
                    birth_date: Some("1950-06-01".parse().expect("date")),
                    ins: None,
                },
                10,
            )
            .await
            .expect("searched");
        assert_eq!(found.len(), 1, "the blind indexes survive the rotation");

        // Without k1 and before re-encryption, a k1 record would not open: the key matters.
        let lost = register(db, keys(&["k3"]));
        assert!(lost.get(&caller, &patient.id).await.is_err());
        test.cleanup().await;
    }
}
