//! Tele-expertise requests, their content, statuses and the lifecycle rules (pure).
//!
//! Enumerations of the contract that the core only stores and returns (sex, body region,
//! recommendation...) are kept as their contract numbers, validated at the edge; the ones the
//! core reasons about (status, urgency, event kind) are Rust enums.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::ExpertiseError;

pub use telehealth_kit::record::ActorRecord;

/// Status of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Draft,
    Submitted,
    Claimed,
    Answered,
    Closed,
    Withdrawn,
    Declined,
}

impl Status {
    /// Every status, in contract order.
    pub const ALL: [Status; 7] = [
        Status::Draft,
        Status::Submitted,
        Status::Claimed,
        Status::Answered,
        Status::Closed,
        Status::Withdrawn,
        Status::Declined,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Claimed => "claimed",
            Status::Answered => "answered",
            Status::Closed => "closed",
            Status::Withdrawn => "withdrawn",
            Status::Declined => "declined",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The contract's `ExpertiseStatus` number.
    pub fn number(self) -> i32 {
        match self {
            Status::Draft => 1,
            Status::Submitted => 2,
            Status::Claimed => 3,
            Status::Answered => 4,
            Status::Closed => 5,
            Status::Withdrawn => 6,
            Status::Declined => 7,
        }
    }

    /// The status of a contract number.
    pub fn from_number(number: i32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.number() == number)
    }

    /// Waiting for an answer: the due date applies.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Submitted | Status::Claimed)
    }
}

/// Urgency of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    #[default]
    Unspecified,
    Routine,
    Urgent,
}

impl Urgency {
    /// The contract number.
    pub fn number(self) -> i32 {
        match self {
            Urgency::Unspecified => 0,
            Urgency::Routine => 1,
            Urgency::Urgent => 2,
        }
    }

    /// From a contract number.
    pub fn from_number(number: i32) -> Option<Urgency> {
        [Urgency::Unspecified, Urgency::Routine, Urgency::Urgent]
            .into_iter()
            .find(|u| u.number() == number)
    }
}

/// What happened to a request (the contract's `ExpertiseEventKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Submitted = 1,
    Claimed = 2,
    Released = 3,
    MessagePosted = 4,
    ImageAttached = 5,
    Answered = 6,
    Declined = 7,
    Withdrawn = 8,
    Closed = 9,
    BecameOverdue = 10,
}

impl EventKind {
    /// From the stored contract number.
    pub fn from_number(number: i64) -> Option<EventKind> {
        use EventKind::*;
        [
            Submitted,
            Claimed,
            Released,
            MessagePosted,
            ImageAttached,
            Answered,
            Declined,
            Withdrawn,
            Closed,
            BecameOverdue,
        ]
        .into_iter()
        .find(|k| *k as i64 == number)
    }

    /// Events every specialist of the target hears of (the inbox); the others go to the claimer.
    pub fn is_inbox_event(self) -> bool {
        matches!(
            self,
            EventKind::Submitted
                | EventKind::Claimed
                | EventKind::Released
                | EventKind::Withdrawn
                | EventKind::BecameOverdue
        )
    }
}

/// Body site, as given (region and laterality as contract numbers).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BodySite {
    pub region: i32,
    pub laterality: i32,
    pub description: String,
    pub snomed_ct_code: String,
}

/// The patient as the expert needs to know him.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Patient {
    pub pseudonym: String,
    pub age_years: i32,
    pub age_months: i32,
    /// `Sex` number.
    pub sex: i32,
}

/// Clinical context.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClinicalContext {
    pub medical_history: String,
    pub body_site: Option<BodySite>,
    pub lesion_duration: String,
    /// `LesionEvolution` number.
    pub evolution: i32,
    pub evolution_details: String,
    pub symptoms: String,
    pub treatments_tried: String,
}

/// The patient's general practitioner, addressee of the answer report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GeneralPractitioner {
    pub is_requester: bool,
    pub display_name: String,
    pub rpps_number: String,
    pub mssante_address: String,
}

/// What the requester writes (validated for form; completeness is checked at submission).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Content {
    pub target_org_id: String,
    pub specialty: String,
    pub patient: Option<Patient>,
    pub clinical_question: String,
    pub context: Option<ClinicalContext>,
    pub urgency: Urgency,
    pub general_practitioner: Option<GeneralPractitioner>,
    /// Where the answer report is sent for the requester (MSSanté), if given.
    #[serde(default)]
    pub requester_mssante_address: String,
    /// The wound the request is about (set by wound monitoring only).
    #[serde(default)]
    pub wound: Option<WoundContext>,
}

/// A wound and its healing so far, as wound monitoring sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WoundContext {
    pub wound_id: String,
    pub aetiology: String,
    pub body_site: String,
    pub history: Vec<WoundHistoryPoint>,
}

/// One assessment of a wound's history; lengths in hundredths of a cm, the area in hundredths
/// of a cm² (kept exact, so that a request reads back as it was sent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WoundHistoryPoint {
    pub assessed_at_us: i64,
    pub length_cm_x100: i64,
    pub width_cm_x100: i64,
    pub area_cm2_x100: i64,
    pub push_score: i32,
}

/// Most history points a request carries.
pub const MAX_WOUND_HISTORY: usize = 100;

impl Content {
    /// The fields a submission still lacks, named as in the contract.
    pub fn missing_fields(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.target_org_id.is_empty() {
            missing.push("target_org_id");
        }
        if self.specialty.is_empty() {
            missing.push("specialty");
        }
        match &self.patient {
            None => missing.push("patient"),
            Some(patient) => {
                if patient.pseudonym.is_empty() {
                    missing.push("patient.patient.pseudonym");
                }
                if patient.sex == 0 {
                    missing.push("patient.sex");
                }
            }
        }
        if self.clinical_question.is_empty() {
            missing.push("clinical_question");
        }
        if self.urgency == Urgency::Unspecified {
            missing.push("urgency");
        }
        if let Some(site) = self.context.as_ref().and_then(|c| c.body_site.as_ref())
            && site.region == OTHER_BODY_REGION
            && site.description.is_empty()
        {
            missing.push("context.body_site.description (required for OTHER)");
        }
        missing
    }
}

/// `BodyRegion.BODY_REGION_OTHER`.
pub const OTHER_BODY_REGION: i32 = 29;
/// `Recommendation.RECOMMENDATION_MONITOR`.
pub const RECOMMENDATION_MONITOR: i32 = 2;
/// `Recommendation.RECOMMENDATION_OTHER`.
pub const RECOMMENDATION_OTHER: i32 = 7;
/// `DeclineReason.DECLINE_REASON_OTHER`.
pub const DECLINE_REASON_OTHER: i32 = 5;

/// The specialist's structured answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Answer {
    pub impression: String,
    /// `Recommendation` number.
    pub recommendation: i32,
    pub monitor_interval_months: i32,
    pub recommendation_details: String,
    pub free_text: String,
}

/// A refusal by a specialist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// `DeclineReason` number.
    pub reason: i32,
    pub comment: String,
    pub by: ActorRecord,
}

/// A withdrawal by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub reason: String,
    pub by: ActorRecord,
}

/// The id of a tele-expertise request.
pub type RequestId = telehealth_kit::ids::Id<Request>;

/// A tele-expertise request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub status: Status,
    pub requester: ActorRecord,
    pub requester_org: String,
    pub content: Content,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub submitted_at: Option<Timestamp>,
    pub due_at: Option<Timestamp>,
    pub overdue_announced: bool,
    pub claimed_by: Option<ActorRecord>,
    pub claimed_at: Option<Timestamp>,
    pub answer: Option<Answer>,
    pub answered_at: Option<Timestamp>,
    pub decline: Option<Decline>,
    pub declined_at: Option<Timestamp>,
    pub withdrawal: Option<Withdrawal>,
    pub withdrawn_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub closed_by: Option<ActorRecord>,
    pub message_count: i64,
    pub version: i64,
    /// The patient's consent the request was submitted on.
    pub consent_id: Option<String>,
}

impl Request {
    /// True when waiting for an answer past its due date at `now`.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.status.is_open() && self.due_at.is_some_and(|due| now > due)
    }

    /// True when answered after the due date.
    pub fn answered_late(&self) -> bool {
        matches!((self.answered_at, self.due_at), (Some(a), Some(d)) if a > d)
    }

    /// The subject of the claiming specialist, if any.
    pub fn claimer(&self) -> Option<&str> {
        self.claimed_by.as_ref().map(|a| a.subject.as_str())
    }
}

/// A message on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub request_id: String,
    pub sequence: i64,
    pub author: ActorRecord,
    pub text: String,
    pub posted_at: Timestamp,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub request_id: String,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    pub actor: ActorRecord,
    pub message_id: Option<String>,
}

/// A lifecycle change asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Submit,
    Claim,
    Release,
    Answer,
    Decline,
    Withdraw,
    Close,
}

impl Transition {
    /// The RPC name (audit action).
    pub fn action(self) -> &'static str {
        match self {
            Transition::Submit => "SubmitRequest",
            Transition::Claim => "ClaimRequest",
            Transition::Release => "ReleaseRequest",
            Transition::Answer => "AnswerRequest",
            Transition::Decline => "DeclineRequest",
            Transition::Withdraw => "WithdrawRequest",
            Transition::Close => "CloseRequest",
        }
    }

    /// The event a successful transition records.
    pub fn event(self) -> EventKind {
        match self {
            Transition::Submit => EventKind::Submitted,
            Transition::Claim => EventKind::Claimed,
            Transition::Release => EventKind::Released,
            Transition::Answer => EventKind::Answered,
            Transition::Decline => EventKind::Declined,
            Transition::Withdraw => EventKind::Withdrawn,
            Transition::Close => EventKind::Closed,
        }
    }

    /// The status this transition leads to.
    pub fn target(self) -> Status {
        match self {
            Transition::Submit | Transition::Release => Status::Submitted,
            Transition::Claim => Status::Claimed,
            Transition::Answer => Status::Answered,
            Transition::Decline => Status::Declined,
            Transition::Withdraw => Status::Withdrawn,
            Transition::Close => Status::Closed,
        }
    }
}

/// Whether a transition changes the request or repeats the one that led to its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Change(Status),
    AlreadyDone,
}

/// The lifecycle: what `transition` does from `from` (authorisation aside).
pub fn apply(from: Status, transition: Transition) -> Result<Outcome, ExpertiseError> {
    use Status::*;
    let allowed = match transition {
        Transition::Submit => from == Draft,
        Transition::Claim => from == Submitted,
        Transition::Release => from == Claimed,
        Transition::Answer => from == Claimed,
        Transition::Decline => matches!(from, Submitted | Claimed),
        Transition::Withdraw => matches!(from, Draft | Submitted | Claimed),
        Transition::Close => from == Answered,
    };
    if allowed {
        return Ok(Outcome::Change(transition.target()));
    }
    if from == transition.target() && transition != Transition::Release {
        return Ok(Outcome::AlreadyDone);
    }
    Err(ExpertiseError::FailedPrecondition(format!(
        "a {} request cannot be {}",
        from.as_str(),
        match transition {
            Transition::Submit => "submitted (only a draft can)",
            Transition::Claim => "claimed (only a submitted request can)",
            Transition::Release => "released (only a claimed request can)",
            Transition::Answer => "answered (only a claimed request can)",
            Transition::Decline => "declined (only a submitted or claimed request can)",
            Transition::Withdraw => "withdrawn (only before an answer)",
            Transition::Close => "closed (only an answered request can)",
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_allows_exactly_the_documented_transitions() {
        use Status::*;
        use Transition::*;
        let legal = [
            (Draft, Submit, Submitted),
            (Submitted, Claim, Claimed),
            (Claimed, Release, Submitted),
            (Claimed, Answer, Answered),
            (Submitted, Decline, Declined),
            (Claimed, Decline, Declined),
            (Draft, Withdraw, Withdrawn),
            (Submitted, Withdraw, Withdrawn),
            (Claimed, Withdraw, Withdrawn),
            (Answered, Close, Closed),
        ];
        for from in Status::ALL {
            for transition in [Submit, Claim, Release, Answer, Decline, Withdraw, Close] {
                let expected = legal
                    .iter()
                    .find(|(f, t, _)| *f == from && *t == transition)
                    .map(|(_, _, to)| Outcome::Change(*to));
                let got = apply(from, transition).ok();
                match expected {
                    Some(change) => assert_eq!(got, Some(change), "{from:?} {transition:?}"),
                    None if from == transition.target() && transition != Release => {
                        assert_eq!(got, Some(Outcome::AlreadyDone), "{from:?} {transition:?}")
                    }
                    None => assert_eq!(got, None, "{from:?} {transition:?} must be refused"),
                }
            }
        }
    }

    #[test]
    fn a_draft_names_every_missing_field() {
        let missing = Content::default().missing_fields();
        for field in [
            "target_org_id",
            "specialty",
            "patient",
            "clinical_question",
            "urgency",
        ] {
            assert!(missing.contains(&field), "{field} in {missing:?}");
        }
    }
}
