//! The device authorization grant (RFC 8628) for devices without a browser (the CLI): the
//! provider gives a code the person enters on another screen, and the suite asks the token
//! endpoint whether they have approved it.
//!
//! The library's polling loop is driven one request at a time: the auth service answers each
//! poll of its client with one question to the provider (with a fresh client assertion, which a
//! provider accepts only once), so no task waits between polls and any replica can answer.

use std::{future::Future, pin::pin, sync::Arc};

use openidconnect::{
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, Nonce, RequestTokenError, Scope,
    core::CoreDeviceAuthorizationResponse,
};
use tokio::sync::Notify;

use super::{
    ClientAuth, OidcError, RelyingParty, VerifiedPerson, assertion,
    claims::{client, describe_token_error},
};

/// What the provider answered when a device sign-in started; kept server side until it ends.
pub type DeviceAuthorization = CoreDeviceAuthorizationResponse;

/// Where a device sign-in stands at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// Not approved yet (or asked to slow down): ask again later.
    Pending,
    Approved(VerifiedPerson),
}

impl RelyingParty {
    /// True when the provider publishes a device authorization endpoint.
    pub fn offers_device_sign_in(&self) -> bool {
        self.device_url().is_some()
    }

    fn device_url(&self) -> Option<DeviceAuthorizationUrl> {
        self.current()
            .metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
    }

    /// Starts a device sign-in: the code for the person and what to keep for the polls.
    pub async fn device_begin(
        &self,
        login_hint: Option<&str>,
    ) -> Result<DeviceAuthorization, OidcError> {
        let url = self.device_url().ok_or(OidcError::NoDeviceSignIn)?;
        let discovered = self.current();
        let client = client(&self.settings, discovered.metadata.clone())?
            .set_device_authorization_url(url.clone());
        let mut request = client.exchange_device_code();
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr) = &self.settings.acr {
            request = request.add_extra_param("acr_values", acr.clone());
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let assertion;
        if let ClientAuth::PrivateKeyJwt(key) = &self.settings.client_auth {
            assertion = key.assertion(&self.settings.client_id, url.as_str())?;
            request = request
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.as_str());
        }
        request
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::CodeRefused(describe_token_error(&e)))
    }

    /// Asks the provider once whether the person approved `authorization`; once they have, the
    /// ID token is verified as in the code flow (RFC 8628 has no nonce: none is expected).
    pub async fn device_poll(
        &self,
        authorization: &DeviceAuthorization,
    ) -> Result<DevicePoll, OidcError> {
        let discovered = self.current();
        let mut request = discovered
            .client
            .exchange_device_access_token(authorization)
            .map_err(|e| OidcError::Config(e.to_string()))?;
        let assertion;
        if let ClientAuth::PrivateKeyJwt(key) = &self.settings.client_auth {
            let token_url = discovered
                .client
                .token_uri()
                .ok_or_else(|| OidcError::Config("the provider has no token endpoint".into()))?;
            assertion = key.assertion(&self.settings.client_id, token_url.as_str())?;
            request = request
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.as_str());
        }
        // The library loops until approval, sleeping between requests: its first sleep means
        // "not yet", and ends this poll.
        let asked_again = Arc::new(Notify::new());
        let sleep = {
            let asked_again = asked_again.clone();
            move |_| {
                asked_again.notify_one();
                std::future::pending::<()>()
            }
        };
        let exchange = request.request_async(&self.http, sleep, None);
        let outcome = first_of(exchange, asked_again.notified()).await;
        let tokens = match outcome {
            None => return Ok(DevicePoll::Pending),
            Some(Ok(tokens)) => tokens,
            Some(Err(RequestTokenError::ServerResponse(response))) => {
                return Err(match response.error() {
                    DeviceCodeErrorResponseType::AccessDenied => OidcError::DeviceDenied,
                    DeviceCodeErrorResponseType::ExpiredToken => OidcError::DeviceExpired,
                    other => OidcError::CodeRefused(other.to_string()),
                });
            }
            Some(Err(other)) => return Err(OidcError::CodeRefused(other.to_string())),
        };
        let no_nonce = |nonce: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(_) => Err("a device sign-in's ID token carries no nonce".to_owned()),
        };
        self.person(&discovered, &tokens, no_nonce)
            .await
            .map(DevicePoll::Approved)
    }
}

/// `Some(output)` when `work` finishes first, `None` when `signal` comes first.
async fn first_of<T>(work: impl Future<Output = T>, signal: impl Future<Output = ()>) -> Option<T> {
    let (work, signal) = (pin!(work), pin!(signal));
    tokio::select! {
        biased;
        output = work => Some(output),
        () = signal => None,
    }
}
