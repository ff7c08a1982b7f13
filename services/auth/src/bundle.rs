//! PKCS#12 bundles for devices that cannot make a key and a CSR themselves (a browser, a phone):
//! the key is made here, sealed with its certificate chain under a one-time password, handed
//! over once and kept nowhere.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use telehealth_kit::KitError;

/// A sealed key and certificate chain, and the password that opens it.
pub struct Bundle {
    pub pkcs12: Vec<u8>,
    pub password: String,
}

/// Characters of the one-time password: no 0/O or 1/I to misread when typing it on a phone.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Seals `key_pem` with `certificate_pem` then the CA chain `ca_pem` (PBES2 with AES-256-CBC,
/// HMAC-SHA-256; the password carries 80 random bits, so the default 10,000 PBKDF2 rounds are
/// no weakness) under a new password, shown as four groups of four (`7KQ2-…`).
pub fn seal(
    key_pem: &str,
    certificate_pem: &str,
    ca_pem: &str,
    name: &str,
) -> Result<Bundle, KitError> {
    let error = |e: &dyn std::fmt::Display| KitError::Pki(format!("the PKCS#12 bundle: {e}"));
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| error(&e))?;
    let key = PrivateKey::from_der(key.secret_der()).map_err(|e| error(&e))?;
    let mut chain = Vec::new();
    for pem in [certificate_pem, ca_pem] {
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = der.map_err(|e| error(&e))?;
            chain.push(Certificate::from_der(&der).map_err(|e| error(&e))?);
        }
    }
    let leaf = chain
        .first()
        .ok_or_else(|| error(&"no certificate to seal"))?;
    let local_id = ring::digest::digest(&ring::digest::SHA256, leaf.as_der());
    let mut store = KeyStore::new();
    store.add_entry(
        name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_id.as_ref(), key, chain)),
    );
    let password = one_time_password()?;
    let pkcs12 = store.writer(&password).write().map_err(|e| error(&e))?;
    Ok(Bundle { pkcs12, password })
}

/// Sixteen characters from [`ALPHABET`] (5 random bits each), in groups of four.
fn one_time_password() -> Result<String, KitError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KitError::Pki("no randomness for the bundle's password".into()))?;
    let mut password = String::with_capacity(19);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            password.push('-');
        }
        password.push(char::from(ALPHABET[usize::from(byte % 32)]));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::Pkcs12ImportPolicy;

    #[test]
    fn a_bundle_opens_with_its_password_only_and_holds_the_key_and_chain() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = telehealth_kit::pki::DevPki::new(dir.path());
        pki.ensure().expect("ca");
        let (key_pem, csr_pem) = telehealth_kit::pki::new_device_request().expect("csr");
        let certificate = pki
            .sign_device_request(
                &csr_pem,
                "device-1",
                "cds-bourganeuf",
                telehealth_kit::pki::Validity::days(30),
            )
            .expect("signed");
        let bundle =
            seal(&key_pem, &certificate.pem, &certificate.ca_pem, "Téléphone").expect("sealed");
        assert_eq!(bundle.password.len(), 19, "{}", bundle.password);
        assert!(
            bundle
                .password
                .split('-')
                .all(|group| group.len() == 4 && group.bytes().all(|b| ALPHABET.contains(&b)))
        );
        assert!(
            KeyStore::from_pkcs12(&bundle.pkcs12, "wrong", Pkcs12ImportPolicy::Strict).is_err(),
            "a wrong password opens nothing"
        );
        let store =
            KeyStore::from_pkcs12(&bundle.pkcs12, &bundle.password, Pkcs12ImportPolicy::Strict)
                .expect("opens");
        let (_, chain) = store.private_key_chain().expect("the key and its chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        assert_eq!(chain.key().as_der(), key.secret_der());
        assert_eq!(
            chain.certs().len(),
            2,
            "the device certificate, then the CA"
        );
        let device = CertificateDer::from_pem_slice(certificate.pem.as_bytes()).expect("der");
        assert_eq!(chain.certs()[0].as_der(), device.as_ref());
        let other = seal(&key_pem, &certificate.pem, &certificate.ca_pem, "x").expect("sealed");
        assert_ne!(other.password, bundle.password, "a new password every time");
    }
}
