//! A development PKI, made with `rcgen`: what `telehealth up` creates on first start and what
//! `telehealth pki` manages. Production certificates come from cert-manager or the
//! organisation's PKI; only the file layout is shared.
//!
//! Two authorities, so that a device can never pass for a part of the suite:
//!
//! | file (under the PKI folder) | what |
//! |---|---|
//! | `ca.pem`, `ca-key.pem` | client-facing CA: signs the gateway's server certificate and the devices' client certificates |
//! | `ca-crl.pem` | its revocation list (empty at first; `telehealth pki revoke` adds to it) |
//! | `internal-ca.pem`, `internal-ca-key.pem` | internal CA: signs the gateway's and the services' internal certificates |
//! | `gateway/server.pem`, `gateway/server-key.pem` | the gateway's server certificate (localhost, 127.0.0.1, ::1) |
//! | `internal/<part>.pem`, `internal/<part>-key.pem` | internal identity of each part (SPIFFE URI SAN) |
//! | `devices/<name>.pem`, `devices/<name>-key.pem` | sample devices' client certificates |

use std::{
    fs,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::{error::KitError, part::Part};

/// Sample devices created by `pki init`, one per kind of user.
pub const SAMPLE_DEVICES: [&str; 4] = [
    "doctor-workstation",
    "nurse-tablet",
    "specialist-workstation",
    "patient-tablet",
];

/// Validity of dev CAs, in days.
const CA_DAYS: i64 = 3650;
/// Default validity of dev leaf certificates, in days.
pub const LEAF_DAYS: i64 = 397;

/// The dev PKI in a folder.
#[derive(Debug, Clone)]
pub struct DevPki {
    dir: PathBuf,
}

/// What kind of certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKind {
    /// A device's client certificate, signed by the client-facing CA.
    Device { name: String },
    /// A part's internal certificate (server and client), signed by the internal CA.
    Internal { part: Part, dns: Vec<String> },
    /// The gateway's public server certificate, signed by the client-facing CA.
    GatewayServer { dns: Vec<String> },
}

/// Validity window of an issued certificate (tests make expired and not-yet-valid ones).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (clock skew) for `days` days.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A device certificate issued from a signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub pem: String,
    /// The issuing CA (PEM), for the device's trust store.
    pub ca_pem: String,
    pub serial_hex: String,
    /// `x5t#S256`.
    pub thumbprint: String,
    pub not_after_unix: i64,
}

/// The SHA-256 (hex) of the public key of a PKCS#10 request whose signature is valid: names the
/// device's key from the start of a sign-in to its certificate.
pub fn request_key_digest(csr_pem: &str) -> Result<String, KitError> {
    use rcgen::PublicKeyData;
    let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| KitError::Pki(format!("the certificate signing request: {e}")))?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        request.public_key.der_bytes(),
    )))
}

/// A new device key (P-256) and its PKCS#10 signing request, both PEM: what a device sends to
/// enrol (the key never leaves it).
pub fn new_device_request() -> Result<(String, String), KitError> {
    let key = KeyPair::generate().map_err(pki_error)?;
    let csr = CertificateParams::new(Vec::<String>::new())
        .map_err(pki_error)?
        .serialize_request(&key)
        .map_err(pki_error)?;
    Ok((key.serialize_pem(), csr.pem().map_err(pki_error)?))
}

/// Paths of an issued certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevPki {
    /// The PKI in `dir` (nothing is read or written yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DevPki { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates whatever is missing: both CAs, the gateway's server certificate, every part's
    /// internal certificate and the sample devices. Existing files are kept, so this is what
    /// every `telehealth up` runs. Returns the files it created.
    pub fn ensure(&self) -> Result<Vec<PathBuf>, KitError> {
        let mut created = Vec::new();
        for (name, cn) in [
            ("ca", "Telehealth dev client-facing CA"),
            ("internal-ca", "Telehealth dev internal CA"),
        ] {
            let cert = self.dir.join(format!("{name}.pem"));
            if !cert.exists() {
                self.create_ca(name, cn)?;
                created.push(cert);
            }
        }
        if !self.crl_file().exists() {
            self.write_crl(&[])?;
            created.push(self.crl_file());
        }
        let gateway = self.gateway_server_files();
        if !gateway.cert.exists() {
            self.issue(
                &LeafKind::GatewayServer { dns: Vec::new() },
                Validity::days(LEAF_DAYS),
            )?;
            created.push(gateway.cert);
        }
        for part in Part::ALL {
            let files = self.internal_files(part);
            if !files.cert.exists() {
                self.issue(
                    &LeafKind::Internal {
                        part,
                        dns: Vec::new(),
                    },
                    Validity::days(LEAF_DAYS),
                )?;
                created.push(files.cert);
            }
        }
        for device in SAMPLE_DEVICES {
            let files = self.device_files(device);
            if !files.cert.exists() {
                self.issue(
                    &LeafKind::Device {
                        name: device.to_owned(),
                    },
                    Validity::days(LEAF_DAYS),
                )?;
                created.push(files.cert);
            }
        }
        Ok(created)
    }

    /// The client-facing CA certificate (trust it to reach the gateway).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The internal CA certificate.
    pub fn internal_ca_file(&self) -> PathBuf {
        self.dir.join("internal-ca.pem")
    }

    /// The gateway's server certificate and key.
    pub fn gateway_server_files(&self) -> IssuedFiles {
        IssuedFiles {
            cert: self.dir.join("gateway").join("server.pem"),
            key: self.dir.join("gateway").join("server-key.pem"),
        }
    }

    /// A part's internal certificate and key.
    pub fn internal_files(&self, part: Part) -> IssuedFiles {
        IssuedFiles {
            cert: self.dir.join("internal").join(format!("{part}.pem")),
            key: self.dir.join("internal").join(format!("{part}-key.pem")),
        }
    }

    /// A device's client certificate and key.
    pub fn device_files(&self, name: &str) -> IssuedFiles {
        IssuedFiles {
            cert: self.dir.join("devices").join(format!("{name}.pem")),
            key: self.dir.join("devices").join(format!("{name}-key.pem")),
        }
    }

    /// Issues (or re-issues) a leaf certificate of `kind`, valid over `validity`, and writes it.
    pub fn issue(&self, kind: &LeafKind, validity: Validity) -> Result<IssuedFiles, KitError> {
        let (ca, files, params) = match kind {
            LeafKind::Device { name } => {
                validate_name(name)?;
                let mut params = leaf_params(name, validity);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                params.subject_alt_names = vec![SanType::DnsName(dns_name(name)?)];
                ("ca", self.device_files(name), params)
            }
            LeafKind::Internal { part, dns } => {
                let mut params = leaf_params(&format!("telehealth-{part}"), validity);
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                let mut sans = vec![
                    SanType::URI(part.spiffe_id().try_into().map_err(pki_error)?),
                    SanType::DnsName(dns_name(part.name())?),
                    SanType::DnsName(dns_name("localhost")?),
                    SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                ];
                for name in dns {
                    sans.push(SanType::DnsName(dns_name(name)?));
                }
                params.subject_alt_names = sans;
                ("internal-ca", self.internal_files(*part), params)
            }
            LeafKind::GatewayServer { dns } => {
                let mut params = leaf_params("telehealth-gateway", validity);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let mut sans = vec![
                    SanType::DnsName(dns_name("localhost")?),
                    SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                ];
                for name in dns {
                    sans.push(SanType::DnsName(dns_name(name)?));
                }
                params.subject_alt_names = sans;
                ("ca", self.gateway_server_files(), params)
            }
        };
        let issuer = self.load_ca(ca)?;
        let key = KeyPair::generate().map_err(pki_error)?;
        let cert = params.signed_by(&key, &issuer).map_err(pki_error)?;
        write_file(&files.cert, cert.pem().as_bytes(), false)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), true)?;
        Ok(files)
    }

    /// Issues a device certificate from the CA of this folder for the key of a PKCS#10 request
    /// (`csr_pem`, its signature checked). Only the key is taken from the request: names,
    /// extensions and usages are the suite's (a client certificate, never a CA), with a random
    /// serial. The certificate names `device_id` (CN and `urn:telehealth:device:<id>` URI SAN)
    /// and the organisation (O).
    pub fn sign_device_request(
        &self,
        csr_pem: &str,
        device_id: &str,
        org: &str,
        validity: Validity,
    ) -> Result<DeviceCertificate, KitError> {
        let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| KitError::Pki(format!("the certificate signing request: {e}")))?;
        let mut params = leaf_params(device_id, validity);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_id);
        dn.push(DnType::OrganizationName, org);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:telehealth:device:{device_id}")
                .try_into()
                .map_err(pki_error)?,
        )];
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| KitError::Pki("no randomness for a serial number".into()))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let issuer = self.load_ca("ca")?;
        let request = rcgen::CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        };
        let cert = request.signed_by(&issuer).map_err(pki_error)?;
        let ca_path = self.ca_file();
        Ok(DeviceCertificate {
            pem: cert.pem(),
            ca_pem: fs::read_to_string(&ca_path).map_err(|e| KitError::io(&ca_path, e))?,
            serial_hex: hex::encode(serial),
            thumbprint: crate::identity::cert_thumbprint(cert.der()),
            not_after_unix: validity.not_after.unix_timestamp(),
        })
    }

    /// The CRL of the client-facing CA written by [`DevPki::revoke_device`].
    pub fn crl_file(&self) -> PathBuf {
        self.dir.join("ca-crl.pem")
    }

    /// Revokes a device's certificate: adds its serial to `revoked-serials.txt` and rewrites the
    /// client-facing CA's CRL ([`DevPki::crl_file`]); a gateway configured with it refuses the
    /// device at the next handshake once it has reloaded.
    pub fn revoke_device(&self, name: &str) -> Result<PathBuf, KitError> {
        validate_name(name)?;
        let cert_path = self.device_files(name).cert;
        let pem = fs::read(&cert_path).map_err(|e| KitError::io(&cert_path, e))?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).map_err(pki_error)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(pki_error)?;
        let serial = hex::encode(cert.raw_serial());
        let list_path = self.dir.join("revoked-serials.txt");
        let mut serials: Vec<String> = fs::read_to_string(&list_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if !serials.contains(&serial) {
            serials.push(serial);
        }
        write_file(
            &list_path,
            format!("{}\n", serials.join("\n")).as_bytes(),
            false,
        )?;
        self.write_crl(&serials)?;
        Ok(self.crl_file())
    }

    /// Writes the client-facing CA's CRL listing `serials` (hex).
    pub fn write_crl(&self, serials: &[String]) -> Result<(), KitError> {
        write_file(&self.crl_file(), self.crl_pem(serials)?.as_bytes(), false)
    }

    /// The serials (hex) `revoked-serials.txt` lists ([`DevPki::revoke_device`]), if any.
    pub fn revoked_serials(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("revoked-serials.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The CA's CRL (PEM) listing exactly `serials` (hex), signed now.
    pub fn crl_pem(&self, serials: &[String]) -> Result<String, KitError> {
        let now = OffsetDateTime::now_utc();
        let mut revoked = Vec::new();
        for serial in serials {
            let bytes = hex::decode(serial).map_err(pki_error)?;
            revoked.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&bytes),
                revocation_time: now,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(7),
            crl_number: rcgen::SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(1)),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = self.load_ca("ca")?;
        let crl = params.signed_by(&issuer).map_err(pki_error)?;
        crl.pem().map_err(pki_error)
    }

    fn create_ca(&self, name: &str, common_name: &str) -> Result<(), KitError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Telehealth (development)");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let validity = Validity::days(CA_DAYS);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate().map_err(pki_error)?;
        let cert = params.self_signed(&key).map_err(pki_error)?;
        write_file(
            &self.dir.join(format!("{name}.pem")),
            cert.pem().as_bytes(),
            false,
        )?;
        write_file(
            &self.dir.join(format!("{name}-key.pem")),
            key.serialize_pem().as_bytes(),
            true,
        )
    }

    /// Loads a CA to sign with (`ca` or `internal-ca`).
    pub fn load_ca(&self, name: &str) -> Result<Issuer<'static, KeyPair>, KitError> {
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}-key.pem"));
        let cert = fs::read_to_string(&cert_path).map_err(|e| KitError::io(&cert_path, e))?;
        let key = fs::read_to_string(&key_path).map_err(|e| KitError::io(&key_path, e))?;
        let key = KeyPair::from_pem(&key).map_err(pki_error)?;
        Issuer::from_ca_cert_pem(&cert, key).map_err(pki_error)
    }
}

fn leaf_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Telehealth (development)");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params
}

fn validate_name(name: &str) -> Result<(), KitError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(KitError::Pki(format!(
            "device name `{name}` must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'"
        )))
    }
}

fn dns_name(name: &str) -> Result<rcgen::string::Ia5String, KitError> {
    name.try_into().map_err(pki_error)
}

fn pki_error(error: impl std::fmt::Display) -> KitError {
    KitError::Pki(error.to_string())
}

/// Writes `contents` to `path`, creating parent folders; private keys are made readable by the
/// owner only.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), KitError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| KitError::io(parent, e))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| KitError::io(path, e))?;
    file.write_all(contents)
        .map_err(|e| KitError::io(path, e))?;
    file.sync_all().map_err(|e| KitError::io(path, e))
}
