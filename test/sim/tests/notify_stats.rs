//! notify's liveness counters as an app reads them in `Stats` (review 13e): the state of
//! notify's subscription to presence, the deaths presence reported that our `Ping` check
//! disproved or confirmed, the subscriber nodes whose retries pause, the early attempts
//! a `Resume` bought, and the gaps in presence's event numbers.

use notify::core::{Config, Notify};
use p2p_common::api::encode;
use p2p_common::api::notify::{PresenceSubscription, Request};
use p2p_common::api::presence::{EventKind, PresenceEvent, SubscriberMessage};
use p2p_common::ProcessId;
use p2p_sim::scenarios::notify::{call, cluster, gossip_dead, setup, stats, NAME};
use p2p_sim::{factory, Mode, NetConfig, Sim, SimConfig};

/// Four nodes, alice's topic with bob (1), charlie (2) and dave (3) subscribed. Gossip that
/// charlie is dead is disproved by our Ping (`hearsay_ignored`, nobody paused); bob's
/// crash is confirmed (`deaths_taken`, `paused_nodes` 1 while he is down, 0 once
/// presence has him back); a presence event numbered past the last one is a gap; every
/// counter in `Stats` is the core's own.
#[test]
fn stats_show_notifys_liveness() {
    let mut cfg = SimConfig::new(3, 4);
    cfg.net = NetConfig::for_mode(Mode::Realistic);
    let mut s = cluster(cfg, Config::default());
    setup(&mut s, &[1, 2, 3]).unwrap();
    s.run_for(10_000).unwrap();
    let st = stats(&mut s);
    assert_eq!(st.presence, PresenceSubscription::Subscribed);
    assert_eq!(
        (st.hearsay_ignored, st.deaths_taken, st.paused_nodes),
        (0, 0, 0)
    );
    assert_eq!(st.presence_gaps, 0);

    // Hearsay: dave's presence says charlie is dead; charlie answers our Ping.
    let charlie = s.node_id(2).clone();
    gossip_dead(&mut s, 3, &charlie);
    s.run_for(20_000).unwrap();
    let st = stats(&mut s);
    assert!(st.hearsay_ignored >= 1, "{st:?}");
    assert_eq!((st.deaths_taken, st.paused_nodes), (0, 0), "{st:?}");

    // bob crashes (with two notifications for him on the way): presence reports it, our
    // Pings fail, the death is taken.
    s.crash(1);
    for k in 0..2 {
        let req = Request::Publish {
            topic: p2p_sim::scenarios::notify::TOPIC.into(),
            kind: p2p_common::api::notify::PayloadKind::Json,
        };
        call(
            &mut s,
            0,
            &req,
            Some(p2p_sim::scenarios::notify::payload(k)),
        );
        s.run_for(500).unwrap();
    }
    let mut down = None;
    for _ in 0..60 {
        s.run_for(2_000).unwrap();
        let st = stats(&mut s);
        if st.paused_nodes == 1 {
            down = Some(st);
            break;
        }
    }
    let st = down.expect("bob's death taken within 120 s");
    assert_eq!(st.deaths_taken, 1, "{st:?}");

    // A presence event numbered far past the last: events were missed.
    let to = s.addr(0, NAME);
    let ev = SubscriberMessage::PresenceEvent(PresenceEvent {
        kind: EventKind::NodeAlive,
        node: s.node_id(3).clone(),
        incarnation: 99,
        at: 0,
        seq: 1_000_000,
        info: None,
    });
    s.notify_from(0, ProcessId::ours("presence"), &to, encode(&ev));
    s.run_for(100).unwrap();
    assert_eq!(stats(&mut s).presence_gaps, 1);

    // bob is back: presence says so, his retries no longer pause.
    s.restart(1);
    s.run_for(60_000).unwrap();
    let st = stats(&mut s);
    assert_eq!(st.paused_nodes, 0, "{st:?}");
    let n = s.core::<Notify>(0, NAME).unwrap();
    assert_eq!(st.hearsay_ignored, n.hearsay_ignored);
    assert_eq!(st.deaths_taken, n.deaths_taken);
    assert_eq!(st.early_sends, n.outbox().early_sent);
    println!("{st:?}");
}

/// Without presence on the node, notify keeps asking (`Waiting` between tries) and its
/// liveness counters stay at 0.
#[test]
fn without_presence_stats_say_waiting() {
    let mut s = Sim::new(SimConfig::new(1, 1))
        .with_process(NAME, factory(|a| Notify::new(a, Config::default())));
    s.run_for(30_000).unwrap();
    let st = stats(&mut s);
    assert_eq!(st.presence, PresenceSubscription::Waiting);
    assert_eq!(
        (
            st.hearsay_ignored,
            st.deaths_taken,
            st.paused_nodes,
            st.presence_gaps
        ),
        (0, 0, 0, 0)
    );
}

/// A subscriber back from a crash `Resume`s while we back off from it: its word buys an
/// early attempt, and `Stats.early_sends` counts it (no presence here, so nothing else
/// ends the backoff early).
#[test]
fn a_resume_while_backing_off_counts_an_early_send() {
    let mut cfg = SimConfig::new(2, 2);
    cfg.net = NetConfig::for_mode(Mode::Realistic);
    let mut s = Sim::new(cfg).with_process(NAME, factory(|a| Notify::new(a, Config::default())));
    setup(&mut s, &[1]).unwrap();
    s.run_for(5_000).unwrap();
    s.crash(1);
    let req = Request::Publish {
        topic: p2p_sim::scenarios::notify::TOPIC.into(),
        kind: p2p_common::api::notify::PayloadKind::Json,
    };
    call(
        &mut s,
        0,
        &req,
        Some(p2p_sim::scenarios::notify::payload(0)),
    );
    // Long enough for the backoff to reach its 30 s cap.
    s.run_for(180_000).unwrap();
    assert_eq!(stats(&mut s).early_sends, 0);
    s.restart(1);
    s.run_for(40_000).unwrap();
    let st = stats(&mut s);
    assert_eq!(st.early_sends, 1, "{st:?}");
    assert_eq!(st.presence, PresenceSubscription::Waiting);
}
