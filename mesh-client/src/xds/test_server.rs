//! An in-process ADS server for tests: records every request of every stream and sends
//! the responses a test scripts, over TCP on 127.0.0.1:0 or a unix socket.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use crate::bootstrap::{Bootstrap, ChannelCreds, Node, XdsServer};

/// Every wait of a test is bounded by this.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// One ADS stream as the server sees it.
pub(crate) struct ServerStream {
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    responses: Option<mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>>,
}

impl ServerStream {
    /// The next request of this stream.
    pub(crate) async fn next_request(&mut self) -> DiscoveryRequest {
        match tokio::time::timeout(WAIT, self.requests.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("stream closed while waiting for a request"),
            Err(_) => panic!("no request within {WAIT:?}"),
        }
    }

    /// No further request arrives within `d`.
    pub(crate) async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(d, self.requests.recv()).await {
            panic!("unexpected request {r:?}");
        }
    }

    /// Waits until the client ends the stream.
    pub(crate) async fn wait_closed(&mut self) {
        for _ in 0..32 {
            match tokio::time::timeout(WAIT, self.requests.recv()).await {
                Ok(None) => return,
                Ok(Some(_)) => continue,
                Err(_) => panic!("stream not closed within {WAIT:?}"),
            }
        }
        panic!("stream not closed after 32 more requests");
    }

    /// Sends a response.
    pub(crate) fn respond(&self, resp: DiscoveryResponse) {
        if let Some(tx) = &self.responses {
            let _ = tx.send(Ok(resp));
        }
    }

    /// Ends the stream from the server side (OK status).
    pub(crate) fn close(&mut self) {
        self.responses = None;
    }
}

struct Ads {
    streams: mpsc::UnboundedSender<ServerStream>,
    /// Send the response headers only with the first response, as grpc-go (and so
    /// go-control-plane) servers do, instead of at once.
    lazy_headers: bool,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut incoming = request.into_inner();
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(r)) = incoming.message().await {
                if req_tx.send(r).is_err() {
                    break;
                }
            }
        });
        let _ = self.streams.send(ServerStream {
            requests: req_rx,
            responses: Some(resp_tx),
        });
        if self.lazy_headers {
            // Returning from the handler sends the headers: wait for the first response
            // the test scripts (which it can only do after seeing a request), and put it
            // back in front of the stream.
            let mut resp_rx = resp_rx;
            let Some(first) = resp_rx.recv().await else {
                return Err(Status::unavailable(
                    "test stream closed before any response",
                ));
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(first);
            tokio::spawn(async move {
                while let Some(r) = resp_rx.recv().await {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            });
            return Ok(Response::new(UnboundedReceiverStream::new(rx)));
        }
        Ok(Response::new(UnboundedReceiverStream::new(resp_rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta xDS"))
    }
}

/// A running test server; dropping it stops serving.
pub(crate) struct TestServer {
    /// The `server_uri` to put in a bootstrap.
    pub(crate) uri: String,
    streams: mpsc::UnboundedReceiver<ServerStream>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Serves on 127.0.0.1:0.
    pub(crate) async fn tcp() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        Self::serve(format!("127.0.0.1:{}", addr.port()), incoming, None, false)
    }

    /// Serves on 127.0.0.1:0, sending each stream's response headers only with its first
    /// response (grpc-go servers do this): a client that waits for the headers before
    /// sending its first request never gets any.
    pub(crate) async fn tcp_with_lazy_headers() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        Self::serve(format!("127.0.0.1:{}", addr.port()), incoming, None, true)
    }

    /// Serves on a unix socket, with a `unix:///path` URI.
    pub(crate) async fn unix() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        Self::serve(
            format!("unix://{}", path.display()),
            incoming,
            Some(dir),
            false,
        )
    }

    fn serve<S, IO, E>(
        uri: String,
        incoming: S,
        dir: Option<tempfile::TempDir>,
        lazy_headers: bool,
    ) -> TestServer
    where
        S: tokio_stream::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(Ads {
                    streams: streams_tx,
                    lazy_headers,
                }))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            uri,
            streams,
            _shutdown: shutdown,
            _dir: dir,
        }
    }

    /// The next ADS stream a client opens.
    pub(crate) async fn next_stream(&mut self) -> ServerStream {
        match tokio::time::timeout(WAIT, self.streams.recv()).await {
            Ok(Some(s)) => s,
            _ => panic!("no ADS stream within {WAIT:?}"),
        }
    }

    /// A bootstrap pointing at this server.
    pub(crate) fn bootstrap(&self) -> Bootstrap {
        bootstrap_for(&self.uri)
    }
}

/// A minimal bootstrap for a server URI.
pub(crate) fn bootstrap_for(uri: &str) -> Bootstrap {
    Bootstrap {
        xds_servers: vec![XdsServer {
            server_uri: uri.to_string(),
            channel_creds: ChannelCreds::Insecure,
            server_features: vec!["xds_v3".to_string()],
        }],
        node: Node {
            id: "test-node".to_string(),
            cluster: "test-cluster".to_string(),
            ..Default::default()
        },
        certificate_providers: Default::default(),
        cache_dir: None,
        server_listener_resource_name_template: None,
        client_default_listener_resource_name_template: "%s".to_string(),
        authorities: Default::default(),
    }
}
