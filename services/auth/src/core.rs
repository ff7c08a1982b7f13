//! Every operation of the auth service, with its checks and audit: sign-in with a provider (in
//! a browser or on a device without one), the organisation choice and the device's enrolment,
//! refresh, sign-out, sessions and devices.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use telehealth_kit::{
    Database, KitError,
    audit::{self, AuditEntry, Outcome},
    config::ProviderConfig,
    directory::{Directory, Membership},
    identity::{Identity, Role},
    pki::{DevPki, DeviceCertificate, Validity, new_device_request, request_key_digest},
    record::now_micros,
    sealed::KeyRing as SealingKeys,
};
use tokio::sync::OnceCell;

use crate::{
    bundle::{self, Bundle},
    error::{AuthError, Result},
    keys::{KeyRing, RingKey},
    logins::Logins,
    oidc::{
        ClientAuth, ClientKey, DeviceAuthorization, DevicePoll, HttpClient, ProviderSettings,
        RelyingParty, VerifiedPerson,
    },
    sessions::{Issued, Session, SessionGrant, Sessions, end_reason},
    store::{self, DeviceLogin, DeviceRecord, Ticket},
    tokens::{TokenPolicy, access_token},
};

/// The provider name of the development sign-in.
pub const DEVELOPMENT: &str = "development";
/// A verified sign-in waits this long for its organisation choice.
const TICKET_TTL_US: i64 = 10 * 60 * 1_000_000;
/// A new key is published this long before it signs, so every gateway has it by then.
pub const PUBLISH_AHEAD: Duration = Duration::from_secs(3600);

/// A configured provider, discovered on first use (and again after a failure): the service
/// starts even when a provider is down.
pub struct ProviderSlot {
    pub config: ProviderConfig,
    rp: OnceCell<Arc<RelyingParty>>,
}

impl ProviderSlot {
    pub fn new(config: ProviderConfig) -> ProviderSlot {
        ProviderSlot {
            config,
            rp: OnceCell::new(),
        }
    }

    async fn relying_party(&self) -> Result<&Arc<RelyingParty>> {
        self.rp
            .get_or_try_init(|| async {
                let settings = provider_settings(&self.config)?;
                let roots = match &self.config.ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| KitError::io(path, e))?),
                    None => None,
                };
                let http = HttpClient::new(roots.as_deref())
                    .map_err(|e| KitError::Config(format!("provider {}: {e}", self.config.id)))?;
                Ok(Arc::new(RelyingParty::discover(settings, http).await?))
            })
            .await
    }
}

/// The relying-party settings of a provider's configuration (secrets read from their files).
fn provider_settings(config: &ProviderConfig) -> Result<ProviderSettings> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|e| AuthError::Kit(KitError::io(path, e)))
    };
    let client_auth = match (&config.client_key_file, &config.client_secret_file) {
        (Some(key_file), _) => {
            let pem = read(key_file)?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| KitError::Config(format!("{}: {e}", key_file.display())))?;
            let kid = config.client_key_id.clone().unwrap_or_default();
            ClientAuth::PrivateKeyJwt(ClientKey::from_pkcs8(&kid, der.secret_pkcs8_der())?)
        }
        (None, Some(secret_file)) => ClientAuth::SecretBasic(read(secret_file)?),
        (None, None) => {
            return Err(KitError::Config(format!(
                "provider {}: set client_key_file or client_secret_file",
                config.id
            ))
            .into());
        }
    };
    Ok(ProviderSettings {
        issuer: config.issuer.clone(),
        discovery_url: config.discovery_url.clone(),
        client_id: config.client_id.clone(),
        client_auth,
        redirect_uri: config.redirect_uri.clone(),
        scopes: config.scopes.clone(),
        acr: config.acr.clone(),
    })
}

use rustls::pki_types::pem::PemObject;

/// The service's signing keys (kept in the database, sealed) and the token policy.
pub struct Signing {
    /// The ring as last read, which signs.
    pub ring: std::sync::Mutex<KeyRing>,
    /// Seals the private keys at rest.
    pub sealer: SealingKeys,
    pub policy: TokenPolicy,
    pub rotation: Duration,
}

/// The sealed column's name in the associated data of each sealed key.
const SEALED_KEY_FIELD: &str = "auth_signing_keys.sealed_pkcs8";

impl Signing {
    /// Reads the ring, adds the next key when due (the first one signs at once, the others an
    /// hour after they are published), forgets the keys no token can name any more, and keeps
    /// the result for signing. Replicas doing it at once add one key between them.
    pub async fn maintain(&self, db: &Database, now: u64) -> Result<()> {
        let mut ring = self.load(db).await?;
        if ring.is_due(now, self.rotation) {
            let signs_from = if ring.keys().is_empty() {
                now
            } else {
                now + PUBLISH_AHEAD.as_secs()
            };
            let key = ring.next_key(signs_from)?;
            let pkcs8 =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key.pkcs8);
            let sealed = self.sealer.seal(SEALED_KEY_FIELD, &key.kid, &pkcs8)?;
            let stored = (
                key.generation,
                key.kid.clone(),
                sealed,
                i64::try_from(key.signs_from).unwrap_or(i64::MAX),
            );
            let mut conn = db.pool().acquire().await?;
            if store::insert_signing_key(&mut conn, &stored).await? {
                tracing::info!(kid = %key.kid, signs_from = key.signs_from, "new token signing key published");
            }
            drop(conn);
            ring = self.load(db).await?;
        }
        let expired = ring.expired(now, self.policy.lifetime);
        if !expired.is_empty() {
            let mut conn = db.pool().acquire().await?;
            for kid in &expired {
                store::delete_signing_key(&mut conn, kid).await?;
            }
            drop(conn);
            ring = self.load(db).await?;
        }
        *self.ring.lock().unwrap_or_else(|p| p.into_inner()) = ring;
        Ok(())
    }

    /// The ring as the database holds it now.
    pub async fn load(&self, db: &Database) -> Result<KeyRing> {
        let mut conn = db.pool().acquire().await?;
        let stored = store::signing_keys(&mut conn).await?;
        drop(conn);
        let mut keys = Vec::with_capacity(stored.len());
        for (generation, kid, sealed, signs_from) in stored {
            let pkcs8 = self.sealer.open(SEALED_KEY_FIELD, &kid, &sealed)?;
            let pkcs8 = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, pkcs8)
                .map_err(|e| KitError::Config(format!("signing key {kid}: {e}")))?;
            keys.push(RingKey {
                generation,
                kid,
                pkcs8,
                signs_from: u64::try_from(signs_from).unwrap_or(0),
            });
        }
        Ok(KeyRing::new(keys))
    }
}

/// A verified sign-in: the ticket and who it is for.
#[derive(Debug, Clone)]
pub struct Verified {
    pub ticket: String,
    pub person: VerifiedPerson,
    pub rpps_number: String,
    /// `(org, subject, membership)`.
    pub memberships: Vec<(String, String, Membership)>,
}

/// Where a device sign-in stands.
#[derive(Debug, Clone)]
pub enum DeviceProgress {
    Pending { interval_s: u32 },
    Verified(Box<Verified>),
}

/// A started device sign-in.
#[derive(Debug, Clone)]
pub struct DeviceStart {
    pub sign_in_id: String,
    pub authorization: DeviceAuthorization,
}

/// What a sign-in enrols, chosen when it starts.
#[derive(Debug, Clone, Copy)]
pub enum DeviceChoice<'a> {
    /// A certificate for the key of this CSR (the CLI, native apps: the key stays there).
    Csr(&'a str),
    /// A key made by the suite, handed over as a PKCS#12 bundle (browsers, phones).
    Bundle,
    /// Nothing new: the enrolled device the call comes from (its certificate's thumbprint).
    ThisDevice(&'a str),
}

/// How a sign-in remembers a [`DeviceChoice`] (its `device_key`): the CSR key's hex digest, or
/// one of these, which no hex digest can be.
const BUNDLE_BINDING: &str = "pkcs12";
const DEVICE_BINDING: &str = "device:";

/// An enrolled device and its session.
pub struct Enrolment {
    /// The new certificate and its CA chain (empty when the device was enrolled before).
    pub certificate_pem: String,
    pub ca_pem: String,
    /// For [`DeviceChoice::Bundle`]: the key and chain, sealed.
    pub bundle: Option<Bundle>,
    pub device: DeviceRecord,
    pub tokens: IssuedTokens,
}

/// The tokens of a session.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub access_expires_us: i64,
    pub issued: Issued,
}

/// The last CRL signed, for the list it was signed for.
pub struct SignedCrl {
    serials: Vec<String>,
    pem: String,
    signed: std::time::Instant,
}

/// An unchanged CRL is signed again this often (it says it is valid a week).
const CRL_RESIGN: Duration = Duration::from_secs(86_400);

/// The auth service.
pub struct Auth {
    pub db: Database,
    pub sessions: Sessions,
    pub logins: Logins,
    pub providers: BTreeMap<String, ProviderSlot>,
    pub directory: Directory,
    pub signing: Signing,
    pub device_ca: DevPki,
    pub certificate_days: u32,
    pub development: bool,
    pub crl: std::sync::Mutex<Option<SignedCrl>>,
}

impl Auth {
    /// The providers people may choose, and whether each offers the device sign-in.
    pub async fn list_providers(&self) -> Vec<(String, String, bool, bool)> {
        let mut list = Vec::new();
        for (id, slot) in &self.providers {
            let device = match slot.relying_party().await {
                Ok(rp) => rp.offers_device_sign_in(),
                Err(error) => {
                    tracing::warn!(provider = %id, %error, "provider unavailable");
                    false
                }
            };
            list.push((id.clone(), slot.config.display_name.clone(), device, false));
        }
        if self.development {
            list.push((
                DEVELOPMENT.to_owned(),
                "Connexion de développement (comptes de démonstration)".to_owned(),
                false,
                true,
            ));
        }
        list
    }

    fn slot(&self, provider: &str) -> Result<&ProviderSlot> {
        self.providers.get(provider).ok_or_else(|| {
            AuthError::Invalid(format!(
                "provider: `{provider}` is not configured; ListProviders names those that are"
            ))
        })
    }

    /// Starts a browser sign-in enrolling `device`: the URL to open.
    pub async fn start_sign_in(
        &self,
        provider: &str,
        device: DeviceChoice<'_>,
        login_hint: Option<&str>,
    ) -> Result<String> {
        let device_key = self.binding(device).await?;
        let rp = self.slot(provider)?.relying_party().await?;
        Ok(self
            .logins
            .start(rp, provider, &device_key, login_hint, now_micros())
            .await?)
    }

    /// Finishes a browser sign-in with the provider's `state` and `code`.
    pub async fn finish_sign_in(
        &self,
        provider: &str,
        state: &str,
        code: &str,
    ) -> Result<Verified> {
        let rp = self.slot(provider)?.relying_party().await?;
        let finished = self
            .logins
            .finish(rp, provider, state, code, now_micros())
            .await;
        let finished = match finished {
            Ok(finished) => finished,
            Err(error) => {
                let error = AuthError::from(error);
                self.audit_sign_in(provider, "", Outcome::of(&error)).await;
                return Err(error);
            }
        };
        self.verified(provider, finished.person, &finished.device_key)
            .await
    }

    /// Starts a device sign-in (RFC 8628) enrolling `device`.
    pub async fn start_device_sign_in(
        &self,
        provider: &str,
        device: DeviceChoice<'_>,
        login_hint: Option<&str>,
    ) -> Result<DeviceStart> {
        let device_key = self.binding(device).await?;
        let rp = self.slot(provider)?.relying_party().await?;
        let authorization = rp.device_begin(login_hint).await?;
        let now = now_micros();
        let interval_s = authorization.interval().as_secs().clamp(1, 60) as i64;
        let lifetime_us = i64::try_from(authorization.expires_in().as_micros())
            .unwrap_or(i64::MAX)
            .min(30 * 60 * 1_000_000);
        let sign_in_id = secret()?;
        let record = DeviceLogin {
            provider: provider.to_owned(),
            device_key,
            authorization: serde_json::to_string(&authorization)
                .map_err(|e| KitError::Config(format!("device authorization: {e}")))?,
            interval_s,
            next_poll_us: now,
            expires_us: now.saturating_add(lifetime_us),
        };
        let mut conn = self.db.pool().acquire().await?;
        store::insert_device_login(&mut conn, &sign_in_id, &record).await?;
        Ok(DeviceStart {
            sign_in_id,
            authorization,
        })
    }

    /// Asks once whether the person approved the device sign-in `sign_in_id`.
    pub async fn poll_device_sign_in(&self, sign_in_id: &str) -> Result<DeviceProgress> {
        let now = now_micros();
        let mut conn = self.db.pool().acquire().await?;
        let login = store::device_login(&mut conn, sign_in_id)
            .await?
            .ok_or_else(|| {
                AuthError::StartAgain(
                    "this device sign-in is unknown or already finished: start again".into(),
                )
            })?;
        if now >= login.expires_us {
            store::take_device_login(&mut conn, sign_in_id).await?;
            return Err(AuthError::Expired(
                "the code was not entered in time: start again".into(),
            ));
        }
        let interval_s = u32::try_from(login.interval_s).unwrap_or(5);
        let next = now.saturating_add(login.interval_s.saturating_mul(1_000_000));
        // A poll sooner than the interval (or racing another) does not reach the provider.
        if !store::claim_poll(&mut conn, sign_in_id, now, next).await? {
            return Ok(DeviceProgress::Pending { interval_s });
        }
        drop(conn);
        let authorization: DeviceAuthorization = serde_json::from_str(&login.authorization)
            .map_err(|e| KitError::Config(format!("stored device authorization: {e}")))?;
        let rp = self.slot(&login.provider)?.relying_party().await?;
        let polled = rp.device_poll(&authorization).await;
        let person = match polled {
            Ok(DevicePoll::Pending) => return Ok(DeviceProgress::Pending { interval_s }),
            Ok(DevicePoll::Approved(person)) => person,
            Err(error) => {
                let mut conn = self.db.pool().acquire().await?;
                store::take_device_login(&mut conn, sign_in_id).await?;
                let error = AuthError::from(error);
                self.audit_sign_in(&login.provider, "", Outcome::of(&error))
                    .await;
                return Err(error);
            }
        };
        let mut conn = self.db.pool().acquire().await?;
        if !store::take_device_login(&mut conn, sign_in_id).await? {
            return Err(AuthError::StartAgain(
                "this device sign-in is already finished: start again".into(),
            ));
        }
        drop(conn);
        self.verified(&login.provider, person, &login.device_key)
            .await
            .map(|verified| DeviceProgress::Verified(Box::new(verified)))
    }

    /// Signs in as a demo member (development mode only).
    pub async fn development_sign_in(
        &self,
        rpps: &str,
        device: DeviceChoice<'_>,
    ) -> Result<Verified> {
        if !self.development {
            return Err(AuthError::StartAgain(
                "the development sign-in exists only under `telehealth up`".into(),
            ));
        }
        let device_key = self.binding(device).await?;
        let person = VerifiedPerson {
            subject: format!("development:{rpps}"),
            national_id: Some(format!("8{rpps}")),
            given_name: None,
            family_name: None,
            acr: None,
            record: None,
        };
        self.verified(DEVELOPMENT, person, &device_key).await
    }

    /// How a sign-in starting now remembers what it enrols.
    async fn binding(&self, device: DeviceChoice<'_>) -> Result<String> {
        match device {
            DeviceChoice::Csr(csr_pem) => device_key(csr_pem),
            DeviceChoice::Bundle => Ok(BUNDLE_BINDING.to_owned()),
            DeviceChoice::ThisDevice(thumbprint) => {
                self.enrolled_device(thumbprint).await?;
                Ok(format!("{DEVICE_BINDING}{thumbprint}"))
            }
        }
    }

    /// The enrolled, unrevoked, unexpired device of this certificate.
    async fn enrolled_device(&self, thumbprint: &str) -> Result<DeviceRecord> {
        let now = now_micros();
        let mut conn = self.db.pool().acquire().await?;
        store::device_by_thumbprint(&mut conn, thumbprint)
            .await?
            .filter(|d| d.revoked_us.is_none() && now < d.expires_us)
            .ok_or_else(|| {
                AuthError::StartAgain(
                    "this_device: the call's certificate is not an enrolled device (or it is \
                     revoked or expired): enrol the device with a CSR or a PKCS#12 bundle"
                        .into(),
                )
            })
    }

    /// The person the provider vouched for, mapped to their memberships; none is a refusal.
    async fn verified(
        &self,
        provider: &str,
        person: VerifiedPerson,
        device_key: &str,
    ) -> Result<Verified> {
        let Some(rpps) = rpps_of(person.national_id.as_deref()) else {
            self.audit_sign_in(provider, &person.subject, Outcome::Denied)
                .await;
            return Err(AuthError::Refused(
                "the provider gave no RPPS number for this person: the suite signs in health \
                 professionals of the national register only"
                    .into(),
            ));
        };
        let memberships = self.directory.memberships_by_rpps(&rpps).await?;
        if memberships.is_empty() {
            self.audit_sign_in(provider, &format!("rpps:{rpps}"), Outcome::Denied)
                .await;
            return Err(AuthError::Refused(format!(
                "RPPS {rpps} is not an active member of any organisation of the suite: ask your \
                 organisation's administrator to add you"
            )));
        }
        let ticket = secret()?;
        let mut conn = self.db.pool().acquire().await?;
        store::insert_ticket(
            &mut conn,
            &ticket,
            &Ticket {
                provider: provider.to_owned(),
                device_key: device_key.to_owned(),
                rpps_number: rpps.clone(),
                expires_us: now_micros().saturating_add(TICKET_TTL_US),
            },
        )
        .await?;
        Ok(Verified {
            ticket,
            person,
            rpps_number: rpps,
            memberships,
        })
    }

    /// Chooses the organisation and enrols the device as the sign-in chose when it started
    /// (`csr_pem` for a CSR, the caller's certificate `caller` for an enrolled device): its
    /// certificate or bundle, and the session's first tokens.
    pub async fn complete_sign_in(
        &self,
        ticket: &str,
        org: &str,
        csr_pem: &str,
        device_name: &str,
        caller: Option<&str>,
    ) -> Result<Enrolment> {
        let name = device_name.trim();
        if name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "device_name: at most 100 characters, no control characters".into(),
            ));
        }
        let now = now_micros();
        let mut conn = self.db.pool().acquire().await?;
        let ticket = store::take_ticket(&mut conn, ticket)
            .await?
            .filter(|t| now < t.expires_us)
            .ok_or_else(|| {
                AuthError::StartAgain(
                    "this sign-in is unknown, already completed or expired: sign in again".into(),
                )
            })?;
        drop(conn);
        let chosen = if ticket.device_key == BUNDLE_BINDING {
            if !csr_pem.is_empty() {
                return Err(AuthError::Invalid(
                    "csr_pem: this sign-in enrols a PKCS#12 bundle; sign in again to give a CSR"
                        .into(),
                ));
            }
            DeviceChoice::Bundle
        } else if let Some(bound) = ticket.device_key.strip_prefix(DEVICE_BINDING) {
            if caller != Some(bound) {
                return Err(AuthError::Refused(
                    "this sign-in was started from another device: complete it from the device \
                     that started it"
                        .into(),
                ));
            }
            DeviceChoice::ThisDevice(bound)
        } else {
            if device_key(csr_pem)? != ticket.device_key {
                return Err(AuthError::Invalid(
                    "csr_pem: not the key that started this sign-in".into(),
                ));
            }
            DeviceChoice::Csr(csr_pem)
        };
        let memberships = self
            .directory
            .memberships_by_rpps(&ticket.rpps_number)
            .await?;
        let Some((org, subject, membership)) = memberships.into_iter().find(|(o, _, _)| o == org)
        else {
            self.audit_sign_in(
                &ticket.provider,
                &format!("rpps:{}", ticket.rpps_number),
                Outcome::Denied,
            )
            .await;
            return Err(AuthError::Refused(format!(
                "org_id: RPPS {} is not an active member of `{org}`",
                ticket.rpps_number
            )));
        };
        let (certificate_pem, ca_pem, bundle, device) = match chosen {
            DeviceChoice::Csr(csr_pem) => {
                let (certificate, device) = self
                    .issue_device(csr_pem, &org, &subject, name, now)
                    .await?;
                (certificate.pem, certificate.ca_pem, None, device)
            }
            DeviceChoice::Bundle => {
                let (key_pem, csr_pem) = new_device_request()?;
                let (certificate, device) = self
                    .issue_device(&csr_pem, &org, &subject, name, now)
                    .await?;
                let bundle = bundle::seal(
                    &key_pem,
                    &certificate.pem,
                    &certificate.ca_pem,
                    &device.name,
                )?;
                (certificate.pem, certificate.ca_pem, Some(bundle), device)
            }
            DeviceChoice::ThisDevice(thumbprint) => {
                let device = self.enrolled_device(thumbprint).await?;
                if device.subject != subject || device.org_id != org {
                    return Err(AuthError::Refused(format!(
                        "this device is enrolled for someone else or another organisation than \
                         `{org}`: enrol this device again"
                    )));
                }
                (String::new(), String::new(), None, device)
            }
        };
        let thumbprint = device.thumbprint.clone();
        let device_id = device.device_id.clone();
        let issued = self
            .sessions
            .open(
                SessionGrant {
                    subject: subject.clone(),
                    org: org.clone(),
                    roles: membership.roles.clone(),
                    specialty: membership.specialty.clone(),
                    device_thumbprint: thumbprint.clone(),
                    provider: ticket.provider.clone(),
                },
                now,
            )
            .await?;
        let tokens = self.tokens_for(issued)?;
        let entry = AuditEntry {
            subject,
            roles: roles_text(&membership.roles),
            org,
            cert_thumbprint: thumbprint,
            action: "CompleteSignIn".into(),
            record_type: "device".into(),
            record_id: device_id,
            outcome: Outcome::Ok,
            trace_id: telehealth_kit::telemetry::current_trace_id(),
        };
        audit::record(&self.db, &entry).await?;
        Ok(Enrolment {
            certificate_pem,
            ca_pem,
            bundle,
            device,
            tokens,
        })
    }

    /// A certificate for the key of `csr_pem`, recorded as a device of `subject` in `org`.
    async fn issue_device(
        &self,
        csr_pem: &str,
        org: &str,
        subject: &str,
        name: &str,
        now: i64,
    ) -> Result<(DeviceCertificate, DeviceRecord)> {
        let device_id = uuid::Uuid::new_v4().to_string();
        let certificate = self.device_ca.sign_device_request(
            csr_pem,
            &device_id,
            org,
            Validity::days(i64::from(self.certificate_days)),
        )?;
        let device = DeviceRecord {
            device_id,
            org_id: org.to_owned(),
            subject: subject.to_owned(),
            name: if name.is_empty() {
                "Appareil".to_owned()
            } else {
                name.to_owned()
            },
            thumbprint: certificate.thumbprint.clone(),
            serial_hex: certificate.serial_hex.clone(),
            enrolled_us: now,
            expires_us: certificate.not_after_unix.saturating_mul(1_000_000),
            revoked_us: None,
        };
        let mut conn = self.db.pool().acquire().await?;
        store::insert_device(&mut conn, &device).await?;
        Ok((certificate, device))
    }

    /// Renews the certificate of the device the caller calls from, for the key of `csr_pem`: a
    /// new device record and certificate, the old one revoked, the session moved to it.
    pub async fn renew_device(&self, identity: &Identity, csr_pem: &str) -> Result<Enrolment> {
        device_key(csr_pem)?;
        let now = now_micros();
        let mut conn = self.db.pool().acquire().await?;
        let old = store::device_by_thumbprint(&mut conn, &identity.cert_thumbprint)
            .await?
            .filter(|d| d.org_id == identity.org && d.subject == identity.subject)
            .filter(|d| d.revoked_us.is_none())
            .ok_or_else(|| {
                AuthError::StartAgain(
                    "this call's certificate is not an enrolled device of yours: sign in again"
                        .into(),
                )
            })?;
        drop(conn);
        let session = self.current_session(identity).await?.ok_or_else(|| {
            AuthError::StartAgain("this device has no open session: sign in again".into())
        })?;
        let (certificate, device) = self
            .issue_device(csr_pem, &old.org_id, &old.subject, &old.name, now)
            .await?;
        let issued = self
            .sessions
            .rebind(&session.id, &old.thumbprint, &certificate.thumbprint, now)
            .await?;
        let mut conn = self.db.pool().acquire().await?;
        let Some(issued) = issued else {
            // The session ended meanwhile: the new certificate must not outlive it.
            store::revoke_device(&mut conn, &device.device_id, now).await?;
            return Err(AuthError::StartAgain(
                "the session ended meanwhile: sign in again".into(),
            ));
        };
        store::revoke_device(&mut conn, &old.device_id, now).await?;
        drop(conn);
        let entry = AuditEntry::new(
            &telehealth_kit::identity::Caller::Person(identity.clone()),
            "RenewDevice",
            "device",
            &device.device_id,
            Outcome::Ok,
        );
        audit::record(&self.db, &entry).await?;
        Ok(Enrolment {
            certificate_pem: certificate.pem,
            ca_pem: certificate.ca_pem,
            bundle: None,
            device,
            tokens: self.tokens_for(issued)?,
        })
    }

    /// The next tokens of the session `refresh_token` belongs to, from its device.
    pub async fn refresh(&self, refresh_token: &str, thumbprint: &str) -> Result<IssuedTokens> {
        let issued = self
            .sessions
            .refresh(refresh_token, thumbprint, now_micros())
            .await?;
        self.tokens_for(issued)
    }

    fn tokens_for(&self, issued: Issued) -> Result<IssuedTokens> {
        let now = now_micros();
        let now_s = u64::try_from(now / 1_000_000).unwrap_or(0);
        let access_token = {
            let ring = self.signing.ring.lock().unwrap_or_else(|p| p.into_inner());
            access_token(&ring, &self.signing.policy, &issued.session, now_s)?
        };
        let lifetime_us = i64::try_from(self.signing.policy.lifetime.as_micros()).unwrap_or(0);
        Ok(IssuedTokens {
            access_token,
            access_expires_us: now.saturating_add(lifetime_us),
            issued,
        })
    }

    /// The open session of the caller's device (the one its token was issued for).
    async fn current_session(&self, identity: &Identity) -> Result<Option<Session>> {
        Ok(self
            .sessions
            .of_person(&identity.subject, &identity.org, now_micros())
            .await?
            .into_iter()
            .find(|s| s.grant.device_thumbprint == identity.cert_thumbprint))
    }

    /// Ends the caller's own session.
    pub async fn sign_out(&self, identity: &Identity) -> Result<()> {
        if let Some(session) = self.current_session(identity).await? {
            self.sessions
                .end(&session.id, end_reason::SIGNED_OUT, now_micros())
                .await?;
        }
        Ok(())
    }

    /// The caller's open sessions, or (administrator, `organisation`) the organisation's.
    pub async fn list_sessions(
        &self,
        identity: &Identity,
        organisation: bool,
    ) -> Result<Vec<Session>> {
        let now = now_micros();
        if organisation {
            require_admin(identity)?;
            return Ok(self.sessions.of_org(&identity.org, now).await?);
        }
        Ok(self
            .sessions
            .of_person(&identity.subject, &identity.org, now)
            .await?)
    }

    /// Ends one of the caller's sessions, or (administrator) any of the organisation's.
    pub async fn end_session(&self, identity: &Identity, session_id: &str) -> Result<()> {
        let session = self
            .sessions
            .get(session_id)
            .await?
            .filter(|s| s.grant.org == identity.org)
            .filter(|s| s.grant.subject == identity.subject || identity.has_role(Role::Admin))
            .ok_or_else(|| AuthError::NotFound("no such session that you may end".into()))?;
        let reason = if session.grant.subject == identity.subject {
            end_reason::SIGNED_OUT
        } else {
            end_reason::ENDED_BY_ADMINISTRATOR
        };
        self.sessions.end(&session.id, reason, now_micros()).await?;
        Ok(())
    }

    /// The caller's devices, or (administrator, `organisation`) the organisation's.
    pub async fn list_devices(
        &self,
        identity: &Identity,
        organisation: bool,
    ) -> Result<Vec<DeviceRecord>> {
        if organisation {
            require_admin(identity)?;
        }
        let subject = (!organisation).then_some(identity.subject.as_str());
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::devices(&mut conn, &identity.org, subject).await?)
    }

    /// Revokes a device: the CRL lists it (the gateway closes its connections once reloaded)
    /// and its sessions end.
    pub async fn revoke_device(
        &self,
        identity: &Identity,
        device_id: &str,
    ) -> Result<DeviceRecord> {
        let now = now_micros();
        let mut conn = self.db.pool().acquire().await?;
        let device = store::device(&mut conn, device_id)
            .await?
            .filter(|d| d.org_id == identity.org)
            .filter(|d| d.subject == identity.subject || identity.has_role(Role::Admin))
            .ok_or_else(|| AuthError::NotFound("no such device that you may revoke".into()))?;
        store::revoke_device(&mut conn, device_id, now).await?;
        drop(conn);
        self.sessions
            .end_of_device(&device.thumbprint, "device revoked", now)
            .await?;
        let entry = AuditEntry::new(
            &telehealth_kit::identity::Caller::Person(identity.clone()),
            "RevokeDevice",
            "device",
            device_id,
            Outcome::Ok,
        );
        audit::record(&self.db, &entry).await?;
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::device(&mut conn, device_id).await?.unwrap_or(device))
    }

    /// What the gateway needs: the JWKS of the signing keys as the database holds them (every
    /// replica publishes the same), and the device CA's CRL of the revoked devices and the
    /// operator's revoked serials (signed again only when the list changed, or daily).
    pub async fn published_keys(&self) -> Result<(String, String)> {
        let jwks = self.signing.load(&self.db).await?.jwks()?;
        let jwks =
            serde_json::to_string(&jwks).map_err(|e| KitError::Config(format!("jwks: {e}")))?;
        let mut conn = self.db.pool().acquire().await?;
        let mut serials = store::revoked_serials(&mut conn, now_micros()).await?;
        drop(conn);
        serials.extend(self.device_ca.revoked_serials());
        serials.sort_unstable();
        serials.dedup();
        let mut cached = self.crl.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(crl) = cached
            .as_ref()
            .filter(|c| c.serials == serials && c.signed.elapsed() < CRL_RESIGN)
        {
            return Ok((jwks, crl.pem.clone()));
        }
        let pem = self.device_ca.crl_pem(&serials)?;
        *cached = Some(SignedCrl {
            serials,
            pem: pem.clone(),
            signed: std::time::Instant::now(),
        });
        Ok((jwks, pem))
    }

    /// Forgets expired sign-ins in progress, tickets and device sign-ins.
    pub async fn purge(&self) -> Result<u64> {
        let now = now_micros();
        let mut purged = self.logins.purge(now).await?;
        let mut conn = self.db.pool().acquire().await?;
        purged += store::purge(&mut conn, now).await?;
        Ok(purged)
    }

    async fn audit_sign_in(&self, provider: &str, who: &str, outcome: Outcome) {
        let entry = AuditEntry {
            subject: who.to_owned(),
            roles: String::new(),
            org: String::new(),
            cert_thumbprint: String::new(),
            action: "SignIn".into(),
            record_type: "sign_in".into(),
            record_id: provider.to_owned(),
            outcome,
            trace_id: telehealth_kit::telemetry::current_trace_id(),
        };
        if let Err(error) = audit::record(&self.db, &entry).await {
            tracing::error!(%error, "the refused sign-in could not be audited");
        }
    }
}

/// The RPPS number of a national professional identifier: Pro Santé Connect's `SubjectNameID`
/// is "8" + the 11-digit RPPS number ("0" + ADELI numbers are not in the directory).
fn rpps_of(national_id: Option<&str>) -> Option<String> {
    let id = national_id?;
    let rpps = id.strip_prefix('8').filter(|rest| rest.len() == 11)?;
    rpps.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| rpps.to_owned())
}

fn device_key(csr_pem: &str) -> Result<String> {
    if csr_pem.len() > 8192 {
        return Err(AuthError::Invalid(
            "csr_pem: at most 8 KiB (one PKCS#10 request in PEM)".into(),
        ));
    }
    request_key_digest(csr_pem).map_err(|e| AuthError::Invalid(format!("csr_pem: {e}")))
}

fn require_admin(identity: &Identity) -> Result<()> {
    if identity.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(AuthError::Refused(
            "only an administrator of the organisation sees all its sessions and devices".into(),
        ))
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// 256 random bits, base64url: tickets and device sign-in ids.
fn secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| KitError::Config("no randomness".into()))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpps_number_is_read_from_pro_sante_connect_s_national_identifier() {
        assert_eq!(
            rpps_of(Some("810100000001")).as_deref(),
            Some("10100000001")
        );
        assert_eq!(rpps_of(Some("0123456789")), None, "ADELI");
        assert_eq!(rpps_of(Some("8101000000012")), None, "too long");
        assert_eq!(rpps_of(Some("81010000000a")), None);
        assert_eq!(rpps_of(None), None);
    }
}
