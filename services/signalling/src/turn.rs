//! ICE servers and TURN credentials in the scheme of coturn's `use-auth-secret` (the "TURN REST
//! API" draft, draft-uberti-behave-turn-rest-00): username `<expiry unix seconds>:<user>`,
//! password base64(HMAC-SHA1(shared secret, username)). coturn recomputes the password from
//! the username with each of its configured secrets and refuses an expired username, so the
//! suite never talks to the TURN server.
//!
//! The user part is the participant id (stable in a room, not the person's subject: TURN
//! servers log usernames and must not learn who is calling).

use base64::Engine;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use sha1::Sha1;

use telehealth_kit::config::SignallingSettings;

use crate::domain::{IceServer, IceServerSet};

/// A TURN username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
}

/// The credential for `user` expiring at `expiry`, minted with `secret`.
pub fn credential(secret: &str, user: &str, expiry: Timestamp) -> TurnCredential {
    let username = format!("{}:{user}", expiry.as_second());
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential { username, password }
}

/// When credentials minted at `now` expire: after the configured lifetime, never past
/// `window_end`, rounded down to a whole second (the username carries seconds).
pub fn expiry(settings: &SignallingSettings, now: Timestamp, window_end: Timestamp) -> Timestamp {
    let lifetime = SignedDuration::from_secs(i64::from(settings.credential_lifetime_seconds));
    let wanted = now.checked_add(lifetime).unwrap_or(window_end);
    let at = wanted.min(window_end);
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

/// The ICE servers for `participant_id` in a room whose admission window ends at `window_end`:
/// STUN as configured, TURN with a credential minted with the newest secret.
pub fn ice_servers(
    settings: &SignallingSettings,
    participant_id: &str,
    now: Timestamp,
    window_end: Timestamp,
) -> IceServerSet {
    let expires_at = expiry(settings, now, window_end);
    let mut servers = Vec::new();
    if !settings.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: settings.stun_urls.clone(),
            username: String::new(),
            credential: String::new(),
        });
    }
    if let (false, Some(secret)) = (settings.turn_urls.is_empty(), settings.turn_secrets.first()) {
        let minted = credential(secret, participant_id, expires_at);
        servers.push(IceServer {
            urls: settings.turn_urls.clone(),
            username: minted.username,
            credential: minted.password,
        });
    }
    IceServerSet {
        servers,
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    #[test]
    fn the_password_is_base64_of_hmac_sha1_of_the_username() {
        // Independent vector: `printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac
        // 'north' -binary | base64`.
        let minted = credential("north", "alice", at(1_700_000_000));
        assert_eq!(minted.username, "1700000000:alice");
        assert_eq!(minted.password, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn the_rfc_2202_hmac_sha1_vector_holds() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha1>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn the_expiry_never_goes_past_the_room_window() {
        let settings = SignallingSettings::default();
        let now = at(1_000_000);
        let cases = [
            (
                at(1_000_000 + 7_200),
                at(1_000_000 + 3_600),
                "lifetime first",
            ),
            (at(1_000_000 + 600), at(1_000_000 + 600), "window end first"),
            (at(1_000_000 + 3_600), at(1_000_000 + 3_600), "both equal"),
        ];
        for (window_end, expected, case) in cases {
            let set = ice_servers(&settings, "p", now, window_end);
            assert_eq!(set.expires_at, expected, "{case}");
            assert!(set.expires_at <= window_end, "{case}");
        }
    }

    #[test]
    fn credentials_are_minted_with_the_newest_secret_for_the_participant_id() {
        let settings = SignallingSettings {
            stun_urls: vec!["stun:stun.example:3478".into()],
            turn_urls: vec!["turn:turn.example:3478?transport=udp".into()],
            turn_secrets: vec!["new-secret".into(), "old-secret".into()],
            ..SignallingSettings::default()
        };
        let now = at(2_000_000);
        let set = ice_servers(&settings, "6f1c-participant", now, at(2_000_000 + 86_400));
        assert_eq!(set.servers.len(), 2, "STUN then TURN");
        assert!(set.servers[0].username.is_empty(), "STUN has no credential");
        let turn = &set.servers[1];
        assert_eq!(turn.username, "2003600:6f1c-participant");
        assert_eq!(
            turn.credential,
            credential("new-secret", "6f1c-participant", at(2_003_600)).password
        );
        assert_ne!(
            turn.credential,
            credential("old-secret", "6f1c-participant", at(2_003_600)).password
        );
    }

    #[test]
    fn without_turn_urls_no_credential_is_minted() {
        let set = ice_servers(&SignallingSettings::default(), "p", at(10), at(100_000));
        assert!(set.servers.is_empty());
    }
}
