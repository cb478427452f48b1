//! Recorded editing traces (the josephg/editing-traces format, `../shared/data/editing-traces`)
//! and their replay through the sync service on simulated nodes (`p2p-sim replay-trace`).
//!
//! A trace is gzipped (or plain) JSON: `{startContent, endContent, txns: [{patches: [[pos,
//! deleteCount, insertText], ...]}, ...]}`; a *concurrent* trace adds `numAgents` and, per
//! transaction, `agent` and `parents` (indexes of earlier transactions it follows). Positions
//! are Unicode code points in the author's document at that moment.
//!
//! The replay runs one node per agent (a sequential trace: its author and one follower). Each
//! transaction is one `Edit` to the author's node through the local API, as an app would send
//! it, naming the version the author saw (`at`: its parents' version) while sync runs live.
//! The replayer is the app: it remembers, per transaction, the author PeerID's counter its
//! `Edited` answer reported, so a transaction's parents name an exact Loro version.

use crate::scenarios::sync::{answer, ask, cluster, setup_doc, PROC};
use crate::{Mode, NetConfig, Sim, SimConfig, SimError};
use p2p_common::api::sync::{DocId, Op, Request, Response, Version};
use serde::Deserialize;
use std::io::Read;
use sync::core::SyncCore;
use sync::doc::{includes, to_vv};

/// One transaction: its author, the transactions it follows, its patches.
#[derive(Debug, Clone)]
pub struct Txn {
    pub agent: usize,
    pub parents: Vec<usize>,
    /// `(pos, delete count, inserted text)`, applied in order.
    pub patches: Vec<(u32, u32, String)>,
}

/// A whole trace.
#[derive(Debug, Clone)]
pub struct EditingTrace {
    /// Whether the file is a concurrent trace (else every transaction follows the previous).
    pub concurrent: bool,
    pub agents: usize,
    pub start: String,
    pub end: String,
    pub txns: Vec<Txn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    start_content: String,
    end_content: String,
    #[serde(default)]
    num_agents: Option<usize>,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    #[serde(default)]
    agent: Option<usize>,
    #[serde(default)]
    parents: Option<Vec<usize>>,
    patches: Vec<(u32, u32, String)>,
}

/// Longest trace file read (inflated), so a wrong path cannot exhaust memory.
const MAX_TRACE_BYTES: u64 = 512 << 20;
/// Most agents a replay simulates (one node each).
pub const MAX_AGENTS: usize = 16;

impl EditingTrace {
    /// Read a trace file: gzipped (by its magic bytes) or plain JSON.
    pub fn load(path: &std::path::Path) -> Result<EditingTrace, String> {
        let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .take(MAX_TRACE_BYTES)
                .read_to_end(&mut s)
                .map_err(|e| format!("{}: not gzip: {e}", path.display()))?;
            s
        } else {
            raw
        };
        EditingTrace::parse(&json).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse a trace's JSON and check its shape (parents earlier, agents in range, patches
    /// in bounds of the author's text are checked by the replay itself).
    pub fn parse(json: &[u8]) -> Result<EditingTrace, String> {
        let r: RawTrace =
            serde_json::from_slice(json).map_err(|e| format!("not an editing trace: {e}"))?;
        let concurrent = r.kind.as_deref() == Some("concurrent");
        let agents = if concurrent {
            r.num_agents.ok_or("a concurrent trace needs numAgents")?
        } else {
            1
        };
        if agents == 0 || agents > MAX_AGENTS {
            return Err(format!("numAgents {agents} is not in 1..={MAX_AGENTS}"));
        }
        let mut txns = Vec::with_capacity(r.txns.len());
        for (i, t) in r.txns.into_iter().enumerate() {
            let (agent, parents) = if concurrent {
                let agent = t.agent.ok_or(format!("transaction {i} has no agent"))?;
                let parents = t.parents.ok_or(format!("transaction {i} has no parents"))?;
                (agent, parents)
            } else {
                (0, if i == 0 { vec![] } else { vec![i - 1] })
            };
            if agent >= agents {
                return Err(format!(
                    "transaction {i}: agent {agent} >= numAgents {agents}"
                ));
            }
            if let Some(p) = parents.iter().find(|p| **p >= i) {
                return Err(format!("transaction {i}: parent {p} is not earlier"));
            }
            txns.push(Txn {
                agent,
                parents,
                patches: t.patches,
            });
        }
        Ok(EditingTrace {
            concurrent,
            agents,
            start: r.start_content,
            end: r.end_content,
            txns,
        })
    }

    /// Only the first `n` transactions (their end text is unknown: `end` is cleared).
    pub fn prefix(&self, n: usize) -> EditingTrace {
        let mut t = self.clone();
        if n < t.txns.len() {
            t.txns.truncate(n);
            t.end.clear();
        }
        t
    }

    /// The trace applied sequentially (a sequential trace's text after its transactions);
    /// for a concurrent trace this is meaningless and refused.
    pub fn sequential_text(&self) -> Result<String, String> {
        if self.concurrent {
            return Err("a concurrent trace has no single sequential text".into());
        }
        let mut text: Vec<char> = self.start.chars().collect();
        for (i, t) in self.txns.iter().enumerate() {
            for (pos, del, ins) in &t.patches {
                let (p, d) = (*pos as usize, *del as usize);
                if p + d > text.len() {
                    return Err(format!("transaction {i}: patch past the end"));
                }
                text.splice(p..p + d, ins.chars());
            }
        }
        Ok(text.into_iter().collect())
    }
}

/// A trace transaction's ops: each patch a Delete then an Insert at its position.
pub fn ops_of(t: &Txn) -> Vec<Op> {
    let mut ops = Vec::new();
    for (pos, del, ins) in &t.patches {
        if *del > 0 {
            ops.push(Op::Delete {
                pos: *pos,
                len: *del,
            });
        }
        if !ins.is_empty() {
            ops.push(Op::Insert {
                pos: *pos,
                text: ins.clone(),
            });
        }
    }
    ops
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub mode: Mode,
    pub txns: usize,
    pub nodes: usize,
    /// Each node's final text.
    pub texts: Vec<String>,
    /// Every node's text equals the trace's `endContent`.
    pub matches: bool,
    /// Virtual time the replay took (ms), from the first edit to the last node level.
    pub virtual_ms: u64,
    /// Remote messages and bytes during the replay.
    pub msgs: u64,
    pub bytes: u64,
    /// Edits whose named version the author's node did not hold yet (the app waited).
    pub waits: u64,
}

/// The document a replay edits.
pub fn trace_doc() -> DocId {
    format!("{}/trace", crate::node_name(0))
        .parse()
        .expect("valid")
}

/// Each node's PeerID for `doc` (from the creator's ACL).
pub fn peers_of(sim: &Sim, nodes: usize, doc: &DocId) -> Result<Vec<u64>, SimError> {
    let acl = sim
        .core::<SyncCore>(0, PROC)
        .and_then(|c| c.acl(doc))
        .ok_or_else(|| sim.fail("the creator has no ACL"))?;
    (0..nodes)
        .map(|i| {
            let node = sim.node_id(i);
            acl.peers
                .iter()
                .filter(|p| &p.node == node)
                .filter_map(|p| p.peer.parse::<u64>().ok())
                .last()
                .ok_or_else(|| sim.fail(format!("{node} has no PeerID")))
        })
        .collect()
}

/// Ask node `i`'s sync process and run until it answers (local: a few ms).
pub fn call(sim: &mut Sim, i: usize, req: &Request) -> Result<Response, SimError> {
    let h = ask(sim, i, req);
    for _ in 0..10_000 {
        sim.run_for(1)?;
        if let Some(a) = answer(sim, h) {
            return a.map_err(|e| sim.fail(format!("{req:?} refused: {e}")));
        }
    }
    Err(sim.fail(format!("{req:?} got no answer")))
}

/// The version `doc` holds on node `i`.
fn node_vv(sim: &Sim, i: usize, doc: &DocId) -> Option<loro::VersionVector> {
    sim.core::<SyncCore>(i, PROC)?.version(doc)
}

/// Replay `trace` through the sync service on one node per agent (two for a sequential
/// trace), sync running live, in network `mode`; `gap_ms` of virtual time pass after each
/// edit. Fails on a refused edit or a version that never arrives, not on a text mismatch
/// (see [`ReplayReport::matches`]).
pub fn replay(
    trace: &EditingTrace,
    mode: Mode,
    seed: u64,
    gap_ms: u64,
) -> Result<ReplayReport, SimError> {
    let nodes = trace.agents.max(2);
    let doc = trace_doc();
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.net = NetConfig::for_mode(mode);
    let mut sim = cluster(cfg, doc.clone(), nodes);
    // The trace's document is named "trace".
    let created = setup_doc(&mut sim, nodes, "trace")?;
    if created != doc {
        return Err(sim.fail(format!("created {created}, expected {doc}")));
    }
    let peers = peers_of(&sim, nodes, &doc)?;
    if !trace.start.is_empty() {
        call(
            &mut sim,
            0,
            &Request::Edit {
                doc: doc.clone(),
                op_id: "start".into(),
                ops: vec![Op::Insert {
                    pos: 0,
                    text: trace.start.clone(),
                }],
                at: None,
                utf16: false,
            },
        )?;
    }
    let start_vv = node_vv(&sim, 0, &doc).unwrap_or_default();
    let (msgs0, bytes0, t0) = (sim.stats.remote.msgs, sim.stats.remote.bytes, sim.now());
    // Per agent: the author PeerID's counter after each of its transactions.
    let mut ends: Vec<Vec<u32>> = vec![Vec::new(); trace.agents];
    // Per transaction: how many of each agent's transactions it has seen (itself included).
    let mut seen: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    let mut waits = 0u64;
    for (k, t) in trace.txns.iter().enumerate() {
        let a = t.agent;
        let mut c = vec![0usize; trace.agents];
        for p in &t.parents {
            for (x, y) in c.iter_mut().zip(&seen[*p]) {
                *x = (*x).max(*y);
            }
        }
        if c[a] != ends[a].len() {
            return Err(sim.fail(format!(
                "transaction {k}: agent {a} does not follow its own previous edit; the replay needs each agent's edits in a chain"
            )));
        }
        let mut pairs: Vec<(u64, u32)> = start_vv
            .iter()
            .map(|(p, n)| (*p, (*n).max(0) as u32))
            .collect();
        for (b, n) in c.iter().enumerate() {
            if *n > 0 {
                let end = ends[b][*n - 1];
                match pairs.iter_mut().find(|(p, _)| *p == peers[b]) {
                    Some(e) => e.1 = e.1.max(end),
                    None => pairs.push((peers[b], end)),
                }
            }
        }
        let at = Version::from_pairs(pairs);
        let at_vv = to_vv(&at).map_err(|e| sim.fail(e))?;
        // The author's node must hold what the author saw: wait for sync to bring it.
        let mut waited = 0u64;
        while !node_vv(&sim, a, &doc).is_some_and(|v| includes(&v, &at_vv)) {
            if waited == 0 {
                waits += 1;
            }
            if waited > 600_000 {
                return Err(sim.fail(format!(
                    "transaction {k}: {} never received the version its author saw",
                    sim.node_id(a)
                )));
            }
            sim.run_for(5)?;
            waited += 5;
        }
        let r = call(
            &mut sim,
            a,
            &Request::Edit {
                doc: doc.clone(),
                op_id: format!("t{k}"),
                ops: ops_of(t),
                at: Some(at),
                utf16: false,
            },
        )?;
        let Response::Edited(e) = r else {
            return Err(sim.fail(format!("transaction {k}: Edit answered {r:?}")));
        };
        let own = e
            .version
            .pairs()
            .map_err(|e| sim.fail(e))?
            .into_iter()
            .find(|(p, _)| *p == peers[a])
            .map_or(0, |(_, n)| n);
        ends[a].push(own);
        c[a] += 1;
        seen.push(c);
        if gap_ms > 0 {
            sim.run_for(gap_ms)?;
        }
    }
    // Until every node holds the same version (or ten minutes of virtual time).
    let mut level_at = sim.now();
    for _ in 0..6_000 {
        let vs: Vec<_> = (0..nodes).map(|i| node_vv(&sim, i, &doc)).collect();
        if vs.iter().all(|v| v.is_some() && *v == vs[0]) {
            level_at = sim.now();
            break;
        }
        sim.run_for(100)?;
    }
    let texts: Vec<String> = (0..nodes)
        .map(|i| {
            sim.core::<SyncCore>(i, PROC)
                .and_then(|c| c.text(&doc))
                .unwrap_or_default()
        })
        .collect();
    let matches = !trace.end.is_empty() && texts.iter().all(|t| *t == trace.end);
    Ok(ReplayReport {
        mode,
        txns: trace.txns.len(),
        nodes,
        matches,
        texts,
        virtual_ms: level_at - t0,
        msgs: sim.stats.remote.msgs - msgs0,
        bytes: sim.stats.remote.bytes - bytes0,
        waits,
    })
}

/// Environment variable naming the folder of the editing traces.
pub const TRACES_ENV: &str = "EDITING_TRACES";

/// The editing-trace file `name` (e.g. `friendsforever.json.gz`): in `$EDITING_TRACES`, or
/// in `test/sim/data/editing-traces` (the copies the tests and the bench use), or in
/// `shared/data/editing-traces` beside the checkout or one of its parents (the project keeps
/// the full set at `../shared/data/editing-traces`).
pub fn trace_path(name: &str) -> Result<std::path::PathBuf, String> {
    if let Ok(dir) = std::env::var(TRACES_ENV) {
        let p = std::path::Path::new(&dir).join(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{TRACES_ENV}={dir} holds no {name}"))
        };
    }
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = here.join("data/editing-traces").join(name);
    if ours.is_file() {
        return Ok(ours);
    }
    for dir in here.ancestors() {
        let p = dir.join("shared/data/editing-traces").join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "no editing trace {name} in shared/data/editing-traces beside {} or a parent; set {TRACES_ENV} to its folder",
        here.display()
    ))
}
