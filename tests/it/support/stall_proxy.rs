//! A loopback TCP proxy that can stall: while stalled it keeps every connection open (and
//! accepts new ones) but forwards nothing in either direction, as an engine or a proxy that
//! stops answering without closing; when it resumes, the bytes held back flow again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct StallProxy {
    address: SocketAddr,
    flowing: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<StallProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (flowing, _) = watch::channel(true);
        let accepted = Arc::new(AtomicUsize::new(0));
        let accept_loop = {
            let flowing = flowing.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let flowing = flowing.subscribe();
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            relay(client, server, flowing).await;
                        }
                    });
                }
            })
        };
        Ok(StallProxy {
            address,
            flowing,
            accepted,
            accept_loop,
        })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Stops forwarding; connections stay open.
    pub fn stall(&self) {
        self.flowing.send_replace(false);
    }

    /// Forwards again, starting with what was held back.
    pub fn resume(&self) {
        self.flowing.send_replace(true);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, flowing: watch::Receiver<bool>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pipe(client_read, server_write, flowing.clone()),
        pipe(server_read, client_write, flowing),
    );
}

/// Copies `from` to `to` while the proxy flows; while it is stalled, neither reads nor writes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if flowing.wait_for(|f| *f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A read that began before the stall holds its bytes until the proxy flows again.
        if flowing.wait_for(|f| *f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
