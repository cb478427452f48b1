//! Pure core of `presence`: a bootstrap registry plus SWIM-style membership with Lifeguard's
//! refinements. See docs/presence.md for the protocol and its parameters.

use crate::candidates::{CandidateCtx, CandidateStats, CandidateTick, Candidates, Nomination};
use crate::detector::{self, Action as FdAction, Detector, DetectorCtx, DetectorTick, Env};
use crate::events::{Events, EventsCtx};
use crate::gossip::{retransmit_limit, Broadcasts};
use crate::members::{
    Applied, Limits, Member, Members, SavedMember, MAX_INCARNATION, MAX_INCARNATION_JUMP,
};
use crate::regclient::{Action, RegClient};
use crate::registry::{RegisterError, Registry};
use p2p_common::api::presence::{
    Config, EventKind, ListFilter, MemberStatus, NodeInfo, NodeView, PresenceStats, Request,
    Response, Update, DEFAULT_PAGE, MAX_PAGE,
};
use p2p_common::api::{
    decode_request, encode, encode_result, ApiError, ApiResult, ErrorCode, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use p2p_common::resilience::{
    members_only, take_capped, BudgetConfig, Reachability, ReachabilityConfig, SenderBudgets,
};
use p2p_common::service::log;
use p2p_common::{
    Address, Batch, Effect, Expect, Input, Level, Millis, NodeId, Now, ProcessId, Records,
    RequestId, SendErrorKind, Service,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Largest request body presence accepts (full-state exchanges can be large).
pub const MAX_BODY: usize = 4 << 20;
/// Timeout of registry requests (seconds).
const REGISTER_TIMEOUT_S: u64 = 10;
/// Timeout of full-state exchanges (seconds).
const PUSH_PULL_TIMEOUT_S: u64 = 10;
/// Most members in one digest or answer (= the largest `max_members`).
const MAX_PUSH_PULL: usize = p2p_common::api::presence::MAX_MEMBERS as usize;
/// Largest answer to a digest exchange (bytes).
const MAX_PUSH_PULL_BYTES: usize = 2 << 20;
/// Messages per second one remote node may have us handle (steady state is a few per
/// protocol period), and the burst above that.
const INBOUND_PER_SECOND: u32 = 20;
const INBOUND_BURST: u32 = 200;
/// Entries a digest exchange answers with at least (more for a longer digest: 2× its size).
const PUSH_PULL_MIN_ANSWER: usize = 128;
/// Digest exchanges soon after a `Join` (each within half to one and a half periods of the
/// one before), before the minute-long rhythm: a fact a joiner missed in the join's gossip
/// comes with the first one instead of 30–60 s later.
const EARLY_PUSH_PULLS: u8 = 2;
/// Page size of the registry's answer to RegisterNode.
const REGISTER_PAGE: usize = 100;
pub use crate::events::MAX_SUBSCRIBERS;

/// presence's timers. A timer is its value: arming one that is armed re-arms it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    /// The failure detector's timers.
    Detector(DetectorTick),
    Gossip,
    PushPull,
    Renew,
    /// Retry the registration at `bootstrap` (one timer per bootstrap).
    RetryRegister {
        bootstrap: NodeId,
    },
    /// The candidates' timers (retry a probe).
    Candidate(CandidateTick),
}

impl From<DetectorTick> for Tick {
    fn from(t: DetectorTick) -> Tick {
        Tick::Detector(t)
    }
}

type Eff = Effect<Ctx, Tick>;

/// What the failure detector reads of the core, for one call (disjoint borrows of fields).
macro_rules! env {
    ($s:ident) => {
        Env {
            me: &$s.me,
            cfg: &$s.cfg,
            members: &$s.members,
            reach: &mut $s.reach,
            rng: &mut $s.rng,
            left: $s.left,
        }
    };
}

/// Keyed records: our incarnation (forced before it is used), our settings (forced when an
/// app changed them), and one small record per member (lazy, without infos).
const KEY_INCARNATION: &[u8] = b"inc";
const KEY_STATE: &[u8] = b"state";
const MEMBER_PREFIX: &[u8] = b"m/";
/// Version of the keyed format (the whole-state format before it was version 1).
const STORAGE_VERSION: u32 = 2;

/// What we keep about a member on disk (no info: it is re-fetched).
#[derive(Debug, Serialize, Deserialize)]
struct MemberRecord {
    status: MemberStatus,
    incarnation: u64,
    /// Wall time (Unix ms) of the last status change: retention counts from it across
    /// restarts. 0 = unknown (records written before it existed), counted from the start.
    #[serde(default)]
    since: u64,
}

/// Our own settings on disk. New fields get defaults, so an upgrade never loses state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct StateRecord {
    v: u32,
    info: Option<NodeInfo>,
    left: bool,
    joined: bool,
    bootstrap: Vec<NodeId>,
    config: Config,
}

impl Default for StateRecord {
    fn default() -> Self {
        StateRecord {
            v: STORAGE_VERSION,
            info: None,
            left: false,
            joined: false,
            bootstrap: Vec::new(),
            config: Config::default(),
        }
    }
}

/// presence's request contexts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ctx {
    /// The failure detector's probes.
    Detector(DetectorCtx),
    Register {
        bootstrap: NodeId,
    },
    ListRegistry {
        bootstrap: NodeId,
    },
    PushPull {
        peer: NodeId,
    },
    /// The events machine's requests to local apps.
    Events(EventsCtx),
    Deregister,
    /// Our probe of a candidate (a node others named that has not spoken to us yet).
    Candidate(CandidateCtx),
}

impl From<DetectorCtx> for Ctx {
    fn from(c: DetectorCtx) -> Ctx {
        Ctx::Detector(c)
    }
}

impl From<CandidateCtx> for Ctx {
    fn from(c: CandidateCtx) -> Ctx {
        Ctx::Candidate(c)
    }
}

impl From<EventsCtx> for Ctx {
    fn from(c: EventsCtx) -> Ctx {
        Ctx::Events(c)
    }
}

/// The whole-state format of version 1 (before keyed storage): still loaded.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    incarnation: u64,
    info: NodeInfo,
    left: bool,
    joined: bool,
    bootstrap: Vec<NodeId>,
    config: Config,
    members: Vec<SavedMember>,
}

pub struct Presence {
    our: Address,
    me: NodeId,
    cfg: Config,
    rng: ChaCha8Rng,
    incarnation: u64,
    info: NodeInfo,
    left: bool,
    joined: bool,
    bootstrap: Vec<NodeId>,
    members: Members,
    broadcasts: Broadcasts,
    registry: Registry,
    reach: Reachability,
    /// Probe rounds, confirmations, suspicion timers, local health (a sub-machine).
    detector: Detector,
    /// Subscriptions, their deliveries and the event sequence (a sub-machine).
    events: Events,
    stats: PresenceStats,
    dirty: bool,
    /// Members changed or removed since the last write (written lazily).
    dirty_members: BTreeSet<NodeId>,
    /// `wall - mono` at the input being handled: converts our monotonic times for users.
    wall_offset: i64,
    /// Per remote node: messages we handle per second (a flood costs a fixed rate).
    budgets: SenderBudgets,
    /// Nodes others named that have not spoken to us yet: probed, admitted on their answer.
    candidates: Candidates,
    /// The highest non-Alive claim about us not yet refuted, and when we last refuted.
    pending_refute: Option<u64>,
    last_refute: Option<Millis>,
    /// Our registrations at bootstrap nodes.
    reg: RegClient,
    /// Early digest exchanges still to come after a join (see [`EARLY_PUSH_PULLS`]).
    early_push_pulls: u8,
}

pub fn new(our: Address) -> Presence {
    Presence::new(our, Config::default())
}

impl Presence {
    pub fn new(our: Address, cfg: Config) -> Self {
        let reg_cap = crate::regclient::DEFAULT_CAP_MS;
        let me = our.node.clone();
        let reach = Reachability::new(reach_config(&cfg));
        Presence {
            info: NodeInfo::new(me.clone()),
            our,
            me,
            cfg,
            rng: ChaCha8Rng::seed_from_u64(0),
            incarnation: 0,
            left: false,
            joined: false,
            bootstrap: Vec::new(),
            members: Members::default(),
            broadcasts: Broadcasts::default(),
            registry: Registry::default(),
            reach,
            detector: Detector::default(),
            events: Events::default(),
            stats: PresenceStats::default(),
            dirty: false,
            dirty_members: BTreeSet::new(),
            wall_offset: 0,
            reg: RegClient::new(reg_cap),
            pending_refute: None,
            last_refute: None,
            early_push_pulls: 0,
            candidates: Candidates::default(),
            budgets: SenderBudgets::new(BudgetConfig {
                per_second: INBOUND_PER_SECOND,
                burst: INBOUND_BURST,
                max_senders: 4_096,
            }),
        }
    }

    /// A monotonic time of ours as wall time, for users (0 stays 0: never).
    fn to_wall(&self, mono: Millis) -> Millis {
        if mono == 0 {
            return 0;
        }
        (mono as i64).saturating_add(self.wall_offset).max(0) as Millis
    }

    /// New settings: a new reachability table, keeping our own network health (a settings
    /// change must not end the startup grace).
    fn rebuild_reach(&mut self) {
        let health = self.reach.health().clone();
        self.reach = Reachability::new(reach_config(&self.cfg));
        self.reach.set_health(health);
    }

    /// Registration attempts we sent to bootstraps since start.
    pub fn registration_attempts(&self) -> u64 {
        self.reg.attempts
    }

    /// Our reachability of peers, with our own network health in it.
    pub fn reachability(&self) -> &Reachability {
        &self.reach
    }

    // ----- inspection (tests, simulator) -----

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Probes of candidates, admissions on their answers, nominations refused.
    pub fn candidate_stats(&self) -> &CandidateStats {
        &self.candidates.stats
    }
    /// Candidates held now (bounded by [`crate::candidates::CAPACITY`]).
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }
    pub fn local_health(&self) -> u32 {
        self.detector.local_health()
    }
    /// Probe rounds not concluded because the trouble was ours (just started, contradicted).
    pub fn spared_verdicts(&self) -> u64 {
        self.detector.stats.spared_verdicts
    }
    pub fn has_left(&self) -> bool {
        self.left
    }
    pub fn status_of(&self, n: &NodeId) -> Option<MemberStatus> {
        self.members.get(n).map(|m| m.status)
    }
    pub fn member(&self, n: &NodeId) -> Option<&Member> {
        self.members.get(n)
    }
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter()
    }
    pub fn stats(&self) -> PresenceStats {
        let mut s = self.stats.clone();
        s.local_health = self.detector.local_health();
        let d = &self.detector.stats;
        s.probes_sent = d.probes_sent;
        s.probes_failed = d.probes_failed;
        s.indirect_probes_sent = d.indirect_probes_sent;
        s.suspicions_started = d.suspicions_started;
        s.dead_declared = d.dead_declared;
        s.incarnation = self.incarnation;
        s.members = self.members.len() as u64;
        s.events_sent = self.events.sent;
        s.events_dropped = self.events.dropped;
        s.registrations = self.registry.len() as u64;
        s
    }

    // ----- helpers -----

    fn presence_at(&self, node: &NodeId) -> Address {
        Address::new(node.clone(), self.our.process.clone())
    }

    fn self_update(&self) -> Update {
        Update {
            node: self.me.clone(),
            status: if self.left {
                MemberStatus::Left
            } else {
                MemberStatus::Alive
            },
            incarnation: self.incarnation,
            info: Some(self.info.clone()),
            origin: self.me.clone(),
        }
    }

    fn limit(&self) -> u32 {
        retransmit_limit(self.cfg.retransmit_mult, self.members.live_count() + 1)
    }

    /// Piggyback for a message to `to`: pending facts (those about `to` first), and our own
    /// liveness (without info) when there is room, so a node always learns its prober.
    fn piggyback(&mut self, to: Option<&NodeId>) -> Vec<Update> {
        let max = self.cfg.max_updates_per_message as usize;
        let limit = self.limit();
        let mut ups = self.broadcasts.take(max, limit, to);
        // Buddy system: a member we suspect hears about it from the probe itself.
        if let Some(t) = to {
            if let Some(m) = self.members.get(t) {
                if m.status == MemberStatus::Suspect
                    && !ups
                        .iter()
                        .any(|u| &u.node == t && u.status == MemberStatus::Suspect)
                {
                    let origin = m
                        .suspicion
                        .as_ref()
                        .and_then(|s| s.origins.iter().next().cloned())
                        .unwrap_or_else(|| self.me.clone());
                    ups.push(Update {
                        node: t.clone(),
                        status: MemberStatus::Suspect,
                        incarnation: m.incarnation,
                        info: None,
                        origin,
                    });
                }
            }
        }
        if ups.len() < max && !ups.iter().any(|u| u.node == self.me) {
            let mut me = self.self_update();
            me.info = None;
            ups.push(me);
        }
        ups
    }

    fn send(&self, to: &NodeId, req: &Request, timeout_s: Option<u64>, ctx: Option<&Ctx>) -> Eff {
        Effect::Send {
            to: self.presence_at(to),
            body: encode(req),
            blob: None,
            expect: match (timeout_s, ctx) {
                (Some(timeout_s), Some(ctx)) => Some(Expect {
                    timeout_s,
                    ctx: ctx.clone(),
                }),
                _ => None,
            },
        }
    }

    fn timer(after_ms: Millis, t: &Tick) -> Eff {
        Effect::timer(after_ms, t.clone())
    }

    /// A forced write of our incarnation and settings: on disk before anything after it (a
    /// message carrying the incarnation, the answer to the app that changed a setting).
    /// Members are written lazily ([`Self::member_writes`]).
    fn persist_now(&mut self) -> Eff {
        self.dirty = false;
        let reservation = self.events.reservation();
        let state = StateRecord {
            v: STORAGE_VERSION,
            info: Some(self.info.clone()),
            left: self.left,
            joined: self.joined,
            bootstrap: self.bootstrap.clone(),
            config: self.cfg.clone(),
        };
        Effect::Store(
            Batch::forced()
                .put(KEY_INCARNATION, self.incarnation.to_le_bytes().to_vec())
                .put(KEY_STATE, encode(&state))
                .put(reservation.0, reservation.1),
        )
    }

    /// A lazy write of the members that changed: costs the change, not the table.
    fn member_writes(&mut self) -> Option<Eff> {
        if self.dirty_members.is_empty() {
            return None;
        }
        let mut b = Batch::lazy();
        for n in std::mem::take(&mut self.dirty_members) {
            let mut key = MEMBER_PREFIX.to_vec();
            key.extend_from_slice(n.as_str().as_bytes());
            b = match self.members.get(&n) {
                Some(m) => b.put(
                    key,
                    encode(&MemberRecord {
                        status: m.status,
                        incarnation: m.incarnation,
                        since: self.to_wall(m.status_since).saturating_sub(m.carried_ms),
                    }),
                ),
                None => b.delete(key),
            };
        }
        Some(Effect::Store(b))
    }

    fn random_live(&mut self, n: usize, except: &[&NodeId]) -> Vec<NodeId> {
        detector::random_live(&self.members, &mut self.rng, n, except)
    }

    /// Hand a membership change to the events machine.
    fn emit(&mut self, kind: EventKind, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let (incarnation, info) = match self.members.get(node) {
            Some(m) => (
                m.incarnation,
                (kind == EventKind::NodeJoined).then(|| m.info.clone()),
            ),
            None => (0, None),
        };
        let at = self.to_wall(now);
        let cap = self.cfg.subscriber_queue as usize;
        self.events
            .emit(kind, node, incarnation, info, at, cap, out);
    }

    /// Apply gossiped facts; report changes, refute suspicions of ourselves.
    ///
    /// A node we do not know is admitted only on direct evidence: its own fact in a message
    /// it sent us (`sender`), or its answer to our probe. A fact relayed about it by a live
    /// member or our bootstrap makes it a candidate, which we probe ([`Candidates`], with
    /// its budgets); what a stranger says about third parties is ignored. The sender's own
    /// fact is applied first.
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
        let (mut full, mut refused, mut nominated) = (0usize, 0usize, 0usize);
        for u in order {
            if u.node == self.me {
                self.merge_self(u, now, out);
                continue;
            }
            if let Some(s) = sender {
                if *s != u.node && self.members.get(&u.node).is_none() {
                    if !self.members.is_live(s) && !self.bootstrap.contains(s) {
                        refused += 1;
                        continue;
                    }
                    match self.candidates.nominate(u, s, &mut nominated, now) {
                        Nomination::Probe(n) => self.probe_candidate(&n, out),
                        Nomination::Known => {}
                        Nomination::Refused => refused += 1,
                    }
                    continue;
                }
                if *s == u.node {
                    self.candidates.forget(s);
                }
            }
            let was_alive = self
                .members
                .get(&u.node)
                .map(|m| m.status == MemberStatus::Alive);
            let limits = Limits {
                me: &self.me,
                capacity: self.cfg.max_members as usize,
                max_origins: self.cfg.suspicion_confirmations as usize + 1,
            };
            let applied = self.members.apply(u, now, &limits);
            self.dirty_members.extend(self.members.evicted.drain(..));
            match applied {
                Applied::Stale => {}
                Applied::Full => full += 1,
                Applied::Confirmed => {
                    self.broadcasts.push(u.clone());
                    self.arm_suspicion(&u.node, now, out);
                }
                Applied::Changed { event } => {
                    self.dirty_members.insert(u.node.clone());
                    self.broadcasts.push(u.clone());
                    if u.status == MemberStatus::Alive && was_alive.is_none() {
                        // A new member goes into the probe order at a random place.
                        self.detector.add(&u.node, &mut self.rng);
                    }
                    if u.status == MemberStatus::Suspect
                        && was_alive == Some(true)
                        && u.origin != self.me
                    {
                        // First-hop receivers (told by the suspecter itself) always help
                        // confirm; later ones only a few, so the cost stays O(1) per node.
                        let first_hop = sender == Some(&u.origin);
                        let acts = self.detector.on_suspected(
                            &mut env!(self),
                            &u.node,
                            u.incarnation,
                            first_hop,
                        );
                        self.run(acts, now, out);
                    }
                    if u.status == MemberStatus::Suspect {
                        self.arm_suspicion(&u.node, now, out);
                    }
                    if let Some(kind) = event {
                        self.emit(kind, &u.node, now, out);
                    }
                }
            }
        }
        if full + refused + nominated > 0 {
            // One line per message, not one per fact.
            out.push(log(
                Level::Debug,
                format!(
                    "{nominated} candidates to probe; ignored {refused} introductions by \
                     non-members or over budget, {full} for a full table"
                ),
            ));
        }
    }

    /// Probe a candidate. The probe carries only our own fact (the candidate learns us from
    /// us), not dissemination's piggyback: probes of nodes a liar invented must not use up
    /// the retransmissions of real facts.
    fn probe_candidate(&mut self, node: &NodeId, out: &mut Vec<Eff>) {
        let mut me = self.self_update();
        me.info = None;
        // Not a failure verdict, only an admission: no hurry, room for a slow node.
        let timeout_s = self
            .cfg
            .probe_timeout_ms
            .saturating_mul(2)
            .div_ceil(1000)
            .max(1);
        out.push(self.send(
            node,
            &Request::Probe {
                seq: 0,
                updates: vec![me],
                protocol_version: PROTOCOL_VERSION,
            },
            Some(timeout_s),
            Some(&CandidateCtx { node: node.clone() }.into()),
        ));
    }

    /// A candidate answered our probe (`updates`: its ack's piggyback): it spoke for
    /// itself, so it is admitted — with its own fact if it sent one, else with the relayed
    /// fact it was named by.
    fn candidate_answered(
        &mut self,
        c: CandidateCtx,
        updates: Vec<Update>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        self.merge(&updates, Some(&c.node), now, out);
        if let Some(fact) = self.candidates.on_answer(&c) {
            if self.members.get(&c.node).is_none() {
                self.merge(&[fact], Some(&c.node), now, out);
            }
        }
        self.probe_succeeded(&c.node, now, None);
    }

    /// A fact about ourselves: refute any claim that we are suspect, dead or gone.
    /// A claim about ourselves. Any non-Alive claim at or above our incarnation is refuted
    /// by moving past it (as SWIM and memberlist do) — a forged claim one above ours would
    /// otherwise stand. A claim more than [`MAX_INCARNATION_JUMP`] above ours is one no peer
    /// accepts either, so it is ignored. Refutations are at most one per gossip interval (a
    /// stream of claims costs one incarnation step and one forced write per interval), and
    /// they do not move our local health: strangers' claims say nothing about our probing.
    fn merge_self(&mut self, u: &Update, now: Millis, out: &mut Vec<Eff>) {
        if self.left || u.incarnation < self.incarnation {
            return;
        }
        // Our own fact echoed back is no claim; an Alive claim above ours (a forged info, a
        // forged incarnation) is refuted like a suspicion.
        if u.status == MemberStatus::Alive && u.incarnation == self.incarnation {
            return;
        }
        // Only claims our refutation can beat at every peer that knows us: peers refuse
        // jumps of MAX_INCARNATION_JUMP or more, so we move at most that far.
        if u.incarnation.saturating_add(1) >= self.incarnation.saturating_add(MAX_INCARNATION_JUMP)
        {
            return;
        }
        let claim = self
            .pending_refute
            .map_or(u.incarnation, |c| c.max(u.incarnation));
        self.pending_refute = Some(claim);
        if self
            .last_refute
            .is_none_or(|t| now >= t.saturating_add(self.cfg.gossip_interval_ms))
        {
            self.refute(now, out);
        }
    }

    /// Move past the highest claim about us seen since the last refutation.
    fn refute(&mut self, now: Millis, out: &mut Vec<Eff>) {
        let Some(claim) = self.pending_refute.take() else {
            return;
        };
        if claim < self.incarnation {
            return;
        }
        self.incarnation = bump(claim);
        self.last_refute = Some(now);
        self.stats.refutations += 1;
        out.push(log(
            Level::Info,
            format!(
                "refuting a claim at incarnation {claim} about us; incarnation now {}",
                self.incarnation
            ),
        ));
        // On disk before any message carries it.
        out.push(self.persist_now());
        self.broadcasts.push(self.self_update());
    }

    /// Set a timer for when the suspicion of `node` runs out with what is known now.
    fn arm_suspicion(&mut self, node: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        if let Some(a) = self
            .detector
            .arm_suspicion(&self.members, &self.cfg, node, now)
        {
            self.run(vec![a], now, out);
        }
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
                    let updates = self.piggyback(Some(&to));
                    out.push(self.send(
                        &to,
                        &Request::Probe {
                            seq,
                            updates,
                            protocol_version: PROTOCOL_VERSION,
                        },
                        Some(timeout_s),
                        Some(&ctx.into()),
                    ));
                }
                FdAction::ProbeRequest {
                    to,
                    seq,
                    target,
                    timeout_s,
                } => {
                    let updates = self.piggyback(Some(&to));
                    out.push(self.send(
                        &to,
                        &Request::ProbeRequest {
                            seq,
                            target,
                            updates,
                            timeout_s: Some(timeout_s),
                            protocol_version: PROTOCOL_VERSION,
                        },
                        None,
                        None,
                    ));
                }
                FdAction::Send { to, req } => out.push(self.send(&to, &req, None, None)),
                FdAction::Timer(after, t) => out.push(Self::timer(after, &t.into())),
                FdAction::Suspect { node, incarnation } => {
                    let u = self.fact_by_us(node, MemberStatus::Suspect, incarnation);
                    self.merge(&[u], None, now, out);
                }
                FdAction::Dead { node, incarnation } => {
                    let u = self.fact_by_us(node, MemberStatus::Dead, incarnation);
                    self.merge(&[u], None, now, out);
                }
                FdAction::Alive { node, rtt } => self.probe_succeeded(&node, now, rtt),
                FdAction::Log(level, line) => out.push(log(level, line)),
            }
        }
    }

    /// A fact about `node` with us as its origin (a verdict of our failure detector).
    fn fact_by_us(&self, node: NodeId, status: MemberStatus, incarnation: u64) -> Update {
        Update {
            node,
            status,
            incarnation,
            info: None,
            origin: self.me.clone(),
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
    fn capped(&mut self, updates: Vec<Update>, out: &mut Vec<Eff>) -> Vec<Update> {
        let max = self.cfg.max_updates_per_message as usize * 2;
        let (updates, dropped) = take_capped(updates, max);
        if dropped > 0 {
            out.push(log(
                Level::Debug,
                format!("dropped {dropped} updates over the {max} per message"),
            ));
        }
        updates
    }

    // ----- requests -----

    fn handle_request(
        &mut self,
        id: RequestId,
        from: Address,
        body: Vec<u8>,
        expects_response: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let decoded = decode_request(&body, "presence", MAX_BODY).and_then(Request::validated);
        let result = match decoded {
            Err(e) => Err(e),
            Ok(req) => {
                let local = from.node == self.me;
                let from_peer = !local && from.process == self.our.process;
                if req.is_protocol() && !from_peer {
                    Err(ApiError::forbidden(
                        "protocol message: only presence processes on other nodes may send it",
                    ))
                } else if !local && !self.budgets.allow(&from.node, req.cost(), now) {
                    // One sender's flood costs a fixed rate of work.
                    if self.budgets.refused.is_power_of_two() {
                        out.push(log(
                            Level::Warn,
                            format!(
                                "{}: over its message budget; refusing ({} refusals so far)",
                                from.node, self.budgets.refused
                            ),
                        ));
                    }
                    Err(ApiError::new(
                        ErrorCode::Overloaded,
                        "too many messages from your node; slow down",
                    ))
                } else if !req.is_protocol() && !req.is_open() && !local {
                    Err(ApiError::forbidden(
                        "local-only operation: only apps on this node may call it",
                    ))
                } else if matches!(req, Request::Subscribe {}) && expects_response {
                    match self.events.subscribe(id, &from, &self.me, now) {
                        // Answered when the welcome's outcome comes back (replying later).
                        Ok(Some(send)) => {
                            out.push(send);
                            return;
                        }
                        Ok(None) => Ok(Response::Subscribed {}),
                        Err(e) => Err(e),
                    }
                } else {
                    self.serve(req, &from, now, out)
                }
            }
        };
        if let Err(e) = &result {
            out.push(log(Level::Debug, format!("{from}: {e}")));
        }
        if expects_response {
            out.push(Effect::reply(id, encode_result(&result)));
        }
    }

    fn serve(
        &mut self,
        req: Request,
        from: &Address,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        match req {
            Request::Ping {} => Ok(Response::Pong(p2p_common::basic::pong(&self.me))),
            Request::Info {} => Ok(Response::Info(p2p_common::basic::service_info(
                crate::NAME,
                &self.me,
            ))),
            Request::Join { bootstrap } => {
                let list: Vec<NodeId> = if bootstrap.is_empty() {
                    self.bootstrap.clone()
                } else {
                    bootstrap
                };
                let list: Vec<NodeId> = list
                    .into_iter()
                    .filter(|b| b != &self.me)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if list.is_empty() && self.members.is_empty() {
                    return Err(ApiError::bad_request(
                        "Join needs at least one bootstrap node other than ourselves",
                    ));
                }
                if list.len() > 16 {
                    return Err(ApiError::bad_request("at most 16 bootstrap nodes"));
                }
                let rejoin = self.left;
                self.left = false;
                self.joined = true;
                self.bootstrap = list.clone();
                if rejoin {
                    self.incarnation = bump(self.incarnation);
                }
                self.broadcasts.push(self.self_update());
                out.push(self.persist_now());
                self.reg.retain(&list);
                for b in &list {
                    self.register(b, true, out);
                }
                // The first digest exchange soon, not in 30-60 s (the periodic timer is
                // re-armed from it).
                self.early_push_pulls = EARLY_PUSH_PULLS - 1;
                let first = self.early_push_pull_delay();
                out.push(Self::timer(first, &Tick::PushPull));
                Ok(Response::Joining { bootstrap: list })
            }
            Request::Leave {} => {
                if !self.left {
                    self.left = true;
                    self.detector.stop();
                    self.broadcasts.push(self.self_update());
                    // Spread the leave right away rather than waiting for the next tick.
                    self.gossip_round(out);
                    for b in self.bootstrap.clone() {
                        out.push(self.send(
                            &b,
                            &Request::Deregister {},
                            Some(REGISTER_TIMEOUT_S),
                            Some(&Ctx::Deregister),
                        ));
                    }
                    out.push(self.persist_now());
                }
                Ok(Response::Left {})
            }
            Request::SetInfo {
                app_version,
                capabilities,
                metadata,
            } => {
                let info = NodeInfo {
                    node_id: self.me.clone(),
                    app_version,
                    capabilities,
                    metadata,
                    last_seen: 0,
                };
                info.validate().map_err(ApiError::bad_request)?;
                self.info = info.clone();
                // A newer incarnation makes every member take the new info.
                self.incarnation = bump(self.incarnation);
                self.broadcasts.push(self.self_update());
                out.push(self.persist_now());
                Ok(Response::InfoSet(info))
            }
            Request::ListNodes(f) => self.list(f, now),
            Request::GetNode { node } => self
                .view(&node, now)
                .map(Response::Node)
                .ok_or_else(|| ApiError::not_found(format!("no member {node}"))),
            // Without an answer to wait for (fire-and-forget): no welcome either.
            Request::Subscribe {} => self
                .events
                .subscribe_now(from, out)
                .map(|()| Response::Subscribed {}),
            Request::Unsubscribe {} => self
                .events
                .unsubscribe(from, out)
                .map(|()| Response::Unsubscribed {}),
            Request::GetConfig {} => Ok(Response::Config(self.cfg.clone())),
            Request::SetConfig(patch) => {
                let cfg = patch.apply(&self.cfg);
                cfg.validate().map_err(ApiError::bad_request)?;
                self.cfg = cfg;
                self.rebuild_reach();
                out.push(self.persist_now());
                Ok(Response::Config(self.cfg.clone()))
            }
            Request::Stats {} => Ok(Response::Stats(self.stats())),
            Request::RegisterNode {
                info,
                incarnation,
                protocol_version,
                list,
            } => {
                // A newer node registers through an older bootstrap during a rolling
                // upgrade: only a version older than any we speak is refused.
                if protocol_version < OLDEST_PROTOCOL_VERSION {
                    return Err(ApiError::new(
                        ErrorCode::VersionMismatch,
                        format!(
                            "we speak presence protocol {OLDEST_PROTOCOL_VERSION} and later, you {protocol_version}"
                        ),
                    ));
                }
                if info.node_id != from.node {
                    return Err(ApiError::bad_request(
                        "RegisterNode must carry the sender's own NodeInfo",
                    ));
                }
                info.validate().map_err(ApiError::bad_request)?;
                match self.registry.register(
                    info.clone(),
                    incarnation,
                    now,
                    self.cfg.registry_ttl_ms,
                    self.cfg.registry_capacity as usize,
                    self.cfg.registry_rate_per_min,
                ) {
                    Err(RegisterError::RateLimited) => {
                        return Err(ApiError::new(
                            ErrorCode::Overloaded,
                            "too many registrations from this node; slow down",
                        ))
                    }
                    Err(RegisterError::Full) => {
                        return Err(ApiError::new(ErrorCode::Overloaded, "registry full"))
                    }
                    Ok(()) => {}
                }
                self.merge(
                    &[Update {
                        node: info.node_id.clone(),
                        status: MemberStatus::Alive,
                        incarnation,
                        info: Some(info.clone()),
                        origin: info.node_id.clone(),
                    }],
                    Some(&from.node),
                    now,
                    out,
                );
                self.probe_succeeded(&from.node, now, None);
                let (mut nodes, next_cursor) = if list {
                    self.registry_page(now, None, REGISTER_PAGE, Some(&from.node))
                } else {
                    (Vec::new(), None)
                };
                // The bootstrap is a member too, though not in its own registry.
                nodes.insert(0, self.self_update());
                Ok(Response::Registered {
                    nodes,
                    next_cursor,
                    ttl_ms: self.cfg.registry_ttl_ms,
                })
            }
            Request::ListRegistry { cursor, limit } => {
                let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
                let (nodes, next_cursor) =
                    self.registry_page(now, cursor.as_ref(), limit, Some(&from.node));
                Ok(Response::Registry { nodes, next_cursor })
            }
            Request::Deregister {} => {
                self.registry.remove(&from.node);
                Ok(Response::Deregistered {})
            }
            Request::Probe { seq, updates, .. } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(&from.node), now, out);
                self.probe_succeeded(&from.node, now, None);
                let updates = self.piggyback(Some(&from.node));
                Ok(Response::Ack {
                    seq,
                    updates,
                    protocol_version: PROTOCOL_VERSION,
                })
            }
            Request::ProbeRequest {
                seq,
                target,
                updates,
                timeout_s,
                ..
            } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(&from.node), now, out);
                // Expensive on behalf of another node: only for members, about members (a
                // stranger must not make us probe whatever node id it names).
                members_only(self.members.is_live(&from.node), "ProbeRequest")?;
                if target != self.me && !self.members.is_live(&target) {
                    return Err(ApiError::not_found(format!(
                        "{target} is not a member here"
                    )));
                }
                let acts = self.detector.on_probe_request(
                    &mut env!(self),
                    &from.node,
                    seq,
                    target,
                    timeout_s,
                );
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::IndirectAck { seq, target } => {
                let acts =
                    self.detector
                        .on_indirect_ack(&mut env!(self), &from.node, seq, target, now);
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::IndirectNack { seq, target } => {
                let acts =
                    self.detector
                        .on_indirect_nack(&mut env!(self), &from.node, seq, target, now);
                self.run(acts, now, out);
                Ok(Response::Accepted {})
            }
            Request::Gossip { updates } => {
                let updates = self.capped(updates, out);
                self.merge(&updates, Some(&from.node), now, out);
                Ok(Response::Accepted {})
            }
            Request::PushPull {
                members, want_info, ..
            } => {
                self.stats.push_pulls += 1;
                // Members only: the sender's own fact goes first (a node speaking for itself
                // may join), then the check, then the rest (introductions are budgeted per
                // sender). The answer is bounded relative to the request: a stranger's empty
                // digest does not buy our whole table (joiners page the registry instead).
                let (own, rest): (Vec<Update>, Vec<Update>) =
                    members.iter().cloned().partition(|u| u.node == from.node);
                self.merge(&own, Some(&from.node), now, out);
                members_only(self.members.get(&from.node).is_some(), "PushPull")?;
                self.merge(&rest, Some(&from.node), now, out);
                let cap = members.len().saturating_mul(2).max(PUSH_PULL_MIN_ANSWER);
                let mut delta = self.delta_for(&members, &want_info);
                delta.truncate(cap);
                Ok(Response::PushPull {
                    members: delta,
                    protocol_version: PROTOCOL_VERSION,
                })
            }
        }
    }

    fn registry_page(
        &self,
        now: Millis,
        cursor: Option<&NodeId>,
        limit: usize,
        except: Option<&NodeId>,
    ) -> (Vec<Update>, Option<NodeId>) {
        let (page, next) = self.registry.page(now, cursor, limit, except);
        let nodes = page
            .into_iter()
            .map(|r| {
                // Our own view of the node, when newer, beats its registration.
                let (status, incarnation) = match self.members.get(&r.info.node_id) {
                    Some(m) if m.incarnation >= r.incarnation => (m.status, m.incarnation),
                    _ => (MemberStatus::Alive, r.incarnation),
                };
                Update {
                    node: r.info.node_id.clone(),
                    status,
                    incarnation,
                    info: Some(r.info.clone()),
                    origin: self.origin_of(&r.info.node_id, status),
                }
            })
            .collect();
        (nodes, next)
    }

    /// Our view in brief: every member's status and incarnation, infos left out (ours in).
    fn digest(&self) -> Vec<Update> {
        let mut v = vec![self.self_update()];
        v.extend(
            self.members
                .iter()
                .take(MAX_PUSH_PULL)
                .map(|(n, m)| self.fact(n, m, false)),
        );
        v
    }

    /// The fact we hold about member `n`. A suspicion keeps a real suspecter as its origin:
    /// relaying it must not look like an independent confirmation.
    fn fact(&self, n: &NodeId, m: &Member, with_info: bool) -> Update {
        Update {
            node: n.clone(),
            status: m.status,
            incarnation: m.incarnation,
            info: (with_info && m.status == MemberStatus::Alive && m.has_info)
                .then(|| m.info.clone()),
            origin: self.origin_of(n, m.status),
        }
    }

    fn origin_of(&self, n: &NodeId, status: MemberStatus) -> NodeId {
        let suspecter = self
            .members
            .get(n)
            .filter(|_| status == MemberStatus::Suspect)
            .and_then(|m| m.suspicion.as_ref())
            .and_then(|s| s.origins.iter().next());
        suspecter.unwrap_or(&self.me).clone()
    }

    /// What a peer whose digest is `theirs` lacks or has older, with infos where it needs
    /// them (new or newer alive members, and the ones it asked for).
    fn delta_for(&self, theirs: &[Update], want_info: &[NodeId]) -> Vec<Update> {
        let known: BTreeMap<&NodeId, (MemberStatus, u64)> = theirs
            .iter()
            .map(|u| (&u.node, (u.status, u.incarnation)))
            .collect();
        let wanted: BTreeSet<&NodeId> = want_info.iter().collect();
        let mut out = Vec::new();
        let mine = std::iter::once(self.self_update())
            .chain(self.members.iter().map(|(n, m)| self.fact(n, m, true)));
        let mut bytes = 0;
        for mut u in mine {
            let with_info = match known.get(&u.node) {
                None => true,
                Some(&(_, inc)) if inc < u.incarnation => true,
                Some(&(st, inc)) if inc == u.incarnation && st != u.status => false,
                _ if wanted.contains(&u.node) => true,
                _ => continue,
            };
            if !with_info || u.status != MemberStatus::Alive {
                u.info = None;
            }
            // Keep the answer well under the body limits; the rest comes next exchange.
            bytes += serde_json::to_vec(&u).map_or(0, |b| b.len());
            if bytes > MAX_PUSH_PULL_BYTES || out.len() >= MAX_PUSH_PULL {
                break;
            }
            out.push(u);
        }
        out
    }

    /// A member as apps see it: times are Unix ms (wall clock), ours are monotonic.
    fn view(&self, node: &NodeId, now: Millis) -> Option<NodeView> {
        if node == &self.me {
            let mut info = self.info.clone();
            info.last_seen = self.to_wall(now);
            return Some(NodeView {
                info,
                status: if self.left {
                    MemberStatus::Left
                } else {
                    MemberStatus::Alive
                },
                incarnation: self.incarnation,
                status_since: 0,
                is_self: true,
            });
        }
        let m = self.members.get(node)?;
        let mut info = m.info.clone();
        info.last_seen = self.to_wall(m.last_seen);
        Some(NodeView {
            info,
            status: m.status,
            incarnation: m.incarnation,
            status_since: self.to_wall(m.status_since).saturating_sub(m.carried_ms),
            is_self: false,
        })
    }

    fn list(&self, f: ListFilter, now: Millis) -> ApiResult<Response> {
        let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        let mut ids: Vec<&NodeId> = self.members.iter().map(|(n, _)| n).collect();
        ids.push(&self.me);
        ids.sort();
        let mut out = Vec::new();
        let mut next = None;
        for id in ids
            .into_iter()
            .filter(|n| f.cursor.as_ref().is_none_or(|c| *n > c))
        {
            let Some(v) = self.view(id, now) else {
                continue;
            };
            if f.status.is_some_and(|s| s != v.status) {
                continue;
            }
            if f.capability
                .as_ref()
                .is_some_and(|c| !v.info.capabilities.contains(c))
            {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|v: &NodeView| v.info.node_id.clone());
                break;
            }
            out.push(v);
        }
        Ok(Response::Nodes {
            nodes: out,
            next_cursor: next,
            seq: self.events.seq(),
        })
    }

    /// Register at `bootstrap` (`list` asks for other nodes back: joining, not renewing),
    /// unless an attempt there is in flight or a retry pending (see [`RegClient`]).
    fn register(&mut self, bootstrap: &NodeId, list: bool, out: &mut Vec<Eff>) {
        if let Some(Action::Register { list }) = self.reg.want(bootstrap, list) {
            self.send_registration(bootstrap, list, out);
        }
    }

    /// The registration request itself (the client has counted it in flight).
    fn send_registration(&mut self, bootstrap: &NodeId, list: bool, out: &mut Vec<Eff>) {
        {
            out.push(self.send(
                bootstrap,
                &Request::RegisterNode {
                    info: self.info.clone(),
                    incarnation: self.incarnation,
                    protocol_version: PROTOCOL_VERSION,
                    list,
                },
                Some(REGISTER_TIMEOUT_S),
                Some(&Ctx::Register {
                    bootstrap: bootstrap.clone(),
                }),
            ));
        }
    }

    /// Carry out what the registry client asks.
    fn reg_actions(&mut self, bootstrap: &NodeId, actions: Vec<Action>, out: &mut Vec<Eff>) {
        for a in actions {
            match a {
                Action::Log(m) => out.push(log(Level::Warn, m)),
                Action::RetryIn { after_ms } => out.push(Self::timer(
                    after_ms,
                    &Tick::RetryRegister {
                        bootstrap: bootstrap.clone(),
                    },
                )),
                Action::Page { cursor } => out.push(self.list_registry(bootstrap, cursor)),
                Action::Register { list } => self.send_registration(bootstrap, list, out),
            }
        }
    }

    /// The next registry page, if the client wants it.
    fn next_page(&mut self, bootstrap: &NodeId, next: Option<NodeId>, out: &mut Vec<Eff>) {
        if let Some(a) = self.reg.on_page(bootstrap, next) {
            self.reg_actions(bootstrap, vec![a], out);
        }
    }

    fn gossip_round(&mut self, out: &mut Vec<Eff>) {
        if self.broadcasts.is_empty() {
            return;
        }
        let targets = self.random_live(self.cfg.gossip_fanout as usize, &[]);
        for t in targets {
            let updates = self.piggyback(Some(&t));
            if updates.is_empty() {
                break;
            }
            self.stats.gossip_sent += 1;
            out.push(self.send(&t, &Request::Gossip { updates }, None, None));
        }
    }

    /// The wait before an early digest exchange: half to one and a half periods (never
    /// later than the periodic one would be).
    fn early_push_pull_delay(&mut self) -> Millis {
        let p = self.cfg.probe_interval_ms;
        self.rng
            .gen_range(p / 2..=p + p / 2)
            .min(self.cfg.push_pull_interval_ms)
    }

    fn push_pull_with(&mut self, peer: &NodeId, out: &mut Vec<Eff>) {
        let members = self.digest();
        let want_info: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| !m.has_info && m.status == MemberStatus::Alive)
            .map(|(n, _)| n.clone())
            .take(MAX_PUSH_PULL)
            .collect();
        self.stats.push_pulls += 1;
        out.push(self.send(
            peer,
            &Request::PushPull {
                members,
                want_info,
                protocol_version: PROTOCOL_VERSION,
            },
            Some(PUSH_PULL_TIMEOUT_S),
            Some(&Ctx::PushPull { peer: peer.clone() }),
        ));
    }

    // ----- responses and failures of our own requests -----

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
            Ctx::Register { bootstrap } => match resp {
                Ok(Response::Registered {
                    nodes, next_cursor, ..
                }) => {
                    let acts = self.reg.on_success(&bootstrap);
                    self.reg_actions(&bootstrap, acts, out);
                    self.probe_succeeded(&bootstrap, now, None);
                    self.merge(&nodes, Some(from), now, out);
                    self.next_page(&bootstrap, next_cursor, out);
                }
                Err(e) if e.code == ErrorCode::Overloaded => {
                    self.stats.register_failures += 1;
                    let acts = self.reg.on_failure(&bootstrap, "overloaded", &mut self.rng);
                    self.reg_actions(&bootstrap, acts, out);
                }
                other => {
                    // An answer, so the bootstrap is up; it did not take us.
                    let acts = self.reg.on_success(&bootstrap);
                    self.reg_actions(&bootstrap, acts, out);
                    self.stats.register_failures += 1;
                    out.push(log(
                        Level::Warn,
                        format!("bootstrap {bootstrap} did not register us: {other:?}"),
                    ));
                }
            },
            Ctx::ListRegistry { bootstrap } => {
                if let Ok(Response::Registry { nodes, next_cursor }) = resp {
                    self.merge(&nodes, Some(from), now, out);
                    self.next_page(&bootstrap, next_cursor, out);
                }
            }
            Ctx::PushPull { peer } => {
                if let Ok(Response::PushPull { members, .. }) = resp {
                    self.probe_succeeded(&peer, now, None);
                    self.merge(&members, Some(from), now, out);
                }
            }
            Ctx::Events(c) => self.events.on_response(c, out),
            Ctx::Deregister => {}
            Ctx::Candidate(c) => {
                // Any answer, an error too, comes from the node's presence itself.
                let updates = match resp {
                    Ok(Response::Ack { updates, .. }) => self.capped(updates, out),
                    _ => Vec::new(),
                };
                self.candidate_answered(c, updates, now, out);
            }
        }
    }

    fn list_registry(&self, bootstrap: &NodeId, cursor: NodeId) -> Eff {
        self.send(
            bootstrap,
            &Request::ListRegistry {
                cursor: Some(cursor),
                limit: Some(MAX_PAGE),
            },
            Some(REGISTER_TIMEOUT_S),
            Some(&Ctx::ListRegistry {
                bootstrap: bootstrap.clone(),
            }),
        )
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
            Ctx::Register { bootstrap } => {
                self.stats.register_failures += 1;
                let why = format!("{kind:?}");
                let acts = self.reg.on_failure(&bootstrap, &why, &mut self.rng);
                self.reg_actions(&bootstrap, acts, out);
            }
            Ctx::ListRegistry { .. } | Ctx::PushPull { .. } | Ctx::Deregister => {}
            Ctx::Candidate(c) => {
                let timed_out = kind == SendErrorKind::Timeout;
                let cool_off = self.cfg.probe_interval_ms;
                if let Some(after) =
                    self.candidates
                        .on_failed(&c, timed_out, now, cool_off, &mut self.rng)
                {
                    out.push(Self::timer(
                        after,
                        &Tick::Candidate(CandidateTick { node: c.node }),
                    ));
                }
            }
            Ctx::Events(c) => self.events.on_failed(c, kind, &self.me, now, out),
        }
    }

    fn on_tick(&mut self, t: Tick, now: Millis, out: &mut Vec<Eff>) {
        match t {
            Tick::Candidate(t) => {
                if self.candidates.on_retry(&t) {
                    self.probe_candidate(&t.node, out);
                }
            }
            Tick::Detector(t) => {
                let acts = self.detector.on_tick(&mut env!(self), t, now);
                self.run(acts, now, out);
            }
            Tick::Gossip => {
                out.push(Self::timer(self.cfg.gossip_interval_ms, &Tick::Gossip));
                self.refute(now, out);
                let acts = self
                    .detector
                    .expire_suspicions(&self.members, &self.cfg, now);
                self.run(acts, now, out);
                self.gossip_round(out);
                let gone = self.members.gc(now, self.cfg.dead_retention_ms);
                self.dirty_members.extend(gone);
                if self.dirty {
                    out.push(self.persist_now());
                }
            }
            Tick::PushPull => {
                let next = if self.early_push_pulls > 0 {
                    self.early_push_pulls -= 1;
                    self.early_push_pull_delay()
                } else {
                    let jitter = self.rng.gen_range(0..=self.cfg.push_pull_interval_ms / 4);
                    self.cfg.push_pull_interval_ms + jitter
                };
                out.push(Self::timer(next, &Tick::PushPull));
                self.registry.expire(now);
                if self.left {
                    return;
                }
                if let Some(peer) = self.random_live(1, &[]).pop() {
                    self.push_pull_with(&peer, out);
                }
                // Reconnect: also try a member we think is dead, so healed partitions merge.
                let dead: Vec<NodeId> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.status == MemberStatus::Dead)
                    .map(|(n, _)| n.clone())
                    .collect();
                if let Some(peer) = dead.choose(&mut self.rng).cloned() {
                    self.push_pull_with(&peer, out);
                }
            }
            Tick::Renew => {
                out.push(Self::timer(
                    (self.cfg.registry_ttl_ms / 3).max(1_000),
                    &Tick::Renew,
                ));
                if self.joined && !self.left {
                    // A renewal needs no node list, unless we know nobody alive.
                    let list = self.members.live_count() == 0;
                    for b in self.bootstrap.clone() {
                        self.register(&b, list, out);
                    }
                }
            }
            Tick::RetryRegister { bootstrap } => {
                if self.joined && !self.left && self.bootstrap.contains(&bootstrap) {
                    if let Some(a) = self.reg.on_retry(&bootstrap) {
                        self.reg_actions(&bootstrap, vec![a], out);
                    }
                } else {
                    // Not wanted now (left, or another bootstrap list): a later Join starts
                    // afresh instead of waiting for a retry that will never fire.
                    self.reg.on_retry_ignored(&bootstrap);
                }
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
        if records.contains_key(KEY_INCARNATION) || records.contains_key(KEY_STATE) {
            self.restore_records(&records, now, out);
        } else {
            self.restore_whole_state(persisted.filter(|p| !p.is_empty()), now, out);
        }
        self.events.reserve();
        out.push(self.persist_now());
        if let Some(w) = self.member_writes() {
            out.push(w);
        }
        self.schedule_start(out);
    }

    /// Keyed format (version 2).
    fn restore_records(&mut self, records: &Records, now: Millis, out: &mut Vec<Eff>) {
        let inc = records
            .get(KEY_INCARNATION)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        // A new life: a higher incarnation than anything we said before.
        self.incarnation = bump(inc);
        match records
            .get(KEY_STATE)
            .map(|b| serde_json::from_slice::<StateRecord>(b))
        {
            Some(Ok(st)) => {
                if let Some(info) = st.info.filter(|i| i.node_id == self.me) {
                    self.info = info;
                }
                self.left = st.left;
                self.joined = st.joined;
                self.bootstrap = st.bootstrap;
                if st.config.validate().is_ok() {
                    self.cfg = st.config;
                    self.rebuild_reach();
                }
            }
            Some(Err(e)) => out.push(log(
                Level::Error,
                format!("stored settings unreadable ({e}); keeping defaults"),
            )),
            None => {}
        }
        let mut saved = Vec::new();
        let wall_now = self.to_wall(now);
        for (k, v) in records.range(MEMBER_PREFIX.to_vec()..) {
            let Some(name) = k.strip_prefix(MEMBER_PREFIX) else {
                break;
            };
            let (Ok(name), Ok(rec)) = (
                std::str::from_utf8(name)
                    .map_err(|_| ())
                    .and_then(|n| NodeId::parse(n).map_err(|_| ())),
                serde_json::from_slice::<MemberRecord>(v),
            ) else {
                continue;
            };
            // A wall clock behind the record (stepped back) counts as no age.
            let age_ms = match rec.since {
                0 => 0,
                since => wall_now.saturating_sub(since),
            };
            saved.push(SavedMember {
                info: NodeInfo::new(name.clone()),
                node: name,
                status: rec.status,
                incarnation: rec.incarnation,
                has_info: false,
                age_ms,
            });
        }
        self.members.restore(saved, &self.me, now);
        self.events.restore(records, out);
        out.push(log(
            Level::Info,
            format!(
                "restarted with {} members, {} subscribers, incarnation {}, events from {}",
                self.members.len(),
                self.events.subscribers(),
                self.incarnation,
                self.events.seq() + 1
            ),
        ));
    }

    /// Whole-state format (version 1), kept loadable so an upgrade loses nothing; it is
    /// rewritten as records at once.
    fn restore_whole_state(&mut self, persisted: Option<Vec<u8>>, now: Millis, out: &mut Vec<Eff>) {
        match persisted.map(|b| serde_json::from_slice::<Saved>(&b)) {
            Some(Ok(s)) => {
                // A new life: a higher incarnation than anything we said before.
                self.incarnation = bump(s.incarnation);
                self.info = s.info;
                self.left = s.left;
                self.joined = s.joined;
                self.bootstrap = s.bootstrap;
                if s.config.validate().is_ok() {
                    self.cfg = s.config;
                    self.rebuild_reach();
                }
                self.members.restore(s.members, &self.me, now);
                self.dirty_members = self.members.iter().map(|(n, _)| n.clone()).collect();
                out.push(log(
                    Level::Info,
                    format!(
                        "upgraded whole state to records: {} members, incarnation {}",
                        self.members.len(),
                        self.incarnation
                    ),
                ));
            }
            Some(Err(e)) => {
                out.push(log(
                    Level::Error,
                    format!("persisted state unreadable ({e}); starting fresh"),
                ));
                self.incarnation = 1;
            }
            None => self.incarnation = 1,
        }
    }

    fn schedule_start(&mut self, out: &mut Vec<Eff>) {
        // Stagger the periodic work so nodes started together do not probe in lockstep.
        let p = self.rng.gen_range(0..self.cfg.probe_interval_ms);
        let g = self.rng.gen_range(0..self.cfg.gossip_interval_ms);
        let pp = self
            .rng
            .gen_range(self.cfg.push_pull_interval_ms / 2..=self.cfg.push_pull_interval_ms);
        out.push(Self::timer(p, &DetectorTick::Probe.into()));
        out.push(Self::timer(g, &Tick::Gossip));
        out.push(Self::timer(pp, &Tick::PushPull));
        out.push(Self::timer(
            (self.cfg.registry_ttl_ms / 3).max(1_000),
            &Tick::Renew,
        ));
        if self.joined && !self.left {
            // Rejoin: tell everyone our new incarnation and re-register.
            self.broadcasts.push(self.self_update());
            for b in self.bootstrap.clone() {
                self.register(&b, true, out);
            }
            if let Some(peer) = self.random_live(1, &[]).pop() {
                self.push_pull_with(&peer, out);
            }
        }
    }
}

/// What presence on `me` has on disk after it joined through `bootstrap` and learned every
/// node of `members` Alive at `incarnation` (its own incarnation is `incarnation` too once
/// it starts: a start moves one past the stored one). A simulator starts a converged cluster
/// from these records instead of simulating its join (the 1,000-node figures of the bench).
pub fn joined_records(
    me: &NodeId,
    bootstrap: &[NodeId],
    members: &[NodeId],
    incarnation: u64,
) -> Records {
    let state = StateRecord {
        info: Some(NodeInfo::new(me.clone())),
        joined: true,
        bootstrap: bootstrap.iter().filter(|b| *b != me).cloned().collect(),
        ..StateRecord::default()
    };
    let mut r = Records::new();
    r.insert(
        KEY_INCARNATION.to_vec(),
        incarnation.saturating_sub(1).to_le_bytes().to_vec(),
    );
    r.insert(KEY_STATE.to_vec(), encode(&state));
    for n in members.iter().filter(|n| *n != me) {
        let mut key = MEMBER_PREFIX.to_vec();
        key.extend_from_slice(n.as_str().as_bytes());
        let rec = MemberRecord {
            status: MemberStatus::Alive,
            incarnation,
            since: 0,
        };
        r.insert(key, encode(&rec));
    }
    r
}

/// The next incarnation, never past [`MAX_INCARNATION`].
fn bump(incarnation: u64) -> u64 {
    incarnation.saturating_add(1).min(MAX_INCARNATION)
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
        self.wall_offset = now.wall as i64 - now.mono as i64;
        let t = now.mono;
        let mut out = Vec::new();
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
            } => {
                self.handle_request(id, from, body, timeout_s.is_some(), t, &mut out);
            }
            Input::Response {
                from, body, ctx, ..
            } => {
                if from.node != self.me {
                    self.reach.health_mut().on_success(t);
                }
                // The kernel vouches for a response's source: what it says about itself is
                // direct evidence.
                self.on_response(&from.node, body, ctx, t, &mut out);
            }
            Input::SendFailed { kind, target, ctx } => {
                self.on_send_failed(kind, target, ctx, t, &mut out)
            }
            Input::Timer(tick) => self.on_tick(tick, t, &mut out),
            // The local API over HTTP, as the node's owner (p2p_common::web).
            Input::Http { id, request } => match p2p_common::web::route(id, request, &self.me) {
                Ok(req) => return self.handle(now, req),
                Err(reply) => out.push(reply),
            },
            Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => {}
        }
        if let Some(w) = self.member_writes() {
            out.push(w);
        }
        out
    }
}

/// The address of `presence` on `node`, for other crates.
pub fn address(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(crate::NAME))
}
