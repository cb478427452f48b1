//! Cooperative termination: which answers a prepared participant trusts, and how its queries
//! are batched.
//!
//! A prepared participant takes the outcome only from the coordinator itself (Hyperware
//! authenticates the sending node) or from another participant that relays the
//! coordinator's signed decision, which it checks with `sign:sign:sys` NetKeyVerify first.
//! The sign process is `p2p_common::sign::model::NetKeys`, the one the simulator and the
//! emulator run, so signatures here are real ed25519 signatures.

use p2p_common::api::encode_result;
use p2p_common::api::txcoord::{decision_message, ManagerAnswer, Outcome, Response, Vote};
use p2p_common::api::ApiResult;
use p2p_common::service::{Effect, Input, Level, Now, RequestId, SendErrorKind, Service};
use p2p_common::sign::model::{NetKeys, SignOutcome};
use p2p_common::sign::{sign_process, signed_bytes};
use p2p_common::{Address, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use txcoord::core::{Ctx, Eff, Timer, TxCoord};

const RM: &str = "bob.os@rm:app:someone.os";
const TX: &str = "alice.os/0c";
const PEERS: &str = r#"["bob.os","carol.os","mallory.os"]"#;

fn node(n: &str) -> NodeId {
    NodeId::parse(n).unwrap()
}
fn txcoord_of(n: &str) -> Address {
    Address::ours(&node(n), "txcoord")
}
fn keys() -> NetKeys {
    NetKeys::new(1)
}
/// The coordinator's real signature of its decision on `tx`.
fn signed(tx: &str, commit: bool) -> Vec<u8> {
    let coord = tx.split('/').next().unwrap();
    keys()
        .sign(
            coord,
            &signed_bytes(&txcoord_of(coord), &decision_message(tx, commit)),
        )
        .to_vec()
}

/// One txcoord core with a clock, its timers, its awaited sends, and a sign process.
struct Node {
    name: String,
    c: TxCoord,
    now: u64,
    timers: BTreeMap<Timer, u64>,
    next_id: u64,
    /// Every awaited send not answered yet: context -> target.
    out: Vec<(Address, String, Ctx, Option<Vec<u8>>)>,
    logs: Vec<(Level, String)>,
}

impl Node {
    fn new(name: &str) -> Node {
        let mut n = Node {
            name: name.to_string(),
            c: txcoord::core::new(txcoord_of(name)),
            now: 0,
            timers: BTreeMap::new(),
            next_id: 100,
            out: vec![],
            logs: vec![],
        };
        let eff = n.c.handle(
            Now::at(0),
            Input::Start {
                persisted: None,
                records: Default::default(),
                seed: 1,
            },
        );
        n.take(eff);
        n
    }

    fn take(&mut self, eff: Vec<Eff>) -> Vec<Eff> {
        for e in &eff {
            match e {
                Effect::SetTimer { after_ms, timer } => {
                    self.timers.insert(timer.clone(), self.now + after_ms);
                }
                Effect::CancelTimer(t) => {
                    self.timers.remove(t);
                }
                Effect::Send {
                    to,
                    body,
                    blob,
                    expect: Some(x),
                } => self.out.push((
                    to.clone(),
                    String::from_utf8_lossy(body).to_string(),
                    x.ctx.clone(),
                    blob.clone(),
                )),
                Effect::Log { level, message } => self.logs.push((*level, message.clone())),
                _ => {}
            }
        }
        eff
    }

    fn ask(&mut self, from: &str, body: &str) -> Option<ApiResult<Response>> {
        self.next_id += 1;
        let id = self.next_id;
        let eff = self.c.handle(
            Now::at(self.now),
            Input::Request {
                id: RequestId(id),
                from: Address::parse(from).unwrap(),
                body: body.as_bytes().to_vec(),
                blob: None,
                timeout_s: Some(5),
            },
        );
        let eff = self.take(eff);
        eff.iter().find_map(|e| match e {
            Effect::Reply {
                id: RequestId(i),
                body,
                ..
            } if *i == id => Some(serde_json::from_slice(body).unwrap()),
            _ => None,
        })
    }

    /// Remove and return the first awaited send whose body contains `what`.
    fn sent(&mut self, what: &str) -> Option<(Address, String, Ctx, Option<Vec<u8>>)> {
        let i = self.out.iter().position(|(_, b, _, _)| b.contains(what))?;
        Some(self.out.remove(i))
    }

    fn respond(&mut self, ctx: Ctx, body: &[u8], blob: Option<Vec<u8>>) -> Vec<Eff> {
        let eff = self.c.handle(
            Now::at(self.now),
            Input::Response {
                from: Address::parse("x.os@a:b:c.os").unwrap(),
                body: body.to_vec(),
                blob,
                ctx,
            },
        );
        self.take(eff)
    }

    fn fail(&mut self, to: Address, ctx: Ctx) -> Vec<Eff> {
        let eff = self.c.handle(
            Now::at(self.now),
            Input::SendFailed {
                kind: SendErrorKind::Timeout,
                target: to,
                ctx,
            },
        );
        self.take(eff)
    }

    /// Answer every request to our sign process as `sign:sign:sys` would.
    fn answer_sign(&mut self) -> usize {
        let mut n = 0;
        while let Some(i) = self
            .out
            .iter()
            .position(|(to, _, _, _)| to.process == sign_process())
        {
            let (to, body, ctx, blob) = self.out.remove(i);
            let our = txcoord_of(&self.name);
            match keys().handle(&to.node, &our, body.as_bytes(), blob.as_deref(), &|_| true) {
                SignOutcome::Answer { body, blob } => {
                    self.respond(ctx, &body, blob);
                }
                SignOutcome::NoAnswer(why) => panic!("sign: {why}"),
            }
            n += 1;
        }
        n
    }

    /// Fire the earliest timer (advancing the clock to it).
    fn fire_next(&mut self) -> Option<Timer> {
        let (t, at) = self
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (t.clone(), *at))?;
        self.timers.remove(&t);
        self.now = self.now.max(at);
        let eff = self.c.handle(Now::at(self.now), Input::Timer(t.clone()));
        self.take(eff);
        Some(t)
    }

    /// Fire timers until a query is out (returns its target).
    fn until_query(&mut self) -> Address {
        for _ in 0..100 {
            if let Some((to, _, _, _)) = self
                .out
                .iter()
                .find(|(_, b, _, _)| b.contains("QueryOutcome"))
            {
                return to.clone();
            }
            self.fire_next().expect("a timer");
        }
        panic!("no query");
    }

    fn manager_told(&self, what: &str) -> bool {
        self.out
            .iter()
            .any(|(to, b, _, _)| to.to_string() == RM && b.contains(what))
    }
}

fn yes() -> Vec<u8> {
    encode_result(&Ok(ManagerAnswer::Vote {
        vote: Vote::Yes,
        reason: String::new(),
    }))
}

fn outcome_body(tx: &str, outcome: &str, sig: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"Ok":{{"Outcome":{{"tx_id":"{tx}","outcome":"{outcome}","signature":"{}"}}}}}}"#,
        hex(sig)
    )
    .into_bytes()
}
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bob, registered manager of "r", prepared (voted yes) in `tx` of alice with carol and
/// mallory, and asking: its coordinator did not answer, so the query is out to a peer.
fn bob_asking_a_peer(tx: &str) -> (Node, Address, Ctx) {
    let mut b = Node::new("bob.os");
    b.ask(
        RM,
        r#"{"RegisterManager": {"resource": "r", "coordinators": "Any"}}"#,
    );
    let (_, _, ctx, _) = b.sent("Hello").expect("hello");
    b.respond(
        ctx,
        &encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
        None,
    );
    let a = b.ask(
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(
            r#"{{"Prepare": {{"tx_id": "{tx}", "resource": "r", "operation": "x", "participants": {PEERS}, "deadline_ms": 30000}}}}"#
        ),
    );
    assert!(a.is_none(), "the vote waits for the manager");
    let (_, _, ctx, _) = b.sent("PrepareTransaction").unwrap();
    b.respond(ctx, &yes(), None);
    // 10 s later it asks alice, which does not answer.
    assert_eq!(b.until_query().node.as_str(), "alice.os");
    let (to, body, ctx, _) = b.sent("QueryOutcome").unwrap();
    assert!(body.contains(tx), "{body}");
    b.fail(to, ctx);
    let to = b.until_query();
    assert_ne!(to.node.as_str(), "alice.os", "then a peer");
    let (to, _, ctx, _) = b.sent("QueryOutcome").unwrap();
    (b, to, ctx)
}

/// After a peer's answer: bob asked no manager to commit or abort, and asks alice next.
fn still_in_doubt_and_asks_alice(b: &mut Node) {
    assert!(
        !b.manager_told("CommitTransaction") && !b.manager_told("AbortTransaction"),
        "a peer's word decided: {:?}",
        b.out
    );
    assert_eq!(
        b.until_query().node.as_str(),
        "alice.os",
        "asks the coordinator"
    );
}

#[test]
fn a_lying_participant_cannot_make_us_commit() {
    let (mut b, to, ctx) = bob_asking_a_peer(TX);
    // Mallory (a listed participant) says Committed, unsigned, while alice has not decided.
    b.respond(ctx, &outcome_body(TX, "Committed", &[]), None);
    assert!(
        !b.out.iter().any(|(t, _, _, _)| t.process == sign_process()),
        "nothing to check"
    );
    still_in_doubt_and_asks_alice(&mut b);
    let _ = to;
    // Alice aborts: bob agrees, and its manager is told to abort.
    let a = b.ask(
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(r#"{{"Abort": {{"tx_id": "{TX}", "resource": "r"}}}}"#),
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Ack {
                outcome: Outcome::Aborted,
                ..
            }))
        ),
        "the coordinator's abort: {a:?}"
    );
    assert!(b.manager_told("AbortTransaction"));
    assert!(!b.manager_told("CommitTransaction"));
}

#[test]
fn a_participant_that_says_aborted_and_then_votes_yes_cannot_make_us_abort() {
    let (mut b, _, ctx) = bob_asking_a_peer(TX);
    b.respond(ctx, &outcome_body(TX, "Aborted", &[]), None);
    still_in_doubt_and_asks_alice(&mut b);
    // Mallory then votes yes and alice commits: bob commits with everyone else.
    let a = b.ask(
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(
            r#"{{"Commit": {{"tx_id": "{TX}", "resource": "r", "signature": "{}"}}}}"#,
            hex(&signed(TX, true))
        ),
    );
    assert!(
        matches!(
            a,
            Some(Ok(Response::Ack {
                outcome: Outcome::Committed,
                ..
            }))
        ),
        "the coordinator's commit: {a:?}"
    );
    assert!(b.manager_told("CommitTransaction"));
    assert!(!b.manager_told("AbortTransaction"));
}

/// Mallory relays `sig` as alice's signed decision `outcome` of TX: bob checks it with its
/// sign process, which says no; bob stays in doubt, counts it, and asks alice.
fn refused_relay(outcome: &str, sig: Vec<u8>) {
    let (mut b, _, ctx) = bob_asking_a_peer(TX);
    b.respond(ctx, &outcome_body(TX, outcome, &sig), None);
    let (to, body, _, blob) = b
        .out
        .iter()
        .find(|(t, _, _, _)| t.process == sign_process())
        .cloned()
        .expect("the signature is checked");
    assert_eq!(to.to_string(), "bob.os@sign:sign:sys");
    assert!(
        body.contains(r#""node":"alice.os@txcoord:p2p-patterns:p2p-patterns.os""#),
        "checked as alice's txcoord's: {body}"
    );
    assert_eq!(
        blob.unwrap(),
        decision_message(TX, outcome == "Committed"),
        "over the decision it claims"
    );
    assert_eq!(b.answer_sign(), 1);
    assert_eq!(b.c.part.forged_decisions, 1);
    still_in_doubt_and_asks_alice(&mut b);
}

#[test]
fn a_forged_signature_is_refused() {
    refused_relay("Committed", vec![7; 64]);
}

#[test]
fn a_signature_of_another_transaction_or_decision_is_refused() {
    // Alice's real signature, of another transaction of hers.
    refused_relay("Committed", signed("alice.os/0e", true));
    // Alice's real signature of this transaction's abort, shown as a commit.
    refused_relay("Committed", signed(TX, false));
    // Alice's real signature of this transaction's commit, shown as an abort: the dangerous
    // direction (a participant holding the signed commit could abort a peer next to it).
    refused_relay("Aborted", signed(TX, true));
    // Another node's signature (mallory's own txcoord) of this very decision.
    let mallorys = keys()
        .sign(
            "mallory.os",
            &signed_bytes(&txcoord_of("mallory.os"), &decision_message(TX, true)),
        )
        .to_vec();
    refused_relay("Committed", mallorys);
}

#[test]
fn a_relayed_signed_decision_is_taken_after_its_check_and_relayed_again() {
    let (mut b, _, ctx) = bob_asking_a_peer(TX);
    // Carol got alice's signed commit and relays it.
    b.respond(ctx, &outcome_body(TX, "Committed", &signed(TX, true)), None);
    assert!(!b.manager_told("CommitTransaction"), "not before the check");
    assert_eq!(b.answer_sign(), 1);
    assert_eq!(b.c.part.forged_decisions, 0);
    assert!(b.manager_told("CommitTransaction"), "{:?}", b.out);
    // Bob shows it to the next participant that asks.
    let a = b.ask(
        "carol.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(r#"{{"QueryOutcome": {{"tx_id": "{TX}"}}}}"#),
    );
    match a {
        Some(Ok(Response::Outcome {
            outcome: Outcome::Committed,
            signature,
            ..
        })) => assert_eq!(signature, signed(TX, true)),
        other => panic!("{other:?}"),
    }
    // Alice's own Commit, later, is acknowledged.
    let a = b.ask(
        "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(r#"{{"Commit": {{"tx_id": "{TX}", "resource": "r"}}}}"#),
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
}

#[test]
fn a_peer_that_has_not_voted_says_aborted_unsigned_and_votes_no() {
    let mut b = Node::new("bob.os");
    b.ask(
        RM,
        r#"{"RegisterManager": {"resource": "r", "coordinators": "Any"}}"#,
    );
    let (_, _, ctx, _) = b.sent("Hello").unwrap();
    b.respond(
        ctx,
        &encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
        None,
    );
    let prepare = format!(
        r#"{{"Prepare": {{"tx_id": "{TX}", "resource": "r", "operation": "x", "participants": {PEERS}, "deadline_ms": 30000}}}}"#
    );
    assert!(b
        .ask("alice.os@txcoord:p2p-patterns:p2p-patterns.os", &prepare)
        .is_none());
    let (_, _, vote, _) = b.sent("PrepareTransaction").unwrap();
    // Carol asks while bob's manager is voting: Aborted, with no signature (nothing was
    // decided), so carol will not take it.
    let a = b.ask(
        "carol.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(r#"{{"QueryOutcome": {{"tx_id": "{TX}"}}}}"#),
    );
    match a {
        Some(Ok(Response::Outcome {
            outcome: Outcome::Aborted,
            signature,
            ..
        })) => assert!(signature.is_empty()),
        other => panic!("{other:?}"),
    }
    // The manager's yes comes back: the vote to alice is no.
    let eff = b.respond(vote, &yes(), None);
    let voted = eff.iter().find_map(|e| match e {
        Effect::Reply { body, .. } => serde_json::from_slice::<ApiResult<Response>>(body).ok(),
        _ => None,
    });
    assert!(
        matches!(voted, Some(Ok(Response::Voted { vote: Vote::No, .. }))),
        "{voted:?}"
    );
    // And so is the answer to alice's next Prepare.
    let a = b.ask("alice.os@txcoord:p2p-patterns:p2p-patterns.os", &prepare);
    assert!(
        matches!(a, Some(Ok(Response::Voted { vote: Vote::No, .. }))),
        "{a:?}"
    );
}

/// The coordinator signs each decision once, before phase two, and the participants get
/// the signature with it; a coordinator that cannot sign sends it unsigned.
#[test]
fn the_coordinator_signs_its_decision_before_phase_two() {
    for sign_works in [true, false] {
        let mut a = Node::new("alice.os");
        let r = a.ask(
            "alice.os@app:app:someone.os",
            r#"{"Start": {"participants": [{"node": "bob.os", "resource": "r"}, {"node": "carol.os", "resource": "r"}]}}"#,
        );
        let Some(Ok(Response::Started { tx_id })) = r else {
            panic!("{r:?}")
        };
        for n in ["bob.os", "carol.os"] {
            let i = a
                .out
                .iter()
                .position(|(to, b, _, _)| to.node.as_str() == n && b.contains("Prepare"))
                .unwrap();
            let (_, _, ctx, _) = a.out.remove(i);
            a.respond(
                ctx,
                format!(r#"{{"Ok":{{"Voted":{{"tx_id":"{tx_id}","vote":"Yes","reason":""}}}}}}"#)
                    .as_bytes(),
                None,
            );
        }
        assert!(
            a.sent("\"Commit\"").is_none(),
            "no Commit before the signature"
        );
        let (to, body, ctx, blob) = a.sent("NetKeySign").expect("a sign request");
        assert_eq!(to.to_string(), "alice.os@sign:sign:sys");
        assert_eq!(body, r#""NetKeySign""#);
        assert_eq!(blob.as_deref(), Some(&decision_message(&tx_id, true)[..]));
        // Asked meanwhile, alice answers Committed (she decided; her word is enough).
        let q = a.ask(
            "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
            &format!(r#"{{"QueryOutcome": {{"tx_id": "{tx_id}"}}}}"#),
        );
        assert!(
            matches!(
                q,
                Some(Ok(Response::Outcome {
                    outcome: Outcome::Committed,
                    ..
                }))
            ),
            "{q:?}"
        );
        if sign_works {
            a.out.push((to, body, ctx, blob));
            assert_eq!(a.answer_sign(), 1);
        } else {
            a.fail(to, ctx);
            assert!(
                a.logs
                    .iter()
                    .any(|(l, m)| *l == Level::Warn && m.contains("sign:sign:sys")),
                "{:?}",
                a.logs
            );
        }
        let want = if sign_works {
            hex(&signed(&tx_id, true))
        } else {
            String::new()
        };
        for _ in 0..2 {
            let (_, body, _, _) = a.sent("\"Commit\"").expect("phase two");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["Commit"]["signature"], want.as_str(), "{body}");
        }
        // The signature is part of the coordinator's answer to participants, too.
        let q = a.ask(
            "carol.os@txcoord:p2p-patterns:p2p-patterns.os",
            &format!(r#"{{"QueryOutcome": {{"tx_id": "{tx_id}"}}}}"#),
        );
        match q {
            Some(Ok(Response::Outcome { signature, .. })) => {
                assert_eq!(hex(&signature), want)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.c.coord.sign_failures, u64::from(!sign_works));
    }
}

/// 50 transactions of alice, each prepared on bob (with carol), while alice is down: bob's
/// termination queries go out as one message per target per round, not one per transaction,
/// with one query in flight per target; once alice is back, her first answer settles all 50.
#[test]
fn fifty_in_doubt_transactions_are_asked_in_batches() {
    let mut b = Node::new("bob.os");
    b.ask(
        RM,
        r#"{"RegisterManager": {"resource": "r", "coordinators": "Any"}}"#,
    );
    let (_, _, ctx, _) = b.sent("Hello").unwrap();
    b.respond(
        ctx,
        &encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
        None,
    );
    let txs: Vec<String> = (0..50)
        .map(|i| format!("alice.os/{:02x}", 0x10 + i))
        .collect();
    for (i, tx) in txs.iter().enumerate() {
        b.now = i as u64 * 20;
        b.ask(
            "alice.os@txcoord:p2p-patterns:p2p-patterns.os",
            &format!(
                r#"{{"Prepare": {{"tx_id": "{tx}", "resource": "r", "operation": "x", "participants": ["bob.os","carol.os"], "deadline_ms": 30000}}}}"#
            ),
        );
        let (_, _, ctx, _) = b.sent("PrepareTransaction").unwrap();
        b.respond(ctx, &yes(), None);
    }
    // Alice is down for 10 minutes (each query times out after 5 s); carol is up but in
    // doubt too (Pending). Pending answers come back 10 ms later.
    let mut pending: BTreeMap<u64, Vec<(Address, Ctx, bool, Vec<String>)>> = BTreeMap::new();
    let mut per_target: BTreeMap<String, (u32, usize)> = BTreeMap::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    let end = 600_000;
    let alice_back = |t: u64| t >= end;
    let mut settled_at = None;
    while b.now < end + 60_000 {
        // Take the queries just sent.
        while let Some((to, body, ctx, _)) = b.sent("QueryOutcome") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let mut ids = vec![v["QueryOutcome"]["tx_id"].as_str().unwrap().to_string()];
            ids.extend(
                v["QueryOutcome"]["more"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string()),
            );
            let n = to.node.to_string();
            assert!(
                in_flight.insert(n.clone()),
                "a second query to {n} while one is in flight"
            );
            let e = per_target.entry(n.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(ids.len());
            let alice = n == "alice.os";
            let at = if alice && !alice_back(b.now) {
                b.now + 5_000
            } else {
                b.now + 10
            };
            pending
                .entry(at)
                .or_default()
                .push((to, ctx, alice && !alice_back(b.now), ids));
        }
        if b.c.part.blocked() == 0 {
            settled_at = Some(b.now);
            break;
        }
        let next_answer = pending.keys().next().copied();
        let next_timer = b.timers.values().min().copied();
        match (next_answer, next_timer) {
            (Some(a), t) if t.is_none_or(|t| a <= t) => {
                b.now = b.now.max(a);
                for (to, ctx, timeout, ids) in pending.remove(&a).unwrap() {
                    in_flight.remove(to.node.as_str());
                    if timeout {
                        b.fail(to, ctx);
                    } else {
                        // Alice (back) answers Committed; carol answers Pending.
                        let outcome = if to.node.as_str() == "alice.os" {
                            "Committed"
                        } else {
                            "Pending"
                        };
                        let more: Vec<String> = ids[1..]
                            .iter()
                            .map(|t| format!(r#"{{"tx_id":"{t}","outcome":"{outcome}"}}"#))
                            .collect();
                        let body = format!(
                            r#"{{"Ok":{{"Outcome":{{"tx_id":"{}","outcome":"{outcome}","more":[{}]}}}}}}"#,
                            ids[0],
                            more.join(",")
                        );
                        b.respond(ctx, body.as_bytes(), None);
                    }
                }
            }
            (_, Some(_)) => {
                b.fire_next();
            }
            _ => break,
        }
        // Managers apply outcomes at once.
        while let Some((_, _, ctx, _)) = b.sent("CommitTransaction") {
            b.respond(ctx, &encode_result(&Ok(ManagerAnswer::Done {})), None);
        }
    }
    let (alice_msgs, alice_max) = per_target["alice.os"];
    let (carol_msgs, carol_max) = per_target["carol.os"];
    eprintln!(
        "50 in-doubt transactions, alice down 600 s: {alice_msgs} queries to alice (largest \
         {alice_max} transactions), {carol_msgs} to carol (largest {carol_max}); settled at \
         {settled_at:?} ms; {} sent in all",
        b.c.part.queries_sent
    );
    assert!(
        settled_at.is_some_and(|t| t <= end + 60_000),
        "all settled once alice is back: {settled_at:?}, blocked {}",
        b.c.part.blocked()
    );
    assert_eq!(b.c.part.blocked(), 0);
    // Rounds: alice's backoff (1 s doubling to 30 s, jittered) plus its 5 s timeout; one
    // query per tx per round would be 50 times as many. The run is deterministic (seed 1):
    // these are the figures docs/txcoord.md states.
    assert_eq!(
        (alice_msgs, alice_max, carol_msgs, carol_max),
        (26, 50, 25, 50),
        "(queries to alice, largest, queries to carol, largest)"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/txcoord.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let said = format!(
        "take {alice_msgs} queries to the coordinator and {carol_msgs} to the one other \
         participant, each carrying all {alice_max}"
    );
    assert!(doc.contains(&said), "docs/txcoord.md should say: {said}");
}

/// A query asks about at most 64 transactions; more are not answered, and each costs the
/// sender's budget like a message; answers are bounded the same way.
#[test]
fn queries_and_answers_are_bounded() {
    let mut a = Node::new("alice.os");
    let more: Vec<String> = (0..200).map(|i| format!("\"alice.os/{i:x}\"")).collect();
    let q = a.ask(
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(
            r#"{{"QueryOutcome": {{"tx_id": "alice.os/ff", "more": [{}]}}}}"#,
            more.join(",")
        ),
    );
    match q {
        Some(Ok(Response::Outcome {
            outcome: Outcome::Aborted,
            more,
            ..
        })) => assert_eq!(more.len(), 63, "answered: the first 63 of `more`"),
        other => panic!("{other:?}"),
    }
    // The budget (burst 2,000) runs out after about 31 such queries.
    let mut refused = 0;
    for _ in 0..40 {
        if let Some(Err(e)) = a.ask(
            "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
            &format!(
                r#"{{"QueryOutcome": {{"tx_id": "alice.os/ff", "more": [{}]}}}}"#,
                more.join(",")
            ),
        ) {
            assert_eq!(e.code, p2p_common::ErrorCode::Overloaded);
            refused += 1;
        }
    }
    assert!(refused >= 8, "{refused} refused");

    // A hostile answer listing 1,000 transactions moves only those we asked about.
    let (mut b, _, ctx) = bob_asking_a_peer(TX);
    let many: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"tx_id":"alice.os/{i:x}","outcome":"Committed","signature":"{}"}}"#,
                hex(&[1; 64])
            )
        })
        .collect();
    let body = format!(
        r#"{{"Ok":{{"Outcome":{{"tx_id":"{TX}","outcome":"Pending","more":[{}]}}}}}}"#,
        many.join(",")
    );
    b.respond(ctx, body.as_bytes(), None);
    assert!(
        !b.out.iter().any(|(t, _, _, _)| t.process == sign_process()),
        "nothing asked about was checked"
    );
    still_in_doubt_and_asks_alice(&mut b);
}

/// An older txcoord asks with a bare `tx_id` and reads `Outcome` without the new fields; an
/// older coordinator's Commit has no signature, and its answer none either.
#[test]
fn older_peers_still_work() {
    let mut a = Node::new("alice.os");
    let q = a.ask(
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        r#"{"QueryOutcome": {"tx_id": "alice.os/01"}}"#,
    );
    assert!(
        matches!(
            q,
            Some(Ok(Response::Outcome {
                outcome: Outcome::Aborted,
                ..
            }))
        ),
        "{q:?}"
    );
    let (mut b, _, ctx) = bob_asking_a_peer(TX);
    b.respond(ctx, &outcome_body(TX, "Pending", &[]), None);
    assert_eq!(b.until_query().node.as_str(), "alice.os");
    let (_, _, ctx, _) = b.sent("QueryOutcome").unwrap();
    // An older alice answers in the old shape: taken (it is the coordinator).
    b.respond(
        ctx,
        format!(r#"{{"Ok":{{"Outcome":{{"tx_id":"{TX}","outcome":"Committed"}}}}}}"#).as_bytes(),
        None,
    );
    assert!(b.manager_told("CommitTransaction"));
}

/// A query's ids must be transaction ids: a bad `tx_id` gets BadRequest, bad ids in `more`
/// are dropped, so an answer never echoes junk.
#[test]
fn query_ids_that_are_not_transaction_ids_are_not_echoed() {
    let mut a = Node::new("alice.os");
    let junk = "x".repeat(4_000);
    let q = a.ask(
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(r#"{{"QueryOutcome": {{"tx_id": "{junk}"}}}}"#),
    );
    match q {
        Some(Err(e)) => {
            assert_eq!(e.code, p2p_common::ErrorCode::BadRequest);
            assert!(e.message.len() < 200, "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    let q = a.ask(
        "bob.os@txcoord:p2p-patterns:p2p-patterns.os",
        &format!(
            r#"{{"QueryOutcome": {{"tx_id": "alice.os/01", "more": ["{junk}", "alice.os/02"]}}}}"#
        ),
    );
    match q {
        Some(Ok(Response::Outcome { more, .. })) => {
            assert_eq!(more.len(), 1);
            assert_eq!(more[0].tx_id, "alice.os/02");
        }
        other => panic!("{other:?}"),
    }
}
