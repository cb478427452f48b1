//! `bench sync`: the automerge-paper editing trace through the sync service, against the
//! bare Loro library, the guide's whole-state sync and Automerge's sync protocol.
//!
//! - **live**: alice's app replays the trace (one `Edit` per transaction, `gap` ms apart)
//!   while bob follows; 50 ms links. `edit_to_peer_p99_ms` is from the app's request to bob
//!   holding the change. The library side applies the same transactions to a bare Loro
//!   document (one commit each) and exports and imports updates at the same points the
//!   service sent a `Delta` (`library_batch_bytes`); the guide's pattern 3 sends the whole
//!   state at each of those points (`baseline_full_state_bytes`).
//! - **catch-up**: charlie joins after the trace: every byte to and from charlie until it is
//!   level, against the library's export of all updates.
//! - **heal**: from the first half of the trace shared by alice and bob, a partition in which
//!   each applies 1,000 further trace transactions (positions clamped to its text), then
//!   heal: messages and bytes between them until level; the same edits on two Automerge
//!   documents healed by `automerge::sync`.

use super::sync::{answer, ask, cluster, PROC};
use crate::editing::{ops_of, peers_of, EditingTrace, Txn};
use crate::{Latency, SimConfig};
use automerge::sync::SyncDoc as _;
use automerge::transaction::Transactable as _;
use automerge::ReadDoc as _;
use loro::{ExportMode, LoroDoc, VersionVector};
use p2p_common::api::sync::{DocId, Member, Op, Request, Response, Role};

use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;
use sync::core::SyncCore;

/// The link latency of the bench (one way): a round trip is 100 ms.
pub const LINK_MS: u64 = 50;
/// Virtual ms between one edit's answer and the next request (a fast typist).
pub const GAP_MS: u64 = 10;
/// Transactions each side of the partition applies.
pub const HEAL_EDITS: usize = 1_000;

fn doc_id() -> DocId {
    format!("{}/paper", crate::node_name(0))
        .parse()
        .expect("valid")
}

fn vv_of(sim: &crate::Sim, i: usize, doc: &DocId) -> VersionVector {
    sim.core::<SyncCore>(i, PROC)
        .and_then(|c| c.version(doc))
        .unwrap_or_default()
}

fn run_call(sim: &mut crate::Sim, i: usize, req: &Request) -> Response {
    let h = ask(sim, i, req);
    loop {
        sim.run_for(1).expect("no faults");
        if let Some(a) = answer(sim, h) {
            return a.unwrap_or_else(|e| panic!("{req:?}: {e}"));
        }
    }
}

fn edit_req(doc: &DocId, k: usize, ops: Vec<Op>) -> Request {
    Request::Edit {
        doc: doc.clone(),
        op_id: format!("e{k}"),
        ops,
        at: None,
        utf16: false,
    }
}

/// The trace's transaction with its positions clamped to a text of `len` characters.
fn clamped(t: &Txn, len: u32) -> Txn {
    let mut t = t.clone();
    for (pos, del, _) in t.patches.iter_mut() {
        *pos = (*pos).min(len);
        *del = (*del).min(len - *pos);
    }
    t
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Three nodes: alice creates the document with bob and charlie as writers; bob joins.
fn three(doc: &DocId) -> crate::Sim {
    let mut sim = cluster(SimConfig::new(1, 3), doc.clone(), 3);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        sim.set_link_latency(
            a,
            b,
            Latency {
                min_ms: LINK_MS,
                max_ms: LINK_MS,
                spike_p: 0.0,
                spike_factor: 1,
            },
        );
    }
    let members = (1..3)
        .map(|i| Member {
            node: sim.node_id(i).clone(),
            role: Role::Writer,
        })
        .collect();
    let h = ask(
        &mut sim,
        0,
        &Request::Create {
            name: doc.name.clone(),
            members,
        },
    );
    sim.run_for(25_000).expect("no faults");
    assert!(matches!(answer(&sim, h), Some(Ok(Response::Created(_)))));
    join(&mut sim, 1, doc);
    sim
}

fn join(sim: &mut crate::Sim, i: usize, doc: &DocId) {
    let h = ask(sim, i, &Request::Join { doc: doc.clone() });
    for _ in 0..60_000 {
        sim.run_for(1).expect("no faults");
        if answer(sim, h).is_some() {
            break;
        }
    }
    assert!(
        matches!(answer(sim, h), Some(Ok(Response::Joined(_)))),
        "{:?}",
        answer(sim, h)
    );
}

/// The live and catch-up parts on `trace` (all of its transactions).
pub fn live(trace: &EditingTrace, m: &mut Map<String, Value>) {
    let doc = doc_id();
    // Batch points: alice's counter in bob's version each time bob took in a live message
    // (a `Delta` or a `Live` frame) that moved it.
    let batches: Rc<RefCell<Vec<u32>>> = Rc::default();
    let arrived: Rc<RefCell<bool>> = Rc::default();
    let seen = arrived.clone();
    let mut sim = three(&doc).with_delivery_observer(move |_s, i, _from, _to, body| {
        if i == 1 && matches!(crate::stats::tag_of(body), "Delta" | "Live") {
            *seen.borrow_mut() = true;
        }
    });
    let peers = peers_of(&sim, 2, &doc).expect("peers");
    let alice = peers[0];
    // Everything the live exchange puts on the wire: opening Deltas and their Acks, live
    // frames and the answers some of them get.
    let live_tags = ["Delta", "reply:Ack", "Live", "reply:LiveAck"];
    let tagged = |sim: &crate::Sim| -> u64 {
        live_tags
            .iter()
            .filter_map(|t| sim.stats.per_type.get(*t))
            .map(|c| c.bytes)
            .sum()
    };
    let per_tag = |sim: &crate::Sim| -> Vec<u64> {
        live_tags
            .iter()
            .map(|t| sim.stats.per_type.get(*t).map_or(0, |c| c.bytes))
            .collect()
    };
    let tags0 = per_tag(&sim);
    let (bytes0, tagged0, msgs0) = (sim.stats.remote.bytes, tagged(&sim), sim.stats.remote.msgs);
    let mut ends: Vec<u32> = Vec::with_capacity(trace.txns.len());
    // Edits sent but not yet at bob: (end counter, request time).
    let mut pending: std::collections::VecDeque<(u32, u64)> = Default::default();
    let mut lat: Vec<u64> = Vec::with_capacity(trace.txns.len());
    let observe = |sim: &crate::Sim,
                   pending: &mut std::collections::VecDeque<(u32, u64)>,
                   lat: &mut Vec<u64>| {
        let have = vv_of(sim, 1, &doc).get(&alice).copied().unwrap_or(0).max(0) as u32;
        if arrived.replace(false) && batches.borrow().last() != Some(&have) {
            batches.borrow_mut().push(have);
        }
        while pending.front().is_some_and(|(c, _)| *c <= have) {
            let (_, t) = pending.pop_front().expect("front");
            lat.push(sim.now() - t);
        }
    };
    let busy = |sim: &crate::Sim| -> f64 {
        (0..2)
            .filter_map(|i| sim.busy(i, PROC))
            .map(|d| d.as_secs_f64() * 1e3)
            .sum()
    };
    let busy0 = busy(&sim);
    let started = Instant::now();
    for (k, t) in trace.txns.iter().enumerate() {
        let t0 = sim.now();
        let h = ask(&mut sim, 0, &edit_req(&doc, k, ops_of(t)));
        let e = loop {
            sim.run_for(1).expect("no faults");
            observe(&sim, &mut pending, &mut lat);
            if let Some(a) = answer(&sim, h) {
                break a.unwrap_or_else(|e| panic!("transaction {k}: {e}"));
            }
        };
        let Response::Edited(e) = e else {
            panic!("transaction {k}: {e:?}")
        };
        let c = e
            .version
            .pairs()
            .expect("version")
            .into_iter()
            .find(|(p, _)| *p == alice)
            .map_or(0, |(_, c)| c);
        ends.push(c);
        pending.push_back((c, t0));
        for _ in 0..GAP_MS {
            sim.run_for(1).expect("no faults");
            observe(&sim, &mut pending, &mut lat);
        }
    }
    while !pending.is_empty() && sim.now() < 10_000_000 {
        sim.run_for(1).expect("no faults");
        observe(&sim, &mut pending, &mut lat);
    }
    let run_ms = started.elapsed().as_secs_f64() * 1e3;
    // The service's own time: inside alice's and bob's sync processes (driver and core:
    // decoding each request, the edit, its commit and durable records, the answer, the
    // flush's export on alice and the import on bob), not the simulator or this harness.
    let service_ms = busy(&sim) - busy0;
    let live_wire = tagged(&sim) - tagged0;
    let by_tag: Vec<u64> = per_tag(&sim)
        .iter()
        .zip(&tags0)
        .map(|(a, b)| a - b)
        .collect();
    let live_total = sim.stats.remote.bytes - bytes0;
    let live_msgs = sim.stats.remote.msgs - msgs0;
    let text_a = sim.core::<SyncCore>(0, PROC).and_then(|c| c.text(&doc));
    let text_b = sim.core::<SyncCore>(1, PROC).and_then(|c| c.text(&doc));
    lat.sort_unstable();

    // The bare library on the same transactions and batch points.
    let points: std::collections::BTreeSet<u32> = batches.borrow().iter().copied().collect();
    let started = Instant::now();
    let la = LoroDoc::new();
    la.set_peer_id(1).expect("peer");
    let lb = LoroDoc::new();
    let text = la.get_text("text");
    let (mut lib_bytes, mut full_state, mut sent) = (0u64, 0u64, VersionVector::new());
    for (k, t) in trace.txns.iter().enumerate() {
        for (pos, del, ins) in &t.patches {
            if *del > 0 {
                text.delete(*pos as usize, *del as usize)
                    .expect("in bounds");
            }
            if !ins.is_empty() {
                text.insert(*pos as usize, ins).expect("in bounds");
            }
        }
        la.commit();
        if points.contains(&ends[k]) {
            let u = la.export(ExportMode::updates(&sent)).expect("export");
            lib_bytes += u.len() as u64;
            if std::env::var("SYNW_MEASURE").is_ok() {
                let d = sync::doc::deflate(&u);
                eprintln!(
                    "BATCH {} {} {:02x?}",
                    u.len(),
                    d.len(),
                    &u[..u.len().min(40)]
                );
            }
            lb.import(&u).expect("import");
            sent = la.oplog_vv();
            // The guide's pattern 3: hashes differ, so the whole state (and the hash).
            full_state += text.len_utf8() as u64 + 64;
        }
    }
    let u = la.export(ExportMode::updates(&sent)).expect("export");
    lb.import(&u).expect("import");
    let library_ms = started.elapsed().as_secs_f64() * 1e3;
    let lib_text = lb.get_text("text").to_string();

    m.insert("trace_ops".into(), json!(trace.txns.len()));
    m.insert("live_gap_ms".into(), json!(GAP_MS));
    m.insert("link_ms".into(), json!(LINK_MS));
    m.insert("live_batches".into(), json!(points.len()));
    m.insert("edit_to_peer_p50_ms".into(), json!(pct(&lat, 0.5)));
    m.insert("edit_to_peer_p99_ms".into(), json!(pct(&lat, 0.99)));
    m.insert(
        "edit_to_peer_max_ms".into(),
        json!(lat.last().copied().unwrap_or(0)),
    );
    m.insert("trace_apply_ms_service".into(), json!(service_ms.round()));
    m.insert("trace_run_ms_simulated".into(), json!(run_ms.round()));
    m.insert("trace_apply_ms_library".into(), json!(library_ms.round()));
    m.insert(
        "trace_apply_ratio".into(),
        json!((service_ms / library_ms.max(1e-3) * 100.0).round() / 100.0),
    );
    m.insert("live_wire_bytes".into(), json!(live_wire));
    m.insert("live_total_bytes".into(), json!(live_total));
    // live_wire_bytes by message: opening Deltas and their Acks, frames, frame answers.
    m.insert("live_delta_bytes".into(), json!(by_tag[0] + by_tag[1]));
    m.insert("live_frame_bytes".into(), json!(by_tag[2]));
    m.insert("live_frame_answer_bytes".into(), json!(by_tag[3]));
    m.insert("live_msgs".into(), json!(live_msgs));
    m.insert("library_batch_bytes".into(), json!(lib_bytes));
    m.insert("baseline_full_state_bytes".into(), json!(full_state));
    let want = trace.sequential_text().ok();
    m.insert(
        "live_converged".into(),
        json!(text_a.is_some() && text_a == text_b && text_a == want && Some(lib_text) == want),
    );

    // Catch-up: charlie joins now.
    let link = |sim: &crate::Sim| -> u64 {
        let c = sim.node_id(2).to_string();
        sim.stats
            .per_link
            .iter()
            .filter(|(k, _)| k.contains(&c))
            .map(|(_, v)| v.bytes)
            .sum()
    };
    let before = link(&sim);
    join(&mut sim, 2, &doc);
    let target = vv_of(&sim, 0, &doc);
    for _ in 0..600 {
        if vv_of(&sim, 2, &doc) == target {
            break;
        }
        sim.run_for(100).expect("no faults");
    }
    let catchup = link(&sim) - before;
    let all = la.export(ExportMode::all_updates()).expect("export");
    m.insert("catchup_bytes".into(), json!(catchup));
    m.insert("library_update_bytes".into(), json!(all.len()));
    let text_c = sim.core::<SyncCore>(2, PROC).and_then(|c| c.text(&doc));
    m.insert(
        "catchup_converged".into(),
        json!(text_c.is_some() && text_c == text_a),
    );
}

/// The heal part: the first `shared` transactions shared, then [`HEAL_EDITS`] each side.
pub fn heal(trace: &EditingTrace, shared: usize, m: &mut Map<String, Value>) {
    let doc = doc_id();
    let mut sim = three(&doc);
    for (k, t) in trace.txns[..shared].iter().enumerate() {
        run_call(&mut sim, 0, &edit_req(&doc, k, ops_of(t)));
    }
    let target = vv_of(&sim, 0, &doc);
    for _ in 0..600 {
        if vv_of(&sim, 1, &doc) == target {
            break;
        }
        sim.run_for(100).expect("no faults");
    }
    assert_eq!(vv_of(&sim, 1, &doc), target, "bob has the shared half");
    // The same on Automerge: one change per transaction, then forked and synced.
    let mut am_a = automerge::AutoCommit::new();
    let am_text = am_a
        .put_object(automerge::ROOT, "text", automerge::ObjType::Text)
        .expect("text");
    am_a.commit();
    let am_splice = |d: &mut automerge::AutoCommit, t: &Txn| {
        for (pos, del, ins) in &t.patches {
            d.splice_text(&am_text, *pos as usize, *del as isize, ins)
                .expect("in bounds");
        }
        d.commit();
    };
    for t in &trace.txns[..shared] {
        am_splice(&mut am_a, t);
    }
    let mut am_b = am_a.fork();
    let (mut st_a, mut st_b) = (automerge::sync::State::new(), automerge::sync::State::new());
    am_sync(&mut am_a, &mut am_b, &mut st_a, &mut st_b);

    // The partition: each side edits on.
    sim.partition(&[vec![0], vec![1, 2]]);
    let sides = [
        &trace.txns[shared..shared + HEAL_EDITS],
        &trace.txns[shared + HEAL_EDITS..shared + 2 * HEAL_EDITS],
    ];
    for j in 0..HEAL_EDITS {
        for (side, txns) in sides.iter().enumerate() {
            let len = sim
                .core::<SyncCore>(side, PROC)
                .and_then(|c| c.text(&doc))
                .map_or(0, |t| t.chars().count() as u32);
            let t = clamped(&txns[j], len);
            if ops_of(&t).is_empty() {
                // Clamped to nothing (a delete past this side's end).
                continue;
            }
            run_call(
                &mut sim,
                side,
                &edit_req(&doc, shared + side * HEAL_EDITS + j, ops_of(&t)),
            );
            let d = if side == 0 { &mut am_a } else { &mut am_b };
            let alen = d.length(&am_text) as u32;
            am_splice(d, &clamped(&txns[j], alen));
        }
        sim.run_for(GAP_MS).expect("no faults");
    }
    // Heal, and count what passes between alice and bob until they are level.
    let key = |a: usize, b: usize| format!("{} -> {}", sim.node_id(a), sim.node_id(b));
    let (ab, ba) = (key(0, 1), key(1, 0));
    let count = |sim: &crate::Sim| -> (u64, u64) {
        [&ab, &ba]
            .iter()
            .filter_map(|k| sim.stats.per_link.get(*k))
            .fold((0, 0), |(m, b), c| (m + c.msgs, b + c.bytes))
    };
    sim.heal();
    let (m0, b0) = count(&sim);
    let start = sim.now();
    let mut level_ms = None;
    for _ in 0..120_000 {
        sim.run_for(1).expect("no faults");
        let (a, b) = (vv_of(&sim, 0, &doc), vv_of(&sim, 1, &doc));
        if a == b {
            level_ms = Some(sim.now() - start);
            break;
        }
    }
    // Answers still in flight belong to the exchange.
    sim.run_for(2 * LINK_MS + 10).expect("no faults");
    let (m1, b1) = count(&sim);
    let texts: Vec<Option<String>> = (0..2)
        .map(|i| sim.core::<SyncCore>(i, PROC).and_then(|c| c.text(&doc)))
        .collect();
    let (am_msgs, am_bytes) = am_sync(&mut am_a, &mut am_b, &mut st_a, &mut st_b);
    let am_same = am_a.text(&am_text).ok() == am_b.text(&am_text).ok();
    m.insert("heal_shared_ops".into(), json!(shared));
    m.insert("heal_edits_per_side".into(), json!(HEAL_EDITS));
    m.insert("heal_msgs".into(), json!(m1 - m0));
    m.insert("heal_round_trips".into(), json!((m1 - m0).div_ceil(2)));
    m.insert("heal_bytes".into(), json!(b1 - b0));
    m.insert("heal_level_ms".into(), json!(level_ms));
    m.insert("automerge_heal_msgs".into(), json!(am_msgs));
    m.insert(
        "automerge_heal_round_trips".into(),
        json!(am_msgs.div_ceil(2)),
    );
    m.insert("automerge_heal_bytes".into(), json!(am_bytes));
    m.insert(
        "heal_converged".into(),
        json!(level_ms.is_some() && texts[0].is_some() && texts[0] == texts[1] && am_same),
    );
}

/// Automerge's sync protocol between `a` and `b` until neither has a message: (messages,
/// bytes).
fn am_sync(
    a: &mut automerge::AutoCommit,
    b: &mut automerge::AutoCommit,
    sa: &mut automerge::sync::State,
    sb: &mut automerge::sync::State,
) -> (u64, u64) {
    let (mut msgs, mut bytes) = (0u64, 0u64);
    for _ in 0..100 {
        let mut quiet = true;
        if let Some(msg) = a.sync().generate_sync_message(sa) {
            let enc = msg.encode();
            msgs += 1;
            bytes += enc.len() as u64;
            let msg = automerge::sync::Message::decode(&enc).expect("decode");
            b.sync().receive_sync_message(sb, msg).expect("receive");
            quiet = false;
        }
        if let Some(msg) = b.sync().generate_sync_message(sb) {
            let enc = msg.encode();
            msgs += 1;
            bytes += enc.len() as u64;
            let msg = automerge::sync::Message::decode(&enc).expect("decode");
            a.sync().receive_sync_message(sa, msg).expect("receive");
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    (msgs, bytes)
}
