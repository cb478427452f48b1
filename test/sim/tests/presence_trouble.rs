//! presence under honest trouble (a bootstrap down for a day, a node restarting every hour,
//! a node that lost its state), the first hostile-peer suite (forged verdicts, invented
//! nodes; more in `presence_hostile.rs`) and a rolling upgrade (a newer peer).

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

/// Per client node: `RegisterNode` requests the bootstrap (node 0) handled since `since`,
/// until the client first got a `Registered` answer after `since`.
#[derive(Default)]
struct Returning {
    since: Option<u64>,
    sent: std::collections::BTreeMap<usize, u64>,
    registered: std::collections::BTreeSet<usize>,
}

/// [`cluster`] with node 0 as the bootstrap whose returning clients are counted.
fn counted_cluster(seed: u64, n: usize) -> (Sim, std::rc::Rc<std::cell::RefCell<Returning>>) {
    use p2p_common::api::presence::{Request, Response};
    let seen: std::rc::Rc<std::cell::RefCell<Returning>> = Default::default();
    let w = seen.clone();
    let sim = cluster(seed, n).with_delivery_observer(move |s, at, from, to, body| {
        let mut r = w.borrow_mut();
        if r.since.is_none() || to.process != p2p_common::ProcessId::ours(ps::NAME) {
            return;
        }
        let Some(client) = s.node_index(&from.node) else {
            return;
        };
        if at == 0 && client != 0 {
            if let Ok(Request::RegisterNode { .. }) = serde_json::from_slice::<Request>(body) {
                if !r.registered.contains(&client) {
                    *r.sent.entry(client).or_default() += 1;
                }
            }
        }
        if client == 0 && at != 0 {
            if let Ok(Ok(Response::Registered { .. })) =
                serde_json::from_slice::<Result<Response, serde_json::Value>>(body)
            {
                r.registered.insert(at);
            }
        }
    });
    (sim, seen)
}

#[test]
fn a_bootstrap_down_for_a_day_costs_about_one_attempt_per_cap_and_sees_each_client_once_back() {
    let (mut sim, returning) = counted_cluster(21, 6);
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
    // The bootstrap returns: each client registers again, once, not in a storm: from the
    // restart until its first `Registered` answer, the bootstrap handles exactly one
    // `RegisterNode` from each client.
    let per_type = |sim: &Sim| sim.stats.per_type.get("RegisterNode").map_or(0, |c| c.msgs);
    sim.restart(0);
    returning.borrow_mut().since = Some(sim.now());
    let at_restart = per_type(&sim);
    sim.run_for(cap + 60_000).unwrap();
    {
        let r = returning.borrow();
        for i in 1..6 {
            assert!(
                r.registered.contains(&i),
                "{} registered again within the cap and a minute",
                sim.node_id(i)
            );
            assert_eq!(
                r.sent.get(&i).copied().unwrap_or(0),
                1,
                "RegisterNode messages the returning bootstrap handled from {} before it \
                 was registered",
                sim.node_id(i)
            );
        }
    }
    // After that, ordinary renewals only (every 100 s).
    let received = per_type(&sim) - at_restart;
    let renewals_max = 5 * ((cap + 60_000) / 100_000 + 2);
    assert!(received <= renewals_max, "{received} registrations");
}

#[test]
fn a_node_restarting_every_hour_still_forgets_the_dead_after_the_retention_period() {
    // The retention clock is the wall time of the last status change, on disk: a node that
    // restarts more often than the retention period (a day) forgets the dead all the same.
    use p2p_common::api::presence::MemberStatus;
    const HOUR: u64 = 3_600_000;
    let mut sim = cluster(23, 4);
    for i in 1..4 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    let dead = sim.node_id(3).clone();
    sim.crash(3);
    sim.run_for(120_000).unwrap();
    let status = |sim: &Sim| {
        sim.core::<Presence>(0, "presence")
            .unwrap()
            .status_of(&dead)
    };
    assert_eq!(status(&sim), Some(MemberStatus::Dead));
    let died_at = sim.now();
    let mut hours = 0;
    let mut gone_after = None;
    while hours < 48 {
        sim.run_for(HOUR).unwrap();
        hours += 1;
        sim.crash(0);
        sim.restart(0);
        sim.run_for(60_000).unwrap();
        let elapsed = sim.now() - died_at;
        match status(&sim) {
            // Remembered (and still Dead) within the retention period.
            Some(MemberStatus::Dead) => assert!(
                elapsed <= DAY + HOUR + 120_000,
                "still there {} h after its death",
                elapsed / HOUR
            ),
            None => {
                gone_after.get_or_insert(elapsed);
            }
            other => panic!("{dead} is {other:?} after {hours} h"),
        }
        if gone_after.is_some() {
            assert_eq!(status(&sim), None, "forgotten for good");
        }
    }
    let gone_after = gone_after.expect("the dead node was never forgotten");
    assert!(
        gone_after >= DAY,
        "forgotten after {} h, before the retention period",
        gone_after / HOUR
    );
}

/// Honest trouble: a node loses its state (reinstall, cleared state, a format change) and
/// comes back at incarnation 1 while its peers hold it Dead at a higher one. It learns the
/// verdict about itself, moves past it, and is Alive everywhere again within a few periods.
#[test]
fn a_node_that_lost_its_state_is_alive_everywhere_again() {
    use p2p_common::api::presence::MemberStatus;
    let mut sim = cluster(24, 5);
    for i in 1..5 {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    // Restarts raise bob's incarnation, so the one his peers remember is well above 1.
    for _ in 0..3 {
        sim.crash(1);
        sim.restart(1);
        sim.run_for(30_000).unwrap();
    }
    let before = sim.core::<Presence>(1, "presence").unwrap().incarnation();
    assert!(before > 2, "bob at incarnation {before}");
    sim.crash(1);
    ps::run_until(&mut sim, 500, 120_000, |s| {
        [0usize, 2, 3, 4]
            .iter()
            .all(|&i| ps::status(s, i, 1) == Some(MemberStatus::Dead))
    })
    .unwrap()
    .expect("bob is declared dead");
    sim.wipe_records(1, "presence");
    sim.restart(1);
    assert!(
        sim.core::<Presence>(1, "presence").unwrap().incarnation() < before,
        "the wiped node starts over"
    );
    ps::join(&mut sim, 1, 0);
    let period = ps::config().probe_interval_ms;
    let back = ps::run_until(&mut sim, 250, 15 * period, |s| {
        [0usize, 2, 3, 4]
            .iter()
            .all(|&i| ps::status(s, i, 1) == Some(MemberStatus::Alive))
    })
    .unwrap();
    let after = sim.core::<Presence>(1, "presence").unwrap().incarnation();
    assert!(
        back.is_some(),
        "bob (incarnation {before} before, {after} after the wipe) is Alive everywhere within \
         15 periods: {:?}",
        [0usize, 2, 3, 4].map(|i| ps::status(&sim, i, 1))
    );
    assert!(
        after > before,
        "bob moved past the verdict: {after} > {before}"
    );
}

mod hostile {
    use super::cluster;
    use p2p_common::api::encode;
    use p2p_common::api::presence::{MemberStatus, Request, Update};
    use p2p_common::ProcessId;
    use p2p_sim::scenarios::presence as ps;
    use presence::core::Presence;

    /// mallory (node 4) sends every other node a fire-and-forget Gossip claiming `victim` is
    /// `status` one incarnation above what the victim said.
    fn forge(sim: &mut p2p_sim::Sim, victim: usize, status: MemberStatus) {
        let inc = sim
            .core::<Presence>(victim, "presence")
            .unwrap()
            .incarnation();
        let fact = Update {
            node: sim.node_id(victim).clone(),
            status,
            incarnation: inc + 1,
            info: None,
            origin: sim.node_id(4).clone(),
        };
        let body = encode(&Request::Gossip {
            updates: vec![fact],
        });
        for j in 0..4 {
            let to = sim.addr(j, "presence");
            sim.request_from(4, ProcessId::ours("presence"), &to, body.clone(), 5);
        }
    }

    #[test]
    fn a_forged_verdict_one_above_the_victims_incarnation_is_refuted_within_a_few_periods() {
        for status in [
            MemberStatus::Dead,
            MemberStatus::Left,
            MemberStatus::Suspect,
        ] {
            let mut sim = cluster(31, 5);
            for i in 1..5 {
                ps::join(&mut sim, i, 0);
            }
            sim.run_for(120_000).unwrap();
            forge(&mut sim, 2, status);
            sim.run_for(1_000).unwrap();
            let back = ps::run_until(&mut sim, 250, 10 * 6_000, |s| {
                (0..4)
                    .filter(|&i| i != 2)
                    .all(|i| ps::status(s, i, 2) == Some(MemberStatus::Alive))
            })
            .unwrap();
            assert!(
                back.is_some(),
                "after a forged {status:?}, charlie is Alive everywhere within 10 periods"
            );
        }
    }

    #[test]
    fn a_stranger_cannot_fill_our_member_table_with_invented_nodes() {
        let mut sim = cluster(33, 5);
        // alice, bob, charlie, dave form the cluster; node 4 (eve) never joins: a stranger.
        for i in 1..4 {
            ps::join(&mut sim, i, 0);
        }
        sim.run_for(60_000).unwrap();
        assert_eq!(
            sim.core::<Presence>(0, "presence")
                .unwrap()
                .members()
                .count(),
            3
        );
        let fake = |k: usize| p2p_common::NodeId::parse(&format!("fake{k}.os")).unwrap();
        let fakes: Vec<Update> = (0..3_000)
            .map(|k| Update {
                node: fake(k),
                status: MemberStatus::Alive,
                incarnation: 1,
                info: None,
                origin: fake(k),
            })
            .collect();
        let to = sim.addr(0, "presence");
        for chunk in fakes.chunks(500) {
            let gossip = encode(&Request::Gossip {
                updates: chunk.to_vec(),
            });
            sim.request_from(4, ProcessId::ours("presence"), &to, gossip, 5);
            let push_pull = encode(&Request::PushPull {
                members: chunk.to_vec(),
                want_info: vec![],
                protocol_version: p2p_common::api::PROTOCOL_VERSION,
            });
            sim.request_from(4, ProcessId::ours("presence"), &to, push_pull, 5);
        }
        sim.run_for(60_000).unwrap();
        let p = sim.core::<Presence>(0, "presence").unwrap();
        assert_eq!(p.members().count(), 3, "no invented node admitted");
        // A real joiner is still admitted everywhere.
        ps::join(&mut sim, 4, 0);
        sim.run_for(60_000).unwrap();
        for i in 0..4 {
            assert_eq!(
                ps::status(&sim, i, 4),
                Some(MemberStatus::Alive),
                "{i} sees eve"
            );
        }
    }

    /// Fire-and-forget `Gossip` and `PushPull` from `from` to node 0, naming `fakes`.
    fn name_fakes(sim: &mut p2p_sim::Sim, from: usize, fakes: &[Update]) {
        let to = sim.addr(0, "presence");
        for chunk in fakes.chunks(500) {
            let gossip = encode(&Request::Gossip {
                updates: chunk.to_vec(),
            });
            sim.request_from(from, ProcessId::ours("presence"), &to, gossip, 5);
            let push_pull = encode(&Request::PushPull {
                members: chunk.to_vec(),
                want_info: vec![],
                protocol_version: p2p_common::api::PROTOCOL_VERSION,
            });
            sim.request_from(from, ProcessId::ours("presence"), &to, push_pull, 5);
        }
    }

    fn invented(prefix: &str, n: usize, origin: &p2p_common::NodeId) -> Vec<Update> {
        (0..n)
            .map(|k| Update {
                node: p2p_common::NodeId::parse(&format!("{prefix}{k}.os")).unwrap(),
                status: MemberStatus::Alive,
                incarnation: 1,
                info: None,
                origin: origin.clone(),
            })
            .collect()
    }

    /// Admission on direct evidence: what a member (or a stranger) relays about 10,000
    /// nodes that never spoke to us admits none of them. A member's names become candidates
    /// (a bounded table) and cost bounded probes (a burst, then a trickle per relaying node);
    /// a stranger's cost nothing. A real joiner, named by the same relays, is admitted.
    #[test]
    fn ten_thousand_invented_nodes_named_by_a_member_or_a_stranger_fill_no_table() {
        use presence::candidates::{BURST, CAPACITY, PER_SECOND};
        let mut sim = cluster(35, 6);
        // alice (0) is the bootstrap; bob, charlie, dave and mallory (4) join; frank (5) is
        // a stranger and joins only at the end.
        for i in 1..5 {
            ps::join(&mut sim, i, 0);
        }
        sim.run_for(60_000).unwrap();
        fn core(sim: &p2p_sim::Sim) -> &Presence {
            sim.core::<Presence>(0, "presence").unwrap()
        }
        assert_eq!(core(&sim).members().count(), 4);
        let probed0 = core(&sim).candidate_stats().probed;
        // The stranger: nothing it names is even probed.
        let frank = sim.node_id(5).clone();
        name_fakes(&mut sim, 5, &invented("stranger", 10_000, &frank));
        sim.run_for(10_000).unwrap();
        assert_eq!(
            core(&sim).members().count(),
            4,
            "a stranger admitted nobody"
        );
        assert_eq!(core(&sim).candidate_stats().probed, probed0);
        assert_eq!(core(&sim).candidates(), 0);
        // The member: 10,000 names at once, then 30 more messages of 500, one a second.
        let mallory = sim.node_id(4).clone();
        let fakes = invented("fake", 25_000, &mallory);
        name_fakes(&mut sim, 4, &fakes[..10_000]);
        for s in 0..30 {
            sim.run_for(1_000).unwrap();
            let at = 10_000 + s * 500;
            name_fakes(&mut sim, 4, &fakes[at..at + 500]);
        }
        sim.run_for(30_000).unwrap();
        let p = core(&sim);
        assert_eq!(p.members().count(), 4, "no invented node admitted");
        for i in 1..4 {
            let m = sim.core::<Presence>(i, "presence").unwrap();
            assert_eq!(m.members().count(), 4, "node {i} admitted no invented node");
        }
        assert!(p.candidates() <= CAPACITY);
        let probed = p.candidate_stats().probed - probed0;
        // Over about 61 s: the burst plus the trickle (and each name at most once, unless a
        // name comes back after its retry time).
        let bound = u64::from(BURST) + u64::from(PER_SECOND) * 62;
        assert!(
            probed > 0 && probed <= bound,
            "{probed} probes of invented nodes, bound {bound}"
        );
        assert!(
            p.candidate_stats().refused > 1_000,
            "{:?}",
            p.candidate_stats()
        );
        // A real joiner is still admitted everywhere (named to most of them by relays).
        ps::join(&mut sim, 5, 0);
        sim.run_for(60_000).unwrap();
        for i in 0..5 {
            assert_eq!(
                ps::status(&sim, i, 5),
                Some(MemberStatus::Alive),
                "{i} sees frank"
            );
        }
    }

    #[test]
    fn a_forged_alive_claim_with_foreign_info_is_refuted_by_its_subject() {
        let mut sim = cluster(34, 5);
        for i in 1..5 {
            ps::join(&mut sim, i, 0);
        }
        sim.run_for(120_000).unwrap();
        let inc = sim.core::<Presence>(1, "presence").unwrap().incarnation();
        let mut info = p2p_common::api::presence::NodeInfo::new(sim.node_id(1).clone());
        info.capabilities = vec!["evil".into()];
        let forged = Update {
            node: sim.node_id(1).clone(),
            status: MemberStatus::Alive,
            incarnation: inc + 100,
            info: Some(info),
            origin: sim.node_id(1).clone(),
        };
        let body = encode(&Request::Gossip {
            updates: vec![forged],
        });
        // eve (node 4, a member) relays the forgery to everyone, bob included.
        for j in 0..4 {
            let to = sim.addr(j, "presence");
            sim.request_from(4, ProcessId::ours("presence"), &to, body.clone(), 5);
        }
        sim.run_for(60_000).unwrap();
        let bob_now = sim.core::<Presence>(1, "presence").unwrap().incarnation();
        assert!(bob_now > inc + 100, "bob moved past the forged claim");
        for j in [0usize, 2, 3] {
            let m = sim.core::<Presence>(j, "presence").unwrap();
            let b = m.member(sim.node_id(1)).unwrap();
            assert_eq!(b.incarnation, bob_now, "{j} follows bob's refutation");
            assert!(!b.info.capabilities.contains(&"evil".to_string()));
        }
    }
}

/// A rolling upgrade: one node runs a "newer" presence. It is a real core whose every
/// message to other presence processes and every answer is rewritten as a newer version
/// would write it: `protocol_version` 2, fields we do not know at every level, facts with a
/// status we do not know, an answer variant we do not know to every other probe, and a
/// request variant we do not know beside every gossip. It registers as version 2 too: an
/// older bootstrap accepts a newer registration (docs/api.md).
mod newer_peer {
    use p2p_common::api::presence::{MemberStatus, PresenceStats};
    use p2p_common::{Effect, Input, NodeId, Now, Service};
    use p2p_sim::{factory, NetConfig, Sim, SimConfig};
    use presence::core::{Ctx, Presence, Tick};
    use serde_json::{json, Value};

    /// presence, rewritten as a newer version when `newer`.
    struct MaybeNewer {
        core: Presence,
        newer: bool,
    }

    /// Unknown fields at every level, facts of an unknown status, a newer version.
    fn newer(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("protocol_version") {
                    m.insert("protocol_version".into(), json!(2));
                }
                for key in ["updates", "members", "nodes"] {
                    if let Some(Value::Array(a)) = m.get_mut(key) {
                        a.push(json!({"node": "zed.os", "status": "Hibernating",
                            "incarnation": 1, "origin": "zed.os", "lease_ms": 9}));
                    }
                }
                for (_, x) in m.iter_mut() {
                    newer(x);
                }
                m.insert("trace".into(), json!({"id": "x", "hops": [1, 2]}));
            }
            Value::Array(a) => a.iter_mut().for_each(newer),
            _ => {}
        }
    }

    /// The payload of an externally tagged variant (`{"Probe": {...}}`, and the variant in
    /// an answer's `{"Ok": {...}}`) gets the newer fields; the tags stay as they are.
    fn variant(v: &mut Value) {
        if let Value::Object(m) = v {
            if m.len() == 1 {
                let (tag, inner) = m.iter_mut().next().unwrap();
                if tag == "Ok" {
                    variant(inner);
                } else if tag != "Err" {
                    newer(inner);
                }
            }
        }
    }

    fn rewrite(body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                variant(&mut v);
                serde_json::to_vec(&v).unwrap()
            }
            Err(_) => body.to_vec(),
        }
    }

    impl Service for MaybeNewer {
        type Ctx = Ctx;
        type Timer = Tick;
        fn name(&self) -> &'static str {
            self.core.name()
        }
        fn handle(&mut self, now: Now, input: Input<Ctx, Tick>) -> Vec<Effect<Ctx, Tick>> {
            let effects = self.core.handle(now, input);
            if !self.newer {
                return effects;
            }
            let mut out = Vec::new();
            let mut acks = 0u64;
            for e in effects {
                match e {
                    Effect::Send {
                        to,
                        body,
                        blob,
                        expect,
                    } if to.process.process == "presence" => {
                        if body.starts_with(br#"{"Gossip""#) {
                            out.push(Effect::Send {
                                to: to.clone(),
                                body: br#"{"Handshake": {"protocol_version": 2, "features": ["merkle"]}}"#.to_vec(),
                                blob: None,
                                expect: None,
                            });
                        }
                        out.push(Effect::Send {
                            to,
                            body: rewrite(&body),
                            blob,
                            expect,
                        });
                    }
                    Effect::Reply { id, body, blob } => {
                        let mut body = rewrite(&body);
                        // Every other ack comes back as an answer we cannot read.
                        let text = String::from_utf8_lossy(&body).to_string();
                        if text.starts_with(r#"{"Ok":{"Ack""#) {
                            acks += 1;
                            if (now.mono / 1000 + acks) % 2 == 0 {
                                body = text
                                    .replacen(r#"{"Ok":{"Ack""#, r#"{"Ok":{"AckV2""#, 1)
                                    .into_bytes();
                            }
                        }
                        out.push(Effect::Reply { id, body, blob });
                    }
                    e => out.push(e),
                }
            }
            out
        }
    }

    fn core(sim: &Sim, i: usize) -> &Presence {
        &sim.core::<MaybeNewer>(i, "presence").unwrap().core
    }

    fn run(net: NetConfig, seed: u64) -> Vec<PresenceStats> {
        const N: usize = 8;
        let mut cfg = SimConfig::new(seed, N);
        cfg.net = net;
        let newer_id = p2p_sim::sim::node_name(N - 1);
        let mut sim = Sim::new(cfg).with_process(
            "presence",
            factory(move |a| MaybeNewer {
                newer: a.node == newer_id,
                core: Presence::new(a, p2p_sim::scenarios::presence::config()),
            }),
        );
        for i in 1..N {
            p2p_sim::scenarios::presence::join(&mut sim, i, 0);
        }
        sim.run_for(15 * 60_000).unwrap();
        let newer = sim.node_id(N - 1).clone();
        for i in 0..N {
            for j in 0..N {
                if i != j {
                    assert_eq!(
                        core(&sim, i).status_of(sim.node_id(j)),
                        Some(MemberStatus::Alive),
                        "{} sees {}",
                        sim.node_id(i),
                        sim.node_id(j)
                    );
                }
            }
            let zed = NodeId::parse("zed.os").unwrap();
            assert_eq!(core(&sim, i).status_of(&zed), None, "a fact we cannot read");
        }
        assert_eq!(
            core(&sim, 0).stats().registrations,
            N as u64 - 1,
            "every joiner, the newer one (version 2) included, is registered at the bootstrap"
        );
        assert!(
            core(&sim, 0).member(&newer).unwrap().incarnation <= 2,
            "the newer node had no claim to refute"
        );
        (0..N).map(|i| core(&sim, i).stats()).collect()
    }

    #[test]
    fn a_newer_peer_is_neither_refused_nor_declared_dead() {
        let stats = run(NetConfig::realistic(), 31);
        for s in &stats {
            assert_eq!((s.suspicions_started, s.dead_declared), (0, 0), "{s:?}");
        }
    }

    #[test]
    fn a_newer_peer_is_not_declared_dead_under_loss_either() {
        let stats = run(NetConfig::hostile(0.05, 0.01), 32);
        for s in &stats {
            assert_eq!(s.dead_declared, 0, "{s:?}");
        }
    }
}
