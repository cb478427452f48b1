//! txcoord as another app uses it: the test package's agent is the resource manager of
//! `kit-kv` on every node; a transaction across the three nodes commits, one in which
//! charlie's manager votes no aborts, and each manager applied the outcome; bad bodies and
//! a missing grant get errors.

use crate::checks;
use crate::harness::{AgentCommand, Ctx, VOTE_NO};
use crate::tester_lib::TestResult;
use crate::{check, fail};
use p2p_common::api::txcoord::{ParticipantSpec, Phase, Role, TxStatus, Vote};
use p2p_common::client::ProcessTransport;
use p2p_common::txcoord::TxClient;

const RESOURCE: &str = "kit-kv";

pub fn run(ctx: &Ctx) -> TestResult {
    bad_bodies(ctx)?;
    committed_and_aborted(ctx)?;
    checks::without_grant(ctx, "txcoord: an app without the grant", "txcoord")
}

fn bad_bodies(ctx: &Ctx) -> TestResult {
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "BadRequest"),
        (br#"{"Status": {"tx_id": "alice.os/01", "full": true}}"#, "BadRequest"),
        (br#"{"Start": {"participants": []}}"#, "BadRequest"),
        (br#"{"Status": {"tx_id": "alice.os/0123"}}"#, "NotFound"),
    ];
    checks::bad_bodies(
        ctx,
        "txcoord: bad bodies get errors",
        "txcoord",
        &cases,
        300 * 1024 + 1,
        br#"{"List": {}}"#,
    )
}

fn outcome_on(ctx: &Ctx, i: usize, tx: &str) -> Result<serde_json::Value, String> {
    ctx.agent(ctx.node(i), &AgentCommand::TxSeen(tx.into()))
}

/// Wait until our coordinator has finished `tx`; its last status.
fn finished(ctx: &Ctx, tx: &str) -> Result<TxStatus, String> {
    let mut client = TxClient::local(&ctx.our_node, ProcessTransport);
    let mut last = Err(String::from("no status yet"));
    ctx.wait_until(90, 1_000, || {
        last = client.status(tx).map_err(|e| e.to_string());
        last.as_ref()
            .is_ok_and(|s| matches!(s.phase, Phase::Committed | Phase::Aborted))
    });
    last
}

fn committed_and_aborted(ctx: &Ctx) -> TestResult {
    const T: &str = "txcoord: a committed transaction";
    for node in &ctx.nodes[..3] {
        if let Err(e) = ctx.agent(node, &AgentCommand::RegisterManager(RESOURCE.into())) {
            fail!(T, "registering the manager on {node}: {e}");
        }
    }
    let specs = |charlie_op: &str| -> Vec<ParticipantSpec> {
        ctx.nodes[..3]
            .iter()
            .enumerate()
            .map(|(i, node)| ParticipantSpec {
                node: node.clone(),
                resource: RESOURCE.into(),
                operation: if i == 2 {
                    charlie_op.into()
                } else {
                    format!("color=blue@{i}")
                },
            })
            .collect()
    };
    let mut client = TxClient::local(&ctx.our_node, ProcessTransport);
    let tx = match client.start(specs("color=blue@2"), Some(20_000)) {
        Ok(t) => t,
        Err(e) => fail!(T, "start: {e}"),
    };
    let s = match finished(ctx, &tx) {
        Ok(s) => s,
        Err(e) => fail!(T, "status of {tx}: {e}"),
    };
    check!(
        T,
        s.phase == Phase::Committed && s.role == Role::Coordinator,
        "{tx} ended {s:?}"
    );
    check!(
        T,
        s.votes.len() == 3
            && s.votes.iter().all(|v| v.vote == Some(Vote::Yes) && v.acked),
        "{tx} votes {:?}",
        s.votes
    );
    for i in 0..3 {
        match outcome_on(ctx, i, &tx) {
            Ok(v) => check!(
                T,
                v["vote"] == "Yes" && v["outcome"] == "Committed",
                "{}'s manager saw {v}",
                ctx.node(i)
            ),
            Err(e) => fail!(T, "{}'s manager: {e}", ctx.node(i)),
        }
    }

    const A: &str = "txcoord: a transaction a participant votes no on aborts";
    let tx = match client.start(specs(VOTE_NO), Some(20_000)) {
        Ok(t) => t,
        Err(e) => fail!(A, "start: {e}"),
    };
    let s = match finished(ctx, &tx) {
        Ok(s) => s,
        Err(e) => fail!(A, "status of {tx}: {e}"),
    };
    check!(
        A,
        s.phase == Phase::Aborted && !s.reason.is_empty(),
        "{tx} ended {s:?}"
    );
    let charlie = ctx.node(2);
    check!(
        A,
        s.votes
            .iter()
            .any(|v| &v.node == charlie && v.vote == Some(Vote::No)),
        "{tx} votes {:?}",
        s.votes
    );
    for i in 0..3 {
        let mut last = Err(String::new());
        // Participants learn the abort as txcoord tells them (a no voter may not be told).
        let ok = ctx.wait_until(30, 1_000, || {
            last = outcome_on(ctx, i, &tx);
            last.as_ref().is_ok_and(|v| {
                if i == 2 {
                    v["vote"] == "No" && v["outcome"] != "Committed"
                } else {
                    v["vote"] == "Yes" && v["outcome"] == "Aborted"
                }
            })
        });
        check!(A, ok, "{}'s manager saw {last:?}", ctx.node(i));
    }
    Ok(())
}
