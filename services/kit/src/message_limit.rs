//! The contract's largest request message per RPC, enforced before anything is decoded.
//!
//! Each RPC declares `max_request_bytes` in its access rule (`access.proto`). A protobuf message
//! decodes into several times its encoded size (an empty element of a repeated message field
//! is 2 bytes on the wire and a whole struct in memory), so the bound must be checked on the
//! wire, per method, before the message is buffered: tonic's `max_decoding_message_size` is
//! one figure per service, as large as its uploads, and counts the message only once buffered.
//!
//! [`PrefixReader`] follows the 5-byte gRPC message prefixes (flag, big-endian length) of a
//! body as it streams and reports the first length over the limit; the gateway uses it on
//! client bodies, and [`MessageLimitLayer`] on every request a service receives (from the
//! gateway or another service), answering `RESOURCE_EXHAUSTED` before tonic sees the message.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use telehealth_proto::access::AccessPolicy;
use tonic::{Status, body::Body};

use crate::error::KitError;

/// Limit of methods outside the contract (health checks, reflection): their requests are a
/// name at most.
pub const UNLISTED_METHOD_BYTES: u32 = 16 * 1024;

/// Follows the gRPC message prefixes of a request body and checks each length.
#[derive(Debug, Clone)]
pub struct PrefixReader {
    limit: u32,
    /// Bytes of the current message still to pass.
    remaining: u64,
    prefix: [u8; 5],
    filled: usize,
}

impl PrefixReader {
    /// A reader refusing messages longer than `limit` bytes.
    pub fn new(limit: u32) -> Self {
        PrefixReader {
            limit,
            remaining: 0,
            prefix: [0; 5],
            filled: 0,
        }
    }

    /// The limit checked.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Reads the next bytes of the body; `Err(length)` as soon as a message prefix announces a
    /// message over the limit (its bytes need not have arrived).
    pub fn read(&mut self, mut data: &[u8]) -> Result<(), u64> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data = &data[skip..];
                self.remaining -= skip as u64;
                continue;
            }
            let take = (5 - self.filled).min(data.len());
            self.prefix[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == 5 {
                self.filled = 0;
                let [_, a, b, c, d] = self.prefix;
                let length = u64::from(u32::from_be_bytes([a, b, c, d]));
                if length > u64::from(self.limit) {
                    return Err(length);
                }
                self.remaining = length;
            }
        }
        Ok(())
    }
}

/// Every method's limit, from the contract.
#[derive(Debug)]
struct Limits {
    by_path: HashMap<String, u32>,
}

impl Limits {
    fn for_path(&self, path: &str) -> u32 {
        self.by_path
            .get(path)
            .copied()
            .unwrap_or(UNLISTED_METHOD_BYTES)
    }
}

/// Wraps a service's routes so that every request body is checked against its method's
/// `max_request_bytes`.
#[derive(Debug, Clone)]
pub struct MessageLimitLayer {
    limits: Arc<Limits>,
}

impl MessageLimitLayer {
    /// The limits of the contract compiled into the binary.
    pub fn from_contract() -> Result<Self, KitError> {
        let policy = AccessPolicy::builtin().map_err(|e| KitError::Config(e.to_string()))?;
        Ok(Self::new(&policy))
    }

    /// The limits of `policy`.
    pub fn new(policy: &AccessPolicy) -> Self {
        let by_path = policy
            .iter()
            .map(|(path, rule)| (path.to_owned(), rule.max_request_bytes))
            .collect();
        MessageLimitLayer {
            limits: Arc::new(Limits { by_path }),
        }
    }

    /// The limit applied to the method at `path`.
    pub fn limit_for(&self, path: &str) -> u32 {
        self.limits.for_path(path)
    }
}

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// The service [`MessageLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> tower::Service<http::Request<Body>> for MessageLimit<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = self.limits.for_path(request.uri().path());
        self.inner
            .call(request.map(|body| Body::new(LimitedBody::new(body, limit))))
    }
}

pin_project! {
    /// A request body that fails with `RESOURCE_EXHAUSTED` at the first message prefix over
    /// its limit, before passing on any byte of that message.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        reader: PrefixReader,
        refused: bool,
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`, refusing messages over `limit` bytes.
    pub fn new(inner: B, limit: u32) -> Self {
        LimitedBody {
            inner,
            reader: PrefixReader::new(limit),
            refused: false,
        }
    }
}

impl<B> HttpBody for LimitedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.refused {
            return Poll::Ready(None);
        }
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => {
                return Poll::Ready(Some(Err(Status::from_error(error.into()))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref()
            && let Err(length) = this.reader.read(data.chunk())
        {
            *this.refused = true;
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "the request message of {length} bytes is larger than the {} bytes this method accepts",
                this.reader.limit()
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, length as usize));
        bytes
    }

    #[test]
    fn prefixes_are_followed_across_any_split_of_the_body() {
        let mut body = message(10);
        body.extend(message(0));
        body.extend(message(100));
        body.extend(message(101));
        for split in [1, 2, 3, 5, 7, 64, body.len()] {
            let mut reader = PrefixReader::new(100);
            let outcome = body.chunks(split).try_for_each(|chunk| reader.read(chunk));
            assert_eq!(
                outcome,
                Err(101),
                "split {split}: only the 101-byte message is refused"
            );
        }
        let mut reader = PrefixReader::new(100);
        assert_eq!(reader.read(&message(100)), Ok(()));
    }

    #[test]
    fn a_length_is_refused_before_its_bytes_arrive() {
        let mut reader = PrefixReader::new(64 * 1024);
        let mut prefix = vec![0];
        prefix.extend_from_slice(&(15 * 1024 * 1024_u32).to_be_bytes());
        assert_eq!(reader.read(&prefix), Err(15 * 1024 * 1024));
    }

    #[test]
    fn the_contracts_limits_apply_per_method() {
        let layer = MessageLimitLayer::from_contract().expect("contract");
        assert_eq!(
            layer.limit_for("/telehealth.v1.WoundService/UploadPhoto"),
            1024 * 1024 + 64 * 1024
        );
        assert_eq!(
            layer.limit_for("/telehealth.v1.DirectoryService/CheckMembers"),
            64 * 1024
        );
        assert_eq!(
            layer.limit_for("/grpc.health.v1.Health/Check"),
            UNLISTED_METHOD_BYTES
        );
    }
}
