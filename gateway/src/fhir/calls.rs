//! The FHIR API's reads are gRPC calls of the contract, made as the caller through the
//! gateway's own pipeline: the same token check, policy, rate limit and limits, and the
//! services' organisation scoping, exactly as if the client had made them.

use std::{future::Future, pin::Pin, sync::Arc};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use tonic::body::Body;

/// The gateway's pipeline for one client connection: takes a gRPC call, answers it (refusals
/// are gRPC statuses). Given by the proxy, so that this module does not depend on it.
pub type Pipeline = Arc<
    dyn Fn(Request<Full<Bytes>>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

/// Largest answer of one internal call (the contract's pages are far smaller).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Headers of the FHIR request that every internal call carries.
const FORWARDED: [&str; 3] = ["authorization", "traceparent", "tracestate"];

/// Makes gRPC calls as the client of one FHIR request.
pub struct Calls {
    pipeline: Pipeline,
    headers: HeaderMap,
}

impl Calls {
    pub fn new(pipeline: Pipeline, request: &HeaderMap) -> Calls {
        let mut headers = HeaderMap::new();
        for name in FORWARDED {
            // Every value, so that two `authorization` headers are refused as over gRPC.
            for value in request.get_all(name) {
                headers.append(name, value.clone());
            }
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("grpc-timeout", HeaderValue::from_static("10S"));
        Calls { pipeline, headers }
    }

    /// Calls the unary method `path` (`/package.Service/Method`) with `message`.
    pub async fn unary<Q: Message, A: Message + Default>(
        &self,
        path: &str,
        message: &Q,
    ) -> Result<A, tonic::Status> {
        let mut framed = BytesMut::with_capacity(5 + message.encoded_len());
        framed.put_u8(0);
        framed.put_u32(u32::try_from(message.encoded_len()).unwrap_or(u32::MAX));
        message
            .encode(&mut framed)
            .map_err(|_| tonic::Status::internal("request not encodable"))?;
        let mut request = Request::post(path)
            .body(Full::new(framed.freeze()))
            .map_err(|_| tonic::Status::internal("internal request not buildable"))?;
        *request.headers_mut() = self.headers.clone();
        let response = (self.pipeline)(request).await;
        if let Some(status) = tonic::Status::from_header_map(response.headers())
            .filter(|s| s.code() != tonic::Code::Ok)
        {
            return Err(status);
        }
        let collected = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| tonic::Status::unavailable("the service's answer was cut or too large"))?;
        if let Some(status) = collected
            .trailers()
            .and_then(tonic::Status::from_header_map)
            .filter(|s| s.code() != tonic::Code::Ok)
        {
            return Err(status);
        }
        decode(collected.to_bytes())
    }
}

/// The one message of a unary answer.
fn decode<A: Message + Default>(mut body: Bytes) -> Result<A, tonic::Status> {
    if body.remaining() < 5 || body.get_u8() != 0 {
        return Err(tonic::Status::internal("unexpected answer framing"));
    }
    let length = body.get_u32() as usize;
    if body.remaining() != length {
        return Err(tonic::Status::internal("unexpected answer length"));
    }
    A::decode(body).map_err(|_| tonic::Status::internal("answer not decodable"))
}
