//! presence under honest trouble: a bootstrap down for a day.

use p2p_sim::scenarios::presence as ps;
use p2p_sim::{NetConfig, Sim, SimConfig};
use presence::core::Presence;

const DAY: u64 = 24 * 3_600_000;

fn cluster(seed: u64, n: usize) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.net = NetConfig::realistic();
    ps::cluster(cfg, ps::config())
}

fn attempts(sim: &Sim, i: usize) -> u64 {
    sim.core::<Presence>(i, "presence")
        .unwrap()
        .registration_attempts()
}

#[test]
fn a_bootstrap_down_for_a_day_costs_about_one_attempt_per_cap_and_sees_each_client_once_back() {
    let mut sim = cluster(21, 6);
    for i in 1..6 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    let before: Vec<u64> = (1..6).map(|i| attempts(&sim, i)).collect();
    sim.crash(0);
    sim.run_for(DAY).unwrap();
    let cap = presence::regclient::DEFAULT_CAP_MS;
    for (k, i) in (1..6).enumerate() {
        let made = attempts(&sim, i) - before[k];
        assert!(
            made <= DAY / (cap * 9 / 10) + 20,
            "{} made {made} registration attempts in a day",
            sim.node_id(i)
        );
        assert!(made >= 50, "{} kept trying: {made}", sim.node_id(i));
    }
    // The bootstrap returns: each client registers again, once, not in a storm.
    let per_type = |sim: &Sim| sim.stats.per_type.get("RegisterNode").map_or(0, |c| c.msgs);
    sim.restart(0);
    let at_restart = per_type(&sim);
    sim.run_for(cap + 60_000).unwrap();
    let p = sim.core::<Presence>(0, "presence").unwrap();
    assert_eq!(p.stats().registrations, 5, "every client registered again");
    // In that time each client sends one retry and then ordinary renewals (every 100 s).
    let received = per_type(&sim) - at_restart;
    let renewals_max = 5 * ((cap + 60_000) / 100_000 + 2);
    assert!(received <= renewals_max, "{received} registrations");
}
