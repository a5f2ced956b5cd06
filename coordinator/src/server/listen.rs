//! Listening sockets: a deep accept backlog, and enough file descriptors
//! for one connection per worker.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Accepted connections with Nagle's algorithm off: small gRPC replies
/// would otherwise wait for the peer's delayed ACK (~40 ms a round trip).
pub(super) fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Pending connections the kernel queues before the server accepts them
/// (capped by `net.core.somaxconn`). A fleet of workers that (re)connects
/// at once — a coordinator restart, a large StatefulSet starting — must
/// not overflow it.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Raises this process's open-files soft limit to its hard limit and
/// returns the new soft limit. Every worker holds one connection (one file
/// descriptor); Debian's default soft limit of 1024 would stop a coordinator
/// at about a thousand workers: past the limit the kernel keeps new
/// connections in the listen backlog and the server retries `accept` until a
/// descriptor frees, so they wait instead of being served.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Binds `addr` (use port 0 for any free port) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
