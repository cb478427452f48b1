//! presence against hostile peers, in the simulator: one test per attack of issue 11 that
//! the older suites (presence_trouble.rs `hostile`, presence/tests/hardening.rs) leave out.
//! Every test runs the real cores; the attacker is a member or a stranger sending what a
//! modified node could send (Hyperware authenticates only the sending node's name).

use p2p_common::api::encode;
use p2p_common::api::presence::{MemberStatus, NodeInfo, Request, Update};
use p2p_common::ProcessId;
use p2p_sim::scenarios::presence as ps;
use p2p_sim::{NetConfig, Sim, SimConfig};
use presence::core::Presence;
use presence::members::MAX_INCARNATION_JUMP;

fn cluster(seed: u64, n: usize) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.net = NetConfig::realistic();
    ps::cluster(cfg, ps::config())
}

fn core(sim: &Sim, i: usize) -> &Presence {
    sim.core::<Presence>(i, "presence").unwrap()
}

/// A cluster of `n` nodes, all joined through node 0 and settled for two minutes.
fn joined(seed: u64, n: usize) -> Sim {
    let mut sim = cluster(seed, n);
    for i in 1..n {
        ps::join(&mut sim, i, 0);
    }
    sim.run_for(120_000).unwrap();
    sim
}

/// Node `from` sends one fire-and-forget `Gossip` carrying `updates` to each of `to`.
fn gossip(sim: &mut Sim, from: usize, to: &[usize], updates: Vec<Update>) {
    let body = encode(&Request::Gossip { updates });
    for &j in to {
        let addr = sim.addr(j, "presence");
        sim.request_from(from, ProcessId::ours("presence"), &addr, body.clone(), 5);
    }
}

/// Defect 1 of the issue-11 review: in one Gossip, a member (mallory, node 4) claims the
/// victim (node 2) is Alive `jump` incarnations above its own and then Dead at that
/// incarnation. Whatever the jump, the victim is Alive everywhere a minute later: either
/// peers refuse the jump, or the victim refutes it. `MAX_INCARNATION_JUMP - 1` is the
/// largest jump peers accept from a relay, so it is the boundary case.
fn jump_then_dead(jump: u64) {
    let mut sim = joined(41, 5);
    let inc = core(&sim, 2).incarnation();
    let victim = sim.node_id(2).clone();
    let mallory = sim.node_id(4).clone();
    let at = inc + jump;
    let alive = Update {
        node: victim.clone(),
        status: MemberStatus::Alive,
        incarnation: at,
        info: None,
        origin: victim.clone(),
    };
    let dead = Update {
        status: MemberStatus::Dead,
        origin: mallory,
        ..alive.clone()
    };
    gossip(&mut sim, 4, &[0, 1, 2, 3], vec![alive, dead]);
    sim.run_for(1_000).unwrap();
    let back = ps::run_until(&mut sim, 250, 60_000, |s| {
        [0usize, 1, 3]
            .iter()
            .all(|&i| ps::status(s, i, 2) == Some(MemberStatus::Alive))
    })
    .unwrap();
    let seen: Vec<_> = [0usize, 1, 3]
        .iter()
        .map(|&i| ps::status(&sim, i, 2))
        .collect();
    assert!(
        back.is_some(),
        "a forged Alive+Dead {jump} above the victim's incarnation {inc}: seen as {seen:?}, \
         victim now at {}",
        core(&sim, 2).incarnation()
    );
    // Nobody believes an incarnation the victim never had.
    let now = core(&sim, 2).incarnation();
    for i in [0usize, 1, 3] {
        let m = core(&sim, i).member(&victim).unwrap();
        assert!(
            m.incarnation <= now,
            "{i} has the victim at {}",
            m.incarnation
        );
    }
}

#[test]
fn a_forged_alive_then_dead_at_the_largest_accepted_jump_does_not_evict_a_live_node() {
    jump_then_dead(MAX_INCARNATION_JUMP - 1);
}

#[test]
fn a_forged_alive_then_dead_at_the_first_refused_jump_does_not_evict_a_live_node() {
    jump_then_dead(MAX_INCARNATION_JUMP);
}

#[test]
fn a_forged_alive_then_dead_one_above_does_not_evict_a_live_node() {
    jump_then_dead(1);
}

/// The forged-info variant of defect 1: a forged Alive at the largest accepted jump carrying
/// capabilities the node never had is refuted by its subject (or refused) everywhere.
fn forged_info(jump: u64) {
    let mut sim = joined(42, 5);
    let inc = core(&sim, 1).incarnation();
    let bob = sim.node_id(1).clone();
    let mut info = NodeInfo::new(bob.clone());
    info.capabilities = vec!["evil".into()];
    let forged = Update {
        node: bob.clone(),
        status: MemberStatus::Alive,
        incarnation: inc + jump,
        info: Some(info),
        origin: bob.clone(),
    };
    gossip(&mut sim, 4, &[0, 1, 2, 3], vec![forged]);
    sim.run_for(60_000).unwrap();
    let believers: Vec<usize> = [0usize, 2, 3]
        .into_iter()
        .filter(|&j| {
            core(&sim, j)
                .member(&bob)
                .unwrap()
                .info
                .capabilities
                .contains(&"evil".to_string())
        })
        .collect();
    assert!(
        believers.is_empty(),
        "forged info {jump} above bob's incarnation {inc} still believed after a minute at \
         {believers:?} (bob now at {})",
        core(&sim, 1).incarnation()
    );
}

#[test]
fn forged_info_at_the_largest_accepted_jump_is_refuted() {
    forged_info(MAX_INCARNATION_JUMP - 1);
}

#[test]
fn forged_info_at_the_first_refused_jump_is_never_believed() {
    forged_info(MAX_INCARNATION_JUMP);
}

/// The answer to the request behind `handle`, as JSON (panics if there is none yet).
fn answer(sim: &Sim, handle: u64) -> serde_json::Value {
    match sim.outcome(handle) {
        Some(p2p_sim::AppOutcome::Response(b)) => serde_json::from_slice(b).unwrap(),
        other => panic!("no answer: {other:?}"),
    }
}

/// Defect 4 of the issue-11 review: a digest exchange cost one per 16 entries against a
/// burst of 200, so the digest of any cluster above about 3,200 members was refused
/// `Overloaded` on every try, for good. An honest digest of 3,301 entries, and one of the
/// largest cluster (`MAX_MEMBERS`), from a member is answered.
#[test]
fn an_honest_digest_of_a_large_cluster_is_served() {
    use p2p_common::api::presence::MAX_MEMBERS;
    let mut sim = joined(43, 3);
    let bob = sim.node_id(1).clone();
    let own = Update {
        node: bob.clone(),
        status: MemberStatus::Alive,
        incarnation: core(&sim, 1).incarnation(),
        info: None,
        origin: bob,
    };
    for entries in [3_301usize, MAX_MEMBERS as usize] {
        let mut members = vec![own.clone()];
        members.extend((1..entries).map(|k| {
            let n = p2p_common::NodeId::parse(&format!("member{k}.os")).unwrap();
            Update {
                node: n.clone(),
                status: MemberStatus::Alive,
                incarnation: 1,
                info: None,
                origin: n,
            }
        }));
        let body = encode(&Request::PushPull {
            members,
            want_info: vec![],
            protocol_version: p2p_common::api::PROTOCOL_VERSION,
        });
        let to = sim.addr(0, "presence");
        let h = sim.request_from(1, ProcessId::ours("presence"), &to, body, 10);
        sim.run_for(3_000).unwrap();
        let a = answer(&sim, h);
        assert!(
            a.get("Ok").and_then(|r| r.get("PushPull")).is_some(),
            "a {entries}-entry digest from a member: {}",
            p2p_sim::sim::preview(a.to_string().as_bytes())
        );
    }
}
