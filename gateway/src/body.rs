//! Body wrappers on the proxied streams. Both pass frames through one by one (no buffering, so
//! a slow reader slows the writer: backpressure end to end).
//!
//! - [`RequestLimit`] reads the 5-byte gRPC message prefixes as they pass and stops a client
//!   message larger than its method's limit (the contract's `max_request_bytes`) before it
//!   reaches a service.
//! - [`ResponseGuard`] turns an upstream stream that breaks (service killed, message limit hit)
//!   into proper gRPC trailers, and tells the connection when the call is over (idle tracking).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use telehealth_kit::message_limit::PrefixReader;

use crate::streams::StreamSlot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client sent a message larger than allowed.
#[derive(Debug, thiserror::Error)]
#[error("grpc message of {size} bytes exceeds the {limit} bytes allowed")]
pub struct MessageTooLarge {
    pub size: u64,
    pub limit: u32,
}

pin_project! {
    /// Checks the length prefix of every gRPC message in a request body.
    pub struct RequestLimit<B> {
        #[pin]
        inner: B,
        reader: PrefixReader,
        tripped: Arc<AtomicBool>,
    }
}

impl<B> RequestLimit<B> {
    /// Wraps `inner`; `tripped` is set if the limit is hit.
    pub fn new(inner: B, limit: u32, tripped: Arc<AtomicBool>) -> Self {
        RequestLimit {
            inner,
            reader: PrefixReader::new(limit),
            tripped,
        }
    }
}

impl<B> Body for RequestLimit<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref()
            && let Err(size) = this.reader.read(data.chunk())
        {
            // The frame holding the prefix is not passed on: no byte of the message reaches
            // the service.
            this.tripped.store(true, Ordering::Release);
            let error = MessageTooLarge {
                size,
                limit: this.reader.limit(),
            };
            return Poll::Ready(Some(Err(Box::new(error))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Decrements the connection's count of calls in flight when the call's response is dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more call on `counter`.
    pub fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }

    /// One more call on the same counter (a call made on behalf of this one).
    pub fn another(&self) -> Self {
        InFlight::start(&self.0)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// Passes a response body through, replacing a transport error by gRPC trailers.
    pub struct ResponseGuard<B> {
        #[pin]
        inner: B,
        message_too_large: Option<(Arc<AtomicBool>, u32)>,
        done: bool,
        _in_flight: Option<InFlight>,
        _stream_slot: Option<StreamSlot>,
    }
}

impl<B> ResponseGuard<B> {
    /// Wraps a response body; `message_too_large` is the request limit's flag and limit;
    /// `in_flight` and `stream_slot` are released with the body, when the call is over.
    pub fn new(
        inner: B,
        message_too_large: Option<(Arc<AtomicBool>, u32)>,
        in_flight: Option<InFlight>,
        stream_slot: Option<StreamSlot>,
    ) -> Self {
        ResponseGuard {
            inner,
            message_too_large,
            done: false,
            _in_flight: in_flight,
            _stream_slot: stream_slot,
        }
    }
}

impl<B> Body for ResponseGuard<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                *this.done = true;
                let error: BoxError = error.into();
                let status = match this.message_too_large {
                    Some((flag, limit)) if flag.load(Ordering::Acquire) => {
                        tonic::Status::resource_exhausted(format!(
                            "a message is larger than the {limit} bytes allowed"
                        ))
                    }
                    _ => {
                        tracing::warn!(%error, "upstream stream broke");
                        tonic::Status::unavailable("the service stream was interrupted, retry")
                    }
                };
                let mut trailers = HeaderMap::new();
                if status.add_header(&mut trailers).is_err() {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
