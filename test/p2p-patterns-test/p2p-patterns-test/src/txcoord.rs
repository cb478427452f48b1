//! txcoord as another app uses it: the test package's agent is the resource manager of
//! `kit-kv` on every node, and on alice it also starts the transactions and receives their
//! decision events; a transaction across the three nodes commits, one in which charlie's
//! manager votes no aborts with a reason, each manager applied the outcome, and Status on
//! the coordinator agrees; bad bodies and a missing grant get errors.

use crate::checks;
use crate::harness::{AgentCommand, Ctx, VOTE_NO};
use crate::tester_lib::TestResult;
use crate::{check, fail};
use p2p_common::api::txcoord::{
    AppEvent, Coordinators, Outcome, ParticipantSpec, Phase, Role, Vote, VoteView,
};
use p2p_common::api::ErrorCode;
use p2p_common::client::{ClientError, ProcessTransport};
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
        (
            br#"{"Status": {"tx_id": "alice.os/01", "full": true}}"#,
            "BadRequest",
        ),
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

/// The decision event our txcoord sent the agent on our node, which started `tx`, within
/// `max_s`: `(outcome, votes, reason)`. (The test itself must not receive requests: its
/// answer to the tester goes to the request that prompted it last.)
fn decision(ctx: &Ctx, tx: &str, max_s: u64) -> Result<(Outcome, Vec<VoteView>, String), String> {
    let mut last = Ok(serde_json::Value::Null);
    ctx.wait_until(max_s, 1_000, || {
        last = ctx.agent(&ctx.our_node, &AgentCommand::TxDecision(tx.into()));
        last.as_ref().is_ok_and(|v| !v.is_null())
    });
    let v = last?;
    if v.is_null() {
        return Err(format!("no TxDecided event for {tx} within {max_s} s"));
    }
    match serde_json::from_value::<AppEvent>(v.clone()) {
        Ok(AppEvent::TxDecided {
            outcome,
            votes,
            reason,
            ..
        }) => Ok((outcome, votes, reason)),
        Err(e) => Err(format!("{v} is no AppEvent: {e}")),
    }
}

/// Start `participants` from the agent on our node; the tx id.
fn start(ctx: &Ctx, participants: Vec<ParticipantSpec>) -> Result<String, String> {
    let cmd = AgentCommand::TxStart {
        participants,
        timeout_ms: Some(20_000),
    };
    let v = ctx.agent(&ctx.our_node, &cmd)?;
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("started {v}"))
}

/// What our coordinator's `Status` says of finished `tx`: its phase (`Aborted` also for
/// `NotFound`, which is presumed abort once the coordinator forgot it).
fn phase_of(ctx: &Ctx, tx: &str) -> Result<Phase, String> {
    match TxClient::local(&ctx.our_node, ProcessTransport).status(tx) {
        Ok(s) if s.role == Role::Coordinator => Ok(s.phase),
        Ok(s) => Err(format!("{tx}: {s:?}")),
        Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound => Ok(Phase::Aborted),
        Err(e) => Err(format!("{tx}: {e}")),
    }
}

fn committed_and_aborted(ctx: &Ctx) -> TestResult {
    const T: &str = "txcoord: a committed transaction";
    // Every manager takes part in the transactions our node (alice) coordinates.
    let ours = Coordinators::Only(vec![ctx.our_node.clone()]);
    for node in &ctx.nodes[..3] {
        let cmd = AgentCommand::RegisterManager(RESOURCE.into(), Some(ours.clone()));
        if let Err(e) = ctx.agent(node, &cmd) {
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
    let tx = match start(ctx, specs("color=blue@2")) {
        Ok(t) => t,
        Err(e) => fail!(T, "start: {e}"),
    };
    let (outcome, votes, _) = match decision(ctx, &tx, 90) {
        Ok(d) => d,
        Err(e) => fail!(T, "{e}"),
    };
    check!(T, outcome == Outcome::Committed, "{tx} decided {outcome:?}");
    check!(
        T,
        votes.len() == 3 && votes.iter().all(|v| v.vote == Some(Vote::Yes)),
        "{tx} votes {votes:?}"
    );
    // Finished once every participant acknowledged.
    let mut phase = Err(String::new());
    let done = ctx.wait_until(60, 1_000, || {
        phase = phase_of(ctx, &tx);
        phase == Ok(Phase::Committed)
    });
    check!(T, done, "{tx} is {phase:?} on its coordinator");
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
    let tx = match start(ctx, specs(VOTE_NO)) {
        Ok(t) => t,
        Err(e) => fail!(A, "start: {e}"),
    };
    let (outcome, votes, reason) = match decision(ctx, &tx, 90) {
        Ok(d) => d,
        Err(e) => fail!(A, "{e}"),
    };
    check!(
        A,
        outcome == Outcome::Aborted && !reason.is_empty(),
        "{tx} decided {outcome:?} ({reason:?})"
    );
    let charlie = ctx.node(2);
    check!(
        A,
        votes
            .iter()
            .any(|v| &v.node == charlie && v.vote == Some(Vote::No)),
        "{tx} votes {votes:?}"
    );
    let mut phase = Err(String::new());
    let done = ctx.wait_until(60, 1_000, || {
        phase = phase_of(ctx, &tx);
        phase == Ok(Phase::Aborted)
    });
    check!(A, done, "{tx} is {phase:?} on its coordinator");
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
