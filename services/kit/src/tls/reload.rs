//! A certificate and key read from files and re-read when the files change, so that renewed
//! certificates (cert-manager rewrites the mounted Secret) are used by new handshakes without a
//! restart. Files are checked at most every [`CHECK_INTERVAL`]; a renewal that fails to load is
//! logged and the previous certificate kept.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    SignatureScheme,
    client::ResolvesClientCert,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use crate::error::KitError;

/// How often the files are looked at (a `stat` each).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// This part's certificate, reloaded on change; usable on both sides of a handshake.
pub struct ReloadingCertifiedKey {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
    last_check: Mutex<Instant>,
}

type Stamp = [Option<(SystemTime, u64)>; 2];

impl ReloadingCertifiedKey {
    /// Loads `cert` (leaf first) and `key`; fails if they do not load or do not match.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadingCertifiedKey, KitError> {
        let stamp = stamp(cert, key);
        let loaded = load(cert, key)?;
        Ok(ReloadingCertifiedKey {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new((loaded, stamp)),
            last_check: Mutex::new(Instant::now()),
        })
    }

    /// The certificate to present now, after re-reading the files if they changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let due = {
            let mut last = self.last_check.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= CHECK_INTERVAL;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            let now = stamp(&self.cert, &self.key);
            let changed = self.current.read().map(|c| c.1 != now).unwrap_or(true);
            if changed {
                match load(&self.cert, &self.key) {
                    Ok(loaded) => {
                        if let Ok(mut current) = self.current.write() {
                            *current = (loaded, now);
                        }
                        tracing::info!(cert = %self.cert.display(), "certificate reloaded");
                    }
                    Err(error) => tracing::error!(
                        %error,
                        "certificate files changed but do not load; keeping the previous certificate"
                    ),
                }
            }
        }
        match self.current.read() {
            Ok(current) => current.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let of = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [of(cert), of(key)]
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, KitError> {
    let certs = super::load_certs(cert)?;
    let key = super::load_key(key)?;
    let certified = CertifiedKey::from_der(certs, key, &super::provider())
        .map_err(|e| KitError::Tls(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

impl fmt::Debug for ReloadingCertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertifiedKey")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertifiedKey {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCertifiedKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::DevPki;

    #[test]
    fn a_rewritten_certificate_is_picked_up_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = DevPki::new(dir.path().join("pki"));
        pki.ensure().expect("pki");
        let files = pki.internal_files(crate::Part::Scheduling);
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::copy(&files.cert, &cert).expect("copy");
        std::fs::copy(&files.key, &key).expect("copy");
        let reloading = ReloadingCertifiedKey::load(&cert, &key).expect("load");
        let first = reloading.current().cert[0].clone();

        // Renewed: another certificate (the signalling one) lands in the same files.
        let renewed = pki.internal_files(crate::Part::Signalling);
        std::fs::copy(&renewed.cert, &cert).expect("copy");
        std::fs::copy(&renewed.key, &key).expect("copy");
        *reloading.last_check.lock().expect("lock") -= CHECK_INTERVAL;
        let second = reloading.current().cert[0].clone();
        assert_ne!(first, second, "the renewed certificate is presented");

        // A half-written renewal is ignored.
        std::fs::write(&cert, b"not a certificate").expect("write");
        *reloading.last_check.lock().expect("lock") -= CHECK_INTERVAL;
        assert_eq!(
            reloading.current().cert[0],
            second,
            "previous certificate kept"
        );
    }
}
