//! The service contract v2 and the realistic network, end to end through the simulator:
//! replying later with the restored prompt, storage batches and crashes, the two clocks,
//! capabilities on requests and responses, networking down after a restart, HTTP and
//! WebSocket through the mapping, and a 30 MB transfer in chunks.

use p2p_common::api::presence::{MemberStatus, Request as PresenceRequest};
use p2p_common::api::{decode_response, encode, ApiResult, ErrorCode};
use p2p_common::http::{HttpResponse, HttpServerRequest};
use p2p_common::{ProcessId, SendErrorKind};
use p2p_sim::scenarios::presence as ps;
use p2p_sim::sim::AppSpec;
use p2p_sim::testcore::blob::{self, BlobCore, BlobRequest};
use p2p_sim::testcore::{EchoCore, EchoReply, EchoRequest, NAME};
use p2p_sim::{factory, AppOutcome, NetConfig, Sim, SimConfig};
use presence::core::Presence;

fn echo_cluster(seed: u64, n: usize, net: NetConfig) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.net = net;
    let peers: Vec<_> = (0..n)
        .map(|i| p2p_common::Address::ours(&p2p_sim::node_name(i), NAME))
        .collect();
    Sim::new(cfg)
        .with_process(NAME, factory(move |a| EchoCore::new(a, peers.clone(), 0)))
        .with_process(blob::NAME, factory(BlobCore::new))
}

fn answer(sim: &Sim, h: u64) -> ApiResult<EchoReply> {
    match sim.outcome(h) {
        Some(AppOutcome::Response(b)) => decode_response(b),
        other => panic!("no answer: {other:?}"),
    }
}

#[test]
fn a_reply_made_later_reaches_the_original_caller_after_a_remote_round_trip() {
    let mut sim = echo_cluster(1, 3, NetConfig::realistic());
    let alice_echo = sim.addr(0, NAME);
    let relay = sim.request(
        0,
        &alice_echo,
        encode(&EchoRequest::Relay {
            node: "bob.os".into(),
            n: 42,
        }),
        30,
    );
    // While alice's echo waits for bob, another app request comes in and is answered.
    sim.run_for(5).unwrap();
    let direct = sim.request(0, &alice_echo, encode(&EchoRequest::Echo { n: 7 }), 30);
    sim.run_for(5_000).unwrap();
    let r = answer(&sim, relay).unwrap();
    assert_eq!(
        (r.n, r.node.as_str()),
        (42, "bob.os"),
        "bob's answer, to the relay's caller"
    );
    let d = answer(&sim, direct).unwrap();
    assert_eq!((d.n, d.node.as_str()), (7, "alice.os"));
    assert_eq!(sim.stats.reply_rule_violations, 0);
    // Never answered twice (the simulator's kernel counts every second answer).
    assert_eq!(sim.stats.double_answers, 0);
}

#[test]
fn a_send_error_during_a_held_request_is_answered() {
    let mut sim = echo_cluster(2, 3, NetConfig::realistic());
    sim.crash(1);
    let h = sim.request(
        0,
        &sim.addr(0, NAME),
        encode(&EchoRequest::Relay {
            node: "bob.os".into(),
            n: 1,
        }),
        30,
    );
    sim.run_for(20_000).unwrap();
    let e = answer(&sim, h).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("Offline"), "{}", e.message);
}

#[test]
fn a_crash_keeps_exactly_the_batches_completed_before_it() {
    let mut sim = echo_cluster(3, 2, NetConfig::realistic());
    let bob = sim.addr(1, NAME);
    let put = |sim: &mut Sim, key: u64, forced: bool| {
        let h = sim.request(0, &bob, encode(&EchoRequest::Put { key, forced }), 10);
        sim.run_for(1_000).unwrap();
        assert!(answer(sim, h).is_ok());
    };
    put(&mut sim, 1, true);
    put(&mut sim, 4, true);
    // A crash between two completed forced batches keeps both.
    sim.crash(1);
    sim.restart(1);
    sim.run_for(25_000).unwrap();
    assert_eq!(sim.records(1, NAME).map(|r| r.len()), Some(2));
    // A lazy write is not on disk when its answer goes out...
    let h = sim.request(
        0,
        &bob,
        encode(&EchoRequest::Put {
            key: 2,
            forced: false,
        }),
        10,
    );
    sim.run_for(600).unwrap();
    assert!(answer(&sim, h).is_ok());
    let keys = |sim: &Sim| -> Vec<u64> {
        sim.records(1, NAME)
            .map(|r| {
                r.keys()
                    .map(|k| u64::from_be_bytes(k[..8].try_into().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        keys(&sim),
        vec![1, 4],
        "the forced batches are durable, the lazy one not yet"
    );
    // ...and a crash before the driver flushes it loses it; the forced batch stays.
    sim.crash(1);
    sim.restart(1);
    // (Its networking comes back 15-20 s after the restart.)
    sim.run_for(25_000).unwrap();
    assert_eq!(keys(&sim), vec![1, 4]);
    assert_eq!(sim.core::<EchoCore>(1, NAME).unwrap().records_at_start, 2);
    // A lazy write that had its time is flushed.
    put(&mut sim, 3, false);
    sim.run_for(2_000).unwrap();
    assert_eq!(keys(&sim), vec![1, 3, 4]);
    assert_eq!((sim.stats.forced_writes, sim.stats.unforced_writes), (2, 1));
    let d = sim.driver_stats(1, NAME).unwrap();
    assert_eq!(
        (d.forced_batches, d.unforced_batches),
        (0, 1),
        "since the restart"
    );
}

#[test]
fn the_monotonic_clock_ignores_wall_clock_steps_and_restarts_from_elsewhere() {
    let mut sim = echo_cluster(4, 2, NetConfig::realistic());
    sim.run_for(4_000_000).unwrap();
    sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 0 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    let before = sim.core::<EchoCore>(1, NAME).unwrap().last_now;
    sim.jump_wall_clock(1, -3_600_000);
    sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 1 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    let after = sim.core::<EchoCore>(1, NAME).unwrap().last_now;
    assert!(after.mono > before.mono, "monotonic time moved on");
    assert!(
        after.wall + 3_000_000 < before.wall,
        "wall time stepped back an hour"
    );
}

fn presence_cluster(seed: u64, n: usize, net: NetConfig) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.net = net;
    ps::with_checks(ps::cluster(cfg, ps::config()))
}

fn probes_sent_by(sim: &Sim, i: usize) -> u64 {
    let me = sim.node_id(i).to_string();
    sim.stats
        .per_link
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{me} -> ")))
        .map(|(_, c)| c.msgs)
        .sum()
}

#[test]
fn presence_detects_a_crash_although_every_wall_clock_jumps_back_an_hour() {
    let mut sim = presence_cluster(5, 5, NetConfig::realistic());
    for i in 1..5 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    sim.crash(3);
    // Wait until someone suspects dave, then step every clock back an hour: suspicion
    // timers and probe rounds run on monotonic time, so the verdict still comes.
    let suspected = ps::run_until(&mut sim, 100, 60_000, |s| {
        (0..5).any(|i| i != 3 && ps::status(s, i, 3) == Some(MemberStatus::Suspect))
    })
    .unwrap();
    assert!(suspected.is_some(), "someone suspects dave");
    for i in 0..5 {
        sim.jump_wall_clock(i, -3_600_000);
    }
    let dead = ps::run_until(&mut sim, 100, 120_000, |s| {
        (0..5)
            .filter(|&i| i != 3)
            .all(|i| ps::status(s, i, 3) == Some(MemberStatus::Dead))
    })
    .unwrap();
    assert!(
        dead.is_some(),
        "every node declared dave dead after the jump"
    );
    // And probing goes on for the live ones.
    let sent = probes_sent_by(&sim, 2);
    sim.run_for(60_000).unwrap();
    assert!(probes_sent_by(&sim, 2) - sent >= 10);
}

#[test]
fn after_a_restart_with_networking_down_nobody_is_suspected_for_it() {
    let mut sim = presence_cluster(6, 5, NetConfig::realistic());
    for i in 1..5 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    sim.crash(3);
    sim.restart(3);
    assert!(
        !sim.networking_up(3),
        "Hyperware: Offline for 15-20 s after a start"
    );
    let suspicions = |sim: &Sim| {
        sim.core::<Presence>(3, "presence")
            .map(|p| p.stats().suspicions_started)
            .unwrap_or(0)
    };
    sim.run_for(25_000).unwrap();
    assert!(sim.networking_up(3));
    let p = sim.core::<Presence>(3, "presence").unwrap();
    assert!(p.spared_verdicts() > 0, "probes did fail during the window");
    assert_eq!(suspicions(&sim), 0, "and nobody was suspected for it");
    sim.run_for(60_000).unwrap();
    for j in 0..5 {
        if j != 3 {
            assert_eq!(
                ps::status(&sim, 3, j),
                Some(MemberStatus::Alive),
                "dave sees {j}"
            );
        }
    }
}

#[test]
fn an_app_that_granted_us_nothing_is_refused_and_one_that_did_gets_events() {
    let mut sim = presence_cluster(7, 3, NetConfig::realistic());
    let rude = ProcessId::parse("rude:app:someone.os").unwrap();
    sim.add_app(0, rude.clone(), AppSpec::granting_nothing());
    let pres = sim.addr(0, "presence");
    let h = sim.request_from(0, rude, &pres, encode(&PresenceRequest::Subscribe {}), 10);
    let granted = ps::subscribe(&mut sim, 0);
    sim.run_for(15_000).unwrap();
    // The kernel refused both the welcome and the error answer (capabilities are checked on
    // responses too), so the app sees a Timeout; presence holds no half subscription and
    // said why in its log.
    assert_eq!(
        sim.outcome(h),
        Some(&AppOutcome::Failed(SendErrorKind::Timeout))
    );
    assert!(sim.stats.capability_refusals >= 2);
    assert!(
        matches!(sim.outcome(granted), Some(AppOutcome::Response(b)) if b.starts_with(br#"{"Ok""#))
    );
    for i in 1..3 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(30_000).unwrap();
    let events = ps::events(&sim, 0);
    assert!(
        events.iter().any(|(k, _)| k == "NodeJoined"),
        "the granting app gets events: {events:?}"
    );
}

#[test]
fn the_clear_grant_error_is_what_presence_answers() {
    // Record the trace to read presence's own words.
    let mut cfg = SimConfig::new(8, 1);
    cfg.record_trace = true;
    let mut sim = ps::cluster(cfg, ps::config());
    let rude = ProcessId::parse("rude:app:someone.os").unwrap();
    sim.add_app(0, rude.clone(), AppSpec::granting_nothing());
    let pres = sim.addr(0, "presence");
    let h = sim.request_from(0, rude, &pres, encode(&PresenceRequest::Subscribe {}), 10);
    sim.run_for(1_000).unwrap();
    let lines = sim.trace.all().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("reply #{h}")) && l.contains("Forbidden")),
        "presence answered Forbidden: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains(r#""grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]"#)),
        "naming the grant it needs"
    );
    assert!(lines.iter().any(|l| l.contains("no capability")));
}

#[test]
fn http_requests_and_websocket_pushes_go_through_the_mapping() {
    let mut sim = echo_cluster(9, 1, NetConfig::realistic());
    sim.websocket(
        0,
        NAME,
        &HttpServerRequest::WebSocketOpen {
            path: "/ws".into(),
            channel_id: 5,
            source_socket_addr: None,
            forwarded_for: None,
        },
        None,
    );
    sim.run_for(10).unwrap();
    let h = sim.http(0, NAME, "POST", "/api/things", b"{\"a\":1}".to_vec());
    sim.run_for(100).unwrap();
    let Some(AppOutcome::Response(head)) = sim.outcome(h) else {
        panic!()
    };
    let head: HttpResponse = serde_json::from_slice(head).unwrap();
    assert_eq!(head.status, 200);
    let body: serde_json::Value = serde_json::from_slice(sim.outcome_blob(h).unwrap()).unwrap();
    assert_eq!(body["path"], "/api/things");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["body_len"], 7);
    let push = sim
        .system_messages
        .iter()
        .find(|(_, to, body, _)| {
            to.process.process == "http-server" && body.starts_with(br#"{"WebSocketPush""#)
        })
        .expect("a push");
    assert_eq!(push.3.as_deref(), Some(&b"POST /api/things"[..]));
    assert!(String::from_utf8_lossy(&push.2).contains("\"channel_id\":5"));
}

#[test]
fn thirty_megabytes_cross_two_nodes_in_chunks_but_not_in_one_message() {
    let mut sim = echo_cluster(10, 2, NetConfig::realistic());
    let alice_blob = sim.addr(0, blob::NAME);
    let len = 30_000_000;
    sim.request(
        0,
        &alice_blob,
        encode(&BlobRequest::Send {
            to: "bob.os".into(),
            len,
        }),
        10,
    );
    sim.run_for(60_000).unwrap();
    let bob = sim.core::<BlobCore>(1, blob::NAME).unwrap();
    assert_eq!(bob.received.len(), 1);
    assert!(bob.received[0].1 == blob::data(len), "the same bytes");
    assert_eq!(sim.stats.oversized, 0);
    // The same data in one message tears the connection down and times out.
    sim.request(
        0,
        &alice_blob,
        encode(&BlobRequest::Whole {
            to: "bob.os".into(),
            len,
        }),
        10,
    );
    sim.run_for(60_000).unwrap();
    assert_eq!(sim.stats.oversized, 1);
    assert_eq!(sim.core::<BlobCore>(0, blob::NAME).unwrap().whole_failed, 1);
    assert_eq!(
        sim.core::<BlobCore>(1, blob::NAME).unwrap().received.len(),
        1
    );
}

#[test]
fn a_new_connection_costs_a_round_trip_and_connections_are_recycled_and_culled() {
    let mut net = NetConfig::realistic();
    net.latency.min_ms = 50;
    net.latency.max_ms = 50;
    net.max_peers = Some(2);
    let mut sim = echo_cluster(11, 4, net);
    let first = sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 1 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    assert_eq!(
        sim.latency_of(first),
        Some(200),
        "setup round trip, then the request and its answer"
    );
    let second = sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 2 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    assert_eq!(sim.latency_of(second), Some(100), "the connection is up");
    // Two more peers: alice keeps two connections; the least recently used idle one goes.
    for j in [2, 3] {
        sim.run_for(10_000).unwrap();
        sim.request(
            0,
            &sim.addr(j, NAME),
            encode(&EchoRequest::Echo { n: 3 }),
            10,
        );
        sim.run_for(1_000).unwrap();
    }
    assert_eq!(sim.stats.culled, 1);
    // bob's connection was the one culled: the next request to bob sets up again.
    let again = sim.request(
        0,
        &sim.addr(1, NAME),
        encode(&EchoRequest::Echo { n: 5 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    assert_eq!(sim.latency_of(again), Some(200));
    // Half an hour later the connection is recycled: a new setup round trip.
    sim.run_for(1_800_000).unwrap();
    let third = sim.request(
        0,
        &sim.addr(3, NAME),
        encode(&EchoRequest::Echo { n: 4 }),
        10,
    );
    sim.run_for(1_000).unwrap();
    assert_eq!(sim.latency_of(third), Some(200));
    assert!(sim.stats.recycled >= 1);
}

#[test]
fn an_app_blocked_on_its_own_subscribe_is_still_subscribed() {
    let mut sim = presence_cluster(12, 1, NetConfig::realistic());
    // The app waits in send_and_await_response (it answers the welcome only 8 s later).
    let busy = ProcessId::parse("busy:app:someone.os").unwrap();
    let mut spec = AppSpec::granting_all();
    spec.answer_after_ms = 8_000;
    sim.add_app(0, busy.clone(), spec);
    let pres = sim.addr(0, "presence");
    let h = sim.request_from(0, busy, &pres, encode(&PresenceRequest::Subscribe {}), 10);
    sim.run_for(12_000).unwrap();
    match sim.outcome(h) {
        Some(AppOutcome::Response(b)) => {
            assert!(b.starts_with(br#"{"Ok""#), "{}", String::from_utf8_lossy(b))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sim.latency_of(h).unwrap() < 10_000,
        "answered before the app gave up"
    );
}
