//! Undo and redo through sync's local API on simulated nodes, in both network modes: two
//! apps on alice edit one document; app A's undo takes back A's last edit only (never B's,
//! never bob's), redo restores it, both replicate to bob, an acknowledged undo survives a
//! crash (its history does not: it starts empty after a restart), a retried undo applies
//! once, and a remote node may not undo.

use p2p_common::api::sync::{DocId, Op, Request, Response};
use p2p_common::api::{decode_response, encode, ErrorCode};
use p2p_common::ProcessId;
use p2p_sim::scenarios::sync::{cluster, setup, PROC};
use p2p_sim::{AppOutcome, Mode, NetConfig, Sim, SimConfig};
use sync::core::SyncCore;

fn doc() -> DocId {
    "alice.os/notes".parse().unwrap()
}

fn app(name: &str) -> ProcessId {
    ProcessId::parse(&format!("{name}:my-pkg:pub.os")).unwrap()
}

fn ins(pos: u32, text: &str) -> Op {
    Op::Insert {
        pos,
        text: text.into(),
    }
}

fn edit(op_id: &str, ops: Vec<Op>) -> Request {
    Request::Edit {
        doc: doc(),
        op_id: op_id.into(),
        ops,
        at: None,
        utf16: false,
    }
}

fn undo(op_id: Option<&str>) -> Request {
    Request::Undo {
        doc: doc(),
        op_id: op_id.map(Into::into),
    }
}

fn redo() -> Request {
    Request::Redo {
        doc: doc(),
        op_id: None,
    }
}

/// `req` from process `by` on node `i` to node `to`'s sync, answered within `ms`.
fn call_to(
    sim: &mut Sim,
    i: usize,
    by: &ProcessId,
    to: usize,
    req: &Request,
    ms: u64,
) -> Result<Response, p2p_common::ApiError> {
    let addr = sim.addr(to, PROC);
    let h = sim.request_from(i, by.clone(), &addr, encode(req), 30);
    sim.run_for(ms).unwrap();
    match sim.outcome(h) {
        Some(AppOutcome::Response(body)) => decode_response::<Response>(body),
        other => panic!("no answer to {req:?}: {other:?}"),
    }
}

fn call(sim: &mut Sim, by: &ProcessId, req: &Request) -> Result<Response, p2p_common::ApiError> {
    call_to(sim, 0, by, 0, req, 200)
}

fn text(sim: &Sim, i: usize) -> String {
    sim.core::<SyncCore>(i, PROC)
        .and_then(|c| c.text(&doc()))
        .unwrap_or_default()
}

fn edited(r: Result<Response, p2p_common::ApiError>) -> p2p_common::api::sync::Edited {
    match r {
        Ok(Response::Edited(e)) => e,
        other => panic!("{other:?}"),
    }
}

/// Run until bob holds what alice holds (both modes heal within seconds).
fn settle(sim: &mut Sim) {
    for _ in 0..60 {
        sim.run_for(1_000).unwrap();
        if text(sim, 0) == text(sim, 1) {
            return;
        }
    }
    panic!("no convergence: {:?} vs {:?}", text(sim, 0), text(sim, 1));
}

fn scenario(mode: Mode, seed: u64) {
    let mut cfg = SimConfig::new(seed, 2);
    cfg.net = NetConfig::for_mode(mode);
    let mut sim = cluster(cfg, doc(), 2);
    setup(&mut sim, 2).unwrap();
    let (a, b) = (app("app-a"), app("app-b"));
    edited(call(&mut sim, &a, &edit("a1", vec![ins(0, "A1 ")])));
    edited(call(&mut sim, &b, &edit("b1", vec![ins(3, "B1 ")])));
    edited(call(&mut sim, &a, &edit("a2", vec![ins(6, "A2")])));
    settle(&mut sim);
    // bob (another node) edits in between: never undone on alice.
    let bob_app = p2p_sim::sim::app_process();
    edited(call_to(
        &mut sim,
        1,
        &bob_app,
        1,
        &edit("bob", vec![ins(0, ">> ")]),
        200,
    ));
    settle(&mut sim);
    assert_eq!(text(&sim, 0), ">> A1 B1 A2", "{mode:?}");

    // A's undo takes back A2 only; it is acknowledged with the new version and replicates.
    let before = sim
        .core::<SyncCore>(0, PROC)
        .unwrap()
        .version(&doc())
        .unwrap();
    let u = edited(call(&mut sim, &a, &undo(Some("u1"))));
    assert!(!u.duplicate);
    assert_ne!(
        u.version,
        sync::doc::to_version(&before),
        "an undo is a new change"
    );
    assert_eq!(text(&sim, 0), ">> A1 B1 ", "{mode:?}");
    // Retried with its op id: applies once.
    assert!(edited(call(&mut sim, &a, &undo(Some("u1")))).duplicate);
    assert_eq!(text(&sim, 0), ">> A1 B1 ");
    settle(&mut sim);
    assert_eq!(text(&sim, 1), ">> A1 B1 ", "{mode:?}: the undo replicated");

    // Redo restores it, on both nodes.
    edited(call(&mut sim, &a, &redo()));
    assert_eq!(text(&sim, 0), ">> A1 B1 A2");
    settle(&mut sim);
    assert_eq!(text(&sim, 1), ">> A1 B1 A2");

    // B's undo takes back B's edit, not A's.
    edited(call(&mut sim, &b, &undo(None)));
    assert_eq!(text(&sim, 0), ">> A1 A2");
    // B has nothing more; an app that never edited has nothing at all.
    let e = call(&mut sim, &b, &undo(None)).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("nothing to undo"), "{}", e.message);
    let e = call(&mut sim, &app("app-c"), &redo()).unwrap_err();
    assert!(e.message.contains("nothing to redo"), "{}", e.message);
    // bob's node may not undo on alice (a local-only operation).
    let bobs_sync = ProcessId::parse("sync:p2p-patterns:p2p-patterns.os").unwrap();
    // (Hostile mode loses messages independently: ask until one is answered.)
    let to = sim.addr(0, PROC);
    let mut refused = None;
    for _ in 0..10 {
        let h = sim.request_from(1, bobs_sync.clone(), &to, encode(&undo(None)), 30);
        sim.run_for(2_000).unwrap();
        if let Some(AppOutcome::Response(body)) = sim.outcome(h) {
            refused = Some(decode_response::<Response>(body).unwrap_err());
            break;
        }
    }
    assert_eq!(
        refused.expect("answered").code,
        ErrorCode::Forbidden,
        "{mode:?}"
    );
    settle(&mut sim);
    assert_eq!(text(&sim, 1), ">> A1 A2");

    // An acknowledged undo is on disk; the history is memory only and starts empty.
    edited(call(&mut sim, &a, &undo(None)));
    assert_eq!(text(&sim, 0), ">> A1 ");
    sim.crash(0);
    sim.restart(0);
    sim.run_for(5_000).unwrap();
    assert_eq!(
        text(&sim, 0),
        ">> A1 ",
        "{mode:?}: the undo survived the crash"
    );
    let e = call(&mut sim, &a, &undo(None)).unwrap_err();
    assert!(e.message.contains("nothing to undo"), "{}", e.message);
    settle(&mut sim);
    assert_eq!(text(&sim, 1), ">> A1 ");
}

#[test]
fn an_apps_undo_and_redo_take_back_its_own_edits_only_and_replicate() {
    for mode in [Mode::Realistic, Mode::Hostile] {
        for seed in 0..2 {
            scenario(mode, seed);
        }
    }
}
