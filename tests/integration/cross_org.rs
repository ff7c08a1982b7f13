//! Every RPC of the contract, tried by users of another organisation against one centre's
//! records, through the real gateway.
//!
//! A centre ("cds-alpha") books, registers a wound, records an assessment with a photo, asks a
//! tele-expertise with an image and opens a video room. Then users of another centre (each
//! role) and a specialist of another hospital call every RPC of the contract with that centre's
//! ids and people. Each call must either be refused exactly as the same call naming records
//! and people that do not exist ("ghosts": same code, same message, so the answer never tells
//! whether the record exists), or succeed without returning anything of the centre's.
//!
//! The table is checked against the descriptor set: a new RPC without a line here fails the
//! test, so the whole class stays covered.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use jiff::{Timestamp, ToSpan};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use telehealth_images::format::fixtures;
use telehealth_kit::raw_codec::RawCodec;
use tonic::{Code, Status, codegen::http::uri::PathAndQuery, transport::Channel};

use telehealth_testkit::suite::{Backend, Person, Suite, backends};

const CENTRE: &str = "cds-alpha";
const OTHER_CENTRE: &str = "cds-beta";
/// The hospital the centre's request goes to (a default expertise target).
const HOSPITAL: &str = "chu-limoges";
/// Another hospital offering the same specialty.
const OTHER_HOSPITAL: &str = "ch-gueret";

/// How a line of the table may end for an outsider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused with NOT_FOUND or PERMISSION_DENIED, exactly as for ghosts.
    Refused,
    /// Refused as for ghosts, or answered without anything of the centre's.
    Blind,
    /// Sign-in, which names no record of anyone's: any refusal, the same as for ghosts.
    SignIn,
}

/// One RPC with a request naming the centre's records (`{placeholders}`).
struct Line {
    method: &'static str,
    request: Value,
    expect: Expect,
}

fn line(method: &'static str, request: Value, expect: Expect) -> Line {
    Line {
        method,
        request,
        expect,
    }
}

/// Every RPC of the contract, with a request aimed at the centre's records.
fn table() -> Vec<Line> {
    use Expect::{Blind, Refused, SignIn};
    let future = |days: i64| {
        let at = Timestamp::now() + (days * 24).hours();
        Timestamp::from_second(at.as_second() - at.as_second() % 60)
            .expect("instant")
            .to_string()
    };
    let range = json!({"startTime": future(1), "endTime": future(20)});
    vec![
        // directory
        line("DirectoryService/RegisterSelf", json!({}), Blind),
        line(
            "DirectoryService/PutMember",
            json!({"subject": "{me}", "roles": ["ROLE_NURSE"]}),
            Blind,
        ),
        line(
            "DirectoryService/EndMembership",
            json!({"subject": "{nurse}"}),
            Refused,
        ),
        line(
            "DirectoryService/GetMember",
            json!({"subject": "{nurse}"}),
            Refused,
        ),
        line(
            "DirectoryService/ListMembers",
            json!({"includeEnded": true}),
            Blind,
        ),
        line(
            "DirectoryService/PutOrganisation",
            json!({"displayName": "Centre de santé Bêta", "kind": "ORGANISATION_KIND_HEALTH_CENTRE",
                "finessNumber": "230000019"}),
            Blind,
        ),
        line(
            "DirectoryService/GetOrganisation",
            json!({"orgId": "{org}"}),
            Blind,
        ),
        line(
            "DirectoryService/ProposePartnership",
            json!({"hospitalOrgId": "chu-limoges"}),
            Blind,
        ),
        line(
            "DirectoryService/AcceptPartnership",
            json!({"centreOrgId": "{org}"}),
            Refused,
        ),
        line(
            "DirectoryService/EndPartnership",
            json!({"otherOrgId": "{org}"}),
            Refused,
        ),
        line("DirectoryService/ListPartnerships", json!({}), Blind),
        line(
            "DirectoryService/CheckPartnership",
            json!({"centreOrgId": "{org}", "hospitalOrgId": "chu-limoges"}),
            Refused,
        ),
        line(
            "DirectoryService/CheckMembers",
            json!({"orgId": "{org}", "subjects": ["{nurse}"]}),
            Refused,
        ),
        line(
            "DirectoryService/FindMemberships",
            json!({"rppsNumber": "10003009015"}),
            Refused,
        ),
        // sign-in: the centre's people have no sessions or devices of the auth service here
        // (their tokens are minted); each answer must be the same as for ghosts.
        line("AuthService/ListProviders", json!({}), SignIn),
        line(
            "AuthService/StartSignIn",
            json!({"provider": "psc", "csrPem": "x"}),
            SignIn,
        ),
        line(
            "AuthService/FinishSignIn",
            json!({"provider": "psc", "state": "s", "code": "c"}),
            SignIn,
        ),
        line(
            "AuthService/StartDeviceSignIn",
            json!({"provider": "psc", "csrPem": "x"}),
            SignIn,
        ),
        line(
            "AuthService/PollDeviceSignIn",
            json!({"signInId": "{key}"}),
            SignIn,
        ),
        line(
            "AuthService/CompleteSignIn",
            json!({"ticket": "{key}", "orgId": "{org}", "csrPem": "x"}),
            SignIn,
        ),
        line(
            "AuthService/DevelopmentSignIn",
            json!({"rppsNumber": "10000000017", "csrPem": "x"}),
            SignIn,
        ),
        line(
            "AuthService/Refresh",
            json!({"refreshToken": "{key}"}),
            SignIn,
        ),
        line("AuthService/SignOut", json!({}), Blind),
        line(
            "AuthService/ListSessions",
            json!({"organisation": true}),
            Blind,
        ),
        line(
            "AuthService/EndSession",
            json!({"sessionId": "{key}"}),
            Blind,
        ),
        line(
            "AuthService/ListDevices",
            json!({"organisation": true}),
            Blind,
        ),
        line(
            "AuthService/RevokeDevice",
            json!({"deviceId": "{key}"}),
            Blind,
        ),
        line("AuthService/PublishedKeys", json!({}), Refused),
        // Renews the caller's own device: names no record of anyone's.
        line(
            "AuthService/RenewDevice",
            json!({"csrPem": "not a request"}),
            SignIn,
        ),
        // patients
        line(
            "PatientService/CreatePatient",
            json!({"identity": {"birthName": "DURAND", "firstNames": "Marthe",
                "sex": "SEX_FEMALE", "birthDate": "1942-04-02"}}),
            Blind,
        ),
        line(
            "PatientService/GetPatient",
            json!({"patientId": "{patient}"}),
            Refused,
        ),
        line(
            "PatientService/UpdatePatient",
            json!({"patientId": "{patient}", "contact": {"phone": "05 55 00 00 00"}}),
            Refused,
        ),
        line(
            "PatientService/SetIdentityStatus",
            json!({"patientId": "{patient}", "status": "IDENTITY_STATUS_PROVISIONAL",
                "proof": "IDENTITY_PROOF_DOUBT"}),
            Refused,
        ),
        line(
            "PatientService/SearchPatients",
            json!({"name": "Durand", "birthDate": "1942-04-02"}),
            Blind,
        ),
        line(
            "PatientService/MergePatients",
            json!({"survivingId": "{patient}", "mergedId": "{patient2}"}),
            Refused,
        ),
        line(
            "PatientService/ExportPatient",
            json!({"patientId": "{patient}"}),
            Refused,
        ),
        line(
            "PatientService/RecordObjection",
            json!({"patientId": "{patient}", "objects": true}),
            Refused,
        ),
        line(
            "PatientService/RecordConsent",
            json!({"patientId": "{patient}", "act": "CONSENT_ACT_TELECONSULTATION",
                "decision": "CONSENT_DECISION_GIVEN", "method": "CONSENT_METHOD_ORAL"}),
            Refused,
        ),
        line(
            "PatientService/WithdrawConsent",
            json!({"consentId": "{consent}"}),
            Refused,
        ),
        line(
            "PatientService/ListConsents",
            json!({"patientId": "{patient}"}),
            Refused,
        ),
        line(
            "PatientService/CheckConsent",
            json!({"orgId": "{org}", "patientId": "{patient}", "act": "CONSENT_ACT_TELE_EXPERTISE"}),
            Refused,
        ),
        line(
            "PatientService/ResolvePatient",
            json!({"orgId": "{org}", "patientId": "{patient}"}),
            Refused,
        ),
        line(
            "PatientService/SharePatient",
            json!({"orgId": "{org}", "patientId": "{patient}", "withOrgId": "cds-beta",
                "reason": "test"}),
            Refused,
        ),
        line(
            "PatientService/ReportIdentity",
            json!({"orgId": "{org}", "patientId": "{patient}"}),
            Refused,
        ),
        // scheduling
        line(
            "SchedulingService/SetWeeklyAvailability",
            json!({"practitionerSubject": "{doctor}",
            "timeZone": "Europe/Paris", "weeklyRanges": [{"day": "DAY_OF_WEEK_MONDAY",
            "startLocalTime": "09:00", "endLocalTime": "12:00"}]}),
            Refused,
        ),
        line(
            "SchedulingService/GetAvailability",
            json!({"practitionerSubject": "{doctor}"}),
            Refused,
        ),
        line(
            "SchedulingService/AddAvailabilityException",
            json!({"idempotencyKey": "{key}",
            "kind": "AVAILABILITY_EXCEPTION_KIND_LEAVE", "practitionerSubject": "{nurse}",
            "startDate": "2030-01-07", "endDate": "2030-01-08", "timeZone": "Europe/Paris",
            "note": "congés"}),
            Refused,
        ),
        line(
            "SchedulingService/RemoveAvailabilityException",
            json!({"exceptionId": "{exception}"}),
            Refused,
        ),
        line(
            "SchedulingService/ListAvailabilityExceptions",
            json!({"practitionerSubject": "{nurse}",
            "fromDate": "2031-01-01", "toDate": "2031-12-31"}),
            Refused,
        ),
        line(
            "SchedulingService/ListFreeSlots",
            json!({"practitionerSubjects": ["{doctor}"],
            "range": range, "durationMinutes": 30}),
            Refused,
        ),
        line(
            "SchedulingService/HoldSlot",
            json!({"doctorSubject": "{doctor}",
            "startTime": future(5), "durationMinutes": 30}),
            Refused,
        ),
        line(
            "SchedulingService/ReleaseHold",
            json!({"holdId": "{hold}"}),
            Refused,
        ),
        line(
            "SchedulingService/BookAppointment",
            json!({"idempotencyKey": "{key}",
            "doctorSubject": "{me}", "nurseSubject": "{nurse}", "patient": {"pseudonym": "pat-x"},
            "startTime": future(6), "durationMinutes": 30, "reason": "suivi"}),
            Refused,
        ),
        line(
            "SchedulingService/GetAppointment",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        line(
            "SchedulingService/ListAppointments",
            json!({"doctorSubject": "{doctor}", "range": range}),
            Blind,
        ),
        line(
            "SchedulingService/ListAppointments",
            json!({"patient": {"pseudonym": "{patient}"}, "range": range}),
            Refused,
        ),
        line(
            "SchedulingService/CancelAppointment",
            json!({"appointmentId": "{appointment}",
            "reason": "CANCELLATION_REASON_PATIENT_REQUEST", "comment": "x"}),
            Refused,
        ),
        line(
            "SchedulingService/RescheduleAppointment",
            json!({"appointmentId": "{appointment}",
            "newStartTime": future(7)}),
            Refused,
        ),
        line(
            "SchedulingService/CheckIn",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        line(
            "SchedulingService/StartTeleconsultation",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        line(
            "SchedulingService/FinishAppointment",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        line(
            "SchedulingService/MarkNoShow",
            json!({"appointmentId": "{appointment}", "comment": "x"}),
            Refused,
        ),
        line(
            "SchedulingService/GetAppointmentHistory",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        line(
            "SchedulingService/WatchAppointments",
            json!({"practitionerSubject": "{doctor}"}),
            Refused,
        ),
        line(
            "SchedulingService/ExportCalendar",
            json!({"practitionerSubject": "{doctor}", "range": range}),
            Refused,
        ),
        line(
            "SchedulingService/MarkWaitingRoom",
            json!({"appointmentId": "{appointment}",
            "roomId": "{room}", "participantSubject": "{me}",
            "participantRole": "PARTICIPANT_ROLE_PATIENT"}),
            Refused,
        ),
        // signalling
        line(
            "SignallingService/OpenRoom",
            json!({"appointmentId": "{appointment}", "orgId": "{org}"}),
            Refused,
        ),
        line(
            "SignallingService/CloseRoom",
            json!({"appointmentId": "{appointment}",
            "reason": "ROOM_CLOSE_REASON_CANCELLED"}),
            Refused,
        ),
        line(
            "SignallingService/Signal",
            json!({"clientSequence": 1, "join": {"roomId": "{room}"}}),
            Refused,
        ),
        line(
            "SignallingService/OpenSignal",
            json!({"clientSequence": 1, "join": {"roomId": "{room}"}}),
            Refused,
        ),
        // An inbox id is the stream's secret: a guessed one takes nothing, answered alike.
        line(
            "SignallingService/SendSignal",
            json!({"inboxId": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "message": {"clientSequence": 2, "keepAlive": {}}}),
            Blind,
        ),
        line(
            "SignallingService/GetIceServers",
            json!({"roomId": "{room}"}),
            Refused,
        ),
        line(
            "SignallingService/ReportTechnicalIncident",
            json!({"appointmentId": "{appointment}",
            "report": {"clientIncidentId": "{key}", "kind": "INCIDENT_KIND_CONNECTION_DROPPED",
            "occurredAt": future(0), "description": "coupure"}}),
            Refused,
        ),
        line(
            "SignallingService/ListTechnicalIncidents",
            json!({"appointmentId": "{appointment}"}),
            Refused,
        ),
        // wound monitoring
        line(
            "WoundService/RegisterWound",
            json!({"idempotencyKey": "{key}", "patient": {"pseudonym": "pat-y"},
            "description": wound_description(), "referringDoctorSubject": "{doctor}",
            "careTeamNurseSubjects": ["{nurse}"]}),
            Refused,
        ),
        line(
            "WoundService/UpdateWound",
            json!({"woundId": "{wound}", "description": wound_description()}),
            Refused,
        ),
        line(
            "WoundService/UpdateCareTeam",
            json!({"woundId": "{wound}", "careTeamNurseSubjects": ["{nurse}"]}),
            Refused,
        ),
        line(
            "WoundService/CloseWound",
            json!({"woundId": "{wound}", "reason": "WOUND_CLOSURE_REASON_HEALED"}),
            Refused,
        ),
        line(
            "WoundService/ReopenWound",
            json!({"woundId": "{wound}", "comment": "récidive"}),
            Refused,
        ),
        line(
            "WoundService/GetWound",
            json!({"woundId": "{wound}"}),
            Refused,
        ),
        line(
            "WoundService/RecordAssessment",
            json!({"idempotencyKey": "{key}", "woundId": "{wound}",
            "measurements": measurements(&future(-1))}),
            Refused,
        ),
        line(
            "WoundService/CorrectAssessment",
            json!({"assessmentId": "{assessment}",
            "measurements": measurements(&future(-1)), "correctionReason": "erreur",
            "expectedVersion": 1}),
            Refused,
        ),
        line(
            "WoundService/GetAssessment",
            json!({"assessmentId": "{assessment}"}),
            Refused,
        ),
        line(
            "WoundService/ListAssessments",
            json!({"woundId": "{wound}"}),
            Refused,
        ),
        line(
            "WoundService/ListAssessmentVersions",
            json!({"assessmentId": "{assessment}"}),
            Refused,
        ),
        line(
            "WoundService/UploadPhoto",
            json!({"header": {"woundId": "{wound}",
            "assessmentId": "{assessment}", "image": image_header("{photo_session}")}}),
            Refused,
        ),
        line(
            "WoundService/UploadPhotoPart",
            json!({"header": {"woundId": "{wound}",
            "assessmentId": "{assessment}", "image": image_header("{photo_session}")},
            "chunk": {"offset": "0", "data": "/9j/"}}),
            Refused,
        ),
        line(
            "WoundService/GetPhotoUploadStatus",
            json!({"woundId": "{wound}",
            "uploadSessionId": "{photo_session}"}),
            Refused,
        ),
        line(
            "WoundService/DownloadPhoto",
            json!({"woundId": "{wound}", "imageId": "{photo}"}),
            Refused,
        ),
        line(
            "WoundService/GetPhotoThumbnail",
            json!({"woundId": "{wound}", "imageId": "{photo}"}),
            Refused,
        ),
        line(
            "WoundService/GetWoundTrend",
            json!({"woundId": "{wound}"}),
            Refused,
        ),
        line(
            "WoundService/ListAlerts",
            json!({"woundId": "{wound}"}),
            Refused,
        ),
        line(
            "WoundService/AcknowledgeAlert",
            json!({"alertId": "{alert}", "comment": "vu"}),
            Refused,
        ),
        line(
            "WoundService/WatchAlerts",
            json!({"woundId": "{wound}"}),
            Refused,
        ),
        line("WoundService/ListNurseRound", json!({}), Blind),
        line(
            "WoundService/ListDoctorWounds",
            json!({"wholeOrg": true}),
            Blind,
        ),
        line(
            "WoundService/ListDoctorWounds",
            json!({"wholeOrg": true, "patient": {"pseudonym": "{patient}"}}),
            Refused,
        ),
        // tele-expertise
        line("ExpertiseService/ListTargets", json!({}), Blind),
        line(
            "ExpertiseService/CreateWoundRequest",
            json!({"requester": {"subject": "{nurse}", "orgId": "{org}", "roles": ["ROLE_NURSE"]},
                "idempotencyKey": "{key}", "content": {"targetOrgId": "chu-limoges",
                "specialty": "wound_care", "clinicalQuestion": "Avis ?",
                "wound": {"woundId": "{wound}"}}, "submit": true}),
            Refused,
        ),
        line(
            "WoundService/RequestWoundExpertise",
            json!({"idempotencyKey": "{key}", "woundId": "{wound}", "targetOrgId": "chu-limoges",
                "specialty": "wound_care", "clinicalQuestion": "Avis sur cet ulcère ?",
                "urgency": "URGENCY_ROUTINE"}),
            Refused,
        ),
        line(
            "ExpertiseService/CreateDraft",
            json!({"idempotencyKey": "{key}", "content": {
            "targetOrgId": HOSPITAL, "specialty": "dermatology",
            "clinicalQuestion": "Lésion pigmentée : avis ?", "urgency": "URGENCY_ROUTINE"}}),
            Blind,
        ),
        line(
            "ExpertiseService/UpdateDraft",
            json!({"requestId": "{request}", "content": {
            "targetOrgId": HOSPITAL, "specialty": "dermatology",
            "clinicalQuestion": "Autre question", "urgency": "URGENCY_ROUTINE"}}),
            Refused,
        ),
        line(
            "ExpertiseService/AttachImage",
            json!({"header": {"requestId": "{request}",
            "image": image_header("{image_session}")}}),
            Refused,
        ),
        line(
            "ExpertiseService/AttachImagePart",
            json!({"header": {"requestId": "{request}",
            "image": image_header("{image_session}")}, "chunk": {"offset": "0", "data": "/9j/"}}),
            Refused,
        ),
        line(
            "ExpertiseService/AttachWoundPhoto",
            json!({"header": {"requester": {"subject": "{nurse}", "orgId": "{org}",
                "roles": ["ROLE_NURSE"]}, "attach": {"requestId": "{request}",
                "image": image_header("{image_session}")}}}),
            Refused,
        ),
        line(
            "ExpertiseService/GetImageUploadStatus",
            json!({"requestId": "{request}",
            "uploadSessionId": "{image_session}"}),
            Refused,
        ),
        line(
            "ExpertiseService/DetachImage",
            json!({"requestId": "{request}", "imageId": "{image}"}),
            Refused,
        ),
        line(
            "ExpertiseService/DownloadImage",
            json!({"requestId": "{request}", "imageId": "{image}"}),
            Refused,
        ),
        line(
            "ExpertiseService/GetImageThumbnail",
            json!({"requestId": "{request}", "imageId": "{image}"}),
            Refused,
        ),
        line(
            "ExpertiseService/SubmitRequest",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line(
            "ExpertiseService/ClaimRequest",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line(
            "ExpertiseService/ReleaseRequest",
            json!({"requestId": "{request}", "comment": "x"}),
            Refused,
        ),
        line(
            "ExpertiseService/AnswerRequest",
            json!({"requestId": "{request}", "answer": {
            "impression": "naevus bénin", "recommendation": "RECOMMENDATION_REASSURE"}}),
            Refused,
        ),
        line(
            "ExpertiseService/DeclineRequest",
            json!({"requestId": "{request}",
            "reason": "DECLINE_REASON_NEEDS_IN_PERSON_VISIT", "comment": "x"}),
            Refused,
        ),
        line(
            "ExpertiseService/WithdrawRequest",
            json!({"requestId": "{request}", "reason": "x"}),
            Refused,
        ),
        line(
            "ExpertiseService/CloseRequest",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line(
            "ExpertiseService/PostMessage",
            json!({"requestId": "{request}", "idempotencyKey": "{key}",
            "text": "bonjour"}),
            Refused,
        ),
        line(
            "ExpertiseService/ListMessages",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line(
            "ExpertiseService/GetRequest",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line("ExpertiseService/ListInbox", json!({}), Blind),
        line(
            "ExpertiseService/ListMyRequests",
            json!({"wholeOrg": true}),
            Blind,
        ),
        line(
            "ExpertiseService/ListMyRequests",
            json!({"wholeOrg": true, "patient": {"pseudonym": "{patient}"}}),
            Refused,
        ),
        line(
            "ExpertiseService/WatchRequests",
            json!({"requestId": "{request}"}),
            Refused,
        ),
        line(
            "ExpertiseService/GetActivityReport",
            json!({"orgId": "{org}", "month": "{month}",
            "timeZone": "Europe/Paris"}),
            Refused,
        ),
        line(
            "ExpertiseService/GetAnswerReport",
            json!({"requestId": "{request}"}),
            Refused,
        ),
    ]
}

fn wound_description() -> Value {
    json!({"bodySite": {"region": "BODY_REGION_LOWER_LEG", "laterality": "LATERALITY_LEFT"},
        "aetiology": "AETIOLOGY_VENOUS_LEG_ULCER", "onsetDate": "2024-01-15",
        "plannedAssessmentIntervalDays": 7})
}

fn measurements(at: &str) -> Value {
    json!({"assessedAt": at, "lengthCm": 4.0, "widthCm": 3.0, "tissueType": "TISSUE_TYPE_GRANULATION",
        "exudate": "EXUDATE_AMOUNT_LIGHT", "infectionSigns": ["INFECTION_SIGN_PURULENT_DISCHARGE"]})
}

fn image_header(session: &str) -> Value {
    let jpeg = fixtures::jpeg_plain(64, 48);
    json!({"uploadSessionId": session, "totalSizeBytes": jpeg.len(),
        "declaredKind": "IMAGE_KIND_OVERVIEW", "clientSha256Hex": hex(&Sha256::digest(&jpeg)),
        "bodySite": {"region": "BODY_REGION_UPPER_BACK"}})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A caller of any RPC of the contract with JSON requests, through the gateway.
struct Caller {
    channel: Channel,
    token: String,
    pool: DescriptorPool,
}

/// What a call ended with: the JSON responses, or the status.
type Outcome = Result<Vec<Value>, Status>;

impl Caller {
    async fn new(suite: &Suite, person: &Person) -> Caller {
        suite.enrol(person).await;
        Caller {
            channel: suite
                .channel_to(suite.running.as_ref().expect("running").gateway, person)
                .await,
            token: suite.token(person),
            pool: DescriptorPool::decode(telehealth_proto::FILE_DESCRIPTOR_SET)
                .expect("descriptor"),
        }
    }

    fn method(&self, name: &str) -> MethodDescriptor {
        let (service, method) = name.split_once('/').expect("Service/Method");
        self.pool
            .get_service_by_name(&format!("telehealth.v1.{service}"))
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .unwrap_or_else(|| panic!("{name} is in the contract"))
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(Duration::from_secs(10));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().expect("ascii"),
        );
        request
    }

    /// Calls `name` with the JSON messages (several only for client streams); a server stream
    /// is read for its first message, or until it stays quiet for a moment.
    async fn call(&self, name: &str, messages: Vec<Value>) -> Outcome {
        let method = self.method(name);
        let encode = |value: &Value| -> Bytes {
            let message = DynamicMessage::deserialize(method.input(), value.clone())
                .unwrap_or_else(|e| panic!("{name}: the test's request is valid JSON: {e}"));
            Bytes::from(message.encode_to_vec())
        };
        let decode = |bytes: Bytes| -> Value {
            let message = DynamicMessage::decode(method.output(), bytes).expect("response");
            serde_json::to_value(&message).expect("json")
        };
        let path: PathAndQuery = format!("/telehealth.v1.{name}").parse().expect("path");
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.expect("ready");
        let encoded: Vec<Bytes> = messages.iter().map(encode).collect();
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => {
                let request = self.request(encoded.into_iter().next().expect("one message"));
                grpc.unary(request, path, RawCodec)
                    .await
                    .map(|r| vec![decode(r.into_inner())])
            }
            (false, true) => {
                let request = self.request(encoded.into_iter().next().expect("one message"));
                let mut stream = grpc
                    .server_streaming(request, path, RawCodec)
                    .await?
                    .into_inner();
                first_messages(&mut stream, decode).await
            }
            (true, false) => {
                let request = self.request(futures::stream::iter(encoded));
                grpc.client_streaming(request, path, RawCodec)
                    .await
                    .map(|r| vec![decode(r.into_inner())])
            }
            (true, true) => {
                // Keep the request stream open: a closed one would end the session by itself.
                let (sender, receiver) = tokio::sync::mpsc::channel(4);
                for message in encoded {
                    sender.send(message).await.expect("queued");
                }
                let request = self.request(tokio_stream::wrappers::ReceiverStream::new(receiver));
                let mut stream = grpc.streaming(request, path, RawCodec).await?.into_inner();
                let outcome = first_messages(&mut stream, decode).await;
                drop(sender);
                outcome
            }
        }
    }

    /// Calls a unary RPC that must succeed; returns its JSON response.
    async fn ok(&self, name: &str, request: Value) -> Value {
        let mut answers = self
            .call(name, vec![request])
            .await
            .unwrap_or_else(|status| panic!("{name} succeeds for the centre: {status:?}"));
        answers.remove(0)
    }
}

/// The first message of a server stream (or none if it stays quiet for 700 ms), or its status.
async fn first_messages(
    stream: &mut tonic::Streaming<Bytes>,
    decode: impl Fn(Bytes) -> Value,
) -> Outcome {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(700), stream.next()).await {
            Err(_) | Ok(None) => return Ok(seen),
            Ok(Some(Err(status))) => return Err(status),
            Ok(Some(Ok(bytes))) => {
                seen.push(decode(bytes));
                if seen.len() >= 3 {
                    return Ok(seen);
                }
            }
        }
    }
}

/// Puts `values` in the placeholders of `template`.
fn fill(template: &Value, values: &BTreeMap<&'static str, String>) -> Value {
    match template {
        Value::String(text) => {
            let mut text = text.clone();
            for (name, value) in values {
                text = text.replace(&format!("{{{name}}}"), value);
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, values)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The centre's records, created through the gateway by its own people.
async fn centre_records(suite: &Suite) -> BTreeMap<&'static str, String> {
    let doctor = Person::doctor("dr-alpha", CENTRE);
    let nurse = Person::nurse("nurse-alpha", CENTRE);
    let doctor_calls = Caller::new(suite, &doctor).await;
    let nurse_calls = Caller::new(suite, &nurse).await;
    let coordinator_calls = Caller::new(suite, &Person::coordinator("coord-alpha", CENTRE)).await;
    // The centre's patient, registered with their consent to every act.
    let alpha = suite.consenting_patient(&doctor).await;
    let key = || uuid::Uuid::new_v4().to_string();
    let days = [
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
        "SUNDAY",
    ];
    let ranges: Vec<Value> = days
        .iter()
        .map(|d| json!({"day": format!("DAY_OF_WEEK_{d}"), "startLocalTime": "00:00", "endLocalTime": "24:00"}))
        .collect();
    doctor_calls
        .ok(
            "SchedulingService/SetWeeklyAvailability",
            json!({"practitionerSubject": "dr-alpha", "timeZone": "Europe/Paris", "weeklyRanges": ranges}),
        )
        .await;
    let mut records = BTreeMap::new();
    records.insert("org", CENTRE.to_owned());
    records.insert("doctor", "dr-alpha".to_owned());
    records.insert("nurse", "nurse-alpha".to_owned());
    records.insert("month", Timestamp::now().strftime("%Y-%m").to_string());
    for (name, birth_name) in [("patient", "DURAND"), ("patient2", "DUBOIS")] {
        let created = doctor_calls
            .ok(
                "PatientService/CreatePatient",
                json!({"identity": {"birthName": birth_name, "firstNames": "Marthe",
                    "sex": "SEX_FEMALE", "birthDate": "1942-04-02"}, "confirmDistinct": true}),
            )
            .await;
        records.insert(name, text(&created, "/patient/id"));
    }
    let consent = doctor_calls
        .ok(
            "PatientService/RecordConsent",
            json!({"patientId": records["patient"], "act": "CONSENT_ACT_TELE_EXPERTISE",
                "decision": "CONSENT_DECISION_GIVEN", "method": "CONSENT_METHOD_ORAL"}),
        )
        .await;
    records.insert("consent", text(&consent, "/consent/id"));
    let exception = coordinator_calls
        .ok(
            "SchedulingService/AddAvailabilityException",
            json!({"idempotencyKey": key(), "kind": "AVAILABILITY_EXCEPTION_KIND_LEAVE",
                "practitionerSubject": "nurse-alpha", "startDate": "2031-03-02",
                "endDate": "2031-03-03", "timeZone": "Europe/Paris", "note": "congés"}),
        )
        .await;
    records.insert("exception", text(&exception, "/exception/exceptionId"));
    let soon = |minutes: i64| {
        let at = Timestamp::now() + minutes.minutes();
        Timestamp::from_second(at.as_second() - at.as_second() % 300)
            .expect("instant")
            .to_string()
    };
    let hold = doctor_calls
        .ok(
            "SchedulingService/HoldSlot",
            json!({"doctorSubject": "dr-alpha", "startTime": soon(60 * 24 * 3), "durationMinutes": 30}),
        )
        .await;
    records.insert("hold", text(&hold, "/hold/holdId"));
    let booked = doctor_calls
        .ok(
            "SchedulingService/BookAppointment",
            json!({"idempotencyKey": key(), "doctorSubject": "dr-alpha", "nurseSubject": "nurse-alpha",
                "patient": {"pseudonym": alpha}, "startTime": soon(20), "durationMinutes": 30,
                "reason": "suivi plaie"}),
        )
        .await;
    let appointment = text(&booked, "/appointment/appointmentId");
    let started = doctor_calls
        .ok(
            "SchedulingService/StartTeleconsultation",
            json!({"appointmentId": appointment}),
        )
        .await;
    records.insert("room", text(&started, "/roomId"));
    records.insert("appointment", appointment);

    let wound = doctor_calls
        .ok(
            "WoundService/RegisterWound",
            json!({"idempotencyKey": key(), "patient": {"pseudonym": alpha},
                "description": wound_description(), "careTeamNurseSubjects": ["nurse-alpha"]}),
        )
        .await;
    let wound = text(&wound, "/wound/woundId");
    let assessed = nurse_calls
        .ok(
            "WoundService/RecordAssessment",
            json!({"idempotencyKey": key(), "woundId": wound,
                "measurements": measurements(&(Timestamp::now() - 1.hours()).to_string())}),
        )
        .await;
    let assessment = text(&assessed, "/assessment/assessmentId");
    let photo_session = key();
    let photo = upload(
        &nurse_calls,
        "WoundService/UploadPhoto",
        json!({"header": {"woundId": wound, "assessmentId": assessment,
            "image": image_header(&photo_session)}}),
    )
    .await;
    records.insert("photo", text(&photo, "/result/image/imageId"));
    records.insert("photo_session", photo_session);
    let alerts = doctor_calls
        .ok("WoundService/ListAlerts", json!({"woundId": wound}))
        .await;
    records.insert("alert", text(&alerts, "/alerts/0/alertId"));
    records.insert("assessment", assessment);
    records.insert("wound", wound);

    let draft = doctor_calls
        .ok(
            "ExpertiseService/CreateDraft",
            json!({"idempotencyKey": key(), "content": {"targetOrgId": HOSPITAL,
                "specialty": "dermatology", "clinicalQuestion": "Lésion pigmentée évolutive : avis ?",
                "urgency": "URGENCY_ROUTINE", "patient": {"patient": {"pseudonym": alpha},
                "ageYears": 61, "sex": "SEX_FEMALE"}}}),
        )
        .await;
    let request = text(&draft, "/request/requestId");
    let image_session = key();
    let image = upload(
        &doctor_calls,
        "ExpertiseService/AttachImage",
        json!({"header": {"requestId": request, "image": image_header(&image_session)}}),
    )
    .await;
    records.insert("image", text(&image, "/result/image/imageId"));
    records.insert("image_session", image_session);
    doctor_calls
        .ok(
            "ExpertiseService/SubmitRequest",
            json!({"requestId": request}),
        )
        .await;
    records.insert("request", request);
    records
}

/// Uploads the test JPEG with `header` in one chunk.
async fn upload(caller: &Caller, method: &str, header: Value) -> Value {
    let jpeg = fixtures::jpeg_plain(64, 48);
    let chunk = json!({"chunk": {"offset": 0,
        "data": base64::engine::general_purpose::STANDARD.encode(&jpeg)}});
    caller
        .call(method, vec![header, chunk])
        .await
        .unwrap_or_else(|status| panic!("{method} succeeds for the centre: {status:?}"))
        .remove(0)
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {value}"))
        .to_owned()
}

/// The same names, pointing at records and people that do not exist.
fn ghosts(records: &BTreeMap<&'static str, String>) -> BTreeMap<&'static str, String> {
    records
        .iter()
        .map(|(name, value)| {
            let ghost = match *name {
                "org" => "cds-ghost".to_owned(),
                "doctor" | "nurse" => {
                    format!("ghost-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
                }
                "month" => value.clone(),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            (*name, ghost)
        })
        .collect()
}

#[tokio::test]
async fn every_rpc_refuses_users_of_another_organisation_as_if_the_records_did_not_exist() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        every_rpc_refuses_outsiders(&suite, backend).await;
        suite.stop().await;
    }
}

async fn every_rpc_refuses_outsiders(suite: &Suite, backend: Backend) {
    let table = table();
    let pool = DescriptorPool::decode(telehealth_proto::FILE_DESCRIPTOR_SET).expect("descriptor");
    let contract: Vec<String> = pool
        .services()
        .filter(|s| s.package_name() == "telehealth.v1")
        .flat_map(|s| {
            s.methods()
                .map(|m| format!("{}/{}", s.name(), m.name()))
                .collect::<Vec<_>>()
        })
        .collect();
    for method in &contract {
        assert!(
            table.iter().any(|l| l.method == method),
            "{method} has no line in the cross-organisation table"
        );
    }

    let records = centre_records(suite).await;
    // What an answer must never show: the centre's record ids and its patient (people and the
    // org are names the outsider typed).
    let mut markers: Vec<String> = records
        .iter()
        .filter(|(name, _)| !matches!(**name, "month" | "org" | "doctor" | "nurse"))
        .map(|(_, v)| v.clone())
        .collect();
    markers.push("pat-alpha".to_owned());
    let outsiders = [
        Person::doctor("dr-beta", OTHER_CENTRE),
        Person::nurse("nurse-beta", OTHER_CENTRE),
        Person::coordinator("coord-beta", OTHER_CENTRE),
        Person::with_roles(
            "admin-beta",
            OTHER_CENTRE,
            &[telehealth_kit::identity::Role::Admin],
        ),
        Person::specialist("derm-gueret", OTHER_HOSPITAL),
    ];
    let mut failures = Vec::new();
    for outsider in &outsiders {
        let caller = Caller::new(suite, outsider).await;
        for line in &table {
            let mut values = records.clone();
            values.insert("me", outsider.subject.to_owned());
            values.insert("key", uuid::Uuid::new_v4().to_string());
            let mut ghost_values = ghosts(&records);
            ghost_values.insert("me", outsider.subject.to_owned());
            ghost_values.insert("key", uuid::Uuid::new_v4().to_string());
            let messages = |values: &BTreeMap<&'static str, String>| {
                let mut messages = vec![fill(&line.request, values)];
                if line.method.ends_with("UploadPhoto")
                    || line.method.ends_with("AttachImage")
                    || line.method.ends_with("AttachWoundPhoto")
                {
                    let jpeg = fixtures::jpeg_plain(64, 48);
                    messages.push(json!({"chunk": {"offset": 0,
                        "data": base64::engine::general_purpose::STANDARD.encode(&jpeg)}}));
                }
                messages
            };
            let real = caller.call(line.method, messages(&values)).await;
            let ghost = caller.call(line.method, messages(&ghost_values)).await;
            let case = format!("{backend:?}: {} calling {}", outsider.subject, line.method);
            match (&real, line.expect) {
                (Ok(answers), expect) => {
                    let shown = serde_json::to_string(answers).expect("json");
                    if expect == Expect::Refused {
                        failures.push(format!("{case}: accepted, answered {shown}"));
                    } else if let Some(marker) = markers.iter().find(|m| shown.contains(m.as_str()))
                    {
                        failures.push(format!(
                            "{case}: answer shows the centre's `{marker}`: {shown}"
                        ));
                    }
                }
                (Err(status), expect) => {
                    if expect != Expect::SignIn
                        && !matches!(status.code(), Code::NotFound | Code::PermissionDenied)
                    {
                        failures.push(format!("{case}: refused with {status:?}, expected NOT_FOUND or PERMISSION_DENIED"));
                    }
                    let same = ghost.as_ref().err().is_some_and(|g| {
                        g.code() == status.code() && g.message() == status.message()
                    });
                    if !same {
                        failures.push(format!(
                            "{case}: answered {status:?} but {ghost:?} for records that do not exist"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} outsider calls told or did too much:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
