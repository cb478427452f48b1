//! Each fault the simulator claims to model really happens, and runs replay from the seed.

use p2p_common::api::{decode_response, encode, BaseRequest, BaseResponse, ErrorCode};
use p2p_common::SendErrorKind;
use p2p_sim::testcore::{EchoCore, EchoReply, EchoRequest, Outcome, NAME};
use p2p_sim::{factory, AppOutcome, Sim, SimConfig};

/// A cluster of `n` nodes, each hosting the echo core (sending every `period` ms, 0 = never)
/// and the minimal presence process. Connection setup is free here so latencies are exact
/// (tests/contract.rs covers the setup round trip).
fn cluster(seed: u64, n: usize, period: u64, tweak: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.net.setup_round_trip = false;
    tweak(&mut cfg);
    let names: Vec<_> = (0..n).map(p2p_sim::node_name).collect();
    let peers: Vec<_> = names
        .iter()
        .map(|id| p2p_common::Address::ours(id, NAME))
        .collect();
    Sim::new(cfg)
        .with_process(
            NAME,
            factory(move |a| EchoCore::new(a, peers.clone(), period)),
        )
        .with_process("presence", factory(presence::core::new))
}

fn echo(sim: &Sim, i: usize) -> &EchoCore {
    sim.core::<EchoCore>(i, NAME).expect("echo core running")
}

#[test]
fn partitioned_pair_exchanges_nothing() {
    let mut sim = cluster(1, 2, 1_000, |_| {});
    sim.run_for(10_000).unwrap();
    assert!(
        !echo(&sim, 1).received.is_empty(),
        "before the partition bob hears alice"
    );
    sim.partition(&[vec![0], vec![1]]);
    sim.run_for(6_000).unwrap(); // let messages sent before the cut drain
    let before = (echo(&sim, 0).received.len(), echo(&sim, 1).received.len());
    let link = sim
        .stats
        .per_link
        .get("alice.os -> bob.os")
        .copied()
        .unwrap_or_default();
    sim.run_for(60_000).unwrap();
    assert_eq!(
        (echo(&sim, 0).received.len(), echo(&sim, 1).received.len()),
        before
    );
    assert_eq!(
        sim.stats
            .per_link
            .get("alice.os -> bob.os")
            .copied()
            .unwrap_or_default(),
        link,
        "nothing crossed the cut"
    );
    let offline = echo(&sim, 0)
        .outcomes
        .values()
        .flatten()
        .filter(|o| **o == Outcome::Failed(SendErrorKind::Offline))
        .count();
    assert!(
        offline >= 50,
        "alice's sends fail Offline during the partition, got {offline}"
    );
    sim.heal();
    sim.run_for(10_000).unwrap();
    assert!(
        echo(&sim, 1).received.len() > before.1,
        "after healing messages flow again"
    );
}

#[test]
fn crash_loses_what_was_not_persisted() {
    let mut sim = cluster(2, 2, 0, |_| {});
    let bob_echo = sim.addr(1, NAME);
    for _ in 0..2 {
        sim.request(0, &bob_echo, encode(&EchoRequest::Bump {}), 10);
    }
    sim.request(0, &bob_echo, encode(&EchoRequest::Save {}), 10);
    sim.request(0, &bob_echo, encode(&EchoRequest::Bump {}), 10);
    sim.run_for(5_000).unwrap();
    assert_eq!(echo(&sim, 1).counter, 3);
    sim.crash(1);
    assert!(
        sim.core::<EchoCore>(1, NAME).is_none(),
        "a crashed node runs nothing"
    );
    sim.run_for(1_000).unwrap();
    sim.restart(1);
    sim.run_for(1_000).unwrap();
    assert_eq!(
        echo(&sim, 1).counter,
        2,
        "the saved value survives, the later bump does not"
    );
    assert_eq!(echo(&sim, 1).restored, 2);
}

#[test]
fn duplicates_arrive_twice() {
    let mut sim = cluster(3, 2, 0, |c| c.net.duplicate = 1.0);
    let bob_echo = sim.addr(1, NAME);
    sim.notify(0, &bob_echo, encode(&EchoRequest::Echo { n: 42 }));
    sim.run_for(5_000).unwrap();
    assert_eq!(echo(&sim, 1).received, vec![42, 42]);
    assert_eq!(sim.stats.duplicated, 1);
}

#[test]
fn timeout_fires_with_its_context() {
    let mut sim = cluster(4, 2, 1_000, |c| c.net.loss = 1.0);
    sim.run_for(1_000 + 10_000 + 50).unwrap();
    let alice = echo(&sim, 0);
    assert_eq!(
        alice.outcomes.get(&0),
        Some(&vec![Outcome::Failed(SendErrorKind::Timeout)]),
        "request 0 timed out after 10 s"
    );
    assert_eq!(alice.mismatches, 0, "the context came back intact");
    assert!(echo(&sim, 1).received.is_empty());
}

#[test]
fn offline_for_down_or_unknown_nodes_and_timeout_for_missing_local_process() {
    let mut sim = cluster(5, 3, 0, |_| {});
    sim.crash(2);
    let to_down = sim.request(0, &sim.addr(2, NAME), encode(&EchoRequest::Bump {}), 30);
    let unknown =
        p2p_common::Address::parse("nobody.os@echo:p2p-patterns:p2p-patterns.os").unwrap();
    let to_unknown = sim.request(0, &unknown, encode(&EchoRequest::Bump {}), 30);
    let missing_local = sim.request(0, &sim.addr(0, "sync"), encode(&BaseRequest::Ping {}), 30);
    sim.run_for(1).unwrap();
    assert_eq!(
        sim.outcome(missing_local),
        Some(&AppOutcome::Failed(SendErrorKind::Timeout)),
        "immediate for a local process that does not run"
    );
    assert_eq!(
        sim.outcome(to_down),
        None,
        "Offline only after the connect timeout"
    );
    sim.run_for(5_000).unwrap();
    assert_eq!(
        sim.outcome(to_down),
        Some(&AppOutcome::Failed(SendErrorKind::Offline))
    );
    assert_eq!(
        sim.outcome(to_unknown),
        Some(&AppOutcome::Failed(SendErrorKind::Offline))
    );
}

#[test]
fn processes_answer_ping_and_info_and_reject_garbage_across_nodes() {
    let mut sim = cluster(6, 3, 0, |_| {});
    let bob_presence = sim.addr(1, "presence");
    let ping = sim.request(0, &bob_presence, encode(&BaseRequest::Ping {}), 10);
    let info = sim.request(2, &bob_presence, encode(&BaseRequest::Info {}), 10);
    let garbage = sim.request(0, &bob_presence, b"{\"Dance\":".to_vec(), 10);
    sim.run_until_quiet(60_000).unwrap();
    let body = |h| match sim.outcome(h) {
        Some(AppOutcome::Response(b)) => b.clone(),
        o => panic!("no response: {o:?}"),
    };
    match decode_response::<BaseResponse>(&body(ping)).unwrap() {
        BaseResponse::Pong(p) => assert_eq!(p.node, "bob.os"),
        r => panic!("{r:?}"),
    }
    match decode_response::<BaseResponse>(&body(info)).unwrap() {
        BaseResponse::Info(i) => {
            assert_eq!((i.name.as_str(), i.node.as_str()), ("presence", "bob.os"))
        }
        r => panic!("{r:?}"),
    }
    let err = decode_response::<BaseResponse>(&body(garbage)).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("not valid JSON"), "{}", err.message);
}

#[test]
fn fifo_per_connection_and_reordering_across_reconnects() {
    // Without resets, a burst from alice arrives at bob in order despite random latency.
    let mut sim = cluster(7, 2, 0, |_| {});
    let bob_echo = sim.addr(1, NAME);
    for n in 0..200 {
        sim.notify(0, &bob_echo, encode(&EchoRequest::Echo { n }));
    }
    sim.run_for(5_000).unwrap();
    assert_eq!(echo(&sim, 1).received, (0..200).collect::<Vec<_>>());

    // Resetting the connection mid-burst loses some of the old connection's messages and lets
    // others arrive after newer ones, for at least one of a few seeds.
    let mut reordered_or_lost = 0;
    for seed in 0..5 {
        let mut sim = cluster(100 + seed, 2, 0, |_| {});
        let bob_echo = sim.addr(1, NAME);
        for n in 0..100 {
            sim.notify(0, &bob_echo, encode(&EchoRequest::Echo { n }));
        }
        sim.reset_connection(0, 1);
        for n in 100..200 {
            sim.notify(0, &bob_echo, encode(&EchoRequest::Echo { n }));
        }
        sim.run_for(5_000).unwrap();
        let got = &echo(&sim, 1).received;
        if got.len() < 200 || got.windows(2).any(|w| w[0] > w[1]) {
            reordered_or_lost += 1;
        }
        let fresh: Vec<u64> = got.iter().copied().filter(|&n| n >= 100).collect();
        assert_eq!(
            fresh,
            (100..200).collect::<Vec<_>>(),
            "the new connection loses nothing and keeps order"
        );
    }
    assert!(reordered_or_lost > 0);
}

#[test]
fn clock_skew_and_slow_node() {
    let mut sim = cluster(8, 2, 0, |c| {
        c.net.latency.min_ms = 50;
        c.net.latency.max_ms = 50;
    });
    sim.set_clock_skew(1, 3_600_000);
    sim.set_slow(1, 2_000);
    let bob_echo = sim.addr(1, NAME);
    let h = sim.request(0, &bob_echo, encode(&EchoRequest::Echo { n: 1 }), 10);
    sim.run_for(2_049).unwrap();
    assert_eq!(sim.outcome(h), None, "a slow node takes its time");
    sim.run_for(100).unwrap();
    assert!(matches!(sim.outcome(h), Some(AppOutcome::Response(_))));
    let bob = echo(&sim, 1);
    assert_eq!(
        bob.last_now.wall,
        2_050 + 3_600_000,
        "bob's core saw its skewed clock"
    );
}

#[test]
fn a_restarted_node_gets_no_timers_or_replies_from_its_previous_life() {
    let mut sim = cluster(9, 2, 1_000, |c| c.net.loss = 1.0);
    sim.run_for(1_500).unwrap(); // alice sent request 0, due to time out at 11 s
    sim.crash(0);
    sim.restart(0);
    // The old life's request 0 would have timed out at 11 s, the new life's at 12.5 s.
    sim.run_for(12_000).unwrap();
    let alice = echo(&sim, 0);
    assert!(
        alice.outcomes.values().all(|o| o.len() == 1),
        "one outcome per request"
    );
    assert_eq!(alice.mismatches, 0);
    // The new life starts counting at 0 again; its request 0 outcome is from the new life.
    assert!(alice.outcomes.contains_key(&0));
}

#[test]
fn every_request_gets_exactly_one_outcome_under_random_faults() {
    let mut sim = cluster(10, 5, 700, |c| {
        c.net.loss = 0.2;
        c.net.duplicate = 0.1;
        c.net.latency.spike_p = 0.05;
    })
    .with_invariant("one outcome per request", |s| {
        for i in 0..s.len() {
            if let Some(e) = s.core::<EchoCore>(i, NAME) {
                if let Some((n, o)) = e.outcomes.iter().find(|(_, o)| o.len() != 1) {
                    return Err(format!("{}: request {n} has outcomes {o:?}", s.node_id(i)));
                }
                if e.mismatches > 0 {
                    return Err(format!("{}: context mismatch", s.node_id(i)));
                }
                if let Some((n, at)) = e
                    .pending
                    .iter()
                    .find(|(_, &at)| s.now() > at + 10_000 + 10_000)
                {
                    return Err(format!(
                        "{}: request {n} sent at {at} never finished",
                        s.node_id(i)
                    ));
                }
            }
        }
        Ok(())
    });
    for round in 0..10 {
        sim.run_for(20_000).unwrap();
        match round % 4 {
            0 => sim.partition(&[vec![0, 1], vec![2, 3, 4]]),
            1 => sim.crash(round % 5),
            2 => {
                sim.heal();
                for i in 0..5 {
                    sim.restart(i);
                }
            }
            _ => sim.reset_connection(0, 2),
        }
    }
    assert_eq!(sim.stats.reply_rule_violations, 0);
    assert!(sim.stats.lost > 0 && sim.stats.duplicated > 0);
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut sim = cluster(seed, 4, 500, |c| {
            c.net.loss = 0.1;
            c.net.duplicate = 0.05;
        });
        sim.run_for(20_000).unwrap();
        sim.crash(1);
        sim.run_for(10_000).unwrap();
        sim.restart(1);
        sim.run_for(20_000).unwrap();
        (sim.trace_digest(), sim.trace.lines())
    };
    let a = run(77);
    assert_eq!(a, run(77));
    assert!(a.1 > 100);
    assert_ne!(a.0, run(78).0);
}

#[test]
fn echo_reply_shape() {
    let r: EchoReply = decode_response(br#"{"Ok":{"n":3,"node":"bob.os"}}"#).unwrap();
    assert_eq!(
        r,
        EchoReply {
            n: 3,
            node: "bob.os".into()
        }
    );
}

#[test]
fn a_violated_invariant_stops_the_run_and_names_the_seed() {
    let mut sim =
        cluster(11, 2, 1_000, |c| c.record_trace = true).with_invariant("bob hears nothing", |s| {
            match s.core::<EchoCore>(1, NAME) {
                Some(e) if !e.received.is_empty() => Err(format!("bob received {:?}", e.received)),
                _ => Ok(()),
            }
        });
    let err = sim.run_for(10_000).unwrap_err();
    assert_eq!(err.seed, 11);
    assert!(
        err.time >= 1_000 && err.time < 2_000,
        "caught at the first delivery, t={}",
        err.time
    );
    let text = err.to_string();
    assert!(
        text.contains("seed 11") && text.contains("bob hears nothing"),
        "{text}"
    );
    // A bare simulation does not know its scenario: it prints no replay command that would
    // replay something else (`check` adds the exact one, see `scenarios::replay_command`).
    assert!(!text.contains("replay with"), "{text}");
    assert!(
        err.trace_tail.iter().any(|l| l.contains("recv #")),
        "the trace shows the delivery"
    );
}

#[test]
fn scenario_runs_replay_exactly_and_recording_does_not_change_them() {
    let sc = p2p_sim::scenarios::find("ping").unwrap();
    let a = sc.run(5, 5, p2p_sim::Mode::Hostile, false).unwrap();
    let b = sc.run(5, 5, p2p_sim::Mode::Hostile, true).unwrap();
    assert_eq!(a.trace_digest(), b.trace_digest());
    assert_eq!(a.trace.lines(), b.trace.lines());
    assert!(b.trace.all().unwrap().len() as u64 == b.trace.lines());
    assert_ne!(
        a.trace_digest(),
        sc.run(6, 5, p2p_sim::Mode::Hostile, false)
            .unwrap()
            .trace_digest()
    );
}

#[test]
fn a_node_crashed_before_the_run_comes_back_with_exactly_one_fresh_set_of_cores() {
    let mut sim = cluster(12, 2, 1_000, |_| {});
    sim.crash(1);
    assert!(sim.processes(1).is_empty());
    sim.run_for(5_000).unwrap();
    sim.restart(1);
    assert_eq!(sim.processes(1), vec![NAME, "presence"]);
    sim.run_for(5_000).unwrap();
    let bob = echo(&sim, 1);
    assert!(
        bob.last_now.wall >= 5_000 && !bob.outcomes.is_empty(),
        "the running core is the restarted one, and its timers fire"
    );
}

#[test]
fn only_the_exact_process_id_answers() {
    let mut sim = cluster(13, 2, 0, |_| {});
    let impostor = p2p_common::Address::parse("bob.os@echo:other-pkg:evil.os").unwrap();
    let h = sim.request(0, &impostor, encode(&EchoRequest::Echo { n: 1 }), 3);
    sim.run_for(4_000).unwrap();
    assert_eq!(
        sim.outcome(h),
        Some(&AppOutcome::Failed(SendErrorKind::Timeout))
    );
    assert!(echo(&sim, 1).received.is_empty());
    // A local process that does not run, whatever its package: Timeout at once.
    let missing = p2p_common::Address::parse("alice.os@nothere:other:x.os").unwrap();
    let h = sim.request(0, &missing, b"{}".to_vec(), 30);
    sim.run_for(1).unwrap();
    assert_eq!(
        sim.outcome(h),
        Some(&AppOutcome::Failed(SendErrorKind::Timeout))
    );
}

#[test]
fn huge_timeouts_do_not_overflow_the_clock() {
    let mut sim = cluster(14, 2, 0, |_| {});
    sim.run_for(10).unwrap();
    let h = sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 1 }),
        u64::MAX,
    );
    sim.run_for(1_000).unwrap();
    assert!(matches!(sim.outcome(h), Some(AppOutcome::Response(_))));
    assert!(sim.now() >= 1_010);
}

#[test]
fn a_broken_connection_loses_writes_until_the_kernel_notices_then_says_offline() {
    let mut sim = cluster(15, 2, 0, |c| {
        c.net.latency.min_ms = 50;
        c.net.latency.max_ms = 50;
    });
    let bob = sim.addr(1, NAME);
    let h = sim.request(0, &bob, encode(&EchoRequest::Echo { n: 1 }), 10);
    sim.run_for(1_000).unwrap();
    assert!(
        matches!(sim.outcome(h), Some(AppOutcome::Response(_))),
        "the connection is up"
    );
    sim.partition(&[vec![0], vec![1]]);
    let lost = sim.request(0, &bob, encode(&EchoRequest::Echo { n: 2 }), 3);
    sim.run_for(6_000).unwrap();
    assert_eq!(
        sim.outcome(lost),
        Some(&AppOutcome::Failed(SendErrorKind::Timeout)),
        "written to a dead connection"
    );
    let refused = sim.request(0, &bob, encode(&EchoRequest::Echo { n: 3 }), 30);
    sim.run_for(5_000).unwrap();
    assert_eq!(
        sim.outcome(refused),
        Some(&AppOutcome::Failed(SendErrorKind::Offline)),
        "the kernel noticed"
    );
}

/// A core that replies from its timer: a reply-rule bug the simulator must report.
struct RudeCore;
impl p2p_common::Service for RudeCore {
    type Ctx = ();
    type Timer = ();
    fn name(&self) -> &'static str {
        "rude"
    }
    fn handle(
        &mut self,
        _now: p2p_common::Now,
        input: p2p_common::Input<(), ()>,
    ) -> Vec<p2p_common::Effect<(), ()>> {
        match input {
            p2p_common::Input::Start { .. } => vec![p2p_common::Effect::timer(100, ())],
            p2p_common::Input::Timer(()) => vec![p2p_common::Effect::reply(
                p2p_common::RequestId(1),
                b"?".to_vec(),
            )],
            _ => vec![],
        }
    }
}

#[test]
fn reply_rule_breaks_are_counted() {
    let mut sim = Sim::new(SimConfig::new(16, 1)).with_process("rude", factory(|_| RudeCore));
    sim.run_for(1_000).unwrap();
    assert_eq!(sim.stats.reply_rule_violations, 1);
}

#[test]
fn each_link_can_have_its_own_latency() {
    let mut sim = cluster(17, 3, 0, |c| {
        c.net.latency.min_ms = 50;
        c.net.latency.max_ms = 50;
    });
    sim.set_link_latency(
        0,
        2,
        p2p_sim::Latency {
            min_ms: 400,
            max_ms: 400,
            spike_p: 0.0,
            spike_factor: 1,
        },
    );
    let near = sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 1 }),
        10,
    );
    let far = sim.request(
        0,
        &sim.addr(2, NAME),
        encode(&EchoRequest::Echo { n: 2 }),
        10,
    );
    sim.run_for(2_000).unwrap();
    assert_eq!(sim.latency_of(near), Some(100));
    assert_eq!(
        sim.latency_of(far),
        Some(800),
        "400 ms each way on the far link, both directions"
    );
}
