//! The care directory through the real gateway: memberships come from the person's own token or
//! from an administrator of the organisation, are seen only inside it, and an ended membership
//! stops the person being named and is not revived by their token.

use telehealth_kit::identity::Role;
use telehealth_proto::v1 as pb;
use tonic::Code;

use telehealth_testkit::suite::{Person, Suite, backends};

const CENTRE: &str = "cds-gueret";
const OTHER_CENTRE: &str = "cds-aubusson";

fn admin(subject: &'static str, org: &'static str) -> Person {
    Person::with_roles(subject, org, &[Role::Admin])
}

fn weekly_for(subject: &str) -> pb::SetWeeklyAvailabilityRequest {
    pb::SetWeeklyAvailabilityRequest {
        practitioner_subject: subject.into(),
        time_zone: "Europe/Paris".into(),
        weekly_ranges: vec![pb::WeeklyRange {
            day: pb::DayOfWeek::Tuesday as i32,
            start_local_time: "09:00".into(),
            end_local_time: "12:00".into(),
        }],
        buffer_minutes: 0,
        expected_version: 0,
    }
}

#[tokio::test]
async fn memberships_come_from_the_token_or_the_organisations_administrator() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let doctor = Person::doctor("dr-roux", CENTRE);
        let administrator = admin("admin-gueret", CENTRE);
        let coordinator = Person::coordinator("coord-gueret", CENTRE);
        let outsider = admin("admin-aubusson", OTHER_CENTRE);

        // The person's own verified token registers them, with the token's roles.
        let registered = suite
            .directory(&doctor)
            .await
            .register_self(pb::RegisterSelfRequest {})
            .await
            .expect("registers")
            .into_inner()
            .member
            .expect("member");
        assert_eq!(registered.org_id, CENTRE, "{backend:?}");
        assert_eq!(registered.roles, vec![pb::Role::Doctor as i32]);
        assert_eq!(registered.source, pb::MembershipSource::Token as i32);
        assert!(registered.active);

        // Only an administrator adds someone else; a doctor may not.
        let refused = suite
            .directory(&doctor)
            .await
            .put_member(pb::PutMemberRequest {
                subject: "nurse-lea".into(),
                roles: vec![pb::Role::Nurse as i32],
                ..Default::default()
            })
            .await
            .expect_err("a doctor cannot add members");
        assert_eq!(refused.code(), Code::PermissionDenied, "{backend:?}");

        let mut admin_client = suite.directory(&administrator).await;
        let added = admin_client
            .put_member(pb::PutMemberRequest {
                subject: "nurse-lea".into(),
                roles: vec![pb::Role::Nurse as i32],
                ..Default::default()
            })
            .await
            .expect("the administrator adds a nurse")
            .into_inner()
            .member
            .expect("member");
        assert_eq!(added.source, pb::MembershipSource::Administrator as i32);
        let stale = admin_client
            .put_member(pb::PutMemberRequest {
                subject: "nurse-lea".into(),
                roles: vec![pb::Role::Nurse as i32],
                expected_version: added.version + 7,
                ..Default::default()
            })
            .await
            .expect_err("a stale version is refused");
        assert_eq!(stale.code(), Code::Aborted, "{backend:?}: {stale:?}");

        // Members are seen inside the organisation only.
        let seen = suite
            .directory(&doctor)
            .await
            .get_member(pb::GetMemberRequest {
                subject: "nurse-lea".into(),
            })
            .await
            .expect("a colleague sees the nurse");
        assert_eq!(
            seen.into_inner().member.expect("member").subject,
            "nurse-lea"
        );
        let mut outsider_client = suite.directory(&outsider).await;
        let hidden = outsider_client
            .get_member(pb::GetMemberRequest {
                subject: "nurse-lea".into(),
            })
            .await
            .expect_err("another centre does not see her");
        let ghost = outsider_client
            .get_member(pb::GetMemberRequest {
                subject: "nobody-at-all".into(),
            })
            .await
            .expect_err("nor anyone who does not exist");
        assert_eq!(hidden.code(), Code::NotFound, "{backend:?}");
        assert_eq!(hidden.message(), ghost.message(), "{backend:?}");
        let listed = outsider_client
            .list_members(pb::ListMembersRequest::default())
            .await
            .expect("lists its own members")
            .into_inner();
        assert!(
            listed.members.iter().all(|m| m.org_id == OTHER_CENTRE),
            "{backend:?}: {listed:?}"
        );
        // Another centre's administrator cannot end her membership either.
        let foreign_end = outsider_client
            .end_membership(pb::EndMembershipRequest {
                subject: "nurse-lea".into(),
                until_time: None,
            })
            .await
            .expect_err("not their member");
        assert_eq!(foreign_end.code(), Code::NotFound, "{backend:?}");

        // Ended: she can no longer be named, and her own token does not bring her back.
        let ended = admin_client
            .end_membership(pb::EndMembershipRequest {
                subject: "nurse-lea".into(),
                until_time: None,
            })
            .await
            .expect("the administrator ends it")
            .into_inner()
            .member
            .expect("member");
        assert!(!ended.active, "{backend:?}");
        let named = suite
            .scheduling(&coordinator)
            .await
            .set_weekly_availability(weekly_for("nurse-lea"))
            .await
            .expect_err("an ended member cannot be named");
        assert_eq!(named.code(), Code::NotFound, "{backend:?}: {named:?}");
        let revived = suite
            .directory(&Person::nurse("nurse-lea", CENTRE))
            .await
            .register_self(pb::RegisterSelfRequest {})
            .await
            .expect_err("her token does not revive an ended membership");
        assert_eq!(revived.code(), Code::PermissionDenied, "{backend:?}");

        // The doctor who registered himself can be named by his coordinator.
        suite
            .scheduling(&coordinator)
            .await
            .set_weekly_availability(weekly_for("dr-roux"))
            .await
            .expect("an active member can be named");
        suite.stop().await;
    }
}

#[tokio::test]
async fn members_carry_a_checked_rpps_number_and_their_profession() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let administrator = admin("admin-rpps", CENTRE);
        let mut directory = suite.directory(&administrator).await;
        let put = |subject: &str, rpps: &str, profession: pb::Profession| pb::PutMemberRequest {
            subject: subject.into(),
            roles: vec![pb::Role::Nurse as i32],
            rpps_number: rpps.into(),
            profession: profession as i32,
            ..Default::default()
        };
        let nurse = directory
            .put_member(put("nurse-rpps", "10003009015", pb::Profession::Nurse))
            .await
            .expect("a valid RPPS")
            .into_inner()
            .member
            .expect("member");
        assert_eq!(nurse.rpps_number, "10003009015", "{backend:?}");
        assert_eq!(nurse.profession, pb::Profession::Nurse as i32);

        let wrong_key = directory
            .put_member(put("nurse-cle", "10003009018", pb::Profession::Nurse))
            .await
            .expect_err("a wrong key");
        assert_eq!(wrong_key.code(), Code::InvalidArgument);
        assert!(
            wrong_key.message().contains("rpps_number") && wrong_key.message().contains("Luhn"),
            "{}",
            wrong_key.message()
        );
        let twice = directory
            .put_member(put("nurse-double", "10003009015", pb::Profession::Nurse))
            .await
            .expect_err("one RPPS per person in an organisation");
        assert_eq!(twice.code(), Code::AlreadyExists, "{backend:?}");

        // A doctor's own sign-in records the profession their token implies.
        let doctor = Person::doctor("dr-profession", CENTRE);
        let registered = suite
            .directory(&doctor)
            .await
            .register_self(pb::RegisterSelfRequest {})
            .await
            .expect("registered")
            .into_inner()
            .member
            .expect("member");
        assert_eq!(registered.profession, pb::Profession::Physician as i32);
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_partners_only_target_takes_requests_from_its_partner_centres_only() {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |settings| {
            for target in &mut settings.expertise_rules.targets {
                if target.org_id == "chu-limoges" && target.specialty == "dermatology" {
                    target.partners_only = true;
                }
            }
        })
        .await
        else {
            continue;
        };
        let doctor = Person::doctor("dr-partenaire", CENTRE);
        let centre_admin = admin("admin-centre", CENTRE);
        let hospital_admin = admin("admin-chu", "chu-limoges");
        let patient = suite.consenting_patient(&doctor).await;
        let mut expertise = suite.expertise(&doctor).await;
        let draft = expertise
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "partenaire".into(),
                content: Some(pb::ExpertiseRequestContent {
                    target_org_id: "chu-limoges".into(),
                    specialty: "dermatology".into(),
                    patient: Some(pb::ExpertisePatient {
                        patient: Some(pb::PatientRef { pseudonym: patient }),
                        age_years: 70,
                        age_months: 0,
                        sex: pb::Sex::Male as i32,
                    }),
                    clinical_question: "Kératose ou carcinome ?".into(),
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
        let refused = expertise
            .submit_request(submit.clone())
            .await
            .expect_err("no partnership yet");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{backend:?}");
        assert!(
            refused.message().contains("ProposePartnership"),
            "{}",
            refused.message()
        );

        // The centre proposes; until the hospital accepts, nothing changes.
        let proposed = suite
            .directory(&centre_admin)
            .await
            .propose_partnership(pb::ProposePartnershipRequest {
                hospital_org_id: "chu-limoges".into(),
            })
            .await
            .expect("proposed")
            .into_inner()
            .partnership
            .expect("partnership");
        assert_eq!(proposed.status, pb::PartnershipStatus::Proposed as i32);
        expertise
            .submit_request(submit.clone())
            .await
            .expect_err("proposed is not active");
        let doctor_accepting = suite
            .directory(&doctor)
            .await
            .accept_partnership(pb::AcceptPartnershipRequest {
                centre_org_id: CENTRE.into(),
            })
            .await
            .expect_err("administrators accept");
        assert_eq!(doctor_accepting.code(), Code::PermissionDenied);
        let mut hospital = suite.directory(&hospital_admin).await;
        let accepted = hospital
            .accept_partnership(pb::AcceptPartnershipRequest {
                centre_org_id: CENTRE.into(),
            })
            .await
            .expect("accepted")
            .into_inner()
            .partnership
            .expect("partnership");
        assert_eq!(accepted.status, pb::PartnershipStatus::Active as i32);
        assert_eq!(accepted.accepted_by, "admin-chu");
        expertise
            .submit_request(submit)
            .await
            .expect("a partner centre submits");
        let listed = suite
            .directory(&doctor)
            .await
            .list_partnerships(pb::ListPartnershipsRequest {})
            .await
            .expect("listed")
            .into_inner()
            .partnerships;
        assert_eq!(listed.len(), 1);

        // Ended by the hospital: the next request is refused again.
        hospital
            .end_partnership(pb::EndPartnershipRequest {
                other_org_id: CENTRE.into(),
            })
            .await
            .expect("ended");
        let second = expertise
            .create_draft(pb::CreateDraftRequest {
                idempotency_key: "apres-fin".into(),
                content: draft.content.clone(),
            })
            .await
            .expect("draft")
            .into_inner()
            .request
            .expect("request");
        let after = expertise
            .submit_request(pb::SubmitRequestRequest {
                request_id: second.request_id,
                expected_version: 0,
            })
            .await
            .expect_err("the partnership ended");
        assert_eq!(after.code(), Code::FailedPrecondition);
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_administrator_records_the_organisation_with_its_finess_number() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let administrator = admin("admin-finess", CENTRE);
        let put = |finess: &str| pb::PutOrganisationRequest {
            display_name: "Centre de santé de Guéret".into(),
            kind: pb::OrganisationKind::HealthCentre as i32,
            finess_number: finess.into(),
            expected_version: 0,
        };
        let mut directory = suite.directory(&administrator).await;
        let malformed = directory
            .put_organisation(put("23000001"))
            .await
            .expect_err("8 characters");
        assert_eq!(malformed.code(), Code::InvalidArgument, "{backend:?}");
        assert!(malformed.message().contains("finess_number"));
        let recorded = directory
            .put_organisation(put("230000019"))
            .await
            .expect("recorded")
            .into_inner()
            .organisation
            .expect("organisation");
        assert_eq!(recorded.org_id, CENTRE);
        assert_eq!(recorded.version, 1);

        // Public to the suite's professionals, written by the organisation's administrator only.
        let specialist =
            Person::specialist("dr-lecteur", "chu-limoges").in_specialty("dermatology");
        let read = suite
            .directory(&specialist)
            .await
            .get_organisation(pb::GetOrganisationRequest {
                org_id: CENTRE.into(),
            })
            .await
            .expect("read")
            .into_inner()
            .organisation
            .expect("organisation");
        assert_eq!(read.finess_number, "230000019");
        let other = suite
            .directory(&admin("admin-autre", OTHER_CENTRE))
            .await
            .put_organisation(put("230000019"))
            .await
            .expect_err("the FINESS number is another organisation's");
        assert_eq!(other.code(), Code::AlreadyExists);
        suite.stop().await;
    }
}

#[tokio::test]
async fn sign_in_finds_the_active_memberships_of_a_professional_by_rpps() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        const RPPS: &str = "10100000008";
        let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
        let last_week = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7);
        // The same doctor works at a centre and at the CHU, and worked at another centre.
        for (org, administrator, subject, ended) in [
            (CENTRE, "admin-gueret", "dr-lambert", false),
            ("chu-limoges", "admin-chu", "dr-lambert-chu", false),
            (OTHER_CENTRE, "admin-aubusson", "dr-lambert-old", true),
        ] {
            let administrator = Person::with_roles(administrator, org, &[Role::Admin]);
            suite
                .directory(&administrator)
                .await
                .put_member(pb::PutMemberRequest {
                    subject: subject.into(),
                    roles: vec![pb::Role::Doctor as i32],
                    rpps_number: RPPS.into(),
                    profession: pb::Profession::Physician as i32,
                    since_time: ended.then(|| telehealth_kit::record::timestamp(last_week)),
                    until_time: ended.then(|| telehealth_kit::record::timestamp(yesterday)),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|status| panic!("{org}: {status:?}"));
        }

        // Asked as a service of the suite, over internal mTLS (no gateway in front).
        let address =
            suite.running.as_ref().expect("running").services[&telehealth_kit::Part::Directory];
        let channel = suite
            .internal_channel(telehealth_kit::Part::Scheduling, address)
            .await;
        let mut internal = pb::directory_service_client::DirectoryServiceClient::new(channel);
        let find = |rpps: &str| pb::FindMembershipsRequest {
            rpps_number: rpps.into(),
        };
        let found = internal
            .find_memberships(find(RPPS))
            .await
            .expect("found")
            .into_inner()
            .members;
        let orgs: Vec<(&str, &str)> = found
            .iter()
            .map(|m| (m.org_id.as_str(), m.subject.as_str()))
            .collect();
        assert_eq!(
            orgs,
            vec![(CENTRE, "dr-lambert"), ("chu-limoges", "dr-lambert-chu")],
            "{backend:?}: the ended membership is not offered"
        );
        assert!(found.iter().all(|m| m.active));

        let nobody = internal
            .find_memberships(find("10000000009"))
            .await
            .expect("answered")
            .into_inner()
            .members;
        assert!(nobody.is_empty(), "{backend:?}");
        let malformed = internal
            .find_memberships(find("10100000007"))
            .await
            .expect_err("a wrong key");
        assert_eq!(malformed.code(), Code::InvalidArgument, "{backend:?}");
        assert!(
            malformed.message().contains("rpps_number"),
            "{}",
            malformed.message()
        );
        suite.stop().await;
    }
}
