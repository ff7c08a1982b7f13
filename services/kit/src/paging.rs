//! Page tokens: one opaque, tamper-evident cursor for every paginated list of the suite.
//!
//! A token carries where the next page starts (the keyset of the last item sent), bound to the
//! list it was made for: its *scope*, which the service builds from the RPC, the caller and the
//! filters. It is signed with HMAC-SHA-256 under a key kept in the service's database (kit
//! migration 0005, created on first use), so every replica of a service reads the tokens of the
//! others, no secret needs distributing, and a token that was altered, forged, or made for
//! another list, caller or filter is refused as `INVALID_ARGUMENT` on `page_token`. The position
//! itself is not secret (only keys and ids the caller has already seen), just not to be trusted.
//!
//! Wire form: base64url (no padding) of the position as a JSON array of strings, followed by the
//! first 16 bytes of the MAC.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::{str::FromStr, sync::Arc};

use crate::{KitError, db::Database, identity::Caller};

/// Longest token accepted, in characters; longer is refused before decoding.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// Bytes of the MAC kept in a token.
const MAC_BYTES: usize = 16;
/// Separates the purpose from the scope and the scope from the position in what is signed.
const DOMAIN: &[u8] = b"telehealth page token v1\0";
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What the caller is told for any token this deployment did not make for this list.
const REFUSAL: &str = "is not a token from a previous response to the same request";

/// The page size a request asks for: 0 means `default`, 1 to `max` is taken as asked, anything
/// else is refused on `page_size`.
pub fn page_size(value: i32, default: i64, max: i64) -> Result<i64, KitError> {
    match i64::from(value) {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(KitError::invalid(
            "page_size",
            format!("must be between 1 and {max}"),
        )),
    }
}

/// The list a page token belongs to: the RPC, who asks, and what else the request asks (pass
/// the request with its `page_token` and `page_size` cleared), so that a token only continues
/// the listing it came from.
pub fn scope<M: prost::Message>(rpc: &str, caller: &Caller, filters: &M) -> String {
    let org = match caller {
        Caller::Person(identity) => identity.org.as_str(),
        Caller::Service(_) => "",
    };
    let digest = hex::encode(&Sha256::digest(filters.encode_to_vec())[..16]);
    // A JSON array, so that no subject or org (opaque strings) can pass for another split.
    serde_json::to_string(&[rpc, &caller.subject(), org, &digest])
        .expect("serialising four strings cannot fail")
}

/// [`scope`] of a list request: `page_scope!("ListRooms", &caller, &request)` for any request
/// with `page_token` and `page_size` fields (they are cleared before hashing).
#[macro_export]
macro_rules! page_scope {
    ($rpc:expr, $caller:expr, $request:expr) => {{
        let mut filters = ::std::clone::Clone::clone($request);
        filters.page_token.clear();
        filters.page_size = 0;
        $crate::paging::scope($rpc, $caller, &filters)
    }};
}

/// Makes and reads the page tokens of one service. Cheap to clone.
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <redacted> }")
    }
}

impl PageTokens {
    /// The service's signing key, created in its database by whichever replica asks first.
    pub async fn load(db: &Database) -> Result<PageTokens, KitError> {
        // Two v4 UUIDs: 244 bits from the operating system's generator.
        let candidate = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .map(|u| hex::encode(u.as_bytes()))
            .collect::<String>();
        sqlx::query(
            "INSERT INTO page_token_key (id, key_hex) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&candidate)
        .execute(db.pool())
        .await?;
        let row = sqlx::query("SELECT key_hex FROM page_token_key WHERE id = 1")
            .fetch_one(db.pool())
            .await?;
        let stored: String = row.try_get("key_hex")?;
        let key = hex::decode(&stored)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| KitError::Config("page_token_key holds no 32-byte hex key".into()))?;
        Ok(PageTokens::with_key(key))
    }

    /// Tokens under a given key (tests, tools).
    pub fn with_key(key: [u8; 32]) -> PageTokens {
        PageTokens { key: Arc::new(key) }
    }

    /// The token of the page that starts after `position` in the list `scope`.
    pub fn token<P: Position>(&self, scope: &str, position: &P) -> String {
        let payload =
            serde_json::to_vec(&position.parts()).expect("serialising strings cannot fail");
        let mut bytes = payload.clone();
        bytes.extend_from_slice(&self.mac(scope, &payload).finalize().into_bytes()[..MAC_BYTES]);
        BASE64.encode(bytes)
    }

    /// The position a token of the list `scope` names: `None` for an empty token (the first
    /// page), [`KitError::InvalidArgument`] on `page_token` for anything this service did not
    /// make for this list.
    pub fn position<P: Position>(&self, scope: &str, token: &str) -> Result<Option<P>, KitError> {
        if token.is_empty() {
            return Ok(None);
        }
        let refused = || KitError::invalid("page_token", REFUSAL);
        if token.len() > MAX_TOKEN_CHARS {
            return Err(refused());
        }
        let bytes = BASE64.decode(token).map_err(|_| refused())?;
        if bytes.len() <= MAC_BYTES {
            return Err(refused());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        self.mac(scope, payload)
            .verify_truncated_left(tag)
            .map_err(|_| refused())?;
        let parts: Vec<String> = serde_json::from_slice(payload).map_err(|_| refused())?;
        P::from_parts(&parts).map(Some).ok_or_else(refused)
    }

    /// One page of `found`, read with one row more than `size` (that row only says whether
    /// another page follows): its first `size` rows and the token of the page after them, or ""
    /// when nothing follows. `position` is the keyset of a row.
    pub fn page<T, P: Position>(
        &self,
        scope: &str,
        mut found: Vec<T>,
        size: i64,
        position: impl Fn(&T) -> P,
    ) -> (Vec<T>, String) {
        let size = usize::try_from(size).unwrap_or(0);
        if found.len() <= size {
            return (found, String::new());
        }
        found.truncate(size);
        let next = found
            .last()
            .map(|last| self.token(scope, &position(last)))
            .unwrap_or_default();
        (found, next)
    }

    /// A token around any payload, as if this service had made it: lets the fuzz tests reach the
    /// payload's parser behind the MAC.
    #[cfg(any(test, feature = "testing"))]
    pub fn token_for_payload(&self, scope: &str, payload: &[u8]) -> String {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&self.mac(scope, payload).finalize().into_bytes()[..MAC_BYTES]);
        BASE64.encode(bytes)
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(DOMAIN);
        mac.update(scope.as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }
}

/// A keyset position: what a list sorts by, last item first seen on the next page.
pub trait Position: Sized {
    /// The position as strings.
    fn parts(&self) -> Vec<String>;
    /// The position back from [`parts`](Self::parts); `None` if they do not fit.
    fn from_parts(parts: &[String]) -> Option<Self>;
}

/// One column of a position.
pub trait Part: Sized {
    /// The column as text.
    fn text(&self) -> String;
    /// The column from [`text`](Self::text).
    fn read(text: &str) -> Option<Self>;
}

impl Part for String {
    fn text(&self) -> String {
        self.clone()
    }
    fn read(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

macro_rules! numeric_part {
    ($($t:ty),*) => {$(
        impl Part for $t {
            fn text(&self) -> String {
                self.to_string()
            }
            fn read(text: &str) -> Option<Self> {
                <$t>::from_str(text).ok()
            }
        }
    )*};
}
numeric_part!(i64, u64);

macro_rules! single_position {
    ($($t:ty),*) => {$(
        impl Position for $t {
            fn parts(&self) -> Vec<String> {
                vec![self.text()]
            }
            fn from_parts(parts: &[String]) -> Option<Self> {
                match parts {
                    [one] => <$t as Part>::read(one),
                    _ => None,
                }
            }
        }
    )*};
}
single_position!(String, i64, u64);

macro_rules! tuple_position {
    ($($name:ident),+) => {
        impl<$($name: Part),+> Position for ($($name,)+) {
            #[allow(non_snake_case)]
            fn parts(&self) -> Vec<String> {
                let ($($name,)+) = self;
                vec![$($name.text()),+]
            }
            fn from_parts(parts: &[String]) -> Option<Self> {
                let mut parts = parts.iter();
                let position = ($($name::read(parts.next()?)?,)+);
                parts.next().is_none().then_some(position)
            }
        }
    };
}
tuple_position!(A, B);
tuple_position!(A, B, C);
tuple_position!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::with_key([7; 32])
    }

    #[test]
    fn a_token_gives_back_its_position_in_its_own_list() {
        let tokens = tokens();
        let position = (1_700_000_000_000_000_i64, "a|b\"c".to_owned());
        let token = tokens.token("ListRooms|org-1|doctor-1", &position);
        assert_eq!(
            tokens
                .position::<(i64, String)>("ListRooms|org-1|doctor-1", &token)
                .expect("valid"),
            Some(position)
        );
        assert_eq!(
            tokens
                .position::<String>("ListRooms|org-1", "")
                .expect("first page"),
            None
        );
    }

    #[test]
    fn altered_foreign_or_garbage_tokens_are_refused_as_the_page_token_field() {
        let tokens = tokens();
        let token = tokens.token("ListInbox|org-1|status=OPEN", &"42".to_owned());
        let refused = |scope: &str, token: &str| {
            let error = tokens
                .position::<String>(scope, token)
                .expect_err("refused");
            assert_eq!(
                error.to_string(),
                "page_token: is not a token from a previous response to the same request"
            );
        };
        // Another list, another caller's list, other filters.
        refused("ListInbox|org-2|status=OPEN", &token);
        refused("ListInbox|org-1|status=ANSWERED", &token);
        // Another deployment's key.
        let other =
            PageTokens::with_key([8; 32]).token("ListInbox|org-1|status=OPEN", &"42".to_owned());
        refused("ListInbox|org-1|status=OPEN", &other);
        // A position altered in place keeps its MAC, which no longer matches.
        let mut bytes = BASE64.decode(&token).expect("base64");
        bytes[2] ^= 1;
        refused("ListInbox|org-1|status=OPEN", &BASE64.encode(bytes));
        // Garbage, too short, too long.
        refused("ListInbox|org-1|status=OPEN", "not a token!");
        refused("ListInbox|org-1|status=OPEN", "AAAA");
        refused(
            "ListInbox|org-1|status=OPEN",
            &"A".repeat(MAX_TOKEN_CHARS + 1),
        );
    }

    #[test]
    fn a_page_keeps_size_rows_and_a_token_only_when_more_follow() {
        let tokens = tokens();
        let (rows, next) = tokens.page("s", vec![1_i64, 2, 3], 2, |n| *n);
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(tokens.position::<i64>("s", &next).expect("valid"), Some(2));
        let (rows, next) = tokens.page("s", vec![1_i64, 2], 2, |n| *n);
        assert_eq!((rows, next), (vec![1, 2], String::new()));
    }

    #[test]
    fn scopes_of_different_callers_never_coincide() {
        let person = |subject: &str, org: &str| {
            Caller::Person(crate::identity::Identity {
                subject: subject.to_owned(),
                roles: Vec::new(),
                org: org.to_owned(),
                specialty: None,
                cert_thumbprint: String::new(),
            })
        };
        let filters = prost_types::Timestamp::default();
        assert_ne!(
            scope("ListRooms", &person("a|b", "c"), &filters),
            scope("ListRooms", &person("a", "b|c"), &filters)
        );
        assert_ne!(
            scope("ListRooms", &person("a", "c"), &filters),
            scope(
                "ListRooms",
                &person("a", "c"),
                &prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0
                }
            )
        );
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0, 50, 200).expect("default"), 50);
        assert_eq!(page_size(200, 50, 200).expect("max"), 200);
        for refused in [-1, 201] {
            assert_eq!(
                page_size(refused, 50, 200)
                    .expect_err("refused")
                    .to_string(),
                "page_size: must be between 1 and 200"
            );
        }
    }

    #[test]
    fn a_position_of_another_shape_is_refused() {
        let tokens = tokens();
        let token = tokens.token("s", &(1_i64, "x".to_owned()));
        assert!(tokens.position::<String>("s", &token).is_err());
        assert!(
            tokens
                .position::<(i64, String, String)>("s", &token)
                .is_err()
        );
        assert!(tokens.position::<(String, i64)>("s", &token).is_err());
        assert!(tokens.position::<(String, String)>("s", &token).is_ok());
    }
}
