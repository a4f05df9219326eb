//! The bench's `grpc.testing.TestService` (the interop proto, so grpc-go's generated code
//! serves and calls the same methods): `UnaryCall` answers with `response_size` zero bytes,
//! `StreamingOutputCall` with one message per `response_parameters` entry. Nothing else is
//! done per call, so the rows measure the stacks, not the handler. Plus the client side:
//! [`GrpcCaller`], one worker's calls of a workload over a tonic `Channel` or a
//! `MeshChannel`.

use std::pin::Pin;

use mesh_client::MeshChannel;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use xds_proto::grpc_testing::test_service_client::TestServiceClient;
use xds_proto::grpc_testing::test_service_server::TestService;
use xds_proto::grpc_testing::{
    Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse, StreamingInputCallRequest,
    StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};

use super::workload::{Caller, Workload};

/// Largest payload a request may ask for (the bench asks for at most 10 KiB).
const MAX_RESPONSE: i32 = 1 << 20;
/// Most messages a streaming request may ask for.
const MAX_MESSAGES: usize = 1000;

/// The bench server's TestService.
#[derive(Debug, Clone, Default)]
pub struct BenchService;

fn payload(size: i32) -> Result<Option<Payload>, Status> {
    if !(0..=MAX_RESPONSE).contains(&size) {
        return Err(Status::invalid_argument(format!(
            "response size {size} is outside 0..={MAX_RESPONSE}"
        )));
    }
    Ok(Some(Payload {
        r#type: 0,
        body: vec![0; size as usize],
    }))
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TestService for BenchService {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let size = request.get_ref().response_size;
        Ok(Response::new(SimpleResponse {
            payload: payload(size)?,
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
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let params = request.into_inner().response_parameters;
        if params.len() > MAX_MESSAGES {
            return Err(Status::invalid_argument(format!(
                "{} response messages asked for, at most {MAX_MESSAGES} served",
                params.len()
            )));
        }
        let messages = params
            .iter()
            .map(|p| payload(p.size).map(|payload| StreamingOutputCallResponse { payload }))
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            messages.into_iter().map(Ok),
        ))))
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

/// One worker's calls of `workload` through a generated TestService client.
#[derive(Debug)]
pub struct GrpcCaller<T> {
    client: TestServiceClient<T>,
    workload: Workload,
    unary: SimpleRequest,
    stream: StreamingOutputCallRequest,
}

impl<T> GrpcCaller<T> {
    /// A caller of `workload` through `client`.
    pub fn new(client: TestServiceClient<T>, workload: Workload) -> Self {
        let body = vec![0; workload.request_size()];
        GrpcCaller {
            client,
            workload,
            unary: SimpleRequest {
                response_size: workload.response_size() as i32,
                payload: Some(Payload {
                    r#type: 0,
                    body: body.clone(),
                }),
                ..Default::default()
            },
            stream: StreamingOutputCallRequest {
                response_parameters: vec![
                    ResponseParameters {
                        size: workload.response_size() as i32,
                        ..Default::default()
                    };
                    workload.response_count()
                ],
                payload: Some(Payload { r#type: 0, body }),
                ..Default::default()
            },
        }
    }
}

fn status(s: Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

// The generated client's bounds are long; the two channel types are all the bench needs.
macro_rules! grpc_caller {
    ($channel:ty) => {
        impl Caller for GrpcCaller<$channel> {
            async fn call(&mut self) -> Result<(), String> {
                match self.workload {
                    Workload::Unary100 | Workload::Unary10K => {
                        let reply = self
                            .client
                            .unary_call(self.unary.clone())
                            .await
                            .map_err(status)?;
                        let got = reply.get_ref().payload.as_ref().map_or(0, |p| p.body.len());
                        if got != self.workload.response_size() {
                            return Err(format!(
                                "reply of {got} bytes, {} asked for",
                                self.workload.response_size()
                            ));
                        }
                    }
                    Workload::Stream => {
                        let mut stream = self
                            .client
                            .streaming_output_call(self.stream.clone())
                            .await
                            .map_err(status)?
                            .into_inner();
                        let mut n = 0;
                        while stream.message().await.map_err(status)?.is_some() {
                            n += 1;
                        }
                        if n != self.workload.response_count() {
                            return Err(format!(
                                "{n} streamed messages, {} asked for",
                                self.workload.response_count()
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    };
}

grpc_caller!(Channel);
grpc_caller!(MeshChannel);
