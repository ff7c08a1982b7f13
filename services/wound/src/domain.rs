//! The wound monitoring vocabulary: validated values the core works with. Everything here is
//! checked once, at the edge (the gRPC adapter, see `convert`), so the core never sees an
//! unchecked string or an unknown enum number.

use jiff::Timestamp;

/// Most nurses in a care team.
pub const MAX_CARE_TEAM: usize = 10;
/// Largest length or width, in millimetres (100 cm).
pub const MAX_SIDE_MM: i64 = 1000;
/// Largest depth, in millimetres (30 cm).
pub const MAX_DEPTH_MM: i64 = 300;
/// Most photos on one assessment.
pub const MAX_PHOTOS: usize = 20;
/// Most infection signs on one assessment: each known sign once (the contract's 11 signs).
pub const MAX_INFECTION_SIGNS: usize = 11;
/// Most statuses in a list filter (more than the statuses there are, so every useful filter
/// fits, and a bound on the work a request can ask for).
pub const MAX_STATUS_FILTERS: usize = 10;

pub use telehealth_kit::ids::Subject;

/// Cause of a wound (the contract's `Aetiology`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aetiology {
    PressureUlcer = 1,
    VenousLegUlcer = 2,
    ArterialLegUlcer = 3,
    MixedLegUlcer = 4,
    DiabeticFootUlcer = 5,
    Surgical = 6,
    Burn = 7,
    Other = 8,
}

impl Aetiology {
    /// The aetiology of a contract number (`None` for unset or unknown).
    pub fn from_number(number: i64) -> Option<Aetiology> {
        use Aetiology::*;
        [
            PressureUlcer,
            VenousLegUlcer,
            ArterialLegUlcer,
            MixedLegUlcer,
            DiabeticFootUlcer,
            Surgical,
            Burn,
            Other,
        ]
        .into_iter()
        .find(|a| *a as i64 == number)
    }
}

/// Where the wound is (the contract's `BodySite`, numbers already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySite {
    pub region: i32,
    pub laterality: i32,
    pub description: String,
    pub snomed_ct_code: String,
}

/// The clinical description of a wound, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WoundDescription {
    pub body_site: BodySite,
    pub aetiology: Aetiology,
    /// Pressure ulcer stage (contract number), 0 for other aetiologies.
    pub pressure_ulcer_stage: i32,
    pub aetiology_details: String,
    /// `YYYY-MM-DD`, or empty when unknown.
    pub onset_date: String,
    /// Planned interval between assessments, 1 to 90 days.
    pub interval_days: i64,
}

/// Worst tissue type in the wound bed, as PUSH scores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tissue {
    Closed = 1,
    Epithelial = 2,
    Granulation = 3,
    Slough = 4,
    Necrotic = 5,
}

impl Tissue {
    /// Every tissue type, in contract order.
    pub const ALL: [Tissue; 5] = [
        Tissue::Closed,
        Tissue::Epithelial,
        Tissue::Granulation,
        Tissue::Slough,
        Tissue::Necrotic,
    ];

    /// The tissue of a contract number.
    pub fn from_number(number: i64) -> Option<Tissue> {
        Tissue::ALL.into_iter().find(|t| *t as i64 == number)
    }

    /// PUSH tissue-type sub-score: closed 0, epithelial 1, granulation 2, slough 3, necrotic 4.
    pub fn push_subscore(self) -> i32 {
        self as i32 - 1
    }
}

/// Exudate amount, as PUSH scores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exudate {
    None = 1,
    Light = 2,
    Moderate = 3,
    Heavy = 4,
}

impl Exudate {
    /// Every amount, in contract order.
    pub const ALL: [Exudate; 4] = [
        Exudate::None,
        Exudate::Light,
        Exudate::Moderate,
        Exudate::Heavy,
    ];

    /// The amount of a contract number.
    pub fn from_number(number: i64) -> Option<Exudate> {
        Exudate::ALL.into_iter().find(|e| *e as i64 == number)
    }

    /// PUSH exudate sub-score: none 0, light 1, moderate 2, heavy 3.
    pub fn push_subscore(self) -> i32 {
        self as i32 - 1
    }
}

/// What a nurse recorded at a visit, validated (lengths rounded to the millimetre).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurements {
    pub assessed_at: Timestamp,
    pub length_mm: i64,
    pub width_mm: i64,
    pub depth_mm: Option<i64>,
    pub tissue: Tissue,
    pub exudate: Exudate,
    pub pain_score: Option<i64>,
    /// Contract numbers of `InfectionSign`, sorted, without duplicates.
    pub infection_signs: Vec<i32>,
    pub notes: String,
    /// Image ids, without duplicates, in the order given.
    pub photo_image_ids: Vec<String>,
}

/// Why a wound was closed (the contract's `WoundClosureReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureReason {
    Healed = 1,
    CareTransferred = 2,
    PatientDeceased = 3,
    EnteredInError = 4,
    Other = 5,
}

impl ClosureReason {
    /// The reason of a contract number.
    pub fn from_number(number: i64) -> Option<ClosureReason> {
        use ClosureReason::*;
        [
            Healed,
            CareTransferred,
            PatientDeceased,
            EnteredInError,
            Other,
        ]
        .into_iter()
        .find(|r| *r as i64 == number)
    }
}

/// How an area is computed from length and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaMethod {
    /// L × W (what PUSH uses).
    Rectangle = 1,
    /// π/4 × L × W.
    Ellipse = 2,
}

/// Alert causes (the contract's `AlertCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertCause {
    AreaIncrease = 1,
    PushIncrease = 2,
    InfectionSigns = 3,
    InsufficientReduction = 4,
    AssessmentOverdue = 5,
}

impl AlertCause {
    /// The cause as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            AlertCause::AreaIncrease => "area_increase",
            AlertCause::PushIncrease => "push_increase",
            AlertCause::InfectionSigns => "infection_signs",
            AlertCause::InsufficientReduction => "insufficient_reduction",
            AlertCause::AssessmentOverdue => "assessment_overdue",
        }
    }

    /// The cause of a stored contract number.
    pub fn from_number(number: i64) -> Option<AlertCause> {
        use AlertCause::*;
        [
            AreaIncrease,
            PushIncrease,
            InfectionSigns,
            InsufficientReduction,
            AssessmentOverdue,
        ]
        .into_iter()
        .find(|c| *c as i64 == number)
    }
}
