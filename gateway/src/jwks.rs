//! The identity provider's public keys (JWKS), by `kid`.
//!
//! Keys come from a file or a URL, are parsed once into verification keys, and are re-read when
//! a token names an unknown `kid` (at most once per `min_refresh_interval`, so a flood of bogus
//! tokens cannot hammer the provider) and when the file changes. Symmetric keys are never
//! loaded: only EC P-256 (ES256), RSA (RS256) and Ed25519 (EdDSA).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};

use crate::{error::GatewayError, fetch};

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// Files whose keys are trusted together (the automation signer's and the auth service's);
    /// one that does not exist yet gives no keys, but at least one must exist.
    Files(Vec<PathBuf>),
    Url {
        url: String,
        ca_file: Option<PathBuf>,
    },
}

/// One verification key.
#[derive(Clone)]
pub struct VerificationKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The current keys and how to refresh them.
pub struct KeyStore {
    source: JwksSource,
    keys: RwLock<Arc<HashMap<String, VerificationKey>>>,
    /// Bumped on every change of the key set; the token cache empties when it moves.
    generation: AtomicU64,
    last_refresh: Mutex<Option<Instant>>,
    file_stamps: Mutex<Vec<Option<SystemTime>>>,
    min_refresh_interval: Duration,
}

impl KeyStore {
    /// Loads the keys from `source`.
    pub async fn load(
        source: JwksSource,
        min_refresh_interval: Duration,
    ) -> Result<KeyStore, GatewayError> {
        let store = KeyStore {
            source,
            keys: RwLock::new(Arc::new(HashMap::new())),
            generation: AtomicU64::new(0),
            last_refresh: Mutex::new(None),
            file_stamps: Mutex::new(Vec::new()),
            min_refresh_interval,
        };
        store.refresh().await?;
        Ok(store)
    }

    /// The key named `kid`, refreshing the set (rate-limited) if it is unknown.
    pub async fn get(&self, kid: &str) -> Option<VerificationKey> {
        if let Some(key) = self.snapshot().get(kid) {
            return Some(key.clone());
        }
        if self.refresh_allowed() {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "JWKS refresh failed; keeping the previous keys");
            }
            return self.snapshot().get(kid).cloned();
        }
        None
    }

    /// Number of the current key set; changes whenever keys are added, removed or replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads a file source when a file's modification time changed (or it appeared).
    pub async fn reload_if_changed(&self) {
        let JwksSource::Files(paths) = &self.source else {
            return;
        };
        let stamps = file_stamps(paths);
        let changed = self
            .file_stamps
            .lock()
            .map(|old| *old != stamps)
            .unwrap_or(true);
        if changed && let Err(error) = self.refresh().await {
            tracing::warn!(%error, "JWKS reload failed; keeping the previous keys");
        }
    }

    fn snapshot(&self) -> Arc<HashMap<String, VerificationKey>> {
        self.keys
            .read()
            .map(|keys| keys.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn refresh_allowed(&self) -> bool {
        let Ok(mut last) = self.last_refresh.lock() else {
            return false;
        };
        match *last {
            Some(at) if at.elapsed() < self.min_refresh_interval => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Fetches and parses the key set, replacing the current one if it differs.
    pub async fn refresh(&self) -> Result<(), GatewayError> {
        let (sets, stamps) = match &self.source {
            JwksSource::Files(paths) => {
                let stamps = file_stamps(paths);
                let mut sets = Vec::new();
                for path in paths {
                    match tokio::fs::read(path).await {
                        Ok(bytes) => sets.push(parse_set(&bytes)?),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(GatewayError::Config(format!(
                                "jwks file {}: {e}",
                                path.display()
                            )));
                        }
                    }
                }
                if sets.is_empty() {
                    return Err(GatewayError::Config(format!(
                        "no jwks file exists (looked for {})",
                        paths
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                (sets, stamps)
            }
            JwksSource::Url { url, ca_file } => (
                vec![parse_set(&fetch::get(url, ca_file.as_deref()).await?)?],
                Vec::new(),
            ),
        };
        let keys = usable_keys(&sets);
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        let from_files = !stamps.is_empty();
        if let Ok(mut old) = self.file_stamps.lock() {
            *old = stamps;
        }
        let changed = {
            let current = self.snapshot();
            current.len() != keys.len() || keys.keys().any(|kid| !current.contains_key(kid))
        };
        if changed || from_files {
            if let Ok(mut current) = self.keys.write() {
                *current = Arc::new(keys);
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(keys = keys_len(&sets), "JWKS loaded");
        }
        Ok(())
    }
}

/// A key set as published (a file, or the body fetched from `jwks_url`).
pub fn parse_set(bytes: &[u8]) -> Result<JwkSet, GatewayError> {
    serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::Config(format!("jwks is not a JSON Web Key Set: {e}")))
}

/// The keys of `sets` that can verify our tokens, by `kid`; the others are skipped with a
/// warning.
pub fn usable_keys(sets: &[JwkSet]) -> HashMap<String, VerificationKey> {
    let mut keys = HashMap::new();
    for jwk in sets.iter().flat_map(|set| &set.keys) {
        match verification_key(jwk) {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(reason) => tracing::warn!(%reason, "JWKS key skipped"),
        }
    }
    keys
}

fn keys_len(sets: &[JwkSet]) -> usize {
    sets.iter().map(|set| set.keys.len()).sum()
}

fn file_stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// The `kid` and verification key of one JWK, or why it is not usable.
fn verification_key(jwk: &Jwk) -> Result<(String, VerificationKey), String> {
    let kid = jwk.common.key_id.clone().ok_or("key without kid")?;
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err(format!("{kid}: symmetric keys are never accepted"));
        }
        _ => return Err(format!("{kid}: unsupported key type or algorithm")),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{kid}: {e}"))?;
    Ok((kid, VerificationKey { algorithm, key }))
}
