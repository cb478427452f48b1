//! Pure core of `presence`: a bootstrap registry plus SWIM-style membership with Lifeguard's
//! refinements. See docs/presence.md for the protocol and its parameters.
//!
//! This is the composition. The sub-machines own their state, timers and request contexts
//! — the failure detector ([`Detector`]), dissemination ([`Dissemination`]), the candidates
//! ([`Candidates`]), the registry server ([`Registry`]) and client ([`RegClient`]), the
//! events ([`Events`]), the gate and the local API ([`api`]), what is on disk
//! ([`Storage`]) — and [`Presence`] routes each input to the machine that owns it (by
//! [`Ctx`], [`Tick`] or request variant), hands facts between them (a fact that arrives is
//! [`Presence::merge`]d: admission, the member table, dissemination, the detector, events),
//! and carries out what they ask in order, as iroh-gossip's topic state composes HyParView
//! and Plumtree. Who sent a message is an argument of every handler, never a field.

use crate::api::Gate;
use crate::candidates::{CandidateCtx, CandidateTick, Candidates, Tally};
use crate::detector::{random_live, Action as FdAction, Detector, DetectorCtx, DetectorTick, Env};
use crate::dissemination::{Dissemination, DisseminationTick, PushPullCtx};
use crate::events::{Changes, Events, EventsCtx};
use crate::members::{Applied, Limits, Members};
use crate::node::Node;
use crate::regclient::{RegClient, RegCtx, RegTick};
use crate::registry::Registry;
use crate::storage::Storage;
use p2p_common::api::presence::{Config, EventKind, MemberStatus, Request, Response, Update};
use p2p_common::api::{ApiError, ApiResult, PROTOCOL_VERSION};
use p2p_common::resilience::{take_capped, Reachability, ReachabilityConfig, Traffic};
use p2p_common::service::log;
use p2p_common::{
    Address, Effect, Input, Level, Millis, NodeId, Now, ProcessId, Records, SendErrorKind, Service,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::api::MAX_BODY;
pub use crate::events::MAX_SUBSCRIBERS;
pub use crate::storage::joined_records;

/// presence's timers: each machine's, wrapped. A timer is its value: arming one that is
/// armed re-arms it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    Detector(DetectorTick),
    /// The core's own, every gossip interval: a pending refutation, expired suspicions, a
    /// gossip round, retention of dead members.
    Gossip,
    Dissemination(DisseminationTick),
    Registry(RegTick),
    Candidate(CandidateTick),
}

/// presence's request contexts: each machine's, wrapped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ctx {
    Detector(DetectorCtx),
    Registry(RegCtx),
    PushPull(PushPullCtx),
    Events(EventsCtx),
    Candidate(CandidateCtx),
}

macro_rules! wrap {
    ($outer:ident :: $variant:ident ($inner:ty)) => {
        impl From<$inner> for $outer {
            fn from(x: $inner) -> $outer {
                $outer::$variant(x)
            }
        }
    };
}
wrap!(Tick::Detector(DetectorTick));
wrap!(Tick::Dissemination(DisseminationTick));
wrap!(Tick::Registry(RegTick));
wrap!(Tick::Candidate(CandidateTick));
wrap!(Ctx::Detector(DetectorCtx));
wrap!(Ctx::Registry(RegCtx));
wrap!(Ctx::PushPull(PushPullCtx));
wrap!(Ctx::Events(EventsCtx));
wrap!(Ctx::Candidate(CandidateCtx));

type Eff = Effect<Ctx, Tick>;

/// What the failure detector reads of the core, for one call (disjoint borrows of fields).
macro_rules! env {
    ($s:ident) => {
        Env {
            me: &$s.node.me,
            cfg: &$s.node.cfg,
            members: &$s.members,
            reach: &mut $s.reach,
            rng: &mut $s.rng,
            left: $s.node.left,
        }
    };
}

mod inspect;
mod requests;

pub struct Presence {
    /// Who we are, what we say about ourselves, our settings.
    node: Node,
    /// The one source of randomness, seeded at start; every machine draws from it in turn.
    rng: ChaCha8Rng,
    members: Members,
    /// Per-peer round trips and our own network health (read by the detector).
    reach: Reachability,
    gate: Gate,
    detector: Detector,
    diss: Dissemination,
    candidates: Candidates,
    registry: Registry,
    reg: RegClient,
    events: Events,
    storage: Storage,
    /// Messages to and from each other node since start (for `Health`).
    traffic: Traffic,
}

pub fn new(our: Address) -> Presence {
    Presence::new(our, Config::default())
}

impl Presence {
    pub fn new(our: Address, cfg: Config) -> Self {
        Presence {
            reach: Reachability::new(reach_config(&cfg)),
            node: Node::new(our, cfg),
            rng: ChaCha8Rng::seed_from_u64(0),
            members: Members::default(),
            gate: Gate::default(),
            detector: Detector::default(),
            diss: Dissemination::default(),
            candidates: Candidates::default(),
            registry: Registry::default(),
            reg: RegClient::new(crate::regclient::DEFAULT_CAP_MS),
            events: Events::default(),
            storage: Storage::default(),
            traffic: Traffic::default(),
        }
    }

    // ----- handing facts between the machines -----

    /// The forced write of our incarnation and settings ([`Storage::persist`]).
    fn persist(&self) -> Eff {
        Storage::persist(&self.node, &self.events)
    }

    /// New settings: a new reachability table, keeping our own network health (a settings
    /// change must not end the startup grace).
    fn rebuild_reach(&mut self) {
        let health = self.reach.health().clone();
        self.reach = Reachability::new(reach_config(&self.node.cfg));
        self.reach.set_health(health);
    }

    /// Apply the facts of a message from `sender` (`None`: our own verdicts); report
    /// changes, refute claims about ourselves.
    ///
    /// A node we do not know is admitted only on direct evidence: its own fact in a message
    /// it sent us, or its answer to our probe; a fact relayed about it makes it a candidate
    /// at most ([`Candidates::admit`]). The sender's own fact is applied first.
    fn merge(
        &mut self,
        updates: &[Update],
        sender: Option<&NodeId>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let mut order: Vec<&Update> = updates.iter().collect();
        if let Some(s) = sender {
            order.sort_by_key(|u| &u.node != s);
        }
        let (mut tally, mut full) = (Tally::default(), 0usize);
        // Per message: at most K + 1 confirmation probes (a message naming thousands of
        // suspects costs a few probes, not thousands), one log line for its changes.
        let mut confirms = self.node.cfg.suspicion_confirmations + 1;
        let mut changes = Changes::default();
        for u in order {
            if u.node == self.node.me {
                if self.node.on_claim(u, now) {
                    self.refute(now, out);
                }
                continue;
            }
            let (members, node) = (&self.members, &self.node);
            if !self
                .candidates
                .admit(u, sender, members, node, &mut tally, now, out)
            {
                continue;
            }
            let was_alive = self
                .members
                .get(&u.node)
                .map(|m| m.status == MemberStatus::Alive);
            let limits = Limits::of(&self.node.me, sender, &self.node.cfg);
            let applied = self.members.apply(u, now, &limits);
            self.storage.changed(self.members.evicted.drain(..));
            match applied {
                Applied::Stale => {}
                Applied::Full => full += 1,
                Applied::Confirmed => {
                    self.diss.push(u.clone());
                    let cfg = &self.node.cfg;
                    let arm = self
                        .detector
                        .arm_suspicion(&self.members, cfg, &u.node, now);
                    self.run(arm.into_iter().collect(), now, out);
                }
                Applied::Changed { event } => {
                    self.storage.changed([u.node.clone()]);
                    self.diss.push(u.clone());
                    let first_hop = sender == Some(&u.origin);
                    let env = &mut env!(self);
                    let acts =
                        self.detector
                            .on_change(env, u, was_alive, first_hop, confirms > 0, now);
                    if acts.iter().any(|a| matches!(a, FdAction::Probe { .. })) {
                        confirms -= 1;
                    }
                    self.run(acts, now, out);
                    if let Some(kind) = event {
                        changes.add(&kind, &u.node, self.members.get(&u.node));
                        self.emit(kind, &u.node, now, out);
                    }
                }
            }
        }
        if let Some(line) = changes.line(sender) {
            out.push(log(Level::Info, line));
        }
        if full + tally.refused + tally.nominated > 0 {
            // One line per message, not one per fact.
            let (n, r) = (tally.nominated, tally.refused);
            out.push(log(
                Level::Debug,
                format!(
                    "{n} candidates to probe; ignored {r} introductions by non-members or \
                     over budget, {full} for a full table"
                ),
            ));
        }
    }

    /// Move past the highest claim about us: on disk (forced) before any message says it.
    fn refute(&mut self, now: Millis, out: &mut Vec<Eff>) {
        if let Some(claim) = self.node.refute(now) {
            let inc = self.node.incarnation;
            out.push(log(
                Level::Info,
                format!("refuting a claim at incarnation {claim} about us; incarnation now {inc}"),
            ));
            out.push(self.persist());
            self.diss.announce(&self.node);
        }
    }

    /// Hand a membership change to the events machine.
    fn emit(&mut self, kind: EventKind, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let m = self.members.get(node);
        let incarnation = m.map_or(0, |m| m.incarnation);
        let info = m
            .filter(|_| kind == EventKind::NodeJoined)
            .map(|m| m.info.clone());
        let (at, cap) = (self.node.to_wall(now), self.node.cfg.subscriber_queue);
        self.events
            .emit(kind, node, incarnation, info, at, cap as usize, out);
    }

    /// Carry out what the failure detector asks, in order: its messages get the piggyback
    /// of dissemination, its verdicts are merged into the member table as facts by us.
    fn run(&mut self, acts: Vec<FdAction>, now: Millis, out: &mut Vec<Eff>) {
        for a in acts {
            match a {
                FdAction::Probe {
                    to,
                    seq,
                    timeout_s,
                    ctx,
                } => {
                    let updates = self.diss.piggyback(&self.node, &self.members, Some(&to));
                    let protocol_version = PROTOCOL_VERSION;
                    let req = Request::Probe {
                        seq,
                        updates,
                        protocol_version,
                    };
                    out.push(self.node.send(&to, &req, Some((timeout_s, ctx.into()))));
                }
                FdAction::ProbeRequest {
                    to,
                    seq,
                    target,
                    timeout_s,
                } => {
                    let updates = self.diss.piggyback(&self.node, &self.members, Some(&to));
                    let req = Request::ProbeRequest {
                        seq,
                        target,
                        updates,
                        timeout_s: Some(timeout_s),
                        protocol_version: PROTOCOL_VERSION,
                    };
                    out.push(self.node.send(&to, &req, None));
                }
                FdAction::Send { to, req } => out.push(self.node.send(&to, &req, None)),
                FdAction::Timer(after, t) => out.push(Effect::timer(after, t.into())),
                FdAction::Suspect { node, incarnation } => {
                    let u = self
                        .node
                        .fact_by_us(node, MemberStatus::Suspect, incarnation);
                    self.merge(&[u], None, now, out);
                }
                FdAction::Dead { node, incarnation } => {
                    let u = self.node.fact_by_us(node, MemberStatus::Dead, incarnation);
                    self.merge(&[u], None, now, out);
                }
                FdAction::Alive { node, rtt } => self.probe_succeeded(&node, now, rtt),
                FdAction::Log(level, line) => out.push(log(level, line)),
            }
        }
    }

    /// `target` is alive (it answered us, spoke to us, or a helper reached it). Our own
    /// network health moves only on answers to our own sends (in `handle`), so a helper's ack
    /// can still count as "others reach whom we cannot".
    fn probe_succeeded(&mut self, target: &NodeId, now: Millis, rtt: Option<Millis>) {
        self.reach.on_peer_reached(target, now, rtt);
        if let Some(m) = self.members.get_mut(target) {
            m.last_seen = now;
        }
    }

    /// At most twice the configured updates per message are taken from a peer's message;
    /// the rest are dropped (one log line per message, not per update).
    fn capped(&self, updates: Vec<Update>, out: &mut Vec<Eff>) -> Vec<Update> {
        let max = self.node.cfg.max_updates_per_message as usize * 2;
        let (updates, dropped) = take_capped(updates, max);
        if dropped > 0 {
            out.push(log(
                Level::Debug,
                format!("dropped {dropped} updates over the {max} per message"),
            ));
        }
        updates
    }

    // ----- answers and failures of our own requests, timers -----

    /// `from` (vouched for by the kernel: what it says about itself is direct evidence)
    /// answered a request of ours.
    fn on_response(
        &mut self,
        from: &NodeId,
        body: Vec<u8>,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let resp: ApiResult<Response> = serde_json::from_slice(&body)
            .unwrap_or_else(|e| Err(ApiError::bad_request(format!("undecodable response: {e}"))));
        match ctx {
            Ctx::Detector(c) => {
                // Any answer proves the peer alive — an error too (a peer on a newer
                // protocol version may refuse what it does not know, but it answered).
                let capped = self.detector.answer_received(&c);
                if let Ok(Response::Ack { updates, .. }) = resp {
                    let updates = if capped {
                        self.capped(updates, out)
                    } else {
                        updates
                    };
                    self.merge(&updates, Some(from), now, out);
                }
                let acts = self.detector.on_answer(c, now);
                self.run(acts, now, out);
            }
            Ctx::Registry(c) => {
                let Some(l) = self
                    .reg
                    .on_response(&self.node, c, resp, &mut self.rng, out)
                else {
                    return;
                };
                if l.registered {
                    self.probe_succeeded(&l.bootstrap, now, None);
                }
                self.merge(&l.nodes, Some(from), now, out);
                self.reg
                    .next_page(&self.node, &l.bootstrap, l.next_cursor, out);
            }
            Ctx::PushPull(c) => {
                if let Ok(Response::PushPull { members, .. }) = resp {
                    self.probe_succeeded(&c.peer, now, None);
                    self.merge(&members, Some(from), now, out);
                }
            }
            Ctx::Events(c) => self.events.on_response(c, out),
            Ctx::Candidate(c) => {
                // Any answer, an error too, comes from the node's presence itself: it spoke
                // for itself, so it is admitted — with its own fact if it sent one, else
                // with the relayed fact it was named by.
                let updates = match resp {
                    Ok(Response::Ack { updates, .. }) => self.capped(updates, out),
                    _ => Vec::new(),
                };
                self.merge(&updates, Some(&c.node), now, out);
                if let Some(fact) = self.candidates.on_answer(&c) {
                    if self.members.get(&c.node).is_none() {
                        // It answered without a fact of its own (an error, or an ack with no
                        // room for it): it is there, but the relayed incarnation is hearsay
                        // (a liar's 2^53 would leave it unable to refute anything). At the
                        // lowest incarnation, any fact of its own is newer.
                        let fact = Update {
                            incarnation: fact.incarnation.min(1),
                            ..fact
                        };
                        self.merge(&[fact], Some(&c.node), now, out);
                    }
                }
                self.probe_succeeded(&c.node, now, None);
            }
        }
    }

    fn on_send_failed(
        &mut self,
        kind: SendErrorKind,
        target: Address,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        // A candidate is no member: no reachability entry (invented names must not evict
        // real ones).
        if !matches!(ctx, Ctx::Candidate(_)) {
            match kind {
                SendErrorKind::Offline => self.reach.on_offline(&target.node, now),
                SendErrorKind::Timeout => self.reach.on_timeout(&target.node, now),
            }
        }
        match ctx {
            Ctx::Detector(c) => {
                let acts = self.detector.on_failed(&mut env!(self), c, now);
                self.run(acts, now, out);
            }
            Ctx::Registry(c) => self.reg.on_failed(&self.node, c, kind, &mut self.rng, out),
            Ctx::PushPull(_) => {}
            Ctx::Candidate(c) => {
                self.candidates
                    .on_send_failed(&c, kind, &self.node, now, &mut self.rng, out)
            }
            Ctx::Events(c) => self.events.on_failed(c, kind, &self.node.me, now, out),
        }
    }

    fn on_tick(&mut self, t: Tick, now: Millis, out: &mut Vec<Eff>) {
        match t {
            Tick::Candidate(t) => self.candidates.on_tick(&t, &self.node, out),
            Tick::Detector(t) => {
                let acts = self.detector.on_tick(&mut env!(self), t, now);
                self.run(acts, now, out);
            }
            Tick::Gossip => {
                out.push(Effect::timer(
                    self.node.cfg.gossip_interval_ms,
                    Tick::Gossip,
                ));
                self.refute(now, out);
                let acts = self
                    .detector
                    .expire_suspicions(&self.members, &self.node.cfg, now);
                self.run(acts, now, out);
                self.diss
                    .gossip_round(&self.node, &self.members, &mut self.rng, out);
                let gone = self.members.gc(now, self.node.cfg.dead_retention_ms);
                self.storage.changed(gone);
            }
            Tick::Dissemination(_) => {
                // The registry has no timer of its own: its expired entries go now too.
                self.registry.expire(now);
                self.diss
                    .on_tick(&self.node, &self.members, &mut self.rng, out);
            }
            Tick::Registry(t) => {
                let live = self.members.live_count();
                self.reg.on_tick(&self.node, t, live, out);
            }
        }
    }

    fn start(
        &mut self,
        persisted: Option<Vec<u8>>,
        records: Records,
        seed: u64,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.reach.restart(now);
        let (node, members, events) = (&mut self.node, &mut self.members, &mut self.events);
        if self
            .storage
            .restore(persisted, &records, node, members, events, now, out)
        {
            self.rebuild_reach();
        }
        self.events.reserve();
        out.push(self.persist());
        out.extend(self.storage.member_writes(&self.members, &self.node));
        // Stagger the periodic work so nodes started together do not probe in lockstep.
        let cfg = &self.node.cfg;
        let p = self.rng.gen_range(0..cfg.probe_interval_ms);
        let g = self.rng.gen_range(0..cfg.gossip_interval_ms);
        let pp = self
            .rng
            .gen_range(cfg.push_pull_interval_ms / 2..=cfg.push_pull_interval_ms);
        out.push(Effect::timer(p, DetectorTick::Probe.into()));
        out.push(Effect::timer(g, Tick::Gossip));
        out.push(Effect::timer(pp, DisseminationTick::PushPull.into()));
        out.push(RegClient::renew_timer(&self.node));
        if self.node.joined && !self.node.left {
            // Rejoin: tell everyone our new incarnation, re-register, exchange state.
            self.diss.announce(&self.node);
            self.reg.register_all(&self.node, true, out);
            if let Some(peer) = random_live(&self.members, &mut self.rng, 1, &[]).pop() {
                self.diss
                    .push_pull_with(&self.node, &self.members, &peer, out);
            }
        }
    }
}

fn reach_config(cfg: &Config) -> ReachabilityConfig {
    ReachabilityConfig {
        min_timeout_ms: cfg.probe_timeout_ms,
        max_timeout_ms: cfg.probe_interval_ms.max(cfg.probe_timeout_ms),
        default_timeout_ms: cfg.probe_timeout_ms,
        ..ReachabilityConfig::default()
    }
}

impl Service for Presence {
    type Ctx = Ctx;
    type Timer = Tick;

    const WEB_API: bool = true;

    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn handle(&mut self, now: Now, input: Input<Ctx, Tick>) -> Vec<Eff> {
        // Protocol time is monotonic; users see wall time (last seen, event times).
        self.node.wall_offset = now.wall as i64 - now.mono as i64;
        let t = now.mono;
        let mut out = Vec::new();
        self.traffic.observe_input(&self.node.me, &input);
        match input {
            Input::Start {
                persisted,
                records,
                seed,
            } => {
                self.start(persisted, records, seed, t, &mut out);
            }
            Input::Request {
                id,
                from,
                body,
                timeout_s,
                ..
            } => self.on_request(id, from, body, timeout_s.is_some(), t, &mut out),
            Input::Response {
                from, body, ctx, ..
            } => {
                if from.node != self.node.me {
                    self.reach.health_mut().on_success(t);
                }
                self.on_response(&from.node, body, ctx, t, &mut out);
            }
            Input::SendFailed { kind, target, ctx } => {
                self.on_send_failed(kind, target, ctx, t, &mut out)
            }
            Input::Timer(tick) => self.on_tick(tick, t, &mut out),
            // The local API over HTTP, as the node's owner (p2p_common::web).
            Input::Http { id, request } => match p2p_common::web::route(id, request, &self.node.me)
            {
                Ok(req) => return self.handle(now, req),
                Err(reply) => out.push(reply),
            },
            Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => {}
        }
        out.extend(self.storage.member_writes(&self.members, &self.node));
        self.traffic.observe_effects(&self.node.me, &out);
        out
    }
}

/// The address of `presence` on `node`, for other crates.
pub fn address(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(crate::NAME))
}
