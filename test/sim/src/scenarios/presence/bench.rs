//! The presence benchmark (`p2p-sim bench presence`) and the targets that
//! `p2p-sim bench presence --check` asserts ([`targets`]).
//!
//! Every figure is in virtual time or a message/byte count, so it repeats exactly for the
//! same code. [`Depth::Targets`] runs only what the targets need (CI); [`Depth::Full`] adds
//! 50 nodes, hostile-mode detection at 100 nodes and the realistic-mode comparison (what
//! `cargo xtask docs` prints into docs/performance.md).
//!
//! The baseline ([`crate::baseline`]) is an all-to-all fixed-timeout heartbeat. It is compared
//! at *equal false positives*: one run of it evaluates a sweep of timeouts side by side, and
//! the tuned timeout is the smallest one whose false positives are no more than presence's
//! in the same conditions (nodes, periods, loss, one slow node).

use super::{agreement, cluster, converge_with, events, join, run_until, status, subscribe, NAME};
use crate::baseline::{Baseline, BASELINE};
use crate::scenarios::util;
use crate::stats::Count;
use crate::{factory, node_name, NetConfig, Sim, SimConfig};
use p2p_common::api::presence::{Config, MemberStatus};
use p2p_common::{Address, Millis};
use presence::core::Presence;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// How much of the benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// What [`targets`] reads, and nothing else (`bench presence --check`).
    Targets,
    /// Everything (`bench presence`).
    Full,
}

/// Cluster sizes of the convergence and steady-state load measurements, realistic or
/// hostile mode: what the targets need, plus 50 nodes in the full bench. Larger clusters
/// are not measured: every node joins at once, and that mass join costs the simulator more
/// than a minute of CPU at 500 nodes (and grows faster than N²), which neither CI nor
/// `cargo xtask docs` can afford; see docs/performance.md.
pub fn load_sizes(depth: Depth, hostile: bool) -> &'static [usize] {
    match (depth, hostile) {
        (Depth::Targets, _) => &[25, 100, 200],
        (Depth::Full, false) => &[25, 50, 100, 200],
        (Depth::Full, true) => &[25, 100, 200],
    }
}

/// The baseline timeouts swept, in periods.
pub const BASELINE_TIMEOUTS: [f64; 14] = [
    1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0,
];

/// The fixed timeout the benchmark used before the sweep, in periods ("today's figures").
pub const BASELINE_FIXED_TIMEOUT: f64 = 3.0;

/// The tolerance of "messages per node per period flat in N": the largest over the smallest,
/// across the cluster sizes measured.
pub const FLAT_TOLERANCE: f64 = 1.10;

/// Median first detection at 100 nodes, realistic mode, at most this many periods.
pub const DETECT_TARGET_PERIODS: f64 = 2.0;

/// Baseline false positives over ours (at the baseline's fixed timeout), at least this.
pub const FP_RATIO_TARGET: f64 = 50.0;

/// Clustered crash: [`CLUSTER_CRASHED`] of [`CLUSTER_NODES`] nodes crash at the same instant.
pub const CLUSTER_NODES: usize = 30;
pub const CLUSTER_CRASHED: usize = 10;
/// Seeds of the clustered-crash clusters (one clustered crash each).
pub const CLUSTER_SEEDS: [u64; 2] = [13, 14];
/// The median first detection of a clustered crash may be at most this factor above the
/// single-crash bound ([`DETECT_TARGET_PERIODS`]): the local-health and own-network rules
/// that spare peers when *our* networking fails must not slow the detection of many real
/// crashes at once (helpers confirm those).
pub const CLUSTER_SLOWDOWN_FACTOR: f64 = 1.5;

pub(crate) fn percentile_f(v: &mut [f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[(v.len() - 1) * p / 100]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
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

// ----- convergence and steady-state load -----

/// One cluster grown through one bootstrap: how long the mass join took, its steady-state
/// traffic, and how long one more node takes to join the converged cluster.
pub struct Grown {
    /// Periods until all `n` nodes, joining at once, see each other alive.
    pub converge: Option<f64>,
    /// Remote messages per node and period.
    pub msgs: f64,
    /// Remote bytes (bodies and blobs) per node and period.
    pub bytes: f64,
    /// The digest exchange's requests (`PushPull`, the O(N)-sized message) in bytes per node
    /// and period; part of `bytes`.
    pub digest_bytes: f64,
    /// The measured window's messages by type.
    pub per_type: BTreeMap<String, Count>,
    /// Periods until one node joining the converged cluster sees all and all see it.
    pub join_one: Option<f64>,
}

/// Periods the load is measured over (after 10 periods of settling).
pub const LOAD_PERIODS: u64 = 100;

/// `n` nodes join through node 0 at once in `net` (a spare node `n` waits); once all see
/// all, 10 periods of settling and [`LOAD_PERIODS`] periods measured; then the spare joins.
pub fn grow(pcfg: &Config, n: usize, net: NetConfig) -> Grown {
    let period = pcfg.probe_interval_ms;
    let mut cfg = SimConfig::new(7, n + 1);
    cfg.net = net;
    let mut sim = cluster(cfg, pcfg.clone());
    for i in 1..n {
        join(&mut sim, i, 0);
    }
    let first: Vec<usize> = (0..n).collect();
    let converge = run_until(&mut sim, 250, 200 * period, |s| {
        agreement(s, &first, &[], MemberStatus::Dead).is_ok()
    })
    .expect("no invariants")
    .map(|t| round2(t as f64 / period as f64));
    sim.run_for(10 * period).expect("no invariants");
    let before = sim.stats.clone();
    sim.run_for(LOAD_PERIODS * period).expect("no invariants");
    let per_type: BTreeMap<String, Count> = sim
        .stats
        .per_type
        .iter()
        .map(|(k, c)| {
            let b = before.per_type.get(k).copied().unwrap_or_default();
            (
                k.clone(),
                Count {
                    msgs: c.msgs - b.msgs,
                    bytes: c.bytes - b.bytes,
                },
            )
        })
        .filter(|(_, c)| c.msgs > 0)
        .collect();
    let per = |x: u64| x as f64 / n as f64 / LOAD_PERIODS as f64;
    let (msgs, bytes) = (
        per(sim.stats.remote.msgs - before.remote.msgs),
        per(sim.stats.remote.bytes - before.remote.bytes),
    );
    let digest_bytes = per(per_type.get("PushPull").map_or(0, |c| c.bytes));
    join(&mut sim, n, 0);
    let everyone: Vec<usize> = (0..=n).collect();
    let join_one = run_until(&mut sim, 250, 60 * period, |s| {
        agreement(s, &everyone, &[], MemberStatus::Dead).is_ok()
    })
    .expect("no invariants")
    .map(|t| round2(t as f64 / period as f64));
    Grown {
        converge,
        msgs,
        bytes,
        digest_bytes,
        per_type,
        join_one,
    }
}

/// Steady-state load of a cluster started converged (see [`preloaded`]).
pub struct Steady {
    /// Remote messages per node and period.
    pub msgs: f64,
    /// Remote bytes per node and period.
    pub bytes: f64,
    /// Of which the digest exchange's requests (`PushPull`).
    pub digest_bytes: f64,
    /// Whether every node still saw every other Alive at the end.
    pub all_alive: bool,
}

/// Cluster sizes of [`preloaded`] in the full bench (200 is also grown by a mass join, so
/// the two ways of building a cluster can be compared).
pub const PRELOADED_SIZES: [usize; 2] = [200, 1_000];
/// Periods [`preloaded`] measures over (after 10 periods of settling).
pub const PRELOADED_PERIODS: u64 = 50;

/// `n` nodes started from the records of a converged cluster (each joined through node 0
/// and knows every other node Alive at incarnation 2: `presence::core::joined_records`)
/// instead of a simulated mass join, which a simulator cannot afford at 1,000 nodes. The
/// start itself costs a registration and a digest exchange per node (infos are not on disk,
/// so the first exchange fetches them); after 10 periods of settling, `periods` periods are
/// measured in `net`.
pub fn preloaded(pcfg: &Config, n: usize, net: NetConfig, periods: u64) -> Steady {
    let period = pcfg.probe_interval_ms;
    let mut cfg = SimConfig::new(7, n);
    cfg.net = net;
    let mut sim = cluster(cfg, pcfg.clone());
    let ids: Vec<_> = (0..n).map(node_name).collect();
    let bootstrap = [ids[0].clone()];
    for (i, id) in ids.iter().enumerate() {
        let records = presence::core::joined_records(id, &bootstrap, &ids, 2);
        sim.preload_records(i, NAME, records);
    }
    sim.run_for(10 * period).expect("no invariants");
    let before = sim.stats.clone();
    sim.run_for(periods * period).expect("no invariants");
    let per = |x: u64| x as f64 / n as f64 / periods as f64;
    let digest = sim.stats.per_type.get("PushPull").map_or(0, |c| c.bytes)
        - before.per_type.get("PushPull").map_or(0, |c| c.bytes);
    let all: Vec<usize> = (0..n).collect();
    Steady {
        msgs: per(sim.stats.remote.msgs - before.remote.msgs),
        bytes: per(sim.stats.remote.bytes - before.remote.bytes),
        digest_bytes: per(digest),
        all_alive: agreement(&sim, &all, &[], MemberStatus::Dead).is_ok(),
    }
}

// ----- presence against the baseline, same conditions -----

/// The conditions of one comparison: `nodes` nodes, `periods` periods without crashes for
/// the false positives, then `trials` crashes for detection; `loss` on every remote message
/// (0 = realistic mode) and one node (the last) slowed by `slow_ms` throughout.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub nodes: usize,
    pub periods: u64,
    pub loss: f64,
    pub slow_ms: Millis,
    pub trials: usize,
}

/// What one system did under [`Conditions`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Dead verdicts about live nodes, summed over every node, during the crash-free periods.
    pub false_positives: u64,
    /// Median periods from a crash to the first Dead verdict given after it.
    pub detect_median: Option<f64>,
    /// Remote messages per node and period during the crash-free periods.
    pub msgs_per_node_per_period: f64,
}

/// Crash nodes one at a time (never node 0, the bootstrap, nor the slow last node) at a
/// random moment of a period; per crash, the periods until `dead(sim, observer, victim)`
/// holds for some observer that did not already hold it at the crash (`None` if none did
/// within `max` ms). The crashed node is restarted and given `settle` ms before the next.
fn crash_trials(
    sim: &mut Sim,
    seed: u64,
    period: Millis,
    trials: usize,
    max: Millis,
    settle: Millis,
    verdicts: usize,
    dead: impl Fn(&Sim, usize, usize, usize) -> bool,
) -> Vec<Vec<f64>> {
    let n = sim.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead);
    let mut times = vec![Vec::new(); verdicts];
    for _ in 0..trials {
        let victim = rng.gen_range(1..n - 1);
        sim.run_for(rng.gen_range(0..period))
            .expect("no invariants");
        sim.crash(victim);
        let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        // Observers already holding the victim dead (a false positive at the moment of the
        // crash) do not count as detecting it.
        let already: Vec<Vec<usize>> = (0..verdicts)
            .map(|k| {
                others
                    .iter()
                    .copied()
                    .filter(|&i| dead(sim, k, i, victim))
                    .collect()
            })
            .collect();
        let start = sim.now();
        let mut found: Vec<Option<Millis>> = vec![None; verdicts];
        while sim.now() < start + max && found.iter().any(Option::is_none) {
            sim.run_for(100).expect("no invariants");
            for k in 0..verdicts {
                if found[k].is_none()
                    && others
                        .iter()
                        .any(|&i| !already[k].contains(&i) && dead(sim, k, i, victim))
                {
                    found[k] = Some(sim.now() - start);
                }
            }
        }
        for (k, f) in found.into_iter().enumerate() {
            if let Some(t) = f {
                times[k].push(t as f64 / period as f64);
            }
        }
        sim.restart(victim);
        sim.run_for(settle).expect("no invariants");
    }
    times
}

/// A clustered crash: on a converged cluster of `n` nodes (realistic mode, `seed`), `k`
/// random nodes other than node 0 crash at the same instant, at a random moment of a period.
/// Per victim: periods from the crash to the first Dead verdict about it at a live node, and
/// to every live node's (`None`: not within 60 periods).
pub fn clustered_crash(
    pcfg: &Config,
    n: usize,
    k: usize,
    seed: u64,
) -> Vec<(Option<f64>, Option<f64>)> {
    let period = pcfg.probe_interval_ms;
    let (mut sim, _) = converge_with(seed, n, pcfg, |cfg| cfg.net = NetConfig::realistic());
    sim.run_for(10 * period).expect("no invariants");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc1u64);
    let mut victims: Vec<usize> = Vec::new();
    while victims.len() < k.min(n - 1) {
        let v = rng.gen_range(1..n);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    sim.run_for(rng.gen_range(0..period))
        .expect("no invariants");
    for &v in &victims {
        sim.crash(v);
    }
    let live: Vec<usize> = (0..n).filter(|i| !victims.contains(i)).collect();
    let start = sim.now();
    let mut first: Vec<Option<Millis>> = vec![None; victims.len()];
    let mut every: Vec<Option<Millis>> = vec![None; victims.len()];
    while sim.now() < start + 60 * period && every.iter().any(Option::is_none) {
        sim.run_for(100).expect("no invariants");
        for (j, &v) in victims.iter().enumerate() {
            let dead = |i: &usize| status(&sim, *i, v) == Some(MemberStatus::Dead);
            if first[j].is_none() && live.iter().any(dead) {
                first[j] = Some(sim.now() - start);
            }
            if every[j].is_none() && live.iter().all(dead) {
                every[j] = Some(sim.now() - start);
            }
        }
    }
    let p = |t: Option<Millis>| t.map(|t| t as f64 / period as f64);
    first
        .into_iter()
        .zip(every)
        .map(|(f, e)| (p(f), p(e)))
        .collect()
}

fn median_of(mut v: Vec<f64>, trials: usize) -> Option<f64> {
    // A median over fewer than half the crashes would hide the undetected ones.
    (v.len() * 2 > trials).then(|| round2(percentile_f(&mut v, 50)))
}

/// Presence under `c`: false positives (NodeDead events about live nodes at every node's
/// subscriber), suspicions started meanwhile, load, then detection.
pub fn presence_under(pcfg: &Config, c: &Conditions) -> (Outcome, u64) {
    let period = pcfg.probe_interval_ms;
    let n = c.nodes;
    let (mut sim, _) = converge_with(17, n, pcfg, |_| {});
    for i in 0..n {
        subscribe(&mut sim, i);
    }
    sim.run_for(period).expect("no invariants");
    sim.net.loss = c.loss;
    sim.set_slow(n - 1, c.slow_ms);
    let dead_events = |s: &Sim| -> usize {
        (0..n)
            .map(|i| events(s, i).iter().filter(|(k, _)| k == "NodeDead").count())
            .sum()
    };
    let suspicions = |s: &Sim| -> u64 {
        (0..n)
            .filter_map(|i| s.core::<Presence>(i, NAME))
            .map(|p| p.stats().suspicions_started)
            .sum()
    };
    let (before, susp_before, msgs0) = (dead_events(&sim), suspicions(&sim), sim.stats.remote.msgs);
    sim.run_for(c.periods * period).expect("no invariants");
    let fp = (dead_events(&sim) - before) as u64;
    let susp = suspicions(&sim) - susp_before;
    let msgs = (sim.stats.remote.msgs - msgs0) as f64 / n as f64 / c.periods as f64;
    let times = crash_trials(
        &mut sim,
        17,
        period,
        c.trials,
        60 * period,
        30 * period,
        1,
        |s, _, i, v| status(s, i, v) == Some(MemberStatus::Dead),
    );
    let detect_median = median_of(times.into_iter().next().unwrap_or_default(), c.trials);
    (
        Outcome {
            false_positives: fp,
            detect_median,
            msgs_per_node_per_period: round2(msgs),
        },
        susp,
    )
}

/// The baseline under `c`, one [`Outcome`] per timeout of `timeouts` (in periods).
pub fn baseline_under(period: Millis, c: &Conditions, timeouts: &[f64]) -> Vec<Outcome> {
    let n = c.nodes;
    let boot = node_name(0);
    let ms: Vec<Millis> = timeouts
        .iter()
        .map(|t| (t * period as f64).round() as Millis)
        .collect();
    let longest = ms.iter().copied().max().unwrap_or(period);
    let mut sim = Sim::new(SimConfig::new(23, n)).with_process(
        BASELINE,
        factory(move |a: Address| Baseline::new(a, Some(boot.clone()), period, ms.clone())),
    );
    sim.run_for(10 * period).expect("no invariants");
    sim.net.loss = c.loss;
    sim.set_slow(n - 1, c.slow_ms);
    let verdicts = |s: &Sim| -> Vec<u64> {
        let mut v = vec![0; timeouts.len()];
        for b in (0..n).filter_map(|i| s.core::<Baseline>(i, BASELINE)) {
            for (k, x) in b.verdicts.iter().enumerate() {
                v[k] += x;
            }
        }
        v
    };
    let (before, msgs0) = (verdicts(&sim), sim.stats.remote.msgs);
    sim.run_for(c.periods * period).expect("no invariants");
    let after = verdicts(&sim);
    let msgs = (sim.stats.remote.msgs - msgs0) as f64 / n as f64 / c.periods as f64;
    let times = crash_trials(
        &mut sim,
        23,
        period,
        c.trials,
        longest + 3 * period,
        5 * period,
        timeouts.len(),
        |s, k, i, v| {
            let id = s.node_id(v);
            s.core::<Baseline>(i, BASELINE)
                .is_some_and(|b| b.is_dead(k, id))
        },
    );
    times
        .into_iter()
        .enumerate()
        .map(|(k, t)| Outcome {
            false_positives: after[k] - before[k],
            detect_median: median_of(t, c.trials),
            msgs_per_node_per_period: round2(msgs),
        })
        .collect()
}

/// Presence and the baseline sweep under `c`, as one JSON object.
pub fn compare(pcfg: &Config, c: &Conditions) -> Value {
    let period = pcfg.probe_interval_ms;
    let t0 = Instant::now();
    let (ours, suspicions) = presence_under(pcfg, c);
    let sweep = baseline_under(period, c, &BASELINE_TIMEOUTS);
    // The smallest timeout whose false positives drop to ours.
    let tuned = BASELINE_TIMEOUTS
        .iter()
        .zip(&sweep)
        .find(|(_, o)| o.false_positives <= ours.false_positives);
    let rows: Vec<Value> = BASELINE_TIMEOUTS
        .iter()
        .zip(&sweep)
        .map(|(t, o)| {
            json!({
                "timeout_periods": t,
                "false_positives": o.false_positives,
                "detect_periods_median": o.detect_median,
            })
        })
        .collect();
    json!({
        "nodes": c.nodes,
        "periods": c.periods,
        "loss": c.loss,
        "slow_ms": c.slow_ms,
        "trials": c.trials,
        "presence": {
            "false_positives": ours.false_positives,
            "suspicions": suspicions,
            "detect_periods_median": ours.detect_median,
            "msgs_per_node_per_period": ours.msgs_per_node_per_period,
        },
        "baseline_msgs_per_node_per_period": sweep[0].msgs_per_node_per_period,
        "baseline_sweep": rows,
        "tuned": tuned.map(|(t, o)| json!({
            "timeout_periods": t,
            "false_positives": o.false_positives,
            "detect_periods_median": o.detect_median,
        })),
        "wall_ms": t0.elapsed().as_millis() as u64,
    })
}

/// The comparison's conditions in `mode`'s loss: 50 nodes, 1,000 periods, one node 1.5 s
/// slow, 30 crashes.
pub fn conditions(loss: f64) -> Conditions {
    Conditions {
        nodes: 50,
        periods: 1_000,
        loss,
        slow_ms: 1_500,
        trials: 30,
    }
}

/// Loss of the hostile comparison (no duplication: it does not hurt a heartbeat).
pub const COMPARE_HOSTILE_LOSS: f64 = 0.10;

// ----- the benchmark -----

/// The benchmark with explicit presence settings.
pub fn bench(pcfg: &Config, depth: Depth) -> Map<String, Value> {
    let mut m = Map::new();
    let cpu0 = util::cpu_ms();
    let t0 = Instant::now();
    let mut sections = Map::new();
    let mut lap = Instant::now();
    let mut lap_cpu = cpu0;
    // Progress on stderr (the full bench takes minutes); wall and CPU ms per section go
    // into the JSON too, and what the sections of `--check` cost together.
    let (mut targets_wall, mut targets_cpu) = (0.0, 0.0);
    let mut section = |name: &str, for_targets: bool, sections: &mut Map<String, Value>| {
        let wall = lap.elapsed().as_secs_f64() * 1000.0;
        let cpu = util::cpu_ms() - lap_cpu;
        eprintln!(
            "bench presence: {name} took {:.1} s ({:.1} s of CPU)",
            wall / 1000.0,
            cpu / 1000.0
        );
        sections.insert(name.into(), json!({"wall_ms": wall.round(), "cpu_ms": cpu}));
        if for_targets {
            targets_wall += wall;
            targets_cpu += cpu;
        }
        lap = Instant::now();
        lap_cpu = util::cpu_ms();
    };
    let period = pcfg.probe_interval_ms;
    m.insert(
        "depth".into(),
        json!(if depth == Depth::Full {
            "full"
        } else {
            "targets"
        }),
    );
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

    // Convergence and load: steady state, per node and period, against N, in both modes.
    let (hl, hd) = (0.05, 0.02);
    m.insert("load_periods".into(), json!(LOAD_PERIODS));
    m.insert("load_hostile_loss".into(), json!(hl));
    m.insert("load_hostile_duplicate".into(), json!(hd));
    for (suffix, net) in [
        ("", NetConfig::realistic()),
        ("_hostile", NetConfig::hostile(hl, hd)),
    ] {
        let mut by: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for &n in load_sizes(depth, !suffix.is_empty()) {
            let g = grow(pcfg, n, net.clone());
            let k = n.to_string();
            let mut put = |what: &'static str, v: Value| {
                by.entry(what).or_default().insert(k.clone(), v);
            };
            put("converge_periods_by_n", json!(g.converge));
            put("join_one_periods_by_n", json!(g.join_one));
            put("msgs_per_node_per_period_by_n", json!(round2(g.msgs)));
            put("bytes_per_node_per_period_by_n", json!(g.bytes.round()));
            put(
                "digest_bytes_per_node_per_period_by_n",
                json!(g.digest_bytes.round()),
            );
            if n == 100 && suffix.is_empty() {
                m.insert("converge_periods".into(), json!(g.converge));
                m.insert("msgs_per_node_per_period".into(), json!(round2(g.msgs)));
                m.insert("bytes_per_msg".into(), json!((g.bytes / g.msgs).round()));
                m.insert(
                    "per_type".into(),
                    serde_json::to_value(&g.per_type).unwrap_or_default(),
                );
            }
            let in_check = load_sizes(Depth::Targets, false).contains(&n);
            section(&format!("grow{suffix}_{n}"), in_check, &mut sections);
        }
        for (what, v) in by {
            m.insert(format!("{what}{suffix}"), Value::Object(v));
        }
    }

    // Bytes against N up to 1,000 nodes, from clusters started converged (full bench only:
    // 1,000 nodes cost about 80 s of CPU).
    if depth == Depth::Full {
        m.insert("preloaded_periods".into(), json!(PRELOADED_PERIODS));
        let mut by: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for n in PRELOADED_SIZES {
            let st = preloaded(pcfg, n, NetConfig::realistic(), PRELOADED_PERIODS);
            let k = n.to_string();
            let mut put = |what: &'static str, v: Value| {
                by.entry(what).or_default().insert(k.clone(), v);
            };
            put("msgs_per_node_per_period", json!(round2(st.msgs)));
            put("bytes_per_node_per_period", json!(st.bytes.round()));
            put(
                "digest_bytes_per_node_per_period",
                json!(st.digest_bytes.round()),
            );
            put("all_alive", json!(st.all_alive));
            section(&format!("preloaded_{n}"), false, &mut sections);
        }
        for (what, v) in by {
            m.insert(format!("preloaded_{what}_by_n"), Value::Object(v));
        }
    }

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
    section("detect", true, &mut sections);

    // Clustered crash: 10 of 30 nodes at once, one such crash per seed.
    let runs: Vec<_> = CLUSTER_SEEDS
        .iter()
        .flat_map(|&seed| clustered_crash(pcfg, CLUSTER_NODES, CLUSTER_CRASHED, seed))
        .collect();
    let victims = runs.len();
    let firsts: Vec<f64> = runs.iter().filter_map(|r| r.0).collect();
    let everys: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
    m.insert("clustered_crash_nodes".into(), json!(CLUSTER_NODES));
    m.insert("clustered_crash_crashed".into(), json!(CLUSTER_CRASHED));
    m.insert("clustered_crash_victims".into(), json!(victims));
    m.insert(
        "clustered_crash_detect_periods_median".into(),
        json!(median_of(firsts, victims)),
    );
    m.insert(
        "clustered_crash_all_periods_median".into(),
        json!(median_of(everys.clone(), victims)),
    );
    m.insert(
        "clustered_crash_all_periods_max".into(),
        json!((everys.len() == victims)
            .then(|| { round2(everys.iter().copied().fold(0.0, f64::max)) })),
    );
    section("clustered_crash", true, &mut sections);

    if depth == Depth::Full {
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
        section("detect_hostile", false, &mut sections);
    }

    // Presence against the baseline at equal false positives, in both modes (the realistic
    // one only in the full bench: no target reads it).
    let hostile = compare(pcfg, &conditions(COMPARE_HOSTILE_LOSS));
    section("compare_hostile", true, &mut sections);
    if depth == Depth::Full {
        m.insert("compare_realistic".into(), compare(pcfg, &conditions(0.0)));
        section("compare_realistic", false, &mut sections);
    }
    // Today's figures (the baseline at its fixed 3-period timeout), from the hostile run.
    let c = conditions(COMPARE_HOSTILE_LOSS);
    m.insert("fp_nodes".into(), json!(c.nodes));
    m.insert("fp_periods".into(), json!(c.periods));
    m.insert("fp_loss".into(), json!(c.loss));
    m.insert("fp_slow_node_delay_ms".into(), json!(c.slow_ms));
    let fp = hostile["presence"]["false_positives"].as_u64().unwrap_or(0);
    m.insert("false_positives".into(), json!(fp));
    m.insert(
        "suspicions_during_fp_run".into(),
        hostile["presence"]["suspicions"].clone(),
    );
    let fixed = hostile["baseline_sweep"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["timeout_periods"].as_f64() == Some(BASELINE_FIXED_TIMEOUT))
        })
        .cloned()
        .unwrap_or_default();
    let base_fp = fixed["false_positives"].as_u64().unwrap_or(0);
    m.insert(
        "baseline_fixed_timeout_periods".into(),
        json!(BASELINE_FIXED_TIMEOUT),
    );
    m.insert("baseline_false_positives".into(), json!(base_fp));
    m.insert(
        "baseline_msgs_per_node_per_period".into(),
        hostile["baseline_msgs_per_node_per_period"].clone(),
    );
    m.insert(
        "fp_ratio_baseline_over_ours".into(),
        json!(round2(base_fp as f64 / fp.max(1) as f64)),
    );
    m.insert("compare_hostile".into(), hostile);
    drop(section);
    m.insert("sections".into(), Value::Object(sections));
    // What `bench presence --check` costs: the sections it runs (all of them at that depth).
    m.insert("targets_wall_ms".into(), json!(targets_wall.round()));
    m.insert("targets_cpu_ms".into(), json!(targets_cpu.round()));
    m.insert("wall_ms".into(), json!(t0.elapsed().as_millis() as u64));
    m.insert("cpu_ms".into(), json!(util::cpu_ms() - cpu0));
    m
}

// ----- the targets -----

fn number(b: &Map<String, Value>, path: &[&str]) -> Result<f64, String> {
    let mut v = b.get(path[0]);
    for p in &path[1..] {
        v = v.and_then(|x| x.get(p));
    }
    v.and_then(Value::as_f64)
        .ok_or_else(|| format!("the bench printed no number `{}`", path.join(".")))
}

/// The targets `bench presence --check` asserts, on a bench printed by [`bench`] at either
/// depth: one line per failed target, saying what was measured and what is required.
///
/// - `detect_periods_median` ≤ [`DETECT_TARGET_PERIODS`] (100 nodes, realistic mode);
/// - hostile mode, same conditions: presence's median first detection is faster than the
///   baseline's at the smallest swept timeout whose false positives are no more than ours
///   (fails too if no swept timeout gets there: then there is no equal-FP point to beat);
/// - `fp_ratio_baseline_over_ours` ≥ [`FP_RATIO_TARGET`] (the baseline at its fixed timeout);
/// - messages per node per period flat in N in both modes: the largest over the smallest of
///   the cluster sizes measured ≤ [`FLAT_TOLERANCE`].
/// - `clustered_crash_detect_periods_median` (10 of 30 nodes crash at once, realistic mode)
///   ≤ [`CLUSTER_SLOWDOWN_FACTOR`] × [`DETECT_TARGET_PERIODS`].
pub fn targets(b: &Map<String, Value>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail = |r: Result<Option<String>, String>| match r {
        Ok(None) => {}
        Ok(Some(f)) | Err(f) => failures.push(f),
    };
    fail(number(b, &["detect_periods_median"]).map(|d| {
        (d > DETECT_TARGET_PERIODS).then(|| {
            format!(
                "detect_periods_median: {d:.2} periods at {} nodes, required ≤ {DETECT_TARGET_PERIODS:.2}",
                b.get("detect_nodes").map_or("?".into(), Value::to_string)
            )
        })
    }));
    fail((|| {
        let ours = number(b, &["compare_hostile", "presence", "detect_periods_median"])?;
        let fp = number(b, &["compare_hostile", "presence", "false_positives"])?;
        let Some(tuned) = b
            .get("compare_hostile")
            .and_then(|c| c.get("tuned"))
            .filter(|t| !t.is_null())
        else {
            return Ok(Some(format!(
                "compare_hostile: no swept baseline timeout (up to {} periods) gets its false \
                 positives down to presence's {fp}: no equal-false-positive point to compare at",
                BASELINE_TIMEOUTS[BASELINE_TIMEOUTS.len() - 1]
            )));
        };
        let timeout = tuned["timeout_periods"].as_f64().unwrap_or(f64::NAN);
        let Some(theirs) = tuned["detect_periods_median"].as_f64() else {
            return Ok(Some(format!(
                "compare_hostile: the baseline at {timeout} periods detected fewer than half \
                 the crashes: no median to compare with"
            )));
        };
        Ok((ours >= theirs).then(|| {
            format!(
                "compare_hostile: presence's median first detection {ours:.2} periods is not \
                 faster than the tuned baseline's {theirs:.2} (timeout {timeout} periods, at \
                 equal false positives: {fp})"
            )
        }))
    })());
    fail(number(b, &["fp_ratio_baseline_over_ours"]).map(|r| {
        (r < FP_RATIO_TARGET).then(|| {
            format!(
                "fp_ratio_baseline_over_ours: {r:.2}, required ≥ {FP_RATIO_TARGET:.0} (baseline \
                 at its fixed timeout over ours)"
            )
        })
    }));
    fail((|| {
        let bound = CLUSTER_SLOWDOWN_FACTOR * DETECT_TARGET_PERIODS;
        let key = "clustered_crash_detect_periods_median";
        let Some(v) = b.get(key) else {
            return Err(format!("the bench printed no `{key}`"));
        };
        let Some(d) = v.as_f64() else {
            return Ok(Some(format!(
                "{key}: fewer than half of the clustered crash's victims were detected, \
                 required a median ≤ {bound:.2} periods"
            )));
        };
        Ok((d > bound).then(|| {
            format!(
                "{key}: {d:.2} periods ({} of {} nodes crashed at once), required ≤ {bound:.2} \
                 ({CLUSTER_SLOWDOWN_FACTOR} × the single-crash bound {DETECT_TARGET_PERIODS:.2})",
                b.get("clustered_crash_crashed")
                    .map_or("?".into(), Value::to_string),
                b.get("clustered_crash_nodes")
                    .map_or("?".into(), Value::to_string),
            )
        }))
    })());
    for key in [
        "msgs_per_node_per_period_by_n",
        "msgs_per_node_per_period_by_n_hostile",
    ] {
        fail((|| {
            let by_n = b
                .get(key)
                .and_then(Value::as_object)
                .ok_or_else(|| format!("the bench printed no `{key}`"))?;
            let values: Vec<(usize, f64)> = by_n
                .iter()
                .map(|(n, v)| Ok((n.parse().unwrap_or(0), v.as_f64().ok_or(())?)))
                .collect::<Result<_, ()>>()
                .map_err(|()| format!("`{key}` has a value that is not a number"))?;
            if values.len() < 2 {
                return Err(format!(
                    "`{key}`: {} cluster size(s) measured, flatness needs at least 2",
                    values.len()
                ));
            }
            let (lo, hi) = values.iter().fold(
                ((0, f64::INFINITY), (0, f64::NEG_INFINITY)),
                |(lo, hi), &(n, v)| {
                    (
                        if v < lo.1 { (n, v) } else { lo },
                        if v > hi.1 { (n, v) } else { hi },
                    )
                },
            );
            Ok((hi.1 > lo.1 * FLAT_TOLERANCE).then(|| {
                format!(
                    "{key}: {:.2} at {} nodes over {:.2} at {} nodes is {:.3}, required ≤ \
                     {FLAT_TOLERANCE:.2} (flat in N)",
                    hi.1,
                    hi.0,
                    lo.1,
                    lo.0,
                    hi.1 / lo.1
                )
            }))
        })());
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Map<String, Value> {
        let Value::Object(m) = json!({
            "detect_nodes": 100,
            "detect_periods_median": 1.88,
            "fp_ratio_baseline_over_ours": 2375.0,
            "compare_hostile": {
                "presence": {"false_positives": 0, "detect_periods_median": 1.7},
                "tuned": {"timeout_periods": 7.0, "false_positives": 0,
                          "detect_periods_median": 7.2},
            },
            "msgs_per_node_per_period_by_n": {"25": 2.29, "100": 2.30, "200": 2.30},
            "msgs_per_node_per_period_by_n_hostile": {"25": 2.5, "100": 2.7, "200": 2.74},
            "clustered_crash_nodes": 30,
            "clustered_crash_crashed": 10,
            "clustered_crash_detect_periods_median": 1.9,
        }) else {
            unreachable!()
        };
        m
    }

    fn failures_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<String> {
        let mut b = good();
        edit(&mut b);
        targets(&b)
    }

    #[test]
    fn every_target_is_met_by_good_figures() {
        assert_eq!(targets(&good()), Vec::<String>::new());
    }

    #[test]
    fn each_target_fails_on_figures_that_miss_it() {
        let f = failures_with(|b| b["detect_periods_median"] = json!(2.01));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("detect_periods_median: 2.01") && f[0].contains("≤ 2.00"));

        // Not faster than the tuned baseline (a tie is not faster).
        for ours in [7.2, 9.0] {
            let f = failures_with(|b| {
                b["compare_hostile"]["presence"]["detect_periods_median"] = json!(ours)
            });
            assert_eq!(f.len(), 1, "{f:?}");
            assert!(
                f[0].contains("not faster than the tuned baseline's 7.20"),
                "{f:?}"
            );
        }
        // No equal-false-positive point, or one without a median.
        let f = failures_with(|b| b["compare_hostile"]["tuned"] = Value::Null);
        assert!(
            f.len() == 1 && f[0].contains("no swept baseline timeout"),
            "{f:?}"
        );
        let f =
            failures_with(|b| b["compare_hostile"]["tuned"]["detect_periods_median"] = Value::Null);
        assert!(f.len() == 1 && f[0].contains("fewer than half"), "{f:?}");

        let f = failures_with(|b| b["fp_ratio_baseline_over_ours"] = json!(49.0));
        assert!(
            f.len() == 1 && f[0].contains("fp_ratio_baseline_over_ours: 49.00"),
            "{f:?}"
        );

        // Not flat: 12% more per node at 200 nodes than at 25, in either mode.
        for key in [
            "msgs_per_node_per_period_by_n",
            "msgs_per_node_per_period_by_n_hostile",
        ] {
            let f = failures_with(|b| b[key] = json!({"25": 2.5, "100": 2.6, "200": 2.8}));
            assert_eq!(f.len(), 1, "{f:?}");
            assert!(
                f[0].starts_with(key) && f[0].contains("2.80 at 200 nodes over 2.50 at 25 nodes"),
                "{f:?}"
            );
            let f = failures_with(|b| b[key] = json!({"25": 2.5}));
            assert!(f.len() == 1 && f[0].contains("at least 2"), "{f:?}");
        }
        // A clustered crash detected more slowly than 1.5 × 2 periods, or mostly not at all.
        let f = failures_with(|b| b["clustered_crash_detect_periods_median"] = json!(3.01));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].contains("clustered_crash_detect_periods_median: 3.01")
                && f[0].contains("10 of 30")
                && f[0].contains("≤ 3.00"),
            "{f:?}"
        );
        let f = failures_with(|b| b["clustered_crash_detect_periods_median"] = json!(3.0));
        assert_eq!(f, Vec::<String>::new(), "the bound itself passes");
        let f = failures_with(|b| b["clustered_crash_detect_periods_median"] = Value::Null);
        assert!(f.len() == 1 && f[0].contains("fewer than half"), "{f:?}");
        // Within the tolerance passes (2.74 / 2.5 = 1.096).
        let f = failures_with(|b| {
            b["msgs_per_node_per_period_by_n"] = json!({"25": 2.5, "1000": 2.74})
        });
        assert_eq!(f, Vec::<String>::new());
    }

    #[test]
    fn a_figure_the_bench_stopped_printing_is_a_failure() {
        for key in [
            "detect_periods_median",
            "compare_hostile",
            "fp_ratio_baseline_over_ours",
            "msgs_per_node_per_period_by_n",
            "msgs_per_node_per_period_by_n_hostile",
            "clustered_crash_detect_periods_median",
        ] {
            let f = failures_with(|b| {
                b.remove(key);
            });
            assert_eq!(f.len(), 1, "{key}: {f:?}");
            assert!(f[0].contains(key), "{key}: {f:?}");
        }
    }
}
