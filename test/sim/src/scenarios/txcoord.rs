//! The `txcoord` scenario: two-phase commit under random faults, with test resource managers
//! (a core of their own, `rm`, on every node) that vote no, vote late, crash with their node
//! or alone (the node's txcoord keeps running) and register again. Invariants after every
//! step: no transaction commits at one manager and aborts at another, a manager is told to
//! commit only after its yes. After the faults
//! heal and the cluster is quiet, every manager that voted yes has the outcome, and no
//! participant is left holding a manager's locks.

use super::{figure, heal_all, random_fault, Scenario};
use crate::{factory, Mode, NetConfig, Sim, SimConfig, SimError};
use p2p_common::api::txcoord::{
    Coordinators, ManagerAnswer, ManagerMessage, ParticipantSpec, Request as TxReq, Response, Vote,
};
use p2p_common::api::{decode_response, encode, encode_result};
use p2p_common::service::{Batch, Effect, Input, Now, RequestId, Service};
use p2p_common::{Address, NodeId, Records};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub struct TxScenario;

/// Process name of the test resource manager.
pub const RM: &str = "rm";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RmTimer {
    Register,
    /// A late vote, from the manager's life `u64` (a crash forgets it).
    Late(String, RequestId, u64),
}

/// A resource manager for tests: its votes and outcomes are durable records (`v/<tx>`,
/// `o/<tx>`; `bad/<tx>` marks a contradiction the invariants report).
pub struct TestRm {
    our: Address,
    votes: BTreeMap<String, Vote>,
    outcomes: BTreeMap<String, String>,
    /// Share of no votes and of late votes, in percent.
    no_pct: u64,
    late_pct: u64,
    /// A crash asked for (down this long from the next input), the life it is in, and until
    /// when it is down (its node's monotonic ms).
    crash_for: Option<u64>,
    life: u64,
    down_until: u64,
    /// Messages that found it down (answered with an error), and its crashes.
    pub refused_while_down: u64,
    pub crashes: u64,
    /// Whose transactions it registers for (`RegisterManager`'s `coordinators`).
    coordinators: Option<Coordinators>,
}

impl TestRm {
    pub fn new(our: Address, no_pct: u64, late_pct: u64) -> Self {
        TestRm {
            our,
            votes: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            no_pct,
            late_pct,
            crash_for: None,
            life: 0,
            down_until: 0,
            refused_while_down: 0,
            crashes: 0,
            coordinators: None,
        }
    }

    /// Registers for transactions coordinated by these nodes (else its own node's only).
    pub fn coordinated_by(mut self, nodes: Vec<NodeId>) -> Self {
        self.coordinators = Some(Coordinators::Only(nodes));
        self
    }

    /// Crash the manager alone (its node and txcoord keep running): from its next input it is
    /// down for `down_ms` and answers every message with an error, as a request to a process
    /// that is not running fails; late votes it owed are never sent; its memory is what its
    /// forced records say (they are all it keeps). It then registers again, which is how
    /// txcoord learns it is back.
    pub fn crash(&mut self, down_ms: u64) {
        self.crash_for = Some(down_ms);
    }
    fn txcoord(&self) -> Address {
        Address::ours(&self.our.node, "txcoord")
    }
    fn roll(&self, tx: &str, salt: u64) -> u64 {
        let mut h: u64 = 1469598103934665603 ^ salt;
        for b in tx.bytes().chain(self.our.node.as_str().bytes()) {
            h = (h ^ b as u64).wrapping_mul(1099511628211);
        }
        h % 100
    }
    fn vote(&mut self, tx: &str, id: RequestId) -> Vec<Effect<(), RmTimer>> {
        let fresh = if self.roll(tx, 1) < self.no_pct {
            Vote::No
        } else {
            Vote::Yes
        };
        let vote = *self.votes.entry(tx.to_string()).or_insert(fresh);
        vec![
            Effect::Store(Batch::forced().put(format!("v/{tx}"), format!("{vote:?}"))),
            Effect::reply(
                id,
                encode_result(&Ok(ManagerAnswer::Vote {
                    vote,
                    reason: if vote == Vote::No {
                        "test manager says no".into()
                    } else {
                        String::new()
                    },
                })),
            ),
        ]
    }
}

impl Service for TestRm {
    type Ctx = ();
    type Timer = RmTimer;
    fn name(&self) -> &'static str {
        RM
    }
    fn handle(&mut self, now: Now, input: Input<(), RmTimer>) -> Vec<Effect<(), RmTimer>> {
        if let Some(d) = self.crash_for.take() {
            self.life += 1;
            self.crashes += 1;
            self.down_until = now.mono + d;
        }
        if now.mono < self.down_until {
            return match input {
                Input::Request { id, .. } => {
                    self.refused_while_down += 1;
                    vec![Effect::reply(
                        id,
                        encode_result::<ManagerAnswer>(&Err(p2p_common::ApiError::new(
                            p2p_common::ErrorCode::Unavailable,
                            "the resource manager is down",
                        ))),
                    )]
                }
                // Back up: its first act is to register again.
                Input::Timer(RmTimer::Register)
                | Input::Response { .. }
                | Input::SendFailed { .. } => {
                    vec![Effect::timer(
                        self.down_until - now.mono + 1,
                        RmTimer::Register,
                    )]
                }
                _ => vec![],
            };
        }
        let register = |s: &Self| {
            Effect::request(
                s.txcoord(),
                encode(&TxReq::RegisterManager {
                    resource: "r".into(),
                    coordinators: s.coordinators.clone(),
                }),
                10,
                (),
            )
        };
        match input {
            Input::Start { records, .. } => {
                self.load(&records);
                vec![register(self)]
            }
            Input::Response { body, .. } => {
                match decode_response::<Response>(&body) {
                    // Registered: nothing more until its next start or crash.
                    Ok(Response::ManagerRegistered { .. }) => vec![],
                    _ => vec![Effect::timer(2_000, RmTimer::Register)],
                }
            }
            Input::SendFailed { .. } => vec![Effect::timer(2_000, RmTimer::Register)],
            Input::Timer(RmTimer::Register) => vec![register(self)],
            Input::Timer(RmTimer::Late(tx, id, life)) if life == self.life => self.vote(&tx, id),
            // Owed by a life that crashed: never sent (txcoord's request times out).
            Input::Timer(RmTimer::Late(..)) => vec![],
            Input::Request { id, body, .. } => {
                let Ok(msg) = serde_json::from_slice::<ManagerMessage>(&body) else {
                    return vec![];
                };
                let done = || Effect::reply(id, encode_result(&Ok(ManagerAnswer::Done {})));
                match msg {
                    ManagerMessage::Hello { .. } => {
                        let tx_ids = self
                            .votes
                            .iter()
                            .filter(|(t, v)| **v == Vote::Yes && !self.outcomes.contains_key(*t))
                            .map(|(t, _)| t.clone())
                            .collect();
                        vec![Effect::reply(
                            id,
                            encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids })),
                        )]
                    }
                    ManagerMessage::PrepareTransaction { tx_id, .. } => {
                        if self.votes.contains_key(&tx_id) || self.roll(&tx_id, 3) >= self.late_pct
                        {
                            return self.vote(&tx_id, id);
                        }
                        // Late: 2 s (within txcoord's 3 s), or now and then 4 s (too late).
                        let after = if self.roll(&tx_id, 4) < 25 {
                            4_000
                        } else {
                            2_000
                        };
                        vec![Effect::timer(after, RmTimer::Late(tx_id, id, self.life))]
                    }
                    ManagerMessage::CommitTransaction { tx_id, .. } => {
                        let mut b = Batch::forced().put(format!("o/{tx_id}"), "Committed");
                        if self.votes.get(&tx_id) != Some(&Vote::Yes)
                            || self.outcomes.get(&tx_id).is_some_and(|o| o != "Committed")
                        {
                            b = b.put(
                                format!("bad/{tx_id}"),
                                "commit without a yes, or after an abort",
                            );
                        }
                        self.outcomes.insert(tx_id, "Committed".into());
                        vec![Effect::Store(b), done()]
                    }
                    ManagerMessage::AbortTransaction { tx_id, .. } => {
                        let mut out = Vec::new();
                        match self.outcomes.get(&tx_id).map(String::as_str) {
                            Some("Committed") => out.push(Effect::Store(
                                Batch::forced().put(format!("bad/{tx_id}"), "abort after a commit"),
                            )),
                            Some(_) => {}
                            None => {
                                self.outcomes.insert(tx_id.clone(), "Aborted".into());
                                out.push(Effect::Store(
                                    Batch::forced().put(format!("o/{tx_id}"), "Aborted"),
                                ));
                            }
                        }
                        out.push(done());
                        out
                    }
                }
            }
            _ => vec![],
        }
    }
}

impl TestRm {
    fn load(&mut self, records: &Records) {
        for (k, v) in records {
            let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v));
            if let Some(t) = k.strip_prefix("v/") {
                let vote = if v == "Yes" { Vote::Yes } else { Vote::No };
                self.votes.insert(t.to_string(), vote);
            } else if let Some(t) = k.strip_prefix("o/") {
                self.outcomes.insert(t.to_string(), v.to_string());
            }
        }
    }
}

/// What the managers' durable records say: per transaction, per node, (vote, outcome).
type Ledger = BTreeMap<String, BTreeMap<usize, (Option<String>, Option<String>)>>;

fn ledger(s: &Sim) -> (Ledger, Vec<String>) {
    let mut l = Ledger::new();
    let mut bad = Vec::new();
    for i in 0..s.len() {
        let Some(r) = s.records(i, RM) else { continue };
        for (k, v) in r {
            let (k, v) = (
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v).to_string(),
            );
            if let Some(t) = k.strip_prefix("v/") {
                l.entry(t.into()).or_default().entry(i).or_default().0 = Some(v);
            } else if let Some(t) = k.strip_prefix("o/") {
                l.entry(t.into()).or_default().entry(i).or_default().1 = Some(v);
            } else if let Some(t) = k.strip_prefix("bad/") {
                bad.push(format!("{}: {t}: {v}", s.node_id(i)));
            }
        }
    }
    (l, bad)
}

fn atomic(s: &Sim) -> Result<(), String> {
    let (l, bad) = ledger(s);
    if !bad.is_empty() {
        return Err(format!("managers told contradictory things: {bad:?}"));
    }
    for (tx, at) in &l {
        let c = at.values().any(|(_, o)| o.as_deref() == Some("Committed"));
        let a = at.values().any(|(_, o)| o.as_deref() == Some("Aborted"));
        if c && a {
            return Err(format!(
                "{tx} committed at one manager and aborted at another: {at:?}"
            ));
        }
        if c && at.values().any(|(v, _)| v.as_deref() == Some("No")) {
            return Err(format!(
                "{tx} committed although a manager voted no: {at:?}"
            ));
        }
    }
    Ok(())
}

pub fn cluster(cfg: SimConfig, no_pct: u64, late_pct: u64) -> Sim {
    // Every node of the cluster may coordinate (the list, not "Any": as a real manager would).
    let nodes: Vec<NodeId> = (0..cfg.nodes).map(crate::node_name).collect();
    Sim::new(cfg)
        .with_process("txcoord", factory(txcoord::core::new))
        .with_process(
            RM,
            factory(move |a| TestRm::new(a, no_pct, late_pct).coordinated_by(nodes.clone())),
        )
        .with_invariant(
            "atomicity: never commit at one manager and abort at another",
            atomic,
        )
        .with_invariant("replies only answer requests", |s| {
            match s.stats.reply_rule_violations {
                0 => Ok(()),
                n => Err(format!("{n} replies broke the reply rule")),
            }
        })
}

fn start_body(sim: &Sim, parts: &[usize], timeout_ms: u64) -> Vec<u8> {
    encode(&TxReq::Start {
        participants: parts
            .iter()
            .map(|&p| ParticipantSpec {
                node: sim.node_id(p).clone(),
                resource: "r".into(),
                operation: format!("op-{p}"),
            })
            .collect(),
        timeout_ms: Some(timeout_ms),
    })
}

fn started(sim: &Sim, h: u64) -> Option<String> {
    match sim.outcome(h) {
        Some(crate::AppOutcome::Response(b)) => match decode_response::<Response>(b) {
            Ok(Response::Started { tx_id }) => Some(tx_id),
            _ => None,
        },
        _ => None,
    }
}

/// Participants holding a manager's locks, over the cluster.
fn blocked(sim: &Sim) -> usize {
    (0..sim.len())
        .filter_map(|i| sim.core::<txcoord::core::TxCoord>(i, "txcoord"))
        .map(|c| c.part.blocked())
        .sum()
}

/// After the quiet period: every transaction is decided the same way at every participant
/// that voted yes, and nothing is left holding locks.
fn settled(sim: &Sim, txs: &[(String, Vec<usize>)]) -> Result<(), String> {
    let (l, _) = ledger(sim);
    for (tx, parts) in txs {
        let at = l.get(tx).cloned().unwrap_or_default();
        let committed = at.values().any(|(_, o)| o.as_deref() == Some("Committed"));
        for p in parts {
            let (v, o) = at.get(p).cloned().unwrap_or_default();
            if committed && o.as_deref() != Some("Committed") {
                return Err(format!("{tx} committed, but {} has {o:?}", sim.node_id(*p)));
            }
            if v.as_deref() == Some("Yes") && o.is_none() {
                return Err(format!(
                    "{tx}: {} voted yes and never learned the outcome",
                    sim.node_id(*p)
                ));
            }
        }
    }
    match blocked(sim) {
        0 => Ok(()),
        n => Err(format!("{n} participants still hold locks after recovery")),
    }
}

/// The faults both sides of the comparison run under: 5% independent loss of every remote
/// message (hostile mode, no duplication), 40 transactions from alice.os to bob.os,
/// charlie.os and dave.os (20, then 20 more 5 s later), alice.os crashed 300 ms after the
/// second batch, down 60 s, then 10 quiet minutes.
fn same_faults_config() -> SimConfig {
    let mut cfg = SimConfig::new(SAME_FAULTS_SEED, 4);
    cfg.net = NetConfig::hostile(SAME_FAULTS_LOSS, 0.0);
    cfg
}

/// The seed and the independent loss of the same-faults comparison.
const SAME_FAULTS_SEED: u64 = 5;
const SAME_FAULTS_LOSS: f64 = 0.05;

fn same_faults_run(sim: &mut Sim, start: &dyn Fn(&mut Sim) -> u64) -> Vec<u64> {
    sim.run_for(25_000).expect("no invariant breaks");
    let mut handles = Vec::new();
    for batch in 0..2 {
        for _ in 0..20 {
            handles.push(start(sim));
        }
        sim.run_for(if batch == 0 { 5_000 } else { 300 })
            .expect("no invariant breaks");
    }
    sim.crash(0);
    sim.run_for(60_000).expect("no invariant breaks");
    sim.restart(0);
    sim.run_for(600_000).expect("no invariant breaks");
    handles
}

/// Transactions applied at some of their participants and not at others.
fn split(committed_at: &BTreeMap<String, usize>, participants: usize) -> usize {
    committed_at
        .values()
        .filter(|n| **n > 0 && **n < participants)
        .count()
}

/// Ours under the same faults: (participants holding locks, atomicity violations).
fn same_faults_ours() -> (usize, usize) {
    let mut sim = cluster(same_faults_config(), 0, 0);
    same_faults_run(&mut sim, &|s: &mut Sim| {
        let body = start_body(s, &[1, 2, 3], 30_000);
        s.request(0, &s.addr(0, "txcoord"), body, 10)
    });
    let (l, bad) = ledger(&sim);
    let committed_at: BTreeMap<String, usize> = l
        .iter()
        .map(|(tx, at)| {
            let c = at
                .values()
                .filter(|(_, o)| o.as_deref() == Some("Committed"))
                .count();
            (tx.clone(), c)
        })
        .collect();
    (blocked(&sim), split(&committed_at, 3) + bad.len())
}

/// The guide's pattern 6 under the same faults: (participants holding locks, atomicity
/// violations, commits answered "Transaction not found").
fn same_faults_baseline() -> (usize, usize, u64) {
    use crate::baseline_2pc::{committed, Guide2pc, GuideMsg, GUIDE_2PC};
    let mut sim = Sim::new(same_faults_config()).with_process(GUIDE_2PC, factory(Guide2pc::new));
    same_faults_run(&mut sim, &|s: &mut Sim| {
        let parts = (1..4).map(|i| s.node_id(i).clone()).collect();
        let body = encode(&GuideMsg::Start {
            participants: parts,
        });
        s.request(0, &s.addr(0, GUIDE_2PC), body, 60)
    });
    let mut committed_at: BTreeMap<String, usize> = BTreeMap::new();
    let (mut pending, mut not_found) = (0, 0);
    for i in 1..4 {
        let g = sim
            .core::<Guide2pc>(i, GUIDE_2PC)
            .expect("participants run");
        pending += g.pending.len();
        not_found += g.not_found;
        for tx in g.pending.keys() {
            committed_at.entry(tx.clone()).or_default();
        }
        for tx in committed(sim.records(i, GUIDE_2PC).expect("records")) {
            *committed_at.entry(tx).or_default() += 1;
        }
    }
    (pending, split(&committed_at, 3), not_found)
}

impl Scenario for TxScenario {
    fn name(&self) -> &'static str {
        "txcoord"
    }
    fn default_nodes(&self) -> usize {
        4
    }
    fn min_nodes(&self) -> usize {
        3
    }

    fn run(&self, seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7c0d);
        let mut cfg = SimConfig::new(seed, nodes);
        cfg.record_trace = record;
        cfg.net = NetConfig::for_mode(mode);
        if mode == Mode::Hostile {
            cfg.net.loss = rng.gen_range(0.0..0.2);
            cfg.net.duplicate = rng.gen_range(0.0..0.1);
        }
        let mut sim = cluster(cfg, rng.gen_range(0..25), rng.gen_range(0..40));
        let n = sim.len();
        // Networking comes up 15-20 s after start.
        sim.run_for(25_000)?;
        let mut handles = Vec::new();
        for _ in 0..12 {
            for _ in 0..rng.gen_range(0..3) {
                let coord = rng.gen_range(0..n);
                let mut parts: Vec<usize> = (0..n).filter(|_| rng.gen_bool(0.7)).collect();
                if parts.is_empty() {
                    parts.push((coord + 1) % n);
                }
                let body = start_body(&sim, &parts, rng.gen_range(5_000..30_000));
                let h = sim.request(coord, &sim.addr(coord, "txcoord"), body, 10);
                handles.push((h, parts));
            }
            if rng.gen_bool(0.6) {
                random_fault(&mut sim, &mut rng);
            }
            // A resource manager crashes alone (its node's txcoord keeps running).
            if rng.gen_bool(0.3) {
                let (i, down) = (rng.gen_range(0..n), rng.gen_range(1_000..20_000));
                if let Some(rm) = sim.core_mut::<TestRm>(i, RM) {
                    rm.crash(down);
                }
            }
            sim.run_for(rng.gen_range(500..12_000))?;
        }
        heal_all(&mut sim);
        sim.run_for(600_000)?;
        let txs: Vec<(String, Vec<usize>)> = handles
            .iter()
            .filter_map(|(h, p)| started(&sim, *h).map(|t| (t, p.clone())))
            .collect();
        settled(&sim, &txs).map_err(|e| sim.fail(e))?;
        Ok(sim)
    }

    fn bench(&self) -> Map<String, Value> {
        let mut m = Map::new();
        const LINK_MS: u64 = 50;
        m.insert("link_latency_ms".into(), json!(LINK_MS));
        let fixed = crate::net::Latency {
            min_ms: LINK_MS,
            max_ms: LINK_MS,
            spike_p: 0.0,
            spike_factor: 1,
        };
        // One fault-free commit with warm connections: hops and writes.
        let mut cfg = SimConfig::new(1, 4);
        cfg.net = NetConfig::realistic();
        cfg.net.latency = fixed.clone();
        let mut sim = cluster(cfg, 0, 0);
        sim.run_for(25_000).expect("no invariant breaks");
        let warm = start_body(&sim, &[1, 2, 3], 30_000);
        sim.request(0, &sim.addr(0, "txcoord"), warm, 10);
        sim.run_for(5_000).expect("warm-up");
        let before: Vec<_> = (0..4)
            .map(|i| sim.driver_stats(i, "txcoord").unwrap())
            .collect();
        let t0 = sim.now();
        let body = start_body(&sim, &[1, 2, 3], 30_000);
        sim.request(0, &sim.addr(0, "txcoord"), body, 10);
        let mut done_at = None;
        for _ in 0..5_000 {
            sim.run_for(1).expect("no invariant breaks");
            let c = sim.core::<txcoord::core::TxCoord>(0, "txcoord").unwrap();
            if c.coord.active() == 0 {
                done_at = Some(sim.now());
                break;
            }
        }
        sim.run_for(5_000).expect("settles");
        let after: Vec<_> = (0..4)
            .map(|i| sim.driver_stats(i, "txcoord").unwrap())
            .collect();
        let elapsed = done_at.map(|t| t - t0).unwrap_or(u64::MAX);
        // Remote hops at 50 ms each; local messages (app, managers) take 1 ms.
        m.insert("commit_ms".into(), json!(elapsed));
        m.insert("commit_message_delays".into(), json!(elapsed / LINK_MS));
        m.insert(
            "forced_writes_per_commit_coordinator".into(),
            json!(after[0].forced_batches - before[0].forced_batches),
        );
        let part_forced: Vec<u64> = (1..4)
            .map(|i| after[i].forced_batches - before[i].forced_batches)
            .collect();
        let part_lazy: Vec<u64> = (1..4)
            .map(|i| after[i].unforced_batches - before[i].unforced_batches)
            .collect();
        m.insert(
            "forced_writes_per_commit_participant".into(),
            json!(part_forced.iter().max()),
        );
        m.insert(
            "unforced_writes_per_commit_coordinator".into(),
            json!(after[0].unforced_batches - before[0].unforced_batches),
        );
        m.insert(
            "unforced_writes_per_commit_participant".into(),
            json!(part_lazy.iter().max()),
        );
        // Over the coordinator and its 3 participants.
        m.insert(
            "forced_writes_per_commit".into(),
            json!(
                after[0].forced_batches - before[0].forced_batches
                    + part_forced.iter().sum::<u64>()
            ),
        );
        m.insert(
            "unforced_writes_per_commit".into(),
            json!(
                after[0].unforced_batches - before[0].unforced_batches
                    + part_lazy.iter().sum::<u64>()
            ),
        );

        // Throughput: 100 transactions started at once from every node, 3 participants each.
        let mut cfg = SimConfig::new(2, 4);
        cfg.net = NetConfig::realistic();
        cfg.net.latency = fixed.clone();
        let mut sim = cluster(cfg, 0, 0);
        sim.run_for(25_000).expect("no invariant breaks");
        let t0 = sim.now();
        let mut txs = Vec::new();
        for k in 0..100 {
            let c = k % 4;
            let parts: Vec<usize> = (0..4).filter(|p| *p != c).collect();
            let body = start_body(&sim, &parts, 30_000);
            txs.push((sim.request(c, &sim.addr(c, "txcoord"), body, 10), parts));
        }
        // Checked every 10 ms of virtual time (the figure's resolution).
        let mut end = t0;
        for _ in 0..6_000 {
            sim.run_for(10).expect("no invariant breaks");
            let open: usize = (0..4)
                .map(|i| {
                    sim.core::<txcoord::core::TxCoord>(i, "txcoord")
                        .unwrap()
                        .coord
                        .active()
                })
                .sum();
            end = sim.now();
            if open == 0 {
                break;
            }
        }
        let secs = (end - t0) as f64 / 1000.0;
        m.insert("throughput_concurrent_txs".into(), json!(100));
        m.insert(
            "throughput_virtual_s".into(),
            json!((secs * 100.0).round() / 100.0),
        );
        m.insert(
            "throughput_tx_per_virtual_s".into(),
            json!((100.0 / secs * 10.0).round() / 10.0),
        );

        // Recovery: the coordinator crashes while 40 transactions are in phase two or one,
        // stays down 60 s; afterwards nobody holds locks.
        let mut cfg = SimConfig::new(3, 4);
        cfg.net = NetConfig::realistic();
        let mut sim = cluster(cfg, 0, 0);
        sim.run_for(25_000).expect("no invariant breaks");
        let mut txs = Vec::new();
        for _ in 0..40 {
            let body = start_body(&sim, &[1, 2, 3], 30_000);
            txs.push((
                sim.request(0, &sim.addr(0, "txcoord"), body, 10),
                vec![1, 2, 3],
            ));
        }
        // Crash it once participants hold locks (prepared, waiting for the decision).
        for _ in 0..500 {
            sim.run_for(10).expect("no invariant breaks");
            if blocked(&sim) >= 20 {
                break;
            }
        }
        let blocked_during = blocked(&sim);
        sim.crash(0);
        sim.run_for(60_000).expect("no invariant breaks");
        sim.restart(0);
        sim.run_for(600_000).expect("no invariant breaks");
        let started: Vec<(String, Vec<usize>)> = txs
            .iter()
            .filter_map(|(h, p)| started(&sim, *h).map(|t| (t, p.clone())))
            .collect();
        m.insert("recovery_transactions".into(), json!(started.len()));
        m.insert(
            "blocked_participants_during_crash".into(),
            json!(blocked_during),
        );
        m.insert(
            "blocked_participants_after_recovery".into(),
            json!(blocked(&sim)),
        );
        m.insert(
            "recovery_settled".into(),
            json!(settled(&sim, &started).is_ok()),
        );

        // The guide's pattern 6 (crate::baseline_2pc) and ours under the same faults.
        m.insert("same_faults_seed".into(), json!(SAME_FAULTS_SEED));
        m.insert("same_faults_loss".into(), json!(SAME_FAULTS_LOSS));
        let (blocked, violations) = same_faults_ours();
        m.insert("same_faults_blocked_participants".into(), json!(blocked));
        m.insert("same_faults_atomicity_violations".into(), json!(violations));
        let (blocked, violations, not_found) = same_faults_baseline();
        m.insert("baseline_blocked_participants".into(), json!(blocked));
        m.insert("baseline_atomicity_violations".into(), json!(violations));
        m.insert("baseline_commits_not_found".into(), json!(not_found));
        m
    }

    /// The targets, and the figures docs/txcoord.md states ([`docs_disagree`]).
    fn bench_targets(&self, bench: &Map<String, Value>) -> Option<Vec<String>> {
        let mut f = targets(bench);
        f.extend(docs_disagree(DOC, bench));
        Some(f)
    }
}

/// The asserted targets of `bench txcoord`.
fn targets(bench: &Map<String, Value>) -> Vec<String> {
    {
        let mut f = Vec::new();
        for (key, want) in [
            ("commit_message_delays", 4.0),
            ("forced_writes_per_commit_coordinator", 1.0),
            ("forced_writes_per_commit_participant", 2.0),
            ("unforced_writes_per_commit_coordinator", 1.0),
            ("unforced_writes_per_commit_participant", 1.0),
            ("blocked_participants_after_recovery", 0.0),
        ] {
            if let Some(v) = figure(bench, key, &mut f) {
                if v != want {
                    f.push(format!("{key} is {v}; required {want}"));
                }
            }
        }
        for (key, want) in [
            ("forced_writes_per_commit", 7.0),
            ("unforced_writes_per_commit", 4.0),
        ] {
            if let Some(v) = figure(bench, key, &mut f) {
                if v != want {
                    f.push(format!(
                        "{key} is {v}; required {want} (coordinator and 3 participants)"
                    ));
                }
            }
        }
        for key in [
            "same_faults_blocked_participants",
            "same_faults_atomicity_violations",
        ] {
            if let Some(v) = figure(bench, key, &mut f) {
                if v != 0.0 {
                    f.push(format!("{key} is {v}; required 0"));
                }
            }
        }
        // The baseline really suffers the faults, so the comparison cannot pass vacuously.
        if let Some(v) = figure(bench, "baseline_blocked_participants", &mut f) {
            if v < 1.0 {
                f.push(format!(
                    "baseline_blocked_participants is {v}; required at least 1 (the faults \
                     no longer hurt the guide's version: the comparison shows nothing)"
                ));
            }
        }
        figure(bench, "baseline_atomicity_violations", &mut f);
        if let Some(t) = figure(bench, "throughput_tx_per_virtual_s", &mut f) {
            if t < 10.0 {
                f.push(format!(
                    "throughput_tx_per_virtual_s is {t}; required at least 10"
                ));
            }
        }
        if bench.get("recovery_settled").and_then(Value::as_bool) != Some(true) {
            f.push(
                "recovery_settled is not true: a transaction was left undecided somewhere".into(),
            );
        }
        f
    }
}

/// docs/txcoord.md, whose benchmark tables `bench txcoord --check` compares with the bench.
const DOC: &str = include_str!("../../../../docs/txcoord.md");
/// The heading of the section those tables are in.
const DOC_SECTION: &str = "## Benchmark";

/// Every row of the tables in `doc`'s benchmark section that names bench keys: the keys
/// (the backticked names of its first cell) against the values of its last cell (`a / b`),
/// which must agree with `bench`. A failure line for each disagreement, and if the section
/// or its rows are missing (so the check cannot pass by finding nothing).
pub fn docs_disagree(doc: &str, bench: &Map<String, Value>) -> Vec<String> {
    let mut f = Vec::new();
    let Some(start) = doc.lines().position(|l| l.starts_with(DOC_SECTION)) else {
        return vec![format!("docs/txcoord.md has no `{DOC_SECTION}` section")];
    };
    let mut rows = 0;
    for line in doc
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("## "))
    {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let (Some(first), Some(last)) = (cells.first(), cells.last()) else {
            continue;
        };
        if !line.starts_with("| `") || cells.len() < 2 {
            continue;
        }
        rows += 1;
        let keys: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        let values: Vec<&str> = last.split(" / ").map(str::trim).collect();
        if keys.len() != values.len() {
            f.push(format!(
                "docs/txcoord.md: the row of {keys:?} has {} values ({last:?})",
                values.len()
            ));
            continue;
        }
        for (key, doc_value) in keys.iter().zip(values) {
            let measured = bench.get(*key).and_then(Value::as_f64);
            let documented = doc_value.replace(',', "").parse::<f64>().ok();
            match (measured, documented) {
                (Some(m), Some(d)) if m == d => {}
                (None, _) => f.push(format!(
                    "docs/txcoord.md documents `{key}`, which the bench does not print"
                )),
                (Some(m), _) => f.push(format!(
                    "docs/txcoord.md says `{key}` is {doc_value}; the bench measured {m} \
                     (update the table in its `{DOC_SECTION}` section)"
                )),
            }
        }
    }
    if rows == 0 {
        f.push(format!(
            "docs/txcoord.md's `{DOC_SECTION}` section has no table rows naming bench keys"
        ));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Map<String, Value> {
        let v = json!({
            "commit_message_delays": 4, "forced_writes_per_commit_coordinator": 1,
            "forced_writes_per_commit_participant": 2, "unforced_writes_per_commit_coordinator": 1,
            "unforced_writes_per_commit_participant": 1, "blocked_participants_after_recovery": 0,
            "throughput_tx_per_virtual_s": 50.0, "recovery_settled": true,
            "forced_writes_per_commit": 7, "unforced_writes_per_commit": 4,
            "same_faults_blocked_participants": 0, "same_faults_atomicity_violations": 0,
            "baseline_blocked_participants": 9, "baseline_atomicity_violations": 2
        });
        v.as_object().unwrap().clone()
    }

    /// The random runs are not vacuous: they start transactions that commit and others that
    /// abort, at several managers each, in both modes.
    #[test]
    fn check_runs_commit_and_abort() {
        for mode in [Mode::Realistic, Mode::Hostile] {
            let (mut c, mut a, mut rm_crashes) = (0, 0, 0);
            for seed in 1..=6 {
                let sim = TxScenario.run(seed, 4, mode, false).unwrap();
                rm_crashes += (0..4)
                    .filter_map(|i| sim.core::<TestRm>(i, RM))
                    .map(|r| r.crashes)
                    .sum::<u64>();
                for at in ledger(&sim).0.values() {
                    let os: Vec<_> = at.values().filter_map(|(_, o)| o.clone()).collect();
                    c += os.iter().any(|o| o == "Committed") as u32;
                    a += os.iter().any(|o| o == "Aborted") as u32;
                }
            }
            println!("{mode:?}: {c} transactions committed, {a} aborted at managers");
            assert!(c >= 3 && a >= 3, "{mode:?}: {c} committed, {a} aborted");
            // Managers crashed alone, too (the count of the last life of each node).
            assert!(rm_crashes >= 1, "{mode:?}: no manager crashed alone");
        }
    }

    /// A participant's manager crashes alone after voting yes, while its node's txcoord
    /// keeps running: the commit is refused while it is down, retried, and delivered once it
    /// registers again; every manager ends committed and nobody holds locks.
    #[test]
    fn a_manager_crashing_alone_gets_the_outcome_when_back() {
        let mut cfg = SimConfig::new(21, 3);
        cfg.net = NetConfig::realistic();
        let mut sim = cluster(cfg, 0, 0);
        sim.run_for(25_000).unwrap();
        let h = sim.request(
            0,
            &sim.addr(0, "txcoord"),
            start_body(&sim, &[1, 2], 30_000),
            10,
        );
        // Until bob.os's participant has voted yes (and holds its manager's locks).
        for _ in 0..5_000 {
            sim.run_for(1).unwrap();
            let c = sim.core::<txcoord::core::TxCoord>(1, "txcoord").unwrap();
            if c.part.blocked() > 0 {
                break;
            }
        }
        sim.core_mut::<TestRm>(1, RM).unwrap().crash(20_000);
        sim.run_for(10_000).unwrap();
        let rm = sim.core::<TestRm>(1, RM).unwrap();
        assert_eq!(rm.crashes, 1);
        assert!(rm.refused_while_down >= 1, "the commit found it down");
        assert_eq!(blocked(&sim), 1, "bob.os waits for its manager");
        // Back after 20 s, it registers again (at most 2 s later) and gets the commit.
        sim.run_for(120_000).unwrap();
        let tx = started(&sim, h).expect("started");
        let (l, bad) = ledger(&sim);
        assert!(bad.is_empty(), "{bad:?}");
        for p in [1, 2] {
            assert_eq!(
                l[&tx][&p].1.as_deref(),
                Some("Committed"),
                "{}",
                sim.node_id(p)
            );
        }
        assert_eq!(blocked(&sim), 0);
        settled(&sim, &[(tx, vec![1, 2])]).unwrap();
    }

    /// Regression: hostile seed 185 (4 nodes). charlie.os's manager was still voting when
    /// alice.os asked charlie.os about the transaction, so charlie.os refused; the manager's
    /// yes came after txcoord's timeout, and the coordinator's abort then ended the entry
    /// without telling the manager, which held its yes forever (the managers then
    /// re-registered every 30-60 s, which hid it). Fixed in txcoord's participant: a vote
    /// that times out counts as a possible yes in every final state.
    #[test]
    fn hostile_seed_185_a_late_yes_after_a_refusal_learns_the_abort() {
        let sim = TxScenario.run(185, 4, Mode::Hostile, false);
        if let Err(e) = sim {
            panic!("{e}");
        }
    }

    /// The figures docs/txcoord.md states, as a bench map.
    fn documented() -> Map<String, Value> {
        let start = DOC.find(DOC_SECTION).expect("the section");
        let mut m = Map::new();
        for line in DOC[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
        {
            if !line.starts_with("| `") {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let keys = cells[0].split('`').skip(1).step_by(2);
            for (k, v) in keys.zip(cells[cells.len() - 1].split(" / ")) {
                let v: f64 = v.trim().parse().unwrap();
                m.insert(k.into(), json!(v));
            }
        }
        m
    }

    /// docs/txcoord.md states today's figures (the bench takes a few seconds).
    #[test]
    fn the_documented_figures_are_todays() {
        assert_eq!(
            docs_disagree(DOC, &TxScenario.bench()),
            Vec::<String>::new()
        );
    }

    /// The documented figures are compared with the bench's: the same pass, another value
    /// of any of them fails naming it, and so does a bench that no longer prints one, or a
    /// document without the section.
    #[test]
    fn the_documented_figures_must_be_the_benchs() {
        let doc = documented();
        assert!(doc.len() >= 15, "{doc:?}");
        assert_eq!(docs_disagree(DOC, &doc), Vec::<String>::new());
        for key in doc.keys() {
            let mut b = doc.clone();
            let v = b[key].as_f64().unwrap();
            b.insert(key.clone(), json!(v + 1.0));
            let f = docs_disagree(DOC, &b);
            assert!(
                f.len() == 1 && f[0].contains(key.as_str()) && f[0].contains("measured"),
                "{key}: {f:?}"
            );
            b.remove(key);
            let f = docs_disagree(DOC, &b);
            assert!(
                f.len() == 1 && f[0].contains("does not print"),
                "{key}: {f:?}"
            );
        }
        let f = docs_disagree("# txcoord\n", &doc);
        assert!(f[0].contains("no `## Benchmark` section"), "{f:?}");
        let f = docs_disagree("## Benchmark\n\nnothing\n", &doc);
        assert!(f[0].contains("no table rows"), "{f:?}");
        // And bench_targets includes the comparison.
        let mut b = good();
        b.insert("commit_ms".into(), json!(1));
        assert!(TxScenario
            .bench_targets(&b)
            .unwrap()
            .iter()
            .any(|l| l.contains("docs/txcoord.md") && l.contains("commit_ms")));
    }

    #[test]
    fn targets_pass_good_figures_and_fail_bad_ones() {
        assert_eq!(targets(&good()), Vec::<String>::new());
        for (key, bad) in [
            ("commit_message_delays", json!(6)),
            ("forced_writes_per_commit_participant", json!(1)),
            ("blocked_participants_after_recovery", json!(2)),
            ("throughput_tx_per_virtual_s", json!(1.0)),
            ("recovery_settled", json!(false)),
            ("unforced_writes_per_commit", json!(5)),
            ("forced_writes_per_commit", json!(6)),
            ("same_faults_blocked_participants", json!(1)),
            ("same_faults_atomicity_violations", json!(1)),
            ("baseline_blocked_participants", json!(0)),
        ] {
            let mut b = good();
            b.insert(key.into(), bad);
            let f = targets(&b);
            assert!(f.iter().any(|l| l.contains(key)), "{key}: {f:?}");
        }
        for key in [
            "forced_writes_per_commit_coordinator",
            "baseline_atomicity_violations",
            "baseline_blocked_participants",
        ] {
            let mut gone = good();
            gone.remove(key);
            let f = targets(&gone);
            assert!(
                f.iter().any(|l| l.contains("missing") && l.contains(key)),
                "{f:?}"
            );
        }
    }
}
