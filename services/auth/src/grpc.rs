//! The tonic adapter of `telehealth.v1.AuthService`: reads who is calling (a person through the
//! gateway, or, for the sign-in and refresh RPCs, a tokenless call the gateway forwarded),
//! checks the request's shape, calls the core and converts its answer.

use std::sync::Arc;

use telehealth_kit::{
    Part,
    error::to_status,
    identity::{Caller, Identity, IdentityInterceptor, TokenlessCall, peer_of},
    record::{instant, timestamp},
};
use telehealth_proto::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use crate::{
    core::{Auth, DeviceChoice, DeviceProgress, Enrolment, IssuedTokens, Verified},
    sessions::Session,
    store::DeviceRecord,
};

/// The service, as tonic sees it.
pub struct AuthApi {
    auth: Arc<Auth>,
}

impl AuthApi {
    pub fn new(auth: Arc<Auth>) -> AuthApi {
        AuthApi { auth }
    }
}

/// A person calling through the gateway with a token.
fn person<T>(request: &Request<T>) -> Result<Identity, Status> {
    match IdentityInterceptor::new(Part::Auth).identify(request) {
        Ok(Caller::Person(identity)) => Ok(identity),
        Ok(Caller::Service(_)) => Err(Status::permission_denied(
            "this call needs a person's identity",
        )),
        Err(error) => Err(to_status(&error)),
    }
}

/// A sign-in or refresh the gateway forwarded without a token.
fn tokenless<T>(request: &Request<T>) -> Result<TokenlessCall, Status> {
    TokenlessCall::of(request).map_err(|error| to_status(&error))
}

/// A required text field of at most `max` bytes.
fn field<'a>(name: &str, value: &'a str, max: usize) -> Result<&'a str, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{name}: required")));
    }
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{name}: at most {max} bytes"
        )));
    }
    Ok(value)
}

fn optional(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

fn hint(value: &str) -> Result<Option<&str>, Status> {
    if value.len() > 256 {
        return Err(Status::invalid_argument("login_hint: at most 256 bytes"));
    }
    Ok(optional(value))
}

/// What a sign-in enrols: exactly one of a CSR, a PKCS#12 bundle, or the enrolled device the
/// call comes from.
fn device_choice<'a>(
    csr_pem: &'a str,
    pkcs12: bool,
    this_device: bool,
    call: &'a TokenlessCall,
) -> Result<DeviceChoice<'a>, Status> {
    let csr_pem = csr_pem.trim();
    match (!csr_pem.is_empty(), pkcs12, this_device) {
        (true, false, false) => Ok(DeviceChoice::Csr(field("csr_pem", csr_pem, 8192)?)),
        (false, true, false) => Ok(DeviceChoice::Bundle),
        (false, false, true) => call
            .cert_thumbprint
            .as_deref()
            .map(DeviceChoice::ThisDevice)
            .ok_or_else(|| {
                Status::failed_precondition(
                    "this_device: the call carries no client certificate: call from the \
                     enrolled device, on the gateway's main port",
                )
            }),
        _ => Err(Status::invalid_argument(
            "give exactly one of csr_pem (a CSR of the device's key), pkcs12 (a bundle to \
             import) and this_device (the enrolled device calling)",
        )),
    }
}

fn signed_in(verified: Verified) -> pb::SignInResult {
    pb::SignInResult {
        pending: false,
        ticket: verified.ticket,
        given_name: verified.person.given_name.unwrap_or_default(),
        family_name: verified.person.family_name.unwrap_or_default(),
        rpps_number: verified.rpps_number,
        memberships: verified
            .memberships
            .into_iter()
            .map(|(org_id, _, membership)| pb::SignInMembership {
                org_id,
                roles: membership
                    .roles
                    .iter()
                    .map(|r| telehealth_kit::record::role_proto(*r))
                    .collect(),
                specialty: membership.specialty.unwrap_or_default(),
            })
            .collect(),
        interval_seconds: 0,
    }
}

fn tokens(issued: IssuedTokens) -> pb::Tokens {
    pb::Tokens {
        access_token: issued.access_token,
        access_token_expire_time: Some(timestamp(instant(issued.access_expires_us))),
        refresh_token: issued.issued.refresh_token,
        session_id: issued.issued.session.id,
        session_expire_time: Some(timestamp(instant(issued.issued.session.expires_us))),
    }
}

fn device(record: DeviceRecord) -> pb::Device {
    pb::Device {
        device_id: record.device_id,
        name: record.name,
        subject: record.subject,
        org_id: record.org_id,
        thumbprint: record.thumbprint,
        enrol_time: Some(timestamp(instant(record.enrolled_us))),
        expire_time: Some(timestamp(instant(record.expires_us))),
        revoke_time: record.revoked_us.map(|us| timestamp(instant(us))),
    }
}

fn session(s: Session, current_thumbprint: &str) -> pb::SessionInfo {
    pb::SessionInfo {
        current: s.grant.device_thumbprint == current_thumbprint,
        session_id: s.id,
        subject: s.grant.subject,
        org_id: s.grant.org,
        roles: s
            .grant
            .roles
            .iter()
            .map(|r| telehealth_kit::record::role_proto(*r))
            .collect(),
        device_thumbprint: s.grant.device_thumbprint,
        provider: s.grant.provider,
        create_time: Some(timestamp(instant(s.created_us))),
        last_use_time: Some(timestamp(instant(s.last_used_us))),
        expire_time: Some(timestamp(instant(s.expires_us))),
    }
}

fn enrolment(e: Enrolment) -> pb::CompleteSignInResponse {
    let (pkcs12, pkcs12_password) = e.bundle.map(|b| (b.pkcs12, b.password)).unwrap_or_default();
    pb::CompleteSignInResponse {
        certificate_pem: e.certificate_pem,
        ca_chain_pem: e.ca_pem,
        tokens: Some(tokens(e.tokens)),
        device: Some(device(e.device)),
        pkcs12,
        pkcs12_password,
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        tokenless(&request)?;
        let providers = self
            .auth
            .list_providers()
            .await
            .into_iter()
            .map(
                |(id, display_name, device_sign_in, development)| pb::SignInProvider {
                    id,
                    display_name,
                    device_sign_in,
                    development,
                },
            )
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { providers }))
    }

    async fn start_sign_in(
        &self,
        request: Request<pb::StartSignInRequest>,
    ) -> Result<Response<pb::StartSignInResponse>, Status> {
        let call = tokenless(&request)?;
        let r = request.get_ref();
        let url = self
            .auth
            .start_sign_in(
                field("provider", &r.provider, 64)?,
                device_choice(&r.csr_pem, r.pkcs12, r.this_device, &call)?,
                hint(&r.login_hint)?,
            )
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::StartSignInResponse {
            authorization_url: url,
        }))
    }

    async fn finish_sign_in(
        &self,
        request: Request<pb::FinishSignInRequest>,
    ) -> Result<Response<pb::SignInResult>, Status> {
        tokenless(&request)?;
        let r = request.get_ref();
        let verified = self
            .auth
            .finish_sign_in(
                field("provider", &r.provider, 64)?,
                field("state", &r.state, 512)?,
                field("code", &r.code, 4096)?,
            )
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(signed_in(verified)))
    }

    async fn start_device_sign_in(
        &self,
        request: Request<pb::StartDeviceSignInRequest>,
    ) -> Result<Response<pb::StartDeviceSignInResponse>, Status> {
        let call = tokenless(&request)?;
        let r = request.get_ref();
        let started = self
            .auth
            .start_device_sign_in(
                field("provider", &r.provider, 64)?,
                device_choice(&r.csr_pem, r.pkcs12, r.this_device, &call)?,
                hint(&r.login_hint)?,
            )
            .await
            .map_err(|e| to_status(&e))?;
        let a = &started.authorization;
        Ok(Response::new(pb::StartDeviceSignInResponse {
            sign_in_id: started.sign_in_id,
            user_code: a.user_code().secret().clone(),
            verification_uri: a.verification_uri().to_string(),
            verification_uri_complete: a
                .verification_uri_complete()
                .map(|u| u.secret().clone())
                .unwrap_or_default(),
            expires_in_seconds: u32::try_from(a.expires_in().as_secs()).unwrap_or(u32::MAX),
            interval_seconds: u32::try_from(a.interval().as_secs().max(1)).unwrap_or(5),
        }))
    }

    async fn poll_device_sign_in(
        &self,
        request: Request<pb::PollDeviceSignInRequest>,
    ) -> Result<Response<pb::SignInResult>, Status> {
        tokenless(&request)?;
        let id = field("sign_in_id", &request.get_ref().sign_in_id, 128)?;
        match self
            .auth
            .poll_device_sign_in(id)
            .await
            .map_err(|e| to_status(&e))?
        {
            DeviceProgress::Pending { interval_s } => Ok(Response::new(pb::SignInResult {
                pending: true,
                interval_seconds: interval_s,
                ..Default::default()
            })),
            DeviceProgress::Verified(verified) => Ok(Response::new(signed_in(*verified))),
        }
    }

    async fn complete_sign_in(
        &self,
        request: Request<pb::CompleteSignInRequest>,
    ) -> Result<Response<pb::CompleteSignInResponse>, Status> {
        let call = tokenless(&request)?;
        let r = request.get_ref();
        if r.csr_pem.len() > 8192 {
            return Err(Status::invalid_argument("csr_pem: at most 8192 bytes"));
        }
        let enrolled = self
            .auth
            .complete_sign_in(
                field("ticket", &r.ticket, 128)?,
                field("org_id", &r.org_id, 128)?,
                r.csr_pem.trim(),
                &r.device_name,
                call.cert_thumbprint.as_deref(),
            )
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(enrolment(enrolled)))
    }

    async fn development_sign_in(
        &self,
        request: Request<pb::DevelopmentSignInRequest>,
    ) -> Result<Response<pb::SignInResult>, Status> {
        let call = tokenless(&request)?;
        let r = request.get_ref();
        let verified = self
            .auth
            .development_sign_in(
                field("rpps_number", &r.rpps_number, 16)?,
                device_choice(&r.csr_pem, r.pkcs12, r.this_device, &call)?,
            )
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(signed_in(verified)))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let call = tokenless(&request)?;
        let thumbprint = call
            .cert_thumbprint
            .ok_or_else(|| Status::unauthenticated("refresh needs the device's certificate"))?;
        let token = field("refresh_token", &request.get_ref().refresh_token, 256)?;
        let issued = self
            .auth
            .refresh(token, &thumbprint)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(tokens(issued)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let identity = person(&request)?;
        self.auth
            .sign_out(&identity)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let identity = person(&request)?;
        let sessions = self
            .auth
            .list_sessions(&identity, request.get_ref().organisation)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(|s| session(s, &identity.cert_thumbprint))
                .collect(),
        }))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let identity = person(&request)?;
        let id = field("session_id", &request.get_ref().session_id, 64)?;
        self.auth
            .end_session(&identity, id)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::EndSessionResponse {}))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let identity = person(&request)?;
        let devices = self
            .auth
            .list_devices(&identity, request.get_ref().organisation)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(device).collect(),
        }))
    }

    async fn revoke_device(
        &self,
        request: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        let identity = person(&request)?;
        let id = field("device_id", &request.get_ref().device_id, 64)?;
        let revoked = self
            .auth
            .revoke_device(&identity, id)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RevokeDeviceResponse {
            device: Some(device(revoked)),
        }))
    }

    async fn published_keys(
        &self,
        request: Request<pb::PublishedKeysRequest>,
    ) -> Result<Response<pb::PublishedKeysResponse>, Status> {
        if peer_of(&request) != Some(Part::Gateway) {
            return Err(Status::permission_denied(
                "PublishedKeys answers the suite's gateway only",
            ));
        }
        let (jwks_json, crl_pem) = self
            .auth
            .published_keys()
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::PublishedKeysResponse {
            jwks_json,
            crl_pem,
        }))
    }

    async fn renew_device(
        &self,
        request: Request<pb::RenewDeviceRequest>,
    ) -> Result<Response<pb::RenewDeviceResponse>, Status> {
        let identity = person(&request)?;
        let csr = field("csr_pem", &request.get_ref().csr_pem, 8192)?;
        let renewed = self
            .auth
            .renew_device(&identity, csr)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RenewDeviceResponse {
            certificate_pem: renewed.certificate_pem,
            ca_chain_pem: renewed.ca_pem,
            device: Some(device(renewed.device)),
            tokens: Some(tokens(renewed.tokens)),
        }))
    }
}
