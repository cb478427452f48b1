//! The failure detector sub-machine: SWIM's probe round (a direct probe, a second direct
//! attempt and indirect probes through helpers), Lifeguard's confirmations of others'
//! suspicions, the suspicion timers and our local health. It owns its state, its timers
//! ([`DetectorTick`], wrapped by the core's `Tick`) and its request contexts
//! ([`DetectorCtx`], wrapped by the core's `Ctx`).
//!
//! It reads the member table and our own-network health, draws from the core's random
//! numbers (randomness is an input), and answers with [`Action`]s the core carries out in
//! order: messages (the core adds the piggyback of dissemination), timers, and its verdicts
//! (`Suspect`, `Dead`, `Alive`), which the core merges into the member table.

use crate::members::{suspicion_min, suspicion_timeout, Members};
use p2p_common::api::presence::{Config, MemberStatus, Request, Update};
use p2p_common::api::{ApiError, ApiResult};
use p2p_common::resilience::{members_only, Reachability};
use p2p_common::{Level, Millis, NodeId};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The failure detector's timers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DetectorTick {
    /// Start the next probe round.
    Probe,
    /// The window of round `seq` may have closed.
    ProbeWindow { seq: u64 },
    /// When the suspicion of `node` may run out.
    Suspicion { node: NodeId },
}

/// The contexts of the requests the failure detector sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DetectorCtx {
    /// A direct probe of our round; `retry` for the second, longer attempt.
    Probe {
        seq: u64,
        target: NodeId,
        sent: Millis,
        retry: bool,
    },
    /// A probe on behalf of `requester` (we are its helper).
    HelperProbe {
        requester: NodeId,
        seq: u64,
        target: NodeId,
    },
    /// Our own probe of a member others suspect.
    ConfirmProbe { target: NodeId, incarnation: u64 },
}

/// What the failure detector asks of the core, carried out in order.
#[derive(Debug)]
pub enum Action {
    /// A `Probe` to `to` with the piggyback for it, awaited with `ctx`.
    Probe {
        to: NodeId,
        seq: u64,
        timeout_s: u64,
        ctx: DetectorCtx,
    },
    /// A `ProbeRequest` to helper `to` about `target`, with the piggyback for the helper.
    ProbeRequest {
        to: NodeId,
        seq: u64,
        target: NodeId,
        timeout_s: u64,
    },
    /// A fire-and-forget message without piggyback.
    Send {
        to: NodeId,
        req: Request,
    },
    Timer(Millis, DetectorTick),
    /// Verdict: `node` (at `incarnation`) is suspect, by us.
    Suspect {
        node: NodeId,
        incarnation: u64,
    },
    /// Verdict: the suspicion of `node` ran out; it is dead, by us.
    Dead {
        node: NodeId,
        incarnation: u64,
    },
    /// Evidence: `node` is alive (it answered, or a helper reached it).
    Alive {
        node: NodeId,
        rtt: Option<Millis>,
    },
    Log(Level, String),
}

/// What the detector reads of the rest of presence for one input.
pub struct Env<'a> {
    pub me: &'a NodeId,
    pub cfg: &'a Config,
    pub members: &'a Members,
    pub reach: &'a mut Reachability,
    pub rng: &'a mut ChaCha8Rng,
    /// We left: no probing, no confirming.
    pub left: bool,
}

/// The failure detector's counters, for `Stats`.
#[derive(Debug, Clone, Default)]
pub struct DetectorStats {
    pub probes_sent: u64,
    pub probes_failed: u64,
    pub indirect_probes_sent: u64,
    pub suspicions_started: u64,
    pub dead_declared: u64,
    /// Probe rounds not concluded because the trouble was ours (just started, contradicted).
    pub spared_verdicts: u64,
}

/// The probe round in progress.
#[derive(Debug, Clone)]
struct Round {
    seq: u64,
    target: NodeId,
    /// The target's incarnation when probed: a failure says nothing about a newer one.
    incarnation: u64,
    acked: bool,
    /// Timeout of the first direct attempt (seconds); the second gets twice that.
    timeout_s: u64,
    /// The round concludes no earlier than this (a later timer is set when it moves).
    window_end: Millis,
    /// Helpers asked to probe for us, and those that answered Nack.
    helpers: Vec<NodeId>,
    nacked: BTreeSet<NodeId>,
    /// The second direct attempt is still out.
    retry_pending: bool,
}

#[derive(Debug, Default)]
pub struct Detector {
    probe_order: Vec<NodeId>,
    round: Option<Round>,
    next_seq: u64,
    /// Lifeguard's local health multiplier: 0 = healthy.
    lhm: u32,
    /// Suspicions we are confirming with a probe of our own.
    confirming: BTreeSet<NodeId>,
    pub stats: DetectorStats,
}

/// Up to `n` live members but `except`, in random order.
pub fn random_live(
    members: &Members,
    rng: &mut ChaCha8Rng,
    n: usize,
    except: &[&NodeId],
) -> Vec<NodeId> {
    let mut live: Vec<NodeId> = members
        .live()
        .filter(|m| !except.contains(m))
        .cloned()
        .collect();
    live.shuffle(rng);
    live.truncate(n);
    live
}

impl Detector {
    /// Lifeguard's local health multiplier: 0 = healthy.
    pub fn local_health(&self) -> u32 {
        self.lhm
    }

    /// The probe interval, stretched by our local health.
    fn interval(&self, cfg: &Config) -> Millis {
        cfg.probe_interval_ms
            .saturating_mul(u64::from(self.lhm) + 1)
    }

    /// We left: the round in progress ends without a verdict.
    pub fn stop(&mut self) {
        self.round = None;
    }

    /// A new member goes into the probe order at a random place.
    pub fn add(&mut self, node: &NodeId, rng: &mut ChaCha8Rng) {
        let at = rng.gen_range(0..=self.probe_order.len());
        self.probe_order.insert(at, node.clone());
    }

    /// Direct-probe timeout for `target`: its smoothed RTT (or the configured floor),
    /// stretched by our local health, in whole seconds as Hyperware wants.
    fn probe_timeout_s(&self, env: &Env, target: &NodeId) -> u64 {
        let base = env
            .reach
            .suggested_timeout_ms(target)
            .max(env.cfg.probe_timeout_ms);
        let ms = base.saturating_mul(u64::from(self.lhm) + 1);
        ms.div_ceil(1000).max(1)
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    // ----- suspicions -----

    /// Lifeguard-style confirmation: a few of the nodes hearing a suspicion of `target` (a
    /// member that was alive) probe the suspect themselves, with a generous timeout; a
    /// failure is an independent confirmation. First-hop receivers (told by the suspecter
    /// itself) always help confirm; later ones only a few, so the cost stays O(1) per node.
    pub fn on_suspected(
        &mut self,
        env: &mut Env,
        target: &NodeId,
        incarnation: u64,
        first_hop: bool,
    ) -> Vec<Action> {
        if self.confirming.contains(target) || env.left {
            return Vec::new();
        }
        let n = env.members.live_count().max(1);
        let p = ((env.cfg.suspicion_confirmations as f64 + 1.0) / n as f64).min(1.0);
        if !first_hop && !env.rng.gen_bool(p) {
            return Vec::new();
        }
        self.confirming.insert(target.clone());
        let timeout_s = (self.probe_timeout_s(env, target) * 2).max(2);
        let seq = self.seq();
        vec![Action::Probe {
            to: target.clone(),
            seq,
            timeout_s,
            ctx: DetectorCtx::ConfirmProbe {
                target: target.clone(),
                incarnation,
            },
        }]
    }

    /// A fact `u` changed the member table (`was_alive`: whether the member was Alive
    /// before, `None` for a new member; `first_hop`: we were told by the fact's origin
    /// itself): a new member joins the probe order, a suspicion of a member that was alive
    /// may get our confirmation probe (unless `may_confirm` is false: the message that
    /// brought it has had its share of them), and a suspicion is timed.
    #[allow(clippy::too_many_arguments)]
    pub fn on_change(
        &mut self,
        env: &mut Env,
        u: &Update,
        was_alive: Option<bool>,
        first_hop: bool,
        may_confirm: bool,
        now: Millis,
    ) -> Vec<Action> {
        let mut acts = Vec::new();
        if u.status == MemberStatus::Alive && was_alive.is_none() {
            self.add(&u.node, env.rng);
        }
        if u.status == MemberStatus::Suspect {
            if was_alive == Some(true) && u.origin != *env.me && may_confirm {
                acts = self.on_suspected(env, &u.node, u.incarnation, first_hop);
            }
            acts.extend(self.arm_suspicion(env.members, env.cfg, &u.node, now));
        }
        acts
    }

    /// Our verdict that `target` is suspect (a failed probe), if it is a live member.
    fn suspect(&mut self, members: &Members, target: &NodeId) -> Option<Action> {
        let m = members.get(target)?;
        if !matches!(m.status, MemberStatus::Alive | MemberStatus::Suspect) {
            return None;
        }
        if m.status == MemberStatus::Alive {
            self.stats.suspicions_started += 1;
        }
        Some(Action::Suspect {
            node: target.clone(),
            incarnation: m.incarnation,
        })
    }

    fn suspicion_bounds(members: &Members, cfg: &Config) -> (Millis, Millis) {
        let n = members.live_count() + 1;
        let min = suspicion_min(
            n,
            cfg.suspicion_mult,
            cfg.gossip_interval_ms,
            2 * cfg.probe_timeout_ms,
        );
        let max = (min as f64 * cfg.suspicion_max_mult).round() as Millis;
        (min, max)
    }

    /// A timer for when the suspicion of `node` runs out with what is known now (the
    /// gossip tick checks too; this makes the verdict timely).
    pub fn arm_suspicion(
        &self,
        members: &Members,
        cfg: &Config,
        node: &NodeId,
        now: Millis,
    ) -> Option<Action> {
        let (min, max) = Self::suspicion_bounds(members, cfg);
        let s = members.get(node).and_then(|m| m.suspicion.as_ref())?;
        let t = suspicion_timeout(
            min,
            max,
            s.origins.len().saturating_sub(1),
            cfg.suspicion_confirmations,
        );
        let due = (s.start + t).saturating_sub(now);
        Some(Action::Timer(
            due + 1,
            DetectorTick::Suspicion { node: node.clone() },
        ))
    }

    /// Suspects whose time is up become dead (our verdicts).
    pub fn expire_suspicions(
        &mut self,
        members: &Members,
        cfg: &Config,
        now: Millis,
    ) -> Vec<Action> {
        let (min, max) = Self::suspicion_bounds(members, cfg);
        let k = cfg.suspicion_confirmations;
        let due: Vec<(NodeId, u64)> = members
            .iter()
            .filter_map(|(n, m)| {
                let s = m.suspicion.as_ref()?;
                let t = suspicion_timeout(min, max, s.origins.len().saturating_sub(1), k);
                (m.status == MemberStatus::Suspect && now >= s.start + t)
                    .then(|| (n.clone(), m.incarnation))
            })
            .collect();
        self.stats.dead_declared += due.len() as u64;
        due.into_iter()
            .map(|(node, incarnation)| Action::Dead { node, incarnation })
            .collect()
    }

    // ----- the probe round -----

    fn next_target(&mut self, members: &Members, rng: &mut ChaCha8Rng) -> Option<NodeId> {
        for _ in 0..2 {
            while let Some(n) = self.probe_order.pop() {
                if members.is_live(&n) {
                    return Some(n);
                }
            }
            let mut order: Vec<NodeId> = members.live().cloned().collect();
            order.shuffle(rng);
            self.probe_order = order;
        }
        None
    }

    /// A timer of ours fired.
    pub fn on_tick(&mut self, env: &mut Env, t: DetectorTick, now: Millis) -> Vec<Action> {
        match t {
            DetectorTick::Probe => self.on_probe_tick(env, now),
            DetectorTick::ProbeWindow { seq } => {
                if self
                    .round
                    .as_ref()
                    .is_some_and(|r| r.seq == seq && now >= r.window_end)
                {
                    self.conclude_round(env, seq, now)
                } else {
                    Vec::new()
                }
            }
            DetectorTick::Suspicion { .. } => self.expire_suspicions(env.members, env.cfg, now),
        }
    }

    fn on_probe_tick(&mut self, env: &mut Env, now: Millis) -> Vec<Action> {
        let mut acts = vec![Action::Timer(self.interval(env.cfg), DetectorTick::Probe)];
        if env.left {
            return acts;
        }
        if let Some(r) = &self.round {
            if !r.acked {
                // The previous round's window has not closed yet (slow health): wait.
                return acts;
            }
        }
        let Some(target) = self.next_target(env.members, env.rng) else {
            return acts;
        };
        let seq = self.seq();
        let timeout = self.probe_timeout_s(env, &target);
        let incarnation = env.members.get(&target).map_or(0, |m| m.incarnation);
        // After the direct timeout come the indirect probes and a second direct attempt with
        // twice the timeout; the window covers the longest of them plus a margin for travel.
        let helper = env.cfg.probe_timeout_ms.div_ceil(1000) * (u64::from(self.lhm) + 1);
        let window = (timeout + helper.max(2 * timeout)) * 1000 + 1_000;
        self.round = Some(Round {
            seq,
            target: target.clone(),
            incarnation,
            acked: false,
            timeout_s: timeout,
            window_end: now + window,
            helpers: Vec::new(),
            nacked: BTreeSet::new(),
            retry_pending: false,
        });
        self.stats.probes_sent += 1;
        acts.push(Action::Probe {
            to: target.clone(),
            seq,
            timeout_s: timeout,
            ctx: DetectorCtx::Probe {
                seq,
                target,
                sent: now,
                retry: false,
            },
        });
        acts.push(Action::Timer(window, DetectorTick::ProbeWindow { seq }));
        acts
    }

    /// End round `seq`: without an ack, the target becomes suspect.
    fn conclude_round(&mut self, env: &mut Env, seq: u64, now: Millis) -> Vec<Action> {
        let Some(r) = self.round.clone() else {
            return Vec::new();
        };
        if r.seq != seq {
            return Vec::new();
        }
        self.round = None;
        if r.acked {
            return Vec::new();
        }
        if env.reach.own_trouble(now) {
            // Our own networking is not up yet (just started) or others reach whom we
            // cannot: the failure says nothing about the target.
            self.stats.spared_verdicts += 1;
            return vec![Action::Log(
                Level::Debug,
                format!(
                    "probe of {} failed while our own network is in doubt; no suspicion",
                    r.target
                ),
            )];
        }
        // Lifeguard: a failed probe, and helpers that did not even nack, point at us.
        let mut penalty = 1;
        if r.nacked.len() < r.helpers.len() {
            penalty += 1;
        }
        self.lhm = (self.lhm + penalty).min(env.cfg.max_local_health);
        if env
            .members
            .get(&r.target)
            .is_some_and(|m| m.incarnation == r.incarnation)
        {
            self.suspect(env.members, &r.target).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    // ----- requests from other nodes -----

    /// `requester` asks us to probe `target` for it. Expensive on behalf of another node:
    /// served only to members, about members or us (a stranger must not make us probe
    /// whatever node id it names).
    pub fn on_probe_request(
        &mut self,
        env: &mut Env,
        requester: &NodeId,
        seq: u64,
        target: NodeId,
        timeout_s: Option<u64>,
    ) -> ApiResult<Vec<Action>> {
        members_only(env.members.is_live(requester), "ProbeRequest")?;
        if target == *env.me {
            return Ok(vec![Action::Send {
                to: requester.clone(),
                req: Request::IndirectAck { seq, target },
            }]);
        }
        if !env.members.is_live(&target) {
            return Err(ApiError::not_found(format!(
                "{target} is not a member here"
            )));
        }
        self.stats.indirect_probes_sent += 1;
        // Answer within the requester's deadline, or the answer is wasted.
        let timeout = self
            .probe_timeout_s(env, &target)
            .min(timeout_s.unwrap_or(u64::MAX))
            .max(1);
        let pseq = self.seq();
        Ok(vec![Action::Probe {
            to: target.clone(),
            seq: pseq,
            timeout_s: timeout,
            ctx: DetectorCtx::HelperProbe {
                requester: requester.clone(),
                seq,
                target,
            },
        }])
    }

    /// A helper we asked reached `target` for round `seq`.
    pub fn on_indirect_ack(
        &mut self,
        env: &mut Env,
        helper: &NodeId,
        seq: u64,
        target: NodeId,
        now: Millis,
    ) -> Vec<Action> {
        // Only from a helper we asked, for the open round.
        let ours = self.round.as_mut().filter(|r| {
            r.seq == seq && r.target == target && !r.acked && r.helpers.contains(helper)
        });
        let Some(r) = ours else {
            return Vec::new();
        };
        r.acked = true;
        self.lhm = self.lhm.saturating_sub(1);
        // A helper reached what we could not: evidence about our own network.
        env.reach.on_contradicted(now);
        vec![Action::Alive {
            node: target,
            rtt: None,
        }]
    }

    /// A helper we asked could not reach `target` for round `seq`.
    pub fn on_indirect_nack(
        &mut self,
        env: &mut Env,
        helper: &NodeId,
        seq: u64,
        target: NodeId,
        now: Millis,
    ) -> Vec<Action> {
        let mut all_failed = false;
        let ours = self.round.as_mut().filter(|r| {
            r.seq == seq && r.target == target && !r.acked && r.helpers.contains(helper)
        });
        if let Some(r) = ours {
            r.nacked.insert(helper.clone());
            all_failed = r.nacked.len() == r.helpers.len() && !r.retry_pending;
        }
        // Every helper and our own second try failed: no ack can come any more.
        if all_failed {
            self.conclude_round(env, seq, now)
        } else {
            Vec::new()
        }
    }

    // ----- outcomes of our own requests -----

    /// An answer to one of our requests arrived; called before the core merges the facts
    /// of an `Ack` in it (a confirmation is no longer in flight from here on). Whether those
    /// facts are capped at the per-message budget.
    pub fn answer_received(&mut self, ctx: &DetectorCtx) -> bool {
        match ctx {
            DetectorCtx::Probe { .. } => true,
            DetectorCtx::HelperProbe { .. } => false,
            DetectorCtx::ConfirmProbe { target, .. } => {
                self.confirming.remove(target);
                false
            }
        }
    }

    /// The same answer after the merge. Any answer, an error too, proves the peer alive (a
    /// peer on a newer protocol version may refuse what it does not know, but it answered).
    pub fn on_answer(&mut self, ctx: DetectorCtx, now: Millis) -> Vec<Action> {
        match ctx {
            DetectorCtx::Probe {
                seq, target, sent, ..
            } => {
                let acts = vec![Action::Alive {
                    node: target,
                    rtt: Some(now.saturating_sub(sent)),
                }];
                if let Some(r) = self.round.as_mut() {
                    if r.seq == seq {
                        r.acked = true;
                        self.lhm = self.lhm.saturating_sub(1);
                    }
                }
                acts
            }
            DetectorCtx::HelperProbe {
                requester,
                seq,
                target,
            } => vec![
                Action::Alive {
                    node: target.clone(),
                    rtt: None,
                },
                Action::Send {
                    to: requester,
                    req: Request::IndirectAck { seq, target },
                },
            ],
            DetectorCtx::ConfirmProbe { target, .. } => vec![Action::Alive {
                node: target,
                rtt: None,
            }],
        }
    }

    /// One of our requests failed (the core has told our reachability table already).
    pub fn on_failed(&mut self, env: &mut Env, ctx: DetectorCtx, now: Millis) -> Vec<Action> {
        match ctx {
            DetectorCtx::Probe {
                seq, retry: true, ..
            } => {
                let mut concluded = false;
                if let Some(r) = self.round.as_mut().filter(|r| r.seq == seq && !r.acked) {
                    r.retry_pending = false;
                    concluded = r.nacked.len() == r.helpers.len();
                }
                if concluded {
                    self.conclude_round(env, seq, now)
                } else {
                    Vec::new()
                }
            }
            DetectorCtx::Probe { seq, target, .. } => {
                self.stats.probes_failed += 1;
                let Some(first_timeout) = self
                    .round
                    .as_ref()
                    .filter(|r| r.seq == seq && !r.acked)
                    .map(|r| r.timeout_s)
                else {
                    return Vec::new();
                };
                let mut acts = Vec::new();
                // As memberlist does: while helpers try, try once more ourselves with a longer
                // timeout, so a slow but live member is reached and its RTT measured.
                let retry_timeout = 2 * first_timeout;
                let retry_end = now + retry_timeout * 1000 + 1_000;
                let mut helper_deadline_s = 1;
                if let Some(r) = self.round.as_mut() {
                    if retry_end > r.window_end {
                        r.window_end = retry_end;
                        acts.push(Action::Timer(
                            retry_end - now,
                            DetectorTick::ProbeWindow { seq },
                        ));
                    }
                    helper_deadline_s = (r.window_end.saturating_sub(now + 1_500) / 1000).max(1);
                }
                acts.push(Action::Probe {
                    to: target.clone(),
                    seq,
                    timeout_s: retry_timeout,
                    ctx: DetectorCtx::Probe {
                        seq,
                        target: target.clone(),
                        sent: now,
                        retry: true,
                    },
                });
                let helpers = random_live(
                    env.members,
                    env.rng,
                    env.cfg.indirect_probes as usize,
                    &[&target],
                );
                for h in &helpers {
                    acts.push(Action::ProbeRequest {
                        to: h.clone(),
                        seq,
                        target: target.clone(),
                        timeout_s: helper_deadline_s,
                    });
                }
                if let Some(r) = self.round.as_mut() {
                    r.helpers = helpers;
                    r.retry_pending = true;
                }
                acts
            }
            DetectorCtx::HelperProbe {
                requester,
                seq,
                target,
            } => vec![Action::Send {
                to: requester,
                req: Request::IndirectNack { seq, target },
            }],
            DetectorCtx::ConfirmProbe {
                target,
                incarnation,
            } => {
                self.confirming.remove(&target);
                let origins: Vec<NodeId> = match env.members.get(&target) {
                    Some(m)
                        if m.status == MemberStatus::Suspect && m.incarnation == incarnation =>
                    {
                        m.suspicion
                            .as_ref()
                            .map(|s| s.origins.iter().filter(|o| *o != env.me).cloned().collect())
                            .unwrap_or_default()
                    }
                    _ => return Vec::new(),
                };
                let mut acts: Vec<Action> =
                    self.suspect(env.members, &target).into_iter().collect();
                // Tell the suspecters straight away (gossip also spreads it), so they reach
                // their confirmations, and their verdict, without waiting on chance.
                let ours = Update {
                    node: target.clone(),
                    status: MemberStatus::Suspect,
                    incarnation,
                    info: None,
                    origin: env.me.clone(),
                };
                for o in origins
                    .iter()
                    .take(env.cfg.suspicion_confirmations as usize)
                {
                    acts.push(Action::Send {
                        to: o.clone(),
                        req: Request::Gossip {
                            updates: vec![ours.clone()],
                        },
                    });
                }
                acts
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The detector alone, without the core: a round's steps and its verdicts.
    use super::*;
    use crate::members::Limits;
    use p2p_common::resilience::ReachabilityConfig;
    use rand::SeedableRng;

    fn node(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    struct World {
        me: NodeId,
        cfg: Config,
        members: Members,
        reach: Reachability,
        rng: ChaCha8Rng,
    }

    impl World {
        /// `peers` alive at incarnation 1; `proven`: our own networking has answered once.
        fn new(peers: &[&str], proven: bool) -> Self {
            let me = node("me.os");
            let mut members = Members::default();
            let limits = Limits {
                me: &me,
                sender: None,
                capacity: 100,
                max_origins: 4,
            };
            for p in peers {
                let fact = Update {
                    node: node(p),
                    status: MemberStatus::Alive,
                    incarnation: 1,
                    info: None,
                    origin: node(p),
                };
                members.apply(&fact, 0, &limits);
            }
            assert_eq!(members.live_count(), peers.len());
            let mut reach = Reachability::new(ReachabilityConfig::default());
            reach.restart(0);
            if proven {
                reach.health_mut().on_success(0);
            }
            World {
                me,
                cfg: Config::default(),
                members,
                reach,
                rng: ChaCha8Rng::seed_from_u64(1),
            }
        }
        fn env(&mut self) -> Env<'_> {
            Env {
                me: &self.me,
                cfg: &self.cfg,
                members: &self.members,
                reach: &mut self.reach,
                rng: &mut self.rng,
                left: false,
            }
        }
    }

    /// Starts a round at `now`: its target, seq, first timeout and probe context.
    fn start(d: &mut Detector, w: &mut World, now: Millis) -> (NodeId, u64, u64, DetectorCtx) {
        let acts = d.on_tick(&mut w.env(), DetectorTick::Probe, now);
        assert!(
            matches!(acts[0], Action::Timer(t, DetectorTick::Probe) if t == w.cfg.probe_interval_ms),
            "{acts:?}"
        );
        let Action::Probe {
            to,
            seq,
            timeout_s,
            ctx,
        } = &acts[1]
        else {
            panic!("{acts:?}")
        };
        assert!(
            matches!(acts[2], Action::Timer(_, DetectorTick::ProbeWindow { seq: s }) if s == *seq)
        );
        (to.clone(), *seq, *timeout_s, ctx.clone())
    }

    #[test]
    fn a_round_that_nobody_answers_ends_in_our_suspicion_and_raises_local_health() {
        let mut w = World::new(&["a.os", "b.os", "c.os", "d.os", "e.os"], true);
        let mut d = Detector::default();
        let (target, seq, timeout_s, ctx) = start(&mut d, &mut w, 1_000);
        let failed_at = 1_000 + timeout_s * 1000;
        let acts = d.on_failed(&mut w.env(), ctx, failed_at);
        // The second direct attempt, with twice the timeout, and the helpers' requests.
        let retry = acts
            .iter()
            .find_map(|a| match a {
                Action::Probe {
                    to,
                    timeout_s: t,
                    ctx: c @ DetectorCtx::Probe { retry: true, .. },
                    ..
                } if *to == target && *t == 2 * timeout_s => Some(c.clone()),
                _ => None,
            })
            .expect("a retry");
        let helpers: Vec<NodeId> = acts
            .iter()
            .filter_map(|a| match a {
                Action::ProbeRequest { to, target: t, .. } if *t == target => Some(to.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(helpers.len(), w.cfg.indirect_probes as usize, "{acts:?}");
        assert!(!helpers.contains(&target));
        // Every helper nacks; the retry is still out, so no verdict yet.
        for h in &helpers {
            let acts = d.on_indirect_nack(&mut w.env(), h, seq, target.clone(), failed_at + 500);
            assert!(acts.is_empty(), "{acts:?}");
        }
        let acts = d.on_failed(&mut w.env(), retry, failed_at + 2_000);
        assert!(
            matches!(&acts[..], [Action::Suspect { node, incarnation: 1 }] if *node == target),
            "{acts:?}"
        );
        assert_eq!(
            d.local_health(),
            1,
            "one failed round whose helpers all nacked"
        );
        assert_eq!(
            (
                d.stats.probes_sent,
                d.stats.probes_failed,
                d.stats.suspicions_started
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn an_answer_ends_the_round_without_a_verdict() {
        let mut w = World::new(&["a.os", "b.os"], true);
        let mut d = Detector::default();
        let (target, seq, _, ctx) = start(&mut d, &mut w, 1_000);
        assert!(
            d.answer_received(&ctx),
            "a probe's ack is capped like any peer message"
        );
        let acts = d.on_answer(ctx, 1_300);
        assert!(
            matches!(&acts[..], [Action::Alive { node, rtt: Some(300) }] if *node == target),
            "{acts:?}"
        );
        let acts = d.on_tick(&mut w.env(), DetectorTick::ProbeWindow { seq }, 60_000);
        assert!(acts.is_empty(), "{acts:?}");
        assert_eq!(d.stats.suspicions_started, 0);
    }

    #[test]
    fn while_our_own_network_is_in_doubt_a_failed_round_suspects_nobody() {
        // Just started, no answer yet: the startup grace.
        let mut w = World::new(&["a.os", "b.os"], false);
        let mut d = Detector::default();
        let (_, seq, _, _) = start(&mut d, &mut w, 1_000);
        let acts = d.on_tick(&mut w.env(), DetectorTick::ProbeWindow { seq }, 20_000);
        assert!(matches!(&acts[..], [Action::Log(..)]), "{acts:?}");
        assert_eq!((d.stats.spared_verdicts, d.local_health()), (1, 0));
    }
}
