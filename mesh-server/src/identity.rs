//! The caller's identity, as a request extension handlers and RBAC read.

use std::net::SocketAddr;

/// Who is calling: inserted into every request's extensions by [`crate::MeshServer`].
///
/// ```no_run
/// # fn handler(request: tonic::Request<()>) {
/// use mesh_server::PeerIdentity;
/// if let Some(peer) = request.extensions().get::<PeerIdentity>() {
///     println!("call from {} ({:?})", peer.addr, peer.spiffe_id);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The server's own address on this connection.
    pub local_addr: SocketAddr,
    /// The verified SPIFFE ID of the peer's certificate (mTLS only; `None` on plaintext).
    pub spiffe_id: Option<String>,
}
