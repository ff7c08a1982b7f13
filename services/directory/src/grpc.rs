//! The tonic adapter: validate, call the core, convert back.

use telehealth_kit::{
    identity::require_caller,
    page_scope,
    paging::{self, PageTokens},
};
use telehealth_proto::v1::{self as pb, directory_service_server::DirectoryService};
use tonic::{Request, Response, Status};

use crate::{convert, core::Directory};

/// The gRPC face of the directory.
pub struct DirectoryApi {
    directory: Directory,
    pages: PageTokens,
}

impl DirectoryApi {
    /// The API over `directory`, paging with `pages`.
    pub fn new(directory: Directory, pages: PageTokens) -> Self {
        DirectoryApi { directory, pages }
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    #[tracing::instrument(skip_all)]
    async fn register_self(
        &self,
        request: Request<pb::RegisterSelfRequest>,
    ) -> Result<Response<pb::RegisterSelfResponse>, Status> {
        let caller = require_caller(&request)?;
        let member = self.directory.register_self(&caller).await?;
        Ok(Response::new(pb::RegisterSelfResponse {
            member: Some(convert::member(&member, now())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn put_member(
        &self,
        request: Request<pb::PutMemberRequest>,
    ) -> Result<Response<pb::PutMemberResponse>, Status> {
        let caller = require_caller(&request)?;
        let new = convert::new_member(request.into_inner())?;
        let member = self.directory.put_member(&caller, new).await?;
        Ok(Response::new(pb::PutMemberResponse {
            member: Some(convert::member(&member, now())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn end_membership(
        &self,
        request: Request<pb::EndMembershipRequest>,
    ) -> Result<Response<pb::EndMembershipResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let subject = convert::subject("subject", &request.subject)?;
        let until = convert::instant("until_time", request.until_time.as_ref())?;
        let member = self
            .directory
            .end_membership(&caller, &subject, until)
            .await?;
        Ok(Response::new(pb::EndMembershipResponse {
            member: Some(convert::member(&member, now())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let caller = require_caller(&request)?;
        let subject = convert::subject("subject", &request.get_ref().subject)?;
        let member = self.directory.get_member(&caller, &subject).await?;
        Ok(Response::new(pb::GetMemberResponse {
            member: Some(convert::member(&member, now())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let page_size = paging::page_size(request.page_size, 50, 200)?;
        let scope = page_scope!("ListMembers", &caller, &request);
        let after = self
            .pages
            .position::<String>(&scope, &request.page_token)?
            .unwrap_or_default();
        let role = match request.role {
            0 => None,
            value => Some(convert::role("role", value)?),
        };
        let page = self
            .directory
            .list_members(&caller, role, request.include_ended, &after, page_size)
            .await?;
        let now = now();
        Ok(Response::new(pb::ListMembersResponse {
            members: page
                .members
                .iter()
                .map(|m| convert::member(m, now))
                .collect(),
            next_page_token: page
                .last_subject
                .map(|s| self.pages.token(&scope, &s))
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_members(
        &self,
        request: Request<pb::CheckMembersRequest>,
    ) -> Result<Response<pb::CheckMembersResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        if request.subjects.len() > convert::MAX_CHECKED_SUBJECTS {
            return Err(crate::error::DirectoryError::invalid(
                "subjects",
                format!("at most {} subjects", convert::MAX_CHECKED_SUBJECTS),
            )
            .into());
        }
        let members = self
            .directory
            .check_members(&caller, &request.org_id, &request.subjects)
            .await?;
        let now = now();
        Ok(Response::new(pb::CheckMembersResponse {
            members: members.iter().map(|m| convert::member(m, now)).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn find_memberships(
        &self,
        request: Request<pb::FindMembershipsRequest>,
    ) -> Result<Response<pb::FindMembershipsResponse>, Status> {
        let caller = require_caller(&request)?;
        let rpps = convert::rpps("rpps_number", &request.get_ref().rpps_number)?;
        let members = self.directory.find_memberships(&caller, &rpps).await?;
        let now = now();
        Ok(Response::new(pb::FindMembershipsResponse {
            members: members.iter().map(|m| convert::member(m, now)).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn propose_partnership(
        &self,
        request: Request<pb::ProposePartnershipRequest>,
    ) -> Result<Response<pb::ProposePartnershipResponse>, Status> {
        let caller = require_caller(&request)?;
        let hospital = convert::subject("hospital_org_id", &request.get_ref().hospital_org_id)?;
        let partnership = self
            .directory
            .propose_partnership(&caller, &hospital)
            .await?;
        Ok(Response::new(pb::ProposePartnershipResponse {
            partnership: Some(convert::partnership(&partnership)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn accept_partnership(
        &self,
        request: Request<pb::AcceptPartnershipRequest>,
    ) -> Result<Response<pb::AcceptPartnershipResponse>, Status> {
        let caller = require_caller(&request)?;
        let centre = convert::subject("centre_org_id", &request.get_ref().centre_org_id)?;
        let partnership = self.directory.accept_partnership(&caller, &centre).await?;
        Ok(Response::new(pb::AcceptPartnershipResponse {
            partnership: Some(convert::partnership(&partnership)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn end_partnership(
        &self,
        request: Request<pb::EndPartnershipRequest>,
    ) -> Result<Response<pb::EndPartnershipResponse>, Status> {
        let caller = require_caller(&request)?;
        let other = convert::subject("other_org_id", &request.get_ref().other_org_id)?;
        let partnership = self.directory.end_partnership(&caller, &other).await?;
        Ok(Response::new(pb::EndPartnershipResponse {
            partnership: Some(convert::partnership(&partnership)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_partnerships(
        &self,
        request: Request<pb::ListPartnershipsRequest>,
    ) -> Result<Response<pb::ListPartnershipsResponse>, Status> {
        let caller = require_caller(&request)?;
        let partnerships = self.directory.list_partnerships(&caller).await?;
        Ok(Response::new(pb::ListPartnershipsResponse {
            partnerships: partnerships.iter().map(convert::partnership).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_partnership(
        &self,
        request: Request<pb::CheckPartnershipRequest>,
    ) -> Result<Response<pb::CheckPartnershipResponse>, Status> {
        let caller = require_caller(&request)?;
        let request = request.into_inner();
        let centre = convert::subject("centre_org_id", &request.centre_org_id)?;
        let hospital = convert::subject("hospital_org_id", &request.hospital_org_id)?;
        let active = self
            .directory
            .check_partnership(&caller, &centre, &hospital)
            .await?;
        Ok(Response::new(pb::CheckPartnershipResponse { active }))
    }

    #[tracing::instrument(skip_all)]
    async fn put_organisation(
        &self,
        request: Request<pb::PutOrganisationRequest>,
    ) -> Result<Response<pb::PutOrganisationResponse>, Status> {
        let caller = require_caller(&request)?;
        let input = convert::organisation_input(request.get_ref())?;
        let organisation = self.directory.put_organisation(&caller, input).await?;
        Ok(Response::new(pb::PutOrganisationResponse {
            organisation: Some(convert::organisation(&organisation)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_organisation(
        &self,
        request: Request<pb::GetOrganisationRequest>,
    ) -> Result<Response<pb::GetOrganisationResponse>, Status> {
        let caller = require_caller(&request)?;
        let org_id = convert::subject("org_id", &request.get_ref().org_id)?;
        let organisation = self.directory.organisation(&caller, &org_id).await?;
        Ok(Response::new(pb::GetOrganisationResponse {
            organisation: Some(convert::organisation(&organisation)),
        }))
    }
}
