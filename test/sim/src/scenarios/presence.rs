//! The `presence` scenario: membership under random faults, plus the helpers the presence
//! tests and the benchmark share.

use super::{heal_all, util, Scenario};
use crate::baseline::{Baseline, BASELINE};
use crate::{factory, node_name, Mode, NetConfig, Sim, SimConfig, SimError};
use p2p_common::api::encode;
use p2p_common::api::presence::{
    Config, MemberStatus, Request, Response, SubscriberMessage, Update,
};
use p2p_common::{Address, Millis, NodeId};
use presence::core::Presence;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

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
/// - no node ever says it is itself dead (checked on every message sent);
/// - a node's own incarnation never decreases, and a restarted node comes back with a
///   higher one than it ever had;
/// - within one life, a node's view of another's incarnation never decreases.
pub fn with_checks(sim: Sim) -> Sim {
    let own: Rc<RefCell<BTreeMap<usize, (u64, u64)>>> = Rc::default();
    // (observer, observer's life, member) -> highest incarnation seen.
    type Views = BTreeMap<(usize, u64, NodeId), u64>;
    let views: Rc<RefCell<Views>> = Rc::default();
    sim.with_wire_check("no node declares itself dead", |from, _to, body| {
        for u in updates_in(body) {
            if u.node == from.node && u.status == MemberStatus::Dead {
                return Err(format!("{} sent Dead about itself", from.node));
            }
        }
        Ok(())
    })
    .with_invariant("incarnations never decrease", move |s| {
        let mut own = own.borrow_mut();
        let mut views = views.borrow_mut();
        for i in 0..s.len() {
            let Some(p) = s.core::<Presence>(i, NAME) else {
                continue;
            };
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
        bench()
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

fn percentile_f(v: &mut [f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[(v.len() - 1) * p / 100]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The benchmark printed by `p2p-sim bench presence --json`, with the default settings.
pub fn bench() -> Map<String, Value> {
    bench_with(&config())
}

/// Crash-detection times (in periods) on `n` nodes over `trials` crashes.
pub struct Detection {
    pub trials: usize,
    /// Crash to the first Dead verdict anywhere.
    pub median: f64,
    pub p99: f64,
    /// Crash to every other node's Dead verdict.
    pub all_median: f64,
}

/// Crash one node at a time (at a random moment of a period) and time the verdicts, in
/// realistic mode. Pools three clusters (seeds 13, 14, 15) of `trials` crashes each.
pub fn detection(pcfg: &Config, n: usize, trials: usize) -> Detection {
    let runs: Vec<Vec<(f64, Option<f64>)>> = [13, 14, 15]
        .iter()
        .map(|&seed| detection_times(pcfg, n, trials, seed, NetConfig::realistic()))
        .collect();
    summarize(runs.into_iter().flatten().collect())
}

/// [`detection`] from one seed (to see the spread between runs).
pub fn detection_seeded(pcfg: &Config, n: usize, trials: usize, seed: u64) -> Detection {
    summarize(detection_times(
        pcfg,
        n,
        trials,
        seed,
        NetConfig::realistic(),
    ))
}

/// [`detection`] in hostile mode (`NetConfig::hostile(loss, duplicate)` from the first join
/// on), one cluster (seed 13) of `trials` crashes.
pub fn detection_hostile(
    pcfg: &Config,
    n: usize,
    trials: usize,
    loss: f64,
    duplicate: f64,
) -> Detection {
    summarize(detection_times(
        pcfg,
        n,
        trials,
        13,
        NetConfig::hostile(loss, duplicate),
    ))
}

fn summarize(times: Vec<(f64, Option<f64>)>) -> Detection {
    let mut first: Vec<f64> = times.iter().map(|t| t.0).collect();
    let mut all: Vec<f64> = times.iter().filter_map(|t| t.1).collect();
    Detection {
        trials: first.len(),
        median: percentile_f(&mut first, 50),
        p99: percentile_f(&mut first, 99),
        all_median: percentile_f(&mut all, 50),
    }
}

/// Per crash: periods to the first Dead verdict, and to everyone's.
fn detection_times(
    pcfg: &Config,
    n: usize,
    trials: usize,
    seed: u64,
    net: NetConfig,
) -> Vec<(f64, Option<f64>)> {
    let period = pcfg.probe_interval_ms;
    let (mut sim, _) = converge_with(seed, n, pcfg, |cfg| cfg.net = net);
    sim.run_for(10 * period).expect("no invariants");
    let mut times = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 99);
    for _ in 0..trials {
        let victim = rng.gen_range(1..n);
        sim.run_for(rng.gen_range(0..period))
            .expect("no invariants");
        sim.crash(victim);
        let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let first = run_until(&mut sim, 100, 60 * period, |s| {
            others
                .iter()
                .any(|&i| status(s, i, victim) == Some(MemberStatus::Dead))
        })
        .expect("no invariants");
        let every = run_until(&mut sim, 250, 60 * period, |s| {
            others
                .iter()
                .all(|&i| status(s, i, victim) == Some(MemberStatus::Dead))
        })
        .expect("no invariants");
        if let Some(t) = first {
            times.push((
                t as f64 / period as f64,
                every.map(|e| (t + e) as f64 / period as f64),
            ));
        }
        sim.restart(victim);
        sim.run_for(30 * period).expect("no invariants");
    }
    times
}

/// The benchmark with explicit presence settings.
pub fn bench_with(pcfg: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    let cpu0 = util::cpu_ms();
    let t0 = Instant::now();
    let period = pcfg.probe_interval_ms;
    m.insert("period_ms".into(), json!(period));
    m.insert(
        "config".into(),
        serde_json::to_value(pcfg).unwrap_or_default(),
    );
    let links = crate::Latency::default();
    m.insert(
        "link_latency_ms".into(),
        json!([links.min_ms, links.max_ms]),
    );
    m.insert("max_body_bytes".into(), json!(presence::core::MAX_BODY));

    // Convergence: N nodes join through one bootstrap.
    let mut by_n = Map::new();
    for n in [25usize, 50, 100, 200] {
        let (_, p) = converge_with(7, n, pcfg, |_| {});
        by_n.insert(n.to_string(), json!(p.map(round2)));
        if n == 100 {
            m.insert("converge_periods".into(), json!(p.map(round2)));
        }
    }
    m.insert("converge_periods_by_n".into(), Value::Object(by_n));

    // Load: steady-state messages per node per period, for several cluster sizes.
    let mut load = Map::new();
    for n in [25usize, 100, 200] {
        let (mut sim, _) = converge_with(11, n, pcfg, |_| {});
        sim.run_for(10 * period).expect("no invariants");
        let (msgs0, bytes0) = (sim.stats.remote.msgs, sim.stats.remote.bytes);
        let periods = 100;
        sim.run_for(periods * period).expect("no invariants");
        let msgs = sim.stats.remote.msgs - msgs0;
        let per = msgs as f64 / n as f64 / periods as f64;
        load.insert(n.to_string(), json!(round2(per)));
        if n == 100 {
            m.insert("msgs_per_node_per_period".into(), json!(round2(per)));
            let bytes = (sim.stats.remote.bytes - bytes0) as f64 / msgs.max(1) as f64;
            m.insert("bytes_per_msg".into(), json!(bytes.round()));
            m.insert(
                "per_type".into(),
                serde_json::to_value(&sim.stats.per_type).unwrap_or_default(),
            );
        }
    }
    m.insert("msgs_per_node_per_period_by_n".into(), Value::Object(load));

    // Detection: crash one node of 100 at a time; 3 clusters x 40 crashes.
    let detect_nodes = 100;
    m.insert("detect_nodes".into(), json!(detect_nodes));
    let d = detection(pcfg, detect_nodes, 40);
    m.insert("detect_trials".into(), json!(d.trials));
    m.insert("detect_periods_median".into(), json!(round2(d.median)));
    m.insert("detect_periods_p99".into(), json!(round2(d.p99)));
    m.insert(
        "detect_all_periods_median".into(),
        json!(round2(d.all_median)),
    );
    m.insert(
        "detect_seconds_median".into(),
        json!(round2(d.median * period as f64 / 1000.0)),
    );

    // The same in hostile mode: 5% loss and 2% duplication on every message, one cluster.
    let (loss, dup) = (0.05, 0.02);
    let d = detection_hostile(pcfg, detect_nodes, 40, loss, dup);
    m.insert("detect_hostile_loss".into(), json!(loss));
    m.insert("detect_hostile_duplicate".into(), json!(dup));
    m.insert("detect_hostile_trials".into(), json!(d.trials));
    m.insert(
        "detect_hostile_periods_median".into(),
        json!(round2(d.median)),
    );
    m.insert("detect_hostile_periods_p99".into(), json!(round2(d.p99)));
    m.insert(
        "detect_hostile_all_periods_median".into(),
        json!(round2(d.all_median)),
    );

    // False positives: 1,000 periods, 10% loss (hostile mode), one slow node, nobody crashes.
    let fp_nodes = 50;
    let slow_ms = 1_500;
    let (fp_periods, fp_loss) = (1_000, 0.10);
    let (fp, susp) = false_positives(pcfg, fp_nodes, fp_periods, fp_loss, slow_ms);
    let base = baseline_false_positives(period, fp_nodes, fp_periods, fp_loss, slow_ms);
    m.insert("fp_nodes".into(), json!(fp_nodes));
    m.insert("fp_periods".into(), json!(fp_periods));
    m.insert("fp_loss".into(), json!(fp_loss));
    m.insert("fp_slow_node_delay_ms".into(), json!(slow_ms));
    m.insert("false_positives".into(), json!(fp));
    m.insert("suspicions_during_fp_run".into(), json!(susp));
    m.insert(
        "baseline_false_positives".into(),
        json!(base.false_positives),
    );
    m.insert(
        "baseline_detect_periods_median".into(),
        json!(round2(base.detect_median)),
    );
    m.insert(
        "baseline_msgs_per_node_per_period".into(),
        json!(round2(base.msgs_per_node_per_period)),
    );
    m.insert(
        "fp_ratio_baseline_over_ours".into(),
        json!(round2(base.false_positives as f64 / (fp.max(1)) as f64)),
    );
    m.insert("wall_ms".into(), json!(t0.elapsed().as_millis()));
    m.insert("cpu_ms".into(), json!(util::cpu_ms() - cpu0));
    m
}

/// Dead verdicts about live nodes (NodeDead events at every subscriber) over `periods`
/// periods with `loss` and one node slowed by `slow_ms`; and suspicions started.
pub fn false_positives(
    pcfg: &Config,
    n: usize,
    periods: u64,
    loss: f64,
    slow_ms: Millis,
) -> (u64, u64) {
    let period = pcfg.probe_interval_ms;
    let (mut sim, _) = converge_with(17, n, pcfg, |_| {});
    for i in 0..n {
        subscribe(&mut sim, i);
    }
    sim.run_for(period).expect("no invariants");
    sim.net.loss = loss;
    sim.set_slow(n - 1, slow_ms);
    let before: usize = (0..n).map(|i| dead_events(&sim, i)).sum();
    let suspicions = |s: &Sim| -> u64 {
        (0..n)
            .filter_map(|i| s.core::<Presence>(i, NAME))
            .map(|p| p.stats().suspicions_started)
            .sum()
    };
    let susp_before = suspicions(&sim);
    sim.run_for(periods * period).expect("no invariants");
    let after: usize = (0..n).map(|i| dead_events(&sim, i)).sum();
    ((after - before) as u64, suspicions(&sim) - susp_before)
}

fn dead_events(sim: &Sim, i: usize) -> usize {
    events(sim, i)
        .iter()
        .filter(|(k, _)| k == "NodeDead")
        .count()
}

pub struct BaselineResult {
    pub false_positives: u64,
    pub detect_median: f64,
    pub msgs_per_node_per_period: f64,
}

/// The guide's pattern: announce to a bootstrap, heartbeat every known node each period,
/// declare a node dead after a fixed timeout (3 periods) without a heartbeat.
pub fn baseline_false_positives(
    period: Millis,
    n: usize,
    periods: u64,
    loss: f64,
    slow_ms: Millis,
) -> BaselineResult {
    let boot = node_name(0);
    let mut sim = Sim::new(SimConfig::new(23, n)).with_process(
        BASELINE,
        factory(move |a: Address| Baseline::new(a, Some(boot.clone()), period, 3 * period)),
    );
    sim.run_for(10 * period).expect("no invariants");
    let msgs0 = sim.stats.remote.msgs;
    sim.run_for(10 * period).expect("no invariants");
    let per = (sim.stats.remote.msgs - msgs0) as f64 / n as f64 / 10.0;
    // Detection: crash nodes one at a time.
    let mut det = Vec::new();
    for k in 0..5 {
        let victim = 1 + k * 3;
        sim.crash(victim);
        let id = sim.node_id(victim).clone();
        let found = run_until(&mut sim, 100, 20 * period, |s| {
            (0..n).any(|i| {
                s.core::<Baseline>(i, BASELINE)
                    .is_some_and(|b| b.is_dead(&id))
            })
        })
        .expect("no invariants");
        if let Some(d) = found {
            det.push(d as f64 / period as f64);
        }
        sim.restart(victim);
        sim.run_for(5 * period).expect("no invariants");
    }
    let verdicts = |s: &Sim| -> u64 {
        (0..n)
            .filter_map(|i| s.core::<Baseline>(i, BASELINE))
            .map(|b| b.verdicts)
            .sum()
    };
    sim.net.loss = loss;
    sim.set_slow(n - 1, slow_ms);
    let before = verdicts(&sim);
    sim.run_for(periods * period).expect("no invariants");
    BaselineResult {
        false_positives: verdicts(&sim) - before,
        detect_median: percentile_f(&mut det, 50),
        msgs_per_node_per_period: per,
    }
}
