//! `grpc-timeout`: parsed, capped to the configured maximum, and always set on forwarded calls
//! so that no call through the gateway runs unbounded.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::error::GatewayError;

/// The header gRPC uses for deadlines.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Sets `grpc-timeout` to the client's deadline capped at `max` (or to `max` when absent);
/// returns the effective deadline.
pub fn cap(headers: &mut HeaderMap, max: Duration) -> Result<Duration, GatewayError> {
    let requested = match headers.get(GRPC_TIMEOUT) {
        Some(value) => parse(value.to_str().map_err(|_| GatewayError::BadTimeout)?)?,
        None => max,
    };
    let effective = requested.min(max);
    headers.insert(GRPC_TIMEOUT, encode(effective));
    Ok(effective)
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse(value: &str) -> Result<Duration, GatewayError> {
    if value.len() < 2 || value.len() > 9 {
        return Err(GatewayError::BadTimeout);
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::BadTimeout);
    }
    let amount: u64 = digits.parse().map_err(|_| GatewayError::BadTimeout)?;
    Ok(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(GatewayError::BadTimeout),
    })
}

fn encode(duration: Duration) -> HeaderValue {
    let millis = duration.as_millis();
    let text = if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", duration.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("1S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_are_capped() {
        assert_eq!(parse("100m").ok(), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S").ok(), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H").ok(), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "10x", "123456789m", "-1S", "1.5S"] {
            assert!(parse(bad).is_err(), "`{bad}` is refused");
        }
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("5M"));
        assert_eq!(
            cap(&mut headers, Duration::from_secs(60)).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(headers[GRPC_TIMEOUT], "60000m");
        let mut none = HeaderMap::new();
        cap(&mut none, Duration::from_secs(30)).expect("absent is fine");
        assert_eq!(
            none[GRPC_TIMEOUT], "30000m",
            "calls without a deadline get the maximum"
        );
    }
}
