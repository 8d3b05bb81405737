//! The forwarder runtime: worker threads that move batches of frames between
//! TAPs and the tunnel socket through a [`PacketProcessor`].
//!
//! ```text
//!            ┌──────────── worker "tap" ─────────────┐
//!  TAP 0..n ─┤ read (vnet hdr) ─► processor ─► send ─┼─► tunnel: segment + VXLAN ─► SendBatch ─► sendmmsg (UDP GSO)
//!            └───────────────────────────────────────┘    TAP: writev(vnet hdr, frame)
//!            ┌──────────── worker "tunnel" ──────────┐
//!  UDP 4789 ─┤ recvmmsg (UDP GRO) ─► VXLAN decap ─►  │
//!            │ coalesce TCP (GRO) ─► processor ─► send ─► (same outputs)
//!            └───────────────────────────────────────┘
//! ```
//!
//! With [`Threading::Single`] (the default) one thread polls everything; with
//! [`Threading::PerDirection`] the two loops above run on two threads, each
//! blocked in its own `epoll_wait`. Each worker owns its
//! processor instance, its buffers and its counters; the TAP and socket
//! descriptors are shared (sends and writes are thread-safe syscalls).
//!
//! Frames are processed as soon as a read returns; datagrams for the tunnel
//! are queued and flushed with one `sendmmsg` when the source runs dry or the
//! queue is large, so batching grows with load and costs no latency when idle.
//!
//! # Control path
//!
//! TAPs come and go while the workers run ([`ForwarderHandle::add_tap`],
//! [`ForwarderHandle::remove_tap`]). A TAP lives in a numbered slot (its
//! [`VifId`]), at most [`ForwarderConfig::max_taps`] of them. Each worker owns
//! a command queue signalled by an eventfd in its epoll set; the caller queues
//! the change for every worker and waits until all of them have applied it, so
//! when `add_tap` returns every worker can send to the new TAP (and the TAP
//! worker reads it), and when `remove_tap` returns none touches it any more.
//! Frames built outside the workers (periodic router advertisements) are
//! queued the same way ([`ForwarderHandle::inject`]).

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::decap::Decapsulator;
use crate::error::Error;
use crate::gro::Item;
use crate::gso;
use crate::processor::{Endpoint, Input, OutputSink, PacketProcessor, VifId};
use crate::stats::{Stats, WorkerCounters};
use crate::tap::{self, Tap, TapOptions};
use crate::udp::{RecvBatch, SendBatch, TunnelOptions, TunnelSocket};
use crate::vnet::{self, Offload};
use crate::vxlan;

/// Frames read from one TAP before the worker looks at its other sources.
const TAP_BUDGET: usize = 64;
/// `recvmmsg` rounds per wake-up before the worker looks at its other sources.
const TUNNEL_BUDGET: usize = 8;
/// Queued tunnel bytes that trigger a flush.
const FLUSH_BYTES: usize = 512 << 10;
/// Queued tunnel datagrams that trigger a flush.
const FLUSH_DATAGRAMS: usize = 512;

const TOKEN_STOP: u64 = u64::MAX;
const TOKEN_TUNNEL: u64 = u64::MAX - 1;
const TOKEN_CONTROL: u64 = u64::MAX - 2;
/// How long a control operation waits for the workers to apply it.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued by [`ForwarderHandle::inject`] before further ones are dropped.
const INJECT_QUEUE: usize = 4096;

/// How the work is spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threading {
    /// One thread polls the TAPs and the tunnel socket. The default: on the
    /// benchmark box it matched the split layout on TCP and beat it on small
    /// packets and latency (a guest's reply, written to its TAP while the
    /// request is delivered, is read without a second thread's wake-up).
    #[default]
    Single,
    /// One thread reads the TAPs, another reads the tunnel socket.
    PerDirection,
}

/// One TAP to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Header and offload settings.
    pub options: TapOptions,
    /// MTU to give the interface; `None` keeps the kernel's default (1500).
    pub mtu: Option<u16>,
}

impl TapConfig {
    /// A TAP with default options and MTU.
    pub fn new(name: impl Into<String>) -> Self {
        TapConfig {
            name: name.into(),
            options: TapOptions::default(),
            mtu: None,
        }
    }

    /// Creates and configures the TAP in the calling thread's network namespace.
    pub fn open(&self) -> Result<Tap, Error> {
        let tap = Tap::open(&self.name, self.options)?;
        if let Some(mtu) = self.mtu {
            tap.set_mtu(mtu)?;
        }
        Ok(tap)
    }
}

/// What the forwarder opens and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// TAPs, in [`VifId`] order.
    pub taps: Vec<TapConfig>,
    /// Local address of the tunnel socket (underlay IP and VXLAN port).
    pub tunnel_local: SocketAddr,
    /// UDP port of remote VTEPs.
    pub remote_port: u16,
    /// Socket settings.
    pub tunnel: TunnelOptions,
    /// Thread layout.
    pub threading: Threading,
    /// Messages per `recvmmsg`.
    pub rx_batch: usize,
    /// Coalesce received TCP segments into super-frames for the TAPs.
    pub coalesce: bool,
    /// MTU of the underlay path. TCP super-frames are segmented so that every
    /// VXLAN packet fits it; larger single frames are left to IP fragmentation.
    pub underlay_mtu: u16,
    /// Most TAPs at once (initial and added later); bounds the per-TAP
    /// counter memory (64 bytes per slot and worker).
    pub max_taps: usize,
}

impl ForwarderConfig {
    /// A configuration with defaults: offloads on, UDP GSO/GRO on, coalescing
    /// on, one worker thread, remote port equal to the local one.
    pub fn new(taps: impl IntoIterator<Item = String>, tunnel_local: SocketAddr) -> Self {
        ForwarderConfig {
            taps: taps.into_iter().map(TapConfig::new).collect(),
            tunnel_local,
            remote_port: tunnel_local.port(),
            tunnel: TunnelOptions::default(),
            threading: Threading::default(),
            rx_batch: 32,
            coalesce: true,
            underlay_mtu: 1500,
            max_taps: 1024,
        }
    }
}

/// Devices opened and ready to run.
#[derive(Debug)]
pub struct Forwarder {
    taps: Vec<Arc<Tap>>,
    tunnel: Arc<TunnelSocket>,
    cfg: ForwarderConfig,
}

impl Forwarder {
    /// Creates the TAPs and binds the tunnel socket, in the calling thread's
    /// network namespace. Nothing runs until [`Forwarder::start`].
    pub fn open(cfg: ForwarderConfig) -> Result<Forwarder, Error> {
        if cfg.max_taps >= u32::MAX as usize / 2 || cfg.taps.len() > cfg.max_taps {
            return Err(Error::Config(format!(
                "{} TAPs with max_taps {}: max_taps must hold the initial TAPs and stay below 2^31",
                cfg.taps.len(),
                cfg.max_taps
            )));
        }
        let taps = cfg
            .taps
            .iter()
            .map(|t| t.open().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let tunnel = Arc::new(TunnelSocket::bind(cfg.tunnel_local, cfg.tunnel)?);
        Ok(Forwarder { taps, tunnel, cfg })
    }

    /// The TAPs, indexed by [`VifId`].
    pub fn taps(&self) -> &[Arc<Tap>] {
        &self.taps
    }

    /// The tunnel socket.
    pub fn tunnel(&self) -> &TunnelSocket {
        &self.tunnel
    }

    /// Starts the worker threads. `make(worker_index)` builds each worker's
    /// processor (one or two workers, see [`Threading`]).
    pub fn start<P, F>(self, mut make: F) -> Result<RunningForwarder, Error>
    where
        P: PacketProcessor + 'static,
        F: FnMut(usize) -> P,
    {
        let stop = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(|e| {
                Error::Runtime {
                    op: "eventfd",
                    source: e.into(),
                }
            })?,
        );
        let roles: Vec<(&'static str, bool, bool)> = match self.cfg.threading {
            Threading::Single => vec![("weft-fwd", true, true)],
            Threading::PerDirection => {
                vec![("weft-fwd-tap", true, false), ("weft-fwd-tun", false, true)]
            }
        };
        let max = self.cfg.max_taps.max(self.taps.len());
        let mut slots: Vec<Option<Arc<Tap>>> = vec![None; max];
        for (i, t) in self.taps.iter().enumerate() {
            slots[i] = Some(t.clone());
        }
        let mut workers = Vec::new();
        let mut counters = Vec::new();
        for (_, rx_taps, _) in &roles {
            workers.push(Arc::new(WorkerControl {
                queue: Mutex::new(Vec::new()),
                wake: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(runtime("eventfd"))?,
                rx_taps: *rx_taps,
                dead: AtomicBool::new(false),
            }));
            counters.push(Arc::new(WorkerCounters::new(max)));
        }
        let control = Arc::new(Control {
            workers,
            counters,
            slots: Mutex::new(slots.clone()),
        });
        let mut running = RunningForwarder {
            stop: stop.clone(),
            handles: Vec::new(),
            control: control.clone(),
        };
        for (i, (name, rx_taps, rx_tunnel)) in roles.into_iter().enumerate() {
            let counters = control.counters[i].clone();
            let rx_taps: Vec<VifId> = if rx_taps {
                (0..self.taps.len() as u32).map(VifId).collect()
            } else {
                Vec::new()
            };
            let setup = WorkerSetup {
                processor: make(i),
                taps: slots.clone(),
                tunnel: self.tunnel.clone(),
                rx_taps,
                rx_tunnel,
                stop: stop.clone(),
                control: control.workers[i].clone(),
                counters: counters.clone(),
                remote_port: self.cfg.remote_port,
                rx_batch: self.cfg.rx_batch,
                coalesce: self.cfg.coalesce,
                max_inner_frame: usize::from(self.cfg.underlay_mtu).saturating_sub(
                    if self.cfg.tunnel_local.is_ipv4() {
                        vxlan::IPV4_OVERHEAD
                    } else {
                        vxlan::IPV6_OVERHEAD
                    },
                ),
            };
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run_worker(setup))
                .map_err(|e| Error::Runtime {
                    op: "spawn worker thread",
                    source: e,
                })?;
            running.handles.push(handle);
        }
        Ok(running)
    }
}

/// A change queued for one worker.
enum Command {
    /// Start sending to (and, on the TAP worker, reading) a TAP in a slot.
    AddTap {
        vif: VifId,
        tap: Arc<Tap>,
        done: mpsc::Sender<()>,
    },
    /// Forget the TAP in a slot.
    RemoveTap { vif: VifId, done: mpsc::Sender<()> },
    /// Send a frame built outside the workers.
    Send { to: Endpoint, frame: Vec<u8> },
}

/// One worker's command queue.
struct WorkerControl {
    queue: Mutex<Vec<Command>>,
    wake: EventFd,
    /// This worker reads the TAPs.
    rx_taps: bool,
    /// The worker has exited; nothing will drain its queue.
    dead: AtomicBool,
}

impl WorkerControl {
    fn push(&self, c: Command) -> bool {
        if self.dead.load(Ordering::Acquire) {
            return false;
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        let _ = self.wake.write(1);
        true
    }
}

/// What the handles share with the workers.
struct Control {
    workers: Vec<Arc<WorkerControl>>,
    counters: Vec<Arc<WorkerCounters>>,
    /// The authoritative TAP table, by slot.
    slots: Mutex<Vec<Option<Arc<Tap>>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// A cloneable handle on a running forwarder: add and remove TAPs, inject
/// frames, read counters. Usable from any thread while the workers run.
#[derive(Debug, Clone)]
pub struct ForwarderHandle {
    control: Arc<Control>,
}

impl ForwarderHandle {
    /// Creates a TAP (in the calling thread's network namespace) and starts
    /// forwarding it in a free slot. When this returns, every worker knows it.
    pub fn add_tap(&self, cfg: &TapConfig) -> Result<(VifId, Arc<Tap>), Error> {
        let tap = Arc::new(cfg.open()?);
        let vif = self.attach(tap.clone())?;
        Ok((vif, tap))
    }

    /// Starts forwarding an already open TAP in a free slot.
    pub fn attach(&self, tap: Arc<Tap>) -> Result<VifId, Error> {
        let mut slots = self.control.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(free) = slots.iter().position(Option::is_none) else {
            return Err(Error::Config(format!(
                "all {} TAP slots are in use; raise max_taps to add {}",
                slots.len(),
                tap.name()
            )));
        };
        let vif = VifId(free as u32);
        slots[free] = Some(tap.clone());
        let result = self.broadcast(|done| Command::AddTap {
            vif,
            tap: tap.clone(),
            done,
        });
        if let Err(e) = result {
            slots[free] = None;
            // Workers that did apply it must forget it again.
            let _ = self.broadcast(|done| Command::RemoveTap { vif, done });
            return Err(e);
        }
        Ok(vif)
    }

    /// Stops forwarding the TAP in slot `vif` and closes it (the kernel then
    /// deletes the interface, in whichever namespace it is). When this
    /// returns, no worker reads or writes it.
    pub fn remove_tap(&self, vif: VifId) -> Result<(), Error> {
        let mut slots = self.control.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slots.get_mut(vif.0 as usize) else {
            return Err(Error::Config(format!("no TAP slot {}", vif.0)));
        };
        let Some(tap) = slot.take() else {
            return Ok(());
        };
        let r = self.broadcast(|done| Command::RemoveTap { vif, done });
        drop(tap);
        r
    }

    /// Queues a frame (no offload pending) to be sent to `to` by a worker;
    /// false if the queue is full or the workers are gone.
    pub fn inject(&self, to: Endpoint, frame: &[u8]) -> bool {
        let w = &self.control.workers[0];
        if w.queue.lock().unwrap_or_else(|e| e.into_inner()).len() >= INJECT_QUEUE {
            return false;
        }
        w.push(Command::Send {
            to,
            frame: frame.to_vec(),
        })
    }

    /// The TAPs in use, by slot.
    pub fn taps(&self) -> Vec<(VifId, Arc<Tap>)> {
        self.control
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (VifId(i as u32), t.clone())))
            .collect()
    }

    /// A snapshot of all counters; `vifs` reaches up to the highest slot in use.
    pub fn stats(&self) -> Stats {
        let names: Vec<String> = {
            let slots = self.control.slots.lock().unwrap_or_else(|e| e.into_inner());
            let n = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
            slots[..n]
                .iter()
                .map(|t| t.as_ref().map_or_else(String::new, |t| t.name().to_owned()))
                .collect()
        };
        Stats::sum(names, self.control.counters.iter().map(|c| &**c))
    }

    /// Queues a command for every worker and waits until all applied it.
    fn broadcast(&self, mut make: impl FnMut(mpsc::Sender<()>) -> Command) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        let mut queued = 0;
        for w in &self.control.workers {
            if !w.push(make(tx.clone())) {
                return Err(Error::Runtime {
                    op: "control command",
                    source: io::Error::other("a worker thread has stopped"),
                });
            }
            queued += 1;
        }
        drop(tx);
        for _ in 0..queued {
            rx.recv_timeout(CONTROL_TIMEOUT)
                .map_err(|e| Error::Runtime {
                    op: "waiting for the workers to apply a TAP change",
                    source: io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
                })?;
        }
        Ok(())
    }
}

/// A forwarder whose workers are running. Dropping it stops them.
#[derive(Debug)]
pub struct RunningForwarder {
    stop: Arc<EventFd>,
    handles: Vec<JoinHandle<Result<(), Error>>>,
    control: Arc<Control>,
}

impl RunningForwarder {
    /// A snapshot of all counters.
    pub fn stats(&self) -> Stats {
        self.handle().stats()
    }

    /// A handle to change the TAP set and inject frames while running.
    pub fn handle(&self) -> ForwarderHandle {
        ForwarderHandle {
            control: self.control.clone(),
        }
    }

    /// Stops the workers, waits for them and returns the final counters, or
    /// the first error a worker stopped with.
    pub fn stop(mut self) -> Result<Stats, Error> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        let _ = self.stop.write(1);
        let mut result = Ok(());
        for h in self.handles.drain(..) {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::Runtime {
                    op: "worker thread",
                    source: io::Error::other("panicked"),
                })
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

impl Drop for RunningForwarder {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "forwarder worker failed");
        }
    }
}

struct WorkerSetup<P> {
    processor: P,
    taps: Vec<Option<Arc<Tap>>>,
    tunnel: Arc<TunnelSocket>,
    rx_taps: Vec<VifId>,
    rx_tunnel: bool,
    stop: Arc<EventFd>,
    control: Arc<WorkerControl>,
    counters: Arc<WorkerCounters>,
    remote_port: u16,
    rx_batch: usize,
    coalesce: bool,
    max_inner_frame: usize,
}

/// The sending half of a worker: everything a processed frame may go to.
struct Io {
    /// The TAPs this worker may send to, by slot.
    taps: Vec<Option<Arc<Tap>>>,
    tunnel: Arc<TunnelSocket>,
    tx: SendBatch,
    remote_port: u16,
    scratch: Vec<u8>,
    ctr: Arc<WorkerCounters>,
    /// Largest inner frame a VXLAN packet on the underlay can carry.
    max_inner_frame: usize,
    /// Read time of the current batch, handed to the processor.
    now: Instant,
}

/// The receiving half of a tunnel worker.
struct TunnelRx {
    batch: RecvBatch,
    decap: Decapsulator<IpAddr>,
}

fn runtime(op: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Runtime {
        op,
        source: e.into(),
    }
}

fn run_worker<P: PacketProcessor>(s: WorkerSetup<P>) -> Result<(), Error> {
    let control = s.control.clone();
    let r = worker_loop(s);
    // Nothing drains the queue any more: fail pending and future commands.
    control.dead.store(true, Ordering::Release);
    control
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    r
}

fn worker_loop<P: PacketProcessor>(s: WorkerSetup<P>) -> Result<(), Error> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(runtime("epoll_create"))?;
    epoll
        .add(&*s.stop, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_STOP))
        .map_err(runtime("epoll_ctl stop"))?;
    epoll
        .add(
            &s.control.wake,
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CONTROL),
        )
        .map_err(runtime("epoll_ctl control"))?;
    for v in &s.rx_taps {
        if let Some(tap) = &s.taps[v.0 as usize] {
            epoll
                .add(&**tap, EpollEvent::new(EpollFlags::EPOLLIN, u64::from(v.0)))
                .map_err(runtime("epoll_ctl tap"))?;
        }
    }
    if s.rx_tunnel {
        epoll
            .add(
                &*s.tunnel,
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_TUNNEL),
            )
            .map_err(runtime("epoll_ctl tunnel"))?;
    }
    let mut processor = s.processor;
    let mut sink = OutputSink::new();
    let mut io = Io {
        taps: s.taps,
        tunnel: s.tunnel,
        tx: SendBatch::new(),
        remote_port: s.remote_port,
        scratch: Vec::new(),
        ctr: s.counters,
        max_inner_frame: s.max_inner_frame,
        now: Instant::now(),
    };
    let mut tap_buf = if s.control.rx_taps {
        vec![0u8; tap::MAX_FRAME]
    } else {
        Vec::new()
    };
    let mut commands = Vec::new();
    let mut rx = s.rx_tunnel.then(|| TunnelRx {
        batch: RecvBatch::new(s.rx_batch),
        decap: Decapsulator::new(s.coalesce),
    });
    let mut events = [EpollEvent::empty(); 16];
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(runtime("epoll_wait")(e)),
        };
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_STOP => return Ok(()),
                TOKEN_CONTROL => {
                    let _ = s.control.wake.read();
                    std::mem::swap(
                        &mut commands,
                        &mut *s.control.queue.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    for c in commands.drain(..) {
                        apply_command(c, &epoll, s.control.rx_taps, &mut io);
                    }
                    io.flush();
                }
                TOKEN_TUNNEL => {
                    if let Some(rx) = rx.as_mut() {
                        drain_tunnel(rx, &mut processor, &mut sink, &mut io)?;
                    }
                }
                v => {
                    let vif = VifId(v as u32);
                    // A stale event for a TAP removed earlier in this round.
                    let Some(tap) = io.taps.get(v as usize).cloned().flatten() else {
                        continue;
                    };
                    if !drain_tap(vif, &tap, &mut tap_buf, &mut processor, &mut sink, &mut io) {
                        // The device is gone (its namespace was deleted): stop
                        // polling it, or a level-triggered EPOLLERR would spin.
                        tracing::warn!(
                            tap = tap.name(),
                            "TAP device is gone; no longer reading it"
                        );
                        let _ = epoll.delete(&*tap);
                    }
                }
            }
        }
    }
}

fn apply_command(c: Command, epoll: &Epoll, rx_taps: bool, io: &mut Io) {
    match c {
        Command::AddTap { vif, tap, done } => {
            let i = vif.0 as usize;
            if let Some(ctr) = io.ctr.vifs.get(i) {
                ctr.reset();
            }
            if rx_taps
                && let Err(e) = epoll.add(
                    &*tap,
                    EpollEvent::new(EpollFlags::EPOLLIN, u64::from(vif.0)),
                )
            {
                tracing::error!(tap = tap.name(), error = %e, "cannot poll the new TAP");
            }
            if let Some(slot) = io.taps.get_mut(i) {
                *slot = Some(tap);
            }
            let _ = done.send(());
        }
        Command::RemoveTap { vif, done } => {
            if let Some(tap) = io.taps.get_mut(vif.0 as usize).and_then(Option::take)
                && rx_taps
            {
                // Already gone if the device vanished earlier.
                let _ = epoll.delete(&*tap);
            }
            let _ = done.send(());
        }
        Command::Send { to, frame } => io.send(to, &frame, &Offload::NONE),
    }
}

/// Reads and processes up to [`TAP_BUDGET`] frames. Returns false when the
/// device failed for good.
fn drain_tap<P: PacketProcessor>(
    vif: VifId,
    tap: &Tap,
    buf: &mut [u8],
    processor: &mut P,
    sink: &mut OutputSink,
    io: &mut Io,
) -> bool {
    let counters = io.ctr.clone();
    let ctr = &counters.vifs[vif.0 as usize];
    io.now = Instant::now();
    for _ in 0..TAP_BUDGET {
        let n = match tap.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                ctr.rx_errors.add(1);
                tracing::debug!(tap = tap.name(), error = %e, "TAP read failed");
                io.flush();
                // EBADFD: the interface was deleted under the open descriptor.
                return !matches!(
                    e.raw_os_error(),
                    Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::EIO)
                );
            }
        };
        let (offload, frame) = if tap.vnet_hdr() {
            match Offload::parse(&buf[..n]) {
                Ok(o) => (o, &mut buf[vnet::HEADER_LEN..n]),
                Err(e) => {
                    ctr.rx_errors.add(1);
                    tracing::debug!(tap = tap.name(), error = %e, "bad virtio-net header");
                    continue;
                }
            }
        } else {
            (Offload::NONE, &mut buf[..n])
        };
        ctr.rx_frames.add(1);
        ctr.rx_bytes.add(frame.len() as u64);
        if offload.gso.is_some() {
            ctr.rx_gso_frames.add(1);
        }
        process_one(Endpoint::Tap(vif), frame, offload, processor, sink, io);
    }
    io.flush();
    true
}

fn drain_tunnel<P: PacketProcessor>(
    rx: &mut TunnelRx,
    processor: &mut P,
    sink: &mut OutputSink,
    io: &mut Io,
) -> Result<(), Error> {
    let tctr = io.ctr.clone();
    let t = &tctr.tunnel;
    for _ in 0..TUNNEL_BUDGET {
        let n = match io.tunnel.recv(&mut rx.batch) {
            Ok(n) => n,
            Err(e) => {
                // Errors such as a queued ICMP error are transient; keep serving.
                tracing::debug!(error = %e, "tunnel receive failed");
                break;
            }
        };
        if n == 0 {
            break;
        }
        io.now = Instant::now();
        t.rx_syscalls.add(1);
        rx.decap.clear();
        for i in 0..n {
            let meta = rx.batch.meta(i);
            t.rx_bytes.add(meta.len as u64);
            if let Some(d) = meta.queue_drops {
                t.rx_queue_drops.max(u64::from(d));
            }
            if meta.truncated {
                t.rx_truncated.add(1);
                continue;
            }
            let Some(from) = meta.from else {
                t.rx_malformed.add(1);
                continue;
            };
            let c = rx.decap.push(i, rx.batch.data(i), from.ip(), meta.gso_size);
            t.rx_datagrams.add(c.datagrams);
            t.rx_malformed.add(c.malformed);
        }
        rx.decap.finish();
        for k in 0..rx.decap.items().len() {
            match rx.decap.items()[k] {
                Item::Single(tok) => {
                    let Some(tok) = rx.decap.token(tok).cloned() else {
                        continue;
                    };
                    let frame = &mut rx.batch.data_mut(tok.msg)[tok.inner];
                    let from = Endpoint::Tunnel {
                        remote: tok.remote,
                        vni: tok.vni,
                    };
                    process_one(from, frame, tok.offload, processor, sink, io);
                }
                Item::Merged(g) => {
                    let Some(m) = rx.decap.merged_mut(g) else {
                        continue;
                    };
                    if m.segments > 1 {
                        t.rx_coalesced_frames.add(1);
                        t.rx_coalesced_segments.add(u64::from(m.segments));
                    }
                    let (remote, vni) = m.key;
                    process_one(
                        Endpoint::Tunnel { remote, vni },
                        m.frame,
                        m.offload,
                        processor,
                        sink,
                        io,
                    );
                }
            }
        }
        io.flush();
        if n < rx.batch.capacity() {
            break;
        }
    }
    Ok(())
}

fn process_one<P: PacketProcessor>(
    from: Endpoint,
    frame: &mut [u8],
    offload: Offload,
    processor: &mut P,
    sink: &mut OutputSink,
    io: &mut Io,
) {
    sink.clear();
    processor.process(
        Input {
            from,
            frame: &mut *frame,
            offload,
            now: io.now,
        },
        sink,
    );
    if sink.is_empty() {
        io.ctr.drops.processor.add(1);
        return;
    }
    for &to in sink.forwards() {
        io.send(to, frame, &offload);
    }
    for (to, f, o) in sink.emitted_with_offload() {
        io.send(to, f, o);
    }
}

impl Io {
    fn send(&mut self, to: Endpoint, frame: &[u8], offload: &Offload) {
        match to {
            Endpoint::Tap(vif) => self.write_tap(vif, frame, offload),
            Endpoint::Tunnel { remote, vni } => {
                let prefix = vxlan::Repr { vni }.to_bytes();
                let dst = SocketAddr::new(remote, self.remote_port);
                let start = self.tx.bytes();
                match gso::segment_within(
                    frame,
                    offload,
                    &prefix,
                    self.max_inner_frame,
                    self.tx.buffer_mut(),
                ) {
                    Ok(s) => {
                        self.tx.commit(dst, start, s);
                        if offload.gso.is_some() {
                            self.ctr.tunnel.tx_segmented_frames.add(1);
                        }
                    }
                    Err(e) => {
                        self.ctr.drops.offload.add(1);
                        tracing::debug!(error = %e, "cannot segment frame for the tunnel");
                    }
                }
                if self.tx.bytes() >= FLUSH_BYTES || self.tx.datagrams() >= FLUSH_DATAGRAMS {
                    self.flush();
                }
            }
        }
    }

    fn write_tap(&mut self, vif: VifId, frame: &[u8], offload: &Offload) {
        let Some(Some(tap)) = self.taps.get(vif.0 as usize) else {
            self.ctr.drops.no_such_vif.add(1);
            return;
        };
        let ctr = &self.ctr.vifs[vif.0 as usize];
        let result = if tap.vnet_hdr() {
            let hdr = offload.emit();
            tap.write(&[IoSlice::new(&hdr), IoSlice::new(frame)])
                .map(|_| 1)
        } else if offload.is_none() {
            tap.write(&[IoSlice::new(frame)]).map(|_| 1)
        } else {
            // A TAP without virtio-net headers takes only finished frames.
            self.scratch.clear();
            match gso::segment(frame, offload, &[], &mut self.scratch) {
                Ok(s) => self
                    .scratch
                    .chunks(s.stride.max(1))
                    .try_for_each(|seg| tap.write(&[IoSlice::new(seg)]).map(drop))
                    .map(|()| 1),
                Err(e) => {
                    self.ctr.drops.offload.add(1);
                    tracing::debug!(error = %e, "cannot segment frame for a TAP without offloads");
                    return;
                }
            }
        };
        match result {
            Ok(_) => {
                ctr.tx_frames.add(1);
                ctr.tx_bytes.add(frame.len() as u64);
                if offload.gso.is_some() {
                    ctr.tx_gso_frames.add(1);
                }
            }
            Err(e) => {
                ctr.tx_errors.add(1);
                tracing::debug!(tap = tap.name(), error = %e, "TAP write failed");
            }
        }
    }

    fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let rep = self.tunnel.send(&mut self.tx);
        let t = &self.ctr.tunnel;
        t.tx_datagrams.add(rep.datagrams);
        t.tx_bytes.add(rep.bytes);
        t.tx_syscalls.add(rep.syscalls);
        t.tx_failed.add(rep.failed);
        if let Some(e) = rep.last_error {
            tracing::debug!(error = %e, "tunnel send failed");
        }
    }
}
