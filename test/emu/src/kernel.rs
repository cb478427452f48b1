//! The kernel model: nodes, process table, capabilities, message routing and the system
//! processes, with Hyperdrive 1.9.2's rules (platform notes §6, §6.1; `kernel/mod.rs` and
//! `kernel/standard_host_v1.rs` of Hyperdrive were read for the semantics).
//!
//! Everything here runs under the one world lock, either on the scheduler (the test thread,
//! between process turns) or on the thread of the process that holds the turn. Time is
//! virtual: it only moves when the scheduler takes the next event.

use crate::bindings::wit::{
    Address, Capability, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response, SendError,
    SendErrorKind,
};
use crate::ids::{self, messaging_cap, network_cap};
use crate::sqlite::SqliteModule;
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
    pub log: Vec<LogLine>,
    pub crashes: Vec<Crash>,
    /// Outcomes of app requests by id.
    pub app_outcomes: BTreeMap<u64, Result<Reply, SendErrorKind>>,
    /// Lives to start a thread for (taken by the emulator after each step).
    pub to_spawn: Vec<(String, ProcessId, u64)>,
    /// Every node's networking key, for `sign:sign:sys`.
    pub keys: NetKeys,
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
            log: Vec::new(),
            crashes: Vec::new(),
            app_outcomes: BTreeMap::new(),
            to_spawn: Vec::new(),
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
            eprintln!("[{:>8} ms] {node} {process}: {message}", self.now);
        }
        self.log.push(LogLine {
            at: self.now,
            node: node.to_string(),
            process: process.to_string(),
            verbosity,
            message,
        });
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
                "p2p-emu: {pid} on {node} crashed at t={} ms: {message}",
                self.now
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
            OnExit::None => {}
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
