//! The `presence` scenario: membership under random faults, plus the helpers the presence
//! tests and the benchmark share.

use super::{heal_all, Scenario};
use crate::{factory, Mode, NetConfig, Sim, SimConfig, SimError};
use p2p_common::api::encode;
use p2p_common::api::presence::{
    Config, MemberStatus, Request, Response, SubscriberMessage, Update,
};
use p2p_common::{Millis, NodeId};
use presence::core::Presence;
use presence::members::MAX_INCARNATION_JUMP;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub mod bench;

pub const NAME: &str = "presence";

pub struct PresenceScenario;

/// Settings the scenarios use: the defaults.
pub fn config() -> Config {
    Config::default()
}

/// A cluster of `n` nodes running presence (no invariants: see [`with_checks`]).
pub fn cluster(cfg: SimConfig, pcfg: Config) -> Sim {
    Sim::new(cfg).with_process(NAME, factory(move |a| Presence::new(a, pcfg.clone())))
}

/// The presence invariants that hold at every step:
/// - a node told it is suspect, dead or gone (a peer's message it handles carries a non-Alive
///   fact about it at or above its incarnation, or an Alive one above) moves past the claim
///   within two gossip intervals (its refutation is rate-limited to one per interval), unless
///   it left or crashed meanwhile;
/// - only a node raises its own incarnation: no message carries a fact about a node at an
///   incarnation that node never had (checked on every message sent);
/// - a node's own incarnation never decreases, and a restarted node comes back with a
///   higher one than it ever had;
/// - within one life, a node's view of another's incarnation never decreases.
pub fn with_checks(sim: Sim) -> Sim {
    let own: Rc<RefCell<BTreeMap<usize, (u64, u64)>>> = Rc::default();
    // (observer, observer's life, member) -> highest incarnation seen.
    type Views = BTreeMap<(usize, u64, NodeId), u64>;
    let views: Rc<RefCell<Views>> = Rc::default();
    // Node -> the highest incarnation it has had (updated after every event).
    let highest: Rc<RefCell<BTreeMap<NodeId, u64>>> = Rc::default();
    let claims: Rc<RefCell<Vec<Claim>>> = Rc::default();
    let (highest_w, highest_i) = (highest.clone(), highest);
    let (claims_o, claims_i) = (claims.clone(), claims);
    sim.with_wire_check(
        "only a node raises its own incarnation",
        move |from, _to, body| {
            let highest = highest_w.borrow();
            for u in updates_in(body) {
                // The sender's own fact may carry an incarnation raised in this very step.
                if u.node == from.node {
                    continue;
                }
                if let Some(&h) = highest.get(&u.node) {
                    if u.incarnation > h {
                        return Err(format!(
                            "{} says {} is {:?} at incarnation {}, above any it ever had ({h})",
                            from.node, u.node, u.status, u.incarnation
                        ));
                    }
                }
            }
            Ok(())
        },
    )
    .with_delivery_observer(move |s, i, from, to, body| {
        if to != &s.addr(i, NAME) || from.process != to.process || from.node == to.node {
            return;
        }
        let Some(p) = s.core::<Presence>(i, NAME) else {
            return;
        };
        if p.has_left() {
            return;
        }
        // What the core merges: every fact of a probe, indirect probe, gossip and answer; a
        // digest's only from a node it knows (as `Presence` does).
        let updates = match serde_json::from_slice::<Request>(body) {
            Ok(Request::PushPull { .. }) if p.member(&from.node).is_none() => return,
            _ => updates_in(body),
        };
        let ours = p.incarnation();
        for u in updates.iter().filter(|u| &u.node == s.node_id(i)) {
            let claim = if u.status == MemberStatus::Alive {
                u.incarnation > ours
            } else {
                u.incarnation >= ours
            };
            // A claim MAX_INCARNATION_JUMP or more above ours is one no peer takes from a relay
            // (only from us), so it is ignored; every claim below that is refuted.
            if claim && u.incarnation < ours.saturating_add(MAX_INCARNATION_JUMP) {
                let interval = p.config().gossip_interval_ms + s.node(i).slow_ms;
                claims_o.borrow_mut().push(Claim {
                    node: i,
                    life: s.node(i).incarnation,
                    incarnation: u.incarnation,
                    what: format!(
                        "{} told {} it is {:?} at incarnation {} (its own: {ours}) at {} ms",
                        from.node,
                        to.node,
                        u.status,
                        u.incarnation,
                        s.now()
                    ),
                    deadline: s.now() + 2 * interval + 100,
                });
            }
        }
    })
    .with_invariant("a node refutes claims about itself", move |s| {
        let mut claims = claims_i.borrow_mut();
        let mut late = None;
        claims.retain(|c| {
            let node = s.node(c.node);
            let Some(p) = s.core::<Presence>(c.node, NAME) else {
                return false;
            };
            if !node.up || node.incarnation != c.life || p.has_left() {
                return false;
            }
            if p.incarnation() > c.incarnation {
                return false;
            }
            if s.now() > c.deadline && late.is_none() {
                late = Some(format!(
                    "{}; at {} ms it is still at incarnation {}",
                    c.what,
                    s.now(),
                    p.incarnation()
                ));
            }
            true
        });
        late.map_or(Ok(()), Err)
    })
    .with_invariant("incarnations never decrease", move |s| {
        let mut own = own.borrow_mut();
        let mut views = views.borrow_mut();
        let mut highest = highest_i.borrow_mut();
        for i in 0..s.len() {
            let Some(p) = s.core::<Presence>(i, NAME) else {
                continue;
            };
            let h = highest.entry(s.node_id(i).clone()).or_insert(0);
            *h = (*h).max(p.incarnation());
            let life = s.node(i).incarnation;
            let (prev_life, prev) = own.entry(i).or_insert((life, 0));
            // Within a life it may stay; a restarted node must come back strictly higher.
            let ok = if *prev_life == life {
                p.incarnation() >= *prev
            } else {
                p.incarnation() > *prev
            };
            if !ok {
                return Err(format!(
                    "{} went from incarnation {} to {} (life {} -> {})",
                    s.node_id(i),
                    prev,
                    p.incarnation(),
                    prev_life,
                    life
                ));
            }
            *prev_life = life;
            *prev = p.incarnation();
            for (n, m) in p.members() {
                let v = views.entry((i, life, n.clone())).or_insert(0);
                if m.incarnation < *v {
                    return Err(format!(
                        "{}'s view of {n} went from incarnation {v} to {}",
                        s.node_id(i),
                        m.incarnation
                    ));
                }
                *v = m.incarnation;
            }
        }
        Ok(())
    })
}

/// A claim about a node that it must refute (see [`with_checks`]).
struct Claim {
    node: usize,
    life: u64,
    incarnation: u64,
    what: String,
    deadline: Millis,
}

/// Every membership fact a presence body carries (requests and responses).
pub fn updates_in(body: &[u8]) -> Vec<Update> {
    if let Ok(r) = serde_json::from_slice::<Request>(body) {
        return match r {
            Request::Probe { updates, .. }
            | Request::ProbeRequest { updates, .. }
            | Request::Gossip { updates } => updates,
            Request::PushPull { members, .. } => members,
            _ => Vec::new(),
        };
    }
    match serde_json::from_slice::<Result<Response, Value>>(body) {
        Ok(Ok(Response::Ack { updates, .. })) => updates,
        Ok(Ok(Response::PushPull { members, .. })) => members,
        Ok(Ok(Response::Registered { nodes, .. })) | Ok(Ok(Response::Registry { nodes, .. })) => {
            nodes
        }
        _ => Vec::new(),
    }
}

/// Node `i`'s app asks its presence to join through `bootstrap`.
pub fn join(sim: &mut Sim, i: usize, bootstrap: usize) -> u64 {
    let b = sim.node_id(bootstrap).clone();
    let to = sim.addr(i, NAME);
    sim.request(i, &to, encode(&Request::Join { bootstrap: vec![b] }), 10)
}

/// Node `i`'s app subscribes to presence events.
pub fn subscribe(sim: &mut Sim, i: usize) -> u64 {
    let to = sim.addr(i, NAME);
    sim.request(i, &to, encode(&Request::Subscribe {}), 10)
}

/// How node `i` sees node `j` (None if `i` is down or does not know `j`).
pub fn status(sim: &Sim, i: usize, j: usize) -> Option<MemberStatus> {
    sim.core::<Presence>(i, NAME)?.status_of(sim.node_id(j))
}

/// Every node in `live` sees every other node in `live` Alive and each node of `down` as
/// `down_status` (Dead, or Left).
pub fn agreement(
    sim: &Sim,
    live: &[usize],
    down: &[usize],
    down_status: MemberStatus,
) -> Result<(), String> {
    for &i in live {
        for &j in live {
            if i != j && status(sim, i, j) != Some(MemberStatus::Alive) {
                return Err(format!(
                    "{} sees {} as {:?}",
                    sim.node_id(i),
                    sim.node_id(j),
                    status(sim, i, j)
                ));
            }
        }
        for &j in down {
            let st = status(sim, i, j);
            if st.is_some() && st != Some(down_status) {
                return Err(format!(
                    "{} sees {} (down) as {st:?}",
                    sim.node_id(i),
                    sim.node_id(j)
                ));
            }
            if st.is_none() {
                return Err(format!(
                    "{} does not know {}",
                    sim.node_id(i),
                    sim.node_id(j)
                ));
            }
        }
    }
    Ok(())
}

/// Run in steps of `step` ms until `cond` holds or `max` ms pass; the time it took.
pub fn run_until(
    sim: &mut Sim,
    step: Millis,
    max: Millis,
    cond: impl Fn(&Sim) -> bool,
) -> Result<Option<Millis>, SimError> {
    let start = sim.now();
    while sim.now() < start + max {
        if cond(sim) {
            return Ok(Some(sim.now() - start));
        }
        sim.run_for(step)?;
    }
    Ok(cond(sim).then(|| sim.now() - start))
}

/// Run in steps of `step` ms until [`agreement`] holds (within `max` ms); otherwise fail
/// the run saying `what`.
pub fn expect_agreement(
    sim: &mut Sim,
    (live, down, down_status): (&[usize], &[usize], MemberStatus),
    step: Millis,
    max: Millis,
    what: &str,
) -> Result<(), SimError> {
    if run_until(sim, step, max, |s| {
        agreement(s, live, down, down_status).is_ok()
    })?
    .is_some()
    {
        return Ok(());
    }
    let e = agreement(sim, live, down, down_status).unwrap_err();
    Err(sim.fail(format!("{what}: {e}")))
}

/// Presence events (kind, node) the app on node `i` received, in order.
pub fn events(sim: &Sim, i: usize) -> Vec<(String, String)> {
    sim.node(i)
        .app_inbox
        .iter()
        .filter_map(
            |(_, b)| match serde_json::from_slice::<SubscriberMessage>(b).ok()? {
                SubscriberMessage::PresenceEvent(e) => {
                    Some((format!("{:?}", e.kind), e.node.to_string()))
                }
                SubscriberMessage::Welcome { .. } | SubscriberMessage::Dropped { .. } => None,
            },
        )
        .collect()
}

impl Scenario for PresenceScenario {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_nodes(&self) -> usize {
        6
    }
    fn min_nodes(&self) -> usize {
        3
    }

    fn run(&self, seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37);
        let n = nodes;
        let mut cfg = SimConfig::new(seed, n);
        cfg.record_trace = record;
        cfg.net = NetConfig::for_mode(mode);
        let (loss, dup) = (rng.gen_range(0.0..0.1), rng.gen_range(0.0..0.05));
        if mode == Mode::Hostile {
            cfg.net.loss = loss;
            cfg.net.duplicate = dup;
        }
        cfg.net.latency.spike_p = rng.gen_range(0.0..0.02);
        let pcfg = config();
        let period = pcfg.probe_interval_ms;
        let mut sim = with_checks(cluster(cfg, pcfg));
        for i in 1..n {
            join(&mut sim, i, 0);
        }
        // Under loss a member may be suspect for a moment; wait for a moment of agreement.
        let everyone: Vec<usize> = (0..n).collect();
        expect_agreement(
            &mut sim,
            (&everyone, &[], MemberStatus::Dead),
            1_000,
            20 * period,
            "no convergence after joining",
        )?;
        // Random faults.
        for _ in 0..rng.gen_range(3..10) {
            let a = rng.gen_range(0..n);
            match rng.gen_range(0..7) {
                0 => {
                    let cut = rng.gen_range(1..n);
                    sim.partition(&[(0..cut).collect(), (cut..n).collect()]);
                }
                1 => sim.crash(a),
                2 => sim.restart(a),
                3 => sim.heal(),
                4 => sim.set_slow(a, rng.gen_range(0..2_000)),
                5 => sim.set_clock_skew(a, rng.gen_range(-30_000..30_000)),
                _ => {
                    let b = rng.gen_range(0..n);
                    if a != b {
                        sim.reset_connection(a, b);
                    }
                }
            }
            sim.run_for(rng.gen_range(period..20 * period))?;
        }
        // Heal everything: all nodes converge to all alive.
        heal_all(&mut sim);
        let all: Vec<usize> = (0..n).collect();
        expect_agreement(
            &mut sim,
            (&all, &[], MemberStatus::Dead),
            period,
            120 * period,
            "no recovery after healing",
        )?;
        // A node crashes for good: everyone else declares it dead.
        let victim = rng.gen_range(0..n);
        sim.crash(victim);
        let rest: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let what = format!("crash of {} not detected by all", sim.node_id(victim));
        expect_agreement(
            &mut sim,
            (&rest, &[victim], MemberStatus::Dead),
            period,
            60 * period,
            &what,
        )?;
        // Another leaves gracefully: everyone marks it left.
        let leaver = rest[rng.gen_range(0..rest.len())];
        let to = sim.addr(leaver, NAME);
        sim.request(leaver, &to, encode(&Request::Leave {}), 10);
        let stay: Vec<usize> = rest.iter().copied().filter(|&i| i != leaver).collect();
        let what = format!("leave of {} not seen by all", sim.node_id(leaver));
        expect_agreement(
            &mut sim,
            (&stay, &[leaver], MemberStatus::Left),
            period,
            60 * period,
            &what,
        )?;
        Ok(sim)
    }

    fn bench(&self) -> Map<String, Value> {
        bench::bench(&config(), bench::Depth::Full)
    }
    fn bench_for_check(&self) -> Map<String, Value> {
        bench::bench(&config(), bench::Depth::Targets)
    }
    fn bench_targets(&self, b: &Map<String, Value>) -> Option<Vec<String>> {
        Some(bench::targets(b))
    }
}

/// Build `n` nodes joined through node 0 and wait until all see all; the periods it took.
pub fn converge(seed: u64, n: usize, tweak: impl FnOnce(&mut SimConfig)) -> (Sim, Option<f64>) {
    converge_with(seed, n, &config(), tweak)
}

/// [`converge`] with explicit presence settings.
pub fn converge_with(
    seed: u64,
    n: usize,
    pcfg: &Config,
    tweak: impl FnOnce(&mut SimConfig),
) -> (Sim, Option<f64>) {
    let mut cfg = SimConfig::new(seed, n);
    tweak(&mut cfg);
    let period = pcfg.probe_interval_ms;
    let mut sim = cluster(cfg, pcfg.clone());
    for i in 1..n {
        join(&mut sim, i, 0);
    }
    let all: Vec<usize> = (0..n).collect();
    let took = run_until(&mut sim, 250, 200 * period, |s| {
        agreement(s, &all, &[], MemberStatus::Dead).is_ok()
    })
    .expect("no invariants in benches");
    (sim, took.map(|t| t as f64 / period as f64))
}
