//! The txcoord core's entry points under bad and hostile input: clear errors, never a panic,
//! and only a transaction's coordinator drives it on a participant.

use p2p_common::api::txcoord::{Outcome, Response};
use p2p_common::api::{ApiResult, ErrorCode};
use p2p_common::service::{Effect, Input, Now, RequestId, SendErrorKind, Service};
use p2p_common::{Address, NodeId, ProcessId};
use txcoord::core::{Ctx, Timer, TxCoord};

mod support;
use support::{ask, core, respond, sends};

fn code(a: Option<ApiResult<Response>>) -> ErrorCode {
    a.expect("answered").expect_err("an error").code
}

const APP: &str = "alice.os@app:app:someone.os";

#[test]
fn bad_bodies_get_clear_errors() {
    let mut c = core("alice.os");
    for (body, want) in [
        ("{not json", "not valid JSON"),
        (r#"{"Dance": {}}"#, "unknown variant `Dance`"),
        (
            r#"{"Status": {"tx_id": "x", "extra": 1}}"#,
            "unknown field `extra`",
        ),
        (r#"{"Start": {"participants": []}}"#, "1..=16 participants"),
        (r#"{"List": {"limit": 0}}"#, "limit must be"),
    ] {
        let (_, a) = ask(&mut c, APP, body);
        let e = a.unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{body}");
        assert!(e.message.contains(want), "{body}: {e}");
    }
    let big = format!(r#"{{"Status": {{"tx_id": "{}"}}}}"#, "a".repeat(400_000));
    assert_eq!(code(ask(&mut c, APP, &big).1), ErrorCode::TooLarge);
}

#[test]
fn remote_nodes_cannot_use_the_local_api() {
    let mut c = core("alice.os");
    for body in [
        r#"{"Start": {"participants": [{"node": "bob.os", "resource": "r"}]}}"#,
        r#"{"RegisterManager": {"resource": "r"}}"#,
        r#"{"List": {}}"#,
    ] {
        let (eff, a) = ask(&mut c, "mallory.os@app:app:someone.os", body);
        assert_eq!(code(a), ErrorCode::Forbidden, "{body}");
        assert!(
            !eff.iter().any(|e| matches!(e, Effect::Send { .. })),
            "{body}"
        );
    }
}

#[test]
fn only_the_coordinator_drives_a_transaction_here() {
    let mut c = core("bob.os");
    // Mallory claims alice's transaction.
    let (_, a) = ask(
        &mut c,
        "mallory.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"Prepare": {"tx_id": "alice.os/01", "resource": "r", "operation": "", "participants": [], "deadline_ms": 1000}}"#,
    );
    assert_eq!(code(a), ErrorCode::Forbidden);
    let (_, a) = ask(
        &mut c,
        "mallory.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"Commit": {"tx_id": "alice.os/01", "resource": "r"}}"#,
    );
    assert_eq!(code(a), ErrorCode::Forbidden);
    // A local app pretending to be the protocol is refused too.
    let (_, a) = ask(
        &mut c,
        "bob.os@app:app:someone.os",
        r#"{"Commit": {"tx_id": "bob.os/01", "resource": "r"}}"#,
    );
    assert_eq!(code(a), ErrorCode::Forbidden);
    // The coordinator's decision for a transaction we have no record of is acknowledged.
    let (_, a) = ask(
        &mut c,
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"Commit": {"tx_id": "alice.os/01", "resource": "r", "newer_field": 1}}"#,
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Ack {
                outcome: Outcome::Committed,
                ..
            }))
        ),
        "{a:?}"
    );
    // Without a manager the vote is no, with a reason.
    let (_, a) = ask(
        &mut c,
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"Prepare": {"tx_id": "alice.os/02", "resource": "r", "operation": "", "participants": ["bob.os"], "deadline_ms": 1000}}"#,
    );
    match a {
        Some(Ok(Response::Voted { vote, reason, .. })) => {
            assert_eq!(vote, p2p_common::api::txcoord::Vote::No);
            assert!(reason.contains("no manager registered"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_coordinator_presumes_abort_and_other_participants_say_unknown() {
    let mut c = core("alice.os");
    let (_, a) = ask(
        &mut c,
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"QueryOutcome": {"tx_id": "alice.os/0abc"}}"#,
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Outcome {
                outcome: Outcome::Aborted,
                ..
            }))
        ),
        "{a:?}"
    );
    let (_, a) = ask(
        &mut c,
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"QueryOutcome": {"tx_id": "carol.os/0abc"}}"#,
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Outcome {
                outcome: Outcome::Unknown,
                ..
            }))
        ),
        "{a:?}"
    );
    let (_, a) = ask(&mut c, APP, r#"{"Status": {"tx_id": "alice.os/0abc"}}"#);
    assert_eq!(code(a), ErrorCode::NotFound);
}

#[test]
fn start_answers_at_once_and_a_repeated_abort_answers_the_outcome() {
    let mut c = core("alice.os");
    let (eff, a) = ask(
        &mut c,
        APP,
        r#"{"Start": {"participants": [{"node": "bob.os", "resource": "r", "operation": "x"}]}}"#,
    );
    let Some(Ok(Response::Started { tx_id })) = a else {
        panic!("{a:?}")
    };
    let prepare = eff
        .iter()
        .find_map(|e| match e {
            Effect::Send {
                expect: Some(x), ..
            } => Some(x.ctx.clone()),
            _ => None,
        })
        .expect("a Prepare went out");
    // The Prepare times out; then the app aborts, twice.
    c.handle(
        Now::at(6_000),
        Input::SendFailed {
            kind: SendErrorKind::Timeout,
            target: Address::ours(&NodeId::parse("bob.os").unwrap(), "txcoord"),
            ctx: prepare,
        },
    );
    let body = format!(r#"{{"AbortTx": {{"tx_id": "{tx_id}"}}}}"#);
    for _ in 0..2 {
        let (_, a) = ask(&mut c, APP, &body);
        match a {
            Some(Ok(Response::Status(s))) => {
                assert_eq!(s.phase, p2p_common::api::txcoord::Phase::Aborting)
            }
            other => panic!("{other:?}"),
        }
    }
    // Another app may not abort it.
    let (_, a) = ask(&mut c, "alice.os@other:app:someone.os", &body);
    assert_eq!(code(a), ErrorCode::Forbidden);
    let _ = (Ctx::C, Timer::C, ProcessId::parse("a:b:c.os"));
}

// ---- Defects found by the issue-14 review (hostile tests adapted from the reviewer's). ----

use p2p_common::api::encode_result;
use p2p_common::api::txcoord::{ManagerAnswer, Vote};

const RM: &str = "bob.os@rm:app:someone.os";
const ALICE_TX: &str = "alice.os@txcoord:p2p-patterns:p2p-patterns.os";

fn register(c: &mut TxCoord, rm: &str, res: &str) {
    let (eff, _) = ask(
        c,
        rm,
        &format!(
            r#"{{"RegisterManager": {{"resource": "{res}", "coordinators": {{"Only": ["alice.os"]}}}}}}"#
        ),
    );
    let (_, _, ctx) = sends(&eff).pop().expect("hello");
    let eff = respond(
        c,
        ctx,
        encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
    );
    assert!(
        eff.iter().any(|e| matches!(e, Effect::Reply { .. })),
        "{eff:?}"
    );
}

const PREPARE_01: &str = r#"{"Prepare": {"tx_id": "alice.os/01", "resource": "r", "operation": "x", "participants": ["bob.os","carol.os"], "deadline_ms": 30000}}"#;

/// The manager's vote times out at txcoord (the manager votes yes afterwards); when the
/// coordinator aborts, the manager is told to abort (it may hold prepared state).
#[test]
fn a_late_manager_vote_still_gets_the_abort() {
    let mut c = core("bob.os");
    register(&mut c, RM, "r");
    let (eff, _) = ask(&mut c, ALICE_TX, PREPARE_01);
    let (to, body, ctx) = sends(&eff).pop().unwrap();
    assert!(body.contains("PrepareTransaction"), "{body}");
    let eff = c.handle(
        Now::at(5_000),
        Input::SendFailed {
            kind: SendErrorKind::Timeout,
            target: to,
            ctx,
        },
    );
    assert!(
        eff.iter().any(|e| matches!(e, Effect::Reply { body, .. }
            if String::from_utf8_lossy(body).contains("Voting"))),
        "{eff:?}"
    );
    assert_eq!(c.part.entries(), 1, "the possibly-voted-yes entry is kept");
    let (eff, a) = ask(
        &mut c,
        ALICE_TX,
        r#"{"Abort": {"tx_id": "alice.os/01", "resource": "r"}}"#,
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Ack {
                outcome: Outcome::Aborted,
                ..
            }))
        ),
        "{a:?}"
    );
    let s = sends(&eff);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0.to_string(), RM);
    assert!(s[0].1.contains("AbortTransaction"), "{s:?}");
    respond(
        &mut c,
        s[0].2.clone(),
        encode_result(&Ok(ManagerAnswer::Done {})),
    );
    assert_eq!(c.part.entries(), 0, "forgotten once the manager applied it");
}

/// Same, but the coordinator's abort never comes: the forget timer aborts and tells the
/// manager; a Prepare retried after the timeout asks the manager again.
#[test]
fn a_late_manager_vote_is_asked_again_or_aborted_by_the_forget_timer() {
    let mut c = core("bob.os");
    register(&mut c, RM, "r");
    let (eff, _) = ask(&mut c, ALICE_TX, PREPARE_01);
    let (to, _, ctx) = sends(&eff).pop().unwrap();
    let timeout = |c: &mut TxCoord, to: Address, ctx| {
        c.handle(
            Now::at(5_000),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx,
            },
        )
    };
    let eff = timeout(&mut c, to, ctx);
    // The coordinator retries its Prepare: the manager is asked again (one ask in flight).
    let (eff2, a) = ask(&mut c, ALICE_TX, PREPARE_01);
    assert!(a.is_none(), "answered once the manager votes: {a:?}");
    let s = sends(&eff2);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].1.contains("PrepareTransaction"));
    let (_, a) = ask(&mut c, ALICE_TX, PREPARE_01);
    assert!(matches!(a, Some(Ok(Response::Voting { .. }))), "{a:?}");
    let eff3 = timeout(&mut c, s[0].0.clone(), s[0].2.clone());
    // The forget timer of the entry fires: abort here and tell the manager.
    let forget = eff
        .iter()
        .chain(eff3.iter())
        .find_map(|e| match e {
            Effect::SetTimer { timer, .. } => Some(timer.clone()),
            _ => None,
        })
        .expect("a forget timer");
    let eff = c.handle(Now::at(200_000), Input::Timer(forget));
    let s = sends(&eff);
    assert_eq!(s.len(), 1, "{eff:?}");
    assert!(s[0].1.contains("AbortTransaction"), "{s:?}");
    // A stale Prepare now gets a no.
    let (_, a) = ask(&mut c, ALICE_TX, PREPARE_01);
    assert!(
        matches!(a, Some(Ok(Response::Voted { vote: Vote::No, .. }))),
        "{a:?}"
    );
}

/// A hostile participant answers Prepare with a huge error: the coordinator keeps (and
/// reports, and sends in its decision event) a bounded reason.
#[test]
fn a_huge_error_from_a_participant_is_stored_truncated() {
    use p2p_common::api::txcoord::MAX_REASON;
    use p2p_common::api::ApiError;
    let mut c = core("alice.os");
    let (eff, a) = ask(
        &mut c,
        APP,
        r#"{"Start": {"participants": [{"node": "mallory.os", "resource": "r"}]}}"#,
    );
    let Some(Ok(Response::Started { tx_id })) = a else {
        panic!("{a:?}")
    };
    let (_, _, ctx) = sends(&eff).pop().unwrap();
    let big = "A".repeat(1_000_000);
    let eff = respond(
        &mut c,
        ctx,
        encode_result::<Response>(&Err(ApiError::new(ErrorCode::BadRequest, big))),
    );
    let longest_send = eff
        .iter()
        .filter_map(|e| match e {
            Effect::Send { body, .. } => Some(body.len()),
            _ => None,
        })
        .max()
        .expect("the decision event");
    assert!(longest_send < 8 * 1024, "event of {longest_send} bytes");
    let longest_store = eff
        .iter()
        .filter_map(|e| match e {
            Effect::Store(b) => Some(format!("{b:?}").len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(longest_store < 8 * 1024, "record of {longest_store} bytes");
    let (_, a) = ask(
        &mut c,
        APP,
        &format!(r#"{{"Status": {{"tx_id": "{tx_id}"}}}}"#),
    );
    let Some(Ok(Response::Status(s))) = a else {
        panic!("{a:?}")
    };
    assert!(s.reason.chars().count() <= MAX_REASON, "{}", s.reason.len());
    assert!(s.votes[0].reason.chars().count() <= MAX_REASON);
    assert!(s.reason.contains("mallory.os / r refused"), "{}", s.reason);
}

/// Paging through List with a transaction that has both roles on this node sees both.
#[test]
fn list_paging_keeps_both_roles_of_a_transaction() {
    let mut c = core("alice.os");
    register(&mut c, "alice.os@rm:app:someone.os", "r");
    let (eff, a) = ask(
        &mut c,
        APP,
        r#"{"Start": {"participants": [{"node": "alice.os", "resource": "r"}, {"node": "bob.os", "resource": "r"}]}}"#,
    );
    assert!(matches!(a, Some(Ok(Response::Started { .. }))), "{a:?}");
    // Deliver the Prepare to ourselves: alice.os is coordinator and participant.
    let (_, body, _) = sends(&eff)
        .into_iter()
        .find(|(to, _, _)| to.node.as_str() == "alice.os" && to.process.process == "txcoord")
        .unwrap();
    ask(&mut c, ALICE_TX, &body);
    let (_, a) = ask(&mut c, APP, r#"{"List": {}}"#);
    let Some(Ok(Response::Transactions { transactions, .. })) = a else {
        panic!("{a:?}")
    };
    assert_eq!(transactions.len(), 2, "{transactions:?}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let body = match &cursor {
            Some(c) => format!(r#"{{"List": {{"limit": 1, "cursor": "{c}"}}}}"#),
            None => r#"{"List": {"limit": 1}}"#.into(),
        };
        let (_, a) = ask(&mut c, APP, &body);
        let Some(Ok(Response::Transactions {
            transactions,
            next_cursor,
        })) = a
        else {
            panic!("{a:?}")
        };
        seen.extend(transactions.into_iter().map(|t| (t.tx_id, t.role)));
        cursor = next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let all: Vec<_> = transactions
        .into_iter()
        .map(|t| (t.tx_id, t.role))
        .collect();
    assert_eq!(seen, all, "paging sees every entry once, in order");
    // A bare tx id (an older cursor) still starts after the whole transaction.
    let (_, a) = ask(
        &mut c,
        APP,
        &format!(r#"{{"List": {{"cursor": "{}"}}}}"#, all[0].0),
    );
    let Some(Ok(Response::Transactions { transactions, .. })) = a else {
        panic!("{a:?}")
    };
    assert!(transactions.is_empty(), "{transactions:?}");
}

/// A delayed copy of a Prepare arriving after the transaction committed and was forgotten is
/// answered from the ended entries; the manager is not asked to prepare it again.
#[test]
fn a_replayed_prepare_after_the_end_does_not_reprepare_the_manager() {
    let mut c = core("bob.os");
    register(&mut c, RM, "r");
    for (n, commit) in [("02", true), ("03", false)] {
        let prep = format!(
            r#"{{"Prepare": {{"tx_id": "alice.os/{n}", "resource": "r", "operation": "x+=1", "participants": ["bob.os"], "deadline_ms": 30000}}}}"#
        );
        let (eff, _) = ask(&mut c, ALICE_TX, &prep);
        let (_, _, ctx) = sends(&eff).pop().unwrap();
        respond(
            &mut c,
            ctx,
            encode_result(&Ok(ManagerAnswer::Vote {
                vote: Vote::Yes,
                reason: String::new(),
            })),
        );
        let decision = if commit { "Commit" } else { "Abort" };
        let (eff, a) = ask(
            &mut c,
            ALICE_TX,
            &format!(r#"{{"{decision}": {{"tx_id": "alice.os/{n}", "resource": "r"}}}}"#),
        );
        assert!(matches!(a, Some(Ok(Response::Ack { .. }))), "{a:?}");
        let (_, body, ctx) = sends(&eff).pop().unwrap();
        assert!(body.contains(&format!("{decision}Transaction")), "{body}");
        respond(&mut c, ctx, encode_result(&Ok(ManagerAnswer::Done {})));
        assert_eq!(c.part.entries(), 0, "forgotten");
        let (eff, a) = ask(&mut c, ALICE_TX, &prep);
        let s = sends(&eff);
        assert!(s.is_empty(), "the manager is asked again: {s:?}");
        let want = if commit { Vote::Yes } else { Vote::No };
        assert!(
            matches!(a, Some(Ok(Response::Voted { vote, .. })) if vote == want),
            "{a:?}"
        );
        assert_eq!(c.part.entries(), 0);
    }
}

const CAROL_TX: &str = "carol.os@txcoord:p2p-patterns:p2p-patterns.os";

/// Hostile seed 185 of `check --service txcoord`, reduced: bob.os's manager is voting when
/// carol.os (prepared, waiting) asks bob.os about the transaction, so bob.os refuses for good.
/// The manager's yes then arrives too late (txcoord saw a Timeout). The manager may hold
/// prepared state, so it must be told to abort: at once, and not only by the coordinator's
/// abort (which, here, reached bob.os and used to end the entry without telling the manager).
#[test]
fn a_vote_that_times_out_after_a_refusal_still_aborts_the_manager() {
    for coordinator_abort_arrives in [false, true] {
        let mut c = core("bob.os");
        register(&mut c, RM, "r");
        let (eff, _) = ask(&mut c, ALICE_TX, PREPARE_01);
        let (to, _, ctx) = sends(&eff).pop().unwrap();
        // carol.os asks while the manager votes: refused (forced), answered Aborted.
        let (_, a) = ask(
            &mut c,
            CAROL_TX,
            r#"{"QueryOutcome": {"tx_id": "alice.os/01"}}"#,
        );
        assert!(
            matches!(
                a,
                Some(Ok(Response::Outcome {
                    outcome: Outcome::Aborted,
                    ..
                }))
            ),
            "{a:?}"
        );
        // The manager's vote times out (its yes comes later, to nobody).
        let eff = c.handle(
            Now::at(5_000),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx,
            },
        );
        let mut told: Vec<(Address, String, Ctx)> = sends(&eff);
        if coordinator_abort_arrives {
            let (eff, _) = ask(
                &mut c,
                ALICE_TX,
                r#"{"Abort": {"tx_id": "alice.os/01", "resource": "r"}}"#,
            );
            told.extend(sends(&eff));
        }
        assert!(
            told.iter()
                .any(|(to, body, _)| to.to_string() == RM && body.contains("AbortTransaction")),
            "coordinator abort arrives: {coordinator_abort_arrives}: the manager is never told \
             to abort: {told:?}"
        );
        let abort = told
            .iter()
            .find(|(_, b, _)| b.contains("AbortTransaction"))
            .unwrap();
        respond(
            &mut c,
            abort.2.clone(),
            encode_result(&Ok(ManagerAnswer::Done {})),
        );
        if coordinator_abort_arrives {
            assert_eq!(c.part.entries(), 0, "forgotten once the manager applied it");
        }
        assert_eq!(c.part.blocked(), 0);
    }
}

/// Hostile seed 242's family: the manager's first vote times out (it may have voted yes
/// late), and a retried Prepare then gets a no from it (here: it is down). The entry voted
/// no for good, so the manager is told to abort at once, without waiting for the
/// coordinator's abort (which may give up) or the 2-hour forget timer.
#[test]
fn a_no_after_a_timed_out_vote_aborts_the_manager_at_once() {
    let mut c = core("bob.os");
    register(&mut c, RM, "r");
    let (eff, _) = ask(&mut c, ALICE_TX, PREPARE_01);
    let (to, _, ctx) = sends(&eff).pop().unwrap();
    c.handle(
        Now::at(5_000),
        Input::SendFailed {
            kind: SendErrorKind::Timeout,
            target: to,
            ctx,
        },
    );
    let (eff, _) = ask(&mut c, ALICE_TX, PREPARE_01);
    let (_, body, ctx) = sends(&eff).pop().expect("the manager is asked again");
    assert!(body.contains("PrepareTransaction"), "{body}");
    let eff = respond(
        &mut c,
        ctx,
        encode_result::<ManagerAnswer>(&Err(p2p_common::ApiError::new(
            ErrorCode::Unavailable,
            "the resource manager is down",
        ))),
    );
    assert!(
        eff.iter().any(|e| matches!(e, Effect::Reply { body, .. }
            if String::from_utf8_lossy(body).contains("\"No\""))),
        "{eff:?}"
    );
    let s = sends(&eff);
    assert!(
        s.iter()
            .any(|(to, b, _)| to.to_string() == RM && b.contains("AbortTransaction")),
        "the manager, which may hold a late yes, is told to abort now: {s:?}"
    );
}

/// A resource manager written with the helpers in common (`TxClient::register_manager`,
/// `answer`) blocks on its registration, so it cannot answer txcoord's Hello: the Hello times
/// out and counts as delivered, without the in-doubt list. txcoord asks again once the
/// registration is answered, and the manager's in-doubt transaction (voted yes, and its yes
/// lost in a txcoord crash: no record here) is aborted at the manager.
#[test]
fn a_manager_registering_with_the_blocking_client_still_reports_its_in_doubt_list() {
    use p2p_common::txcoord::{answer, Manager, TxClient};
    #[derive(Default)]
    struct Doubting {
        prepared: Vec<String>,
        aborted: Vec<String>,
    }
    impl Manager for Doubting {
        fn prepare(&mut self, tx: &str, _: &str, _: &NodeId, _: &str) -> Result<(), String> {
            self.prepared.push(tx.into());
            Ok(())
        }
        fn commit(&mut self, tx: &str, _: &str) {
            self.prepared.retain(|t| t != tx);
        }
        fn abort(&mut self, tx: &str, _: &str) {
            self.prepared.retain(|t| t != tx);
            self.aborted.push(tx.into());
        }
        fn in_doubt(&self) -> Vec<(String, String)> {
            self.prepared
                .iter()
                .map(|t| (t.clone(), "r".into()))
                .collect()
        }
    }
    let mut m = Doubting {
        prepared: vec!["alice.os/0d".into()],
        ..Default::default()
    };
    let mut c = core("bob.os");
    let rm = Address::parse(RM).unwrap();
    let mut after: Vec<(Address, String, Ctx)> = Vec::new();
    let transport = |_to: &Address, body: Vec<u8>, timeout_s: u64| {
        let eff = c.handle(
            Now::at(1_000),
            Input::Request {
                id: RequestId(50),
                from: rm.clone(),
                body,
                blob: None,
                timeout_s: Some(timeout_s),
            },
        );
        // The app is blocked in this call: txcoord's Hello to it times out after 2 s.
        let (to, hello, ctx) = sends(&eff).pop().expect("a Hello to the manager");
        assert!(hello.contains("Hello"), "{hello}");
        let eff = c.handle(
            Now::at(3_100),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx,
            },
        );
        after.extend(sends(&eff));
        eff.iter()
            .find_map(|e| match e {
                Effect::Reply {
                    id: RequestId(50),
                    body,
                    ..
                } => Some(body.clone()),
                _ => None,
            })
            .ok_or(SendErrorKind::Timeout)
    };
    let mut client = TxClient::local(&NodeId::parse("bob.os").unwrap(), transport);
    client.register_manager("r", None).expect("registered");
    drop(client);
    // Free again, the app answers what txcoord sent after the reply, with the helper.
    assert_eq!(after.len(), 1, "{after:?}");
    let (to, body, ctx) = after.pop().unwrap();
    assert_eq!(to, rm);
    assert!(
        body.contains("Hello"),
        "the in-doubt list is asked again: {body}"
    );
    // A first ask that gets no answer is retried later (one in flight).
    let eff = c.handle(
        Now::at(10_000),
        Input::SendFailed {
            kind: SendErrorKind::Timeout,
            target: to.clone(),
            ctx,
        },
    );
    assert!(sends(&eff).is_empty(), "{eff:?}");
    let timer = eff
        .iter()
        .find_map(|e| match e {
            Effect::SetTimer { timer, after_ms } => Some((timer.clone(), *after_ms)),
            _ => None,
        })
        .expect("a retry timer");
    assert!(
        (500..=2_000).contains(&timer.1),
        "first retry after about 1 s: {timer:?}"
    );
    let eff = c.handle(Now::at(12_000), Input::Timer(timer.0));
    let (_, body, ctx) = sends(&eff).pop().expect("asked again");
    let reply = answer(&mut m, body.as_bytes()).expect("a manager message");
    let eff = respond(&mut c, ctx, reply);
    let (_, abort, ctx) = sends(&eff)
        .into_iter()
        .find(|(_, b, _)| b.contains("AbortTransaction"))
        .unwrap_or_else(|| panic!("the in-doubt transaction is aborted: {eff:?}"));
    let done = answer(&mut m, abort.as_bytes()).unwrap();
    respond(&mut c, ctx, done);
    assert_eq!(m.aborted, vec!["alice.os/0d".to_string()]);
    assert!(m.in_doubt().is_empty());
}
