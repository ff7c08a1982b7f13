//! gRPC-Web for browsers, which cannot read HTTP/2 trailers: a call with a gRPC-Web content type
//! (`application/grpc-web[+proto]`, binary, or `application/grpc-web-text[+proto]`, base64) is
//! turned into a gRPC call before the pipeline ([`crate::proxy`]) sees it, so it gets the same
//! authentication, policy, limits and deadlines, and its answer is turned back: the trailers
//! become the last message of the body (flag `0x80`), text bodies are base64 chunk by chunk.
//! Both bodies stream frame by frame, as gRPC's do.
//!
//! CORS: none by default (the web client comes from the gateway's own origin). Origins listed in
//! `gateway.web_allowed_origins` get answered preflights and the CORS headers; any other origin
//! gets neither, so a browser page of another site cannot read an answer.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::{BufMut, Bytes, BytesMut};
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
    header::{self, CONTENT_TYPE},
};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a gRPC-Web body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The gRPC frames as they are.
    Binary,
    /// The gRPC frames in base64.
    Text,
}

impl Framing {
    /// The gRPC-Web framing a request asks for; `None` for a gRPC (or any other) request.
    pub fn of(headers: &HeaderMap) -> Option<Framing> {
        let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let base = content_type.split(';').next()?.trim();
        match base {
            "application/grpc-web" | "application/grpc-web+proto" => Some(Framing::Binary),
            "application/grpc-web-text" | "application/grpc-web-text+proto" => Some(Framing::Text),
            _ => None,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Framing::Binary => "application/grpc-web+proto",
            Framing::Text => "application/grpc-web-text+proto",
        })
    }
}

/// The gRPC request a gRPC-Web request stands for.
pub fn to_grpc<B>(request: Request<B>, framing: Framing) -> Request<WebRequestBody<B>> {
    let (mut parts, body) = request.into_parts();
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    parts
        .headers
        .insert(header::TE, HeaderValue::from_static("trailers"));
    // Headers a browser adds that mean nothing to a service.
    for name in ["x-grpc-web", "x-user-agent"] {
        parts.headers.remove(name);
    }
    // The length of base64 is not the length of what it decodes to.
    if framing == Framing::Text {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Request::from_parts(parts, WebRequestBody::new(body, framing))
}

/// The gRPC-Web response for a gRPC response; a stream still open at `deadline` (the call's
/// `grpc-timeout`) ends there with `DEADLINE_EXCEEDED`, as a gRPC client would end it itself.
pub fn from_grpc<B>(
    response: Response<B>,
    framing: Framing,
    deadline: Option<Duration>,
) -> Response<WebResponseBody<B>> {
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(CONTENT_TYPE, framing.content_type());
    Response::from_parts(parts, WebResponseBody::new(body, framing, deadline))
}

/// Browser origins allowed to call from another site (CORS), from configuration.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

/// Headers a browser may send on a call (answer to a preflight).
const ALLOWED_HEADERS: &str = "authorization, content-type, grpc-timeout, x-grpc-web, \
                               x-user-agent, connect-protocol-version, traceparent";
/// Response headers a page may read.
const EXPOSED_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin";

impl AllowedOrigins {
    pub fn new(origins: &[String]) -> AllowedOrigins {
        AllowedOrigins(
            origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        )
    }

    /// The request's origin, if it is one of the allowed.
    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.0.iter().any(|o| o == text).then_some(origin)
    }

    /// The answer to a CORS preflight (`OPTIONS`): allowed or not, the call is not forwarded.
    pub fn preflight<B: Default>(&self, headers: &HeaderMap) -> Response<B> {
        let mut response = Response::new(B::default());
        match self.allowed(headers) {
            Some(origin) => {
                *response.status_mut() = StatusCode::NO_CONTENT;
                let h = response.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("POST"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(ALLOWED_HEADERS),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                h.insert(header::VARY, HeaderValue::from_static("origin"));
            }
            None => *response.status_mut() = StatusCode::FORBIDDEN,
        }
        response
    }

    /// Adds the CORS headers to the answer of an allowed origin's call.
    pub fn decorate<B>(&self, request_headers: &HeaderMap, response: &mut Response<B>) {
        if let Some(origin) = self.allowed(request_headers) {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            h.insert(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

pin_project! {
    /// A gRPC-Web request body as gRPC frames (text bodies decoded as they arrive).
    pub struct WebRequestBody<B> {
        #[pin]
        inner: B,
        framing: Framing,
        // Base64 characters of a group not complete yet (fewer than 4).
        pending: Vec<u8>,
    }
}

impl<B> WebRequestBody<B> {
    fn new(inner: B, framing: Framing) -> Self {
        WebRequestBody {
            inner,
            framing,
            pending: Vec::new(),
        }
    }
}

/// The request's base64 is not base64.
#[derive(Debug, thiserror::Error)]
#[error("grpc-web-text request body: {0}")]
pub struct BadText(String);

impl<B> Body for WebRequestBody<B>
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
            Poll::Ready(None) if this.pending.is_empty() => return Poll::Ready(None),
            Poll::Ready(None) => {
                let error = BadText(format!(
                    "{} base64 characters left over",
                    this.pending.len()
                ));
                this.pending.clear();
                return Poll::Ready(Some(Err(Box::new(error))));
            }
            Poll::Pending => return Poll::Pending,
        };
        if *this.framing == Framing::Binary {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Ok(data) = frame.into_data() else {
            // Trailers on a request: nothing a gRPC-Web client sends; dropped.
            return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
        };
        match decode_text(this.pending, &data) {
            Ok(decoded) => Poll::Ready(Some(Ok(Frame::data(decoded)))),
            Err(error) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Binary => self.inner.size_hint(),
            Framing::Text => SizeHint::default(),
        }
    }
}

/// Decodes the complete base64 groups of `pending` + `chunk` (each group on its own, so that
/// chunks padded one by one decode too); keeps an incomplete last group in `pending`.
fn decode_text(pending: &mut Vec<u8>, chunk: &[u8]) -> Result<Bytes, BadText> {
    pending.extend(chunk.iter().filter(|b| !b.is_ascii_whitespace()));
    let complete = pending.len() - pending.len() % 4;
    let mut out = BytesMut::with_capacity(complete / 4 * 3);
    for group in pending[..complete].chunks(4) {
        let mut bytes = [0u8; 3];
        let n = STANDARD
            .decode_slice(group, &mut bytes)
            .map_err(|e| BadText(e.to_string()))?;
        out.put_slice(&bytes[..n]);
    }
    pending.drain(..complete);
    Ok(out.freeze())
}

pin_project! {
    /// A gRPC response body as gRPC-Web: messages as they come (base64 for text), then the
    /// trailers as the last message.
    pub struct WebResponseBody<B> {
        #[pin]
        inner: B,
        framing: Framing,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        done: bool,
    }
}

impl<B> WebResponseBody<B> {
    fn new(inner: B, framing: Framing, deadline: Option<Duration>) -> Self {
        WebResponseBody {
            inner,
            framing,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep(d))),
            done: false,
        }
    }
}

impl<B> Body for WebResponseBody<B>
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
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                *this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                // The stream ends here; dropping the body then cancels the upstream call.
                *this.done = true;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("4"));
                trailers.insert(
                    "grpc-message",
                    HeaderValue::from_static("deadline%20exceeded"),
                );
                Frame::trailers(trailers)
            }
        };
        let bytes = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                *this.done = true;
                let trailers = frame.into_trailers().unwrap_or_default();
                trailer_message(&trailers)
            }
        };
        let bytes = match this.framing {
            Framing::Binary => bytes,
            Framing::Text => Bytes::from(STANDARD.encode(&bytes)),
        };
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The trailers as gRPC-Web's last message: flag `0x80`, length, `name: value\r\n` lines.
fn trailer_message(trailers: &HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + block.len());
    out.put_u8(0x80);
    out.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
    out.put_slice(&block);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn the_content_type_says_the_framing() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            Framing::of(&headers)
        };
        assert_eq!(with("application/grpc-web"), Some(Framing::Binary));
        assert_eq!(with("application/grpc-web+proto"), Some(Framing::Binary));
        assert_eq!(with("application/grpc-web-text"), Some(Framing::Text));
        assert_eq!(
            with("application/grpc-web-text+proto; charset=utf-8"),
            Some(Framing::Text)
        );
        assert_eq!(with("application/grpc"), None);
        assert_eq!(with("application/grpc-web+json"), None);
        assert_eq!(Framing::of(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_text_request_is_decoded_across_chunks_and_paddings() {
        let message = framed(b"hello, gateway");
        // Encoded in two separately padded pieces, then cut at odd places.
        let (a, b) = message.split_at(7);
        let text = format!("{}{}", STANDARD.encode(a), STANDARD.encode(b));
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = text
            .as_bytes()
            .chunks(5)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = WebRequestBody::new(StreamBody::new(tokio_stream::iter(chunks)), Framing::Text);
        let decoded = body.collect().await.expect("decoded").to_bytes();
        assert_eq!(decoded.as_ref(), message.as_slice());

        let bad = WebRequestBody::new(Full::new(Bytes::from_static(b"@@@@")), Framing::Text);
        assert!(bad.collect().await.is_err(), "not base64");
        let short = WebRequestBody::new(
            Full::new(Bytes::from_static(b"QUJD" as &[u8]).slice(..3)),
            Framing::Text,
        );
        assert!(
            short.collect().await.is_err(),
            "an incomplete group at the end"
        );
    }

    #[tokio::test]
    async fn the_trailers_become_the_last_message_in_both_framings() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let frames = || -> Vec<Result<Frame<Bytes>, std::convert::Infallible>> {
            vec![
                Ok(Frame::data(Bytes::from(framed(b"answer")))),
                Ok(Frame::trailers(trailers.clone())),
            ]
        };
        let expected_trailer = b"grpc-status: 0\r\ngrpc-message: ok\r\n";
        let binary = WebResponseBody::new(
            StreamBody::new(tokio_stream::iter(frames())),
            Framing::Binary,
            None,
        )
        .collect()
        .await
        .expect("body")
        .to_bytes();
        let mut expected = framed(b"answer");
        expected.push(0x80);
        expected.extend_from_slice(
            &u32::try_from(expected_trailer.len())
                .expect("len")
                .to_be_bytes(),
        );
        expected.extend_from_slice(expected_trailer);
        assert_eq!(binary.as_ref(), expected.as_slice());

        let text = WebResponseBody::new(
            StreamBody::new(tokio_stream::iter(frames())),
            Framing::Text,
            None,
        )
        .collect()
        .await
        .expect("body")
        .to_bytes();
        let mut pending = Vec::new();
        let decoded = decode_text(&mut pending, &text).expect("base64 chunks");
        assert_eq!(decoded.as_ref(), expected.as_slice());
    }

    #[test]
    fn only_listed_origins_get_cors() {
        let origins = AllowedOrigins::new(&["https://app.example.org/".to_owned()]);
        let from = |origin: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            headers.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("POST"),
            );
            let preflight: Response<Full<Bytes>> = origins.preflight(&headers);
            let mut answer = Response::new(());
            origins.decorate(&headers, &mut answer);
            (preflight, answer)
        };
        let (preflight, answer) = from("https://app.example.org");
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.org"
        );
        let (preflight, answer) = from("https://evil.example.com");
        assert_eq!(preflight.status(), StatusCode::FORBIDDEN);
        assert!(
            !answer
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        let none = AllowedOrigins::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.org"),
        );
        let preflight: Response<Full<Bytes>> = none.preflight(&headers);
        assert_eq!(preflight.status(), StatusCode::FORBIDDEN, "off by default");
    }
}
