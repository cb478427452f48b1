//! The simulator: N nodes hosting service cores behind the shared [`Driver`], a virtual clock,
//! and a kernel that delivers messages with Hyperware's semantics and the configured faults.

use crate::net::{Latency, NetConfig};
use crate::stats::Stats;
use crate::trace::Trace;
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, Millis, NodeId, ProcessId, SendErrorKind, Service};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

/// A core behind its driver, type-erased so one node can host different services.
pub trait Hosted {
    fn start(&mut self, now: Millis, persisted: Option<Vec<u8>>, seed: u64) -> Vec<KernelCall>;
    fn step(&mut self, now: Millis, event: KernelEvent) -> Vec<KernelCall>;
    /// The core, for inspection by tests (downcast with [`Sim::core`]).
    fn core_any(&self) -> &dyn Any;
    fn core_any_mut(&mut self) -> &mut dyn Any;
    /// Replies the driver dropped because they broke the reply rule (core bugs).
    fn dropped_replies(&self) -> u64;
}

impl<S: Service + 'static> Hosted for Driver<S> {
    fn start(&mut self, now: Millis, persisted: Option<Vec<u8>>, seed: u64) -> Vec<KernelCall> {
        Driver::start(self, now, persisted, seed)
    }
    fn step(&mut self, now: Millis, event: KernelEvent) -> Vec<KernelCall> {
        Driver::step(self, now, event)
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
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} failed at t={} ms: {}",
            self.seed, self.time, self.message
        )?;
        writeln!(
            f,
            "replay with: cargo run --release -p p2p-sim -- replay --seed {}",
            self.seed
        )?;
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

#[derive(Debug, Clone)]
enum Payload {
    Request {
        req: u64,
        body: Vec<u8>,
        expects_response: Option<u64>,
    },
    Response {
        req: u64,
        body: Vec<u8>,
    },
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
}

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
}

struct Proc {
    name: String,
    hosted: Box<dyn Hosted>,
    /// The driver's dropped-reply count already added to the stats.
    drops_seen: u64,
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
    /// What each process persisted (survives crashes).
    persisted: BTreeMap<String, Vec<u8>>,
    /// Requests that reached this node's app process.
    pub app_inbox: Vec<(Address, Vec<u8>)>,
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
    wire_violation: Option<String>,
    pub trace: Trace,
    pub stats: Stats,
    started: bool,
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
                app_inbox: Vec::new(),
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
            wire_violation: None,
            trace: Trace::new(cfg.record_trace),
            stats: Stats::default(),
            started: false,
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
        self.boot(i);
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
            Some(timeout_s),
            Some(handle.to_le_bytes().to_vec()),
        );
        debug_assert_eq!(req, handle);
        if let Some(o) = self.outstanding.get_mut(&req) {
            o.app = true;
        }
        self.app_results.insert(handle, None);
        self.app_times.insert(handle, (self.now, None));
        handle
    }

    /// Send a request that expects no response.
    pub fn notify(&mut self, from: usize, to: &Address, body: Vec<u8>) {
        self.ensure_started();
        let app = self.app(from);
        self.send_request(from, app, to.clone(), body, None, None);
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
                self.boot(i);
            }
        }
    }

    fn boot(&mut self, i: usize) {
        let inc = self.nodes[i].incarnation;
        self.nodes[i].procs.clear();
        let factories = self.factories.clone();
        for (name, f) in &factories {
            let addr = Address::ours(&self.nodes[i].id, name);
            let mut hosted = f(&addr);
            let persisted = self.nodes[i].persisted.get(name).cloned();
            let seed = self.rng.next_u64();
            let calls = hosted.start(self.node_now(i), persisted, seed);
            let drops_seen = hosted.dropped_replies();
            self.stats.reply_rule_violations += drops_seen;
            self.nodes[i].procs.push(Proc {
                name: name.clone(),
                hosted,
                drops_seen,
            });
            self.apply(i, inc, &addr, calls, None);
        }
    }

    /// Hand `event` to process `pi` of node `ni`; count the replies its driver had to drop.
    fn step_proc(
        &mut self,
        ni: usize,
        pi: usize,
        now: Millis,
        event: KernelEvent,
    ) -> Vec<KernelCall> {
        let p = &mut self.nodes[ni].procs[pi];
        let calls = p.hosted.step(now, event);
        let drops = p.hosted.dropped_replies();
        self.stats.reply_rule_violations += drops - p.drops_seen;
        p.drops_seen = drops;
        calls
    }

    fn node_now(&self, i: usize) -> Millis {
        let skew = self.nodes[i].clock_skew_ms;
        if skew >= 0 {
            self.now.saturating_add(skew as u64)
        } else {
            self.now.saturating_sub(skew.unsigned_abs())
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

    fn send_request(
        &mut self,
        from_node: usize,
        from: Address,
        to: Address,
        body: Vec<u8>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
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
                },
                epoch: 0,
                to_inc: inc,
            };
            let slow = self.nodes[from_node].slow_ms;
            self.schedule(
                self.now.saturating_add(ms).saturating_add(slow),
                Event::Deliver(Box::new(env)),
            );
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
            expects_response,
        };
        self.route(from_node, from, to, payload, expects_response.map(|_| req));
        req
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
            if let Some(req) = fail_req {
                self.schedule(
                    self.now.saturating_add(self.net.connect_timeout_ms),
                    Event::Fail {
                        req,
                        kind: SendErrorKind::Offline,
                    },
                );
            }
            return;
        };
        let to_inc = self.nodes[to_node].incarnation;
        let (body, reply) = match &payload {
            Payload::Request { body, .. } => (body, false),
            Payload::Response { body, .. } => (body, true),
        };
        if to_node == from_node || self.connected(from_node, to_node) {
            self.stats.record_send(&from.node, &to.node, body, reply);
        }
        if to_node == from_node {
            let exists = to.process == app_process()
                || self.nodes[to_node].procs.iter().any(|p| p.is(&to.process));
            if !exists && matches!(payload, Payload::Request { .. }) {
                // Local target not running: the kernel answers Timeout at once.
                if let Some(req) = fail_req {
                    self.schedule(
                        self.now,
                        Event::Fail {
                            req,
                            kind: SendErrorKind::Timeout,
                        },
                    );
                }
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
            let link = self.links.entry(pair(from_node, to_node)).or_default();
            if target_up && link.live {
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
            if let Some(req) = fail_req {
                self.schedule(
                    self.now.saturating_add(self.net.connect_timeout_ms),
                    Event::Fail {
                        req,
                        kind: SendErrorKind::Offline,
                    },
                );
            }
            self.trace.push(self.now, 2, || {
                format!("  no route {} -> {}", from.node, to.node)
            });
            return;
        }
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
            let at = self.now.saturating_add(lat).max(link.floor[dir]);
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
                })),
            );
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
            let epoch = self
                .links
                .get(&pair(fi, to_node))
                .map(|l| l.epoch)
                .unwrap_or(0);
            if epoch != env.epoch && !self.chance(self.net.stale_delivery) {
                self.trace.push(self.now, 8, || {
                    "  dropped: written to a broken connection".to_string()
                });
                return;
            }
            let link = self.links.entry(pair(fi, to_node)).or_default();
            link.live = true;
            link.broken_since = None;
        }
        match env.payload {
            Payload::Response { req, body } => {
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
                self.deliver_outcome(o, Ok(body), Some(env.from));
            }
            Payload::Request {
                req,
                body,
                expects_response,
            } => {
                self.trace.push(self.now, (req << 4) | 11, || {
                    format!("recv #{req} at {}", env.to)
                });
                if env.to.process == app_process() {
                    self.nodes[to_node].app_inbox.push((env.from.clone(), body));
                    if expects_response.is_some() {
                        let reply = br#"{"Ok":null}"#.to_vec();
                        self.respond(to_node, env.to, env.from, req, reply);
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
                let now = self.node_now(to_node);
                let event = KernelEvent::Request {
                    source: env.from.clone(),
                    expects_response,
                    body,
                };
                let calls = self.step_proc(to_node, pi, now, event);
                let inc = self.nodes[to_node].incarnation;
                let prompt = expects_response.map(|_| (env.from, req));
                self.apply(to_node, inc, &env.to, calls, prompt);
            }
        }
    }

    /// Hand a response or send error to whoever is waiting for it.
    fn deliver_outcome(
        &mut self,
        o: Outstanding,
        result: Result<Vec<u8>, SendErrorKind>,
        source: Option<Address>,
    ) {
        if o.app {
            return self.app_outcome(o, result);
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
        let now = self.node_now(ni);
        let event = match result {
            Ok(body) => KernelEvent::Response {
                source: source.unwrap_or_else(|| o.target.clone()),
                body,
                context: o.context,
            },
            Err(kind) => KernelEvent::SendError {
                kind,
                target: o.target,
                context: o.context,
            },
        };
        let calls = self.step_proc(ni, pi, now, event);
        let inc = self.nodes[ni].incarnation;
        self.apply(ni, inc, &o.sender.clone(), calls, None);
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

    fn respond(&mut self, node: usize, from: Address, to: Address, req: u64, body: Vec<u8>) {
        self.trace.push(
            self.now,
            (req << 4) | 13 ^ ((body.len() as u64) << 40),
            || format!("reply #{req} {from} -> {to} {}", preview(&body)),
        );
        self.route(node, from, to, Payload::Response { req, body }, None);
    }

    /// Carry out a process's kernel calls. `prompt`: the request it is answering, if any.
    fn apply(
        &mut self,
        node: usize,
        inc: u64,
        me: &Address,
        calls: Vec<KernelCall>,
        mut prompt: Option<(Address, u64)>,
    ) {
        for call in calls {
            if !self.nodes[node].up || self.nodes[node].incarnation != inc {
                return;
            }
            match call {
                KernelCall::SendRequest {
                    target,
                    body,
                    expects_response,
                    context,
                } => {
                    self.send_request(node, me.clone(), target, body, expects_response, context);
                }
                KernelCall::SendResponse { body } => match prompt.take() {
                    Some((to, req)) => self.respond(node, me.clone(), to, req, body),
                    None => {
                        self.stats.reply_rule_violations += 1;
                        self.note(format!("{me} replied with no request to answer; dropped"));
                    }
                },
                KernelCall::SetState(bytes) => {
                    self.nodes[node]
                        .persisted
                        .insert(me.process.process.clone(), bytes);
                }
                KernelCall::Print { verbosity, message } => {
                    self.trace
                        .push(self.now, 14, || format!("log[{verbosity}] {me}: {message}"));
                }
            }
        }
    }

    fn check_invariants(&self) -> Result<(), SimError> {
        if let Some(m) = &self.wire_violation {
            return Err(self.fail(m.clone()));
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
