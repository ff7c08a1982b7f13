//! Membership checks against the care directory, shared by every service that names a person.
//!
//! A request that names a practitioner or a nurse (a booking's doctor and nurse, a wound's care
//! team, a coordinator publishing a doctor's availability) is only accepted when that person is an
//! active member of the caller's organisation with the role the request gives them. Membership
//! comes from the directory service (the person's own verified token, or the organisation's
//! administrator), asked through its internal `CheckMembers` RPC.
//!
//! The caller is always a member of their own organisation with the roles of their token: the
//! identity provider vouched for it, so no call is needed for them. Positive answers are cached
//! for [`MEMBERSHIP_CACHE`] so that a busy service does not ask for every call; negative answers
//! are not cached (a member who has just signed in is known at once). An ended membership
//! therefore stops being accepted by other services at most that long after its end.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use telehealth_proto::v1::{self as pb, directory_service_client::DirectoryServiceClient};
use tonic::transport::Channel;

use crate::{
    error::KitError,
    identity::{Identity, Role},
};

/// How long a positive membership answer is reused.
pub const MEMBERSHIP_CACHE: Duration = Duration::from_secs(30);
/// Cache entries kept at most (the oldest half is dropped beyond it).
const CACHE_CAPACITY: usize = 10_000;

/// An active member of an organisation, as the directory knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub roles: Vec<Role>,
    pub specialty: Option<String>,
}

impl Membership {
    /// True when the member holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The directory as other services see it: "is this person an active member of that org?".
#[derive(Clone)]
pub struct Directory {
    source: Source,
    cache: Arc<Mutex<Cache>>,
}

/// `(org, subject)` → when the directory said so, and the membership it answered.
type Cache = HashMap<(String, String), (Instant, Membership)>;

#[derive(Clone)]
enum Source {
    /// The directory service over internal mTLS.
    Service(DirectoryServiceClient<Channel>),
    /// A fixed list (unit tests of the services' cores).
    Fixed(Arc<HashMap<(String, String), Membership>>),
}

impl Directory {
    /// A directory reached through `channel` (to the directory service).
    pub fn new(channel: Channel) -> Self {
        Directory {
            source: Source::Service(DirectoryServiceClient::new(channel)),
            cache: Arc::default(),
        }
    }

    /// A directory that knows exactly `members` (`(org, subject)` → membership), for tests.
    pub fn fixed(members: impl IntoIterator<Item = ((String, String), Membership)>) -> Self {
        Directory {
            source: Source::Fixed(Arc::new(members.into_iter().collect())),
            cache: Arc::default(),
        }
    }

    /// The active membership of `subject` in `org`, or `None` when they are not an active
    /// member (unknown, ended, or of another organisation only).
    pub async fn membership(
        &self,
        org: &str,
        subject: &str,
    ) -> Result<Option<Membership>, KitError> {
        Ok(self.memberships(org, &[subject]).await?.remove(subject))
    }

    /// The active memberships in `org` among `subjects` (absent: not an active member).
    pub async fn memberships(
        &self,
        org: &str,
        subjects: &[&str],
    ) -> Result<HashMap<String, Membership>, KitError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for subject in subjects {
                match cache.get(&(org.to_owned(), (*subject).to_owned())) {
                    Some((at, membership)) if at.elapsed() < MEMBERSHIP_CACHE => {
                        found.insert((*subject).to_owned(), membership.clone());
                    }
                    _ => missing.push((*subject).to_owned()),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let answered = match &self.source {
            Source::Fixed(members) => missing
                .iter()
                .filter_map(|s| {
                    members
                        .get(&(org.to_owned(), s.clone()))
                        .map(|m| (s.clone(), m.clone()))
                })
                .collect::<Vec<_>>(),
            Source::Service(client) => {
                let request = pb::CheckMembersRequest {
                    org_id: org.to_owned(),
                    subjects: missing.clone(),
                };
                let response = client
                    .clone()
                    .check_members(request)
                    .await
                    .map_err(|status| {
                        tracing::warn!(%status, "the directory did not answer a membership check");
                        KitError::Unavailable("the care directory is unavailable, retry".into())
                    })?
                    .into_inner();
                response
                    .members
                    .into_iter()
                    .filter(|m| m.org_id == org && missing.contains(&m.subject))
                    .map(|m| (m.subject.clone(), membership_of(&m)))
                    .collect()
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() + answered.len() > CACHE_CAPACITY {
            cache.retain(|_, (at, _)| at.elapsed() < MEMBERSHIP_CACHE);
            if cache.len() > CACHE_CAPACITY / 2 {
                cache.clear();
            }
        }
        let now = Instant::now();
        for (subject, membership) in answered {
            cache.insert((org.to_owned(), subject.clone()), (now, membership.clone()));
            found.insert(subject, membership);
        }
        Ok(found)
    }

    /// The memberships active now, in every organisation, of the professional with RPPS number
    /// `rpps` (asked every time, never cached: how sign-in finds who someone is): `(org,
    /// subject, membership)`, ordered by organisation.
    pub async fn memberships_by_rpps(
        &self,
        rpps: &str,
    ) -> Result<Vec<(String, String, Membership)>, KitError> {
        let Source::Service(client) = &self.source else {
            return Ok(Vec::new());
        };
        let response = client
            .clone()
            .find_memberships(pb::FindMembershipsRequest {
                rpps_number: rpps.to_owned(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => {
                    KitError::invalid("rpps_number", status.message().to_owned())
                }
                _ => {
                    tracing::warn!(%status, "the directory did not answer a sign-in lookup");
                    KitError::Unavailable("the care directory is unavailable, retry".into())
                }
            })?
            .into_inner();
        Ok(response
            .members
            .iter()
            .map(|m| (m.org_id.clone(), m.subject.clone(), membership_of(m)))
            .collect())
    }

    /// True when `centre` and `hospital` are in an active partnership (asked every time: an
    /// ended partnership stops the next request at once).
    pub async fn partners(&self, centre: &str, hospital: &str) -> Result<bool, KitError> {
        let Source::Service(client) = &self.source else {
            return Ok(false);
        };
        let request = pb::CheckPartnershipRequest {
            centre_org_id: centre.to_owned(),
            hospital_org_id: hospital.to_owned(),
        };
        let answer = client
            .clone()
            .check_partnership(request)
            .await
            .map_err(|status| {
                tracing::warn!(%status, "the directory did not answer a partnership check");
                KitError::Unavailable("the care directory is unavailable, retry".into())
            })?;
        Ok(answer.into_inner().active)
    }

    /// True when `subject` is an active member of `caller`'s organisation holding `role`.
    /// The caller themselves is, with the roles of their token.
    pub async fn is_member_with_role(
        &self,
        caller: &Identity,
        subject: &str,
        role: Role,
    ) -> Result<bool, KitError> {
        if subject == caller.subject {
            return Ok(caller.has_role(role));
        }
        Ok(self
            .membership(&caller.org, subject)
            .await?
            .is_some_and(|m| m.has_role(role)))
    }
}

/// A membership from the directory's answer (unknown roles are ignored).
fn membership_of(member: &pb::Member) -> Membership {
    let roles = member
        .roles
        .iter()
        .filter_map(|r| match pb::Role::try_from(*r).ok()? {
            pb::Role::Doctor => Some(Role::Doctor),
            pb::Role::Nurse => Some(Role::Nurse),
            pb::Role::Specialist => Some(Role::Specialist),
            pb::Role::Coordinator => Some(Role::Coordinator),
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Patient | pb::Role::Unspecified => None,
        })
        .collect();
    Membership {
        roles,
        specialty: Some(member.specialty.clone()).filter(|s| !s.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(subject: &str, org: &str, roles: Vec<Role>) -> Identity {
        Identity {
            subject: subject.into(),
            roles,
            org: org.into(),
            specialty: None,
            cert_thumbprint: "t".into(),
        }
    }

    #[tokio::test]
    async fn only_active_members_of_the_callers_org_with_the_role_are_accepted() {
        let directory = Directory::fixed([(
            ("cds-a".to_owned(), "nurse-1".to_owned()),
            Membership {
                roles: vec![Role::Nurse],
                specialty: None,
            },
        )]);
        let doctor_a = identity("dr-a", "cds-a", vec![Role::Doctor]);
        let doctor_b = identity("dr-b", "cds-b", vec![Role::Doctor]);
        let cases = [
            (
                &doctor_a,
                "nurse-1",
                Role::Nurse,
                true,
                "a nurse of the caller's org",
            ),
            (&doctor_a, "nurse-1", Role::Doctor, false, "the wrong role"),
            (
                &doctor_b,
                "nurse-1",
                Role::Nurse,
                false,
                "a nurse of another org",
            ),
            (
                &doctor_a,
                "nobody",
                Role::Nurse,
                false,
                "an unknown subject",
            ),
            (
                &doctor_a,
                "dr-a",
                Role::Doctor,
                true,
                "the caller, from the token",
            ),
            (
                &doctor_a,
                "dr-a",
                Role::Nurse,
                false,
                "the caller, without the role",
            ),
        ];
        for (caller, subject, role, expected, case) in cases {
            let accepted = directory
                .is_member_with_role(caller, subject, role)
                .await
                .expect("answers");
            assert_eq!(accepted, expected, "{case}");
        }
    }
}
