//! The simulator: N nodes hosting service cores behind the shared [`Driver`], a virtual clock,
//! and a kernel that delivers messages with Hyperware's semantics and the configured faults.

use crate::net::{Latency, NetConfig};
use crate::stats::Stats;
use crate::trace::Trace;
use p2p_common::driver::{Driver, DriverStats, KernelCall, KernelEvent};
use p2p_common::sign::model::{NetKeys, SignOutcome};
use p2p_common::{Address, Millis, NodeId, Now, ProcessId, Records, SendErrorKind, Service};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

/// A core behind its driver, type-erased so one node can host different services.
pub trait Hosted {
    fn start(
        &mut self,
        now: Now,
        persisted: Option<Vec<u8>>,
        records: Records,
        seed: u64,
    ) -> Vec<KernelCall>;
    fn step(&mut self, now: Now, event: KernelEvent) -> Vec<KernelCall>;
    /// The core, for inspection by tests (downcast with [`Sim::core`]).
    fn core_any(&self) -> &dyn Any;
    fn core_any_mut(&mut self) -> &mut dyn Any;
    /// Replies the driver dropped because they broke the reply rule (core bugs).
    fn dropped_replies(&self) -> u64;
    fn driver_stats(&self) -> DriverStats;
}

impl<S: Service + 'static> Hosted for Driver<S> {
    fn start(
        &mut self,
        now: Now,
        persisted: Option<Vec<u8>>,
        records: Records,
        seed: u64,
    ) -> Vec<KernelCall> {
        let mut calls = Driver::start(self, now, persisted, records, seed);
        calls.extend(self.web_bindings(now));
        calls
    }
    fn step(&mut self, now: Now, event: KernelEvent) -> Vec<KernelCall> {
        Driver::step(self, now, event)
    }
    fn driver_stats(&self) -> DriverStats {
        self.stats().clone()
    }
    fn core_any(&self) -> &dyn Any {
        self.core()
    }
    fn core_any_mut(&mut self) -> &mut dyn Any {
        self.core_mut()
    }
    fn dropped_replies(&self) -> u64 {
        Driver::dropped_replies(self)
    }
}

/// Builds a fresh core for a process address (used at start and at every restart).
pub type Factory = Rc<dyn Fn(&Address) -> Box<dyn Hosted>>;

/// Wrap a core constructor into a [`Factory`].
pub fn factory<S: Service + 'static>(make: impl Fn(Address) -> S + 'static) -> Factory {
    Rc::new(move |a: &Address| Box::new(Driver::new(a.clone(), make(a.clone()))) as Box<dyn Hosted>)
}

/// The process a test drives as "a local app" on each node.
pub fn app_process() -> ProcessId {
    ProcessId::parse("app:sim:p2p-patterns.os").expect("valid")
}

/// Node names: alice.os, bob.os, ... then n20.os, n21.os, ...
pub fn node_name(i: usize) -> NodeId {
    const NAMES: [&str; 20] = [
        "alice", "bob", "charlie", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
        "yolanda",
    ];
    let s = if i < NAMES.len() {
        format!("{}.os", NAMES[i])
    } else {
        format!("n{i}.os")
    };
    NodeId::parse(&s).expect("valid node name")
}

/// How an app request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOutcome {
    Response(Vec<u8>),
    Failed(SendErrorKind),
    /// The app's own node crashed before an outcome arrived.
    SenderCrashed,
}

/// A violated invariant: the seed, when, what, and the end of the trace.
#[derive(Debug, Clone)]
pub struct SimError {
    pub seed: u64,
    pub time: Millis,
    pub message: String,
    pub trace_tail: Vec<String>,
    /// The whole trace, when the run recorded it (`replay`): a failure is traced from the start.
    pub trace: Option<Vec<String>>,
    /// The exact command that replays this run, when a scenario knows it.
    pub replay: Option<String>,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} failed at t={} ms: {}",
            self.seed, self.time, self.message
        )?;
        if let Some(cmd) = &self.replay {
            writeln!(f, "replay with: {cmd}")?;
        }
        writeln!(f, "last trace lines:")?;
        for l in &self.trace_tail {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimError {}

pub type Invariant = Box<dyn Fn(&Sim) -> Result<(), String>>;
/// A check on every message put on the wire: (from, to, body).
pub type WireCheck = Box<dyn Fn(&Address, &Address, &[u8]) -> Result<(), String>>;
/// Sees every request and response a process is about to handle: the simulator (before the
/// process handles it), the receiving node's index, sender, receiver and body. It only observes:
/// pair it with an invariant that judges what it recorded (see [`Sim::with_delivery_observer`]).
pub type DeliveryObserver = Box<dyn Fn(&Sim, usize, &Address, &Address, &[u8])>;

#[derive(Debug, Clone)]
enum Payload {
    Request {
        req: u64,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
    },
    Response {
        req: u64,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    },
}

impl Payload {
    fn size(&self) -> usize {
        match self {
            Payload::Request { body, blob, .. } | Payload::Response { body, blob, .. } => {
                body.len() + blob.as_ref().map_or(0, Vec::len)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Envelope {
    from: Address,
    to: Address,
    payload: Payload,
    /// Connection epoch of the link when sent (remote only).
    epoch: u64,
    /// Target node's incarnation when sent.
    to_inc: u64,
    /// The network's second copy of a message (hostile mode).
    dup: bool,
}

/// Marks the prompt of a duplicated request's second copy: it is answered separately.
const DUP_BIT: u64 = 1 << 63;

#[derive(Debug, Clone)]
enum Event {
    Deliver(Box<Envelope>),
    Fail { req: u64, kind: SendErrorKind },
}

/// A request waiting for its response, timeout or Offline.
#[derive(Debug, Clone)]
struct Outstanding {
    /// Sent by a test through `request`/`request_from`: the outcome goes to the app table.
    app: bool,
    sender: Address,
    sender_inc: u64,
    target: Address,
    context: Option<Vec<u8>>,
    /// The sender's prompting message when it sent this (restored when the answer comes).
    prompt: Option<(Address, u64)>,
}

struct Proc {
    name: String,
    hosted: Box<dyn Hosted>,
    /// The driver's dropped-reply count already added to the stats.
    drops_seen: u64,
    /// Wall-clock time spent inside this process (its driver and core), for benches that
    /// compare a service's own cost with a library's. Never read by the simulation.
    busy: std::time::Duration,
    /// The kernel's prompting message of this process: the last request that expected a
    /// response, or the one restored with a response (platform notes §6).
    prompt: Option<(Address, u64)>,
}

/// A local app process the simulator plays, with the capabilities a manifest would give it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Anyone on the node may message it.
    pub public: bool,
    /// Our processes (by name) it granted messaging in `grant_capabilities`.
    pub grants: std::collections::BTreeSet<String>,
    /// It answers requests this late (an app blocked in `send_and_await_response`).
    pub answer_after_ms: Millis,
}

impl AppSpec {
    /// An app that grants every one of our processes messaging (the documented setup).
    pub fn granting_all() -> AppSpec {
        AppSpec {
            public: false,
            grants: ["presence", "sync", "notify", "txcoord", "echo", "blob"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            answer_after_ms: 0,
        }
    }
    /// An app that is not public and grants nothing.
    pub fn granting_nothing() -> AppSpec {
        AppSpec {
            public: false,
            grants: Default::default(),
            answer_after_ms: 0,
        }
    }
}

impl Proc {
    /// Whether this is the process `pid` (ours are `<name>:p2p-patterns:p2p-patterns.os`).
    fn is(&self, pid: &ProcessId) -> bool {
        self.name == pid.process && pid.is_ours()
    }
}

/// One simulated node.
pub struct Node {
    pub id: NodeId,
    pub up: bool,
    /// Bumped at every restart; messages and timers of an earlier life are discarded.
    pub incarnation: u64,
    /// Added to the virtual clock this node's cores see.
    pub clock_skew_ms: i64,
    /// Extra delay before this node handles anything delivered to it (a slow, busy node).
    pub slow_ms: Millis,
    group: u32,
    procs: Vec<Proc>,
    /// What each process persisted as whole state (survives crashes).
    persisted: BTreeMap<String, Vec<u8>>,
    /// Each process's keyed records (survive crashes; written batch by batch).
    records: BTreeMap<String, Records>,
    /// Added to this boot's monotonic clock (drawn at every boot: never persist `mono`).
    mono_base: Millis,
    /// Remote networking works from this time on (Hyperware: 15–20 s after a start).
    net_ready_at: Millis,
    /// App processes the simulator plays on this node, by process id.
    pub apps: BTreeMap<String, AppSpec>,
    /// Requests that reached an app process of this node: (app, from, body).
    pub app_inbox: Vec<(Address, Vec<u8>)>,
    /// The same with the receiving app and blob.
    pub app_messages: Vec<AppMessage>,
}

/// A request to a system process the simulator does not play: (from, to, body, blob).
pub type SystemMessage = (Address, Address, Vec<u8>, Option<Vec<u8>>);

/// A request that reached an app the simulator plays.
#[derive(Debug, Clone)]
pub struct AppMessage {
    /// When it arrived (virtual time).
    pub at: Millis,
    pub app: ProcessId,
    pub from: Address,
    pub body: Vec<u8>,
    pub blob: Option<Vec<u8>>,
}

#[derive(Default, Clone)]
struct Link {
    epoch: u64,
    /// FIFO: the latest delivery time scheduled on this connection, per direction.
    floor: [Millis; 2],
    /// A connection is established (something was delivered over it since it last broke).
    live: bool,
    /// When a send first found the live connection cut; the kernel notices after the
    /// connect timeout, and until then writes vanish.
    broken_since: Option<Millis>,
    /// When the current connection was opened (recycled `recycle_ms` later).
    opened_at: Millis,
    /// Messages wait for the connection's setup round trip until then.
    ready_at: Millis,
    /// Last time something was sent on it (the least recently used is culled first).
    last_used: Millis,
}

/// Configuration of a cluster.
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub net: NetConfig,
    /// Keep every trace line (for `replay`); otherwise only the digest and a tail.
    pub record_trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64, nodes: usize) -> Self {
        SimConfig {
            seed,
            nodes,
            net: NetConfig::default(),
            record_trace: false,
        }
    }
}

/// The simulator.
pub struct Sim {
    pub seed: u64,
    pub net: NetConfig,
    now: Millis,
    seq: u64,
    next_req: u64,
    rng: ChaCha8Rng,
    queue: BTreeMap<(Millis, u64), Event>,
    nodes: Vec<Node>,
    index: HashMap<NodeId, usize>,
    factories: Vec<(String, Factory)>,
    outstanding: BTreeMap<u64, Outstanding>,
    /// App request handles: request id -> outcome once known.
    app_results: BTreeMap<u64, Option<AppOutcome>>,
    /// App request handles: (sent at, answered at).
    app_times: BTreeMap<u64, (Millis, Option<Millis>)>,
    links: HashMap<(usize, usize), Link>,
    /// Latency distributions of particular links (both directions).
    link_latency: HashMap<(usize, usize), Latency>,
    cuts: HashSet<(usize, usize)>,
    /// Remote messages in flight (not local, not timers), for `run_until_quiet`.
    in_flight: u64,
    invariants: Vec<(String, Invariant)>,
    wire_checks: Vec<(String, WireCheck)>,
    delivery_observers: Vec<DeliveryObserver>,
    wire_violation: Option<String>,
    pub trace: Trace,
    pub stats: Stats,
    started: bool,
    /// Requests to system processes the simulator does not play (http-server binds and
    /// WebSocket pushes, ...): (from, to, body, blob).
    pub system_messages: Vec<SystemMessage>,
    /// Blobs of app request outcomes, by handle.
    app_blobs: BTreeMap<u64, Vec<u8>>,
    /// Per node, the peers it has a live connection to (for the peer limit).
    live_peers: Vec<BTreeSet<usize>>,
    /// Requests answered so far (a second answer is counted in `stats.double_answers`).
    answered: HashSet<u64>,
    /// Every node's networking key, for `sign:sign:sys`.
    keys: NetKeys,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let nodes: Vec<Node> = (0..cfg.nodes)
            .map(|i| Node {
                id: node_name(i),
                up: true,
                incarnation: 0,
                clock_skew_ms: 0,
                slow_ms: 0,
                group: 0,
                procs: Vec::new(),
                persisted: BTreeMap::new(),
                records: BTreeMap::new(),
                mono_base: 0,
                net_ready_at: 0,
                apps: BTreeMap::from([(app_process().to_string(), AppSpec::granting_all())]),
                app_inbox: Vec::new(),
                app_messages: Vec::new(),
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        Sim {
            seed: cfg.seed,
            net: cfg.net,
            now: 0,
            seq: 0,
            next_req: 1,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            queue: BTreeMap::new(),
            nodes,
            index,
            factories: Vec::new(),
            outstanding: BTreeMap::new(),
            app_results: BTreeMap::new(),
            app_times: BTreeMap::new(),
            links: HashMap::new(),
            link_latency: HashMap::new(),
            cuts: HashSet::new(),
            in_flight: 0,
            invariants: Vec::new(),
            wire_checks: Vec::new(),
            delivery_observers: Vec::new(),
            wire_violation: None,
            trace: Trace::new(cfg.record_trace),
            stats: Stats::default(),
            started: false,
            system_messages: Vec::new(),
            app_blobs: BTreeMap::new(),
            live_peers: Vec::new(),
            answered: HashSet::new(),
            keys: NetKeys::new(cfg.seed),
        }
    }

    /// Host a process named `name` on every node. Call before the first run.
    pub fn with_process(mut self, name: &str, f: Factory) -> Self {
        assert!(!self.started, "add processes before running");
        ProcessId::ours(name);
        self.factories.push((name.to_string(), f));
        self
    }

    /// Check `f` after every event; a violation stops the run with a [`SimError`].
    pub fn with_invariant(
        mut self,
        name: &str,
        f: impl Fn(&Sim) -> Result<(), String> + 'static,
    ) -> Self {
        self.invariants.push((name.to_string(), Box::new(f)));
        self
    }

    /// Check every message sent (requests and replies, not timers); a violation stops the
    /// run like a broken invariant.
    pub fn with_wire_check(
        mut self,
        name: &str,
        f: impl Fn(&Address, &Address, &[u8]) -> Result<(), String> + 'static,
    ) -> Self {
        self.wire_checks.push((name.to_string(), Box::new(f)));
        self
    }

    /// Call `f` with every request and response just before a process handles it (after the
    /// network delivered it: lost, dropped, late and refused messages never reach `f`). For checks about
    /// what a process does with what it *received*: `f` records, an invariant judges later.
    pub fn with_delivery_observer(
        mut self,
        f: impl Fn(&Sim, usize, &Address, &Address, &[u8]) + 'static,
    ) -> Self {
        self.delivery_observers.push(Box::new(f));
        self
    }

    // ----- inspection -----

    pub fn now(&self) -> Millis {
        self.now
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }
    pub fn node_id(&self, i: usize) -> &NodeId {
        &self.nodes[i].id
    }
    pub fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.index.get(id).copied()
    }
    /// Address of our process `name` on node `i`.
    pub fn addr(&self, i: usize, name: &str) -> Address {
        Address::ours(&self.nodes[i].id, name)
    }
    /// The app address on node `i`.
    pub fn app(&self, i: usize) -> Address {
        Address::new(self.nodes[i].id.clone(), app_process())
    }
    /// The core of process `name` on node `i`, if the node is up and it is of type `T`.
    pub fn core<T: 'static>(&self, i: usize, name: &str) -> Option<&T> {
        let n = &self.nodes[i];
        if !n.up {
            return None;
        }
        n.procs
            .iter()
            .find(|p| p.name == name)?
            .hosted
            .core_any()
            .downcast_ref::<T>()
    }
    pub fn core_mut<T: 'static>(&mut self, i: usize, name: &str) -> Option<&mut T> {
        let n = &mut self.nodes[i];
        if !n.up {
            return None;
        }
        n.procs
            .iter_mut()
            .find(|p| p.name == name)?
            .hosted
            .core_any_mut()
            .downcast_mut::<T>()
    }
    /// Names of the processes running on node `i` (empty while it is down).
    pub fn processes(&self, i: usize) -> Vec<&str> {
        self.nodes[i]
            .procs
            .iter()
            .map(|p| p.name.as_str())
            .collect()
    }
    /// What process `name` on node `i` last persisted.
    pub fn persisted(&self, i: usize, name: &str) -> Option<&[u8]> {
        self.nodes[i].persisted.get(name).map(|v| v.as_slice())
    }
    /// The outcome of an app request, once it has one.
    pub fn outcome(&self, handle: u64) -> Option<&AppOutcome> {
        self.app_results.get(&handle).and_then(|o| o.as_ref())
    }
    /// How long an app request took to get its outcome (virtual ms), once it has one.
    pub fn latency_of(&self, handle: u64) -> Option<Millis> {
        let (sent, done) = self.app_times.get(&handle)?;
        Some(done.as_ref()? - sent)
    }
    /// Handles of every app request so far.
    pub fn app_handles(&self) -> impl Iterator<Item = u64> + '_ {
        self.app_results.keys().copied()
    }
    /// Messages (not timers) still travelling or awaiting an answer.
    pub fn pending_messages(&self) -> u64 {
        self.in_flight
    }
    /// The simulator's own random source (deterministic from the seed), for scenarios.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
    pub fn trace_digest(&self) -> String {
        self.trace.digest()
    }

    // ----- faults -----

    /// Split the cluster: nodes in different groups cannot reach each other. Unlisted nodes
    /// form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        for n in &mut self.nodes {
            n.group = u32::MAX;
        }
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                self.nodes[i].group = g as u32;
            }
        }
        self.note(format!("partition {groups:?}"));
    }
    /// Cut one node off from all others.
    pub fn isolate(&mut self, i: usize) {
        let g = self
            .nodes
            .iter()
            .map(|n| n.group)
            .filter(|&g| g != u32::MAX)
            .max()
            .unwrap_or(0)
            + 1;
        self.nodes[i].group = g.max(1) + i as u32;
        self.note(format!("isolate {}", self.nodes[i].id));
    }
    /// Cut the link between two nodes.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert(pair(a, b));
        self.note(format!("cut {} - {}", self.nodes[a].id, self.nodes[b].id));
    }
    /// Heal every partition and cut.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
        self.cuts.clear();
        self.note("heal".to_string());
    }
    /// Break the live connection between two nodes: later messages use a new connection,
    /// messages written to the old one may be lost or arrive out of order.
    pub fn reset_connection(&mut self, a: usize, b: usize) {
        let l = self.links.entry(pair(a, b)).or_default();
        l.epoch += 1;
        l.floor = [0, 0];
        self.note(format!(
            "reset connection {} - {}",
            self.nodes[a].id, self.nodes[b].id
        ));
    }
    /// Whether `a` and `b` can currently exchange messages.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        a == b
            || (self.nodes[a].up
                && self.nodes[b].up
                && self.net_ready(a)
                && self.net_ready(b)
                && self.nodes[a].group == self.nodes[b].group
                && !self.cuts.contains(&pair(a, b)))
    }
    /// Crash node `i`: every in-memory state, timer and pending request of it is gone; only
    /// what its cores persisted stays.
    pub fn crash(&mut self, i: usize) {
        self.ensure_started();
        if !self.nodes[i].up {
            return;
        }
        let n = &mut self.nodes[i];
        n.up = false;
        n.procs.clear();
        n.incarnation += 1;
        let id = n.id.clone();
        // Its outstanding requests die with it.
        let dead: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.sender.node == id)
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            if let Some(o) = self.resolve(k) {
                if o.app {
                    if let Some(h) = o.context.as_deref().and_then(decode_handle) {
                        self.app_results.insert(h, Some(AppOutcome::SenderCrashed));
                    }
                }
            }
        }
        self.note(format!("crash {id}"));
    }
    /// Restart a crashed node: fresh cores, started with what they persisted.
    pub fn restart(&mut self, i: usize) {
        self.ensure_started();
        if self.nodes[i].up {
            return;
        }
        self.nodes[i].up = true;
        self.nodes[i].incarnation += 1;
        self.note(format!("restart {}", self.nodes[i].id));
        self.boot(i, false);
    }
    /// Give the link between `a` and `b` its own latency distribution (e.g. a far-away peer).
    pub fn set_link_latency(&mut self, a: usize, b: usize, latency: Latency) {
        self.note(format!(
            "latency {} - {} {}..{} ms",
            self.nodes[a].id, self.nodes[b].id, latency.min_ms, latency.max_ms
        ));
        self.link_latency.insert(pair(a, b), latency);
    }
    pub fn set_clock_skew(&mut self, i: usize, skew_ms: i64) {
        self.nodes[i].clock_skew_ms = skew_ms;
        self.note(format!("clock skew {} {skew_ms} ms", self.nodes[i].id));
    }
    /// Step node `i`'s wall clock by `delta_ms` (an NTP correction, a user changing the
    /// time); its monotonic clock is untouched.
    pub fn jump_wall_clock(&mut self, i: usize, delta_ms: i64) {
        self.nodes[i].clock_skew_ms = self.nodes[i].clock_skew_ms.saturating_add(delta_ms);
        self.note(format!("wall clock {} {delta_ms:+} ms", self.nodes[i].id));
    }
    /// Play an app process `process` on node `i` with the given capabilities.
    pub fn add_app(&mut self, i: usize, process: ProcessId, spec: AppSpec) {
        self.nodes[i].apps.insert(process.to_string(), spec);
    }
    /// Stop playing app `process` on node `i` (the app is down: requests to it time out)
    /// until [`Sim::add_app`] plays it again.
    pub fn remove_app(&mut self, i: usize, process: &ProcessId) {
        self.nodes[i].apps.remove(&process.to_string());
        self.note(format!("app {process} down on {}", self.nodes[i].id));
    }
    /// Whether node `i`'s networking is up (it is not for a while after a start).
    pub fn networking_up(&self, i: usize) -> bool {
        self.net_ready(i)
    }
    /// Driver counters of process `name` on node `i` (while it runs).
    pub fn driver_stats(&self, i: usize, name: &str) -> Option<DriverStats> {
        self.nodes[i]
            .procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.hosted.driver_stats())
    }
    /// Wall-clock time process `name` on node `i` has spent handling events since it
    /// started (its driver and core: decoding, the work, encoding). Benches print it; no
    /// test may assert it.
    pub fn busy(&self, i: usize, name: &str) -> Option<std::time::Duration> {
        self.nodes[i]
            .procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.busy)
    }
    /// Process `name`'s keyed records on node `i`, as durable storage holds them.
    pub fn records(&self, i: usize, name: &str) -> Option<&Records> {
        self.nodes[i].records.get(name)
    }
    /// Give process `name` on node `i` these keyed records before the first run, as if it
    /// had written them in an earlier life (a bench builds a large converged cluster so,
    /// without simulating its join).
    pub fn preload_records(&mut self, i: usize, name: &str, records: Records) {
        assert!(!self.started, "preload_records before the first run");
        self.nodes[i].records.insert(name.to_string(), records);
    }
    /// Erase process `name`'s durable records on node `i`, as a reinstall or a cleared
    /// state would. Only while the node is down (crash it first).
    pub fn wipe_records(&mut self, i: usize, name: &str) {
        assert!(!self.nodes[i].up, "wipe_records on a running node");
        self.nodes[i].records.remove(name);
        self.note(format!("wipe {} {name}", self.nodes[i].id));
    }
    /// Put back process `name`'s durable records on node `i` as they were earlier (a
    /// restored backup). Only while the node is down (crash it first).
    pub fn restore_records(&mut self, i: usize, name: &str, records: Records) {
        assert!(!self.nodes[i].up, "restore_records on a running node");
        self.nodes[i].records.insert(name.to_string(), records);
        self.note(format!("restore {} {name}", self.nodes[i].id));
    }
    pub fn set_slow(&mut self, i: usize, slow_ms: Millis) {
        self.nodes[i].slow_ms = slow_ms;
        self.note(format!("slow {} +{slow_ms} ms", self.nodes[i].id));
    }

    // ----- driving -----

    /// Send `body` to `to` as the app on node `from` would; returns a handle for [`Sim::outcome`].
    pub fn request(&mut self, from: usize, to: &Address, body: Vec<u8>, timeout_s: u64) -> u64 {
        self.request_from(from, app_process(), to, body, timeout_s)
    }
    /// Send a request as any process on node `from` claims to be (remote process ids are
    /// claims; only the node is authenticated). Returns a handle like [`Sim::request`].
    pub fn request_from(
        &mut self,
        from: usize,
        process: ProcessId,
        to: &Address,
        body: Vec<u8>,
        timeout_s: u64,
    ) -> u64 {
        self.request_with_blob(from, process, to, body, None, timeout_s)
    }
    /// [`Sim::request_from`] with a blob.
    pub fn request_with_blob(
        &mut self,
        from: usize,
        process: ProcessId,
        to: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        timeout_s: u64,
    ) -> u64 {
        self.ensure_started();
        let me = Address::new(self.nodes[from].id.clone(), process);
        // The handle is the request id; it rides in the context so the outcome finds it and
        // lands in the app's outcome table.
        let handle = self.next_req;
        let req = self.send_request(
            from,
            me,
            to.clone(),
            body,
            blob,
            Some(timeout_s),
            Some(handle.to_le_bytes().to_vec()),
            None,
        );
        debug_assert_eq!(req, handle);
        if let Some(o) = self.outstanding.get_mut(&req) {
            o.app = true;
        }
        self.app_results.insert(handle, None);
        self.app_times.insert(handle, (self.now, None));
        handle
    }

    /// The blob of an app request's response, if it had one.
    pub fn outcome_blob(&self, handle: u64) -> Option<&[u8]> {
        self.app_blobs.get(&handle).map(|b| b.as_slice())
    }

    /// What node `i`'s http-server does for an HTTP request to our process `name`: a request
    /// with the http-server body and the HTTP body as blob, through the same mapping a node
    /// uses. Returns a handle; [`Sim::outcome`] holds the `HttpResponse` JSON and
    /// [`Sim::outcome_blob`] the HTTP body. It is sent as `Content-Type: application/json`
    /// (what the page sends); [`Sim::http_with_headers`] sends exactly the headers given.
    pub fn http(&mut self, i: usize, name: &str, method: &str, path: &str, body: Vec<u8>) -> u64 {
        let json = BTreeMap::from([("content-type".to_string(), "application/json".to_string())]);
        self.http_with_headers(i, name, method, path, &json, body)
    }

    /// [`Sim::http`] with request headers (the playground passes the browser's on).
    pub fn http_with_headers(
        &mut self,
        i: usize,
        name: &str,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
        body: Vec<u8>,
    ) -> u64 {
        self.ensure_started();
        let to = self.addr(i, name);
        let req_body = p2p_common::http::request_body(
            method,
            "localhost:8080",
            &to.process.to_string(),
            path,
            "/api/*",
            &Default::default(),
            headers,
        );
        let server = p2p_common::http::http_server_address(&self.nodes[i].id);
        let handle = self.next_req;
        self.send_request(
            i,
            server,
            to,
            req_body,
            Some(body),
            Some(30),
            Some(handle.to_le_bytes().to_vec()),
            None,
        );
        if let Some(o) = self.outstanding.get_mut(&handle) {
            o.app = true;
        }
        self.app_results.insert(handle, None);
        self.app_times.insert(handle, (self.now, None));
        handle
    }

    /// What node `i`'s http-server sends our process `name` about a WebSocket (open, frame,
    /// close): `message` is an `HttpServerRequest`.
    pub fn websocket(
        &mut self,
        i: usize,
        name: &str,
        message: &p2p_common::http::HttpServerRequest,
        blob: Option<Vec<u8>>,
    ) {
        self.ensure_started();
        let to = self.addr(i, name);
        let server = p2p_common::http::http_server_address(&self.nodes[i].id);
        let body = serde_json::to_vec(message).expect("serializes");
        self.send_request(i, server, to, body, blob, None, None, None);
    }

    /// Send a request that expects no response.
    pub fn notify(&mut self, from: usize, to: &Address, body: Vec<u8>) {
        self.ensure_started();
        let app = self.app(from);
        self.send_request(from, app, to.clone(), body, None, None, None, None);
    }
    /// [`Sim::notify`] as any process on node `from` claims to be.
    pub fn notify_from(&mut self, from: usize, process: ProcessId, to: &Address, body: Vec<u8>) {
        self.ensure_started();
        let me = Address::new(self.nodes[from].id.clone(), process);
        self.send_request(from, me, to.clone(), body, None, None, None, None);
    }

    /// Run every event up to and including time `t`.
    pub fn run_until(&mut self, t: Millis) -> Result<(), SimError> {
        self.ensure_started();
        self.check_invariants()?;
        while let Some((&(at, _), _)) = self.queue.first_key_value() {
            if at > t {
                break;
            }
            let ((at, _), ev) = self.queue.pop_first().expect("non-empty");
            self.now = at;
            self.handle(ev);
            self.check_invariants()?;
        }
        self.now = self.now.max(t);
        Ok(())
    }
    pub fn run_for(&mut self, ms: Millis) -> Result<(), SimError> {
        self.run_until(self.now.saturating_add(ms))
    }
    /// Run until no message is in flight or awaiting an answer (timers may remain), or
    /// until `max_ms` more have passed. Returns whether it got quiet.
    pub fn run_until_quiet(&mut self, max_ms: Millis) -> Result<bool, SimError> {
        self.ensure_started();
        let end = self.now.saturating_add(max_ms);
        while self.in_flight > 0 {
            match self.queue.first_key_value() {
                Some((&(at, _), _)) if at <= end => {
                    let ((at, _), ev) = self.queue.pop_first().expect("non-empty");
                    self.now = at;
                    self.handle(ev);
                    self.check_invariants()?;
                }
                _ => break,
            }
        }
        Ok(self.in_flight == 0)
    }

    /// Fail the run with `message` (for scenario checks outside invariants).
    pub fn fail(&self, message: impl Into<String>) -> SimError {
        SimError {
            seed: self.seed,
            time: self.now,
            message: message.into(),
            trace_tail: self.trace.tail(),
            trace: self.trace.all().map(<[String]>::to_vec),
            replay: None,
        }
    }

    // ----- internals -----

    fn ensure_started(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        for i in 0..self.nodes.len() {
            if self.nodes[i].up {
                self.boot(i, true);
            }
        }
    }

    fn boot(&mut self, i: usize, first: bool) {
        let inc = self.nodes[i].incarnation;
        self.nodes[i].procs.clear();
        // A fresh monotonic clock for this boot: anything that persisted `mono` breaks.
        self.nodes[i].mono_base = self.rng.gen_range(0..1_000_000_000);
        self.nodes[i].net_ready_at = match self.net.boot_offline_ms {
            Some((lo, hi)) if !first || self.net.first_boot_offline => {
                self.now + self.rng.gen_range(lo..=hi.max(lo))
            }
            _ => self.now,
        };
        let factories = self.factories.clone();
        for (name, f) in &factories {
            let addr = Address::ours(&self.nodes[i].id, name);
            let mut hosted = f(&addr);
            let persisted = self.nodes[i].persisted.get(name).cloned();
            let records = self.nodes[i].records.get(name).cloned().unwrap_or_default();
            let seed = self.rng.next_u64();
            let t0 = std::time::Instant::now();
            let calls = hosted.start(self.node_now(i), persisted, records, seed);
            let busy = t0.elapsed();
            let drops_seen = hosted.dropped_replies();
            self.stats.reply_rule_violations += drops_seen;
            self.nodes[i].procs.push(Proc {
                name: name.clone(),
                hosted,
                drops_seen,
                busy,
                prompt: None,
            });
            let pi = self.nodes[i].procs.len() - 1;
            self.apply(i, pi, inc, &addr, calls);
        }
    }

    /// Hand `event` to process `pi` of node `ni`; count the replies its driver had to drop.
    fn step_proc(&mut self, ni: usize, pi: usize, event: KernelEvent) -> Vec<KernelCall> {
        let now = self.node_now(ni);
        let p = &mut self.nodes[ni].procs[pi];
        let t0 = std::time::Instant::now();
        let calls = p.hosted.step(now, event);
        p.busy += t0.elapsed();
        let drops = p.hosted.dropped_replies();
        self.stats.reply_rule_violations += drops - p.drops_seen;
        p.drops_seen = drops;
        calls
    }

    /// Node `i`'s clocks: monotonic from its boot's base; wall with its skew.
    pub fn node_now(&self, i: usize) -> Now {
        let skew = self.nodes[i].clock_skew_ms;
        let wall = if skew >= 0 {
            self.now.saturating_add(skew as u64)
        } else {
            self.now.saturating_sub(skew.unsigned_abs())
        };
        Now {
            mono: self.now.saturating_add(self.nodes[i].mono_base),
            wall,
        }
    }

    fn note(&mut self, s: String) {
        self.trace.push(self.now, hash_str(&s), || s);
    }

    fn schedule(&mut self, at: Millis, ev: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// A latency draw for the link `a`-`b`: its own distribution if one was set, else the
    /// network's.
    fn latency(&mut self, a: usize, b: usize) -> Millis {
        let l = self
            .link_latency
            .get(&pair(a, b))
            .unwrap_or(&self.net.latency)
            .clone();
        let mut d = if l.max_ms > l.min_ms {
            self.rng.gen_range(l.min_ms..=l.max_ms)
        } else {
            l.min_ms
        };
        if l.spike_p > 0.0 && self.rng.gen_bool(l.spike_p.min(1.0)) {
            d = d.saturating_mul(l.spike_factor);
        }
        d
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    /// Remove an outstanding request (it got its one outcome).
    fn resolve(&mut self, req: u64) -> Option<Outstanding> {
        let o = self.outstanding.remove(&req)?;
        if !is_timer(&o.target) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        Some(o)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &mut self,
        from_node: usize,
        from: Address,
        to: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
        prompt: Option<(Address, u64)>,
    ) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        let timer = is_timer(&to) && to.node == from.node;
        if let Some(t) = expects_response {
            self.outstanding.insert(
                req,
                Outstanding {
                    app: false,
                    sender: from.clone(),
                    sender_inc: self.nodes[from_node].incarnation,
                    target: to.clone(),
                    context,
                    prompt,
                },
            );
            if !timer {
                self.in_flight += 1;
            }
            self.schedule(
                self.now.saturating_add(t.saturating_mul(1000)),
                Event::Fail {
                    req,
                    kind: SendErrorKind::Timeout,
                },
            );
        }
        if timer {
            // The timer process answers after the requested delay.
            let ms = timer_ms(&body).unwrap_or(0);
            let inc = self.nodes[from_node].incarnation;
            let env = Envelope {
                from: to.clone(),
                to: from.clone(),
                payload: Payload::Response {
                    req,
                    body: Vec::new(),
                    blob: None,
                },
                epoch: 0,
                to_inc: inc,
                dup: false,
            };
            let slow = self.nodes[from_node].slow_ms;
            self.schedule(
                self.now.saturating_add(ms).saturating_add(slow),
                Event::Deliver(Box::new(env)),
            );
            return req;
        }
        if is_sign(&to) && to.node == from.node {
            // sign:sign:sys over the node's networking key (p2p_common::sign's model, as
            // the emulator runs it); what it cannot parse gets no answer, as on a node.
            let index = &self.index;
            let outcome = self
                .keys
                .handle(&from.node, &from, &body, blob.as_deref(), &|n| {
                    n.parse().is_ok_and(|n: NodeId| index.contains_key(&n))
                });
            let answer = match outcome {
                SignOutcome::Answer { body, blob } => Some((body, blob)),
                SignOutcome::NoAnswer(why) => {
                    self.trace
                        .push(self.now, hash_str(&why), || format!("sign: {why}"));
                    None
                }
            };
            if let (Some(_), Some((body, blob))) = (expects_response, answer) {
                let inc = self.nodes[from_node].incarnation;
                let env = Envelope {
                    from: to.clone(),
                    to: from.clone(),
                    payload: Payload::Response { req, body, blob },
                    epoch: 0,
                    to_inc: inc,
                    dup: false,
                };
                self.schedule(
                    self.now + self.net.local_latency_ms,
                    Event::Deliver(Box::new(env)),
                );
            }
            return req;
        }
        if is_system(&to) && to.node == from.node {
            // Another system process (http-server, ...) that the simulator does not
            // play: it answers an empty Ok at once, like a bind that succeeded.
            if expects_response.is_some() {
                let inc = self.nodes[from_node].incarnation;
                let env = Envelope {
                    from: to.clone(),
                    to: from.clone(),
                    payload: Payload::Response {
                        req,
                        body: br#"{"Ok":null}"#.to_vec(),
                        blob: None,
                    },
                    epoch: 0,
                    to_inc: inc,
                    dup: false,
                };
                self.schedule(
                    self.now + self.net.local_latency_ms,
                    Event::Deliver(Box::new(env)),
                );
            }
            self.system_messages
                .push((from.clone(), to.clone(), body, blob));
            return req;
        }
        self.trace.push(
            self.now,
            (req << 4) | 1 ^ ((body.len() as u64) << 40),
            || format!("send #{req} {from} -> {to} {}", preview(&body)),
        );
        let payload = Payload::Request {
            req,
            body,
            blob,
            expects_response,
        };
        self.route(from_node, from, to, payload, expects_response.map(|_| req));
        req
    }

    /// Whether the kernel lets `from` message the local process `to` (ours are public; an
    /// app needs to be public or to have granted the sender messaging). Checked on requests
    /// and on responses, as Hyperware 1.9.2 does.
    fn may_message(&self, node: usize, from: &Address, to: &Address) -> bool {
        if to.process.is_ours() || is_system(to) || from.node != to.node {
            return true;
        }
        match self.nodes[node].apps.get(&to.process.to_string()) {
            Some(spec) => {
                spec.public
                    || !from.process.is_ours()
                    || spec.grants.contains(&from.process.process)
            }
            None => true,
        }
    }

    fn local_exists(&self, node: usize, to: &Address) -> bool {
        self.nodes[node].apps.contains_key(&to.process.to_string())
            || self.nodes[node].procs.iter().any(|p| p.is(&to.process))
    }

    /// Put a message on the wire (or fail it) according to the network and faults.
    fn route(
        &mut self,
        from_node: usize,
        from: Address,
        to: Address,
        payload: Payload,
        fail_req: Option<u64>,
    ) {
        if self.wire_violation.is_none() && !self.wire_checks.is_empty() {
            let body = match &payload {
                Payload::Request { body, .. } | Payload::Response { body, .. } => body,
            };
            for (name, f) in &self.wire_checks {
                if let Err(m) = f(&from, &to, body) {
                    self.wire_violation = Some(format!(
                        "wire check {name:?} violated by {from} -> {to}: {m}"
                    ));
                    break;
                }
            }
        }
        let Some(&to_node) = self.index.get(&to.node) else {
            // Not in the PKI: Offline once the kernel gives up.
            self.fail_later(
                fail_req,
                self.now.saturating_add(self.net.connect_timeout_ms),
                SendErrorKind::Offline,
            );
            return;
        };
        let to_inc = self.nodes[to_node].incarnation;
        let size = payload.size();
        let (body, reply) = match &payload {
            Payload::Request { body, .. } => (body, false),
            Payload::Response { body, .. } => (body, true),
        };
        if to_node == from_node || self.connected(from_node, to_node) {
            self.stats.record_send(
                &from.process.process,
                &from.node,
                &to.node,
                body,
                reply,
                size,
            );
        }
        if to_node == from_node {
            let is_request = matches!(payload, Payload::Request { .. });
            if is_request && !self.local_exists(to_node, &to) {
                // Local target not running: the kernel answers Timeout at once.
                self.fail_later(fail_req, self.now, SendErrorKind::Timeout);
                return;
            }
            if !self.may_message(to_node, &from, &to) {
                self.stats.capability_refusals += 1;
                self.trace.push(self.now, 16, || {
                    format!("  refused: {from} may not message {to} (no capability)")
                });
                // A request fails at once with Timeout; a response is dropped (its caller
                // times out).
                self.fail_later(fail_req, self.now, SendErrorKind::Timeout);
                return;
            }
            let at = self
                .now
                .saturating_add(self.net.local_latency_ms)
                .saturating_add(self.nodes[to_node].slow_ms);
            let l = self.links.entry((from_node, from_node)).or_default();
            let at = at.max(l.floor[0]);
            l.floor[0] = at;
            self.schedule(
                at,
                Event::Deliver(Box::new(Envelope {
                    from,
                    to,
                    payload,
                    epoch: 0,
                    to_inc,
                    dup: false,
                })),
            );
            return;
        }
        if !self.connected(from_node, to_node) {
            // Writes to an established connection that broke (partition, cut) vanish until
            // the kernel notices, after the connect timeout; only then does it say Offline.
            // A crashed target resets the connection at once.
            let connect_timeout = self.net.connect_timeout_ms;
            let target_up = self.nodes[to_node].up;
            let net_up = self.net_ready(from_node) && self.net_ready(to_node);
            let link = self.links.entry(pair(from_node, to_node)).or_default();
            if target_up && net_up && link.live {
                let since = *link.broken_since.get_or_insert(self.now);
                if self.now < since.saturating_add(connect_timeout) {
                    self.trace.push(self.now, 15, || {
                        format!("  lost {} -> {}: connection broke", from.node, to.node)
                    });
                    return;
                }
            }
            if link.live {
                link.live = false;
                link.broken_since = None;
                link.epoch += 1;
                link.floor = [0, 0];
            }
            // A node whose networking is still coming up says Offline quickly.
            let delay = if net_up {
                connect_timeout
            } else {
                connect_timeout.min(1_000)
            };
            self.fail_later(
                fail_req,
                self.now.saturating_add(delay),
                SendErrorKind::Offline,
            );
            self.trace.push(self.now, 2, || {
                format!("  no route {} -> {}", from.node, to.node)
            });
            return;
        }
        if let Some(max) = self.net.max_message_bytes {
            if size > max {
                // Hyperware's net module tears the connection down on a too-large message.
                self.stats.oversized += 1;
                self.break_link(from_node, to_node);
                self.trace.push(self.now, 17, || {
                    format!(
                        "  too large ({size} B) {} -> {}: connection torn down",
                        from.node, to.node
                    )
                });
                return;
            }
        }
        // Open (or recycle) the connection: setup costs a round trip.
        let now = self.now;
        let recycle = self.net.recycle_ms;
        let link = self.links.entry(pair(from_node, to_node)).or_default();
        if link.live && recycle.is_some_and(|r| now >= link.opened_at.saturating_add(r)) {
            link.live = false;
            link.epoch += 1;
            link.floor = [0, 0];
            self.stats.recycled += 1;
        }
        let link = self.links.entry(pair(from_node, to_node)).or_default();
        if !link.live {
            let setup = if self.net.setup_round_trip {
                let a = self.latency(from_node, to_node);
                let b = self.latency(from_node, to_node);
                a + b
            } else {
                0
            };
            let link = self.links.entry(pair(from_node, to_node)).or_default();
            link.live = true;
            link.broken_since = None;
            link.opened_at = now;
            link.ready_at = now + setup;
            self.stats.connections_opened += 1;
            self.cull_peers(from_node, to_node);
            self.cull_peers(to_node, from_node);
        }
        let link = self.links.entry(pair(from_node, to_node)).or_default();
        link.last_used = now;
        let ready_at = link.ready_at;
        if self.chance(self.net.loss) {
            self.stats.lost += 1;
            self.trace.push(self.now, 3, || "  lost".to_string());
            return;
        }
        let copies = if self.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for c in 0..copies {
            let lat = self
                .latency(from_node, to_node)
                .saturating_add(self.nodes[to_node].slow_ms);
            let dir = usize::from(from_node > to_node);
            let link = self.links.entry(pair(from_node, to_node)).or_default();
            let at = self
                .now
                .max(ready_at)
                .saturating_add(lat)
                .max(link.floor[dir]);
            link.floor[dir] = at;
            let epoch = link.epoch;
            if c == 1 {
                self.stats.duplicated += 1;
                self.trace.push(self.now, 4, || "  duplicated".to_string());
            }
            self.schedule(
                at,
                Event::Deliver(Box::new(Envelope {
                    from: from.clone(),
                    to: to.clone(),
                    payload: payload.clone(),
                    epoch,
                    to_inc,
                    dup: c == 1,
                })),
            );
        }
    }

    /// Fail request `req` (if the sender awaits it) with `kind` at `at`.
    fn fail_later(&mut self, req: Option<u64>, at: Millis, kind: SendErrorKind) {
        if let Some(req) = req {
            self.schedule(at, Event::Fail { req, kind });
        }
    }

    fn net_ready(&self, i: usize) -> bool {
        self.now >= self.nodes[i].net_ready_at
    }

    fn break_link(&mut self, a: usize, b: usize) {
        let link = self.links.entry(pair(a, b)).or_default();
        link.live = false;
        link.broken_since = None;
        link.epoch += 1;
        link.floor = [0, 0];
    }

    /// Node `i` keeps at most `max_peers` connections: beyond that, the least recently used
    /// idle one (nothing sent on it for `IDLE_MS`; not the one to `keep`) is closed.
    fn cull_peers(&mut self, i: usize, keep: usize) {
        const IDLE_MS: Millis = 10_000;
        let Some(max) = self.net.max_peers else {
            return;
        };
        if self.live_peers.len() < self.nodes.len() {
            self.live_peers.resize(self.nodes.len(), BTreeSet::new());
        }
        // Forget peers whose link broke meanwhile.
        let mine: Vec<usize> = self.live_peers[i].iter().copied().collect();
        for other in mine {
            if !self.links.get(&pair(i, other)).is_some_and(|l| l.live) {
                self.live_peers[i].remove(&other);
            }
        }
        self.live_peers[i].insert(keep);
        if self.live_peers[i].len() <= max {
            return;
        }
        let now = self.now;
        let victim = self.live_peers[i]
            .iter()
            .filter(|&&o| o != keep)
            .filter_map(|&o| self.links.get(&pair(i, o)).map(|l| (l.last_used, o)))
            .filter(|&(used, _)| now.saturating_sub(used) >= IDLE_MS)
            .min();
        if let Some((_, other)) = victim {
            self.break_link(i, other);
            self.live_peers[i].remove(&other);
            self.live_peers[other].remove(&i);
            self.stats.culled += 1;
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Fail { req, kind } => {
                let Some(o) = self.resolve(req) else { return };
                self.trace.push(self.now, (req << 4) | 5, || {
                    format!("{kind:?} #{req} {} -> {}", o.sender, o.target)
                });
                self.deliver_outcome(o, Err(kind), None);
            }
            Event::Deliver(env) => self.deliver(*env),
        }
    }

    fn deliver(&mut self, env: Envelope) {
        let Some(&to_node) = self.index.get(&env.to.node) else {
            return;
        };
        let from_node = self.index.get(&env.from.node).copied();
        let n = &self.nodes[to_node];
        if !n.up || n.incarnation != env.to_inc {
            self.trace.push(self.now, 6, || {
                format!("  dropped at {}: node down or restarted", env.to.node)
            });
            return;
        }
        if let Some(fi) = from_node.filter(|&f| f != to_node) {
            if !self.connected(fi, to_node) {
                // The connection broke under the message.
                self.links.entry(pair(fi, to_node)).or_default().epoch += 1;
                self.trace.push(self.now, 7, || {
                    format!("  dropped {} -> {}: link cut", env.from.node, env.to.node)
                });
                return;
            }
            let recycle = self.net.recycle_ms;
            let now = self.now;
            let link = self.links.entry(pair(fi, to_node)).or_default();
            if link.epoch == env.epoch
                && link.live
                && recycle.is_some_and(|r| now >= link.opened_at.saturating_add(r))
            {
                // Recycled under the message: what was still queued is dropped.
                link.live = false;
                link.epoch += 1;
                link.floor = [0, 0];
                self.stats.recycled += 1;
                self.trace.push(self.now, 18, || {
                    "  dropped: connection recycled".to_string()
                });
                return;
            }
            let epoch = link.epoch;
            if epoch != env.epoch && !self.chance(self.net.stale_delivery) {
                self.trace.push(self.now, 8, || {
                    "  dropped: written to a broken connection".to_string()
                });
                return;
            }
            let link = self.links.entry(pair(fi, to_node)).or_default();
            link.broken_since = None;
        }
        match env.payload {
            Payload::Response { req, body, blob } => {
                let Some(o) = self.resolve(req) else {
                    self.trace.push(self.now, (req << 4) | 9, || {
                        format!("  late response #{req} dropped")
                    });
                    return;
                };
                if !is_timer(&env.from) {
                    self.trace.push(self.now, (req << 4) | 10, || {
                        format!("recv response #{req} at {} {}", o.sender, preview(&body))
                    });
                }
                self.deliver_outcome(o, Ok((body, blob)), Some(env.from));
            }
            Payload::Request {
                req,
                body,
                blob,
                expects_response,
            } => {
                self.trace.push(self.now, (req << 4) | 11, || {
                    format!("recv #{req} at {}", env.to)
                });
                if self.nodes[to_node]
                    .apps
                    .contains_key(&env.to.process.to_string())
                {
                    self.nodes[to_node]
                        .app_inbox
                        .push((env.from.clone(), body.clone()));
                    self.nodes[to_node].app_messages.push(AppMessage {
                        at: self.now,
                        app: env.to.process.clone(),
                        from: env.from.clone(),
                        body,
                        blob,
                    });
                    if expects_response.is_some() {
                        let reply = br#"{"Ok":null}"#.to_vec();
                        let delay =
                            self.nodes[to_node].apps[&env.to.process.to_string()].answer_after_ms;
                        if delay == 0 {
                            self.respond(to_node, env.to, env.from, req, reply, None);
                        } else {
                            let inc = self.nodes[to_node].incarnation;
                            self.schedule(
                                self.now + delay,
                                Event::Deliver(Box::new(Envelope {
                                    from: env.to,
                                    to: env.from,
                                    payload: Payload::Response {
                                        req,
                                        body: reply,
                                        blob: None,
                                    },
                                    epoch: 0,
                                    to_inc: inc,
                                    dup: false,
                                })),
                            );
                        }
                    }
                    return;
                }
                let Some(pi) = self.nodes[to_node]
                    .procs
                    .iter()
                    .position(|p| p.is(&env.to.process))
                else {
                    self.trace.push(self.now, 12, || {
                        format!("  no process {} (sender will time out)", env.to)
                    });
                    return;
                };
                if expects_response.is_some() {
                    // The kernel makes it the prompting message.
                    let id = if env.dup { req | DUP_BIT } else { req };
                    self.nodes[to_node].procs[pi].prompt = Some((env.from.clone(), id));
                }
                for f in &self.delivery_observers {
                    f(self, to_node, &env.from, &env.to, &body);
                }
                let event = KernelEvent::Request {
                    source: env.from.clone(),
                    expects_response,
                    body,
                    blob,
                };
                let calls = self.step_proc(to_node, pi, event);
                let inc = self.nodes[to_node].incarnation;
                self.apply(to_node, pi, inc, &env.to, calls);
            }
        }
    }

    /// Hand a response or send error to whoever is waiting for it.
    fn deliver_outcome(
        &mut self,
        o: Outstanding,
        result: Result<(Vec<u8>, Option<Vec<u8>>), SendErrorKind>,
        source: Option<Address>,
    ) {
        if o.app {
            if let (Ok((_, Some(blob))), Some(h)) =
                (&result, o.context.as_deref().and_then(decode_handle))
            {
                self.app_blobs.insert(h, blob.clone());
            }
            return self.app_outcome(o, result.map(|(b, _)| b));
        }
        let Some(&ni) = self.index.get(&o.sender.node) else {
            return;
        };
        if !self.nodes[ni].up || self.nodes[ni].incarnation != o.sender_inc {
            return;
        }
        let Some(pi) = self.nodes[ni]
            .procs
            .iter()
            .position(|p| p.is(&o.sender.process))
        else {
            return;
        };
        // The kernel restores the prompting message current when the request was sent.
        self.nodes[ni].procs[pi].prompt = o.prompt.clone();
        if let (Ok((body, _)), Some(from)) = (&result, &source) {
            for f in &self.delivery_observers {
                f(self, ni, from, &o.sender, body);
            }
        }
        let event = match result {
            Ok((body, blob)) => KernelEvent::Response {
                source: source.unwrap_or_else(|| o.target.clone()),
                body,
                blob,
                context: o.context,
            },
            Err(kind) => KernelEvent::SendError {
                kind,
                target: o.target,
                context: o.context,
            },
        };
        let calls = self.step_proc(ni, pi, event);
        let inc = self.nodes[ni].incarnation;
        self.apply(ni, pi, inc, &o.sender.clone(), calls);
    }

    fn app_outcome(&mut self, o: Outstanding, result: Result<Vec<u8>, SendErrorKind>) {
        let Some(handle) = o.context.as_ref().and_then(|c| decode_handle(c)) else {
            return;
        };
        if let Some(t) = self.app_times.get_mut(&handle) {
            t.1 = Some(self.now);
        }
        self.app_results.insert(
            handle,
            Some(match result {
                Ok(b) => AppOutcome::Response(b),
                Err(k) => AppOutcome::Failed(k),
            }),
        );
    }

    fn respond(
        &mut self,
        node: usize,
        from: Address,
        to: Address,
        req: u64,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    ) {
        if !self.answered.insert(req) {
            // (A duplicated request's copies are answered separately: `DUP_BIT`.)
            // The same request answered twice: a driver or kernel-model bug.
            self.stats.double_answers += 1;
            self.note(format!("{from} answered #{req} a second time"));
        }
        self.trace.push(
            self.now,
            (req << 4) | 13 ^ ((body.len() as u64) << 40),
            || format!("reply #{req} {from} -> {to} {}", preview(&body)),
        );
        let req = req & !DUP_BIT;
        self.route(node, from, to, Payload::Response { req, body, blob }, None);
    }

    /// Carry out the kernel calls of process `pi` on `node`, in order: a write completes
    /// before the next call (the durability promise), reads are answered after the calls.
    fn apply(&mut self, node: usize, pi: usize, inc: u64, me: &Address, calls: Vec<KernelCall>) {
        let mut reads = Vec::new();
        for call in calls {
            if !self.nodes[node].up || self.nodes[node].incarnation != inc {
                return;
            }
            match call {
                KernelCall::SendRequest {
                    target,
                    body,
                    blob,
                    expects_response,
                    context,
                } => {
                    let prompt = self.nodes[node].procs[pi].prompt.clone();
                    self.send_request(
                        node,
                        me.clone(),
                        target,
                        body,
                        blob,
                        expects_response,
                        context,
                        prompt,
                    );
                }
                KernelCall::SendResponse { body, blob } => {
                    match self.nodes[node].procs[pi].prompt.clone() {
                        Some((to, req)) => self.respond(node, me.clone(), to, req, body, blob),
                        None => {
                            self.stats.reply_rule_violations += 1;
                            self.note(format!("{me} replied with no request to answer; dropped"));
                        }
                    }
                }
                KernelCall::SetState(bytes) => {
                    self.nodes[node]
                        .persisted
                        .insert(me.process.process.clone(), bytes);
                }
                KernelCall::Store { ops, forced } => {
                    if forced {
                        self.stats.forced_writes += 1;
                    } else {
                        self.stats.unforced_writes += 1;
                    }
                    let recs = self.nodes[node]
                        .records
                        .entry(me.process.process.clone())
                        .or_default();
                    for (k, v) in ops {
                        self.stats.stored_bytes +=
                            (k.len() + v.as_ref().map_or(0, Vec::len)) as u64;
                        match v {
                            Some(v) => recs.insert(k, v),
                            None => recs.remove(&k),
                        };
                    }
                }
                KernelCall::Read { key, token } => {
                    let value = self.nodes[node]
                        .records
                        .get(&me.process.process)
                        .and_then(|r| r.get(&key))
                        .cloned();
                    reads.push(KernelEvent::ReadDone { token, value });
                }
                KernelCall::Print { verbosity, message } => {
                    self.trace
                        .push(self.now, 14, || format!("log[{verbosity}] {me}: {message}"));
                }
            }
        }
        for ev in reads {
            if !self.nodes[node].up || self.nodes[node].incarnation != inc {
                return;
            }
            let calls = self.step_proc(node, pi, ev);
            self.apply(node, pi, inc, me, calls);
        }
    }

    fn check_invariants(&self) -> Result<(), SimError> {
        if let Some(m) = &self.wire_violation {
            return Err(self.fail(m.clone()));
        }
        if self.stats.double_answers > 0 {
            return Err(self.fail("a request was answered twice"));
        }
        for (name, f) in &self.invariants {
            if let Err(m) = f(self) {
                return Err(self.fail(format!("invariant {name:?} violated: {m}")));
            }
        }
        Ok(())
    }
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a: a stable key for rare free-text trace lines (faults).
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// A `*:distro:sys` or `*:sign:sys` process of the runtime.
fn is_system(a: &Address) -> bool {
    a.process.publisher == "sys"
}

fn is_sign(a: &Address) -> bool {
    a.process == p2p_common::sign::sign_process()
}

fn is_timer(a: &Address) -> bool {
    a.process.process == "timer" && a.process.package == "distro" && a.process.publisher == "sys"
}

fn timer_ms(body: &[u8]) -> Option<Millis> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("SetTimer")?.as_u64()
}

fn decode_handle(c: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(c.try_into().ok()?))
}

/// A short printable form of a body for the trace.
pub fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.into_owned()
    }
}
