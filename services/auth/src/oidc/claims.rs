//! The claims a professional identity provider adds (Pro Santé Connect's names), and the
//! library's client and token types specialised to them.

use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, Client, DeviceAuthorizationUrl,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenClaims,
    IdTokenFields, ProviderMetadata, StandardErrorResponse, StandardTokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
        CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
        CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
        CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use serde::{Deserialize, Serialize};

use super::{OidcError, ProviderSettings};

/// Claims beyond the standard ones, in userinfo or the ID token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfessionalClaims {
    /// The national professional identifier: "8" + RPPS number (or "0" + ADELI).
    #[serde(rename = "SubjectNameID", default)]
    pub subject_name_id: Option<String>,
    /// The professional's record: civility and each practice (exercice) with its activities.
    #[serde(rename = "SubjectRefPro", default)]
    pub subject_ref_pro: Option<ProfessionalRecord>,
}

impl AdditionalClaims for ProfessionalClaims {}

/// `SubjectRefPro`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfessionalRecord {
    #[serde(rename = "codeCivilite", default)]
    pub civility: Option<String>,
    #[serde(default)]
    pub exercices: Vec<Exercice>,
}

/// One practice of the professional: the profession (`codeProfession`, e.g. 10 = doctor,
/// 60 = nurse, from the national nomenclature) and where it is practised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exercice {
    #[serde(rename = "codeProfession", default)]
    pub profession: Option<String>,
    #[serde(rename = "codeSavoirFaire", default)]
    pub specialty: Option<String>,
    /// Each place of activity, as the provider describes it (kept as given).
    #[serde(default)]
    pub activities: Vec<serde_json::Value>,
}

type IdFields = IdTokenFields<
    ProfessionalClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

pub(super) type ProviderTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
pub(super) type ProviderIdToken = IdToken<
    ProfessionalClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub(super) type ProviderIdTokenClaims = IdTokenClaims<ProfessionalClaims, CoreGenderClaim>;

/// The library's client with these claims, as built from a discovery document.
pub(super) type ProviderClient = Client<
    ProfessionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    ProviderTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The client for `settings` from the provider's `metadata` (keys included).
/// What the suite reads of a provider's discovery document: the standard fields and the device
/// authorization endpoint (RFC 8628), which the library's core metadata leaves out.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub(super) struct DeviceEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}

impl AdditionalProviderMetadata for DeviceEndpoint {}

pub(super) type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

pub(super) fn client(
    settings: &ProviderSettings,
    metadata: Metadata,
) -> Result<ProviderClient, OidcError> {
    let (id, secret) = super::credentials(settings);
    Ok(Client::from_provider_metadata(metadata, id, secret)
        .set_redirect_uri(super::redirect(settings)?)
        .set_auth_type(openidconnect::AuthType::BasicAuth))
}

/// The provider's refusal of a code, in words (its `error` and description when it gave them).
pub(super) fn describe_token_error<E: std::error::Error>(
    error: &openidconnect::RequestTokenError<E, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match error {
        openidconnect::RequestTokenError::ServerResponse(response) => {
            let mut text = response.error().to_string();
            if let Some(description) = response.error_description() {
                text.push_str(": ");
                text.push_str(description);
            }
            text
        }
        other => other.to_string(),
    }
}
