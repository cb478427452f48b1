//! Live streams (docs/sync.md, "Live streams"): a `Delta` opens one per peer and document,
//! then one-way `Live` frames carry the changes. Every new field is an entry point: forged
//! stream ids, garbage headers, huge sequence jumps, replays and non-members are refused or
//! absorbed with bounded work, and a receiver that lost its streams (a restart) loses no
//! data.

use loro::{ExportMode, LoroDoc};
use p2p_common::api::sync::{DocId, Encoding, Op, Request, Response, Version};
use p2p_common::api::{encode, ErrorCode};
use p2p_common::ProcessId;
use p2p_sim::scenarios::sync::{answer, ask, cluster, setup, PROC};
use p2p_sim::{Mode, NetConfig, Sim, SimConfig};
use std::cell::Cell;
use std::rc::Rc;
use sync::core::SyncCore;
use sync::live::encode_frame;

fn config(seed: u64, nodes: usize, mode: Mode) -> SimConfig {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.net = NetConfig::for_mode(mode);
    cfg
}

fn doc() -> DocId {
    "alice.os/notes".parse().unwrap()
}

fn sync_pid() -> ProcessId {
    ProcessId::parse("sync:p2p-patterns:p2p-patterns.os").unwrap()
}

fn edit(op_id: &str, pos: u32, text: &str) -> Request {
    Request::Edit {
        doc: doc(),
        op_id: op_id.into(),
        ops: vec![Op::Insert {
            pos,
            text: text.into(),
        }],
        at: None,
        utf16: false,
    }
}

fn text(sim: &Sim, i: usize) -> Option<String> {
    sim.core::<SyncCore>(i, PROC)?.text(&doc())
}

fn sent(sim: &Sim, tag: &str) -> u64 {
    sim.stats.per_type.get(tag).map_or(0, |c| c.msgs)
}

/// A request to node `to`'s sync as node `from`'s sync process.
fn as_peer(sim: &mut Sim, from: usize, to: usize, req: &Request, blob: Option<Vec<u8>>) -> u64 {
    let to = sim.addr(to, PROC);
    sim.request_with_blob(from, sync_pid(), &to, encode(req), blob, 30)
}

fn refusal(sim: &Sim, h: u64) -> p2p_common::ApiError {
    match answer(sim, h) {
        Some(Err(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// alice edits at a typist's pace: after the opening Delta, the edits reach bob and charlie
/// as live frames, most of them one-way, in both network modes.
#[test]
fn edits_go_as_live_frames_after_one_opening_delta() {
    for mode in [Mode::Realistic, Mode::Hostile] {
        let mut sim = cluster(config(3, 3, mode), doc(), 3);
        setup(&mut sim, 3).unwrap();
        let (deltas0, frames0) = (sent(&sim, "Delta"), sent(&sim, "Live"));
        let mut want = String::new();
        for k in 0..60 {
            ask(&mut sim, 0, &edit(&format!("e{k}"), k, "x"));
            want.push('x');
            sim.run_for(30).unwrap();
        }
        sim.run_for(20_000).unwrap();
        for i in 0..3 {
            assert_eq!(
                text(&sim, i).as_deref(),
                Some(want.as_str()),
                "{mode:?} node {i}"
            );
        }
        let frames = sent(&sim, "Live") - frames0;
        let deltas = sent(&sim, "Delta") - deltas0;
        // 60 edits over 1.8 s: about one frame per 100 ms per peer.
        assert!(frames >= 20, "{mode:?}: {frames} frames");
        assert!(deltas <= 6, "{mode:?}: {deltas} Deltas");
        let answered = sim
            .stats
            .per_type
            .get("reply:LiveAck")
            .map_or(0, |c| c.msgs);
        assert!(
            answered * 4 < frames,
            "{mode:?}: {answered} of {frames} frames answered"
        );
    }
}

/// Forged stream ids, headers that are no frame, a non-member's frame: each refused with a
/// clear error and nothing imported.
#[test]
fn forged_and_broken_frames_are_refused() {
    let mut sim = cluster(SimConfig::new(4, 4), doc(), 3);
    setup(&mut sim, 3).unwrap();
    let before = text(&sim, 0);
    let update = {
        let d = LoroDoc::new();
        d.set_peer_id(77).unwrap();
        d.get_text("text").insert(0, "forged").unwrap();
        d.commit();
        d.export(ExportMode::all_updates()).unwrap()
    };
    let live = Request::Live {};
    // charlie (a member) on a stream it never opened.
    let h1 = as_peer(
        &mut sim,
        2,
        0,
        &live,
        Some(encode_frame(999, 1, false, &update)),
    );
    // No blob, a header that never ends, a sequence number out of range.
    let h2 = as_peer(&mut sim, 2, 0, &live, None);
    let h3 = as_peer(&mut sim, 2, 0, &live, Some(vec![0xff; 64]));
    let h4 = as_peer(
        &mut sim,
        2,
        0,
        &live,
        Some(vec![1, 0xff, 0xff, 0xff, 0xff, 0x7f]),
    );
    // dave, no member: the same answer as for any unknown stream.
    let h5 = as_peer(
        &mut sim,
        3,
        0,
        &live,
        Some(encode_frame(1, 1, false, &update)),
    );
    sim.run_for(2_000).unwrap();
    let e1 = refusal(&sim, h1);
    assert_eq!(e1.code, ErrorCode::NotFound);
    assert!(e1.message.contains("no live stream 999"), "{e1}");
    for h in [h2, h3, h4] {
        assert_eq!(refusal(&sim, h).code, ErrorCode::BadRequest);
    }
    let e5 = refusal(&sim, h5);
    assert_eq!(e5.code, ErrorCode::NotFound);
    assert!(
        !e5.message.contains("notes"),
        "a non-member learns nothing: {e5}"
    );
    assert_eq!(text(&sim, 0), before);
    assert_eq!(sim.core::<SyncCore>(0, PROC).unwrap().live().unknown, 2);
}

/// A member opens a stream, then sends a frame with a huge sequence jump, replays it, floods
/// jumps, and sends changes by a PeerID nobody registered on it: the jump costs one
/// SyncRequest at a time, replays nothing, the forged changes are refused, and the document
/// stays whole.
#[test]
fn sequence_jumps_replays_and_forged_changes_on_a_stream_stay_bounded() {
    // SyncRequests alice sends charlie.
    let asks: Rc<Cell<u64>> = Rc::default();
    let counted = asks.clone();
    let mut sim = cluster(SimConfig::new(5, 4), doc(), 3).with_delivery_observer(
        move |s, i, from, _to, body| {
            if i == 2 && from.node == *s.node_id(0) && p2p_sim::stats::tag_of(body) == "SyncRequest"
            {
                counted.set(counted.get() + 1);
            }
        },
    );
    setup(&mut sim, 3).unwrap();
    ask(&mut sim, 0, &edit("a", 0, "alice"));
    sim.run_for(5_000).unwrap();
    // charlie opens stream 7 with an empty Delta.
    let open = Request::Delta {
        doc: doc(),
        version: Version::default(),
        encoding: Encoding::Raw,
        chunked: None,
        stream: Some(7),
    };
    let h = as_peer(&mut sim, 2, 0, &open, None);
    sim.run_for(1_000).unwrap();
    assert!(
        matches!(
            answer(&sim, h),
            Some(Ok(Response::Ack {
                stream: Some(7),
                ..
            }))
        ),
        "{:?}",
        answer(&sim, h)
    );
    let syncs0 = asks.get();
    let live = Request::Live {};
    let jump = encode_frame(7, u32::MAX - 1, false, &[]);
    let h1 = as_peer(&mut sim, 2, 0, &live, Some(jump.clone()));
    let h2 = as_peer(&mut sim, 2, 0, &live, Some(jump));
    sim.run_for(1_000).unwrap();
    assert!(matches!(answer(&sim, h1), Some(Ok(Response::LiveAck {}))));
    assert!(
        matches!(answer(&sim, h2), Some(Ok(Response::LiveAck {}))),
        "a replay"
    );
    let c = sim.core::<SyncCore>(0, PROC).unwrap();
    assert_eq!(c.live().gaps, 1, "the replay is no second gap");
    assert!(asks.get() > syncs0, "the jump makes alice ask charlie");
    // On a fresh stream, a flood of 50 jumps at once: 50 gaps, and at most one SyncRequest
    // in flight at a time for them.
    let open8 = Request::Delta {
        doc: doc(),
        version: Version::default(),
        encoding: Encoding::Raw,
        chunked: None,
        stream: Some(8),
    };
    as_peer(&mut sim, 2, 0, &open8, None);
    sim.run_for(1_000).unwrap();
    let (gaps0, syncs1) = (
        sim.core::<SyncCore>(0, PROC).unwrap().live().gaps,
        asks.get(),
    );
    for k in 1..=50u32 {
        let f = encode_frame(8, k * 1_000, false, &[]);
        as_peer(&mut sim, 2, 0, &live, Some(f));
    }
    sim.run_for(1_000).unwrap();
    let c = sim.core::<SyncCore>(0, PROC).unwrap();
    assert_eq!(c.live().gaps - gaps0, 50);
    let asked = asks.get() - syncs1;
    assert!(
        (1..=2).contains(&asked),
        "{asked} SyncRequests for 50 jumps"
    );
    assert_eq!(
        c.live().streams_in(),
        1,
        "stream 8 replaced 7: one per sender and document"
    );
    // Changes by an unregistered PeerID on the open stream: refused before import.
    let forged = {
        let d = LoroDoc::new();
        d.set_peer_id(12345).unwrap();
        d.get_text("text").insert(0, "forged").unwrap();
        d.commit();
        d.export(ExportMode::all_updates()).unwrap()
    };
    let f = encode_frame(8, 60_000, false, &forged);
    let h3 = as_peer(&mut sim, 2, 0, &live, Some(f));
    sim.run_for(20_000).unwrap();
    assert_eq!(refusal(&sim, h3).code, ErrorCode::Forbidden);
    for i in 0..3 {
        assert_eq!(text(&sim, i).as_deref(), Some("alice"), "node {i}");
    }
}

/// bob restarts and forgets alice's stream: her frames to him are dropped until an answered
/// one is refused, then she reopens; nothing alice acknowledged is missing at bob.
#[test]
fn a_receiver_that_lost_its_streams_gets_every_edit() {
    for mode in [Mode::Realistic, Mode::Hostile] {
        let mut sim = cluster(config(8, 3, mode), doc(), 3);
        setup(&mut sim, 3).unwrap();
        let mut want = String::new();
        for k in 0..80u32 {
            if k == 20 {
                sim.crash(1);
            }
            if k == 25 {
                sim.restart(1);
            }
            ask(&mut sim, 0, &edit(&format!("e{k}"), k, "y"));
            want.push('y');
            sim.run_for(100).unwrap();
        }
        sim.run_for(30_000).unwrap();
        for i in 0..3 {
            assert_eq!(
                text(&sim, i).as_deref(),
                Some(want.as_str()),
                "{mode:?} node {i}"
            );
        }
    }
}
