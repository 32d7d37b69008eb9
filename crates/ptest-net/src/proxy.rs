//! The proxy itself: one listening address, one upstream address, and the [`Faults`] in
//! force, which may change at any time through a `watch` channel.
//!
//! Each direction of a connection is a reader and a writer joined by a small queue: the
//! reader stamps every chunk with the time it may leave (now plus the latency, never before
//! the chunk ahead of it, so order is kept), the writer waits for that time and for the
//! bandwidth budget. Latency therefore delays data without capping throughput, as a long
//! cable would.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::faults::Faults;

/// The most bytes read at once from one side.
const CHUNK: usize = 64 * 1024;

/// Chunks read ahead of the writer in one direction (they wait out their latency there).
const QUEUE: usize = 16;

/// The faults in force and the generation of the setting they came from (see
/// [`Proxy::serve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setting {
    /// Grows with every change, so a writer can tell when its change is in force.
    pub generation: u64,
    /// What the proxy does to traffic.
    pub faults: Faults,
}

/// A TCP proxy from `listen` to `upstream` that applies faults.
#[derive(Debug, Clone, Copy)]
pub struct Proxy {
    listen: SocketAddr,
    upstream: SocketAddr,
}

impl Proxy {
    /// A proxy accepting on `listen` and connecting each client to `upstream`.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Proxy {
        Proxy { listen, upstream }
    }

    /// Serves until `setting`'s sender is dropped. Every setting is put in force as it
    /// arrives (under `down` the listener is closed, and opened again when `down` is
    /// cleared); `applied` is then called with its generation, so whoever changed it can
    /// wait until new connections see the change. Fails when the address cannot be bound.
    pub async fn serve(
        &self,
        mut setting: watch::Receiver<Setting>,
        mut applied: impl FnMut(u64),
    ) -> io::Result<()> {
        loop {
            let current = *setting.borrow_and_update();
            if current.faults.down {
                applied(current.generation);
                if setting.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            let listener = TcpListener::bind(self.listen).await?;
            applied(current.generation);
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            tokio::spawn(connection(client, self.upstream, setting.clone()));
                        }
                        Err(e) => {
                            // Out of descriptors, or a client gone before it was accepted.
                            tracing::warn!("accepting a connection: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                    changed = setting.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        let now = *setting.borrow();
                        if now.faults.down {
                            break; // the listener closes; the outer loop acknowledges
                        }
                        applied(now.generation);
                    }
                }
            }
        }
    }
}

/// How one direction of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The sender closed its side; the close was passed on.
    Eof,
    /// The drop-after budget is spent: the whole connection closes.
    Spent,
}

/// How a whole connection ends.
enum End {
    /// Both sides closed normally (FIN).
    Close,
    /// Both sides are reset (RST).
    Reset,
}

/// Makes closing `stream` send a reset instead of a normal close.
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn connection(client: TcpStream, upstream: SocketAddr, setting: watch::Receiver<Setting>) {
    let faults = setting.borrow().faults;
    if faults.reset || faults.down {
        reset_on_close(&client);
        return;
    }
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            // What a client of the real service would see if it were not listening.
            tracing::debug!("connecting to {upstream}: {e}");
            reset_on_close(&client);
            return;
        }
    };
    let (mut client, mut server) = (client, server);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = relay(&mut client, &mut server, setting).await;
    if let End::Reset = end {
        reset_on_close(&client);
        reset_on_close(&server);
    }
}

/// Passes data both ways until both sides closed, a fault ends the connection or a side
/// fails.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    mut setting: watch::Receiver<Setting>,
) -> End {
    let passed = AtomicU64::new(0);
    let (client_r, client_w) = client.split();
    let (server_r, server_w) = server.split();
    let up = pipe(client_r, server_w, setting.clone(), &passed);
    let down = pipe(server_r, client_w, setting.clone(), &passed);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let flow = tokio::select! {
            flow = &mut up, if !up_done => { up_done = true; flow }
            flow = &mut down, if !down_done => { down_done = true; flow }
            Ok(now) = setting.wait_for(|s| s.faults.reset || s.faults.down) => {
                return if now.faults.reset { End::Reset } else { End::Close };
            }
        };
        match flow {
            Ok(Flow::Eof) => {}
            Ok(Flow::Spent) => return End::Close,
            // One side failed (reset by its peer, or gone): the other learns it the same way.
            Err(_) => return End::Reset,
        }
    }
    End::Close
}

/// A chunk on its way through one direction.
struct Chunk {
    /// When it may be written.
    due: Instant,
    bytes: Vec<u8>,
    /// Set on the last chunk: how the direction ends after it.
    last: Option<Flow>,
}

/// Waits while the `timeout` fault holds all traffic.
async fn hold(setting: &mut watch::Receiver<Setting>) {
    // A dropped sender ends the wait: no one can clear the fault any more, and the proxy is
    // going away.
    let _ = setting.wait_for(|s| !s.faults.timeout).await;
}

/// Copies `from` to `to`, applying the faults, until `from` closes or the drop-after budget
/// (`passed` counts both directions) is spent.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    setting: watch::Receiver<Setting>,
    passed: &AtomicU64,
) -> io::Result<Flow> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);
    let mut read_setting = setting.clone();
    let reader = async move {
        let mut last_due = Instant::now();
        loop {
            hold(&mut read_setting).await;
            let mut bytes = Vec::with_capacity(CHUNK);
            let n = from.read_buf(&mut bytes).await?;
            let faults = read_setting.borrow().faults;
            let due = (Instant::now() + faults.delay()).max(last_due);
            last_due = due;
            let mut last = (n == 0).then_some(Flow::Eof);
            let before = passed.fetch_add(n as u64, Ordering::SeqCst);
            if let Some(limit) = faults.drop_after
                && before + n as u64 >= limit
            {
                bytes.truncate(limit.saturating_sub(before) as usize);
                last = Some(Flow::Spent);
            }
            let done = last.is_some();
            if tx.send(Chunk { due, bytes, last }).await.is_err() || done {
                return io::Result::Ok(());
            }
        }
    };
    let mut write_setting = setting;
    let writer = async move {
        let mut next_slot = Instant::now();
        while let Some(chunk) = rx.recv().await {
            if chunk.due > Instant::now() {
                sleep_until(chunk.due).await;
            }
            let mut rest = &chunk.bytes[..];
            while !rest.is_empty() {
                hold(&mut write_setting).await;
                let bandwidth = write_setting.borrow().faults.bandwidth;
                let n = match bandwidth {
                    Some(rate) => {
                        next_slot = next_slot.max(Instant::now());
                        sleep_until(next_slot).await;
                        let n = rate.slice().min(rest.len());
                        next_slot += rate.time_for(n);
                        n
                    }
                    None => rest.len(),
                };
                to.write_all(&rest[..n]).await?;
                rest = &rest[n..];
            }
            match chunk.last {
                Some(Flow::Eof) => {
                    to.shutdown().await?;
                    return Ok(Flow::Eof);
                }
                Some(flow) => return Ok(flow),
                None => {}
            }
        }
        // The reader failed; its error is the one reported.
        Ok(Flow::Eof)
    };
    tokio::pin!(writer);
    tokio::select! {
        read = reader => {
            read?;
            writer.await
        }
        written = &mut writer => written,
    }
}

/// Unit tests run on tokio's paused clock: sleeps end as soon as nothing else can run, and
/// the times they measure are the proxy's own delays, not the host's speed.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    use super::*;
    use crate::faults::Bandwidth;

    /// An echo server and a proxy in front of it, listening; returns the proxy's address and
    /// the sender that changes its faults (acknowledged generations arrive on the receiver).
    async fn proxied_echo() -> (
        SocketAddr,
        watch::Sender<Setting>,
        tokio::sync::mpsc::UnboundedReceiver<u64>,
    ) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (tx, rx) = watch::channel(Setting::default());
        let (acks, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            Proxy::new(port, upstream)
                .serve(rx, move |g| {
                    let _ = acks.send(g);
                })
                .await
                .unwrap();
        });
        let mut ack_rx = ack_rx;
        assert_eq!(ack_rx.recv().await, Some(0), "listening");
        (port, tx, ack_rx)
    }

    async fn set(
        tx: &watch::Sender<Setting>,
        acks: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
        faults: Faults,
    ) {
        let generation = tx.borrow().generation + 1;
        tx.send(Setting { generation, faults }).unwrap();
        while acks.recv().await.unwrap() < generation {}
    }

    async fn round_trip(addr: SocketAddr) -> Duration {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = tokio::time::Instant::now();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn passes_data_both_ways_and_half_closes() {
        let (addr, _tx, _acks) = proxied_echo().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let (_, got) = tokio::join!(send, r.read_to_end(&mut back));
        got.unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_each_direction() {
        let (addr, tx, mut acks) = proxied_echo().await;
        let plain = round_trip(addr).await;
        set(
            &tx,
            &mut acks,
            Faults {
                latency: Some(Duration::from_millis(50)),
                ..Faults::default()
            },
        )
        .await;
        let slow = round_trip(addr).await;
        // On the paused test clock: 50 ms each way is 100 ms per round trip.
        assert!(slow >= Duration::from_millis(100), "{slow:?} vs {plain:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn down_refuses_and_clearing_listens_again() {
        let (addr, tx, mut acks) = proxied_echo().await;
        set(
            &tx,
            &mut acks,
            Faults {
                down: true,
                ..Faults::default()
            },
        )
        .await;
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        set(&tx, &mut acks, Faults::default()).await;
        round_trip(addr).await;
    }

    #[tokio::test(start_paused = true)]
    async fn reset_resets_open_and_new_connections() {
        let (addr, tx, mut acks) = proxied_echo().await;
        let mut open = TcpStream::connect(addr).await.unwrap();
        round_trip(addr).await;
        set(
            &tx,
            &mut acks,
            Faults {
                reset: true,
                ..Faults::default()
            },
        )
        .await;
        let mut buf = [0; 1];
        let err = open.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let mut new = TcpStream::connect(addr).await.unwrap();
        let err = new.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test(start_paused = true)]
    async fn drop_after_closes_once_the_bytes_passed() {
        let (addr, tx, mut acks) = proxied_echo().await;
        set(
            &tx,
            &mut acks,
            Faults {
                drop_after: Some(1000),
                ..Faults::default()
            },
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // 400 bytes up and 400 back leave 200 of the budget: 200 more up, none back.
        s.write_all(&[7; 400]).await.unwrap();
        let mut back = [0; 400];
        s.read_exact(&mut back).await.unwrap();
        s.write_all(&[8; 400]).await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{} bytes after the budget", rest.len());
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_holds_traffic_until_cleared() {
        let (addr, tx, mut acks) = proxied_echo().await;
        set(
            &tx,
            &mut acks,
            Faults {
                timeout: true,
                ..Faults::default()
            },
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"held").await.unwrap();
        let mut buf = [0; 4];
        let waited = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
        assert!(waited.is_err(), "nothing passes under timeout");
        set(&tx, &mut acks, Faults::default()).await;
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"held");
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_paces_a_transfer() {
        let (addr, tx, mut acks) = proxied_echo().await;
        set(
            &tx,
            &mut acks,
            Faults {
                bandwidth: Some(Bandwidth::new(100_000).unwrap()),
                ..Faults::default()
            },
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = tokio::time::Instant::now();
        s.write_all(&[1; 30_000]).await.unwrap();
        let mut back = vec![0; 30_000];
        s.read_exact(&mut back).await.unwrap();
        // On the paused test clock: 30 kB at 100 kB/s, paced in 5 kB slices, takes 0.25 s
        // after the first slice, each way.
        assert!(start.elapsed() >= Duration::from_millis(250));
    }
}
