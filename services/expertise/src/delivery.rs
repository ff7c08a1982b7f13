//! The answer report's deliveries by secure mail (pure): one per recipient, where each stands,
//! and when a failed one is tried again.
//!
//! A delivery is recorded with the answer, in the same transaction, so a report is never
//! forgotten; replicas then send what is due (`core::delivery`), each delivery claimed by one of
//! them at a time.

use jiff::{SignedDuration, Timestamp};

/// Who the report goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Requester,
    GeneralPractitioner,
}

impl Recipient {
    pub fn as_str(self) -> &'static str {
        match self {
            Recipient::Requester => "requester",
            Recipient::GeneralPractitioner => "general_practitioner",
        }
    }

    pub fn parse(value: &str) -> Option<Recipient> {
        match value {
            "requester" => Some(Recipient::Requester),
            "general_practitioner" => Some(Recipient::GeneralPractitioner),
            _ => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryStatus> {
        match value {
            "pending" => Some(DeliveryStatus::Pending),
            "retrying" => Some(DeliveryStatus::Retrying),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// The delivery of one request's report to one address.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub request_id: String,
    pub recipient: Recipient,
    pub address: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: String,
    /// When it is due (pending, retrying); for a claimed one, when the claim lapses.
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    /// When it was recorded (the answer): retries stop `retry_for` after it.
    pub created_at: Timestamp,
}

/// The deliveries an answered request's content asks for: the requester's address and the
/// GP's (once, when they are the same).
pub fn recipients(content: &crate::model::Content) -> Vec<(Recipient, String)> {
    let mut out = Vec::new();
    let requester = content.requester_mssante_address.trim();
    if !requester.is_empty() {
        out.push((Recipient::Requester, requester.to_owned()));
    }
    if let Some(gp) = &content.general_practitioner {
        let address = gp.mssante_address.trim();
        if !address.is_empty() && !address.eq_ignore_ascii_case(requester) {
            out.push((Recipient::GeneralPractitioner, address.to_owned()));
        }
    }
    out
}

/// How long to wait after the `attempts`-th failed attempt: 1, 5, 15 minutes, 1 hour, then
/// every 4 hours.
pub fn backoff(attempts: i32) -> SignedDuration {
    match attempts {
        ..=1 => SignedDuration::from_mins(1),
        2 => SignedDuration::from_mins(5),
        3 => SignedDuration::from_mins(15),
        4 => SignedDuration::from_hours(1),
        _ => SignedDuration::from_hours(4),
    }
}

/// How long one replica holds a delivery it is sending before another may take it over.
pub const CLAIM: SignedDuration = SignedDuration::from_mins(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Content, GeneralPractitioner};

    #[test]
    fn the_requester_and_the_gp_each_get_one_delivery() {
        let mut content = Content {
            requester_mssante_address: "dr.martin@cds.mssante.fr".into(),
            general_practitioner: Some(GeneralPractitioner {
                mssante_address: "Dr.Martin@cds.mssante.fr".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(recipients(&content).len(), 1, "the same address once");
        content.general_practitioner = Some(GeneralPractitioner {
            mssante_address: "dr.gp@medecin.mssante.fr".into(),
            ..Default::default()
        });
        assert_eq!(
            recipients(&content),
            vec![
                (Recipient::Requester, "dr.martin@cds.mssante.fr".into()),
                (
                    Recipient::GeneralPractitioner,
                    "dr.gp@medecin.mssante.fr".into()
                )
            ]
        );
        content.requester_mssante_address.clear();
        content.general_practitioner = None;
        assert!(recipients(&content).is_empty());
    }

    #[test]
    fn retries_slow_down() {
        let waits: Vec<i64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [60, 300, 900, 3600, 14_400, 14_400]);
    }
}
