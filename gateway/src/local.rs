//! The gateway's own gRPC services: `grpc.health.v1` and server reflection of the public
//! contract (so `grpcurl` works). They need a client certificate like everything else, but no
//! token: load balancers probe health, and reflection only describes the published contract.

use tonic::service::Routes;
use tonic_health::server::HealthReporter;

/// Path prefixes answered by the gateway itself.
const LOCAL_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Health and reflection.
pub struct LocalServices {
    routes: Routes,
    reporter: HealthReporter,
}

impl LocalServices {
    /// Builds health (initially serving) and reflection over the contract's descriptor set.
    pub fn new() -> Result<Self, crate::error::GatewayError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let descriptors = telehealth_proto::FILE_DESCRIPTOR_SET;
        let config_error = |e: tonic_reflection::server::Error| {
            crate::error::GatewayError::Config(format!("reflection: {e}"))
        };
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .build_v1()
            .map_err(config_error)?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptors)
            .build_v1alpha()
            .map_err(config_error)?;
        let routes = Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .prepare();
        Ok(LocalServices { routes, reporter })
    }

    /// True when `path` is one of the gateway's own methods.
    pub fn serves(&self, path: &str) -> bool {
        LOCAL_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
    }

    /// The routes, to call as a tower service.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }

    /// The health reporter (serving while running, not serving while draining).
    pub fn health(&self) -> &HealthReporter {
        &self.reporter
    }
}
