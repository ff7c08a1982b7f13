//! The open client connections: how many each address and each certificate holds, and a handle
//! on each to close it.
//!
//! Caps per address and per certificate keep one client (or one stolen certificate) from
//! holding the gateway's memory and file descriptors: a connection is counted against its
//! address from `accept` (TLS handshakes included) and against its certificate once the
//! handshake names it. Each connection with a certificate is registered with the
//! certificate's issuer and serial and a cancellation token, so that a CRL reload can close
//! the connections of the certificates it revokes: TLS checks revocation at the handshake only,
//! and an HTTP/2 connection can otherwise live for days.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use tokio_util::sync::CancellationToken;

use crate::{
    lockout::address_key,
    tls::{CertificateId, Revoked},
};

/// The open client connections.
pub struct Connections {
    per_address: u32,
    per_certificate: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    by_address: HashMap<IpAddr, u32>,
    by_certificate: HashMap<String, u32>,
    live: HashMap<u64, Live>,
    next_id: u64,
}

struct Live {
    certificate: Option<CertificateId>,
    close: CancellationToken,
}

/// A connection counted against its address; released when dropped.
pub struct AddressSlot {
    connections: Arc<Connections>,
    key: IpAddr,
}

/// A connection counted against its certificate and registered; released when dropped.
pub struct CertificateSlot {
    connections: Arc<Connections>,
    thumbprint: String,
    id: u64,
}

impl Connections {
    /// At most `per_address` connections per address and `per_certificate` per certificate.
    pub fn new(per_address: u32, per_certificate: u32) -> Arc<Self> {
        Arc::new(Connections {
            per_address,
            per_certificate,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The counts stay usable after a panic elsewhere; they are only integers.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new connection from `ip`, or `None` if its address already holds its cap.
    pub fn admit_address(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut state = self.state();
        let count = state.by_address.entry(key).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            connections: self.clone(),
            key,
        })
    }

    /// Counts and registers a connection presenting the certificate `thumbprint` (whose issuer
    /// and serial are `certificate`), closed through `close`; `None` if that certificate
    /// already holds its cap.
    pub fn admit_certificate(
        self: &Arc<Self>,
        thumbprint: &str,
        certificate: Option<CertificateId>,
        close: CancellationToken,
    ) -> Option<CertificateSlot> {
        let mut state = self.state();
        let count = state
            .by_certificate
            .entry(thumbprint.to_owned())
            .or_insert(0);
        if *count >= self.per_certificate {
            return None;
        }
        *count += 1;
        state.next_id += 1;
        let id = state.next_id;
        state.live.insert(id, Live { certificate, close });
        Some(CertificateSlot {
            connections: self.clone(),
            thumbprint: thumbprint.to_owned(),
            id,
        })
    }

    /// Closes every open connection whose certificate `revoked` holds; returns how many.
    pub fn close_revoked(&self, revoked: &Revoked) -> usize {
        if revoked.is_empty() {
            return 0;
        }
        let state = self.state();
        let mut closed = 0;
        for live in state.live.values() {
            if live
                .certificate
                .as_ref()
                .is_some_and(|id| revoked.contains(id))
                && !live.close.is_cancelled()
            {
                live.close.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Connections open with a certificate.
    pub fn open(&self) -> usize {
        self.state().live.len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut state = self.connections.state();
        if let Some(count) = state.by_address.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.by_address.remove(&self.key);
            }
        }
    }
}

impl Drop for CertificateSlot {
    fn drop(&mut self) {
        let mut state = self.connections.state();
        state.live.remove(&self.id);
        if let Some(count) = state.by_certificate.get_mut(&self.thumbprint) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.by_certificate.remove(&self.thumbprint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(serial: u8) -> Option<CertificateId> {
        Some(CertificateId {
            issuer: b"device-ca".to_vec(),
            serial: vec![serial],
        })
    }

    #[test]
    fn caps_per_address_and_per_certificate_are_released_with_their_connections() {
        let connections = Connections::new(2, 1);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let first = connections.admit_address(ip).expect("first");
        let _second = connections.admit_address(ip).expect("second");
        assert!(connections.admit_address(ip).is_none(), "third refused");
        assert!(
            connections
                .admit_address("192.0.2.2".parse().expect("ip"))
                .is_some(),
            "another address is counted apart"
        );
        drop(first);
        assert!(connections.admit_address(ip).is_some(), "a slot came back");

        let held = connections
            .admit_certificate("thumb-a", id(1), CancellationToken::new())
            .expect("first for the certificate");
        assert!(
            connections
                .admit_certificate("thumb-a", id(1), CancellationToken::new())
                .is_none(),
            "over the certificate's cap"
        );
        drop(held);
        assert_eq!(connections.open(), 0);
        assert!(
            connections
                .admit_certificate("thumb-a", id(1), CancellationToken::new())
                .is_some()
        );
    }

    #[test]
    fn only_the_connections_of_revoked_certificates_are_closed() {
        let connections = Connections::new(10, 10);
        let (revoked_close, kept_close) = (CancellationToken::new(), CancellationToken::new());
        let _revoked = connections
            .admit_certificate("thumb-a", id(1), revoked_close.clone())
            .expect("a");
        let _kept = connections
            .admit_certificate("thumb-b", id(2), kept_close.clone())
            .expect("b");
        let crl = Revoked::for_tests(id(1).into_iter().collect());
        assert_eq!(connections.close_revoked(&crl), 1);
        assert!(revoked_close.is_cancelled());
        assert!(!kept_close.is_cancelled());
        assert_eq!(
            connections.close_revoked(&crl),
            0,
            "a connection is closed once"
        );
    }
}
