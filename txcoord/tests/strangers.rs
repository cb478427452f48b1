//! Nodes that are not part of a transaction, or not trusted with a resource: a coordinator a
//! manager did not name is refused before the manager is asked (issue-14 review, defect 3),
//! and a node that is not a participant learns no outcome from the coordinator (defect 7).

use p2p_common::api::encode_result;
use p2p_common::api::txcoord::{Coordinators, ManagerAnswer, Outcome, Response, Vote};
use p2p_common::api::{ApiResult, ErrorCode};
use p2p_common::service::{Effect, Input, Now, Service};
use p2p_common::{Address, NodeId, Records};
use txcoord::core::{Ctx, Eff, TxCoord};

mod support;
use support::{ask, respond, sends};

fn boot(node: &str, records: Records) -> TxCoord {
    let mut c = txcoord::core::new(Address::ours(&NodeId::parse(node).unwrap(), "txcoord"));
    c.handle(
        Now::at(0),
        Input::Start {
            persisted: None,
            records,
            seed: 1,
        },
    );
    c
}

fn core(node: &str) -> TxCoord {
    boot(node, Records::new())
}

/// Forced writes of `eff`: (key, value).
fn forced(eff: &[Eff]) -> Vec<(String, Vec<u8>)> {
    eff.iter()
        .filter_map(|e| match e {
            Effect::Store(b) if b.forced => Some(
                b.ops
                    .iter()
                    .filter_map(|(k, v)| Some((String::from_utf8_lossy(k).to_string(), v.clone()?)))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

const RM: &str = "bob.os@rm:app:someone.os";
const TX: &str = "@txcoord:p2p-patterns:p2p-patterns.os";

/// Registers `rm` for `res` with `coordinators` (JSON, or None to leave it out); the
/// answer, and the forced writes of the registration.
fn register(
    c: &mut TxCoord,
    res: &str,
    coordinators: Option<&str>,
) -> (ApiResult<Response>, Vec<(String, Vec<u8>)>) {
    let body = match coordinators {
        Some(j) => {
            format!(r#"{{"RegisterManager": {{"resource": "{res}", "coordinators": {j}}}}}"#)
        }
        None => format!(r#"{{"RegisterManager": {{"resource": "{res}"}}}}"#),
    };
    let (eff, a) = ask(c, RM, &body);
    if let Some(a) = a {
        return (a, vec![]);
    }
    let (_, hello, ctx) = sends(&eff).pop().expect("a hello");
    assert!(hello.contains("Hello"), "{hello}");
    let eff = respond(
        c,
        ctx,
        encode_result(&Ok(ManagerAnswer::InDoubt { tx_ids: vec![] })),
    );
    let a = eff
        .iter()
        .find_map(|e| match e {
            Effect::Reply { body, .. } => Some(serde_json::from_slice(body).unwrap()),
            _ => None,
        })
        .expect("registered");
    (a, forced(&eff))
}

/// A Prepare of `tx` from txcoord on the node `tx` names: the manager messages it caused
/// and the vote, if txcoord answered at once.
fn prepare(c: &mut TxCoord, tx: &str, res: &str) -> (Vec<String>, Option<ApiResult<Response>>) {
    let coord = tx.split('/').next().unwrap();
    let body = format!(
        r#"{{"Prepare": {{"tx_id": "{tx}", "resource": "{res}", "operation": "owner=x", "participants": ["bob.os"], "deadline_ms": 30000}}}}"#
    );
    let (eff, a) = ask(c, &format!("{coord}{TX}"), &body);
    (sends(&eff).into_iter().map(|s| s.1).collect(), a)
}

fn refused(a: &Option<ApiResult<Response>>, coord: &str) -> bool {
    matches!(a, Some(Ok(Response::Voted { vote: Vote::No, reason, .. }))
        if reason.contains(&format!("coordinated by {coord}")))
}

/// Defect 3: mallory.os names itself as the coordinator of its own transaction id, so the
/// sender check passes; the manager did not name it, so the Prepare is voted no before the
/// manager is asked, and the refusal takes no slot of the participant table.
#[test]
fn a_coordinator_the_manager_did_not_name_is_refused_before_the_manager_is_asked() {
    let mut c = core("bob.os");
    let (a, _) = register(&mut c, "kv", Some(r#"{"Only": ["alice.os", "bob.os"]}"#));
    assert!(
        matches!(&a, Ok(Response::ManagerRegistered { coordinators: Coordinators::Only(v), .. })
            if v.len() == 2),
        "{a:?}"
    );
    let (to_manager, a) = prepare(&mut c, "mallory.os/01", "kv");
    assert!(
        to_manager.is_empty(),
        "the manager was asked: {to_manager:?}"
    );
    assert!(refused(&a, "mallory.os"), "{a:?}");
    assert_eq!(c.part.entries(), 0, "a refusal takes no table slot");
    // Thousands of them still take none, and alice's Prepare goes to the manager.
    for k in 0..3_000 {
        let (m, a) = prepare(&mut c, &format!("m{}.os/{k:x}", k % 7), "kv");
        assert!(
            m.is_empty() && refused(&a, &format!("m{}.os", k % 7)),
            "{a:?}"
        );
    }
    assert_eq!(c.part.entries(), 0);
    let (to_manager, a) = prepare(&mut c, "alice.os/02", "kv");
    assert!(a.is_none(), "answered once the manager voted: {a:?}");
    assert!(
        to_manager
            .iter()
            .any(|m| m.contains("PrepareTransaction") && m.contains("alice.os/02")),
        "{to_manager:?}"
    );
}

/// Left out, `coordinators` is this node only: bob.os's own transactions reach the manager,
/// another node's do not; `Any` admits every node; registering again replaces the list.
#[test]
fn the_default_is_this_node_only_and_any_or_a_new_list_widens_it() {
    let mut c = core("bob.os");
    let (a, _) = register(&mut c, "kv", None);
    assert!(
        matches!(&a, Ok(Response::ManagerRegistered { coordinators: Coordinators::Only(v), .. })
            if v.len() == 1 && v[0].as_str() == "bob.os"),
        "{a:?}"
    );
    let (m, a) = prepare(&mut c, "alice.os/01", "kv");
    assert!(m.is_empty() && refused(&a, "alice.os"), "{a:?}");
    let (m, _) = prepare(&mut c, "bob.os/02", "kv");
    assert!(m.iter().any(|m| m.contains("bob.os/02")), "{m:?}");
    // Another resource of the same app is not widened by this one.
    let _ = register(&mut c, "kv2", Some(r#""Any""#));
    let (m, _) = prepare(&mut c, "mallory.os/03", "kv2");
    assert!(m.iter().any(|m| m.contains("mallory.os/03")), "{m:?}");
    let (m, a) = prepare(&mut c, "mallory.os/04", "kv");
    assert!(m.is_empty() && refused(&a, "mallory.os"), "{a:?}");
    // Registering again with a list replaces the default.
    let _ = register(&mut c, "kv", Some(r#"{"Only": ["alice.os"]}"#));
    let (m, _) = prepare(&mut c, "alice.os/05", "kv");
    assert!(m.iter().any(|m| m.contains("alice.os/05")), "{m:?}");
    let (m, a) = prepare(&mut c, "bob.os/06", "kv");
    assert!(m.is_empty() && refused(&a, "bob.os"), "{a:?}");
}

/// The list is on disk with the registration: a restarted txcoord applies it. An older
/// record (the bare address) gets the default.
#[test]
fn the_list_survives_a_restart_and_an_older_record_gets_the_default() {
    let mut c = core("bob.os");
    let (_, writes) = register(&mut c, "kv", Some(r#"{"Only": ["alice.os"]}"#));
    let records: Records = writes
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect();
    assert!(records.contains_key(&b"m/kv"[..]), "{records:?}");
    let mut c = boot("bob.os", records);
    let (m, _) = prepare(&mut c, "alice.os/01", "kv");
    assert!(m.iter().any(|m| m.contains("alice.os/01")), "{m:?}");
    let (m, a) = prepare(&mut c, "carol.os/02", "kv");
    assert!(m.is_empty() && refused(&a, "carol.os"), "{a:?}");

    let mut old = Records::new();
    old.insert(b"m/kv".to_vec(), RM.as_bytes().to_vec());
    let mut c = boot("bob.os", old);
    let (m, a) = prepare(&mut c, "alice.os/03", "kv");
    assert!(m.is_empty() && refused(&a, "alice.os"), "{a:?}");
    let (m, _) = prepare(&mut c, "bob.os/04", "kv");
    assert!(m.iter().any(|m| m.contains("bob.os/04")), "{m:?}");
}

/// Bad lists get clear errors.
#[test]
fn a_bad_coordinators_list_gets_a_clear_error() {
    let mut c = core("bob.os");
    let many: Vec<String> = (0..65).map(|i| format!("\"n{i}.os\"")).collect();
    for (list, want) in [
        (r#"{"Only": []}"#.to_string(), "1..=64 nodes"),
        (
            format!(r#"{{"Only": [{}]}}"#, many.join(",")),
            "1..=64 nodes",
        ),
        (
            r#"{"Only": ["not a node"]}"#.to_string(),
            "not a txcoord request",
        ),
        (r#""Everyone""#.to_string(), "unknown variant `Everyone`"),
    ] {
        let (a, _) = register(&mut c, "kv", Some(&list));
        let e = a.expect_err("refused");
        assert_eq!(e.code, ErrorCode::BadRequest, "{list}");
        assert!(e.message.contains(want), "{list}: {e}");
    }
}

/// The review's case: with the docs' example store as bob.os's manager (it votes yes for
/// anyone), a stranger's transaction must not reach it, so it cannot write into the store.
#[test]
fn a_stranger_node_cannot_write_into_the_docs_example_store() {
    use p2p_common::txcoord::{answer, Manager};
    use std::collections::BTreeMap;
    #[derive(Default)]
    struct Store {
        prepared: BTreeMap<(String, String), (String, String)>,
        data: BTreeMap<(String, String), String>,
    }
    impl Manager for Store {
        fn prepare(&mut self, tx: &str, res: &str, _c: &NodeId, op: &str) -> Result<(), String> {
            let (k, v) = op.split_once('=').ok_or("operation must be key=value")?;
            self.prepared
                .insert((tx.into(), res.into()), (k.into(), v.into()));
            Ok(())
        }
        fn commit(&mut self, tx: &str, res: &str) {
            if let Some((k, v)) = self.prepared.remove(&(tx.into(), res.into())) {
                self.data.insert((res.into(), k), v);
            }
        }
        fn abort(&mut self, tx: &str, res: &str) {
            self.prepared.remove(&(tx.into(), res.into()));
        }
        fn in_doubt(&self) -> Vec<(String, String)> {
            self.prepared.keys().cloned().collect()
        }
    }
    let mut store = Store::default();
    let mut c = core("bob.os");
    let (eff, _) = ask(&mut c, RM, r#"{"RegisterManager": {"resource": "kv"}}"#);
    let (_, _, ctx) = sends(&eff).pop().expect("hello");
    respond(
        &mut c,
        ctx,
        answer(&mut store, br#"{"Hello": {"resource": "kv"}}"#).unwrap(),
    );
    let mallory = format!("mallory.os{TX}");
    let (eff, _) = ask(
        &mut c,
        &mallory,
        r#"{"Prepare": {"tx_id": "mallory.os/01", "resource": "kv", "operation": "owner=mallory", "participants": ["bob.os"], "deadline_ms": 30000}}"#,
    );
    for (_, body, ctx) in sends(&eff) {
        respond(&mut c, ctx, answer(&mut store, body.as_bytes()).unwrap());
    }
    let (eff, _) = ask(
        &mut c,
        &mallory,
        r#"{"Commit": {"tx_id": "mallory.os/01", "resource": "kv"}}"#,
    );
    for (_, body, _) in sends(&eff) {
        answer(&mut store, body.as_bytes());
    }
    assert!(
        store.data.is_empty(),
        "a stranger node wrote into bob's store: {:?}",
        store.data
    );
}

/// Runs a transaction from alice.os's app with bob.os and carol.os to its end, bob voting
/// `bob_votes`; its id, and alice's writes (key, value or None for a delete).
fn finished_tx(c: &mut TxCoord, bob_votes: Vote) -> (String, Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let (eff, a) = ask(
        c,
        "alice.os@app:app:someone.os",
        r#"{"Start": {"participants": [{"node": "bob.os", "resource": "r"}, {"node": "carol.os", "resource": "r"}]}}"#,
    );
    let Some(Ok(Response::Started { tx_id })) = a else {
        panic!("{a:?}")
    };
    let mut writes = Vec::new();
    let mut keep = |eff: &[Eff]| {
        for e in eff {
            if let Effect::Store(b) = e {
                writes.extend(b.ops.iter().cloned());
            }
        }
    };
    let mut pending: Vec<(Address, String, Ctx)> = sends(&eff);
    let mut rounds = 0;
    while let Some((to, body, ctx)) = pending.pop() {
        rounds += 1;
        assert!(rounds < 50, "no end");
        let answer = if body.starts_with(r#"{"Prepare""#) {
            let vote = if to.node.as_str() == "bob.os" {
                bob_votes
            } else {
                Vote::Yes
            };
            format!(r#"{{"Ok":{{"Voted":{{"tx_id":"{tx_id}","vote":"{vote:?}","reason":""}}}}}}"#)
        } else if body.starts_with(r#"{"Commit""#) || body.starts_with(r#"{"Abort""#) {
            let o = if body.starts_with(r#"{"Commit""#) {
                "Committed"
            } else {
                "Aborted"
            };
            format!(r#"{{"Ok":{{"Ack":{{"tx_id":"{tx_id}","outcome":"{o}"}}}}}}"#)
        } else {
            // The decision event to the app.
            "{}".to_string()
        };
        let eff = respond(c, ctx, answer.into_bytes());
        keep(&eff);
        pending.extend(sends(&eff));
    }
    assert_eq!(c.coord.active(), 0, "{tx_id} ended");
    (tx_id, writes)
}

fn query(c: &mut TxCoord, from: &str, tx: &str) -> Option<ApiResult<Response>> {
    ask(
        c,
        &format!("{from}{TX}"),
        &format!(r#"{{"QueryOutcome": {{"tx_id": "{tx}"}}}}"#),
    )
    .1
}

fn outcome(a: &Option<ApiResult<Response>>) -> Option<Outcome> {
    match a {
        Some(Ok(Response::Outcome { outcome, .. })) => Some(*outcome),
        _ => None,
    }
}

fn forbidden(a: &Option<ApiResult<Response>>) -> bool {
    matches!(a, Some(Err(e)) if e.code == ErrorCode::Forbidden && e.message.contains("not a participant"))
}

/// Defect 7: a node that is not a participant asks the coordinator about a finished
/// transaction; it gets Forbidden, as for an open one, while the participants get the
/// outcome, also after a restart (the node list is in the end record).
#[test]
fn a_stranger_learns_no_finished_outcome() {
    let mut c = core("alice.os");
    let (committed, mut writes) = finished_tx(&mut c, Vote::Yes);
    let (aborted, more) = finished_tx(&mut c, Vote::No);
    writes.extend(more);
    for (tx, want) in [
        (&committed, Outcome::Committed),
        (&aborted, Outcome::Aborted),
    ] {
        let a = query(&mut c, "mallory.os", tx);
        assert!(forbidden(&a), "mallory asking about {tx}: {a:?}");
        for p in ["bob.os", "carol.os"] {
            assert_eq!(
                outcome(&query(&mut c, p, tx)),
                Some(want),
                "{p} asking about {tx}"
            );
        }
    }
    // No record: presumed abort, to anyone.
    assert_eq!(
        outcome(&query(&mut c, "mallory.os", "alice.os/77")),
        Some(Outcome::Aborted)
    );
    // After a restart, from the end records.
    let mut disk = Records::new();
    for (k, v) in writes {
        match v {
            Some(v) => disk.insert(k, v),
            None => disk.remove(&k),
        };
    }
    let mut c = boot("alice.os", disk.clone());
    assert!(forbidden(&query(&mut c, "mallory.os", &committed)));
    assert_eq!(
        outcome(&query(&mut c, "carol.os", &committed)),
        Some(Outcome::Committed)
    );
    // An end record written before the nodes were kept answers anyone, as it did.
    let key = format!("h/{committed}").into_bytes();
    let mut old: serde_json::Value = serde_json::from_slice(&disk[&key]).unwrap();
    assert!(old["nodes"].is_array(), "{old}");
    old.as_object_mut().unwrap().remove("nodes");
    disk.insert(key, serde_json::to_vec(&old).unwrap());
    let mut c = boot("alice.os", disk);
    assert_eq!(
        outcome(&query(&mut c, "mallory.os", &committed)),
        Some(Outcome::Committed)
    );
}
