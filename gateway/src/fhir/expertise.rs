//! ServiceRequest and Task (a tele-expertise request), Communication (its thread) and Media
//! (its images).

use serde_json::Value;
use telehealth_proto::v1 as pb;

use super::{
    Page,
    calls::Calls,
    outcome::FhirError,
    people::missing,
    query::{self, Query},
};

const EXPERTISE: &str = "/telehealth.v1.ExpertiseService/";

async fn request(calls: &Calls, id: &str) -> Result<pb::ExpertiseRequest, FhirError> {
    let answer: pb::GetRequestResponse = calls
        .unary(
            &format!("{EXPERTISE}GetRequest"),
            &pb::GetRequestRequest {
                request_id: id.to_owned(),
            },
        )
        .await?;
    answer.request.ok_or_else(missing)
}

pub async fn read_service_request(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    Ok(telehealth_fhir::service_request(&request(calls, id).await?))
}

pub async fn read_task(calls: &Calls, id: &str) -> Result<Value, FhirError> {
    Ok(telehealth_fhir::task(&request(calls, id).await?))
}

/// `status` (Task codes, comma-separated) and `owner` (a Practitioner: the specialist who
/// claimed it) over the caller's inbox (specialists); with `requester` instead, over the
/// requests of the caller's centre (requesters). A filter on a person keeps a page's matches,
/// so a page may hold fewer than `_count`; follow `next` until it is absent.
pub async fn search_tasks(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let mut statuses = Vec::new();
    for code in query.take_all("status").iter().flat_map(|v| v.split(',')) {
        let states = telehealth_fhir::states_of_task_status(code).ok_or_else(|| {
            FhirError::Invalid(format!(
                "status « {code} » : draft, requested, in-progress, completed, cancelled ou rejected."
            ))
        })?;
        statuses.extend(states.into_iter().map(|s| s as i32));
    }
    let owner = query
        .take("owner")?
        .map(|o| query::reference_id(&o, "Practitioner", "owner"))
        .transpose()?;
    let requester = query
        .take("requester")?
        .map(|r| query::reference_id(&r, "Practitioner", "requester"))
        .transpose()?;
    let (count, cursor) = (query.count, std::mem::take(&mut query.cursor));
    query.finish("Task")?;
    let (requests, next) = if requester.is_some() {
        let answer: pb::ListMyRequestsResponse = calls
            .unary(
                &format!("{EXPERTISE}ListMyRequests"),
                &pb::ListMyRequestsRequest {
                    statuses,
                    whole_org: true,
                    page_size: count,
                    page_token: cursor,
                    patient: None,
                },
            )
            .await?;
        (answer.requests, answer.next_page_token)
    } else {
        // The inbox never holds drafts: asking only for drafts finds nothing.
        statuses.retain(|s| *s != pb::ExpertiseStatus::Draft as i32);
        let answer: pb::ListInboxResponse = calls
            .unary(
                &format!("{EXPERTISE}ListInbox"),
                &pb::ListInboxRequest {
                    statuses,
                    claimed_by_me: false,
                    overdue_only: false,
                    page_size: count,
                    page_token: cursor,
                },
            )
            .await?;
        (answer.requests, answer.next_page_token)
    };
    let person = |actor: &Option<pb::Actor>| actor.as_ref().map(|a| a.subject.clone());
    let resources = requests
        .iter()
        .filter(|r| owner.is_none() || person(&r.claimed_by) == owner)
        .filter(|r| requester.is_none() || person(&r.requester) == requester)
        .map(telehealth_fhir::task)
        .collect();
    Ok(Page::new(resources, next))
}

/// The request a thread or image search is `based-on` (required).
fn based_on(query: &mut Query, kind: &str) -> Result<String, FhirError> {
    let value = query.take("based-on")?.ok_or_else(|| {
        FhirError::Invalid(format!(
            "Recherche {kind} : based-on=ServiceRequest/<id> requis."
        ))
    })?;
    query::reference_id(&value, "ServiceRequest", "based-on")
}

/// `based-on` (the request): its messages, oldest first.
pub async fn search_communications(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let request_id = based_on(&mut query, "Communication")?;
    let (count, cursor) = (query.count, std::mem::take(&mut query.cursor));
    query.finish("Communication")?;
    let request = request(calls, &request_id).await?;
    let answer: pb::ListMessagesResponse = calls
        .unary(
            &format!("{EXPERTISE}ListMessages"),
            &pb::ListMessagesRequest {
                request_id,
                page_size: count,
                page_token: cursor,
            },
        )
        .await?;
    Ok(Page::new(
        answer
            .messages
            .iter()
            .map(|m| telehealth_fhir::communication(m, &request))
            .collect(),
        answer.next_page_token,
    ))
}

/// `based-on` (the request): its images (their bytes come from `DownloadImage`).
pub async fn search_media(calls: &Calls, mut query: Query) -> Result<Page, FhirError> {
    let request_id = based_on(&mut query, "Media")?;
    query.finish("Media")?;
    let request = request(calls, &request_id).await?;
    let patient = request
        .content
        .as_ref()
        .and_then(|c| c.patient.as_ref())
        .and_then(|p| p.patient.as_ref())
        .map(|p| p.pseudonym.as_str());
    Ok(Page::last(
        request
            .images
            .iter()
            .map(|i| telehealth_fhir::media(i, Some(("ServiceRequest", &request_id)), patient))
            .collect(),
    ))
}
