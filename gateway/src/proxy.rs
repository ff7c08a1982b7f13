//! One call through the gateway: authenticate, authorise, limit, forward, stream back.
//!
//! The steps, in order, each refusing with its own status:
//! 1. a header list over `max_header_bytes` is refused (`UNAUTHENTICATED`: every header problem
//!    is one of credentials for the caller, never an HTTP error gRPC clients cannot read);
//! 2. the gateway's own services (health, reflection) are answered locally (mTLS only);
//! 3. the contract's rule for the method is looked up (`UNIMPLEMENTED` for no such method); on
//!    the sign-in port only sign-in RPCs pass (`PERMISSION_DENIED`);
//! 4. a client (address or certificate) with too many failed attempts is refused before its
//!    token is looked at (`RESOURCE_EXHAUSTED` with a retry delay);
//! 5. the bearer token (one `authorization` header) is verified and bound to the connection's
//!    certificate (`UNAUTHENTICATED`, and the failure is counted), and the rule's roles decide
//!    (`PERMISSION_DENIED`); sign-in RPCs need no token (they are limited by address), and
//!    `device` RPCs (refresh) only the certificate;
//! 6. the subject's rate limit, then for streaming calls its cap of open streams
//!    (`RESOURCE_EXHAUSTED`);
//! 7. identity headers a client sent are dropped and the verified identity is written; the
//!    deadline is capped; the trace context is continued;
//! 8. the call is forwarded to a service endpoint and both bodies are streamed frame by frame;
//!    a request message over the method's `max_request_bytes` (from the contract) is refused
//!    (`RESOURCE_EXHAUSTED`) from its length prefix, before any of it is buffered or forwarded.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use hyper::body::Incoming;
use telehealth_kit::{
    config::LimitSettings,
    identity::{IDENTITY_METADATA_PREFIX, Identity, TokenlessCall},
    telemetry,
};
use telehealth_proto::access::MethodAccess;
use tonic::{body::Body, metadata::MetadataMap};
use tower::ServiceExt;
use tracing::Instrument;

use crate::{
    auth::{self, Authenticator},
    body::{InFlight, RequestLimit, ResponseGuard},
    connections::Connections,
    deadline,
    error::{AuthFailure, GatewayError},
    fhir,
    grpc_web::{self, AllowedOrigins, Framing},
    local::LocalServices,
    lockout::Lockout,
    metrics::{GatewayMetrics, Observed},
    policy::Policy,
    ratelimit::RateLimiter,
    streams::SubjectStreams,
    upstream::Upstreams,
    web::WebRoot,
};

/// What the gateway knows about a client connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// RFC 8705 thumbprint of the client's certificate.
    pub thumbprint: Option<String>,
    pub remote: std::net::SocketAddr,
    /// The port it came in on.
    pub port: Port,
}

/// The gateway's client-facing ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Every call, from devices with a client certificate.
    Devices,
    /// Sign-in and enrolment only, without a client certificate.
    SignIn,
}

/// The gateway's request pipeline (shared by every connection).
pub struct Gateway {
    pub(crate) auth: Authenticator,
    pub(crate) policy: Policy,
    pub(crate) limiter: RateLimiter,
    pub(crate) upstreams: Upstreams,
    pub(crate) local: LocalServices,
    pub(crate) limits: LimitSettings,
    pub(crate) lockout: Lockout,
    pub(crate) streams: Arc<SubjectStreams>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) web_origins: AllowedOrigins,
    pub(crate) web: WebRoot,
    pub(crate) metrics: GatewayMetrics,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Gateway {
    /// Handles one request: a gRPC call, a gRPC-Web call (turned into gRPC and back), a CORS
    /// preflight, or a file of the web client (`GET`).
    pub async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Arc<ConnectionInfo>,
        in_flight: InFlight,
    ) -> Response<Body> {
        if fhir::handles(request.uri().path()) {
            let on_devices_port = connection.port == Port::Devices;
            // Each call behind a FHIR request goes through this very pipeline, as the client.
            let pipeline: fhir::Pipeline = Arc::new(move |call| {
                let (gateway, connection) = (self.clone(), connection.clone());
                Box::pin(gateway.handle(call, connection, in_flight.another()))
            });
            return fhir::answer(request, on_devices_port, pipeline).await;
        }
        if WebRoot::handles(request.method()) {
            return self
                .web
                .answer(request.method(), request.uri().path(), request.headers())
                .await;
        }
        if grpc_web::is_preflight(&request) {
            let mut answer = Response::new(Body::empty());
            let preflight: Response<()> = self.web_origins.preflight(request.headers());
            *answer.status_mut() = preflight.status();
            *answer.headers_mut() = preflight.into_parts().0.headers;
            return answer;
        }
        let Some(framing) = Framing::of(request.headers()) else {
            return self.handle(request, connection, in_flight).await;
        };
        let mut origin = HeaderMap::new();
        if let Some(value) = request.headers().get(http::header::ORIGIN) {
            origin.insert(http::header::ORIGIN, value.clone());
        }
        // A malformed timeout is refused by the pipeline; here only a valid one ends the stream.
        let deadline = request
            .headers()
            .get(deadline::GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| deadline::parse(v).ok())
            .map(|d| d.min(Duration::from_secs(self.limits.max_stream_deadline_seconds)));
        let response = self
            .clone()
            .handle(grpc_web::to_grpc(request, framing), connection, in_flight)
            .await;
        let mut response = grpc_web::from_grpc(response, framing, deadline).map(Body::new);
        self.web_origins.decorate(&origin, &mut response);
        response
    }

    /// Handles one call; never fails: refusals are gRPC statuses.
    pub async fn handle<B>(
        self: Arc<Self>,
        request: Request<B>,
        connection: Arc<ConnectionInfo>,
        in_flight: InFlight,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            target: telemetry::REQUEST_SPAN_TARGET,
            "grpc.gateway",
            otel.name = %path,
            otel.kind = "server",
            rpc.method = %path,
            subject = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, request.headers());
        let record = self.metrics.start(&path);
        async move {
            let subject = std::sync::OnceLock::new();
            let response = match self
                .forward(request, &connection, &path, in_flight, &subject)
                .await
            {
                Ok(response) => response,
                Err(error) => {
                    self.metrics.refused(&error);
                    tracing::warn!(
                        subject = subject.get().map_or("", String::as_str),
                        method = %path,
                        remote = %connection.remote,
                        reason = %refusal_reason(&error),
                        trace_id = %telemetry::current_trace_id(),
                        "call refused"
                    );
                    error.to_status().into_http()
                }
            };
            let (parts, body) = response.into_parts();
            let body = Body::new(Observed::new(body, &parts.headers, record));
            Response::from_parts(parts, body)
        }
        .instrument(span)
        .await
    }

    async fn forward<B>(
        &self,
        request: Request<B>,
        connection: &ConnectionInfo,
        path: &str,
        in_flight: InFlight,
        subject: &std::sync::OnceLock<String>,
    ) -> Result<Response<Body>, GatewayError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let header_bytes = auth::header_list_size(request.headers());
        let max_header_bytes = self.limits.max_header_bytes as usize;
        if header_bytes > max_header_bytes {
            self.lockout
                .record_failure(connection.remote.ip(), connection.thumbprint.as_deref());
            return Err(GatewayError::Unauthenticated(
                AuthFailure::HeadersTooLarge {
                    size: header_bytes,
                    limit: max_header_bytes,
                },
            ));
        }
        if self.local.serves(path) {
            let response = self
                .local
                .routes()
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            return Ok(response
                .map(|body| Body::new(ResponseGuard::new(body, None, Some(in_flight), None))));
        }

        let rule = self.policy.rule(path)?;
        if connection.port == Port::SignIn && rule.access != MethodAccess::SignIn {
            return Err(GatewayError::SignInPortOnly {
                method: path.to_owned(),
            });
        }
        let remote = connection.remote.ip();
        let thumbprint = connection.thumbprint.as_deref();
        let caller = match rule.access {
            MethodAccess::SignIn => {
                if let Some(retry_after) = self.lockout.locked(remote, thumbprint) {
                    return Err(GatewayError::LockedOut { retry_after });
                }
                Forwarded::Tokenless(TokenlessCall {
                    address: Some(remote.to_string()),
                    cert_thumbprint: thumbprint.map(str::to_owned),
                })
            }
            MethodAccess::Device => {
                let thumbprint = thumbprint.ok_or(GatewayError::Unauthenticated(
                    AuthFailure::NoClientCertificate,
                ))?;
                if let Some(retry_after) = self.lockout.locked(remote, Some(thumbprint)) {
                    return Err(GatewayError::LockedOut { retry_after });
                }
                Forwarded::Tokenless(TokenlessCall {
                    address: Some(remote.to_string()),
                    cert_thumbprint: Some(thumbprint.to_owned()),
                })
            }
            MethodAccess::Roles(_) | MethodAccess::InternalOnly => {
                let thumbprint = thumbprint.ok_or(GatewayError::Unauthenticated(
                    AuthFailure::NoClientCertificate,
                ))?;
                if let Some(retry_after) = self.lockout.locked(remote, Some(thumbprint)) {
                    return Err(GatewayError::LockedOut { retry_after });
                }
                let authenticated = match auth::authorization_header(request.headers()) {
                    Ok(authorization) => self.auth.authenticate(authorization, thumbprint).await,
                    Err(failure) => Err(failure),
                };
                let identity = authenticated.map_err(|failure| {
                    self.lockout.record_failure(remote, Some(thumbprint));
                    GatewayError::Unauthenticated(failure)
                })?;
                tracing::Span::current().record("subject", identity.subject.as_str());
                let _ = subject.set(identity.subject.clone());
                self.policy.authorize(path, &identity)?;
                Forwarded::Person(identity)
            }
        };
        let limit = rule.max_request_bytes;
        self.limiter
            .check(&caller.rate_key())
            .map_err(|retry_after| GatewayError::RateLimited { retry_after })?;
        let stream_slot = if rule.streaming {
            let slot = self
                .streams
                .open(&caller.rate_key())
                .map_err(|limit| GatewayError::TooManyStreams { limit })?;
            Some(slot)
        } else {
            None
        };
        let service = path.split('/').nth(1).unwrap_or_default();
        let upstream = self
            .upstreams
            .for_service(service)
            .ok_or_else(|| GatewayError::UnknownMethod(path.to_owned()))?;

        let (mut parts, body) = request.into_parts();
        let max_deadline = if rule.streaming {
            self.limits.max_stream_deadline_seconds
        } else {
            self.limits.max_deadline_seconds
        };
        rewrite_headers(
            &mut parts.headers,
            &caller,
            Duration::from_secs(max_deadline),
        )?;

        let tripped = Arc::new(AtomicBool::new(false));
        let body = Body::new(RequestLimit::new(body, limit, tripped.clone()));
        let (endpoint, mut sender) = self.upstreams.ready_sender(upstream).await?;
        let path_and_query = parts.uri.path_and_query().map_or(path, |p| p.as_str());
        parts.uri = format!("https://{}{}", endpoint.authority, path_and_query)
            .parse()
            .map_err(|_| GatewayError::UnknownMethod(path.to_owned()))?;

        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => Ok(response.map(|body| {
                Body::new(ResponseGuard::new(
                    body,
                    Some((tripped, limit)),
                    Some(in_flight),
                    stream_slot,
                ))
            })),
            Err(_) if tripped.load(std::sync::atomic::Ordering::Acquire) => {
                Err(GatewayError::MessageTooLarge { limit })
            }
            Err(error) => {
                tracing::warn!(endpoint = %endpoint.authority, %error, "upstream call failed");
                if error.is_closed() || error.is_canceled() {
                    self.upstreams.report_failure(&endpoint).await;
                }
                Err(GatewayError::NoUpstream {
                    service: service.to_owned(),
                })
            }
        }
    }
}

/// Who a forwarded call is from.
enum Forwarded {
    /// A person, by a verified token bound to the connection's certificate.
    Person(Arc<Identity>),
    /// A sign-in or refresh: no token, known by address and certificate.
    Tokenless(TokenlessCall),
}

impl Forwarded {
    /// Whose rate limit and stream cap the call counts against.
    fn rate_key(&self) -> String {
        match self {
            Forwarded::Person(identity) => identity.subject.clone(),
            Forwarded::Tokenless(call) => match (&call.cert_thumbprint, &call.address) {
                (Some(thumbprint), _) => format!("certificate {thumbprint}"),
                (None, Some(address)) => format!("address {address}"),
                (None, None) => "anonymous".to_owned(),
            },
        }
    }
}

/// Drops every identity header a client sent (and its token: services never need it), writes
/// what the gateway verified, caps the deadline and continues the trace.
fn rewrite_headers(
    headers: &mut HeaderMap,
    caller: &Forwarded,
    max_deadline: Duration,
) -> Result<(), GatewayError> {
    headers.remove(AUTHORIZATION);
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(IDENTITY_METADATA_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
    let mut metadata = MetadataMap::from_headers(std::mem::take(headers));
    match caller {
        Forwarded::Person(identity) => identity.write_metadata(&mut metadata),
        Forwarded::Tokenless(call) => call.write_metadata(&mut metadata),
    }
    .map_err(|e| GatewayError::Config(e.to_string()))?;
    *headers = metadata.into_headers();
    deadline::cap(headers, max_deadline)?;
    telemetry::inject_current_context(headers);
    Ok(())
}

/// The reason to log for a refusal (token details stay here, never in the status).
fn refusal_reason(error: &GatewayError) -> String {
    match error {
        GatewayError::Unauthenticated(failure) => failure.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telehealth_kit::identity::{Role, SUBJECT_KEY};

    #[test]
    fn client_identity_headers_never_pass_and_the_verified_ones_do() {
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_KEY, "admin".parse().expect("ascii"));
        headers.insert("x-telehealth-roles", "admin".parse().expect("ascii"));
        headers.insert("x-telehealth-anything", "x".parse().expect("ascii"));
        headers.insert(AUTHORIZATION, "Bearer secret".parse().expect("ascii"));
        headers.insert("x-request-id", "keep-me".parse().expect("ascii"));
        let identity = Identity {
            subject: "nurse-claire".into(),
            roles: vec![Role::Nurse],
            org: "cds".into(),
            specialty: None,
            cert_thumbprint: "t".into(),
        };
        let person = Forwarded::Person(Arc::new(identity));
        rewrite_headers(&mut headers, &person, Duration::from_secs(60)).expect("rewrite");
        assert_eq!(headers[SUBJECT_KEY], "nurse-claire");
        assert_eq!(headers["x-telehealth-roles"], "nurse");
        assert!(headers.get("x-telehealth-anything").is_none());
        assert!(
            headers.get(AUTHORIZATION).is_none(),
            "the token is not forwarded"
        );
        assert_eq!(headers["x-request-id"], "keep-me");
        assert_eq!(headers[deadline::GRPC_TIMEOUT], "60000m");
    }

    #[test]
    fn a_tokenless_call_carries_the_address_and_certificate_and_never_a_forged_identity() {
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_KEY, "admin".parse().expect("ascii"));
        headers.insert(
            "x-telehealth-client-address",
            "10.0.0.1".parse().expect("ascii"),
        );
        headers.insert(AUTHORIZATION, "Bearer secret".parse().expect("ascii"));
        let call = Forwarded::Tokenless(TokenlessCall {
            address: Some("192.0.2.7".into()),
            cert_thumbprint: None,
        });
        rewrite_headers(&mut headers, &call, Duration::from_secs(60)).expect("rewrite");
        assert!(
            headers.get(SUBJECT_KEY).is_none(),
            "no identity on a sign-in"
        );
        assert!(headers.get(AUTHORIZATION).is_none());
        assert_eq!(headers["x-telehealth-client-address"], "192.0.2.7");
        assert!(headers.get("x-telehealth-cert-thumbprint").is_none());
        assert_eq!(call.rate_key(), "address 192.0.2.7");
    }
}
