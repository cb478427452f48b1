//! The kernel model: nodes, process table, capabilities, message routing and the system
//! processes, with Hyperdrive 1.9.2's rules (platform notes §6, §6.1; `kernel/mod.rs` and
//! `kernel/standard_host_v1.rs` of Hyperdrive were read for the semantics).
//!
//! Everything here runs under the one world lock, either on the scheduler (the test thread,
//! between process turns) or on the thread of the process that holds the turn. Time is
//! virtual: it only moves when the scheduler takes the next event.

use crate::bindings::wit::{
    Address, Capability, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response, SendError,
    SendErrorKind, SpawnError,
};
use crate::http_server::{self, Action, Channel, HttpReply, HttpServer, HTTP_TIMEOUT_S};
use crate::ids::{self, messaging_cap, network_cap};
use crate::sqlite::SqliteModule;
use crate::vfs::Vfs;
use p2p_common::sign::model::{NetKeys, SignOutcome};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar};

/// A message as the kernel carries it.
#[derive(Debug, Clone)]
pub(crate) struct KernelMessage {
    pub id: u64,
    pub source: Address,
    pub target: Address,
    /// Where the response goes (the sender if it expects one; the prompt's rsvp if inherited).
    pub rsvp: Option<Address>,
    pub message: Message,
    pub blob: Option<LazyLoadBlob>,
}

/// A send error for the process that sent request `id`.
#[derive(Debug, Clone)]
pub(crate) struct WrappedSendError {
    pub id: u64,
    pub error: SendError,
}

pub(crate) type Incoming = Result<KernelMessage, WrappedSendError>;

/// Kernel-side record of a request sent with `expects_response`.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The prompting message when it was sent (restored when its answer is received).
    pub prompting: Option<KernelMessage>,
    pub context: Option<Vec<u8>>,
    /// Its response or error is in the mailbox (the timeout no longer fires).
    pub settled: bool,
}

/// What a process thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Thread created, `init` not yet called.
    Start,
    /// Holds the turn.
    Running,
    /// Blocked in `receive`.
    Receive,
    /// Blocked in `send-and-await-response` for this request id.
    Await(u64),
}

/// One life of a process: from start to exit, kill or node crash.
pub(crate) struct Life {
    pub gen: u64,
    pub mailbox: VecDeque<Incoming>,
    pub contexts: BTreeMap<u64, Ctx>,
    pub prompting: Option<KernelMessage>,
    pub last_blob: Option<LazyLoadBlob>,
    pub last_blobbed: bool,
    pub wait: Wait,
    pub killed: bool,
    /// Woken when this process gets the turn or is killed.
    pub cv: Arc<Condvar>,
}

impl Life {
    fn new(gen: u64) -> Life {
        Life {
            gen,
            mailbox: VecDeque::new(),
            contexts: BTreeMap::new(),
            prompting: None,
            last_blob: None,
            last_blobbed: false,
            wait: Wait::Start,
            killed: false,
            cv: Arc::new(Condvar::new()),
        }
    }

    pub fn runnable(&self) -> bool {
        !self.killed
            && match self.wait {
                Wait::Start => true,
                Wait::Running => false,
                Wait::Receive => !self.mailbox.is_empty(),
                Wait::Await(id) => self.mailbox.iter().any(|m| incoming_id(m) == Some(id)),
            }
    }
}

/// The id of a response or send error (requests are never awaited by id).
pub(crate) fn incoming_id(m: &Incoming) -> Option<u64> {
    match m {
        Ok(km) if matches!(km.message, Message::Response(_)) => Some(km.id),
        Ok(_) => None,
        Err(e) => Some(e.id),
    }
}

/// A local app process that the test plays, with the capabilities a manifest would give it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Any local process may message it without a capability.
    pub public: bool,
    /// It gets the `"network"` capability (may message other nodes, and be messaged by them).
    pub request_networking: bool,
    /// Processes (`proc:pkg:pub`) that get the messaging capability on the app
    /// (`grant_capabilities` of its manifest). Without it they cannot answer it.
    pub grants: Vec<String>,
    /// Processes it may message (`request_capabilities`); public ones need none.
    pub request_capabilities: Vec<String>,
    /// Answer every request that expects a response with this body, at once. `None`: leave
    /// them for the test to answer ([`crate::Emulator::app_reply`]).
    pub auto_reply: Option<Vec<u8>>,
}

impl AppSpec {
    /// An app that grants these processes messaging and answers their requests `{"Ok":null}`.
    pub fn granting(processes: &[String]) -> AppSpec {
        AppSpec {
            public: false,
            request_networking: false,
            grants: processes.to_vec(),
            request_capabilities: vec![],
            auto_reply: Some(br#"{"Ok":null}"#.to_vec()),
        }
    }
    /// An app that is not public and grants nothing.
    pub fn granting_nothing() -> AppSpec {
        AppSpec::granting(&[])
    }
}

/// A request that reached an app.
#[derive(Debug, Clone)]
pub struct AppMessage {
    /// Kernel id, for [`crate::Emulator::app_reply`].
    pub id: u64,
    pub source: Address,
    pub body: Vec<u8>,
    pub blob: Option<Vec<u8>>,
    pub expects_response: Option<u64>,
    /// When it arrived (virtual ms).
    pub at: u64,
}

impl AppMessage {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer an app received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub source: Address,
    pub body: Vec<u8>,
    pub blob: Option<Vec<u8>>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) enum ProcKind {
    /// A process of the runtime's bundled packages that the emulator plays in Rust (no life
    /// of its own): `sign:sign:sys`. It holds capabilities and is checked like any process.
    Builtin,
    Wasm {
        on_exit: OnExit,
    },
    App {
        spec: AppSpec,
        inbox: Vec<AppMessage>,
        /// Pending requests the app may still answer (id → message).
        pending: BTreeMap<u64, KernelMessage>,
    },
}

pub(crate) struct Proc {
    pub id: ProcessId,
    pub kind: ProcKind,
    pub public: bool,
    pub caps: Vec<Capability>,
    pub life: Option<Life>,
    /// Stopped by the test (kill_process): not started with the node.
    pub stopped: bool,
    /// Restart backoff: (earliest next restart, consecutive attempts).
    pub backoff: Option<(u64, u32)>,
}

impl Proc {
    pub fn has_cap(&self, cap: &Capability) -> bool {
        self.caps.contains(cap)
    }
    pub fn add_cap(&mut self, cap: Capability) {
        if !self.caps.contains(&cap) {
            self.caps.push(cap);
        }
    }
    pub fn is_app(&self) -> bool {
        matches!(self.kind, ProcKind::App { .. })
    }
    pub fn is_builtin(&self) -> bool {
        matches!(self.kind, ProcKind::Builtin)
    }
}

pub(crate) struct Node {
    pub name: String,
    pub up: bool,
    /// Bumped at every start; messages sent to an earlier life are dropped.
    pub incarnation: u64,
    /// Remote sends fail with Offline before this (networking comes up after a start).
    pub net_ready_at: u64,
    /// Partition group: nodes in different groups cannot reach each other.
    pub group: u32,
    pub procs: Vec<Proc>,
    /// `set-state` storage, by process id (survives restarts).
    pub state: BTreeMap<String, Vec<u8>>,
    pub sqlite: SqliteModule,
    /// `vfs:distro:sys` files (survive restarts; the package's files are in its drive).
    pub vfs: Vfs,
    /// `http-server:distro:sys` bindings and channels (gone when the node goes down).
    pub http: HttpServer,
}

impl Node {
    pub fn proc(&self, pid: &ProcessId) -> Option<&Proc> {
        self.procs.iter().find(|p| &p.id == pid)
    }
    pub fn proc_mut(&mut self, pid: &ProcessId) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| &p.id == pid)
    }
}

/// Something that happens at a virtual time.
#[derive(Debug)]
pub(crate) enum Event {
    Deliver {
        km: KernelMessage,
        to_inc: u64,
    },
    Fail {
        node: String,
        pid: ProcessId,
        gen: u64,
        err: WrappedSendError,
    },
    Restart {
        node: String,
        pid: ProcessId,
        inc: u64,
    },
    /// http-server gives up on a process's answer to request `id`.
    HttpTimeout {
        node: String,
        id: u64,
    },
}

/// A line printed by a process or the kernel.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: u64,
    pub node: String,
    pub process: String,
    pub verbosity: u8,
    pub message: String,
}

/// The most bytes of log messages [`World`] keeps; past it the oldest lines are dropped
/// and counted (see [`World::log_lines`]).
pub const MAX_LOG_BYTES: usize = 16 << 20;

/// `s` on one line: newlines and carriage returns escaped as `\n`, `\r`.
pub(crate) fn one_line(s: &str) -> String {
    s.replace('\r', "\\r").replace('\n', "\\n")
}

/// A process that trapped or panicked.
#[derive(Debug, Clone)]
pub struct Crash {
    pub at: u64,
    pub node: String,
    pub process: String,
    /// The panic message (from the process's stderr) or the trap.
    pub message: String,
}

/// Network and clock settings.
#[derive(Debug, Clone)]
pub struct EmuConfig {
    /// Seeds the processes' WASI randomness (and so their HashMaps and ids).
    pub seed: u64,
    pub local_latency_ms: u64,
    pub remote_latency_ms: u64,
    /// How long a send to a node that is down (or cut off) takes to fail with Offline.
    pub connect_timeout_ms: u64,
    /// Networking is down this long after every node start (Hyperdrive: 15–20 s).
    pub boot_offline_ms: u64,
    /// How long a send fails to come Offline while networking is down.
    pub boot_offline_fail_ms: u64,
    /// Unix ms the virtual wall clock starts at.
    pub wall_clock_base_ms: u64,
    /// Print process lines up to this verbosity to stderr (`P2P_EMU_VERBOSITY`).
    pub echo_verbosity: Option<u8>,
    /// Real seconds a process may run without yielding before the emulator gives up.
    pub watchdog_s: u64,
}

impl Default for EmuConfig {
    fn default() -> Self {
        EmuConfig {
            seed: 1,
            local_latency_ms: 0,
            remote_latency_ms: 2,
            connect_timeout_ms: 5_000,
            boot_offline_ms: 15_000,
            boot_offline_fail_ms: 1_000,
            wall_clock_base_ms: 1_764_000_000_000,
            echo_verbosity: std::env::var("P2P_EMU_VERBOSITY")
                .ok()
                .and_then(|v| v.parse().ok()),
            watchdog_s: 120,
        }
    }
}

/// The whole emulated world.
pub(crate) struct World {
    pub cfg: EmuConfig,
    pub now: u64,
    seq: u64,
    pub events: BTreeMap<(u64, u64), Event>,
    pub nodes: BTreeMap<String, Node>,
    /// The process holding the turn: (node, process, life).
    pub running: Option<(String, ProcessId, u64)>,
    /// Processes that may have become runnable, in order.
    pub ready: VecDeque<(String, ProcessId, u64)>,
    next_id: u64,
    pub next_gen: u64,
    /// The newest log lines, at most [`MAX_LOG_BYTES`] of messages.
    log: VecDeque<LogLine>,
    log_bytes: usize,
    /// Lines dropped from the front of `log` to keep it within its bound.
    log_dropped: u64,
    pub crashes: Vec<Crash>,
    /// Outcomes of app requests by id.
    pub app_outcomes: BTreeMap<u64, Result<Reply, SendErrorKind>>,
    /// Lives to start a thread for (taken by the emulator after each step).
    pub to_spawn: Vec<(String, ProcessId, u64)>,
    /// Every node's networking key, for `sign:sign:sys`.
    pub keys: NetKeys,
    /// Answers to the test's HTTP requests, by handle.
    pub http_outcomes: BTreeMap<u64, HttpReply>,
    /// Components of spawned processes to compile before their first turn: (node, process
    /// id) → wasm bytes (taken by the emulator).
    pub spawned_wasm: BTreeMap<(String, String), Vec<u8>>,
}

/// The response an app sends to request `km`.
pub(crate) fn app_response(km: &KernelMessage, body: Vec<u8>) -> KernelMessage {
    KernelMessage {
        id: km.id,
        source: km.target.clone(),
        target: km.rsvp.clone().unwrap_or(km.source.clone()),
        rsvp: None,
        message: Message::Response((
            Response {
                inherit: false,
                body,
                metadata: None,
                capabilities: vec![],
            },
            None,
        )),
        blob: None,
    }
}

pub(crate) fn resolve_our(a: &Address, our_node: &str) -> Address {
    if a.node == "our" {
        Address::new(our_node, a.process.clone())
    } else {
        a.clone()
    }
}

impl World {
    pub fn new(cfg: EmuConfig) -> World {
        World {
            keys: NetKeys::new(cfg.seed),
            cfg,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes: BTreeMap::new(),
            running: None,
            ready: VecDeque::new(),
            next_id: 1,
            next_gen: 1,
            log: VecDeque::new(),
            log_bytes: 0,
            log_dropped: 0,
            crashes: Vec::new(),
            app_outcomes: BTreeMap::new(),
            to_spawn: Vec::new(),
            http_outcomes: BTreeMap::new(),
            spawned_wasm: BTreeMap::new(),
        }
    }

    pub fn schedule(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.events.insert((at.max(self.now), self.seq), ev);
    }

    pub fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn print(&mut self, node: &str, process: &str, verbosity: u8, message: String) {
        if self.cfg.echo_verbosity.is_some_and(|v| verbosity <= v) {
            eprintln!(
                "[{:>8} ms] {node} {process}: {}",
                self.now,
                one_line(&message)
            );
        }
        self.log_bytes += message.len();
        self.log.push_back(LogLine {
            at: self.now,
            node: node.to_string(),
            process: process.to_string(),
            verbosity,
            message,
        });
        while self.log_bytes > MAX_LOG_BYTES {
            let Some(old) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= old.message.len();
            self.log_dropped += 1;
        }
    }

    /// The kept log lines, oldest first; if any were dropped, a first kernel line says how
    /// many.
    pub fn log_lines(&self) -> Vec<LogLine> {
        let mut out = Vec::with_capacity(self.log.len() + 1);
        if self.log_dropped > 0 {
            out.push(LogLine {
                at: self.log.front().map_or(self.now, |l| l.at),
                node: String::new(),
                process: "kernel:distro:sys".into(),
                verbosity: 0,
                message: format!(
                    "p2p-emu: {} earlier log lines dropped (log kept to {MAX_LOG_BYTES} bytes)",
                    self.log_dropped
                ),
            });
        }
        out.extend(self.log.iter().cloned());
        out
    }

    fn kernel_print(&mut self, node: &str, message: String) {
        self.print(node, "kernel:distro:sys", 0, message);
    }

    pub fn life(&self, node: &str, pid: &ProcessId, gen: u64) -> Option<&Life> {
        self.nodes
            .get(node)?
            .proc(pid)?
            .life
            .as_ref()
            .filter(|l| l.gen == gen)
    }

    pub fn life_mut(&mut self, node: &str, pid: &ProcessId, gen: u64) -> Option<&mut Life> {
        self.nodes
            .get_mut(node)?
            .proc_mut(pid)?
            .life
            .as_mut()
            .filter(|l| l.gen == gen)
    }

    fn mark_ready(&mut self, node: &str, pid: &ProcessId) {
        let Some(gen) = self
            .nodes
            .get(node)
            .and_then(|n| n.proc(pid))
            .and_then(|p| p.life.as_ref())
            .map(|l| l.gen)
        else {
            return;
        };
        let key = (node.to_string(), pid.clone(), gen);
        if !self.ready.contains(&key) {
            self.ready.push_back(key);
        }
    }

    // ----------------------------------------------------------------------------------
    // Sending: the kernel's checks, then the local or remote path.

    /// A request from `source` (a local process) as the host's `send-request` builds it.
    /// Returns the request id.
    pub fn send_request(
        &mut self,
        source: &Address,
        gen: u64,
        target: &Address,
        request: Request,
        context: Option<Vec<u8>>,
        blob: Option<LazyLoadBlob>,
    ) -> u64 {
        let node = source.node.clone();
        let target = resolve_our(target, &node);
        let life = self
            .life_mut(&node, &source.process, gen)
            .expect("sender is alive");
        let prompting = life.prompting.clone();
        let id = match (&prompting, request.inherit) {
            (Some(p), true) => p.id,
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                id
            }
        };
        let life = self
            .life_mut(&node, &source.process, gen)
            .expect("sender is alive");
        let blob = match blob {
            Some(b) => Some(b),
            None if request.inherit => life.last_blob.clone(),
            None => None,
        };
        let rsvp = match (request.expects_response, request.inherit, &prompting) {
            (Some(_), _, _) => Some(source.clone()),
            (None, true, Some(p)) => p.rsvp.clone(),
            _ => None,
        };
        let mut request = request;
        request.capabilities = self.filter_caps(&node, &source.process, request.capabilities);
        if let Some(secs) = request.expects_response {
            let life = self
                .life_mut(&node, &source.process, gen)
                .expect("sender is alive");
            life.contexts.insert(
                id,
                Ctx {
                    prompting,
                    context,
                    settled: false,
                },
            );
            let err = WrappedSendError {
                id,
                error: SendError {
                    kind: SendErrorKind::Timeout,
                    target: target.clone(),
                    message: Message::Request(request.clone()),
                    lazy_load_blob: blob.clone(),
                },
            };
            self.schedule(
                self.now.saturating_add(secs.saturating_mul(1000)),
                Event::Fail {
                    node: node.clone(),
                    pid: source.process.clone(),
                    gen,
                    err,
                },
            );
        }
        let km = KernelMessage {
            id,
            source: source.clone(),
            target,
            rsvp,
            message: Message::Request(request),
            blob,
        };
        self.route(km);
        id
    }

    /// A response from `source` to its prompting message (the host's `send-response`).
    pub fn send_response(
        &mut self,
        source: &Address,
        gen: u64,
        response: Response,
        blob: Option<LazyLoadBlob>,
    ) {
        let node = source.node.clone();
        let Some(life) = self.life(&node, &source.process, gen) else {
            return;
        };
        let Some(prompt) = life.prompting.clone() else {
            self.kernel_print(
                &node,
                format!("kernel: need non-None prompting_message to handle Response from {source}"),
            );
            return;
        };
        let blob = if response.inherit {
            life.last_blob.clone()
        } else {
            blob
        };
        let mut response = response;
        response.capabilities = self.filter_caps(&node, &source.process, response.capabilities);
        let km = KernelMessage {
            id: prompt.id,
            source: source.clone(),
            target: prompt.rsvp.clone().unwrap_or(prompt.source.clone()),
            rsvp: None,
            message: Message::Response((response, None)),
            blob,
        };
        self.route(km);
    }

    /// Capabilities a sender may attach: those it issues itself, and those it holds.
    fn filter_caps(&self, node: &str, pid: &ProcessId, caps: Vec<Capability>) -> Vec<Capability> {
        let Some(p) = self.nodes.get(node).and_then(|n| n.proc(pid)) else {
            return vec![];
        };
        caps.into_iter()
            .filter(|c| (&c.issuer.process == pid && c.issuer.node == node) || p.has_cap(c))
            .collect()
    }

    /// A request that can never be delivered: its sender gets Timeout at once, if it asked
    /// for a response (Hyperdrive's `throw_timeout`).
    fn throw_timeout(&mut self, km: KernelMessage) {
        let Message::Request(req) = &km.message else {
            return;
        };
        if req.expects_response.is_none() {
            return;
        }
        let err = WrappedSendError {
            id: km.id,
            error: SendError {
                kind: SendErrorKind::Timeout,
                target: km.target.clone(),
                message: km.message.clone(),
                lazy_load_blob: km.blob.clone(),
            },
        };
        self.push_incoming(&km.source.node, &km.source.process, Err(err));
    }

    fn fail_later(&mut self, km: &KernelMessage, kind: SendErrorKind, after_ms: u64) {
        let Message::Request(req) = &km.message else {
            return;
        };
        if req.expects_response.is_none() {
            return;
        }
        let Some(gen) = self
            .nodes
            .get(&km.source.node)
            .and_then(|n| n.proc(&km.source.process))
            .and_then(|p| p.life.as_ref())
            .map(|l| l.gen)
        else {
            return;
        };
        let err = WrappedSendError {
            id: km.id,
            error: SendError {
                kind,
                target: km.target.clone(),
                message: km.message.clone(),
                lazy_load_blob: km.blob.clone(),
            },
        };
        self.schedule(
            self.now.saturating_add(after_ms),
            Event::Fail {
                node: km.source.node.clone(),
                pid: km.source.process.clone(),
                gen,
                err,
            },
        );
    }

    /// The kernel's checks on every message a local process sends (requests and
    /// responses alike), then delivery or the network.
    pub fn route(&mut self, km: KernelMessage) {
        let our = km.source.node.clone();
        let Some(node) = self.nodes.get(&our) else {
            return;
        };
        let source_is_system = ids::system_process(&km.source.process).is_some();
        if km.target.node != our {
            // Networked: the sender needs the network capability.
            let allowed = source_is_system
                || node
                    .proc(&km.source.process)
                    .is_some_and(|p| p.has_cap(&network_cap(&our)));
            if !allowed {
                self.kernel_print(
                    &our,
                    format!(
                        "event loop: process {} doesn't have capability to send networked messages",
                        km.source.process
                    ),
                );
                return self.throw_timeout(km);
            }
            return self.net_send(km);
        }
        // Local: the source must exist; the target must exist and be public, or the
        // source must hold the messaging capability on it. System processes may message
        // anyone (Hyperdrive exempts kernel, state and vfs; its runtime modules answer
        // every process).
        if !source_is_system {
            let Some(src) = node.proc(&km.source.process) else {
                return self.throw_timeout(km);
            };
            let target_public = match ids::system_process(&km.target.process) {
                Some(public) => Some(public),
                None => node.proc(&km.target.process).map(|p| p.public),
            };
            let Some(public) = target_public else {
                self.kernel_print(
                    &our,
                    format!(
                        "event loop: process {} sent message to non-existing {}; dropping message",
                        km.source.process, km.target.process
                    ),
                );
                return self.throw_timeout(km);
            };
            if !public && !src.has_cap(&messaging_cap(&our, &km.target.process)) {
                self.kernel_print(
                    &our,
                    format!(
                        "event loop: process {} doesn't have capability to message process {}",
                        km.source.process, km.target.process
                    ),
                );
                return self.throw_timeout(km);
            }
        }
        let inc = node.incarnation;
        let at = self.now.saturating_add(self.cfg.local_latency_ms);
        self.schedule(at, Event::Deliver { km, to_inc: inc });
    }

    fn net_ready(&self, node: &Node) -> bool {
        self.now >= node.net_ready_at
    }

    /// The network between nodes: Offline for unknown nodes, nodes that are down or cut
    /// off, and while either side's networking is still coming up after a start.
    fn net_send(&mut self, km: KernelMessage) {
        let from = &self.nodes[&km.source.node];
        let Some(to) = self.nodes.get(&km.target.node) else {
            // Not in the PKI.
            return self.fail_later(&km, SendErrorKind::Offline, 0);
        };
        if !self.net_ready(from) || !self.net_ready(to) {
            let after = self.cfg.boot_offline_fail_ms;
            return self.fail_later(&km, SendErrorKind::Offline, after);
        }
        if !to.up || to.group != from.group {
            let after = self.cfg.connect_timeout_ms;
            return self.fail_later(&km, SendErrorKind::Offline, after);
        }
        let inc = to.incarnation;
        let at = self.now.saturating_add(self.cfg.remote_latency_ms);
        self.schedule(at, Event::Deliver { km, to_inc: inc });
    }

    // ----------------------------------------------------------------------------------
    // Receiving.

    /// Put a message in a process's mailbox as Hyperdrive's `ingest_message` does: requests
    /// always; responses and errors only for an outstanding request (once).
    pub fn push_incoming(&mut self, node: &str, pid: &ProcessId, m: Incoming) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let Some(p) = n.proc_mut(pid) else { return };
        let Some(life) = p.life.as_mut() else { return };
        if let Some(id) = incoming_id(&m) {
            match life.contexts.get_mut(&id) {
                Some(ctx) if !ctx.settled => ctx.settled = true,
                _ => return,
            }
        }
        if let ProcKind::App {
            spec,
            inbox,
            pending,
        } = &mut p.kind
        {
            // The test plays this process: record, answer, or hand the outcome over.
            let mut answer = None;
            match m {
                Ok(km) => match &km.message {
                    Message::Request(req) => {
                        inbox.push(AppMessage {
                            id: km.id,
                            source: km.source.clone(),
                            body: req.body.clone(),
                            blob: km.blob.as_ref().map(|b| b.bytes.clone()),
                            expects_response: req.expects_response,
                            at: now,
                        });
                        if req.expects_response.is_some() || km.rsvp.is_some() {
                            match spec.auto_reply.clone() {
                                Some(body) => answer = Some(app_response(&km, body)),
                                None => {
                                    pending.insert(km.id, km);
                                }
                            }
                        }
                    }
                    Message::Response((resp, _)) => {
                        life.contexts.remove(&km.id);
                        let reply = Reply {
                            source: km.source.clone(),
                            body: resp.body.clone(),
                            blob: km.blob.as_ref().map(|b| b.bytes.clone()),
                        };
                        self.app_outcomes.insert(km.id, Ok(reply));
                    }
                },
                Err(e) => {
                    life.contexts.remove(&e.id);
                    self.app_outcomes.insert(e.id, Err(e.error.kind));
                }
            }
            if let Some(km) = answer {
                self.route(km);
            }
            return;
        }
        life.mailbox.push_back(m);
        if life.runnable() {
            self.mark_ready(node, pid);
        }
    }

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Fail {
                node,
                pid,
                gen,
                err,
            } => {
                if self.life(&node, &pid, gen).is_some() {
                    self.push_incoming(&node, &pid, Err(err));
                }
            }
            Event::Deliver { km, to_inc } => self.deliver(km, to_inc),
            Event::HttpTimeout { node, id } => {
                let handle = self
                    .nodes
                    .get_mut(&node)
                    .and_then(|n| n.http.pending.remove(&id));
                if let Some(handle) = handle {
                    let reply = HttpReply::plain(504, "the process did not answer in time");
                    self.http_outcomes.insert(handle, reply);
                }
            }
            Event::Restart { node, pid, inc } => {
                let Some(n) = self.nodes.get(&node) else {
                    return;
                };
                if !n.up || n.incarnation != inc {
                    return;
                }
                match n.proc(&pid) {
                    Some(p) if p.life.is_none() && !p.stopped => self.start_process(&node, &pid),
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self, km: KernelMessage, to_inc: u64) {
        let our = km.target.node.clone();
        let Some(node) = self.nodes.get(&our) else {
            return;
        };
        if !node.up || node.incarnation != to_inc {
            return;
        }
        if km.source.node != our {
            // Cut off while in flight (a partition): lost.
            let from_group = self.nodes.get(&km.source.node).map(|n| n.group);
            if from_group != Some(node.group) {
                return;
            }
            // From the network: the target must exist and hold the network capability.
            let ok = node
                .proc(&km.target.process)
                .is_some_and(|p| p.has_cap(&network_cap(&our)));
            if !ok {
                self.print(
                    &our,
                    "kernel:distro:sys",
                    2,
                    format!(
                        "event loop: got a message from over the network for {}, which does not \
                         exist or may not receive networked messages; dropping it",
                        km.target.process
                    ),
                );
                return;
            }
        }
        if km.target.process == ids::timer_pid() {
            return self.timer(km);
        }
        if km.target.process == ids::sqlite_pid() {
            return self.sqlite(km);
        }
        if km.target.process == ids::sign_pid() {
            return self.sign(km);
        }
        if km.target.process == ids::vfs_pid() {
            return self.vfs(km);
        }
        if km.target.process == ids::http_server_pid() {
            return self.http_server(km);
        }
        if ids::system_process(&km.target.process).is_some() {
            // kernel, state: nothing for processes to talk to here.
            return;
        }
        let alive = node
            .proc(&km.target.process)
            .is_some_and(|p| p.life.is_some());
        if !alive {
            self.kernel_print(
                &our,
                format!(
                    "event loop: got a message from {} for {}, but target doesn't exist (perhaps it terminated)",
                    km.source, km.target.process
                ),
            );
            return self.throw_timeout(km);
        }
        let pid = km.target.process.clone();
        self.push_incoming(&our, &pid, Ok(km));
    }

    /// Where a system process's response to `km` goes, if anywhere.
    fn answer_target(km: &KernelMessage) -> Option<Address> {
        match &km.message {
            Message::Request(r) => km
                .rsvp
                .clone()
                .or_else(|| r.expects_response.map(|_| km.source.clone())),
            Message::Response(_) => None,
        }
    }

    fn system_response(
        km: &KernelMessage,
        target: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    ) -> KernelMessage {
        let metadata = match &km.message {
            Message::Request(r) => r.metadata.clone(),
            Message::Response(_) => None,
        };
        KernelMessage {
            id: km.id,
            source: km.target.clone(),
            target,
            rsvp: None,
            message: Message::Response((
                Response {
                    inherit: false,
                    body,
                    metadata,
                    capabilities: vec![],
                },
                None,
            )),
            blob: blob.map(|bytes| LazyLoadBlob {
                mime: Some("application/octet-stream".into()),
                bytes,
            }),
        }
    }

    /// `timer:distro:sys`: `{"SetTimer": ms}` is answered (empty body) after `ms`.
    fn timer(&mut self, km: KernelMessage) {
        let Message::Request(req) = &km.message else {
            return;
        };
        let ms = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("SetTimer").and_then(|t| t.as_u64()));
        let Some(ms) = ms else {
            if req.body != b"\"Debug\"" {
                self.kernel_print(&km.target.node, "timer: got a malformed request".into());
            }
            return;
        };
        let Some(target) = Self::answer_target(&km) else {
            return;
        };
        let inc = self.nodes[&km.target.node].incarnation;
        let response = Self::system_response(&km, target, Vec::new(), None);
        self.schedule(
            self.now.saturating_add(ms),
            Event::Deliver {
                km: response,
                to_inc: inc,
            },
        );
    }

    /// `sqlite:distro:sys` on the node's real database files.
    fn sqlite(&mut self, km: KernelMessage) {
        let Message::Request(req) = &km.message else {
            return;
        };
        if km.source.node != km.target.node {
            return;
        }
        let node = km.target.node.clone();
        let out = self
            .nodes
            .get_mut(&node)
            .expect("node exists")
            .sqlite
            .handle(
                &km.source.process.package_id(),
                &req.body,
                km.blob.as_ref().map(|b| b.bytes.as_slice()),
            );
        if !out.grant.is_empty() {
            if let Some(p) = self
                .nodes
                .get_mut(&node)
                .and_then(|n| n.proc_mut(&km.source.process))
            {
                for params in out.grant {
                    p.add_cap(Capability {
                        issuer: Address::new(&node, ids::sqlite_pid()),
                        params,
                    });
                }
            }
        }
        if let Some(target) = Self::answer_target(&km) {
            let response = Self::system_response(&km, target, out.body, out.blob);
            self.route(response);
        }
    }

    /// `sign:sign:sys`: Hyperdrive's sign process over this node's networking key (the
    /// model in `p2p_common::sign`). The kernel has checked the caller's capability (the
    /// process is not public); what it cannot parse it logs and leaves unanswered.
    fn sign(&mut self, km: KernelMessage) {
        let our = km.target.node.clone();
        let Message::Request(req) = &km.message else {
            let why = format!(
                "error handling sign request: Response received at sign process from {}",
                km.source
            );
            return self.print(&our, "sign:sign:sys", 0, why);
        };
        let node = p2p_common::NodeId::parse(&our);
        let source = p2p_common::Address::parse(&km.source.to_string());
        let outcome = match (node, source) {
            (Ok(node), Ok(source)) => self.keys.handle(
                &node,
                &source,
                &req.body,
                km.blob.as_ref().map(|b| b.bytes.as_slice()),
                &|n| self.nodes.contains_key(n),
            ),
            _ => SignOutcome::NoAnswer(format!("error handling sign request from {}", km.source)),
        };
        match outcome {
            SignOutcome::Answer { body, blob } => {
                if let Some(target) = Self::answer_target(&km) {
                    let response = Self::system_response(&km, target, body, blob);
                    self.route(response);
                }
            }
            SignOutcome::NoAnswer(why) => self.print(&our, "sign:sign:sys", 0, why),
        }
    }

    /// `vfs:distro:sys` on the node's in-memory files (crate::vfs).
    fn vfs(&mut self, km: KernelMessage) {
        let Message::Request(req) = &km.message else {
            return;
        };
        let node = km.target.node.clone();
        if km.source.node != node {
            let why = format!(
                "vfs: got request from {}, but requests must come from our node {node}",
                km.source.node
            );
            return self.print(&node, "vfs:distro:sys", 1, why);
        }
        let vfs_addr = Address::new(&node, ids::vfs_pid());
        let caps: Vec<serde_json::Value> = self.nodes[&node]
            .proc(&km.source.process)
            .map(|p| {
                p.caps
                    .iter()
                    .filter(|c| c.issuer == vfs_addr)
                    .filter_map(|c| serde_json::from_str(&c.params).ok())
                    .collect()
            })
            .unwrap_or_default();
        let has = |c: &serde_json::Value| caps.contains(c);
        let out = self.nodes.get_mut(&node).expect("node exists").vfs.handle(
            &km.source.process.package_id(),
            &has,
            &req.body,
            km.blob.as_ref().map(|b| b.bytes.as_slice()),
        );
        if let Some(p) = self
            .nodes
            .get_mut(&node)
            .and_then(|n| n.proc_mut(&km.source.process))
        {
            for params in out.grant {
                p.add_cap(Capability {
                    issuer: vfs_addr.clone(),
                    params,
                });
            }
        }
        if let Some(target) = Self::answer_target(&km) {
            let response = Self::system_response(&km, target, out.body, out.blob);
            self.route(response);
        }
    }

    /// `http-server:distro:sys`: a process binding, pushing or answering (crate::http_server).
    fn http_server(&mut self, km: KernelMessage) {
        let node = km.target.node.clone();
        if km.source.node != node {
            return;
        }
        match &km.message {
            Message::Request(req) => {
                let action = self.nodes.get_mut(&node).expect("node exists").http.action(
                    &km.source.process,
                    &req.body,
                    km.blob.as_ref().map(|b| b.bytes.as_slice()),
                    km.blob.as_ref().and_then(|b| b.mime.as_deref()),
                );
                let (Action::Answer(v) | Action::Done(v)) = action;
                if let Some(target) = Self::answer_target(&km) {
                    let body = serde_json::to_vec(&v).unwrap_or_default();
                    let response = Self::system_response(&km, target, body, None);
                    self.route(response);
                }
            }
            Message::Response((resp, _)) => {
                let Some(handle) = self
                    .nodes
                    .get_mut(&node)
                    .and_then(|n| n.http.pending.remove(&km.id))
                else {
                    return;
                };
                let reply =
                    match serde_json::from_slice::<p2p_common::http::HttpResponse>(&resp.body) {
                        Ok(r) => HttpReply {
                            status: r.status,
                            headers: r
                                .headers
                                .into_iter()
                                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                                .collect(),
                            body: km.blob.map(|b| b.bytes).unwrap_or_default(),
                        },
                        Err(e) => HttpReply::plain(
                            500,
                            &format!("the process answered no HttpResponse: {e}"),
                        ),
                    };
                self.http_outcomes.insert(handle, reply);
            }
        }
    }

    /// A request from a runtime module (no life, nobody to fail back to).
    fn module_request(
        &mut self,
        node: &str,
        module: ProcessId,
        to: &ProcessId,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
    ) -> u64 {
        let id = self.fresh_id();
        let km = KernelMessage {
            id,
            source: Address::new(node, module),
            target: Address::new(node, to.clone()),
            rsvp: None,
            message: Message::Request(Request {
                inherit: false,
                expects_response,
                body,
                metadata: None,
                capabilities: vec![],
            }),
            blob: blob.map(|bytes| LazyLoadBlob { mime: None, bytes }),
        };
        self.route(km);
        id
    }

    /// The test (a logged-in browser unless `logged_in` is false, on the node's machine
    /// unless `remote`) asks `node`'s http-server for `path_and_query`. Returns a handle for
    /// `http_outcomes`.
    #[allow(clippy::too_many_arguments)]
    pub fn http_request(
        &mut self,
        node: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        logged_in: bool,
        remote: bool,
    ) -> u64 {
        let handle = self.fresh_id();
        let done = |w: &mut World, r: HttpReply| {
            w.http_outcomes.insert(handle, r);
            handle
        };
        let Some(n) = self.nodes.get(node).filter(|n| n.up) else {
            return done(self, HttpReply::plain(503, "the node is down"));
        };
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some((binding, url_params)) =
            n.http.route_with_params(path).map(|(b, p)| (b.clone(), p))
        else {
            return done(self, HttpReply::plain(404, "not found"));
        };
        if binding.local_only && remote {
            return done(
                self,
                HttpReply::plain(403, "this path is served to the node's own machine only"),
            );
        }
        if binding.authenticated && !logged_in {
            return done(self, HttpReply::plain(401, "log in first"));
        }
        if let Some((mime, bytes)) = binding.static_content {
            let mime = mime.unwrap_or_else(|| http_server::mime_of(&binding.path).to_string());
            let reply = HttpReply {
                status: 200,
                headers: [("content-type".to_string(), mime)].into(),
                body: bytes,
            };
            return done(self, reply);
        }
        let query_params: std::collections::HashMap<String, String> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let bound = http_server::full_path(&binding.process, &binding.path);
        let request =
            p2p_common::http::HttpServerRequest::Http(p2p_common::http::IncomingHttpRequest {
                source_socket_addr: Some(if remote {
                    "203.0.113.7:50000".into()
                } else {
                    "127.0.0.1:50000".into()
                }),
                method: method.to_string(),
                url: format!("http://localhost:8080{path_and_query}"),
                bound_path: bound,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                url_params: url_params.into_iter().collect(),
                query_params,
            });
        let body_json = serde_json::to_vec(&request).expect("serializes");
        let id = self.module_request(
            node,
            ids::http_server_pid(),
            &binding.process,
            body_json,
            Some(body),
            Some(HTTP_TIMEOUT_S),
        );
        self.nodes
            .get_mut(node)
            .expect("checked")
            .http
            .pending
            .insert(id, handle);
        self.schedule(
            self.now.saturating_add(HTTP_TIMEOUT_S * 1000),
            Event::HttpTimeout {
                node: node.to_string(),
                id,
            },
        );
        handle
    }

    /// The test opens a WebSocket to `path`; the bound process gets `WebSocketOpen`.
    pub fn ws_open(&mut self, node: &str, path: &str) -> Result<u32, String> {
        let n = self
            .nodes
            .get_mut(node)
            .filter(|n| n.up)
            .ok_or_else(|| format!("{node} is not up"))?;
        let b = n
            .http
            .ws_route(path)
            .cloned()
            .ok_or_else(|| format!("no WebSocket bound at {path} on {node}"))?;
        n.http.next_channel += 1;
        let channel = n.http.next_channel;
        n.http.channels.insert(
            channel,
            Channel {
                process: b.process.clone(),
                frames: vec![],
                open: true,
            },
        );
        let body = serde_json::json!({"WebSocketOpen": {
            "path": b.path, "channel_id": channel,
            "source_socket_addr": "127.0.0.1:50000", "forwarded_for": null}});
        let body = serde_json::to_vec(&body).expect("serializes");
        self.module_request(node, ids::http_server_pid(), &b.process, body, None, None);
        Ok(channel)
    }

    /// A frame from the test's WebSocket client (`kind`: `Text` or `Binary`).
    pub fn ws_send(
        &mut self,
        node: &str,
        channel: u32,
        kind: &str,
        data: Vec<u8>,
    ) -> Result<(), String> {
        let process = self.open_channel(node, channel)?;
        let body =
            serde_json::json!({"WebSocketPush": {"channel_id": channel, "message_type": kind}});
        let body = serde_json::to_vec(&body).expect("serializes");
        self.module_request(
            node,
            ids::http_server_pid(),
            &process,
            body,
            Some(data),
            None,
        );
        Ok(())
    }

    /// The test's client closes the WebSocket.
    pub fn ws_close(&mut self, node: &str, channel: u32) -> Result<(), String> {
        let process = self.open_channel(node, channel)?;
        if let Some(c) = self
            .nodes
            .get_mut(node)
            .and_then(|n| n.http.channels.get_mut(&channel))
        {
            c.open = false;
        }
        let body = serde_json::to_vec(&serde_json::json!({ "WebSocketClose": channel }))
            .expect("serializes");
        self.module_request(node, ids::http_server_pid(), &process, body, None, None);
        Ok(())
    }

    fn open_channel(&self, node: &str, channel: u32) -> Result<ProcessId, String> {
        self.nodes
            .get(node)
            .filter(|n| n.up)
            .and_then(|n| n.http.channels.get(&channel))
            .filter(|c| c.open)
            .map(|c| c.process.clone())
            .ok_or_else(|| format!("no open WebSocket channel {channel} on {node}"))
    }

    /// The host's `spawn`, as Hyperdrive's kernel does it: the child is
    /// `<name or a fresh number>:<parent's package>`, its wasm comes from the vfs path
    /// (`tester:sys/tests/x.wasm` or `/pkg:pub/pkg/x.wasm`), it holds messaging on itself and
    /// those requested capabilities the parent holds, each grant gives a process a
    /// capability issued by the child, and the parent may message the child.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        node: &str,
        parent: &ProcessId,
        name: Option<String>,
        wasm_path: &str,
        on_exit: OnExit,
        request_capabilities: Vec<Capability>,
        grant_capabilities: Vec<(ProcessId, String)>,
        public: bool,
    ) -> Result<ProcessId, SpawnError> {
        let name = name.unwrap_or_else(|| self.fresh_id().to_string());
        let Ok(child) = ProcessId::parse(&format!("{name}:{}", parent.package_id())) else {
            return Err(SpawnError::NameTaken);
        };
        let n = self.nodes.get_mut(node).expect("the parent's node");
        if n.proc(&child).is_some() {
            return Err(SpawnError::NameTaken);
        }
        let Some(wasm) = n.vfs.read(wasm_path).cloned() else {
            return Err(SpawnError::NoFileAtPath);
        };
        let held = n.proc(parent).map(|p| p.caps.clone()).unwrap_or_default();
        let mut caps = vec![messaging_cap(node, &child)];
        for c in request_capabilities {
            if held.contains(&c) && !caps.contains(&c) {
                caps.push(c);
            }
        }
        n.procs.push(Proc {
            id: child.clone(),
            kind: ProcKind::Wasm { on_exit },
            public,
            caps,
            life: None,
            stopped: false,
            backoff: None,
        });
        for (grantee, params) in grant_capabilities {
            if let Some(p) = n.proc_mut(&grantee) {
                p.add_cap(Capability {
                    issuer: Address::new(node, child.clone()),
                    params,
                });
            }
        }
        if let Some(p) = n.proc_mut(parent) {
            p.add_cap(messaging_cap(node, &child));
        }
        self.spawned_wasm
            .insert((node.to_string(), child.to_string()), wasm);
        self.print(
            node,
            "kernel:distro:sys",
            2,
            format!("{parent} spawned {child} from {wasm_path}"),
        );
        self.start_process(node, &child);
        Ok(child)
    }

    // ----------------------------------------------------------------------------------
    // Process lives.

    /// Start a new life of a process (its thread is spawned by the emulator).
    pub fn start_process(&mut self, node: &str, pid: &ProcessId) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let Some(p) = self.nodes.get_mut(node).and_then(|n| n.proc_mut(pid)) else {
            return;
        };
        if p.is_builtin() {
            return;
        }
        let mut life = Life::new(gen);
        if p.is_app() {
            life.wait = Wait::Receive;
            if let ProcKind::App { pending, .. } = &mut p.kind {
                pending.clear();
            }
        }
        let wasm = !p.is_app();
        p.life = Some(life);
        p.stopped = false;
        if wasm {
            self.to_spawn.push((node.to_string(), pid.clone(), gen));
            self.mark_ready(node, pid);
        }
    }

    /// End a life without on_exit (kill, node down). Its thread traps out of its next (or
    /// current, blocked) host call.
    pub fn end_life(&mut self, node: &str, pid: &ProcessId) {
        if let Some(p) = self.nodes.get_mut(node).and_then(|n| n.proc_mut(pid)) {
            if let Some(life) = p.life.take() {
                life.cv.notify_all();
            }
        }
        self.ready.retain(|(n, p, _)| !(n == node && p == pid));
    }

    /// A life ended by itself (init returned or trapped): apply on_exit.
    pub fn exited(&mut self, node: &str, pid: &ProcessId, gen: u64, crash: Option<String>) {
        if self.life(node, pid, gen).is_none() {
            return;
        }
        if let Some(message) = crash {
            eprintln!(
                "p2p-emu: {pid} on {node} crashed at t={} ms: {}",
                self.now,
                one_line(&message)
            );
            self.crashes.push(Crash {
                at: self.now,
                node: node.to_string(),
                process: pid.to_string(),
                message,
            });
        } else {
            self.print(
                node,
                &pid.to_string(),
                1,
                "init returned: process ended".into(),
            );
        }
        if self
            .running
            .as_ref()
            .is_some_and(|(n, p, g)| n == node && p == pid && *g == gen)
        {
            self.running = None;
        }
        self.end_life(node, pid);
        let now = self.now;
        let n = self.nodes.get_mut(node).expect("node");
        let inc = n.incarnation;
        let p = n.proc_mut(pid).expect("proc");
        let ProcKind::Wasm { on_exit, .. } = &p.kind else {
            return;
        };
        match on_exit.clone() {
            OnExit::Restart => {
                // Hyperdrive: exponential backoff from 1 s, reset after a quiet period.
                let (at, backoff) = match p.backoff {
                    Some((soonest, attempts)) if now < soonest => {
                        let attempts = attempts + 1;
                        let wait = 1000u64 << attempts.min(10);
                        (soonest, (soonest + wait.min(600_000), attempts))
                    }
                    _ => (now, (now + 1000, 0)),
                };
                p.backoff = Some(backoff);
                self.schedule(
                    at,
                    Event::Restart {
                        node: node.to_string(),
                        pid: pid.clone(),
                        inc,
                    },
                );
            }
            OnExit::None => {
                // Hyperdrive's kernel kills a process that ends with OnExit::None: it leaves
                // the process table, so messages to it fail as to any missing process and a
                // spawn may take its name again.
                n.procs.retain(|q| q.id != *pid);
                self.print(
                    node,
                    "kernel:distro:sys",
                    1,
                    format!("process {pid} had no OnExit behavior"),
                );
            }
            OnExit::Requests(requests) => {
                // Sent by the kernel in the dead process's name; nobody awaits them.
                for (target, request, blob) in requests {
                    let id = self.fresh_id();
                    let km = KernelMessage {
                        id,
                        source: Address::new(node, pid.clone()),
                        target: resolve_our(&target, node),
                        rsvp: None,
                        message: Message::Request(request),
                        blob,
                    };
                    self.route(km);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_counts_what_it_dropped() {
        let mut w = World::new(EmuConfig::default());
        // 1 KiB lines: 20 MiB printed, more than the bound.
        let line = "x".repeat(1024);
        let n = (20 << 20) / 1024;
        for i in 0..n {
            w.print("a.os", "p:q:r.os", 2, format!("{i:08} {line}"));
        }
        let lines = w.log_lines();
        let kept: usize = lines[1..].iter().map(|l| l.message.len()).sum();
        assert!(kept <= MAX_LOG_BYTES, "{kept}");
        assert!(
            kept > MAX_LOG_BYTES - 2048,
            "keeps the newest lines up to the bound"
        );
        let dropped = n - (lines.len() - 1);
        assert_eq!(
            lines[0].message,
            format!(
                "p2p-emu: {dropped} earlier log lines dropped (log kept to {MAX_LOG_BYTES} bytes)"
            )
        );
        assert!(lines
            .last()
            .unwrap()
            .message
            .starts_with(&format!("{:08} ", n - 1)));
        assert!(lines[1].message.starts_with(&format!("{dropped:08} ")));
    }

    #[test]
    fn a_multi_line_message_prints_as_one_line() {
        assert_eq!(
            one_line("panicked at x:\nboom\r\nend"),
            "panicked at x:\\nboom\\r\\nend"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}
