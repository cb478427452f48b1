//! Scenarios: per-service random fault runs with invariants (`check`), and benchmarks (`bench`).
//! A service plugs in by implementing [`Scenario`] and adding itself to [`all`].

use crate::{Mode, Sim, SimError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub mod notify;
pub mod ping;
pub mod presence;
pub mod sync;
pub mod sync_bench;
pub mod txcoord;
pub mod util;

/// What a service offers the command line.
pub trait Scenario {
    /// Name used with `--service`.
    fn name(&self) -> &'static str;
    /// Default cluster size for `check`.
    fn default_nodes(&self) -> usize;
    /// Smallest cluster the scenario makes sense on.
    fn min_nodes(&self) -> usize {
        2
    }
    /// Run one random fault scenario derived from `seed` on `nodes` nodes in network `mode`,
    /// checking every invariant after every step. `record` keeps the whole trace (for
    /// `replay`).
    fn run(&self, seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError>;
    /// The benchmark: named metrics.
    fn bench(&self) -> serde_json::Map<String, serde_json::Value>;
    /// What `bench <name> --check` runs: the part of the benchmark
    /// [`Scenario::bench_targets`] reads. The whole benchmark unless the scenario has a
    /// cheaper subset (presence: its large clusters are printed by `bench` only).
    fn bench_for_check(&self) -> serde_json::Map<String, serde_json::Value> {
        self.bench()
    }
    /// The targets `bench <name> --check` asserts on [`Scenario::bench`]'s output: `None` when
    /// this scenario asserts none, otherwise one line per target missed, saying which, what was
    /// measured and what is required (empty: every target met). Only deterministic figures
    /// (virtual time, message and byte counts) belong here, never wall-clock time.
    fn bench_targets(
        &self,
        _bench: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Vec<String>> {
        None
    }
}

/// Reads a number from a bench's output for a target; a missing or non-numeric figure is a
/// failed target (the bench no longer measures what CI asserts), reported in `failures`.
pub fn figure(
    bench: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    failures: &mut Vec<String>,
) -> Option<f64> {
    let v = bench.get(key).and_then(|v| v.as_f64());
    if v.is_none() {
        failures.push(format!("`{key}` is missing from the bench output"));
    }
    v
}

/// The exact command that replays one run of `service` (what `check` prints on a failure).
pub fn replay_command(service: &str, seed: u64, nodes: usize, mode: Mode) -> String {
    format!(
        "cargo run --release -p p2p-sim -- replay --service {service} --seed {seed} --nodes {nodes} --mode {}",
        mode.name()
    )
}

/// Every registered scenario.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(ping::Ping),
        Box::new(presence::PresenceScenario),
        Box::new(sync::SyncScenario),
        Box::new(txcoord::TxScenario),
        Box::new(notify::NotifyScenario),
    ]
}

pub fn find(name: &str) -> Option<Box<dyn Scenario>> {
    all().into_iter().find(|s| s.name() == name)
}

/// Pick a fault at random and apply it (shared by scenarios).
pub fn random_fault(sim: &mut Sim, rng: &mut ChaCha8Rng) {
    let n = sim.len();
    let a = rng.gen_range(0..n);
    let b = rng.gen_range(0..n);
    match rng.gen_range(0..8) {
        0 => {
            let cut = rng.gen_range(1..n.max(2));
            sim.partition(&[(0..cut).collect(), (cut..n).collect()]);
        }
        1 => sim.crash(a),
        2 => sim.restart(a),
        3 => sim.heal(),
        4 if a != b => sim.reset_connection(a, b),
        5 => sim.set_slow(a, rng.gen_range(0..3_000)),
        6 => sim.set_clock_skew(a, rng.gen_range(-60_000..60_000)),
        _ => sim.isolate(a),
    }
}

/// Heal everything and restart every crashed node.
pub fn heal_all(sim: &mut Sim) {
    sim.heal();
    for i in 0..sim.len() {
        sim.restart(i);
        sim.set_slow(i, 0);
    }
}
