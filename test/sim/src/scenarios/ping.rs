//! The `ping` scenario: the four processes' minimal cores plus the test-only echo core, under
//! random faults. It is what `check` runs until the services bring their own scenarios.

use super::{figure, heal_all, random_fault, util, Scenario};
use crate::testcore::{EchoCore, NAME as ECHO};
use crate::{factory, node_name, AppOutcome, Mode, NetConfig, Sim, SimConfig, SimError};
use p2p_common::api::{decode_response, encode, BaseRequest, BaseResponse, ErrorCode};
use p2p_common::Address;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::time::Instant;

pub struct Ping;

const PROCS: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

/// A cluster hosting the four processes and the echo core (sending every `period` ms);
/// no invariants (see [`with_checks`]).
pub fn cluster(cfg: SimConfig, period: u64) -> Sim {
    let peers: Vec<Address> = (0..cfg.nodes)
        .map(|i| Address::ours(&node_name(i), ECHO))
        .collect();
    Sim::new(cfg)
        .with_process(
            ECHO,
            factory(move |a| EchoCore::new(a, peers.clone(), period)),
        )
        .with_process("presence", factory(presence::core::new))
        .with_process("sync", factory(sync::core::new))
        .with_process("notify", factory(notify::core::new))
        .with_process("txcoord", factory(txcoord::core::new))
}

/// The ping scenario's invariants, checked after every event.
pub fn with_checks(sim: Sim) -> Sim {
    sim.with_invariant("one outcome per echo request, with its own context", |s| {
            for i in 0..s.len() {
                if let Some(e) = s.core::<EchoCore>(i, ECHO) {
                    if e.extra_outcomes > 0 || e.mismatches > 0 {
                        return Err(format!(
                            "{}: {} requests with a second outcome, {} answers not matching their context",
                            s.node_id(i),
                            e.extra_outcomes,
                            e.mismatches
                        ));
                    }
                }
            }
            Ok(())
        })
        .with_invariant("replies only answer requests", |s| match s.stats.reply_rule_violations {
            0 => Ok(()),
            n => Err(format!("{n} replies without a request")),
        })
}

#[derive(Clone, Copy)]
enum Sent {
    Ping(usize),
    Info(usize),
    Garbage,
}

impl Scenario for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }
    fn default_nodes(&self) -> usize {
        5
    }

    fn run(&self, seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let mut cfg = SimConfig::new(seed, nodes);
        cfg.record_trace = record;
        cfg.net = NetConfig::for_mode(mode);
        let (loss, dup) = (rng.gen_range(0.0..0.3), rng.gen_range(0.0..0.1));
        if mode == Mode::Hostile {
            cfg.net.loss = loss;
            cfg.net.duplicate = dup;
        }
        cfg.net.latency.spike_p = rng.gen_range(0.0..0.05);
        let mut sim = with_checks(cluster(cfg, rng.gen_range(500..3_000)));
        let n = sim.len();
        let mut sent = Vec::new();
        for _ in 0..20 {
            for _ in 0..rng.gen_range(0..5) {
                let from = rng.gen_range(0..n);
                let to = rng.gen_range(0..n);
                let proc = PROCS[rng.gen_range(0..PROCS.len())];
                let (kind, body) = match rng.gen_range(0..3) {
                    0 => (Sent::Ping(to), encode(&BaseRequest::Ping {})),
                    1 => (Sent::Info(to), encode(&BaseRequest::Info {})),
                    _ => (Sent::Garbage, b"{\"Nope\":[1,2".to_vec()),
                };
                let h = sim.request(from, &sim.addr(to, proc), body, 30);
                sent.push((h, kind));
            }
            if rng.gen_bool(0.5) {
                random_fault(&mut sim, &mut rng);
            }
            let step = rng.gen_range(1_000..15_000);
            sim.run_for(step)?;
        }
        heal_all(&mut sim);
        sim.run_for(60_000)?;
        // Every answer that arrived is the right one.
        for (h, kind) in &sent {
            check_answer(&sim, *h, *kind)?;
        }
        // Liveness after healing: with faults gone, pings between every pair get through
        // (loss stays; a few tries each).
        for from in 0..n {
            let to = (from + 1) % n;
            let mut ok = false;
            for _ in 0..10 {
                let h = sim.request(
                    from,
                    &sim.addr(to, "presence"),
                    encode(&BaseRequest::Ping {}),
                    10,
                );
                sim.run_for(11_000)?;
                if let Some(AppOutcome::Response(_)) = sim.outcome(h) {
                    check_answer(&sim, h, Sent::Ping(to))?;
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(sim.fail(format!(
                    "after healing, {} never reached {}",
                    sim.node_id(from),
                    sim.node_id(to)
                )));
            }
        }
        // Every app request has exactly its outcome by now (30 s timeouts have passed).
        if let Some(h) = sim.app_handles().find(|&h| sim.outcome(h).is_none()) {
            return Err(sim.fail(format!("app request #{h} never got a response or an error")));
        }
        Ok(sim)
    }

    /// Without faults every ping is answered, and its round trip is at most two link round
    /// trips at the slowest link latency (the connection's setup plus the ping itself).
    fn bench_targets(&self, bench: &Map<String, Value>) -> Option<Vec<String>> {
        let mut failures = Vec::new();
        let requests = figure(bench, "ping_requests", &mut failures);
        let answered = figure(bench, "ping_answered", &mut failures);
        if let (Some(r), Some(a)) = (requests, answered) {
            if a < r || r == 0.0 {
                failures.push(format!(
                    "ping_answered {a} of ping_requests {r}: every ping must be answered"
                ));
            }
        }
        let p99 = figure(bench, "ping_rtt_ms_p99", &mut failures);
        let max_link = bench
            .get("link_latency_ms")
            .and_then(|v| v.get(1))
            .and_then(|v| v.as_f64());
        match (p99, max_link) {
            (Some(p99), Some(max)) if p99 > 4.0 * max => failures.push(format!(
                "ping_rtt_ms_p99 {p99} > {} (two round trips at the slowest link, {max} ms each way)",
                4.0 * max
            )),
            (Some(_), None) => failures.push("`link_latency_ms` [min, max] is missing".into()),
            _ => {}
        }
        Some(failures)
    }

    fn bench(&self) -> Map<String, Value> {
        let mut m = Map::new();
        // The body limit of the Ping/Info cores (sync, notify today).
        m.insert(
            "max_request_bytes".into(),
            json!(p2p_common::api::MAX_REQUEST_BYTES),
        );
        // Remote Ping round trips over default latency (20-200 ms), 10 nodes, no faults.
        let links = crate::Latency::default();
        m.insert(
            "link_latency_ms".into(),
            json!([links.min_ms, links.max_ms]),
        );
        let nodes = 10usize;
        m.insert("ping_nodes".into(), json!(nodes));
        let t0 = Instant::now();
        let cpu0 = util::cpu_ms();
        let mut sim = cluster(SimConfig::new(1, nodes), 0);
        let mut handles = Vec::new();
        for k in 0..1_000usize {
            let from = k % nodes;
            let to = (k * 7 + 3) % nodes;
            let to = if to == from { (to + 1) % nodes } else { to };
            handles.push(sim.request(
                from,
                &sim.addr(to, "presence"),
                encode(&BaseRequest::Ping {}),
                30,
            ));
            if k % 10 == 9 {
                sim.run_for(1_000)
                    .expect("no invariant fails without faults");
            }
        }
        sim.run_until_quiet(60_000).expect("quiet");
        let mut lat: Vec<u64> = handles.iter().filter_map(|&h| sim.latency_of(h)).collect();
        m.insert("ping_requests".into(), json!(handles.len()));
        m.insert("ping_answered".into(), json!(lat.len()));
        m.insert(
            "ping_rtt_ms_p50".into(),
            json!(util::percentile(&mut lat, 50)),
        );
        m.insert(
            "ping_rtt_ms_p99".into(),
            json!(util::percentile(&mut lat, 99)),
        );
        m.insert("msgs_remote".into(), json!(sim.stats.remote.msgs));
        m.insert("bytes_remote".into(), json!(sim.stats.remote.bytes));
        m.insert(
            "bytes_per_ping_exchange".into(),
            json!(sim.stats.remote.bytes / handles.len().max(1) as u64),
        );
        m.insert(
            "per_type".into(),
            serde_json::to_value(&sim.stats.per_type).unwrap_or_default(),
        );
        m.insert(
            "per_link".into(),
            serde_json::to_value(&sim.stats.per_link).unwrap_or_default(),
        );
        m.insert(
            "ping_wall_ms".into(),
            json!(t0.elapsed().as_secs_f64() * 1e3),
        );

        // A simulated hour of 3 nodes whose echo cores send every second.
        let t1 = Instant::now();
        let mut sim = cluster(SimConfig::new(2, 3), 1_000);
        sim.run_for(3_600_000).expect("no faults");
        m.insert(
            "sim_hour_3_nodes_wall_ms".into(),
            json!(t1.elapsed().as_secs_f64() * 1e3),
        );
        m.insert("sim_hour_3_nodes_msgs".into(), json!(sim.stats.remote.msgs));

        // A simulated minute of 1,000 nodes, each echoing every 5 s.
        let t2 = Instant::now();
        let mut sim = cluster(SimConfig::new(3, 1_000), 5_000);
        sim.run_for(60_000).expect("no faults");
        m.insert(
            "sim_minute_1000_nodes_wall_ms".into(),
            json!(t2.elapsed().as_secs_f64() * 1e3),
        );
        m.insert(
            "sim_minute_1000_nodes_msgs".into(),
            json!(sim.stats.remote.msgs),
        );
        m.insert("cpu_ms".into(), json!(util::cpu_ms() - cpu0));
        m
    }
}

fn check_answer(sim: &Sim, h: u64, kind: Sent) -> Result<(), SimError> {
    let Some(AppOutcome::Response(body)) = sim.outcome(h) else {
        return Ok(()); // lost or timed out: allowed under faults
    };
    let r = decode_response::<BaseResponse>(body);
    let ok = match (kind, &r) {
        (Sent::Ping(to), Ok(BaseResponse::Pong(p))) => p.node == sim.node_id(to).as_str(),
        (Sent::Info(to), Ok(BaseResponse::Info(i))) => i.node == sim.node_id(to).as_str(),
        (Sent::Garbage, Err(e)) => e.code == ErrorCode::BadRequest,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(sim.fail(format!("request #{h}: wrong answer {r:?}")))
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    fn good() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ping_requests".into(), json!(1000));
        m.insert("ping_answered".into(), json!(1000));
        m.insert("ping_rtt_ms_p99".into(), json!(384));
        m.insert("link_latency_ms".into(), json!([20, 200]));
        m
    }

    #[test]
    fn targets_pass_on_good_figures_and_fail_on_each_bad_one() {
        assert_eq!(Ping.bench_targets(&good()), Some(vec![]));
        let mut lost = good();
        lost.insert("ping_answered".into(), json!(999));
        let f = Ping.bench_targets(&lost).unwrap();
        assert!(f.len() == 1 && f[0].contains("every ping"), "{f:?}");
        let mut slow = good();
        slow.insert("ping_rtt_ms_p99".into(), json!(801));
        let f = Ping.bench_targets(&slow).unwrap();
        assert!(f.len() == 1 && f[0].contains("801"), "{f:?}");
        let mut gone = good();
        gone.remove("ping_rtt_ms_p99");
        let f = Ping.bench_targets(&gone).unwrap();
        assert!(f.len() == 1 && f[0].contains("missing"), "{f:?}");
    }
}
