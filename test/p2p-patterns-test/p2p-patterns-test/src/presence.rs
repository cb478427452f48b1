//! presence as another app uses it: every node answers; bad bodies and a remote caller of a
//! local-only operation get clear errors; bob and charlie join through alice and everyone
//! sees everyone; charlie leaves and alice sees it; an app that granted nothing gets the
//! documented LocalTimeout.

use crate::harness::{AgentCommand, Ctx};
use crate::tester_lib::TestResult;
use crate::{check, fail};
use p2p_common::api::presence::MemberStatus;
use p2p_common::client::ClientError;

pub fn run(ctx: &Ctx) -> TestResult {
    check!(
        "presence",
        ctx.nodes.len() >= 3,
        "needs three nodes, got {:?}",
        ctx.nodes
    );
    every_node_answers(ctx)?;
    bad_bodies_get_errors(ctx)?;
    discovery_and_a_node_leaving(ctx)?;
    an_app_without_grants(ctx)?;
    Ok(())
}

fn every_node_answers(ctx: &Ctx) -> TestResult {
    const T: &str = "presence: every node answers Ping";
    match ctx.presence().ping() {
        Ok(p) => check!(T, p.node == ctx.our_node.as_str(), "pong from {}", p.node),
        Err(e) => fail!(T, "our presence: {e}"),
    }
    // Networking may still be coming up (15-20 s after a node starts).
    for node in &ctx.nodes[1..] {
        let mut last = None;
        let ok = ctx.wait_until(60, 2_000, || match ctx.base(node, "presence").ping() {
            Ok(p) => p.node == node.as_str(),
            Err(e) => {
                last = Some(e);
                false
            }
        });
        check!(T, ok, "{node}'s presence never answered: {last:?}");
    }
    Ok(())
}

fn bad_bodies_get_errors(ctx: &Ctx) -> TestResult {
    const T: &str = "presence: bad bodies get errors";
    let us = &ctx.our_node;
    let cases: [(&[u8], &str); 4] = [
        (br#"{"Dance": {}}"#, "BadRequest"),
        (b"not json", "BadRequest"),
        (br#"{"Ping": {"x": 1}}"#, "BadRequest"),
        (br#"{"Join": {"bootstrap": ["Not A Node"]}}"#, "BadRequest"),
    ];
    for (body, code) in cases {
        match ctx.raw(us, "presence", body.to_vec(), 5) {
            Ok(v) => check!(
                T,
                v["Err"]["code"] == code
                    && v["Err"]["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{} answered {v}",
                String::from_utf8_lossy(body)
            ),
            Err(e) => fail!(T, "{} got no answer: {e:?}", String::from_utf8_lossy(body)),
        }
    }
    // Larger than presence takes (4 MiB).
    let mut big = br#"{"Ping": {}}"#.to_vec();
    big.resize(5 << 20, b' ');
    match ctx.raw(us, "presence", big, 10) {
        Ok(v) => check!(T, v["Err"]["code"] == "TooLarge", "5 MiB answered {v}"),
        Err(e) => fail!(T, "5 MiB got no answer: {e:?}"),
    }
    // A local-only operation from another node.
    const R: &str = "presence: a remote caller of a local-only operation is refused";
    let bob = ctx.node(1);
    match ctx.raw(bob, "presence", br#"{"Leave": {}}"#.to_vec(), 10) {
        Ok(v) => check!(R, v["Err"]["code"] == "Forbidden", "{bob} answered {v}"),
        Err(e) => fail!(R, "{bob} did not answer: {e:?}"),
    }
    Ok(())
}

fn status_on_us(ctx: &Ctx, of: &p2p_common::NodeId) -> Option<MemberStatus> {
    ctx.presence().get_node(of).ok().map(|v| v.status)
}

fn discovery_and_a_node_leaving(ctx: &Ctx) -> TestResult {
    const T: &str = "presence: discovery";
    let (us, bob, charlie) = (ctx.node(0), ctx.node(1), ctx.node(2));
    for node in [bob, charlie] {
        // The agent is there once its node's networking is up.
        let mut last = String::new();
        let joined = ctx.wait_until(60, 2_000, || {
            match ctx.agent(node, &AgentCommand::Join(vec![us.clone()])) {
                Ok(_) => true,
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        check!(T, joined, "{node} could not join through {us}: {last}");
    }
    let all_alive = || {
        [bob, charlie]
            .iter()
            .all(|n| status_on_us(ctx, n) == Some(MemberStatus::Alive))
    };
    check!(
        T,
        ctx.wait_until(180, 2_000, all_alive),
        "{us} never saw {bob} and {charlie} Alive"
    );
    // bob sees both others too.
    let mut seen = serde_json::Value::Null;
    let bob_sees_all = ctx.wait_until(120, 2_000, || {
        match ctx.agent(bob, &AgentCommand::Members) {
            Ok(v) => {
                seen = v.clone();
                [us, charlie].iter().all(|n| {
                    v.as_array()
                        .is_some_and(|a| a.iter().any(|p| p[0] == n.as_str() && p[1] == "Alive"))
                })
            }
            Err(_) => false,
        }
    });
    check!(T, bob_sees_all, "{bob} sees {seen}");

    const L: &str = "presence: a node going away";
    if let Err(e) = ctx.agent(charlie, &AgentCommand::Leave) {
        fail!(L, "{charlie} could not leave: {e}");
    }
    let left = ctx.wait_until(120, 2_000, || {
        status_on_us(ctx, charlie) == Some(MemberStatus::Left)
    });
    check!(
        L,
        left,
        "{us} sees {charlie} as {:?}, not Left",
        status_on_us(ctx, charlie)
    );
    check!(
        L,
        status_on_us(ctx, bob) == Some(MemberStatus::Alive),
        "{bob} is no longer Alive"
    );
    Ok(())
}

fn an_app_without_grants(ctx: &Ctx) -> TestResult {
    const T: &str = "presence: an app without the grants gets the documented error";
    match ctx.call_without_grants("presence") {
        Ok(said) => check!(
            T,
            said.starts_with("LocalTimeout")
                && said.contains(
                    "\"grant_capabilities\": [\"presence:p2p-patterns:p2p-patterns.os\"]"
                ),
            "the child's client said {said}"
        ),
        Err(e) => fail!(T, "{e}"),
    }
    // The same call from us, who granted presence, is answered.
    if let Err(e) = ctx.presence().ping() {
        let _: &ClientError = &e;
        fail!(T, "with the grant: {e}");
    }
    Ok(())
}
