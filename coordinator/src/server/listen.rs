//! Listening sockets: a deep accept backlog, enough file descriptors for
//! one connection per worker, and accepted connections that a client
//! cannot use to take the server's descriptors, memory or CPU.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Most connections a server holds at once: one per worker (at most
/// [`crate::service::MAX_WORKERS`]) and room for clients. Each costs a
/// file descriptor and about 30 KiB (an idle HTTP/2 connection's buffers,
/// measured), so 70 000 cost about 2 GiB; past the limit a new connection
/// is closed at once, and the server keeps serving the ones it holds.
pub const MAX_CONNECTIONS: usize = crate::service::MAX_WORKERS + 4096;

/// Most connections one client address holds at once (an IPv6 client:
/// its /64, which one host can fill with addresses). Far above what a
/// worker fleet behind one NAT address or a local run's workers on
/// loopback (at most 1 024) open, so that one client alone cannot take
/// [`MAX_CONNECTIONS`] (about 2 GiB): it is held to about 250 MiB.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 8192;

/// Descriptors kept free for the server's own work (its store file, etcd
/// connections, logs) when the open-files limit is lower than
/// [`MAX_CONNECTIONS`]: an eighth of the limit, between 16 and 256.
fn reserved_fds(limit: u64) -> u64 {
    (limit / 8).clamp(16, 256)
}

/// A connection must send its first bytes within this long (a gRPC client
/// sends its HTTP/2 preface at once, a TLS client its hello), or it is
/// closed: connections opened and left silent cannot pile up.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings on a connection idle this long; a peer that does not
/// answer within [`KEEPALIVE_TIMEOUT`] (a worker host that lost power, a
/// network that dropped it) has its connection closed, and its descriptor
/// and slot freed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The gRPC server every listener of this crate serves with.
pub(super) fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

/// How many connections this process can hold: [`MAX_CONNECTIONS`], or
/// fewer when its open-files limit is lower.
pub fn connection_limit() -> usize {
    let by_fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft.saturating_sub(reserved_fds(soft)).max(1))
        .unwrap_or(u64::MAX);
    MAX_CONNECTIONS.min(usize::try_from(by_fds).unwrap_or(usize::MAX))
}

/// Accepted connections, at most [`connection_limit`] at once, with
/// Nagle's algorithm off (small gRPC replies would otherwise wait for the
/// peer's delayed ACK, ~40 ms a round trip). An `accept` that fails (out
/// of descriptors or memory) is retried after a pause that doubles up to
/// a second, instead of at once in a loop that takes a core.
pub(super) fn incoming(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<Guarded>> + Send + 'static {
    incoming_with(
        listener,
        connection_limit(),
        MAX_CONNECTIONS_PER_ADDRESS,
        FIRST_BYTES_TIMEOUT,
    )
}

fn incoming_with(
    listener: TcpListener,
    limit: usize,
    per_address: usize,
    first_bytes: Duration,
) -> impl Stream<Item = std::io::Result<Guarded>> + Send + 'static {
    let permits = Arc::new(Semaphore::new(limit));
    let addresses = Addresses::default();
    let start = (listener, permits, addresses, Duration::ZERO, 0u64);
    futures::stream::unfold(
        start,
        move |(listener, permits, addresses, mut pause, mut refused)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        pause = Duration::ZERO;
                        let Some(address) = addresses.take(peer.ip(), per_address) else {
                            refused += 1;
                            if refused.is_power_of_two() {
                                tracing::warn!(
                                    per_address,
                                    peer = %peer.ip(),
                                    refused,
                                    "connection limit of one address reached; its new connections are closed"
                                );
                            }
                            continue;
                        };
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            // Full: close it now rather than leave it queued.
                            refused += 1;
                            if refused.is_power_of_two() {
                                tracing::warn!(
                                    limit,
                                    refused,
                                    "connection limit reached; new connections are closed"
                                );
                            }
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let guarded = Guarded::new(stream, (permit, address), first_bytes);
                        return Some((Ok(guarded), (listener, permits, addresses, pause, refused)));
                    }
                    Err(e) => {
                        pause = (pause * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                        if pause == Duration::from_secs(1) || pause == Duration::from_millis(5) {
                            tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "accept failed; retrying");
                        }
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        },
    )
}

/// How many connections each client address holds (IPv6 by /64), for
/// [`MAX_CONNECTIONS_PER_ADDRESS`]. Holds only addresses with a connection
/// open, so at most [`MAX_CONNECTIONS`] entries.
#[derive(Clone, Default)]
struct Addresses(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Addresses {
    /// The address a client is counted under: an IPv4 address (mapped
    /// ones too) as it is, an IPv6 one by its /64.
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) if !v6.is_loopback() => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            other => other,
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more connection from `ip`, if it holds fewer than
    /// `limit`.
    fn take(&self, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let key = Self::key(ip);
        let mut counts = self.counts();
        let n = counts.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            key,
            addresses: self.clone(),
        })
    }
}

/// One connection counted for its address, until dropped.
struct AddressSlot {
    key: IpAddr,
    addresses: Addresses,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.addresses.counts();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// An accepted connection: its slots among the server's connections and
/// its address's (freed when it closes) and, until its first bytes
/// arrive, a deadline.
pub struct Guarded {
    stream: TcpStream,
    _slot: (OwnedSemaphorePermit, AddressSlot),
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        slot: (OwnedSemaphorePermit, AddressSlot),
        first_bytes: Duration,
    ) -> Self {
        Self {
            stream,
            _slot: slot,
            first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes))),
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let Some(deadline) = self.first_bytes.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_bytes = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no bytes from the client within the first-bytes timeout",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Reads from a client socket until the server closes it (or `wait`
    /// passes): whether it was closed.
    async fn closed(client: &mut TcpStream, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, client.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Past the limit a connection is closed at once; closing one frees a
    /// slot for the next.
    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_slots_come_back() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut accepted = Box::pin(incoming_with(listener, 2, 8, Duration::from_secs(60)));
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            held.push(accepted.next().await.expect("stream").expect("accepted"));
        }
        let mut third = TcpStream::connect(addr).await.expect("connect");
        // The stream only yields once a slot is free: drive it meanwhile.
        let next = tokio::spawn(async move { (accepted.next().await, accepted) });
        assert!(closed(&mut third, Duration::from_secs(5)).await, "refused");
        for c in &mut clients {
            assert!(!closed(c, Duration::from_millis(100)).await, "kept");
        }
        drop(held.pop());
        let _fourth = TcpStream::connect(addr).await.expect("connect");
        let (got, _accepted) = next.await.expect("join");
        assert!(
            got.expect("stream").is_ok(),
            "a freed slot takes the next one"
        );
    }

    /// A client connecting from `ip` (any of 127/8 is loopback on Linux).
    async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{ip}:0").parse().expect("addr"))
            .expect("bind the client");
        socket.connect(to).await.expect("connect")
    }

    /// Past its limit one address's new connections are closed, while
    /// another address still connects; closing one frees its slot.
    #[tokio::test]
    async fn one_address_cannot_take_every_connection() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut accepted = Box::pin(incoming_with(listener, 8, 2, Duration::from_secs(60)));
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(connect_from("127.0.0.2", addr).await);
            held.push(accepted.next().await.expect("stream").expect("accepted"));
        }
        let mut third = connect_from("127.0.0.2", addr).await;
        let other = connect_from("127.0.0.3", addr).await;
        let got = accepted.next().await.expect("stream").expect("accepted");
        assert_eq!(
            got.connect_info().remote_addr,
            other.local_addr().ok(),
            "the other address is served, the third of the first skipped"
        );
        assert!(closed(&mut third, Duration::from_secs(5)).await, "refused");
        drop(held.pop());
        let fourth = connect_from("127.0.0.2", addr).await;
        let got = accepted.next().await.expect("stream").expect("accepted");
        assert_eq!(got.connect_info().remote_addr, fourth.local_addr().ok());
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_and_ipv6_prefix() {
        let key = |s: &str| Addresses::key(s.parse().expect("ip")).to_string();
        assert_eq!(key("10.1.2.3"), "10.1.2.3");
        assert_eq!(key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::1");
        let addresses = Addresses::default();
        let a = addresses.take("2001:db8::1".parse().expect("ip"), 2);
        let b = addresses.take("2001:db8::2".parse().expect("ip"), 2);
        assert!(a.is_some() && b.is_some());
        assert!(
            addresses
                .take("2001:db8::3".parse().expect("ip"), 2)
                .is_none()
        );
        drop((a, b));
        assert!(
            addresses.counts().is_empty(),
            "no entry for an address without connections"
        );
    }

    /// A connection that sends nothing is closed after the first-bytes
    /// timeout; one that sends is not.
    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_first_bytes_timeout() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut accepted = Box::pin(incoming_with(listener, 8, 8, Duration::from_millis(300)));
        // The server side reads until its read fails or ends, then drops.
        let serve = |mut conn: Guarded| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
        };
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        serve(accepted.next().await.expect("stream").expect("accepted"));
        let mut talker = TcpStream::connect(addr).await.expect("connect");
        serve(accepted.next().await.expect("stream").expect("accepted"));
        talker.write_all(b"PRI * HTTP/2.0").await.expect("write");
        assert!(
            closed(&mut silent, Duration::from_secs(5)).await,
            "silent one closed"
        );
        assert!(
            !closed(&mut talker, Duration::from_millis(600)).await,
            "a client that spoke keeps its connection"
        );
    }
}
