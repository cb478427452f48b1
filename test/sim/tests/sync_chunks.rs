//! Documents too large for one message (Hyperware drops a connection over 10 MiB): a 30 MB
//! document built through the local API is joined by a late node in chunks, in both network
//! modes, and survives its creator crashing mid-transfer; and the chunk entry points refuse
//! what they must (non-members, forged offers, claims of huge transfers, unknown transfers).

use p2p_common::api::sync::{Chunked, DocId, Encoding, Member, Request, Response, Role, Version};
use p2p_common::api::{encode, ErrorCode};
use p2p_common::ProcessId;
use p2p_sim::scenarios::sync::{
    answer, ask, cluster, large_join, random_text, setup, LARGE_DOC_BYTES, PROC,
};
use p2p_sim::{Mode, NetConfig, Sim, SimConfig};
use rand::SeedableRng;
use sync::core::SyncCore;

fn sync_pid() -> ProcessId {
    ProcessId::parse("sync:p2p-patterns:p2p-patterns.os").unwrap()
}

/// A request as node `from`'s sync process.
fn as_peer(sim: &mut Sim, from: usize, to: usize, req: &Request) -> u64 {
    let to = sim.addr(to, PROC);
    sim.request_from(from, sync_pid(), &to, encode(req), 30)
}

fn err_of(sim: &Sim, h: u64) -> p2p_common::ApiError {
    match answer(sim, h) {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_30_mb_document_joins_in_chunks_in_both_modes() {
    for mode in Mode::ALL {
        let m = large_join(mode, 3).unwrap_or_else(|e| panic!("{}: {e}", mode.name()));
        println!(
            "{}: {} bytes of text in {} edits; join: {} messages, {} bytes, {} chunk requests, {} ms, {} tries",
            mode.name(),
            m["large_doc_bytes"],
            m["large_edits"],
            m["large_join_msgs"],
            m["large_join_bytes"],
            m["large_chunk_requests"],
            m["large_join_ms"],
            m["large_join_tries"],
        );
        // About 18 MB deflated: five 4 MiB chunks at least, none over the message limit.
        assert!(m["large_chunk_requests"].as_u64().unwrap() >= 5, "{m:?}");
        assert_eq!(m["large_oversized"], 0, "{m:?}");
        assert_eq!(m["large_held_after"], 0, "{m:?}");
        let bytes = m["large_join_bytes"].as_u64().unwrap();
        assert!(
            bytes < LARGE_DOC_BYTES as u64,
            "the snapshot crosses deflated: {bytes}"
        );
    }
}

/// alice's text of `len` bytes, typed through the local API.
fn type_text(sim: &mut Sim, doc: &DocId, len: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let text = random_text(len, &mut rng);
    let per_op = p2p_common::api::sync::MAX_OP_TEXT;
    let mut pos = 0;
    let mut k = 0;
    while pos < text.len() {
        let mut ops = Vec::new();
        while ops.len() < 15 && pos < text.len() {
            let end = (pos + per_op).min(text.len());
            ops.push(p2p_common::api::sync::Op::Insert {
                pos: pos as u32,
                text: text[pos..end].to_string(),
            });
            pos = end;
        }
        let h = ask(
            sim,
            0,
            &Request::Edit {
                doc: doc.clone(),
                op_id: format!("t{k}"),
                ops,
                at: None,
                utf16: false,
            },
        );
        sim.run_for(20).unwrap();
        assert!(matches!(answer(sim, h), Some(Ok(Response::Edited(_)))));
        k += 1;
    }
}

#[test]
fn a_join_survives_its_creator_crashing_mid_transfer() {
    let doc: DocId = "alice.os/big".parse().unwrap();
    let mut cfg = SimConfig::new(5, 2);
    cfg.net = NetConfig::realistic();
    let mut sim = cluster(cfg, doc.clone(), 2);
    let bob = sim.node_id(1).clone();
    let h = ask(
        &mut sim,
        0,
        &Request::Create {
            name: "big".into(),
            members: vec![Member {
                node: bob,
                role: Role::Writer,
            }],
        },
    );
    sim.run_for(25_000).unwrap();
    assert!(matches!(answer(&sim, h), Some(Ok(Response::Created(_)))));
    // 16 MB of text: about 10 MB deflated, three chunks.
    type_text(&mut sim, &doc, 16_000_000);
    sim.run_for(3_000).unwrap();
    let to = sim.addr(1, PROC);
    let join = sim.request(1, &to, encode(&Request::Join { doc: doc.clone() }), 600);
    // Crash alice once bob holds part of the snapshot.
    let mut crashed = false;
    for _ in 0..2_000 {
        sim.run_for(10).unwrap();
        let held = sim.core::<SyncCore>(1, PROC).unwrap().pulls_open().1;
        if held > 0 {
            sim.crash(0);
            crashed = true;
            break;
        }
    }
    assert!(crashed, "bob never held part of the snapshot");
    // A second Join meanwhile says it is in progress.
    let again = ask(&mut sim, 1, &Request::Join { doc: doc.clone() });
    sim.run_for(100).unwrap();
    let e = err_of(&sim, again);
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("chunks of its snapshot are in"), "{e}");
    sim.run_for(5_000).unwrap();
    sim.restart(0);
    // alice's offer died with her: bob's fetch is refused once she is back and the join
    // starts over cleanly; or, if she stayed unreachable through every retry, the Join is
    // answered Unavailable and the app asks again.
    sim.run_for(120_000).unwrap();
    let mut outcome = answer(&sim, join);
    for _ in 0..3 {
        match &outcome {
            Some(Ok(Response::Joined(_))) => break,
            Some(Err(e)) if e.code == ErrorCode::Unavailable => {
                let h = sim.request(1, &to, encode(&Request::Join { doc: doc.clone() }), 600);
                sim.run_for(120_000).unwrap();
                outcome = answer(&sim, h);
            }
            other => panic!("join after the creator's crash: {other:?}"),
        }
    }
    assert!(
        matches!(outcome, Some(Ok(Response::Joined(_)))),
        "{outcome:?}"
    );
    let a = sim.core::<SyncCore>(0, PROC).unwrap().text(&doc).unwrap();
    let b = sim.core::<SyncCore>(1, PROC).unwrap().text(&doc).unwrap();
    assert_eq!(a.len(), 16_000_000);
    assert!(a == b, "bob holds alice's text");
    assert_eq!(sim.core::<SyncCore>(1, PROC).unwrap().pulls_open(), (0, 0));
    assert_eq!(sim.stats.oversized, 0);
}

fn offer(transfer: u64, total: u64) -> Chunked {
    let chunk = 4 << 20;
    let count = total.div_ceil(chunk);
    Chunked {
        transfer,
        total,
        chunk: chunk as u32,
        digests: (0..count).map(|_| "00".repeat(32)).collect(),
    }
}

#[test]
fn chunk_entry_points_refuse_strangers_forgeries_and_huge_claims() {
    let doc: DocId = "alice.os/notes".parse().unwrap();
    let mut sim = cluster(SimConfig::new(7, 4), doc.clone(), 3);
    setup(&mut sim, 3).unwrap();
    let missing: DocId = "alice.os/nothing".parse().unwrap();
    // A non-member asking for a chunk learns nothing: the same answer as for no document.
    let get = |doc: &DocId, transfer, index| Request::GetChunk {
        doc: doc.clone(),
        transfer,
        index,
    };
    let h1 = as_peer(&mut sim, 3, 0, &get(&doc, 1, 0));
    let h2 = as_peer(&mut sim, 3, 0, &get(&missing, 1, 0));
    // A member asking for a transfer never offered to it.
    let h3 = as_peer(&mut sim, 1, 0, &get(&doc, 1, 0));
    sim.run_for(2_000).unwrap();
    let (e1, e2) = (err_of(&sim, h1), err_of(&sim, h2));
    assert_eq!(e1.code, ErrorCode::NotFound);
    assert_eq!(
        e1.message.replace("notes", "X"),
        e2.message.replace("nothing", "X")
    );
    assert!(sim.outcome_blob(h1).is_none());
    let e3 = err_of(&sim, h3);
    assert_eq!(e3.code, ErrorCode::NotFound);
    assert!(e3.message.contains("no transfer"), "{e3}");
    // A member's offer claiming 1 GB, or with lying chunk sizes: refused before anything is
    // fetched or held.
    let delta = |chunked| Request::Delta {
        doc: doc.clone(),
        version: Version::default(),
        encoding: Encoding::Raw,
        chunked: Some(chunked),
        stream: None,
    };
    let huge = as_peer(&mut sim, 2, 1, &delta(offer(9, 1 << 30)));
    let mut lying = offer(10, 20 << 20);
    lying.chunk = 1_000;
    let liar = as_peer(&mut sim, 2, 1, &delta(lying));
    sim.run_for(2_000).unwrap();
    assert_eq!(err_of(&sim, huge).code, ErrorCode::BadRequest);
    assert_eq!(err_of(&sim, liar).code, ErrorCode::BadRequest);
    assert_eq!(sim.core::<SyncCore>(1, PROC).unwrap().pulls_open(), (0, 0));
    // A forged offer (charlie's node claims a transfer its sync never made): bob accepts it,
    // asks charlie's sync, is told there is no such transfer, and drops it; then many more
    // of the same: at most one pull per document at a time, and nothing held after.
    for t in 0..5 {
        as_peer(&mut sim, 2, 1, &delta(offer(100 + t, 20 << 20)));
    }
    sim.run_for(200).unwrap();
    let (open, _) = sim.core::<SyncCore>(1, PROC).unwrap().pulls_open();
    assert!(open <= 1, "{open} pulls open for one document");
    sim.run_for(5_000).unwrap();
    assert_eq!(sim.core::<SyncCore>(1, PROC).unwrap().pulls_open(), (0, 0));
    assert_eq!(sim.core::<SyncCore>(2, PROC).unwrap().offers_open(), (0, 0));
    // A non-member's offer is answered as for a missing document, and nothing is fetched.
    let h = as_peer(&mut sim, 3, 1, &delta(offer(200, 20 << 20)));
    sim.run_for(1_000).unwrap();
    assert_eq!(err_of(&sim, h).code, ErrorCode::NotFound);
    assert_eq!(sim.core::<SyncCore>(1, PROC).unwrap().pulls_open(), (0, 0));
    // The cluster still works.
    ask(
        &mut sim,
        1,
        &Request::Edit {
            doc: doc.clone(),
            op_id: "after".into(),
            ops: vec![p2p_common::api::sync::Op::Insert {
                pos: 0,
                text: "ok".into(),
            }],
            at: None,
            utf16: false,
        },
    );
    sim.run_for(2_000).unwrap();
    assert!(sim
        .core::<SyncCore>(0, PROC)
        .unwrap()
        .text(&doc)
        .unwrap()
        .starts_with("ok"));
}
