//! Sign-in for the suite (docs/sign-in.md).
//!
//! [`oidc`] is the OpenID Connect relying party: discovery, the authorization code flow with
//! PKCE, `state` and `nonce`, a confidential client (`client_secret_basic` or
//! `private_key_jwt`), the requested `acr` checked in the ID token, the provider's keys
//! refreshed on rotation, and userinfo, with the claims Pro Santé Connect returns for a
//! professional's national identifier and activities.
//!
//! [`keys`] is the ring of the service's own signing keys for the suite's access tokens, with
//! rotation and overlap, and the JWKS the gateway verifies them with.

pub mod keys;
pub mod oidc;
