//! The video signalling section of the configuration (`[signalling_media]`,
//! `TELEHEALTH_SIGNALLING_MEDIA__…`): keep-alives, limits, ICE servers and TURN secrets. The admission margins of rooms are not
//! here: they are `scheduling_rules.room_opens_before_minutes` / `room_closes_after_minutes`, so
//! that the window scheduling announces (`CheckIn`, `StartTeleconsultation`) and the one this
//! service enforces are the same numbers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest `max_sdp_bytes`: the contract's `max_request_bytes` of `Signal` (128 KiB) less room
/// for the rest of the message.
const MAX_SDP_BYTES: u32 = 120 * 1024;

/// Settings of the video signalling service.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SignallingSettings {
    /// Interval at which clients must send `keep_alive`, in seconds (told to them in `joined`).
    /// Default 10.
    pub keepalive_interval_seconds: u32,
    /// Silence after which a participant is dropped (peers get `peer_dropped`, an incident is
    /// recorded, the stream ends UNAVAILABLE), in seconds. Must exceed the interval. Default 30.
    pub drop_after_seconds: u32,
    /// Largest SDP offer or answer accepted, in bytes. Default 65,536; at most 120 KiB, so that
    /// the `Signal` message carrying it fits the 128 KiB the contract allows that RPC.
    pub max_sdp_bytes: u32,
    /// Sustained rate of client messages per participant stream, per second (token bucket).
    /// Default 50.
    pub messages_per_second: f64,
    /// Burst of client messages allowed above the sustained rate. Default 200.
    pub message_burst: u32,
    /// Rate-limited messages within 10 seconds after which the stream is closed with
    /// RESOURCE_EXHAUSTED. Default 200.
    pub flood_refusals_before_close: u32,
    /// STUN URLs handed to clients (`stun:host:port`). Default none.
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients with per-participant credentials
    /// (`turn:host:port?transport=udp`, `turns:host:443?transport=tcp`). Default none.
    pub turn_urls: Vec<String>,
    /// Shared secrets of coturn's `use-auth-secret` (TURN REST API), newest first: credentials
    /// are minted with the first; keep the previous ones listed on the TURN servers
    /// (`static-auth-secret` may be repeated) until their credentials expired. Required when
    /// `turn_urls` is set. Secret: never logged.
    pub turn_secrets: Vec<String>,
    /// Lifetime of minted TURN credentials, in seconds; never past the room's admission window.
    /// Default 3,600.
    pub credential_lifetime_seconds: u32,
    /// Rooms still open this long after their admission window ends are closed automatically
    /// (reason EXPIRED), in minutes. Default 240.
    pub auto_close_after_minutes: u32,
}

impl Default for SignallingSettings {
    fn default() -> Self {
        SignallingSettings {
            keepalive_interval_seconds: 10,
            drop_after_seconds: 30,
            max_sdp_bytes: 65_536,
            messages_per_second: 50.0,
            message_burst: 200,
            flood_refusals_before_close: 200,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secrets: Vec::new(),
            credential_lifetime_seconds: 3_600,
            auto_close_after_minutes: 240,
        }
    }
}

impl fmt::Debug for SignallingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignallingSettings")
            .field(
                "keepalive_interval_seconds",
                &self.keepalive_interval_seconds,
            )
            .field("drop_after_seconds", &self.drop_after_seconds)
            .field("max_sdp_bytes", &self.max_sdp_bytes)
            .field("messages_per_second", &self.messages_per_second)
            .field("message_burst", &self.message_burst)
            .field(
                "flood_refusals_before_close",
                &self.flood_refusals_before_close,
            )
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field(
                "turn_secrets",
                &format_args!("[{} redacted]", self.turn_secrets.len()),
            )
            .field(
                "credential_lifetime_seconds",
                &self.credential_lifetime_seconds,
            )
            .field("auto_close_after_minutes", &self.auto_close_after_minutes)
            .finish()
    }
}

impl SignallingSettings {
    /// Checks what the types cannot; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.keepalive_interval_seconds) {
            return Err("keepalive_interval_seconds must be between 1 and 300".into());
        }
        if self.drop_after_seconds <= self.keepalive_interval_seconds
            || self.drop_after_seconds > 3_600
        {
            return Err(
                "drop_after_seconds must be above keepalive_interval_seconds and at most 3600"
                    .into(),
            );
        }
        if !(1_024..=MAX_SDP_BYTES).contains(&self.max_sdp_bytes) {
            return Err(format!(
                "max_sdp_bytes must be between 1024 and {MAX_SDP_BYTES} (a Signal message is at most 128 KiB)"
            ));
        }
        if !(self.messages_per_second.is_finite() && self.messages_per_second > 0.0) {
            return Err("messages_per_second must be a positive number".into());
        }
        if self.message_burst == 0 || self.flood_refusals_before_close == 0 {
            return Err("message_burst and flood_refusals_before_close must be at least 1".into());
        }
        for url in &self.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(format!(
                    "stun_urls: `{url}` must start with stun: or stuns:"
                ));
            }
        }
        for url in &self.turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(format!(
                    "turn_urls: `{url}` must start with turn: or turns:"
                ));
            }
        }
        if !self.turn_urls.is_empty() && self.turn_secrets.iter().all(String::is_empty) {
            return Err("turn_secrets: at least one secret is needed with turn_urls".into());
        }
        if self.turn_secrets.iter().any(String::is_empty) {
            return Err("turn_secrets: a secret must not be empty".into());
        }
        if !(60..=86_400).contains(&self.credential_lifetime_seconds) {
            return Err("credential_lifetime_seconds must be between 60 and 86400".into());
        }
        if !(1..=10_080).contains(&self.auto_close_after_minutes) {
            return Err("auto_close_after_minutes must be between 1 and 10080".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_match_the_contract() {
        let settings = SignallingSettings::default();
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.keepalive_interval_seconds, 10);
        assert_eq!(settings.drop_after_seconds, 30);
        assert_eq!(settings.max_sdp_bytes, 65_536);
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let settings = SignallingSettings {
            turn_urls: vec!["turn:turn.example:3478".into()],
            turn_secrets: vec!["very-secret".into()],
            ..SignallingSettings::default()
        };
        assert!(!format!("{settings:?}").contains("very-secret"));
    }

    #[test]
    fn turn_urls_need_a_secret_and_drop_must_exceed_the_interval() {
        let cases = [
            (
                SignallingSettings {
                    turn_urls: vec!["turn:t:3478".into()],
                    ..SignallingSettings::default()
                },
                "turn_secrets",
            ),
            (
                SignallingSettings {
                    drop_after_seconds: 10,
                    ..SignallingSettings::default()
                },
                "drop_after_seconds",
            ),
            (
                SignallingSettings {
                    stun_urls: vec!["http://stun".into()],
                    ..SignallingSettings::default()
                },
                "stun_urls",
            ),
        ];
        for (settings, field) in cases {
            let error = settings.validate().expect_err(field);
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
