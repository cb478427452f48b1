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

/// The app on node `i` edits document `d` (an insert at 0).
fn edit_doc(sim: &mut Sim, i: usize, d: &DocId, op_id: &str, text: &str) -> u64 {
    let req = Request::Edit {
        doc: d.clone(),
        op_id: op_id.into(),
        ops: vec![Op::Insert {
            pos: 0,
            text: text.into(),
        }],
        at: None,
        utf16: false,
    };
    ask(sim, i, &req)
}

fn bytes_of(sim: &Sim, tag: &str) -> u64 {
    sim.stats.per_type.get(tag).map_or(0, |c| c.bytes)
}

/// Messages and bytes of the live frames sent so far (`Live` and `LiveFrames`).
fn frame_msgs(sim: &Sim) -> (u64, u64, u64) {
    let c = |t: &str| {
        sim.stats
            .per_type
            .get(t)
            .map_or((0, 0), |c| (c.msgs, c.bytes))
    };
    let (live, _) = c("Live");
    let (frames, bytes) = c("LiveFrames");
    (live, frames, bytes)
}

/// alice creates `n` documents shared with bob, who joins them all; then each is edited
/// until alice's live stream of every one to bob is open.
fn many_docs(mode: Mode, seed: u64, n: usize) -> (Sim, Vec<DocId>) {
    let mut sim = cluster(config(seed, 2, mode), doc(), 2);
    sim.run_for(25_000).unwrap();
    let bob = sim.node_id(1).clone();
    let creates: Vec<u64> = (0..n)
        .map(|k| {
            let req = Request::Create {
                name: format!("d{k}"),
                members: vec![p2p_common::api::sync::Member {
                    node: bob.clone(),
                    role: p2p_common::api::sync::Role::Writer,
                }],
            };
            ask(&mut sim, 0, &req)
        })
        .collect();
    sim.run_for(2_000).unwrap();
    let docs: Vec<DocId> = creates
        .iter()
        .map(|h| match answer(&sim, *h) {
            Some(Ok(Response::Created(info))) => info.doc,
            other => panic!("Create: {other:?}"),
        })
        .collect();
    for _ in 0..5 {
        let missing: Vec<&DocId> = docs
            .iter()
            .filter(|d| sim.core::<SyncCore>(1, PROC).unwrap().text(d).is_none())
            .collect();
        if missing.is_empty() {
            break;
        }
        for d in missing {
            ask(&mut sim, 1, &Request::Join { doc: d.clone() });
        }
        sim.run_for(31_000).unwrap();
    }
    for round in 0..20 {
        let c = sim.core::<SyncCore>(0, PROC).unwrap();
        if docs.iter().all(|d| c.live().is_open(&bob, d)) {
            break;
        }
        for d in &docs {
            edit_doc(&mut sim, 0, d, &format!("open{round}"), "o");
        }
        sim.run_for(5_000).unwrap();
    }
    let c = sim.core::<SyncCore>(0, PROC).unwrap();
    let open = docs.iter().filter(|d| c.live().is_open(&bob, d)).count();
    let joined = docs
        .iter()
        .filter(|d| sim.core::<SyncCore>(1, PROC).unwrap().text(d).is_some())
        .count();
    assert_eq!(open, n, "{mode:?}: streams to bob open ({joined} joined)");
    assert!(c.live().frames_to(&bob).is_some(), "bob takes LiveFrames");
    (sim, docs)
}

/// alice edits 40 documents shared with bob inside one flush window: the frames leave
/// together, as few messages as the byte cap needs (not one per document), both network
/// modes, and bob ends with every edit. Then 40 edits of 12 KB each: over the cap, so split,
/// still within ceil(bytes / cap) per flush.
#[test]
fn edits_of_forty_documents_in_one_tick_go_as_one_message_per_flush() {
    use sync::live::MAX_FRAMES_BYTES;
    for mode in [Mode::Realistic, Mode::Hostile] {
        let (mut sim, docs) = many_docs(mode, 12, 40);
        sim.run_for(3_000).unwrap();
        for (round, len) in [(0, 3), (1, 12_000)] {
            let (live0, frames0, bytes0) = frame_msgs(&sim);
            let deltas0 = sent(&sim, "Delta");
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(round);
            let texts: Vec<String> = docs
                .iter()
                .map(|_| p2p_sim::scenarios::sync::random_text(len, &mut rng))
                .collect();
            for (d, t) in docs.iter().zip(&texts) {
                edit_doc(&mut sim, 0, d, &format!("burst{round}"), t);
            }
            // Flushes to bob are at least `FLUSH_MS` apart: each 10 ms step sees at most one.
            let (mut msgs, mut flushes) = (0, 0);
            let mut last = (live0, frames0, bytes0, bytes_of(&sim, "Live"));
            for _ in 0..300 {
                sim.run_for(10).unwrap();
                let (live, frames, bytes) = frame_msgs(&sim);
                let live_bytes = bytes_of(&sim, "Live");
                let n = (live - last.0) + (frames - last.1);
                let b = (bytes - last.2) + (live_bytes - last.3);
                if n > 0 {
                    let bound = (b as usize).div_ceil(MAX_FRAMES_BYTES).max(1) as u64;
                    assert!(
                        n <= bound,
                        "{mode:?} round {round}: {n} messages in one flush of {b} bytes \
                         (the cap allows {bound})"
                    );
                    msgs += n;
                    flushes += 1;
                }
                last = (live, frames, bytes, live_bytes);
            }
            let (_, frames, bytes) = frame_msgs(&sim);
            assert!(frames > frames0, "{mode:?} round {round}: no LiveFrames");
            if mode == Mode::Realistic {
                // The first edit opens a window and goes at once; the others at its end.
                let bound = ((bytes - bytes0) as usize).div_ceil(MAX_FRAMES_BYTES) as u64;
                assert!(
                    msgs <= bound + 1 && flushes <= 2,
                    "{mode:?} round {round}: {msgs} messages in {flushes} flushes"
                );
                assert_eq!(sent(&sim, "Delta"), deltas0, "{mode:?}: no stream reopened");
            }
            sim.run_for(30_000).unwrap();
            for (d, t) in docs.iter().zip(&texts) {
                let bob = sim.core::<SyncCore>(1, PROC).unwrap().text(d).unwrap();
                assert!(bob.starts_with(t.as_str()), "{mode:?}: {d} at bob");
                let alice = sim.core::<SyncCore>(0, PROC).unwrap().text(d).unwrap();
                assert_eq!(alice, bob, "{mode:?}: {d}");
            }
        }
    }
}

/// Hostile `LiveFrames`: 10,000 frames in one message, broken framing, and in one message a
/// good frame next to one on a stream the sender never opened, one with a forged header,
/// one of a document it is no longer a member of and one of changes by an unregistered
/// PeerID: the message is refused whole when its frames cannot be told apart or are too
/// many, else each bad frame alone is refused and answered as such; nothing forged lands.
#[test]
fn hostile_live_frames_are_refused_within_bounds() {
    use sync::live::{decode_frame_answers, encode_frames, Part};
    let mut sim = cluster(SimConfig::new(14, 4), doc(), 3);
    setup(&mut sim, 3).unwrap();
    ask(&mut sim, 0, &edit("a", 0, "alice"));
    let charlie = sim.node_id(2).clone();
    // A second document charlie is a member of, then is removed from.
    let h = ask(
        &mut sim,
        0,
        &Request::Create {
            name: "other".into(),
            members: vec![p2p_common::api::sync::Member {
                node: charlie.clone(),
                role: p2p_common::api::sync::Role::Writer,
            }],
        },
    );
    sim.run_for(2_000).unwrap();
    let Some(Ok(Response::Created(other))) = answer(&sim, h) else {
        panic!("Create")
    };
    let other = other.doc;
    ask(&mut sim, 2, &Request::Join { doc: other.clone() });
    sim.run_for(5_000).unwrap();
    let opener = |d: &DocId, s: u32| Request::Delta {
        doc: d.clone(),
        version: Version::default(),
        encoding: Encoding::Raw,
        chunked: None,
        stream: Some(s),
    };
    let h7 = as_peer(&mut sim, 2, 0, &opener(&doc(), 7), None);
    let h9 = as_peer(&mut sim, 2, 0, &opener(&other, 9), None);
    sim.run_for(1_000).unwrap();
    for h in [h7, h9] {
        assert!(
            matches!(
                answer(&sim, h),
                Some(Ok(Response::Ack {
                    frames: Some(64),
                    ..
                }))
            ),
            "{:?}",
            answer(&sim, h)
        );
    }
    ask(
        &mut sim,
        0,
        &Request::SetMember {
            doc: other.clone(),
            node: charlie,
            role: None,
        },
    );
    sim.run_for(2_000).unwrap();
    let frames = Request::LiveFrames {};
    // 10,000 empty frames; a length past the end; nothing.
    let h1 = as_peer(&mut sim, 2, 0, &frames, Some(vec![0; 10_000]));
    let h2 = as_peer(&mut sim, 2, 0, &frames, Some(vec![0x20, 1, 2]));
    let h3 = as_peer(&mut sim, 2, 0, &frames, None);
    sim.run_for(1_000).unwrap();
    for h in [h1, h2, h3] {
        assert_eq!(refusal(&sim, h).code, ErrorCode::BadRequest);
    }
    let forged = {
        let d = LoroDoc::new();
        d.set_peer_id(4242).unwrap();
        d.get_text("text").insert(0, "forged").unwrap();
        d.commit();
        d.export(ExportMode::all_updates()).unwrap()
    };
    let ask_all = |frame: Vec<u8>| Part { ask: true, frame };
    let blob = encode_frames(&[
        ask_all(encode_frame(7, 1, false, &[])),
        ask_all(encode_frame(999, 1, false, &forged)),
        ask_all(vec![0xff; 6]),
        ask_all(encode_frame(9, 1, false, &[])),
        ask_all(encode_frame(7, 2, false, &forged)),
        Part {
            ask: false,
            frame: encode_frame(7, 3, false, &[]),
        },
    ]);
    let unknown0 = sim.core::<SyncCore>(0, PROC).unwrap().live().unknown;
    let h = as_peer(&mut sim, 2, 0, &frames, Some(blob));
    sim.run_for(2_000).unwrap();
    match sim.outcome(h) {
        Some(p2p_sim::AppOutcome::Response(body)) => {
            let r = p2p_common::api::decode_response::<Response>(body);
            assert!(matches!(r, Ok(Response::LiveAck {})), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    let blob = sim.outcome_blob(h).expect("an answer blob").to_vec();
    let answers = decode_frame_answers(&blob, 5).unwrap();
    let ok: Vec<bool> = answers.iter().map(Option::is_some).collect();
    assert_eq!(
        ok,
        [true, false, false, false, false],
        "only the good frame"
    );
    let c = sim.core::<SyncCore>(0, PROC).unwrap();
    assert_eq!(c.live().refused_frames, 4);
    assert!(c.live().unknown > unknown0, "stream 999 is no stream");
    // A non-member's frames: refused like any unknown stream, and it is told nothing more.
    let h = as_peer(
        &mut sim,
        3,
        0,
        &frames,
        Some(encode_frames(&[ask_all(encode_frame(7, 5, false, &[]))])),
    );
    sim.run_for(30_000).unwrap();
    let blob = sim.outcome_blob(h).expect("an answer blob").to_vec();
    assert_eq!(decode_frame_answers(&blob, 1).unwrap(), vec![None]);
    for i in 0..3 {
        assert_eq!(text(&sim, i).as_deref(), Some("alice"), "node {i}");
    }
}

/// Feeds node `to`'s core a request from node `from`'s sync directly (not through the
/// simulated network); its effects, which nothing carries out.
fn direct(
    sim: &mut Sim,
    from: usize,
    to: usize,
    req: &Request,
    blob: Vec<u8>,
    expects: bool,
) -> Vec<p2p_common::Effect<sync::core::Ctx, sync::core::Timer>> {
    use p2p_common::service::{Input, Now, RequestId, Service};
    let from = sim.addr(from, PROC);
    let t = sim.now();
    let id = RequestId(t * 1_000 + blob.len() as u64);
    sim.core_mut::<SyncCore>(to, PROC).unwrap().handle(
        Now { mono: t, wall: t },
        Input::Request {
            id,
            from,
            body: encode(req),
            blob: Some(blob),
            timeout_s: expects.then_some(15),
        },
    )
}

/// The error a direct request was answered with, if any.
fn direct_error(
    effs: &[p2p_common::Effect<sync::core::Ctx, sync::core::Timer>],
) -> Option<p2p_common::ApiError> {
    effs.iter().find_map(|e| match e {
        p2p_common::Effect::Reply { body, .. } => {
            p2p_common::api::decode_response::<Response>(body).err()
        }
        _ => None,
    })
}

/// Node `from` opens stream `s` of the document at node `to` with an empty Delta.
fn open_stream(sim: &mut Sim, from: usize, to: usize, s: u32) {
    let open = Request::Delta {
        doc: doc(),
        version: Version::default(),
        encoding: Encoding::Raw,
        chunked: None,
        stream: Some(s),
    };
    let h = as_peer(sim, from, to, &open, None);
    sim.run_for(1_000).unwrap();
    assert!(
        matches!(answer(sim, h), Some(Ok(Response::Ack { stream: Some(x), .. })) if x == s),
        "{:?}",
        answer(sim, h)
    );
}

/// Feeds alice's core bob's `LiveAck` to a frame of stream 1, carrying version `vv` (not
/// through the simulated network).
fn bob_answers_a_frame(sim: &mut Sim, vv: &loro::VersionVector) {
    use p2p_common::service::{Input, Now, Service};
    let bob = sim.node_id(1).clone();
    let from = sim.addr(1, PROC);
    let t = sim.now();
    let _ = sim.core_mut::<SyncCore>(0, PROC).unwrap().handle(
        Now { mono: t, wall: t },
        Input::Response {
            from,
            body: p2p_common::api::encode_result::<Response>(&Ok(Response::LiveAck {})),
            blob: Some(vv.encode()),
            ctx: sync::core::Ctx::Out {
                peer: bob,
                item: sync::outbox::Item::Delta(doc()),
                stream: Some(1),
                live: true,
            },
        },
    );
}

/// A `LiveAck` (or `Ack`) from bob claiming 200,000 PeerIDs, or a thousand unregistered
/// ones: the first is no version, the second keeps only the ACL's PeerIDs; either way what
/// alice keeps of bob, and shows an app in `Peers`, stays small.
#[test]
fn a_forged_version_in_an_answer_keeps_only_the_acls_peer_ids() {
    let mut sim = cluster(SimConfig::new(21, 3), doc(), 3);
    setup(&mut sim, 3).unwrap();
    let bob = sim.node_id(1).clone();
    for n in [200_000u64, 1_000] {
        let mut vv = loro::VersionVector::new();
        for p in 0..n {
            vv.insert(p.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 1);
        }
        bob_answers_a_frame(&mut sim, &vv);
        let h = ask(&mut sim, 0, &Request::Peers { doc: doc() });
        sim.run_for(100).unwrap();
        let size = match answer(&sim, h) {
            Some(Ok(Response::Peers(p))) => serde_json::to_vec(&p).unwrap().len(),
            other => panic!("{other:?}"),
        };
        assert!(size < 4_096, "{n} PeerIDs claimed: Peers is {size} bytes");
        let kept = sim
            .core::<SyncCore>(0, PROC)
            .unwrap()
            .known_of(&doc(), &bob)
            .map_or(0, |v| v.len());
        assert!(kept <= 3, "{n} PeerIDs claimed: {kept} kept");
    }
}

/// A deflate bomb on a live stream stops at the inflate cap (32 times its bytes, at least
/// 1 MiB), and bytes that are no Loro update are a `BadRequest` that sends the creator no
/// ACL request; forged changes flooding in log one line per power of two.
#[test]
fn bombs_garbage_and_forged_floods_cost_little() {
    let mut sim = cluster(SimConfig::new(22, 3), doc(), 3);
    setup(&mut sim, 3).unwrap();
    // charlie's stream to bob, who is not the creator (a refused import may ask alice).
    open_stream(&mut sim, 2, 1, 7);
    let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 8 << 20], 10);
    assert!(bomb.len() < 64 << 10);
    let effs = direct(
        &mut sim,
        2,
        1,
        &Request::Live {},
        encode_frame(7, 1, true, &bomb),
        true,
    );
    let e = direct_error(&effs).expect("refused");
    assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
    assert!(e.message.contains("inflate within 1048576"), "{e}");
    // A Delta carrying the same bomb.
    let delta = Request::Delta {
        doc: doc(),
        version: Version::default(),
        encoding: Encoding::Deflate,
        chunked: None,
        stream: None,
    };
    let effs = direct(&mut sim, 2, 1, &delta, bomb, true);
    assert_eq!(direct_error(&effs).unwrap().code, ErrorCode::BadRequest);
    // Not Loro at all.
    let effs = direct(
        &mut sim,
        2,
        1,
        &Request::Live {},
        encode_frame(7, 2, false, b"garbage!"),
        true,
    );
    let e = direct_error(&effs).expect("refused");
    assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
    let asks = |effs: &[p2p_common::Effect<_, _>]| {
        effs.iter()
            .filter(|e| matches!(e, p2p_common::Effect::Send { .. }))
            .count()
    };
    assert_eq!(asks(&effs), 0, "no ACL request for garbage");
    // 200 one-way frames of changes by an unregistered PeerID: a handful of Warn lines.
    let forged = {
        let d = LoroDoc::new();
        d.set_peer_id(12345).unwrap();
        d.get_text("text").insert(0, "forged").unwrap();
        d.commit();
        d.export(ExportMode::all_updates()).unwrap()
    };
    let mut warns = 0;
    for k in 3..203u32 {
        let effs = direct(
            &mut sim,
            2,
            1,
            &Request::Live {},
            encode_frame(7, k, false, &forged),
            false,
        );
        warns += effs
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    p2p_common::Effect::Log {
                        level: p2p_common::service::Level::Warn,
                        ..
                    }
                )
            })
            .count();
    }
    assert!(
        (1..=9).contains(&warns),
        "{warns} Warn lines for 200 forged frames"
    );
    sim.run_for(20_000).unwrap();
    for i in 0..3 {
        assert_eq!(text(&sim, i).as_deref(), Some(""), "node {i}");
    }
}

/// charlie opens a stream, then alice removes him: alice forgets his stream and what she
/// knew of him, and his next frame is refused without a version.
#[test]
fn a_removed_member_loses_its_streams() {
    let mut sim = cluster(SimConfig::new(23, 3), doc(), 3);
    setup(&mut sim, 3).unwrap();
    open_stream(&mut sim, 2, 0, 7);
    let streams = sim.core::<SyncCore>(0, PROC).unwrap().live().streams_in();
    let charlie = sim.node_id(2).clone();
    let h = ask(
        &mut sim,
        0,
        &Request::SetMember {
            doc: doc(),
            node: charlie.clone(),
            role: None,
        },
    );
    sim.run_for(2_000).unwrap();
    assert!(matches!(answer(&sim, h), Some(Ok(Response::MemberSet(_)))));
    let c = sim.core::<SyncCore>(0, PROC).unwrap();
    assert_eq!(
        c.live().streams_in(),
        streams - 1,
        "charlie's stream is gone"
    );
    assert!(c.known_of(&doc(), &charlie).is_none());
    let effs = direct(
        &mut sim,
        2,
        0,
        &Request::Live {},
        encode_frame(7, 1, false, &[]),
        true,
    );
    assert_eq!(direct_error(&effs).unwrap().code, ErrorCode::NotFound);
    let blobs = effs
        .iter()
        .filter(|e| matches!(e, p2p_common::Effect::Reply { blob: Some(_), .. }))
        .count();
    assert_eq!(blobs, 0, "no version for a former member");
}

/// The last one-way frame of a burst is lost (alice and bob cut while it is on the way):
/// alice probes what bob has not confirmed 2 s after it went, and resends; bob has the
/// edit within about 3 s of the heal, not whenever anti-entropy gets to the document.
#[test]
fn a_lost_last_frame_is_resent_after_a_probe() {
    for seed in 1..=8u64 {
        let mut sim = cluster(SimConfig::new(seed, 3), doc(), 3);
        setup(&mut sim, 3).unwrap();
        ask(&mut sim, 0, &edit("a", 0, "a"));
        sim.run_for(5_000).unwrap();
        ask(&mut sim, 0, &edit("b", 1, "b"));
        sim.run_for(500).unwrap();
        sim.cut(0, 1);
        ask(&mut sim, 0, &edit("c", 2, "c"));
        sim.run_for(1_000).unwrap();
        sim.heal();
        let t0 = sim.now();
        let mut took = None;
        for _ in 0..200 {
            sim.run_for(50).unwrap();
            if text(&sim, 1).as_deref() == Some("abc") {
                took = Some(sim.now() - t0);
                break;
            }
        }
        let took = took.unwrap_or_else(|| panic!("seed {seed}: bob never got c"));
        assert!(took <= 3_000, "seed {seed}: {took} ms after the heal");
    }
}

/// Where alice's `Peers` puts bob.
fn bob_state(sim: &mut Sim) -> p2p_common::api::sync::PeerSyncState {
    let bob = sim.node_id(1).clone();
    let h = ask(sim, 0, &Request::Peers { doc: doc() });
    sim.run_for(20).unwrap();
    match answer(sim, h) {
        Some(Ok(Response::Peers(p))) => p.peers.iter().find(|p| p.node == bob).unwrap().state,
        other => panic!("{other:?}"),
    }
}

/// bob answers a live frame with a version claiming alice's counter is 1,000,000 (changes
/// she never made): the claim is cut to what she made (review 12d, defect 6), so `Peers`
/// says bob is in sync, not ahead; her next edit still goes to him and `Peers` says he is
/// behind until he confirms it.
#[test]
fn an_answer_claiming_changes_alice_never_made_does_not_stop_her_edits() {
    use p2p_common::api::sync::PeerSyncState;
    for mode in [Mode::Realistic, Mode::Hostile] {
        let mut sim = cluster(config(23, 2, mode), doc(), 2);
        setup(&mut sim, 2).unwrap();
        ask(&mut sim, 0, &edit("a", 0, "a"));
        sim.run_for(5_000).unwrap();
        assert_eq!(text(&sim, 1).as_deref(), Some("a"), "{mode:?}");
        let (alice, bob) = (sim.node_id(0).clone(), sim.node_id(1).clone());
        let core = sim.core::<SyncCore>(0, PROC).unwrap();
        let ours = core.version(&doc()).unwrap();
        let mine: Vec<u64> = core
            .acl(&doc())
            .unwrap()
            .peers
            .iter()
            .filter(|o| o.node == alice)
            .map(|o| o.peer.parse().unwrap())
            .collect();
        assert!(!mine.is_empty(), "{mode:?}: alice has no PeerID");
        let mut claim = ours.clone();
        for p in &mine {
            claim.insert(*p, 1_000_000);
        }
        bob_answers_a_frame(&mut sim, &claim);
        let kept = sim
            .core::<SyncCore>(0, PROC)
            .unwrap()
            .known_of(&doc(), &bob)
            .unwrap()
            .clone();
        for p in &mine {
            assert_eq!(
                kept.get(p),
                ours.get(p),
                "{mode:?}: bob's claim of PeerID {p} kept"
            );
        }
        assert_eq!(bob_state(&mut sim), PeerSyncState::InSync, "{mode:?}");
        ask(&mut sim, 0, &edit("b", 1, "b"));
        assert_eq!(bob_state(&mut sim), PeerSyncState::Behind, "{mode:?}");
        let t0 = sim.now();
        while text(&sim, 1).as_deref() != Some("ab") {
            assert!(
                sim.now() - t0 < 3_000,
                "{mode:?}: bob has no b 3 s after the edit"
            );
            sim.run_for(50).unwrap();
        }
        sim.run_for(5_000).unwrap();
        assert_eq!(bob_state(&mut sim), PeerSyncState::InSync, "{mode:?}");
    }
}
