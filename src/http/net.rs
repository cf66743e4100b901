//! The accept loop: TCP options, connection limits, the express lane then hyper, graceful
//! shutdown.
//!
//! burnlink runs its own small loop over hyper instead of `axum::serve` for two reasons. It
//! sets TCP_NODELAY on every socket (without it a keep-alive client waits ~40 ms on a delayed
//! ACK per response). And it wraps every connection in [`FlushTracked`] ([`crate::http::conn`]),
//! which tells a download when its last bytes reached the kernel and fences a transfer whose
//! lease may have lapsed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower::ServiceExt;

use crate::config::PinLoops;
use crate::http::affinity;
use crate::http::conn::{ConnInfo, ConnLimits, FlushTracked, Prefixed};
use crate::http::error::ApiError;
use crate::http::express;
use crate::http::switch::{Lookout, Switch};
use crate::state::App;

/// Connections let in past `max_connections`, each for one request to `/healthz` or
/// `/metrics` (anything else is 503), with a short head deadline and no keep-alive, so probes
/// and scrapes still get through an accept flood.
pub const HEADROOM: usize = 16;

/// How long an overflow connection may take to send its request head.
const HEADROOM_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes an overflow connection may ask for.
const PROBES: &[&str] = &["/healthz", "/metrics"];

/// How long cut-off transfers get to release their leases once the grace period is over.
const CUT_SETTLE: Duration = Duration::from_secs(5);

/// The server's listening socket, already listening (so a client may connect as soon as the
/// server says it listens).
pub enum Listeners {
    /// Served by the work-stealing runtime the server runs on.
    Shared(TcpListener),
    /// The same socket once per event loop (duplicated descriptors): every loop waits on it and
    /// a new connection goes to the first that calls `accept`. A new connection wakes every
    /// loop: nginx's workers ask for `EPOLLEXCLUSIVE` (one waiting worker is woken), which
    /// tokio's registration cannot express, so a loop already running may take a burst that a
    /// sleeping one could have had (docs/benchmarks.md, "The seventh performance pass"). Each
    /// loop then serves its connections on its own thread: no hand-over between workers, no
    /// cross-thread wake-up per response. The one exception is between two requests of the
    /// express lane, when a pinned loop may pass a connection to the loop on the CPU its
    /// packets arrive on ([`Shared::steer`]). A socket per loop with
    /// `SO_REUSEPORT` spread connections by hash instead, blind to load, and its p99 at c=32 was
    /// the worst of the three (docs/benchmarks.md). Beside each descriptor, the CPU its loop is
    /// held to, if any ([`PinLoops`]).
    PerLoop(Vec<(std::net::TcpListener, Option<usize>)>),
}

/// Backlog of the listening socket (what tokio's own `bind` uses).
const BACKLOG: u32 = 1024;

/// Binds `addr` for `loops` event loops (0: for the shared runtime), each placed on a CPU as
/// `pin` says. Returns the socket and the address it listens on (its port chosen by the
/// kernel if `addr`'s is 0).
pub async fn bind(
    addr: SocketAddr,
    loops: usize,
    pin: PinLoops,
) -> io::Result<(Listeners, SocketAddr)> {
    if loops == 0 {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        return Ok((Listeners::Shared(listener), bound));
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's own `bind` does: a restarted server rebinds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Not registered with any runtime yet: each loop registers its own descriptor.
    let listener = socket.listen(BACKLOG)?.into_std()?;
    let bound = listener.local_addr()?;
    let mut each = (1..loops)
        .map(|_| listener.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    each.push(listener);
    let cpus = affinity::placement(loops, affinity::process_cpus(), pin);
    let pinned: Vec<usize> = cpus.iter().flatten().copied().collect();
    if pinned.is_empty() {
        tracing::info!(loops, pin = pin.as_str(), "event loops not pinned to CPUs");
    } else {
        tracing::info!(loops, cpus = ?pinned, "event loops pinned, one CPU each");
    }
    Ok((
        Listeners::PerLoop(each.into_iter().zip(cpus).collect()),
        bound,
    ))
}

/// What every accept loop shares: the connection limits count across all of them, and one
/// shutdown drains them all.
struct Shared {
    app: Arc<App>,
    router: Router,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    /// Asked to stop: accept no more, and close each connection once its current request is
    /// answered.
    stop: Switch,
    /// Grace is over: cut the connections still open.
    cut: Switch,
    conns: TaskTracker,
    slots: Arc<Semaphore>,
    spare: Arc<Semaphore>,
    /// Each event loop's place (one, `shared`, on the work-stealing runtime).
    seats: Vec<Seat>,
}

/// One event loop as the others see it: where to send it a connection, and how many it has.
struct Seat {
    /// The CPU it is held to, if any: only a pinned loop takes connections from others.
    cpu: Option<usize>,
    /// Connections it serves now (what `gauge` shows).
    open: AtomicUsize,
    gauge: metrics::Gauge,
    /// Connections moved to it.
    moved_in: metrics::Counter,
    /// Where connections moved to it arrive; `None` on the shared runtime.
    inbox: Option<mpsc::UnboundedSender<Moved>>,
    /// [`Shared::stop`] and [`Shared::cut`] as this loop's connections wait on them. A wake
    /// reads only their flag; the waiter list is locked when a connection's wait first
    /// registers, and is this loop's alone, so the two loops never take the same lock for it
    /// (docs/benchmarks.md, the twelfth and sixteenth passes).
    stop: Lookout,
    cut: Lookout,
}

/// A lane connection between two requests, on its way to another event loop.
struct Moved {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    /// Keeps shutdown's drain waiting while no loop holds the connection.
    _tracked: TaskTrackerToken,
}

/// How far apart a move may leave two loops' connection counts. Where every connection's
/// packets arrive on one CPU (a network card with one receive queue), the loops stay this
/// close to even rather than all on that CPU's loop; 2 lets two loops trade connections one at
/// a time.
const MOVE_SLACK: usize = 2;

impl Shared {
    /// The event loop a lane connection served by loop `me` should move to, if any.
    ///
    /// Which loop accepts a connection is a race (every loop is woken, [`Listeners`]), so one
    /// client's connections (a load generator's thread, a proxy's keep-alive pool) could sit
    /// on both loops or crowd onto one, and at 32 connections the p99 turned on which
    /// (docs/benchmarks.md, "The tenth performance pass"). The kernel records the CPU that
    /// handled a connection's last packets (`SO_INCOMING_CPU`): on loopback the CPU the
    /// client sent from, from a network card the CPU that took its receive queue. Serving the
    /// connection on the loop pinned to that CPU gathers each sender's connections on one
    /// loop, on the core already handling their packets. The move is refused if it would put
    /// the two loops' counts more than [`MOVE_SLACK`] apart, and while the server stops.
    fn steer(&self, me: usize, stream: &TcpStream) -> Option<usize> {
        let here = self.seats.get(me)?;
        if here.cpu.is_none() || here.stop.is_on() {
            return None;
        }
        let cpu = rustix::net::sockopt::socket_incoming_cpu(stream).ok()? as usize;
        let to = self.seats.iter().position(|s| s.cpu == Some(cpu))?;
        let there = &self.seats[to];
        if to == me || there.inbox.as_ref().is_none_or(|i| i.is_closed()) {
            return None;
        }
        let mine = here.open.load(Ordering::Relaxed);
        let theirs = there.open.load(Ordering::Relaxed);
        // After the move, theirs + 1 may exceed mine - 1 by at most the slack.
        (theirs + 2 <= mine + MOVE_SLACK).then_some(to)
    }
}

/// Serves `app` on `listeners` (over TLS when `tls` is given) until `shutdown` resolves,
/// then waits up to `grace` for open connections to finish and for `tasks` (the work that
/// settles their transfers) to end. Connections still open after that are cut: dropping them
/// aborts their transfers, which release their leases (and log it) before this returns.
pub async fn serve(
    listeners: Listeners,
    app: Arc<App>,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    tasks: TaskTracker,
) {
    // Every loop's series before any loop starts, so each is there before the first
    // connection is answered.
    let (stop, cut) = (Switch::new(), Switch::new());
    let (seats, inboxes): (Vec<Seat>, Vec<_>) = match &listeners {
        Listeners::Shared(_) => (
            vec![Seat::new("shared".into(), None, None, (&stop, &cut))],
            Vec::new(),
        ),
        Listeners::PerLoop(each) => each
            .iter()
            .enumerate()
            .map(|(i, (_, cpu))| {
                let (tx, rx) = mpsc::unbounded_channel();
                (Seat::new(i.to_string(), *cpu, Some(tx), (&stop, &cut)), rx)
            })
            .unzip(),
    };
    let shared = Arc::new(Shared {
        router: crate::http::router(app.clone()),
        app,
        limits,
        tls,
        stop,
        cut,
        conns: TaskTracker::new(),
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        spare: Arc::new(Semaphore::new(HEADROOM)),
        seats,
    });
    // Event loops keep running (serving their connections and settling their transfers) until
    // the drain below is over.
    let finished = CancellationToken::new();
    let mut loops = Vec::new();
    match listeners {
        Listeners::Shared(listener) => {
            tokio::spawn(accept_loop(listener, shared.clone(), 0));
        }
        Listeners::PerLoop(listeners) => {
            for (i, ((listener, cpu), inbox)) in listeners.into_iter().zip(inboxes).enumerate() {
                let (shared, finished) = (shared.clone(), finished.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("burnlink-loop-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            affinity::pin_this_thread(cpu);
                        }
                        event_loop(listener, shared, i, inbox, finished)
                    });
                match spawned {
                    Ok(handle) => loops.push(handle),
                    Err(e) => tracing::error!(error = %e, "could not start an event loop"),
                }
            }
        }
    }
    shutdown.await;
    shared.stop.flip();
    let drained = async {
        shared.conns.close();
        shared.conns.wait().await;
        tasks.close();
        tasks.wait().await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed and transfers settled"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs(), "shutdown grace period over; cutting remaining transfers");
            shared.cut.flip();
            shared.conns.close();
            tasks.close();
            let settled = async {
                shared.conns.wait().await;
                tasks.wait().await;
            };
            if tokio::time::timeout(CUT_SETTLE, settled).await.is_err() {
                tracing::warn!("some transfers did not settle; their leases lapse by themselves");
            }
        }
    }
    finished.cancel();
    for handle in loops {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

/// One event loop: a single-threaded runtime that accepts on its descriptor of the listening
/// socket, takes the connections other loops move to it (`inbox`), and serves them until
/// `finished`.
fn event_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    me: usize,
    mut inbox: mpsc::UnboundedReceiver<Moved>,
    finished: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start an event loop's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let arrivals = {
            let shared = shared.clone();
            async move {
                while let Some(moved) = inbox.recv().await {
                    let Moved {
                        stream,
                        peer,
                        slot,
                        _tracked,
                    } = moved;
                    match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            shared.seats[me].moved_in.increment(1);
                            spawn_conn(&shared, me, stream, peer, slot)
                        }
                        Err(e) => tracing::debug!(error = %e, %peer, "a moved connection was lost"),
                    }
                }
            }
        };
        let accepting = async {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, shared.clone(), me).await,
                Err(e) => tracing::error!(error = %e, "an event loop could not take its socket"),
            }
            finished.cancelled().await;
        };
        tokio::select! {
            () = accepting => {}
            () = arrivals => {}
        }
    });
}

/// Accepts connections on `listener` and serves each on this runtime (loop `me`), until asked
/// to stop.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, me: usize) {
    let Shared { slots, spare, .. } = &*shared;
    let stop = &shared.seats[me].stop;
    let mut accept_warned: Option<std::time::Instant> = None;
    loop {
        // Every slot and all the headroom taken: wait for a connection to close before
        // accepting another, rather than accepting and dropping in a spin.
        if slots.available_permits() == 0 && spare.available_permits() == 0 {
            tokio::select! {
                biased;
                () = stop.flipped() => break,
                _ = slots.acquire() => {}
                _ = spare.acquire() => {}
            }
        }
        let (stream, peer) = tokio::select! {
            // Shutdown first: once it is asked for, no further connection is taken.
            biased;
            () = stop.flipped() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so once a minute rather than on every try.
                    let now = std::time::Instant::now();
                    if accept_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        accept_warned = Some(now);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(permit) => Slot::Full(permit),
            Err(_) => match spare.clone().try_acquire_owned() {
                Ok(permit) => Slot::Probe(permit),
                // Raced away since the wait above: close this one and wait again.
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        spawn_conn(&shared, me, stream, peer, slot);
    }
}

/// Serves a connection on this runtime (loop `me`): the express lane first on plain TCP, then
/// hyper. A lane connection the loop gives up between two requests goes to the other loop's
/// inbox; it stays here if that loop has stopped taking any.
fn spawn_conn(shared: &Arc<Shared>, me: usize, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let shared = shared.clone();
    let counted = Counted::new(&shared, me);
    let conns = shared.conns.clone();
    conns.spawn(async move {
        let Shared {
            app,
            router,
            limits,
            tls,
            ..
        } = &*shared;
        let Seat { stop, cut, .. } = &shared.seats[me];
        let limits = *limits;
        // Under TLS too, the tracker wraps the TCP stream itself: a completed flush still
        // means "every byte is in the kernel's socket buffer".
        let (io, flushed, state) = FlushTracked::new(stream, limits.write_idle, tls.is_none());
        let info = ConnInfo {
            peer,
            flushed,
            state,
        };
        let (router, stop) = (router.clone(), stop.clone());
        let _counted = counted;
        let probe_only = matches!(slot, Slot::Probe(_));
        let limits = if probe_only {
            ConnLimits {
                header_read_timeout: HEADROOM_HEAD_TIMEOUT.min(limits.header_read_timeout),
                ..limits
            }
        } else {
            limits
        };
        let served = async {
            match tls {
                // Plain TCP: the express lane first ([`express`]).
                None if !probe_only => {
                    let mut io = io;
                    let steer = |s: &TcpStream| shared.steer(me, s);
                    match express::serve(&mut io, &info, app, &limits, &stop, steer).await {
                        express::Left::ToHyper(read) => {
                            let io = Prefixed::new(read.freeze(), io);
                            serve_conn(TokioIo::new(io), router, info, limits, stop, probe_only)
                                .await
                        }
                        express::Left::Closed => {}
                        express::Left::Move(to) => {
                            // The slot goes with the connection.
                            hand_over(&shared, me, to, io.into_inner(), peer, slot);
                            return;
                        }
                    }
                }
                None => serve_conn(TokioIo::new(io), router, info, limits, stop, probe_only).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head.
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io))
                        .await
                    {
                        Ok(Ok(io)) => {
                            serve_conn(TokioIo::new(io), router, info, limits, stop, probe_only)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            // The connection's slot is held until it is served (or handed over with it).
            drop(slot);
        };
        tokio::select! {
            () = served => {}
            () = cut.flipped() => {}
        }
    });
}

/// Sends a lane connection, between two of its requests, from loop `me` to loop `to`: out of
/// this loop's reactor and into that loop's inbox, counted by shutdown's drain on the way. If
/// that loop has stopped taking connections (the server is stopping), it is served here after
/// all; a socket the reactor will not let go of is closed, with no request in hand.
fn hand_over(
    shared: &Arc<Shared>,
    me: usize,
    to: usize,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let Some(inbox) = &shared.seats[to].inbox else {
        // `steer` names only loops with an inbox; were it otherwise, the connection stays.
        spawn_conn(shared, me, stream, peer, slot);
        return;
    };
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let moved = Moved {
        stream,
        peer,
        slot,
        _tracked: shared.conns.token(),
    };
    if let Err(mpsc::error::SendError(back)) = inbox.send(moved)
        && let Ok(stream) = TcpStream::from_std(back.stream)
    {
        spawn_conn(shared, me, stream, back.peer, back.slot);
    }
}

/// One connection in its loop's count (and `burnlink_open_connections`), until dropped with
/// the connection's task.
struct Counted(Arc<Shared>, usize);

impl Counted {
    fn new(shared: &Arc<Shared>, me: usize) -> Counted {
        let seat = &shared.seats[me];
        seat.open.fetch_add(1, Ordering::Relaxed);
        seat.gauge.increment(1.0);
        Counted(shared.clone(), me)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let seat = &self.0.seats[self.1];
        seat.open.fetch_sub(1, Ordering::Relaxed);
        seat.gauge.decrement(1.0);
    }
}

impl Seat {
    fn new(
        label: String,
        cpu: Option<usize>,
        inbox: Option<mpsc::UnboundedSender<Moved>>,
        (stop, cut): (&Switch, &Switch),
    ) -> Seat {
        let (gauge, moved_in) = crate::metrics::loop_connections(label);
        Seat {
            cpu,
            open: AtomicUsize::new(0),
            gauge,
            moved_in,
            inbox,
            stop: stop.lookout(),
            cut: cut.lookout(),
        }
    }
}

/// What a connection was let in on.
enum Slot {
    Full(#[allow(dead_code)] OwnedSemaphorePermit),
    /// Past `max_connections`: one probe or scrape, nothing else.
    Probe(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// Serves one connection's requests, each carrying the connection's [`ConnInfo`]. A
/// `probe_only` connection answers `/healthz` and `/metrics` and 503 to anything else, once.
async fn serve_conn<I>(
    io: I,
    router: Router,
    info: ConnInfo,
    limits: ConnLimits,
    stop: Lookout,
    probe_only: bool,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    let zero_copy = info.state.zero_copy().is_some();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let refuse = probe_only && !PROBES.contains(&req.uri().path());
        let router = router.clone();
        async move {
            if refuse {
                return Ok(ApiError::Overloaded(
                    "the server is at its connection limit; retry shortly".into(),
                )
                .into_response());
            }
            router.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A head that arrives in one read is checked against `max_header_size`; one that
        // arrives in pieces against `max_buf_size`. Either way: 431 and the connection closes.
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(!probe_only);
    if zero_copy {
        // Body chunks must reach the socket wrapper as given (queued and written with
        // `writev`), never copied into one buffer: zero-copy stand-ins are recognised by where
        // they point.
        builder.writev(true);
    }
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let served = tokio::select! {
        // The connection first: a request the express lane read and handed over (in the
        // prefix) is in hand once hyper has read it, which this first poll does, so a shutdown
        // that began meanwhile still answers it rather than closing on it.
        biased;
        served = conn.as_mut() => served,
        // Shutting down: finish the request in hand (if any), then close.
        () = stop.flipped() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}
