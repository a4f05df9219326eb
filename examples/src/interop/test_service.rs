//! `grpc.testing.TestService` as gRPC's xDS interop server implements it: `EmptyCall` and
//! `UnaryCall` answer with the server's id and hostname (also sent as the `hostname`
//! response header) after applying the request's `rpc-behavior`
//! ([`crate::interop::behavior`]); the streaming methods are UNIMPLEMENTED.
//!
//! Unlike grpc-go, which honours `rpc-behavior` on `UnaryCall` only, behaviours apply to
//! both unary methods, as in grpc-java and grpc-node (whose interceptors see every call).

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use xds_proto::grpc_testing::test_service_server::TestService;
use xds_proto::grpc_testing::{
    Empty, SimpleRequest, SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

use crate::interop::behavior;

/// The response header naming the server's host.
pub const HOSTNAME_HEADER: &str = "hostname";

/// The interop TestService of one server.
#[derive(Debug, Clone)]
pub struct InteropTestService {
    /// The host name reported in replies (the machine's, or `--host_name_override`).
    pub hostname: String,
    /// The `--server_id` reported in `SimpleResponse.server_id`.
    pub server_id: String,
}

impl InteropTestService {
    fn reply<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        if let Ok(v) = MetadataValue::try_from(self.hostname.as_str()) {
            response.metadata_mut().insert(HOSTNAME_HEADER, v);
        }
        response
    }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TestService for InteropTestService {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        behavior::plan(request.metadata(), &self.hostname)
            .execute()
            .await?;
        Ok(self.reply(Empty {}))
    }

    /// Fills `server_id` and `hostname` on every reply (grpc-go and grpc-java do so whether
    /// or not `fill_server_id` is set, and drivers rely on it).
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        behavior::plan(request.metadata(), &self.hostname)
            .execute()
            .await?;
        Ok(self.reply(SimpleResponse {
            server_id: self.server_id.clone(),
            hostname: self.hostname.clone(),
            ..Default::default()
        }))
    }

    async fn cacheable_unary_call(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Err(Status::unimplemented("CacheableUnaryCall"))
    }

    type StreamingOutputCallStream = OutputStream;

    async fn streaming_output_call(
        &self,
        _request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        Err(Status::unimplemented("StreamingOutputCall"))
    }

    async fn streaming_input_call(
        &self,
        _request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        Err(Status::unimplemented("StreamingInputCall"))
    }

    type FullDuplexCallStream = OutputStream;

    async fn full_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        Err(Status::unimplemented("FullDuplexCall"))
    }

    type HalfDuplexCallStream = OutputStream;

    async fn half_duplex_call(
        &self,
        _request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        Err(Status::unimplemented("HalfDuplexCall"))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("UnimplementedCall"))
    }
}
