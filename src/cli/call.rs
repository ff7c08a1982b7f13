//! `telehealth call`: call any RPC of the contract through the gateway, with JSON in and out —
//! what `grpcurl` does, without needing it installed. Messages are encoded and decoded with the
//! descriptor set compiled into the binary (the JSON mapping of protobuf: lowerCamelCase field
//! names, enums by name, timestamps as RFC 3339 strings).

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use telehealth_kit::{Settings, raw_codec::RawCodec};
use tonic::codegen::http::uri::PathAndQuery;

use super::gateway::GatewayArgs;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method: `WoundService/ListNurseRound` or `telehealth.v1.WoundService/ListNurseRound`.
    pub method: String,
    /// The request as JSON (protobuf JSON mapping); `{}` when omitted.
    #[arg(default_value = "{}")]
    pub request: String,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Deadline of the call, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

pub async fn run(args: CallArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let method = find_method(&args.method)?;
    if method.is_client_streaming() {
        bail!(
            "{} is client-streaming: use a gRPC client library for uploads and video",
            args.method
        );
    }
    let request = encode_request(&method, &args.request)?;

    let (channel, bearer) = args.gateway.connect(settings).await?;

    let mut grpc_request = tonic::Request::new(request);
    grpc_request.set_timeout(Duration::from_secs(args.timeout));
    if let Some(bearer) = bearer {
        grpc_request.metadata_mut().insert("authorization", bearer);
    }
    let path: PathAndQuery =
        format!("/{}/{}", method.parent_service().full_name(), method.name()).parse()?;
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    client.ready().await?;

    let outcome = if method.is_server_streaming() {
        match client.server_streaming(grpc_request, path, RawCodec).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut result = Ok(());
                while let Some(message) = stream.next().await {
                    match message {
                        Ok(bytes) => println!("{}", decode_response(&method, bytes)?),
                        Err(status) => {
                            result = Err(status);
                            break;
                        }
                    }
                }
                result
            }
            Err(status) => Err(status),
        }
    } else {
        client
            .unary(grpc_request, path, RawCodec)
            .await
            .map(|response| response.into_inner())
            .and_then(|bytes| {
                decode_response(&method, bytes)
                    .map(|json| println!("{json}"))
                    .map_err(|e| tonic::Status::internal(e.to_string()))
            })
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(status) => {
            eprintln!("error: {:?}: {}", status.code(), status.message());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn find_method(name: &str) -> anyhow::Result<MethodDescriptor> {
    let pool = DescriptorPool::decode(telehealth_proto::FILE_DESCRIPTOR_SET)?;
    let (service, method) = name
        .trim_start_matches('/')
        .rsplit_once('/')
        .with_context(|| format!("`{name}` is not Service/Method"))?;
    let service = if service.contains('.') {
        service.to_owned()
    } else {
        format!("{}.{service}", telehealth_proto::PACKAGE)
    };
    pool.get_service_by_name(&service)
        .with_context(|| format!("no service {service} in the contract"))?
        .methods()
        .find(|m| m.name() == method)
        .with_context(|| format!("no method {method} in {service}"))
}

fn encode_request(method: &MethodDescriptor, json: &str) -> anyhow::Result<Bytes> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(method.input(), &mut deserializer)
        .with_context(|| format!("the request is not a valid {}", method.input().full_name()))?;
    deserializer.end()?;
    Ok(Bytes::from(message.encode_to_vec()))
}

fn decode_response(method: &MethodDescriptor, bytes: Bytes) -> anyhow::Result<String> {
    let message = DynamicMessage::decode(method.output(), bytes)?;
    Ok(serde_json::to_string_pretty(&message)?)
}
