//! The patient register through the real gateway, on both databases: INS checked by its key,
//! identity status under the identity-vigilance rules, search across accents, duplicates and
//! merges, consents, the export, and no plaintext identity at rest.

use telehealth_kit::identity::Role;
use telehealth_proto::v1 as pb;
use tonic::Code;

use telehealth_testkit::suite::{Backend, Patients, Person, Suite, backends};

const CENTRE: &str = "cds-bourganeuf";
const OTHER_CENTRE: &str = "cds-felletin";

/// A fictitious test identity of the INS guides (INS-NIR test OID).
const TEST_NIR: &str = "279035121518989";

fn traits(birth_name: &str, first_names: &str, birth_date: &str) -> pb::IdentityTraits {
    pb::IdentityTraits {
        birth_name: birth_name.into(),
        first_names: first_names.into(),
        used_first_name: String::new(),
        used_name: String::new(),
        sex: pb::Sex::Female as i32,
        birth_date: birth_date.into(),
        birth_place_code: "23096".into(),
    }
}

fn nir(number: &str) -> pb::Ins {
    pb::Ins {
        number: number.into(),
        kind: pb::InsKind::Nir as i32,
        test: true,
        oid: String::new(),
    }
}

fn address() -> pb::Address {
    pb::Address {
        lines: vec!["12 rue des Tisserands".into()],
        postal_code: "23400".into(),
        city: "Bourganeuf".into(),
        country: "FR".into(),
        access_note: "digicode 4812B, 2e étage".into(),
    }
}

/// Registers a patient (confirmed distinct) and returns them.
async fn create(
    client: &mut Patients,
    identity: pb::IdentityTraits,
    ins: Option<pb::Ins>,
) -> pb::Patient {
    client
        .create_patient(pb::CreatePatientRequest {
            identity: Some(identity),
            ins,
            address: Some(address()),
            confirm_distinct: true,
            ..Default::default()
        })
        .await
        .expect("the patient is registered")
        .into_inner()
        .patient
        .expect("a patient")
}

/// Opening the follow-up of a heel pressure ulcer of `patient`.
fn heel_ulcer(patient: &str) -> pb::RegisterWoundRequest {
    pb::RegisterWoundRequest {
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        patient: Some(pb::PatientRef {
            pseudonym: patient.into(),
        }),
        description: Some(pb::WoundDescription {
            body_site: Some(pb::BodySite {
                region: pb::BodyRegion::Heel as i32,
                laterality: pb::Laterality::Right as i32,
                description: String::new(),
                snomed_ct_code: String::new(),
            }),
            aetiology: pb::Aetiology::PressureUlcer as i32,
            pressure_ulcer_stage: 2,
            aetiology_details: String::new(),
            onset_date: String::new(),
            planned_assessment_interval_days: 7,
        }),
        ..Default::default()
    }
}

/// `n` with its 2-digit key.
fn with_key(first13: &str) -> String {
    let digits = first13.replace("2A", "19").replace("2B", "18");
    let number: u64 = digits.parse().expect("digits");
    format!("{first13}{:02}", 97 - number % 97)
}

#[tokio::test]
async fn ins_numbers_are_checked_by_their_key_including_corsica() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-ins", CENTRE);
        let mut client = suite.patients(&doctor).await;
        let valid = [
            (TEST_NIR.to_owned(), "a test NIR"),
            ("2 55 08 14 168 025 38".to_owned(), "spaces are ignored"),
            (with_key("184052A123456"), "born in Corse-du-Sud"),
            (with_key("290092B004012"), "born in Haute-Corse"),
        ];
        for (i, (number, case)) in valid.iter().enumerate() {
            let name = format!("VALIDE{}", ["A", "B", "C", "D"][i]);
            let patient = create(
                &mut client,
                traits(&name, "Anne", "1950-01-01"),
                Some(nir(number)),
            )
            .await;
            let ins = patient.ins.expect("the owner sees the INS");
            assert_eq!(ins.number, number.replace(' ', ""), "{case} ({backend:?})");
            assert_eq!(ins.oid, "1.2.250.1.213.1.4.10", "{case}: test NIR OID");
        }
        let broken = [
            ("27903512151898", "15 characters"),
            (
                "279035121518988",
                "the key 88 does not match the number (its key is 89)",
            ),
            ("2790351215189X9", "character 14"),
            ("279032A21518989", "the key 89 does not match"),
            ("184052B12345682", "the key 82 does not match"),
            ("979035121518989", "the first character gives the sex"),
        ];
        for (number, expected) in broken {
            let status = client
                .create_patient(pb::CreatePatientRequest {
                    identity: Some(traits("INVALIDE", "Anne", "1950-01-01")),
                    ins: Some(nir(number)),
                    confirm_distinct: true,
                    ..Default::default()
                })
                .await
                .expect_err(expected);
            assert_eq!(status.code(), Code::InvalidArgument, "{number}");
            assert!(
                status.message().contains("ins.number") && status.message().contains(expected),
                "{number}: `{}` should say `{expected}`",
                status.message()
            );
        }
        // The same INS twice in one centre is refused, naming what to do.
        let again = client
            .create_patient(pb::CreatePatientRequest {
                identity: Some(traits("AUTRE", "Paule", "1960-02-02")),
                ins: Some(nir(TEST_NIR)),
                confirm_distinct: true,
                ..Default::default()
            })
            .await
            .expect_err("one INS per centre");
        assert_eq!(again.code(), Code::AlreadyExists, "{backend:?}");
        suite.stop().await;
    }
}

#[tokio::test]
async fn identity_status_follows_the_rules_and_only_a_qualified_ins_leaves_the_centre() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-statut", CENTRE);
        let mut client = suite.patients(&doctor).await;
        let patient = create(
            &mut client,
            traits("MARTIN", "Hélène Marie", "1941-03-12"),
            Some(nir(TEST_NIR)),
        )
        .await;
        assert_eq!(
            patient.identity_status,
            pb::IdentityStatus::Provisional as i32
        );
        let set =
            |status: pb::IdentityStatus, proof: pb::IdentityProof| pb::SetIdentityStatusRequest {
                patient_id: patient.id.clone(),
                status: status as i32,
                proof: proof as i32,
                note: "vérifié à l'accueil".into(),
                expected_version: 0,
            };
        // Not qualified in one step, not validated on the teleservice alone.
        for (request, expected) in [
            (
                set(pb::IdentityStatus::Qualified, pb::IdentityProof::Passport),
                "first recovered",
            ),
            (
                set(
                    pb::IdentityStatus::Validated,
                    pb::IdentityProof::InsiTeleservice,
                ),
                "high-trust document",
            ),
        ] {
            let refused = client
                .set_identity_status(request)
                .await
                .expect_err(expected);
            assert_eq!(refused.code(), Code::FailedPrecondition, "{backend:?}");
            assert!(
                refused.message().contains(expected),
                "{}",
                refused.message()
            );
        }
        let recovered = client
            .set_identity_status(set(
                pb::IdentityStatus::Recovered,
                pb::IdentityProof::InsiTeleservice,
            ))
            .await
            .expect("recovered on the INSi answer")
            .into_inner()
            .patient
            .expect("patient");
        assert_eq!(recovered.status_history.len(), 1);
        let history = &recovered.status_history[0];
        assert_eq!(
            history.changed_by.as_ref().expect("who").subject,
            "dr-statut"
        );
        assert_eq!(history.proof, pb::IdentityProof::InsiTeleservice as i32);

        // The right-of-access export leaves the centre: no INS while only recovered.
        let export = |client: &mut Patients| {
            let id = patient.id.clone();
            let mut client = client.clone();
            async move {
                let archive = client
                    .export_patient(pb::ExportPatientRequest { patient_id: id })
                    .await
                    .expect("exported")
                    .into_inner();
                assert_eq!(archive.content_type, "application/json");
                serde_json::from_slice::<serde_json::Value>(&archive.archive).expect("JSON")
            }
        };
        let recovered_export = export(&mut client).await;
        assert!(
            recovered_export["patient"]["ins"].is_null(),
            "a recovered INS stays in the centre: {}",
            recovered_export["patient"]
        );
        assert_eq!(
            recovered_export["patient"]["identity"]["birth_name"],
            "MARTIN"
        );

        let qualified = client
            .set_identity_status(set(
                pb::IdentityStatus::Qualified,
                pb::IdentityProof::IdentityCard,
            ))
            .await
            .expect("qualified on an identity card")
            .into_inner()
            .patient
            .expect("patient");
        assert_eq!(
            qualified.identity_status,
            pb::IdentityStatus::Qualified as i32
        );
        assert_eq!(qualified.status_history.len(), 2);
        let qualified_export = export(&mut client).await;
        assert_eq!(
            qualified_export["patient"]["ins"]["number"], TEST_NIR,
            "a qualified INS leaves with the export"
        );

        // A qualified identity's traits are not edited by hand.
        let edit = client
            .update_patient(pb::UpdatePatientRequest {
                patient_id: patient.id.clone(),
                identity: Some(traits("MARTINE", "Hélène Marie", "1941-03-12")),
                ..Default::default()
            })
            .await
            .expect_err("qualified traits are locked");
        assert_eq!(edit.code(), Code::FailedPrecondition);

        // Another centre does not learn that the patient exists.
        let outsider = Person::doctor("dr-ailleurs", OTHER_CENTRE);
        let hidden = suite
            .patients(&outsider)
            .await
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.id.clone(),
            })
            .await
            .expect_err("not visible");
        let ghost = suite
            .patients(&outsider)
            .await
            .get_patient(pb::GetPatientRequest {
                patient_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .expect_err("does not exist");
        assert_eq!(
            (hidden.code(), hidden.message()),
            (ghost.code(), ghost.message())
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn search_ignores_accents_and_case_and_stays_in_the_organisation() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-recherche", CENTRE);
        let mut client = suite.patients(&doctor).await;
        let mut identity = traits("LEFÈVRE", "Zoé", "1938-07-14");
        identity.used_name = "Dupont-Lefèvre".into();
        let patient = create(&mut client, identity, None).await;
        create(&mut client, traits("LEFEVRE", "Paul", "1940-01-01"), None).await;

        let search = |name: &str, birth_date: &str| pb::SearchPatientsRequest {
            name: name.into(),
            birth_date: birth_date.into(),
            ..Default::default()
        };
        let cases = [
            (
                search("lefevre", "1938-07-14"),
                1,
                "birth name without accent",
            ),
            (search("  LEFÈVRE ", ""), 2, "birth name alone finds both"),
            (
                search("dupont lefevre", ""),
                1,
                "used name, hyphen as space",
            ),
            (
                search("Dupont-Lefèvre", "1938-07-14"),
                1,
                "used name and birth date",
            ),
            (search("lefevre", "1938-07-15"), 0, "another birth date"),
            (search("lefe", ""), 0, "whole names only"),
        ];
        for (request, expected, case) in cases {
            let found = client
                .search_patients(request)
                .await
                .expect("searched")
                .into_inner()
                .patients;
            assert_eq!(found.len(), expected, "{case} ({backend:?})");
            if expected == 1 {
                assert_eq!(found[0].id, patient.id, "{case}");
            }
        }
        let by_ins = client
            .search_patients(pb::SearchPatientsRequest {
                ins: "2 79 03 51 215 189 88".into(),
                ..Default::default()
            })
            .await
            .expect_err("a broken INS is refused, not searched");
        assert_eq!(by_ins.code(), Code::InvalidArgument);

        let outsider = Person::nurse("ide-ailleurs", OTHER_CENTRE);
        let elsewhere = suite
            .patients(&outsider)
            .await
            .search_patients(search("Lefèvre", ""))
            .await
            .expect("searched")
            .into_inner()
            .patients;
        assert!(elsewhere.is_empty(), "another centre finds nobody");
        suite.stop().await;
    }
}

#[tokio::test]
async fn similar_traits_warn_and_a_merge_keeps_every_reference() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let coordinator = Person::coordinator("coord-fusion", CENTRE);
        let mut client = suite.patients(&coordinator).await;
        let first = create(&mut client, traits("BERNARD", "Lucie", "1944-05-06"), None).await;
        let warned = client
            .create_patient(pb::CreatePatientRequest {
                identity: Some(traits("Bernard", "Lucie Jeanne", "1944-05-06")),
                ..Default::default()
            })
            .await
            .expect("answered")
            .into_inner();
        assert!(warned.patient.is_none(), "not created before confirmation");
        assert_eq!(
            warned
                .possible_duplicates
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            vec![first.id.as_str()],
            "{backend:?}"
        );
        let second = client
            .create_patient(pb::CreatePatientRequest {
                identity: Some(traits("Bernard", "Lucie Jeanne", "1944-05-06")),
                ins: Some(nir(TEST_NIR)),
                confirm_distinct: true,
                ..Default::default()
            })
            .await
            .expect("confirmed")
            .into_inner()
            .patient
            .expect("created");
        let consent = client
            .record_consent(pb::RecordConsentRequest {
                patient_id: second.id.clone(),
                act: pb::ConsentAct::TeleExpertise as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            })
            .await
            .expect("consent recorded")
            .into_inner()
            .consent
            .expect("consent");

        let merged = client
            .merge_patients(pb::MergePatientsRequest {
                surviving_id: first.id.clone(),
                merged_id: second.id.clone(),
            })
            .await
            .expect("merged")
            .into_inner()
            .patient
            .expect("survivor");
        assert_eq!(merged.merged_ids, vec![second.id.clone()]);
        assert_eq!(
            merged.ins.as_ref().map(|i| i.number.as_str()),
            Some(TEST_NIR),
            "the survivor takes the INS"
        );
        // The merged id is an alias of the survivor; its consent now belongs to the survivor.
        let through_alias = client
            .get_patient(pb::GetPatientRequest {
                patient_id: second.id.clone(),
            })
            .await
            .expect("the alias resolves")
            .into_inner()
            .patient
            .expect("patient");
        assert_eq!(through_alias.id, first.id);
        let consents = client
            .list_consents(pb::ListConsentsRequest {
                patient_id: first.id.clone(),
            })
            .await
            .expect("listed")
            .into_inner()
            .consents;
        assert_eq!(
            consents.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec![consent.id.as_str()]
        );
        let by_ins = client
            .search_patients(pb::SearchPatientsRequest {
                ins: TEST_NIR.into(),
                ..Default::default()
            })
            .await
            .expect("searched")
            .into_inner()
            .patients;
        assert_eq!(by_ins.len(), 1, "one record answers the INS");
        assert_eq!(by_ins[0].id, first.id);

        // Other services given the merged id act on the survivor, with the moved consent.
        let doctor = Person::doctor("dr-fusion", CENTRE);
        suite.enrol(&doctor).await;
        let wound = suite
            .wounds(&doctor)
            .await
            .register_wound(heel_ulcer(&second.id))
            .await
            .expect_err("the moved consent is to a tele-expertise, not to wound monitoring");
        assert!(
            wound.message().contains("remote monitoring"),
            "{}",
            wound.message()
        );
        client
            .record_consent(pb::RecordConsentRequest {
                patient_id: second.id.clone(),
                act: pb::ConsentAct::WoundMonitoring as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            })
            .await
            .expect("a consent recorded through the alias");
        let wound = suite
            .wounds(&doctor)
            .await
            .register_wound(heel_ulcer(&second.id))
            .await
            .expect("opened through the alias")
            .into_inner()
            .wound
            .expect("wound");
        assert_eq!(
            wound.patient.expect("patient").pseudonym,
            first.id,
            "the follow-up is the survivor's"
        );

        // A doctor may not merge.
        let refused = suite
            .patients(&doctor)
            .await
            .merge_patients(pb::MergePatientsRequest {
                surviving_id: first.id.clone(),
                merged_id: second.id.clone(),
            })
            .await
            .expect_err("coordinators merge");
        assert_eq!(refused.code(), Code::PermissionDenied);
        suite.stop().await;
    }
}

#[tokio::test]
async fn consents_are_recorded_withdrawn_and_objections_stop_sharing() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let nurse = Person::nurse("ide-consent", CENTRE);
        let mut client = suite.patients(&nurse).await;
        let patient = create(&mut client, traits("PETIT", "Jeanne", "1936-11-30"), None).await;
        let missing_target = client
            .record_consent(pb::RecordConsentRequest {
                patient_id: patient.id.clone(),
                act: pb::ConsentAct::Sharing as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            })
            .await
            .expect_err("sharing names the organisation");
        assert_eq!(missing_target.code(), Code::InvalidArgument);
        let scanned_without_document = client
            .record_consent(pb::RecordConsentRequest {
                patient_id: patient.id.clone(),
                act: pb::ConsentAct::WoundMonitoring as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::ScannedDocument as i32,
                ..Default::default()
            })
            .await
            .expect_err("a scanned consent names its document");
        assert!(scanned_without_document.message().contains("document_ref"));

        let consent = client
            .record_consent(pb::RecordConsentRequest {
                patient_id: patient.id.clone(),
                act: pb::ConsentAct::WoundMonitoring as i32,
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Written as i32,
                note: "signé au domicile".into(),
                ..Default::default()
            })
            .await
            .expect("recorded")
            .into_inner()
            .consent
            .expect("consent");
        assert_eq!(
            consent.recorded_by.as_ref().expect("who").subject,
            "ide-consent"
        );
        let withdrawn = client
            .withdraw_consent(pb::WithdrawConsentRequest {
                consent_id: consent.id.clone(),
            })
            .await
            .expect("withdrawn")
            .into_inner()
            .consent
            .expect("consent");
        assert!(withdrawn.withdrawn_time.is_some());
        let twice = client
            .withdraw_consent(pb::WithdrawConsentRequest {
                consent_id: consent.id.clone(),
            })
            .await
            .expect_err("already withdrawn");
        assert_eq!(twice.code(), Code::FailedPrecondition, "{backend:?}");

        client
            .record_objection(pb::RecordObjectionRequest {
                patient_id: patient.id.clone(),
                objects: true,
                note: "refuse tout partage".into(),
            })
            .await
            .expect("objection recorded");
        let sharing = client
            .record_consent(pb::RecordConsentRequest {
                patient_id: patient.id.clone(),
                act: pb::ConsentAct::Sharing as i32,
                target_org_id: "chu-limoges".into(),
                decision: pb::ConsentDecision::Given as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            })
            .await
            .expect_err("the objection stands");
        assert_eq!(sharing.code(), Code::FailedPrecondition);
        assert!(sharing.message().contains("RecordObjection"));

        // Another centre cannot withdraw or list this centre's consents.
        let outsider = Person::with_roles("coord-ailleurs", OTHER_CENTRE, &[Role::Coordinator]);
        let foreign = suite
            .patients(&outsider)
            .await
            .list_consents(pb::ListConsentsRequest {
                patient_id: patient.id.clone(),
            })
            .await
            .expect_err("not visible");
        assert_eq!(foreign.code(), Code::NotFound);
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_database_holds_no_plaintext_name_ins_or_address() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-chiffre", CENTRE);
        let mut client = suite.patients(&doctor).await;
        let mut identity = traits("QUINTARD", "Eulalie", "1933-09-09");
        identity.used_name = "VERGNAUD".into();
        create(&mut client, identity, Some(nir(TEST_NIR))).await;

        let stored = stored_bytes(&suite, backend).await;
        for secret in [
            "QUINTARD",
            "Quintard",
            "Eulalie",
            "VERGNAUD",
            TEST_NIR,
            "Tisserands",
            "4812B",
            "1933-09-09",
        ] {
            assert!(
                !contains(&stored, secret.as_bytes()),
                "{backend:?}: `{secret}` is stored in plaintext"
            );
        }
        // The check can fail: the subject of the doctor is stored in plaintext.
        assert!(
            contains(&stored, b"dr-chiffre"),
            "{backend:?}: the dump is real"
        );
        suite.stop().await;
    }
}

/// Every byte the directory's database holds: its SQLite files, or a text dump of its
/// PostgreSQL tables.
async fn stored_bytes(suite: &Suite, backend: Backend) -> Vec<u8> {
    match backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            let dir = suite.settings.data_dir.join("db");
            for entry in std::fs::read_dir(&dir).expect("the SQLite folder") {
                let path = entry.expect("entry").path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if name.starts_with("directory.db") {
                    bytes.extend(std::fs::read(&path).expect("read the database file"));
                }
            }
            assert!(
                !bytes.is_empty(),
                "the directory's SQLite files in {}",
                dir.display()
            );
            bytes
        }
        Backend::Postgres => {
            let url = suite.settings.database.url.clone().expect("PostgreSQL URL");
            let schema = format!("{}directory", suite.settings.database.schema_prefix);
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connects");
            let mut bytes = Vec::new();
            for table in [
                "patients",
                "patient_names",
                "patient_status_changes",
                "consents",
                "members",
                "audit_log",
            ] {
                let dump: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT string_agg(t::text, ' ') FROM \"{schema}\".{table} t"
                ))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("dump {table}: {e}"));
                bytes.extend(dump.unwrap_or_default().into_bytes());
            }
            bytes
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What each act says when the patient has not consented, then the act once they have.
#[tokio::test]
async fn each_act_needs_the_patients_current_consent() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-consent", CENTRE);
        let nurse = Person::nurse("ide-consent", CENTRE);
        suite.enrol(&nurse).await;
        let mut register = suite.patients(&doctor).await;
        let patient = create(
            &mut register,
            traits("GIRAUD", "Odette", "1939-08-21"),
            Some(nir(TEST_NIR)),
        )
        .await;
        let consent =
            |act: pb::ConsentAct, decision: pb::ConsentDecision| pb::RecordConsentRequest {
                patient_id: patient.id.clone(),
                act: act as i32,
                decision: decision as i32,
                method: pb::ConsentMethod::Oral as i32,
                ..Default::default()
            };

        // Remote monitoring of wounds: opening the follow-up is the act.
        let mut wounds = suite.wounds(&doctor).await;
        let open_follow_up = |pseudonym: String| pb::RegisterWoundRequest {
            care_team_nurse_subjects: vec![nurse.subject.into()],
            ..heel_ulcer(&pseudonym)
        };
        let unknown = wounds
            .register_wound(open_follow_up("pat-inconnu".into()))
            .await
            .expect_err("not in the register");
        assert_eq!(unknown.code(), Code::NotFound, "{backend:?}");
        assert!(
            unknown.message().contains("CreatePatient"),
            "{}",
            unknown.message()
        );
        let without = wounds
            .register_wound(open_follow_up(patient.id.clone()))
            .await
            .expect_err("no consent yet");
        assert_eq!(without.code(), Code::FailedPrecondition);
        assert!(
            without.message().contains("remote monitoring of wounds")
                && without.message().contains("RecordConsent"),
            "{}",
            without.message()
        );
        register
            .record_consent(consent(
                pb::ConsentAct::WoundMonitoring,
                pb::ConsentDecision::Refused,
            ))
            .await
            .expect("refusal recorded");
        let refused = wounds
            .register_wound(open_follow_up(patient.id.clone()))
            .await
            .expect_err("the patient refused");
        assert!(
            refused.message().contains("refused"),
            "{}",
            refused.message()
        );
        let given = register
            .record_consent(consent(
                pb::ConsentAct::WoundMonitoring,
                pb::ConsentDecision::Given,
            ))
            .await
            .expect("consent recorded")
            .into_inner()
            .consent
            .expect("consent");
        let wound = wounds
            .register_wound(open_follow_up(patient.id.clone()))
            .await
            .expect("opened with consent")
            .into_inner()
            .wound
            .expect("wound");
        assert_eq!(
            wound.consent_id, given.id,
            "the follow-up names its consent"
        );

        // Tele-expertise (R6316-2): submitting the request is the act, and it shares the
        // patient with the hospital that answers.
        let mut expertise = suite.expertise(&doctor).await;
        let draft = expertise
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                content: Some(pb::ExpertiseRequestContent {
                    target_org_id: "chu-limoges".into(),
                    specialty: "dermatology".into(),
                    patient: Some(pb::ExpertisePatient {
                        patient: Some(pb::PatientRef {
                            pseudonym: patient.id.clone(),
                        }),
                        age_years: 87,
                        age_months: 0,
                        sex: pb::Sex::Female as i32,
                    }),
                    clinical_question: "Lésion pigmentée de la joue : avis ?".into(),
                    urgency: pb::Urgency::Routine as i32,
                    ..Default::default()
                }),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request");
        let submit = pb::SubmitRequestRequest {
            request_id: draft.request_id.clone(),
            expected_version: 0,
        };
        let specialist =
            Person::specialist("derm-limoges", "chu-limoges").in_specialty("dermatology");
        let before = suite
            .patients(&specialist)
            .await
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.id.clone(),
            })
            .await
            .expect_err("the hospital does not see the patient yet");
        assert_eq!(before.code(), Code::NotFound);
        let without = expertise
            .submit_request(submit.clone())
            .await
            .expect_err("no consent to a tele-expertise");
        assert_eq!(without.code(), Code::FailedPrecondition);
        assert!(
            without.message().contains("a tele-expertise"),
            "{}",
            without.message()
        );
        let given = register
            .record_consent(consent(
                pb::ConsentAct::TeleExpertise,
                pb::ConsentDecision::Given,
            ))
            .await
            .expect("consent")
            .into_inner()
            .consent
            .expect("consent");
        let submitted = expertise
            .submit_request(submit)
            .await
            .expect("submitted with consent")
            .into_inner()
            .request
            .expect("request");
        assert_eq!(submitted.consent_id, given.id);
        let shared = suite
            .patients(&specialist)
            .await
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.id.clone(),
            })
            .await
            .expect("the hospital answering sees the request's patient")
            .into_inner()
            .patient
            .expect("patient");
        assert_eq!(shared.identity.expect("traits").birth_name, "GIRAUD");
        assert!(
            shared.ins.is_none(),
            "a provisional identity's INS stays in the centre"
        );
        assert!(
            shared.address.is_none() && shared.care_team.is_empty(),
            "the hospital does not see the home address, its door code, nor the care team"
        );

        // Teleconsultation: starting it is the act; withdrawing the consent stops the next one.
        let mut scheduling = suite.scheduling(&doctor).await;
        scheduling
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: doctor.subject.into(),
                time_zone: "UTC".into(),
                weekly_ranges: (1..=7)
                    .map(|day| pb::WeeklyRange {
                        day,
                        start_local_time: "00:00".into(),
                        end_local_time: "24:00".into(),
                    })
                    .collect(),
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect("availability");
        let now = jiff::Timestamp::now().as_second();
        let book = |minutes: i64| pb::BookAppointmentRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            doctor_subject: doctor.subject.into(),
            patient: Some(pb::PatientRef {
                pseudonym: patient.id.clone(),
            }),
            start_time: Some(telehealth_kit::record::timestamp(
                jiff::Timestamp::from_second((now / 60 + minutes) * 60).expect("start"),
            )),
            duration_minutes: 15,
            reason: "suivi".into(),
            ..Default::default()
        };
        let first = scheduling
            .book_appointment(book(5))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment")
            .appointment_id;
        let start = |id: &str| pb::StartTeleconsultationRequest {
            appointment_id: id.to_owned(),
        };
        let without = scheduling
            .start_teleconsultation(start(&first))
            .await
            .expect_err("no consent to a teleconsultation");
        assert_eq!(without.code(), Code::FailedPrecondition);
        assert!(
            without.message().contains("a teleconsultation"),
            "{}",
            without.message()
        );
        let given = register
            .record_consent(consent(
                pb::ConsentAct::Teleconsultation,
                pb::ConsentDecision::Given,
            ))
            .await
            .expect("consent")
            .into_inner()
            .consent
            .expect("consent");
        let started = scheduling
            .start_teleconsultation(start(&first))
            .await
            .expect("started with consent")
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(started.consent_id, given.id);
        register
            .withdraw_consent(pb::WithdrawConsentRequest {
                consent_id: given.id.clone(),
            })
            .await
            .expect("withdrawn");
        let second = scheduling
            .book_appointment(book(25))
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment")
            .appointment_id;
        let after = scheduling
            .start_teleconsultation(start(&second))
            .await
            .expect_err("the consent was withdrawn");
        assert_eq!(after.code(), Code::FailedPrecondition, "{backend:?}");
        suite.stop().await;
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_person_create_one_record() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let coordinator = Person::coordinator("coord-course", CENTRE);
        let client = suite.patients(&coordinator).await;
        let attempts = (0..8).map(|_| {
            let mut client = client.clone();
            async move {
                client
                    .create_patient(pb::CreatePatientRequest {
                        identity: Some(traits("ROUSSEAU", "Albertine", "1931-12-24")),
                        ..Default::default()
                    })
                    .await
                    .expect("answered")
                    .into_inner()
            }
        });
        let answers = futures::future::join_all(attempts).await;
        let created = answers.iter().filter(|a| a.patient.is_some()).count();
        assert_eq!(created, 1, "{backend:?}: one record, the others warned");
        assert!(
            answers
                .iter()
                .filter(|a| a.patient.is_none())
                .all(|a| a.possible_duplicates.len() == 1),
            "each other attempt names the record"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn pseudonyms_of_older_records_are_adopted_as_provisional_patients() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-ancien", CENTRE);
        let patient = suite.consenting_patient(&doctor).await;
        let mut wounds = suite.wounds(&doctor).await;
        wounds
            .register_wound(heel_ulcer(&patient))
            .await
            .expect("a follow-up of the patient");

        // As before the register: the wound names a pseudonym the register does not know.
        let register_db = telehealth_kit::Database::connect(
            &suite.settings.database,
            &suite.settings.data_dir,
            telehealth_kit::Part::Directory,
        )
        .await
        .expect("the directory's database");
        for table in ["patient_names", "consents", "patients"] {
            let column = if table == "patients" {
                "id"
            } else {
                "patient_id"
            };
            sqlx::query(&format!("DELETE FROM {table} WHERE {column} = $1"))
                .bind(&patient)
                .execute(register_db.pool())
                .await
                .expect("forgotten");
        }
        register_db.close().await;
        let mut register = suite.patients(&doctor).await;
        let lost = register
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.clone(),
            })
            .await
            .expect_err("unknown to the register");
        assert_eq!(lost.code(), Code::NotFound, "{backend:?}");

        let printed = admin_command(&suite, &["patients", "adopt"]);
        assert!(printed.contains("1 pseudonyms"), "{backend:?}: {printed}");

        let adopted = register
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.clone(),
            })
            .await
            .expect("the pseudonym is a patient again")
            .into_inner()
            .patient
            .expect("patient");
        assert_eq!(
            adopted.identity_status,
            pb::IdentityStatus::Provisional as i32
        );
        assert_eq!(adopted.identity.expect("traits").birth_name, "INCONNU");
        // It resolves again; its consent must be recorded anew before the next act.
        let act = wounds
            .register_wound(heel_ulcer(&patient))
            .await
            .expect_err("no consent recorded for the adopted patient");
        assert_eq!(act.code(), Code::FailedPrecondition);
        suite.stop().await;
    }
}

/// Runs `telehealth <args>` on the suite's data directory and database, as an operator would;
/// returns what it printed (the command must succeed).
fn admin_command(suite: &Suite, args: &[&str]) -> String {
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .args(args)
        .arg("--data-dir")
        .arg(&suite.settings.data_dir)
        .env_remove("TELEHEALTH_CONFIG");
    if let Some(url) = &suite.settings.database.url {
        command.env("TELEHEALTH_DATABASE__URL", url).env(
            "TELEHEALTH_DATABASE__SCHEMA_PREFIX",
            &suite.settings.database.schema_prefix,
        );
    }
    let output = command.output().expect("the telehealth binary runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {printed} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
}

#[tokio::test]
async fn the_operator_rotates_the_keys_with_the_command_line() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-cles", CENTRE);
        let mut register = suite.patients(&doctor).await;
        let patient = create(&mut register, traits("MAZEAU", "Irène", "1945-02-02"), None).await;
        let sealed_key = || async {
            let db = telehealth_kit::Database::connect(
                &suite.settings.database,
                &suite.settings.data_dir,
                telehealth_kit::Part::Directory,
            )
            .await
            .expect("the directory's database");
            let sealed: String =
                sqlx::query_scalar("SELECT birth_name_sealed FROM patients WHERE id = $1")
                    .bind(&patient.id)
                    .fetch_one(db.pool())
                    .await
                    .expect("the record");
            db.close().await;
            sealed
                .split('.')
                .nth(1)
                .expect("v1.<key>.<data>")
                .to_owned()
        };
        assert_eq!(sealed_key().await, "k1", "{backend:?}");

        // The suite created the key file; init-keys never overwrites one.
        let refused =
            crate::harness::telehealth(&suite.settings.data_dir, &["patients", "init-keys"]);
        assert!(!refused.status.success());
        assert!(crate::harness::stderr(&refused).contains("never overwritten"));

        let added = admin_command(&suite, &["patients", "add-key"]);
        assert!(added.contains("added data key k2"), "{added}");
        let rekeyed = admin_command(&suite, &["patients", "rekey"]);
        assert!(rekeyed.contains("re-sealed under key k2"), "{rekeyed}");
        assert_eq!(
            sealed_key().await,
            "k2",
            "every sealed field moved to the new key"
        );
        let again = admin_command(&suite, &["patients", "rekey"]);
        assert!(again.starts_with("0 patient records"), "{again}");
        suite.stop().await;
    }
}
