//! The participant table's slots (issue-14 review, defect 4): a no vote keeps no slot, a
//! refusal keeps its slot only until the Prepare's vote deadline (capped), prepared entries
//! of one coordinator have their own smaller quota, and admitting a Prepare costs no scan of
//! the table (the per-coordinator counts are kept on every change; `check_counts` compares
//! them with a recount).

use p2p_common::api::encode_result;
use p2p_common::api::txcoord::{ManagerAnswer, Outcome, Response, Vote, MAX_TIMEOUT_MS};
use p2p_common::api::ApiResult;
use p2p_common::service::{Effect, Input, Now, SendErrorKind, Service};
use p2p_common::NodeId;
use txcoord::core::{Ctx, Eff, Timer, TxCoord};
use txcoord::participant::PTimer;

mod support;
use support::{ask, core, respond, sends};

fn timers(eff: &[Eff]) -> Vec<(u64, Timer)> {
    eff.iter()
        .filter_map(|e| match e {
            Effect::SetTimer { after_ms, timer } => Some((*after_ms, timer.clone())),
            _ => None,
        })
        .collect()
}

const RM: &str = "bob.os@rm:app:someone.os";
const TX: &str = "@txcoord:p2p-patterns:p2p-patterns.os";

/// Registers the manager of `r` on bob.os; `coordinators` as JSON, or left out.
fn register(c: &mut TxCoord, coordinators: Option<&str>) {
    let body = match coordinators {
        Some(j) => format!(r#"{{"RegisterManager": {{"resource": "r", "coordinators": {j}}}}}"#),
        None => r#"{"RegisterManager": {"resource": "r"}}"#.to_string(),
    };
    let (eff, _) = ask(c, RM, &body);
    let (_, _, ctx) = sends(&eff).pop().expect("hello");
    let eff = respond(
        c,
        ctx,
        encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
    );
    assert!(
        eff.iter().any(|e| matches!(e, Effect::Reply { body, .. }
            if String::from_utf8_lossy(body).contains("ManagerRegistered"))),
        "registered"
    );
}

/// A Prepare from txcoord on `tx`'s coordinator node: its effects and the answer, if at once.
fn prepare(
    c: &mut TxCoord,
    tx: &str,
    participants: &str,
    deadline_ms: u64,
) -> (Vec<Eff>, Option<ApiResult<Response>>) {
    let coord = tx.split('/').next().unwrap();
    let body = format!(
        r#"{{"Prepare": {{"tx_id": "{tx}", "resource": "r", "operation": "x", "participants": [{participants}], "deadline_ms": {deadline_ms}}}}}"#
    );
    ask(c, &format!("{coord}{TX}"), &body)
}

fn vote(v: Vote) -> Vec<u8> {
    encode_result(&Ok(ManagerAnswer::Vote {
        vote: v,
        reason: if v == Vote::No {
            "unknown coordinator".into()
        } else {
            String::new()
        },
    }))
}

fn is_no(a: &Option<ApiResult<Response>>) -> bool {
    matches!(a, Some(Ok(Response::Voted { vote: Vote::No, .. })))
}

/// The manager asks among `eff` (PrepareTransaction messages).
fn manager_asks(eff: &[Eff]) -> Vec<Ctx> {
    sends(eff)
        .into_iter()
        .filter(|(_, b, _)| b.contains("PrepareTransaction"))
        .map(|(_, _, x)| x)
        .collect()
}

/// 10 coordinators × 1,000 Prepares whose manager votes no: `allowed` names the
/// coordinators in the registration, otherwise the default (this node only) applies.
/// Returns bob's core after the flood.
fn flood(allowed: bool) -> TxCoord {
    let mut c = core("bob.os");
    let names: Vec<String> = (0..10).map(|m| format!("\"m{m}.os\"")).collect();
    let only = format!(r#"{{"Only": [{}, "alice.os"]}}"#, names.join(", "));
    register(&mut c, allowed.then_some(only.as_str()));
    let mut asked = 0;
    for m in 0..10 {
        for k in 0..1000 {
            let (eff, a) = prepare(&mut c, &format!("m{m}.os/{k:x}"), "", 1);
            match manager_asks(&eff).pop() {
                Some(ctx) => {
                    asked += 1;
                    let eff = respond(&mut c, ctx, vote(Vote::No));
                    assert!(
                        eff.iter().any(|e| matches!(e, Effect::Reply { body, .. }
                            if String::from_utf8_lossy(body).contains("\"No\""))),
                        "the no vote is answered"
                    );
                }
                None => assert!(is_no(&a), "{a:?}"),
            }
        }
    }
    assert_eq!(asked, if allowed { 10_000 } else { 0 });
    c.part.check_counts().unwrap();
    c
}

/// The reviewer's flood test (review 14, defect 4), for a manager that names the flooding
/// coordinators: every no vote used to keep its slot for 2 h, so ten names took the whole
/// table and alice's Prepare was voted no. Now a no vote keeps no slot.
#[test]
fn no_votes_from_allowed_coordinators_take_no_slot() {
    let mut c = flood(true);
    eprintln!("after 10,000 no votes: {} entries", c.part.entries());
    assert_eq!(c.part.entries(), 0, "a no vote keeps no table slot");
    let (eff, a) = prepare(&mut c, "alice.os/0d", "\"bob.os\"", 30_000);
    assert!(a.is_none(), "alice's Prepare waits for the manager: {a:?}");
    assert_eq!(manager_asks(&eff).len(), 1, "the manager is asked");
    // A late copy of a flood Prepare is answered from the ended memory (the latest 1,000),
    // with the manager's reason, without asking the manager again.
    let (eff, a) = prepare(&mut c, "m9.os/3e7", "", 1);
    assert!(manager_asks(&eff).is_empty());
    assert!(
        matches!(&a, Some(Ok(Response::Voted { vote: Vote::No, reason, .. })) if reason == "unknown coordinator"),
        "{a:?}"
    );
}

/// The same flood from coordinators the manager did not name: refused before the manager is
/// asked, and no slot either.
#[test]
fn no_votes_for_coordinators_not_named_take_no_slot() {
    let mut c = flood(false);
    assert_eq!(c.part.entries(), 0);
    let (eff, a) = prepare(&mut c, "bob.os/0d", "\"bob.os\"", 30_000);
    assert!(a.is_none(), "{a:?}");
    assert_eq!(manager_asks(&eff).len(), 1);
}

/// A coordinator that never decides (its manager votes yes to every Prepare) holds at most
/// `max_prepared_per_coordinator` prepared entries; Prepares beyond it are voted no before
/// the manager is asked, and other coordinators are not affected.
#[test]
fn a_coordinator_that_never_decides_holds_at_most_its_prepared_quota() {
    let mut c = core("bob.os");
    register(&mut c, Some(r#""Any""#));
    let quota = c.cfg.max_prepared_per_coordinator;
    assert!(quota < c.cfg.max_per_coordinator, "a smaller quota");
    let mut refused = 0;
    for k in 0..quota + 50 {
        let (eff, a) = prepare(&mut c, &format!("mallory.os/{k:x}"), "", 30_000);
        match manager_asks(&eff).pop() {
            Some(ctx) => {
                respond(&mut c, ctx, vote(Vote::Yes));
            }
            None => {
                assert!(
                    matches!(&a, Some(Ok(Response::Voted { vote: Vote::No, reason, .. }))
                        if reason.contains("prepared and undecided")),
                    "{a:?}"
                );
                refused += 1;
            }
        }
    }
    let mallory = NodeId::parse("mallory.os").unwrap();
    eprintln!("mallory: {:?}, refused {refused}", c.part.count(&mallory));
    assert_eq!(c.part.count(&mallory).prepared, quota);
    assert_eq!(refused, 50);
    c.part.check_counts().unwrap();
    // Another coordinator still gets in.
    let (eff, _) = prepare(&mut c, "alice.os/01", "\"bob.os\"", 30_000);
    assert_eq!(manager_asks(&eff).len(), 1);
}

/// Asks admitted together cannot overshoot the quota: yes votes beyond it become no votes,
/// and the manager is told to drop them.
#[test]
fn concurrent_asks_cannot_overshoot_the_prepared_quota() {
    let mut c = core("bob.os");
    register(&mut c, Some(r#""Any""#));
    let quota = c.cfg.max_prepared_per_coordinator;
    let mut asks = Vec::new();
    for k in 0..quota + 20 {
        let (eff, _) = prepare(&mut c, &format!("mallory.os/{k:x}"), "", 30_000);
        asks.extend(manager_asks(&eff));
    }
    assert_eq!(
        asks.len(),
        quota + 20,
        "all admitted while none is prepared"
    );
    let (mut no, mut aborts) = (0, 0);
    for ctx in asks {
        let eff = respond(&mut c, ctx, vote(Vote::Yes));
        let reply = eff.iter().find_map(|e| match e {
            Effect::Reply { body, .. } => Some(String::from_utf8_lossy(body).to_string()),
            _ => None,
        });
        if reply.is_some_and(|r| r.contains("\"No\"")) {
            no += 1;
            let ab: Vec<_> = sends(&eff)
                .into_iter()
                .filter(|(_, b, _)| b.contains("AbortTransaction"))
                .collect();
            assert_eq!(ab.len(), 1, "the manager drops its yes");
            aborts += 1;
            // Once it has, the entry ends.
            respond(
                &mut c,
                ab[0].2.clone(),
                encode_result(&Ok(ManagerAnswer::Done {})),
            );
        }
    }
    let mallory = NodeId::parse("mallory.os").unwrap();
    assert_eq!((no, aborts), (20, 20));
    assert_eq!(c.part.count(&mallory).prepared, quota);
    assert_eq!(c.part.entries(), quota, "the refused ones left the table");
    c.part.check_counts().unwrap();
}

/// A refusal (told another participant it may abort) must keep answering no while the
/// coordinator may still collect votes, and no longer: its slot goes at the Prepare's vote
/// deadline plus slack, capped at the longest deadline, not after 2 h.
#[test]
fn a_refused_entry_keeps_its_slot_until_the_vote_deadline_only() {
    for (deadline, expected) in [(30_000, 35_000), (u64::MAX, MAX_TIMEOUT_MS + 5_000)] {
        let mut c = core("bob.os");
        register(&mut c, Some(r#""Any""#));
        let (eff, _) = prepare(&mut c, "alice.os/0b", "\"bob.os\", \"carol.os\"", deadline);
        let (to, _, vote_ctx) = sends(&eff).pop().unwrap();
        let expire: Vec<(u64, Timer)> = timers(&eff)
            .into_iter()
            .filter(|(_, t)| matches!(t, Timer::P(PTimer::Expire(_))))
            .collect();
        assert_eq!(expire.len(), 1, "{:?}", timers(&eff));
        assert_eq!(expire[0].0, expected, "deadline {deadline}");
        // carol asks while the manager votes: bob refuses for good (forced).
        let (_, a) = ask(
            &mut c,
            &format!("carol.os{TX}"),
            r#"{"QueryOutcome": {"tx_id": "alice.os/0b"}}"#,
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
        // The manager's vote (yes, late) is answered no and the manager told to abort.
        let eff = c.handle(
            Now::at(5_000),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx: vote_ctx,
            },
        );
        let (_, body, ctx) = sends(&eff).pop().expect("an abort to the manager");
        assert!(body.contains("AbortTransaction"), "{body}");
        respond(&mut c, ctx, encode_result(&Ok(ManagerAnswer::Done {})));
        assert_eq!(c.part.entries(), 1, "refused: kept until the deadline");
        // A retried Prepare before the deadline is still a no, without the manager.
        let (eff, a) = prepare(&mut c, "alice.os/0b", "\"bob.os\", \"carol.os\"", deadline);
        assert!(is_no(&a) && manager_asks(&eff).is_empty(), "{a:?}");
        // At the deadline the slot goes.
        c.handle(Now::at(40_000), Input::Timer(expire[0].1.clone()));
        assert_eq!(c.part.entries(), 0, "the refusal left at its deadline");
        c.part.check_counts().unwrap();
    }
}

/// The same for refusals made by a batched termination query (`answer_query`, review 14b
/// defect 3): carol asks about two transactions in one message while bob's manager votes on
/// both; both are refused, and nothing the refusals or the late votes arm holds a slot past
/// the vote deadline (no `Forget` of twice the longest timeout, as a merge could bring back).
#[test]
fn refusals_of_a_batched_query_keep_their_slots_until_the_vote_deadline_only() {
    let mut c = core("bob.os");
    register(&mut c, Some(r#""Any""#));
    let mut votes = Vec::new();
    let mut expire = Vec::new();
    for tx in ["alice.os/0b", "alice.os/0c"] {
        let (eff, _) = prepare(&mut c, tx, "\"bob.os\", \"carol.os\"", 30_000);
        let (to, _, ctx) = sends(&eff).pop().unwrap();
        votes.push((to, ctx));
        expire.extend(
            timers(&eff)
                .into_iter()
                .filter(|(_, t)| matches!(t, Timer::P(PTimer::Expire(_)))),
        );
    }
    assert_eq!(expire.len(), 2);
    assert!(expire.iter().all(|(d, _)| *d == 35_000), "{expire:?}");
    let (eff, a) = ask(
        &mut c,
        &format!("carol.os{TX}"),
        r#"{"QueryOutcome": {"tx_id": "alice.os/0b", "more": ["alice.os/0c"]}}"#,
    );
    match &a {
        Some(Ok(Response::Outcome { outcome, more, .. })) => {
            assert_eq!(*outcome, Outcome::Aborted, "{a:?}");
            assert_eq!(more.len(), 1, "{a:?}");
            assert_eq!(more[0].outcome, Outcome::Aborted, "{a:?}");
        }
        _ => panic!("{a:?}"),
    }
    let mut armed = timers(&eff);
    // The manager's votes (yes, late) are answered no and the manager told to abort.
    for (to, ctx) in votes {
        let eff = c.handle(
            Now::at(5_000),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx,
            },
        );
        armed.extend(timers(&eff));
        let (_, body, ctx) = sends(&eff).pop().expect("an abort to the manager");
        assert!(body.contains("AbortTransaction"), "{body}");
        let eff = respond(&mut c, ctx, encode_result(&Ok(ManagerAnswer::Done {})));
        armed.extend(timers(&eff));
    }
    assert!(
        armed
            .iter()
            .all(|(d, t)| *d <= 35_000 && !matches!(t, Timer::P(PTimer::Forget(_)))),
        "a refusal holds its slot past the vote deadline: {armed:?}"
    );
    assert_eq!(c.part.entries(), 2, "refused: kept until the deadline");
    c.part.check_counts().unwrap();
    for (_, t) in expire {
        c.handle(Now::at(40_000), Input::Timer(t));
    }
    assert_eq!(c.part.entries(), 0, "the refusals left at their deadline");
    c.part.check_counts().unwrap();
}

/// Admitting a Prepare visits no table entry, whatever the table holds: its cost does not
/// grow with the table (the review measured a full scan with a parse per Prepare). Work is
/// counted, not timed.
#[test]
fn a_prepare_visits_no_entry_whatever_the_table_size() {
    let mut c = core("bob.os");
    register(&mut c, Some(r#""Any""#));
    let mut visits = Vec::new();
    let mut k = 0;
    for size in [10usize, 100, 4_000] {
        while c.part.entries() < size {
            // Prepared entries of many coordinators (each within its quota).
            let tx = format!("c{}.os/{k:x}", k % 40);
            k += 1;
            let (eff, _) = prepare(&mut c, &tx, "", 30_000);
            let ctx = manager_asks(&eff).pop().expect("asked");
            respond(&mut c, ctx, vote(Vote::Yes));
        }
        let before = c.part.entries_visited();
        let (eff, _) = prepare(&mut c, &format!("alice.os/{size:x}"), "\"bob.os\"", 30_000);
        visits.push(c.part.entries_visited() - before);
        let ctx = manager_asks(&eff).pop().expect("asked");
        respond(&mut c, ctx, vote(Vote::Yes));
    }
    eprintln!("entries visited by one Prepare at 10, 100, 4,000 entries: {visits:?}");
    assert_eq!(visits, vec![0, 0, 0]);
    c.part.check_counts().unwrap();
}

/// Cheap no votes cannot push a commit out of the ended-entry memory (review 14b nit): the
/// committed entries and the others have separate bounds, so a late copy of a committed
/// transaction's Prepare after 2,000 no votes is still answered yes without asking the
/// manager to prepare again (which could apply the operation twice).
#[test]
fn no_votes_do_not_push_commits_out_of_the_ended_memory() {
    let mut c = core("bob.os");
    register(&mut c, Some(r#""Any""#));
    let (eff, _) = prepare(&mut c, "alice.os/0a", "\"bob.os\"", 30_000);
    let ctx = manager_asks(&eff).pop().unwrap();
    respond(&mut c, ctx, vote(Vote::Yes));
    let (eff, a) = ask(
        &mut c,
        &format!("alice.os{TX}"),
        r#"{"Commit": {"tx_id": "alice.os/0a", "resource": "r"}}"#,
    );
    assert!(matches!(a, Some(Ok(Response::Ack { .. }))), "{a:?}");
    let (_, body, ctx) = sends(&eff).pop().expect("commit to the manager");
    assert!(body.contains("CommitTransaction"), "{body}");
    respond(&mut c, ctx, encode_result(&Ok(ManagerAnswer::Done {})));
    assert_eq!(c.part.entries(), 0);
    for k in 0..2_000 {
        let (eff, _) = prepare(&mut c, &format!("m{}.os/{k:x}", k % 10), "", 30_000);
        let ctx = manager_asks(&eff).pop().expect("asked");
        respond(&mut c, ctx, vote(Vote::No));
    }
    let (eff, a) = prepare(&mut c, "alice.os/0a", "\"bob.os\"", 30_000);
    assert!(
        manager_asks(&eff).is_empty(),
        "the manager is not asked again"
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Voted {
                vote: Vote::Yes,
                ..
            }))
        ),
        "{a:?}"
    );
}
