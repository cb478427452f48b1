//! Ephemeral awareness on simulated nodes (docs/sync.md, "Awareness"): alice's caret is
//! seen by bob where she put it, moves with a remote insert before it, expires when she goes
//! quiet, and comes back through the heartbeat after a partition heals, in both network
//! modes; leaving and unsubscribing clear an app's entry. And every entry point refuses what
//! it must: a non-member (who learns nothing), an entry forged for another node, oversized
//! entries, a flood, remote calls of the local operations.

use p2p_common::api::sync::{
    AwarenessCursor, AwarenessEntry, AwarenessPeer, AwarenessState, DocId, Op, Request, Response,
    SyncEvent, WireCursor, MAX_AWARENESS_PER_NODE,
};
use p2p_common::api::{encode, ApiError, ErrorCode};
use p2p_common::ProcessId;
use p2p_sim::net::NetConfig;
use p2p_sim::scenarios::sync::{answer, ask, cluster, setup, PROC};
use p2p_sim::{Mode, Sim, SimConfig};
use sync::awareness::TTL_MS;

fn doc() -> DocId {
    "alice.os/notes".parse().unwrap()
}

fn sync_pid() -> ProcessId {
    ProcessId::parse("sync:p2p-patterns:p2p-patterns.os").unwrap()
}

/// alice (creator), bob and charlie hold the document; dave is no member.
fn three_and_an_outsider(seed: u64, mode: Mode) -> Sim {
    let mut cfg = SimConfig::new(seed, 4);
    cfg.net = NetConfig::for_mode(mode);
    let mut sim = cluster(cfg, doc(), 3);
    setup(&mut sim, 3).unwrap();
    sim
}

fn call(sim: &mut Sim, i: usize, req: &Request, ms: u64) -> Result<Response, ApiError> {
    let h = ask(sim, i, req);
    sim.run_for(ms).unwrap();
    answer(sim, h).expect("answered")
}

fn as_peer(
    sim: &mut Sim,
    from: usize,
    to: usize,
    req: &Request,
) -> Option<Result<Response, ApiError>> {
    let to = sim.addr(to, PROC);
    let h = sim.request_from(from, sync_pid(), &to, encode(req), 30);
    sim.run_for(500).unwrap();
    answer(sim, h)
}

fn name(n: &str) -> Option<AwarenessState> {
    Some([("name".to_string(), n.to_string())].into())
}

fn set(sim: &mut Sim, i: usize, cursor: Option<AwarenessCursor>, state: Option<AwarenessState>) {
    let r = call(
        sim,
        i,
        &Request::SetAwareness {
            doc: doc(),
            cursor,
            state,
            utf16: false,
        },
        50,
    );
    assert_eq!(r, Ok(Response::AwarenessSet {}));
}

fn peers(sim: &mut Sim, i: usize) -> Vec<AwarenessPeer> {
    match call(
        sim,
        i,
        &Request::GetAwareness {
            doc: doc(),
            utf16: false,
        },
        10,
    ) {
        Ok(Response::Awareness(v)) => {
            assert_eq!(v.doc, doc());
            v.peers
        }
        other => panic!("{other:?}"),
    }
}

/// node `of`'s entries as node `i` sees them.
fn of(sim: &mut Sim, i: usize, of: &str) -> Vec<AwarenessPeer> {
    peers(sim, i)
        .into_iter()
        .filter(|p| p.node.as_str() == of)
        .collect()
}

fn edit(sim: &mut Sim, i: usize, op: &str, pos: u32, text: &str) {
    let r = call(
        sim,
        i,
        &Request::Edit {
            doc: doc(),
            op_id: op.into(),
            ops: vec![Op::Insert {
                pos,
                text: text.into(),
            }],
            at: None,
            utf16: false,
        },
        50,
    );
    assert!(matches!(r, Ok(Response::Edited(_))), "{r:?}");
}

/// Run in steps of 100 ms until `ok` holds (at most `ms`); whether it did.
fn within(sim: &mut Sim, ms: u64, mut ok: impl FnMut(&mut Sim) -> bool) -> bool {
    for _ in 0..ms / 100 {
        if ok(sim) {
            return true;
        }
        sim.run_for(100).unwrap();
    }
    ok(sim)
}

fn caret(p: u32) -> Option<AwarenessCursor> {
    Some(AwarenessCursor { anchor: p, head: p })
}

fn story(mode: Mode, seed: u64) {
    let mut sim = three_and_an_outsider(seed, mode);
    sim.add_app(
        1,
        p2p_sim::sim::app_process(),
        p2p_sim::sim::AppSpec::granting_all(),
    );
    assert_eq!(
        call(&mut sim, 1, &Request::Subscribe { doc: Some(doc()) }, 100),
        Ok(Response::Subscribed {})
    );
    edit(&mut sim, 0, "a1", 0, "hello world");
    assert!(within(&mut sim, 10_000, |s| s
        .core::<sync::core::SyncCore>(1, PROC)
        .and_then(|c| c.text(&doc()))
        .as_deref()
        == Some("hello world")));
    // alice selects "world" (anchor 6, head 11).
    set(
        &mut sim,
        0,
        Some(AwarenessCursor {
            anchor: 6,
            head: 11,
        }),
        name("Alice"),
    );
    let seen_at = |sim: &mut Sim, i: usize, c: Option<AwarenessCursor>| {
        let p = of(sim, i, "alice.os");
        p.len() == 1 && p[0].cursor == c && p[0].state == name("Alice")
    };
    let world = Some(AwarenessCursor {
        anchor: 6,
        head: 11,
    });
    assert!(
        within(&mut sim, 11_000, |s| seen_at(s, 1, world)),
        "{mode:?}: bob sees alice's selection: {:?}",
        peers(&mut sim, 1)
    );
    let p = of(&mut sim, 1, "alice.os");
    assert_eq!(p[0].process, p2p_sim::sim::app_process().to_string());
    assert!(p[0].age_ms < 11_000, "{p:?}");
    // Her own node lists her entry too.
    assert!(seen_at(&mut sim, 0, world));
    // charlie inserts before it: bob sees the selection moved with the text.
    edit(&mut sim, 2, "c1", 0, "Oh, ");
    let moved = Some(AwarenessCursor {
        anchor: 10,
        head: 15,
    });
    assert!(
        within(&mut sim, 10_000, |s| seen_at(s, 1, moved)
            && seen_at(s, 0, moved)),
        "{mode:?}: the selection moves with charlie's insert: {:?}",
        peers(&mut sim, 1)
    );
    let events = |sim: &Sim| -> usize {
        sim.node(1)
            .app_messages
            .iter()
            .filter_map(|m| serde_json::from_slice::<SyncEvent>(&m.body).ok())
            .filter(|e| matches!(e, SyncEvent::AwarenessChanged { node, .. } if node.as_str() == "alice.os"))
            .count()
    };
    let before = events(&sim);
    assert!(before >= 1, "{mode:?}: bob's app heard of alice's entry");
    // alice goes quiet: 30 s after her last set the entry is gone at bob's (and hers).
    assert!(
        within(&mut sim, TTL_MS + 2_000, |s| of(s, 1, "alice.os")
            .is_empty()),
        "{mode:?}: alice's entry expires at bob's"
    );
    assert!(of(&mut sim, 0, "alice.os").is_empty());
    assert!(
        events(&sim) > before,
        "{mode:?}: bob's app heard of the expiry"
    );

    // A partition: alice keeps her caret set (renewing every 10 s, as an editor does) and
    // moves it; bob's copy expires, and the heartbeat brings it back after the heal.
    set(&mut sim, 0, caret(3), name("Alice"));
    assert!(within(&mut sim, 11_000, |s| seen_at(s, 1, caret(3))));
    sim.partition(&[vec![0], vec![1, 2, 3]]);
    for k in 0..5 {
        set(&mut sim, 0, caret(4 + k), name("Alice"));
        sim.run_for(10_000).unwrap();
    }
    assert!(
        of(&mut sim, 1, "alice.os").is_empty(),
        "{mode:?}: cut off for 50 s, alice's entry expired at bob's"
    );
    sim.heal();
    let mut renewals = 0;
    let back = within(&mut sim, 40_000, |s| {
        renewals += 1;
        if renewals % 100 == 0 {
            set(s, 0, caret(8), name("Alice"));
        }
        seen_at(s, 1, caret(8))
    });
    assert!(
        back,
        "{mode:?}: after the heal bob sees alice's caret again: {:?}",
        peers(&mut sim, 1)
    );

    // Clearing removes it at once everywhere.
    set(&mut sim, 0, None, None);
    assert!(within(&mut sim, 11_000, |s| of(s, 1, "alice.os").is_empty()));
    assert!(of(&mut sim, 0, "alice.os").is_empty());
    // Leaving clears bob's own entries at the others.
    set(&mut sim, 1, caret(1), name("Bob"));
    assert!(within(&mut sim, 11_000, |s| of(s, 0, "bob.os").len() == 1));
    assert_eq!(
        call(&mut sim, 1, &Request::Leave { doc: doc() }, 100),
        Ok(Response::Left {})
    );
    assert!(
        within(&mut sim, 11_000, |s| of(s, 0, "bob.os").is_empty()),
        "{mode:?}: bob left; his entry is gone at alice's"
    );
    // Unsubscribing clears the app's entries: charlie's app.
    assert_eq!(
        call(&mut sim, 2, &Request::Subscribe { doc: None }, 100),
        Ok(Response::Subscribed {})
    );
    set(&mut sim, 2, caret(0), name("Charlie"));
    assert!(within(&mut sim, 11_000, |s| of(s, 0, "charlie.os").len() == 1));
    assert_eq!(
        call(&mut sim, 2, &Request::Unsubscribe {}, 100),
        Ok(Response::Unsubscribed {})
    );
    assert!(
        within(&mut sim, 11_000, |s| of(s, 0, "charlie.os").is_empty()),
        "{mode:?}: charlie's app unsubscribed; its entry is gone"
    );
}

#[test]
fn a_caret_is_seen_moves_with_the_text_expires_and_heals_realistic() {
    story(Mode::Realistic, 1);
}

#[test]
fn a_caret_is_seen_moves_with_the_text_expires_and_heals_hostile() {
    story(Mode::Hostile, 2);
}

fn entry(node: &str, process: &str, clock: u64) -> AwarenessEntry {
    AwarenessEntry {
        node: node.parse().unwrap(),
        process: process.into(),
        clock,
        age_ms: 0,
        cursor: None,
        state: name("x"),
    }
}

fn msg(entries: Vec<AwarenessEntry>) -> Request {
    Request::Awareness {
        doc: doc(),
        entries,
    }
}

fn code(r: Option<Result<Response, ApiError>>) -> ErrorCode {
    match r {
        Some(Err(e)) => e.code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_non_member_learns_nothing_and_is_sent_nothing() {
    let mut sim = three_and_an_outsider(3, Mode::Realistic);
    set(&mut sim, 0, caret(0), name("Alice"));
    set(&mut sim, 1, caret(0), name("Bob"));
    sim.run_for(12_000).unwrap();
    // Flushes and heartbeats went to the holders, and nothing at all to dave's node.
    assert!(sim
        .stats
        .per_type
        .get("Awareness")
        .is_some_and(|c| c.msgs >= 4));
    let to_dave: Vec<&String> = sim
        .stats
        .per_link
        .keys()
        .filter(|k| k.ends_with("-> dave.os"))
        .collect();
    assert!(to_dave.is_empty(), "{to_dave:?}");
    // dave (no member) sends awareness for the document and for one that does not exist:
    // the same answer, word for word.
    let real = as_peer(&mut sim, 3, 0, &msg(vec![entry("dave.os", "p:p:x.os", 1)]));
    let missing = as_peer(
        &mut sim,
        3,
        0,
        &Request::Awareness {
            doc: "alice.os/nothing".parse().unwrap(),
            entries: vec![entry("dave.os", "p:p:x.os", 1)],
        },
    );
    match (real, missing) {
        (Some(Err(a)), Some(Err(b))) => {
            assert_eq!(a.code, ErrorCode::NotFound);
            assert_eq!(a.message.replace("notes", "nothing"), b.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(of(&mut sim, 0, "dave.os").is_empty());
    assert_eq!(
        call(
            &mut sim,
            3,
            &Request::GetAwareness {
                doc: doc(),
                utf16: false
            },
            10
        )
        .unwrap_err()
        .code,
        ErrorCode::NotFound
    );
}

#[test]
fn forged_oversized_and_flooding_awareness_is_refused() {
    let mut sim = three_and_an_outsider(4, Mode::Realistic);
    // bob speaks for charlie: refused, and charlie has no entry at alice's.
    let r = as_peer(
        &mut sim,
        1,
        0,
        &msg(vec![
            entry("bob.os", "p:p:x.os", 1),
            entry("charlie.os", "p:p:x.os", 1),
        ]),
    );
    assert_eq!(code(r), ErrorCode::BadRequest);
    assert!(
        peers(&mut sim, 0).is_empty(),
        "nothing of the forged message was kept"
    );
    // Oversized: a state over 1 KiB, too many entries, a cursor that is no cursor, a body
    // over the protocol limit.
    let mut big = entry("bob.os", "p:p:x.os", 1);
    big.state = Some([("k".to_string(), "v".repeat(2_000))].into());
    assert_eq!(
        code(as_peer(&mut sim, 1, 0, &msg(vec![big]))),
        ErrorCode::BadRequest
    );
    let many = (0..=MAX_AWARENESS_PER_NODE)
        .map(|i| entry("bob.os", &format!("p{i}:p:x.os"), 1))
        .collect();
    assert_eq!(
        code(as_peer(&mut sim, 1, 0, &msg(many))),
        ErrorCode::BadRequest
    );
    let mut garbage = entry("bob.os", "p:p:x.os", 1);
    garbage.cursor = Some(WireCursor {
        anchor: "ff".repeat(40),
        head: "00".into(),
    });
    assert_eq!(
        code(as_peer(&mut sim, 1, 0, &msg(vec![garbage]))),
        ErrorCode::BadRequest
    );
    let mut huge = entry("bob.os", "p:p:x.os", 1);
    huge.process = "p".repeat(300 << 10);
    assert_eq!(
        code(as_peer(&mut sim, 1, 0, &msg(vec![huge]))),
        ErrorCode::TooLarge
    );
    assert!(peers(&mut sim, 0).is_empty());
    // A flood: 300 messages at once, each a new app process. The budget refuses most; at most
    // MAX_AWARENESS_PER_NODE entries of bob's are ever held; alice still answers.
    let to = sim.addr(0, PROC);
    let hs: Vec<u64> = (0..300)
        .map(|i| {
            let body = encode(&msg(vec![entry("bob.os", &format!("p{i}:p:x.os"), 1)]));
            sim.request_from(1, sync_pid(), &to, body, 30)
        })
        .collect();
    sim.run_for(1_000).unwrap();
    let overloaded = hs
        .iter()
        .filter(|h| matches!(answer(&sim, **h), Some(Err(e)) if e.code == ErrorCode::Overloaded))
        .count();
    assert!(
        overloaded >= 200,
        "{overloaded} of 300 refused as over budget"
    );
    assert_eq!(of(&mut sim, 0, "bob.os").len(), MAX_AWARENESS_PER_NODE);
    set(&mut sim, 0, caret(0), name("Alice"));
    assert_eq!(of(&mut sim, 0, "alice.os").len(), 1);
    // Forged entries expire like any other: 30 s later nothing of bob's is left.
    sim.run_for(TTL_MS + 1_000).unwrap();
    assert!(of(&mut sim, 0, "bob.os").is_empty());
}

#[test]
fn the_local_api_refuses_remote_callers_and_bad_input() {
    let mut sim = three_and_an_outsider(5, Mode::Realistic);
    let set_req = Request::SetAwareness {
        doc: doc(),
        cursor: caret(0),
        state: None,
        utf16: false,
    };
    // Another node's sync (or any process there) calling the local operations: Forbidden.
    assert_eq!(
        code(as_peer(&mut sim, 1, 0, &set_req)),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(as_peer(
            &mut sim,
            1,
            0,
            &Request::GetAwareness {
                doc: doc(),
                utf16: false
            }
        )),
        ErrorCode::Forbidden
    );
    // A local app sending the protocol message: Forbidden.
    assert_eq!(
        call(
            &mut sim,
            0,
            &msg(vec![entry("alice.os", "p:p:x.os", 1)]),
            10
        )
        .unwrap_err()
        .code,
        ErrorCode::Forbidden
    );
    // Unknown document; a position past the end; malformed JSON; an unknown field.
    let e = call(
        &mut sim,
        0,
        &Request::SetAwareness {
            doc: "alice.os/nothing".parse().unwrap(),
            cursor: None,
            state: name("x"),
            utf16: false,
        },
        10,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = call(
        &mut sim,
        0,
        &Request::SetAwareness {
            doc: doc(),
            cursor: caret(5),
            state: None,
            utf16: false,
        },
        10,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("past the text's end"), "{e}");
    let to = sim.addr(0, PROC);
    for body in [
        &b"{\"SetAwareness\": {\"doc\": "[..],
        br#"{"SetAwareness": {"doc": "alice.os/notes", "cursor": null, "state": null, "colour": 1}}"#,
        br#"{"GetAwareness": {"doc": "alice.os/notes", "utf16": "yes"}}"#,
    ] {
        let h = sim.request(0, &to, body.to_vec(), 30);
        sim.run_for(10).unwrap();
        assert_eq!(code(answer(&sim, h)), ErrorCode::BadRequest);
    }
}
