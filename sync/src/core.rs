//! Pure core of `sync`: replicated documents on Loro. See docs/sync.md for the design.
//!
//! Sub-machines, each owning its state: [`Docs`] (documents, their ACL and durable log),
//! [`Outbox`] (what each peer is owed, one send in flight per peer, backoff, breaker),
//! [`Subscribers`] (change events to local apps), [`Offers`] and [`Pulls`] (blobs too large
//! for one message, in chunks). The core routes inputs between them.

mod aware;

use crate::awareness::Awareness;
use crate::doc::{blob_changes, deflate, includes, inflate, to_version, to_vv, Doc};
use crate::live::{self, Arrival, Live};
use crate::outbox::{item_doc, AfterFailure, Item, Outbox};
use crate::transfer::{Arrived, Failed, Offers, PullKey, Pulls, ServeError};
use crate::undo;
use crate::vecmap::{VecMap, VecSet};
use litemap::LiteMap;
use loro::VersionVector;
use p2p_common::api::sync::{
    Acl, Chunked, DataPage, DocId, DocInfo, DocPeers, Edited, Encoding, JoinAnswer, Member,
    PeerAnswer, PeerOwner, PeerRequest, PeerSync, PeerSyncState, Request, Response, Role,
    SyncAnswer, SyncEvent, SyncStats, Version, DEFAULT_PAGE, MAX_LOCAL_REQUEST, MAX_MEMBERS,
};
use p2p_common::api::{
    decode_request, decode_response, encode, encode_result, ApiError, ApiResult, ErrorCode,
};
use p2p_common::resilience::{
    BudgetConfig, Reachability, SenderBudgets, Status as ReachStatus, Traffic,
};
use p2p_common::service::log;
use p2p_common::{
    Address, Batch, Effect, Input, Level, Millis, NodeId, Now, Records, RequestId, Service,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// With `at`, a Delete spans at most this many characters (each is looked up).
pub const MAX_AT_DELETE: usize = 1 << 16;
/// Anti-entropy period (each tick syncs up to [`AE_DOCS_PER_TICK`] documents with one
/// random member each), jittered by ±20 %.
pub const AE_INTERVAL_MS: Millis = 5_000;
pub const AE_DOCS_PER_TICK: usize = 32;
/// Timeout of protocol requests (seconds); joins move a whole snapshot.
const SEND_TIMEOUT_S: u64 = 15;
const JOIN_TIMEOUT_S: u64 = 30;
const EVENT_TIMEOUT_S: u64 = 5;
/// Largest body of a protocol message (JSON; the Loro bytes travel in the blob).
const MAX_PEER_BODY: usize = 256 << 10;
/// Largest blob accepted or sent in one message (Hyperware drops a connection over 10 MiB);
/// a larger one is offered in chunks ([`crate::transfer`]).
pub const MAX_WIRE_BLOB: usize = 8 << 20;
/// Timeout of one chunk fetch (4 MiB).
const CHUNK_TIMEOUT_S: u64 = 30;
/// How often offers and pulls are swept for idle ones while any exist.
const TRANSFER_SWEEP_MS: Millis = 10_000;
/// A Join whose chunked snapshot became unavailable mid-way starts over this often.
const JOIN_RESTARTS: u32 = 2;
/// Largest inflated blob.
pub const MAX_INFLATED: usize = 64 << 20;
/// Documents this node keeps (created, joined or invited).
pub const MAX_DOCS: usize = 1024;
/// Invitations one creator may have pending here.
pub const MAX_INVITES_PER_CREATOR: usize = 64;
/// PeerIDs one node may register per document.
pub const MAX_PEERS_PER_NODE: usize = 16;
/// Op ids remembered per document (retries of older ones apply again).
pub const OP_IDS_KEPT: usize = 1024;
/// Compaction: a document's update log is folded into a new snapshot in the background
/// when it has more than this many entries and at least half its snapshot's bytes (so a
/// snapshot, which costs the whole state, is paid for by at least half as many bytes of
/// writes: amortized O(1) per byte written), or more than [`COMPACT_MAX_ENTRIES`] entries,
/// or more bytes than its snapshot (and at least 64 KiB).
pub const COMPACT_ENTRIES: u64 = 64;
/// Log entries per document beyond which it is compacted whatever their size (bounds its
/// records and the work of loading it at start).
pub const COMPACT_MAX_ENTRIES: u64 = 4096;
const COMPACT_MIN_BYTES: usize = 64 << 10;
const COMPACT_DELAY_MS: Millis = 1_000;
/// Blobs smaller than this go raw.
const DEFLATE_OVER: usize = 512;
/// Subscribers, and events queued per subscriber (oldest dropped).
const MAX_SUBSCRIBERS: usize = 32;
const EVENT_QUEUE: usize = 256;
const EVENT_FAILURES: u32 = 3;
/// Persisted meta format.
const META_V: u32 = 1;
/// How the answer to a live frame for a stream we do not know begins.
const LIVE_UNKNOWN: &str = "no live stream";

type Eff = Effect<Ctx, Timer>;
/// An answer and its blob.
type Reply = ApiResult<(Response, Option<Vec<u8>>)>;

/// What an outbox item becomes.
enum Built {
    /// A message; `expect`: awaiting its answer (one in flight per peer), else one-way.
    Msg {
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        stream: Option<u32>,
        live: bool,
        expect: bool,
    },
    /// A live frame to a peer that takes `LiveFrames`: it goes with the other frames of
    /// the flush ([`SyncCore::send_frames`]).
    Frame {
        doc: DocId,
        stream: u32,
        part: live::Part,
    },
    /// A live frame may not go before this time (the flush window).
    Wait(Millis),
}

/// A frame collected for a `LiveFrames` message.
struct Collected {
    doc: DocId,
    stream: u32,
    part: live::Part,
}

/// Context of an awaited send.
#[derive(Debug, Clone)]
pub enum Ctx {
    /// An outbox item to `peer`; `stream`: the live stream a Delta opens, or the one a
    /// `Live` frame that expects an answer is on (`live: true`).
    Out {
        peer: NodeId,
        item: Item,
        stream: Option<u32>,
        live: bool,
    },
    /// A `LiveFrames` message to `peer` expecting an answer: every document it carried
    /// and whether its frame asked (the answer has one version per frame that asked).
    Frames {
        peer: NodeId,
        docs: Vec<(DocId, bool)>,
    },
    /// Anti-entropy with `peer`.
    Sync { doc: DocId, peer: NodeId },
    /// A local Join waiting for the creator's snapshot.
    Join {
        doc: DocId,
        caller: Option<RequestId>,
        peer: u64,
        /// Times it started over (its chunked snapshot went away mid-way).
        restarts: u32,
    },
    /// An event to a subscriber.
    Event { app: Address },
    /// Chunk `index` of a transfer `from` offered us.
    Chunk { key: PullKey, index: u32 },
}

/// What a pull's blob is for once all of it is in.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// The snapshot of a local Join (answered then).
    Join {
        caller: Option<RequestId>,
        peer: u64,
        answer: JoinAnswer,
        restarts: u32,
    },
    /// Changes a member sent or answered with (a Delta, a SyncAnswer).
    Changes { encoding: Encoding },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    AntiEntropy,
    Retry(NodeId),
    Compact,
    /// Fetch the chunks of a pull again after a failure.
    Chunk(PullKey),
    /// Sweep idle offers and pulls.
    Transfers,
    /// Awareness: the end of a flush window; expiries and heartbeats.
    AwarenessFlush,
    AwarenessTick,
    /// The flush window of live frames to a peer ended ([`crate::live::FLUSH_MS`]).
    Flush(NodeId),
    /// One-way frames went to a peer [`crate::live::ACK_EVERY_MS`] ago: probe the
    /// documents it has not confirmed since.
    Confirm(NodeId),
}

/// What is stored per document (record `m/<doc>`), forced when it changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    v: u32,
    acl: Acl,
    /// We hold the content (created or joined); otherwise we were only invited.
    joined: bool,
    /// The Loro PeerID we write with (fresh whenever the content is new to us).
    our_peer: u64,
}

/// One document this node knows.
struct Entry {
    meta: Meta,
    doc: Option<Doc>,
    /// Update log `u/<doc>/<seq>`: first live entry, next sequence number, entries, bytes.
    log_first: u64,
    log_next: u64,
    log_bytes: usize,
    snap_bytes: usize,
    /// Op ids of acknowledged edits, oldest first.
    op_ids: VecDeque<String>,
    op_set: BTreeSet<String>,
    /// What each peer is known to have (from its Acks, SyncRequests and answers).
    known: VecMap<NodeId, VersionVector>,
    /// Peers an anti-entropy exchange is in flight with.
    syncing: VecSet<NodeId>,
    /// What each peer last said it has (its Ack or answered live frame): `known` runs ahead
    /// of it while one-way live frames are out, and falls back to it when one fails.
    confirmed: VecMap<NodeId, VersionVector>,
    /// Peers sent one-way live frames since they last said what they have: `Peers` reports
    /// them from `confirmed`, not from the guess in `known`.
    unconfirmed: VecSet<NodeId>,
}

impl Entry {
    fn new(meta: Meta, doc: Option<Doc>) -> Entry {
        Entry {
            meta,
            doc,
            log_first: 0,
            log_next: 0,
            log_bytes: 0,
            snap_bytes: 0,
            op_ids: VecDeque::new(),
            op_set: BTreeSet::new(),
            known: VecMap::new(),
            syncing: VecSet::new(),
            confirmed: VecMap::new(),
            unconfirmed: VecSet::new(),
        }
    }
    fn acl(&self) -> &Acl {
        &self.meta.acl
    }
}

fn role_in(acl: &Acl, node: &NodeId) -> Option<Role> {
    if *node == acl.doc.creator {
        return Some(Role::Writer);
    }
    acl.members.iter().find(|m| m.node == *node).map(|m| m.role)
}

fn is_member(acl: &Acl, node: &NodeId) -> bool {
    role_in(acl, node).is_some()
}

/// Nodes that hold the document, us excluded: the creator and the joined members.
fn holders(acl: &Acl, us: &NodeId) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = acl
        .joined
        .iter()
        .filter(|n| is_member(acl, n))
        .cloned()
        .chain(std::iter::once(acl.doc.creator.clone()))
        .filter(|n| n != us)
        .collect();
    p2p_common::sort::sort_unstable(&mut v);
    v.dedup();
    v
}

/// Whether every PeerID in `blob` belongs to a writer of `acl` (a peer of a former writer
/// only up to its frozen counter).
/// Why a blob's changes are refused before import.
enum Refused {
    /// Its header does not decode: no Loro update at all.
    NotLoro(String),
    /// Changes by a PeerID that is not a current writer's.
    Forbidden(String),
}

fn check_peers(acl: &Acl, blob: &[u8]) -> Result<(), Refused> {
    // One header decode (it decodes every change of the blob).
    for (peer, end) in blob_changes(blob).map_err(Refused::NotLoro)? {
        let owner = acl.peers.iter().find(|o| o.peer == peer.to_string());
        match owner {
            None => {
                return Err(Refused::Forbidden(format!(
                    "changes by PeerID {peer}, which no member registered"
                )))
            }
            Some(o) => {
                let writer = role_in(acl, &o.node) == Some(Role::Writer);
                let frozen_ok = o.frozen.is_some_and(|f| end <= f);
                if !writer && !frozen_ok {
                    return Err(Refused::Forbidden(format!(
                        "changes by PeerID {peer} of {}, who may not write",
                        o.node
                    )));
                }
            }
        }
    }
    Ok(())
}

fn key_meta(doc: &DocId) -> Vec<u8> {
    format!("m/{doc}").into_bytes()
}
fn key_snap(doc: &DocId) -> Vec<u8> {
    format!("s/{doc}").into_bytes()
}
fn key_log(doc: &DocId, seq: u64) -> Vec<u8> {
    format!("u/{doc}/{seq:016x}").into_bytes()
}
fn key_op(doc: &DocId, op: &str) -> Vec<u8> {
    format!("o/{doc}/{op}").into_bytes()
}

/// A subscriber and its queue.
struct Sub {
    doc: Option<DocId>,
    queue: VecDeque<SyncEvent>,
    in_flight: bool,
    failures: u32,
}

/// Change events to local apps: one in flight per app, bounded queue, dropped after
/// [`EVENT_FAILURES`] failed deliveries in a row.
#[derive(Default)]
struct Subscribers {
    subs: VecMap<Address, Sub>,
    seq: u64,
    dropped: u64,
}

impl Subscribers {
    fn emit(&mut self, doc: &DocId, make: impl Fn(u64) -> SyncEvent, out: &mut Vec<Eff>) {
        self.seq += 1;
        let ev = make(self.seq);
        for (_, s) in self.subs.iter_mut() {
            if s.doc.as_ref().is_none_or(|d| d == doc) {
                if s.queue.len() >= EVENT_QUEUE {
                    s.queue.pop_front();
                    self.dropped += 1;
                }
                s.queue.push_back(ev.clone());
            }
        }
        self.pump(out);
    }
    fn pump(&mut self, out: &mut Vec<Eff>) {
        for (app, s) in self.subs.iter_mut() {
            if s.in_flight {
                continue;
            }
            if let Some(ev) = s.queue.pop_front() {
                s.in_flight = true;
                out.push(Effect::request(
                    app.clone(),
                    encode(&ev),
                    EVENT_TIMEOUT_S,
                    Ctx::Event { app: app.clone() },
                ));
            }
        }
    }
    fn outcome(&mut self, app: &Address, ok: bool, out: &mut Vec<Eff>) {
        if let Some(s) = self.subs.get_mut(app) {
            s.in_flight = false;
            if ok {
                s.failures = 0;
            } else {
                s.failures += 1;
                if s.failures >= EVENT_FAILURES {
                    self.subs.remove(app);
                    out.push(log(
                        Level::Warn,
                        format!(
                            "subscriber {app} dropped after {EVENT_FAILURES} failed deliveries"
                        ),
                    ));
                }
            }
        }
        self.pump(out);
    }
}

/// The sync service.
pub struct SyncCore {
    our: Address,
    me: NodeId,
    rng: ChaCha8Rng,
    docs: LiteMap<DocId, Entry>,
    outbox: Outbox,
    subs: Subscribers,
    reach: Reachability,
    budgets: SenderBudgets,
    /// Anti-entropy round-robin position.
    ae_cursor: Option<DocId>,
    compact_armed: bool,
    offers: Offers,
    pulls: Pulls<Purpose>,
    sweep_armed: bool,
    transfers_refused_logged: u64,
    pub stats: SyncStats,
    /// Ephemeral awareness ([`crate::awareness`]), its budget per sender, refusals.
    aware: Awareness,
    aware_budgets: SenderBudgets,
    aware_refused: u64,
    /// Wall clock of the input being handled (awareness clocks).
    wall: Millis,
    /// Messages to and from each other node since start (for `Health`).
    traffic: Traffic,
    /// Live streams both ways ([`crate::live`]) and the peers a flush timer is armed for.
    live: Live,
    flush_armed: BTreeSet<NodeId>,
    /// Peers a [`Timer::Confirm`] is armed for.
    confirm_armed: BTreeSet<NodeId>,
}

pub fn new(our: Address) -> SyncCore {
    SyncCore::new(our)
}

impl SyncCore {
    pub fn new(our: Address) -> SyncCore {
        SyncCore {
            me: our.node.clone(),
            our,
            rng: ChaCha8Rng::seed_from_u64(0),
            docs: LiteMap::new(),
            outbox: Outbox::new(),
            subs: Subscribers::default(),
            reach: Reachability::default(),
            budgets: SenderBudgets::new(BudgetConfig {
                per_second: 50,
                burst: 500,
                max_senders: 4096,
            }),
            ae_cursor: None,
            compact_armed: false,
            offers: Offers::default(),
            pulls: Pulls::default(),
            sweep_armed: false,
            transfers_refused_logged: 0,
            stats: SyncStats::default(),
            aware: Awareness::default(),
            aware_budgets: SenderBudgets::new(BudgetConfig {
                per_second: 20,
                burst: 40,
                max_senders: 1024,
            }),
            aware_refused: 0,
            wall: 0,
            traffic: Traffic::default(),
            live: Live::new(),
            flush_armed: BTreeSet::new(),
            confirm_armed: BTreeSet::new(),
        }
    }

    // ----- read-only views (tests, simulator) -----

    /// The text of `doc` if this node holds it.
    pub fn text(&self, doc: &DocId) -> Option<String> {
        self.docs.get(doc)?.doc.as_ref().map(Doc::text)
    }
    /// The content of `doc` if this node holds it.
    pub fn content(&self, doc: &DocId) -> Option<p2p_common::api::sync::Content> {
        self.docs.get(doc)?.doc.as_ref().map(Doc::content)
    }
    pub fn version(&self, doc: &DocId) -> Option<VersionVector> {
        self.docs.get(doc)?.doc.as_ref().map(Doc::vv)
    }
    /// Whether this node knows `doc` at all (content or invitation).
    pub fn knows(&self, doc: &DocId) -> bool {
        self.docs.contains_key(doc)
    }
    pub fn acl(&self, doc: &DocId) -> Option<&Acl> {
        self.docs.get(doc).map(Entry::acl)
    }
    pub fn outbox_queued(&self) -> usize {
        self.outbox.queued()
    }
    /// Offers of large blobs open here, and the bytes they hold.
    pub fn offers_open(&self) -> (usize, u64) {
        (self.offers.len(), self.offers.bytes())
    }
    /// Chunked transfers being fetched here, and the bytes they hold so far.
    pub fn pulls_open(&self) -> (usize, u64) {
        (self.pulls.len(), self.pulls.held())
    }
    /// The per-peer outbox (its circuit breakers: the playground's health view).
    /// What `peer` is known to have of `doc` (tests).
    pub fn known_of(&self, doc: &DocId, peer: &NodeId) -> Option<&VersionVector> {
        self.docs.get(doc)?.known.get(peer)
    }

    /// Live streams both ways (tests).
    pub fn live(&self) -> &Live {
        &self.live
    }
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    /// What sync's own sends say about each peer's reachability.
    pub fn reachability(&self) -> &Reachability {
        &self.reach
    }
    /// The `Health` answer: reachability from our sends, the outbox's breakers, messages.
    pub fn health(&self, now: Millis) -> p2p_common::resilience::HealthReport {
        p2p_common::resilience::health::report(
            &self.me,
            now,
            &self.reach,
            Some(&self.outbox.breakers),
            &self.traffic,
            p2p_common::resilience::health::MAX_HEALTH_PEERS,
        )
    }

    fn info(&self, e: &Entry) -> DocInfo {
        DocInfo {
            doc: e.meta.acl.doc.clone(),
            members: e.meta.acl.members.clone(),
            joined: e.meta.joined,
            role: if e.meta.acl.doc.creator == self.me {
                None
            } else {
                role_in(&e.meta.acl, &self.me)
            },
            version: e.doc.as_ref().map(Doc::version).unwrap_or_default(),
        }
    }

    fn fresh_peer(&mut self) -> u64 {
        // Never 0 or u64::MAX (Loro reserves the latter).
        self.rng.gen_range(1..u64::MAX - 1)
    }

    fn owner_of(acl: &Acl, peer: u64) -> Option<NodeId> {
        let p = peer.to_string();
        acl.peers
            .iter()
            .find(|o| o.peer == p)
            .map(|o| o.node.clone())
    }

    // ----- start and storage -----

    fn start(&mut self, records: Records, seed: u64, now: Millis, out: &mut Vec<Eff>) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.reach.restart(now);
        // Every record of a document, gathered (one map: each map type is code in the wasm).
        #[derive(Default)]
        struct Loaded {
            meta: Option<Meta>,
            snap: Option<Vec<u8>>,
            log: Vec<(u64, Vec<u8>)>,
            ops: Vec<(u64, String)>,
        }
        let mut loaded: LiteMap<DocId, Loaded> = LiteMap::new();
        let mut bad = 0u32;
        for (k, v) in records {
            let Ok(k) = String::from_utf8(k) else {
                bad += 1;
                continue;
            };
            let (kind, rest) = k.split_at(k.len().min(2));
            let parsed: Option<()> = (|| {
                match kind {
                    "m/" => {
                        let doc: DocId = rest.parse().ok()?;
                        let m: Meta = serde_json::from_slice(&v).ok()?;
                        loaded.entry(doc).or_default().meta = Some(m);
                    }
                    "s/" => {
                        loaded.entry(rest.parse().ok()?).or_default().snap = Some(v);
                    }
                    "u/" => {
                        let (doc, seq) = rest.rsplit_once('/')?;
                        let seq = u64::from_str_radix(seq, 16).ok()?;
                        loaded
                            .entry(doc.parse().ok()?)
                            .or_default()
                            .log
                            .push((seq, v));
                    }
                    "o/" => {
                        let mut parts = rest.splitn(3, '/');
                        let doc: DocId = format!("{}/{}", parts.next()?, parts.next()?)
                            .parse()
                            .ok()?;
                        let op = parts.next()?.to_string();
                        let seq = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
                        loaded.entry(doc).or_default().ops.push((seq, op));
                    }
                    _ => return None,
                }
                Some(())
            })();
            if parsed.is_none() {
                bad += 1;
            }
        }
        for (id, l) in loaded {
            // Records of a document without its meta record: leftovers, ignored.
            let Some(meta) = l.meta else { continue };
            let mut doc = None;
            let mut e_log = l.log;
            p2p_common::sort::sort_unstable(&mut e_log);
            let snap = l.snap;
            if meta.joined {
                let mut d = Doc::new(id.clone(), meta.our_peer);
                if let Some(s) = &snap {
                    if let Err(err) = d.import(s) {
                        out.push(log(
                            Level::Error,
                            format!("{id}: snapshot does not load: {err}"),
                        ));
                    }
                }
                let blobs: Vec<Vec<u8>> = e_log.iter().map(|(_, b)| b.clone()).collect();
                if !blobs.is_empty() {
                    if let Err(err) = d.loro.import_batch(&blobs) {
                        out.push(log(
                            Level::Error,
                            format!("{id}: update log does not load: {err}"),
                        ));
                    }
                }
                doc = Some(d);
            }
            let mut e = Entry::new(meta, doc);
            e.snap_bytes = snap.map_or(0, |s| s.len());
            e.log_first = e_log.first().map_or(0, |(s, _)| *s);
            e.log_next = e_log.last().map_or(0, |(s, _)| s + 1);
            e.log_bytes = e_log.iter().map(|(_, b)| b.len()).sum();
            let mut o = l.ops;
            p2p_common::sort::sort_unstable(&mut o);
            for (_, op) in o {
                e.op_set.insert(op.clone());
                e.op_ids.push_back(op);
            }
            self.docs.insert(id, e);
        }
        if bad > 0 {
            out.push(log(
                Level::Warn,
                format!("{bad} stored records not understood; ignored"),
            ));
        }
        out.push(log(
            Level::Info,
            format!(
                "sync started on {} with {} documents",
                self.our,
                self.docs.len()
            ),
        ));
        self.arm_ae(out);
        if self.docs.values().any(Self::needs_compaction) {
            self.arm_compact(out);
        }
    }

    fn arm_ae(&mut self, out: &mut Vec<Eff>) {
        let jitter = self.rng.gen_range(0..=AE_INTERVAL_MS * 2 / 5);
        out.push(Effect::timer(
            AE_INTERVAL_MS * 4 / 5 + jitter,
            Timer::AntiEntropy,
        ));
    }

    fn arm_compact(&mut self, out: &mut Vec<Eff>) {
        if !self.compact_armed {
            self.compact_armed = true;
            out.push(Effect::timer(COMPACT_DELAY_MS, Timer::Compact));
        }
    }

    fn store_meta(&self, e: &Entry, batch: Batch) -> Batch {
        batch.put(
            key_meta(&e.meta.acl.doc),
            serde_json::to_vec(&e.meta).expect("meta serializes"),
        )
    }

    /// Append `blob` to the document's update log (in `batch`).
    fn log_append(e: &mut Entry, blob: &[u8], batch: Batch) -> Batch {
        let key = key_log(&e.meta.acl.doc, e.log_next);
        e.log_next += 1;
        e.log_bytes += blob.len();
        batch.put(key, blob.to_vec())
    }

    fn needs_compaction(e: &Entry) -> bool {
        let entries = e.log_next - e.log_first;
        e.doc.is_some()
            && ((entries > COMPACT_ENTRIES && e.log_bytes.saturating_mul(2) >= e.snap_bytes)
                || entries > COMPACT_MAX_ENTRIES
                || (e.log_bytes > COMPACT_MIN_BYTES && e.log_bytes > e.snap_bytes))
    }

    /// Fold long update logs into snapshots (lazy: a crash before it lands keeps the log).
    fn compact(&mut self, out: &mut Vec<Eff>) {
        self.compact_armed = false;
        let mut batch = Batch::lazy();
        let mut n = 0;
        for (_, e) in self.docs.iter_mut() {
            if !Self::needs_compaction(e) {
                continue;
            }
            let Some(d) = &e.doc else { continue };
            let snap = d.snapshot();
            e.snap_bytes = snap.len();
            batch = batch.put(key_snap(&e.meta.acl.doc), snap);
            for s in e.log_first..e.log_next {
                batch = batch.delete(key_log(&e.meta.acl.doc, s));
            }
            e.log_first = e.log_next;
            e.log_bytes = 0;
            n += 1;
        }
        if n > 0 {
            self.stats.compactions += n;
            out.push(Effect::Store(batch));
            out.push(log(Level::Debug, format!("compacted {n} documents")));
        }
    }

    /// Forget a document and delete its records (forced).
    fn drop_doc(&mut self, doc: &DocId, out: &mut Vec<Eff>) {
        let Some(e) = self.docs.remove(doc) else {
            return;
        };
        let mut batch = Batch::forced().delete(key_meta(doc)).delete(key_snap(doc));
        for s in e.log_first..e.log_next {
            batch = batch.delete(key_log(doc, s));
        }
        for op in &e.op_ids {
            batch = batch.delete(key_op(doc, op));
        }
        out.push(Effect::Store(batch));
        self.aware.forget_doc(doc);
        self.live.forget(doc, None);
        self.outbox
            .forget_doc(doc, |i| matches!(i, Item::Leave(_) | Item::Deleted(_)));
        self.offers.forget_doc(doc);
        for k in self.pulls.of(doc) {
            if let Some(Purpose::Join { .. }) = self.pulls.get(&k).map(|p| &p.purpose) {
                // A join in progress ends with its fetch (its caller is answered then).
                continue;
            }
            self.pulls.cancel(&k);
        }
    }

    // ----- outbox -----

    fn owe(&mut self, peer: &NodeId, item: Item, now: Millis, out: &mut Vec<Eff>) {
        if *peer == self.me {
            return;
        }
        if !self.outbox.push(peer, item) && self.outbox.refused.is_power_of_two() {
            out.push(log(
                Level::Warn,
                format!(
                    "outbox to {peer} full; {} items dropped so far",
                    self.outbox.refused
                ),
            ));
        }
        self.pump(peer, now, out);
    }

    /// Send the next items owed to `peer` that may go now; the live frames among them to a
    /// peer that takes `LiveFrames` leave together ([`SyncCore::send_frames`]).
    fn pump(&mut self, peer: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let mut frames: Vec<Collected> = Vec::new();
        self.pump_items(peer, now, &mut frames, out);
        self.send_frames(peer, frames, out);
    }

    fn pump_items(
        &mut self,
        peer: &NodeId,
        now: Millis,
        frames: &mut Vec<Collected>,
        out: &mut Vec<Eff>,
    ) {
        // A live frame went in this pass: others may join it (`Live::next_send`).
        let mut in_flush = false;
        loop {
            let item = match self.outbox.next(peer, now) {
                Ok(Some(i)) => i,
                Ok(None) => return,
                Err(wait) => {
                    out.push(Effect::timer(wait, Timer::Retry(peer.clone())));
                    return;
                }
            };
            match self.build(peer, &item, now, in_flush) {
                Some(Built::Frame { doc, stream, part }) => {
                    self.outbox.skip(peer);
                    frames.push(Collected { doc, stream, part });
                    in_flush = true;
                }
                Some(Built::Msg {
                    body,
                    blob,
                    stream,
                    live,
                    expect,
                }) => {
                    self.stats.bytes_sent +=
                        (body.len() + blob.as_ref().map_or(0, Vec::len)) as u64;
                    let to = Address::ours(peer, p2p_common::api::sync::PROCESS);
                    in_flush |= live;
                    if !expect {
                        self.arm_confirm(peer, out);
                        // A one-way live frame: nothing to wait for; the next item may go.
                        out.push(Effect::Send {
                            to,
                            body,
                            blob,
                            expect: None,
                        });
                        self.outbox.skip(peer);
                        continue;
                    }
                    // This message awaits its answer (one in flight per peer): frames
                    // collected meanwhile go one-way (their streams ask again within
                    // `live::ACK_EVERY_MS`).
                    for f in frames.iter_mut() {
                        f.part.ask = false;
                    }
                    out.push(Effect::Send {
                        to,
                        body,
                        blob,
                        expect: Some(p2p_common::Expect {
                            timeout_s: SEND_TIMEOUT_S,
                            ctx: Ctx::Out {
                                peer: peer.clone(),
                                item,
                                stream,
                                live,
                            },
                        }),
                    });
                    return;
                }
                Some(Built::Wait(at)) => {
                    // Inside the peer's flush window: the item waits for its end.
                    self.outbox.skip(peer);
                    self.outbox.push(peer, item);
                    if self.flush_armed.insert(peer.clone()) {
                        out.push(Effect::timer(
                            at.saturating_sub(now).max(1),
                            Timer::Flush(peer.clone()),
                        ));
                    }
                    return;
                }
                None => self.outbox.skip(peer),
            }
        }
    }

    /// The frames of one flush to `peer` (each a document's next frame on its stream), as
    /// few `LiveFrames` messages as the bounds allow ([`live::pack_frames`]); a message of one
    /// frame goes as a plain `Live`. The frames that ask go first, and only those of the
    /// first message keep asking (one message in flight per peer; the others' streams ask
    /// again within [`live::ACK_EVERY_MS`]), and only if nothing else is in flight.
    fn send_frames(&mut self, peer: &NodeId, frames: Vec<Collected>, out: &mut Vec<Eff>) {
        if frames.is_empty() {
            return;
        }
        let max = self.live.frames_to(peer).unwrap_or(1);
        // The asking frames first (no sort: a partition keeps each side's order).
        let (mut first, rest): (Vec<Collected>, Vec<Collected>) =
            frames.into_iter().partition(|f| f.part.ask);
        first.extend(rest);
        let frames = first;
        let parts: Vec<live::Part> = frames.iter().map(|f| f.part.clone()).collect();
        let packed = live::pack_frames(&parts, max);
        let mut rest = frames.into_iter();
        let mut may_ask = !self.outbox.in_flight(peer);
        let to = Address::ours(peer, p2p_common::api::sync::PROCESS);
        for msg in packed {
            let these: Vec<Collected> = rest.by_ref().take(msg.len()).collect();
            let asks = may_ask && these.iter().any(|f| f.part.ask);
            let hold = asks && self.outbox.hold(peer, Item::Delta(these[0].doc.clone()));
            may_ask &= !hold;
            let (body, blob, ctx) = if let [one] = &these[..] {
                let ctx = hold.then(|| Ctx::Out {
                    peer: peer.clone(),
                    item: Item::Delta(one.doc.clone()),
                    stream: Some(one.stream),
                    live: true,
                });
                (encode(&PeerRequest::Live {}), one.part.frame.clone(), ctx)
            } else {
                let parts: Vec<live::Part> = these
                    .iter()
                    .map(|f| live::Part {
                        ask: hold && f.part.ask,
                        frame: f.part.frame.clone(),
                    })
                    .collect();
                let ctx = hold.then(|| Ctx::Frames {
                    peer: peer.clone(),
                    docs: these.iter().map(|f| (f.doc.clone(), f.part.ask)).collect(),
                });
                (
                    encode(&PeerRequest::LiveFrames {}),
                    live::encode_frames(&parts),
                    ctx,
                )
            };
            self.stats.bytes_sent += (body.len() + blob.len()) as u64;
            if ctx.is_none() {
                self.arm_confirm(peer, out);
            }
            out.push(Effect::Send {
                to: to.clone(),
                body,
                blob: Some(blob),
                expect: ctx.map(|ctx| p2p_common::Expect {
                    timeout_s: SEND_TIMEOUT_S,
                    ctx,
                }),
            });
        }
    }

    /// One-way frames went to `peer`: in [`live::ACK_EVERY_MS`], probe what it has not
    /// confirmed by then ([`SyncCore::probe`]).
    fn arm_confirm(&mut self, peer: &NodeId, out: &mut Vec<Eff>) {
        if self.confirm_armed.insert(peer.clone()) {
            out.push(Effect::timer(
                live::ACK_EVERY_MS,
                Timer::Confirm(peer.clone()),
            ));
        }
    }

    /// The documents `peer` got one-way frames of and has not confirmed since: one empty
    /// frame each expecting an answer (together, as one flush), so a lost last frame is
    /// found out and resent within about [`live::ACK_EVERY_MS`] plus a round trip, not left
    /// to anti-entropy. Waits while a message to the peer is in flight.
    fn probe(&mut self, peer: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        let docs: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, e)| e.unconfirmed.contains(peer))
            .map(|(d, _)| d.clone())
            .collect();
        if docs.is_empty() {
            return;
        }
        if self.outbox.in_flight(peer) {
            self.arm_confirm(peer, out);
            return;
        }
        let mut frames = Vec::new();
        let mut later = false;
        for doc in docs {
            match self.live.probe(peer, &doc, now) {
                Some((stream, seq)) => frames.push(Collected {
                    doc,
                    stream,
                    part: live::Part {
                        ask: true,
                        frame: live::encode_frame(stream, seq, false, &[]),
                    },
                }),
                None => later = true,
            }
        }
        let asked = frames.len();
        self.send_frames(peer, frames, out);
        if later || asked > 1 && self.live.frames_to(peer).is_none() {
            self.arm_confirm(peer, out);
        }
    }

    /// The message for an outbox item, or None if nothing is owed after all.
    fn build(&mut self, peer: &NodeId, item: &Item, now: Millis, in_flush: bool) -> Option<Built> {
        let doc = item_doc(item).clone();
        let msg = |body: Vec<u8>| Built::Msg {
            body,
            blob: None,
            stream: None,
            live: false,
            expect: true,
        };
        match item {
            Item::Leave(_) => Some(msg(encode(&PeerRequest::LeaveDoc { doc }))),
            Item::Deleted(_) => Some(msg(encode(&PeerRequest::DocDeleted { doc }))),
            Item::Invite(_) => {
                let e = self.docs.get(&doc)?;
                let role = e.meta.acl.members.iter().find(|m| m.node == *peer)?.role;
                Some(msg(encode(&PeerRequest::Invitation { doc, role })))
            }
            Item::Acl(_) => {
                let e = self.docs.get(&doc)?;
                Some(msg(encode(&PeerRequest::AclUpdate(e.meta.acl.clone()))))
            }
            Item::Delta(_) => {
                let e = self.docs.get(&doc)?;
                let d = e.doc.as_ref()?;
                if !is_member(&e.meta.acl, peer) {
                    return None;
                }
                let ours = d.vv();
                match e.known.get(peer) {
                    // Not known what it has: ask (the answer says, and brings what we lack).
                    None => Some(msg(encode(&PeerRequest::SyncRequest {
                        doc,
                        version: to_version(&ours),
                        acl_epoch: e.meta.acl.epoch,
                    }))),
                    Some(theirs) if includes(theirs, &ours) => None,
                    Some(_) if self.offers.open_to(peer, &doc) => {
                        // A large delta is on offer to it: one at a time per peer and
                        // document; what is still lacking goes once that is fetched.
                        None
                    }
                    Some(theirs) => {
                        let send = self.live.next_send(peer, &doc, now, in_flush);
                        if let live::Send::Wait(at) = send {
                            return Some(Built::Wait(at));
                        }
                        let raw = d.updates_since(theirs);
                        // A live frame's few hundred bytes shrink too (Loro's header is
                        // mostly zeros): deflated whenever that is smaller.
                        let frame = matches!(send, live::Send::Frame { .. });
                        let (encoding, blob) = if frame && raw.len() <= MAX_WIRE_BLOB {
                            small_wire_blob(raw)
                        } else {
                            wire_blob(raw)
                        };
                        let mut k = theirs.clone();
                        k.merge(&ours);
                        let version = to_version(&ours);
                        self.stats.deltas_sent += 1;
                        if blob.len() <= MAX_WIRE_BLOB {
                            if let live::Send::Frame { stream, seq, ask } = send {
                                // What it has once the frame is in (an answered frame, or
                                // the receiver's SyncRequest after a gap, corrects this).
                                let e = self.docs.get_mut(&doc).expect("present");
                                e.known.insert(peer.clone(), k);
                                e.unconfirmed.add(peer.clone());
                                let deflated = encoding == Encoding::Deflate;
                                let frame = live::encode_frame(stream, seq, deflated, &blob);
                                if self.live.frames_to(peer).is_some() {
                                    return Some(Built::Frame {
                                        doc,
                                        stream,
                                        part: live::Part { ask, frame },
                                    });
                                }
                                return Some(Built::Msg {
                                    body: encode(&PeerRequest::Live {}),
                                    blob: Some(frame),
                                    stream: Some(stream),
                                    live: true,
                                    expect: ask,
                                });
                            }
                            let stream = match send {
                                live::Send::Open(s) => Some(s),
                                _ => None,
                            };
                            return Some(Built::Msg {
                                body: encode(&PeerRequest::Delta {
                                    doc,
                                    version,
                                    encoding,
                                    chunked: None,
                                    stream,
                                }),
                                blob: Some(blob),
                                stream,
                                live: false,
                                expect: true,
                            });
                        }
                        // Too large for one message: offered, and fetched by the peer in
                        // chunks. What it will have once it did (anti-entropy corrects
                        // this guess if it never does). The live stream starts over after.
                        self.live.reset_out(peer, &doc);
                        let desc = self.offer(peer, &doc, blob, now)?;
                        self.docs
                            .get_mut(&doc)
                            .expect("present")
                            .known
                            .insert(peer.clone(), k);
                        Some(msg(encode(&PeerRequest::Delta {
                            doc,
                            version,
                            encoding,
                            chunked: Some(desc),
                            stream: None,
                        })))
                    }
                }
            }
        }
    }

    // ----- handling -----

    fn on_request(
        &mut self,
        id: RequestId,
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let local = from.node == self.me;
        let max = if local {
            MAX_LOCAL_REQUEST
        } else {
            MAX_PEER_BODY
        };
        let decoded = decode_request::<Request>(&body, "sync", max).and_then(Request::validated);
        let result: Option<Reply> = match decoded {
            Err(e) => {
                out.push(log(Level::Debug, format!("bad request from {from}: {e}")));
                Some(Err(e))
            }
            Ok(req) => {
                let from_peer = !local && from.process == self.our.process;
                if req.is_protocol() && !from_peer {
                    Some(Err(ApiError::forbidden(
                        "protocol message: only sync processes on other nodes may send it",
                    )))
                } else if !local && !self.budgets.allow(&from.node, 1, now) {
                    if self.budgets.refused.is_power_of_two() {
                        out.push(log(
                            Level::Warn,
                            format!(
                                "{}: over its message budget ({} refusals)",
                                from.node, self.budgets.refused
                            ),
                        ));
                    }
                    Some(Err(ApiError::new(
                        ErrorCode::Overloaded,
                        "too many messages from your node; slow down",
                    )))
                } else if !req.is_protocol() && !req.is_open() && !local {
                    Some(Err(ApiError::forbidden(
                        "local-only operation: only apps on this node may call it",
                    )))
                } else if req.is_protocol() {
                    self.stats.bytes_received +=
                        (body.len() + blob.as_ref().map_or(0, Vec::len)) as u64;
                    Some(self.protocol(req, &from.node, blob, now, out))
                } else {
                    self.local(req, id, &from, expects, now, out)
                }
            }
        };
        if let (Some(r), true) = (result, expects) {
            match r {
                Ok((resp, blob)) => out.push(Effect::Reply {
                    id,
                    body: encode_result::<Response>(&Ok(resp)),
                    blob,
                }),
                Err(e) => out.push(Effect::reply(id, encode_result::<Response>(&Err(e)))),
            }
        }
    }

    fn not_found(doc: &DocId) -> ApiError {
        ApiError::not_found(format!("no document {doc}"))
    }

    /// A local request; None when the answer comes later (Join).
    fn local(
        &mut self,
        req: Request,
        id: RequestId,
        from: &Address,
        expects: bool,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Option<Reply> {
        let r: ApiResult<Response> = match req {
            Request::Ping {} => Ok(Response::Pong(p2p_common::basic::pong(&self.me))),
            Request::Info {} => Ok(Response::Info(p2p_common::basic::service_info(
                crate::NAME,
                &self.me,
            ))),
            Request::Create { name, members } => self.create(&name, members, now, out),
            Request::SetMember { doc, node, role } => self.set_member(&doc, &node, role, now, out),
            Request::Join { doc } => return self.join(doc, expects.then_some(id), now, out),
            Request::Leave { doc } => self.leave(&doc, now, out),
            Request::Delete { doc } => self.delete(&doc, now, out),
            Request::List {} => Ok(Response::Docs {
                docs: self.docs.values().map(|e| self.info(e)).collect(),
            }),
            Request::Edit {
                doc,
                op_id,
                ops,
                at,
                utf16,
            } => {
                let change = Change::Ops {
                    ops: &ops,
                    at: at.as_ref(),
                    utf16,
                };
                self.edit(&doc, Some(op_id), change, from, now, out)
            }
            Request::Undo { doc, op_id } => self.edit(&doc, op_id, Change::Undo, from, now, out),
            Request::Redo { doc, op_id } => self.edit(&doc, op_id, Change::Redo, from, now, out),
            Request::Read { doc } => self
                .docs
                .get(&doc)
                .and_then(|e| e.doc.as_ref())
                .map(|d| Response::Content(d.content()))
                .ok_or_else(|| Self::not_found(&doc)),
            Request::GetDataSince { doc, since, limit } => {
                return Some(self.data_since(&doc, since.as_ref(), limit));
            }
            Request::Subscribe { doc } => {
                if !self.subs.subs.contains_key(from) && self.subs.subs.len() >= MAX_SUBSCRIBERS {
                    Err(ApiError::new(
                        ErrorCode::Overloaded,
                        format!("at most {MAX_SUBSCRIBERS} subscribers"),
                    ))
                } else {
                    self.subs.subs.insert(
                        from.clone(),
                        Sub {
                            doc,
                            queue: VecDeque::new(),
                            in_flight: false,
                            failures: 0,
                        },
                    );
                    Ok(Response::Subscribed {})
                }
            }
            Request::Unsubscribe {} => {
                self.subs.subs.remove(from);
                self.aware_unsubscribed(from, now, out);
                Ok(Response::Unsubscribed {})
            }
            Request::Stats {} => {
                let mut s = self.stats.clone();
                s.docs = self.docs.len() as u64;
                Ok(Response::Stats(s))
            }
            Request::Peers { doc } => self.peers(&doc, now).map(Response::Peers),
            Request::SetAwareness {
                doc,
                cursor,
                state,
                utf16,
            } => self.set_awareness(now, from, &doc, cursor, state, utf16, out),
            Request::GetAwareness { doc, utf16 } => self.get_awareness(now, &doc, utf16),
            Request::Health {} => Ok(Response::Health(self.health(now))),
            _ => Err(ApiError::internal("protocol request routed as local")),
        };
        Some(r.map(|resp| (resp, None)))
    }
}

/// What a local app's change does ([`SyncCore::edit`]).
enum Change<'a> {
    Ops {
        ops: &'a [p2p_common::api::sync::Op],
        at: Option<&'a Version>,
        utf16: bool,
    },
    Undo,
    Redo,
}

/// An outbox item in a log line.
fn describe(i: &Item) -> String {
    let what = match i {
        Item::Delta(_) => "changes",
        Item::Acl(_) => "the ACL",
        Item::Invite(_) => "an invitation",
        Item::Leave(_) => "a leave notice",
        Item::Deleted(_) => "a deletion notice",
    };
    format!("{what} of {}", item_doc(i))
}

impl SyncCore {
    /// `Peers`: each other holder of `doc` against our copy (at most the ACL's size).
    fn peers(&self, doc: &DocId, now: Millis) -> Result<DocPeers, ApiError> {
        let e = self.docs.get(doc).ok_or_else(|| Self::not_found(doc))?;
        let ours = e
            .doc
            .as_ref()
            .map(Doc::vv)
            .ok_or_else(|| Self::not_found(doc))?;
        let peers = holders(&e.meta.acl, &self.me)
            .into_iter()
            .map(|node| {
                // While one-way frames are out, what the peer last said, not our guess.
                let known = if e.unconfirmed.contains(&node) {
                    e.confirmed.get(&node)
                } else {
                    e.known.get(&node)
                };
                let unreachable = self.reach.status(&node, now) == ReachStatus::Unreachable
                    || matches!(
                        self.outbox.breakers.state(&node),
                        p2p_common::resilience::BreakerState::Open { .. }
                    );
                let state = match known {
                    _ if unreachable => PeerSyncState::Unreachable,
                    None => PeerSyncState::Unknown,
                    Some(k) => match (includes(k, &ours), includes(&ours, k)) {
                        (true, true) => PeerSyncState::InSync,
                        (false, true) => PeerSyncState::Behind,
                        (true, false) => PeerSyncState::Ahead,
                        (false, false) => PeerSyncState::Diverged,
                    },
                };
                PeerSync {
                    node,
                    state,
                    version: known.map(to_version),
                }
            })
            .collect();
        Ok(DocPeers {
            doc: doc.clone(),
            peers,
        })
    }
}

/// `v` with only the PeerIDs registered in `acl` (and ours).
fn registered_only(acl: &Acl, ours: u64, v: VersionVector) -> VersionVector {
    let known: Vec<u64> = acl
        .peers
        .iter()
        .filter_map(|o| o.peer.parse().ok())
        .collect();
    let mut out = VersionVector::new();
    for (p, c) in v.iter() {
        if *p == ours || known.contains(p) {
            out.insert(*p, *c);
        }
    }
    out
}

/// The most a live frame's or a `Delta`'s deflated blob may inflate to: 32 times its
/// bytes (Loro's updates deflate about 2.3x), at least 1 MiB, at most [`MAX_INFLATED`]. A
/// bomb of 64 KB stops at 2 MiB instead of 64 MiB.
fn inflate_cap(wire: usize) -> usize {
    wire.saturating_mul(32).max(1 << 20).min(MAX_INFLATED)
}

/// Whether counting from `before` to `after` passed a power of two (logs at powers of two).
fn crossed_pow2(before: u64, after: u64) -> bool {
    after > before && before.leading_zeros() != after.leading_zeros()
}

/// A small Loro blob as a live frame carries it: deflated when that is smaller.
fn small_wire_blob(raw: Vec<u8>) -> (Encoding, Vec<u8>) {
    let d = deflate(&raw);
    if d.len() < raw.len() {
        (Encoding::Deflate, d)
    } else {
        (Encoding::Raw, raw)
    }
}

/// A Loro blob as it goes on the wire.
fn wire_blob(raw: Vec<u8>) -> (Encoding, Vec<u8>) {
    if raw.len() > DEFLATE_OVER {
        let d = deflate(&raw);
        if d.len() < raw.len() {
            return (Encoding::Deflate, d);
        }
    }
    (Encoding::Raw, raw)
}

impl SyncCore {
    // ----- local operations -----

    fn create(
        &mut self,
        name: &str,
        members: Vec<Member>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let doc = DocId::new(self.me.clone(), name).map_err(ApiError::bad_request)?;
        if self.docs.contains_key(&doc) {
            return Err(ApiError::bad_request(format!("document {doc} exists")));
        }
        if members.iter().any(|m| m.node == self.me) {
            return Err(ApiError::bad_request(
                "the creator is not listed in members (it administers and writes)",
            ));
        }
        if self.docs.len() >= MAX_DOCS {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!("this node keeps at most {MAX_DOCS} documents"),
            ));
        }
        let peer = self.fresh_peer();
        let mut members = members;
        p2p_common::sort::sort_unstable(&mut members);
        let meta = Meta {
            v: META_V,
            acl: Acl {
                doc: doc.clone(),
                epoch: 1,
                members: members.clone(),
                joined: Vec::new(),
                peers: vec![PeerOwner {
                    peer: peer.to_string(),
                    node: self.me.clone(),
                    frozen: None,
                }],
            },
            joined: true,
            our_peer: peer,
        };
        let e = Entry::new(meta, Some(Doc::new(doc.clone(), peer)));
        out.push(Effect::Store(self.store_meta(&e, Batch::forced())));
        let info = self.info(&e);
        self.docs.insert(doc.clone(), e);
        out.push(log(
            Level::Info,
            format!("created {doc} with {} members", members.len()),
        ));
        for m in &members {
            self.owe(&m.node, Item::Invite(doc.clone()), now, out);
        }
        Ok(Response::Created(info))
    }

    fn set_member(
        &mut self,
        doc: &DocId,
        node: &NodeId,
        role: Option<Role>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let me = self.me.clone();
        let e = self.docs.get_mut(doc).ok_or_else(|| Self::not_found(doc))?;
        if doc.creator != me {
            return Err(ApiError::forbidden(format!(
                "only {} administers {doc}",
                doc.creator
            )));
        }
        if *node == me {
            return Err(ApiError::bad_request(
                "the creator's own role cannot change",
            ));
        }
        let acl = &mut e.meta.acl;
        let before = role_in(acl, node);
        let vv = e.doc.as_ref().map(Doc::vv).unwrap_or_default();
        acl.members.retain(|m| m.node != *node);
        if let Some(r) = role {
            if acl.members.len() >= MAX_MEMBERS {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_MEMBERS} members"
                )));
            }
            acl.members.push(Member {
                node: node.clone(),
                role: r,
            });
            p2p_common::sort::sort_unstable(&mut acl.members);
        } else {
            acl.joined.retain(|n| n != node);
        }
        // A writer who stops writing: its changes so far stay valid, later ones do not.
        let still_writer = role == Some(Role::Writer);
        for o in acl.peers.iter_mut().filter(|o| o.node == *node) {
            if !still_writer {
                if o.frozen.is_none() {
                    let p: u64 = o.peer.parse().unwrap_or(0);
                    o.frozen = Some(vv.get(&p).copied().unwrap_or(0).max(0) as u32);
                }
            } else {
                o.frozen = None;
            }
        }
        acl.epoch += 1;
        let targets = holders(acl, &me);
        if role.is_none() {
            // No longer a member: its streams both ways and what we knew of it go.
            e.known.remove(node);
            e.confirmed.remove(node);
            e.unconfirmed.remove(node);
            self.live.forget(doc, Some(node));
        }
        let batch = self.store_meta(self.docs.get(doc).expect("present"), Batch::forced());
        out.push(Effect::Store(batch));
        if role.is_some() && before.is_none() {
            self.owe(node, Item::Invite(doc.clone()), now, out);
        }
        if role.is_none() && before.is_some() {
            self.owe(node, Item::Acl(doc.clone()), now, out);
        }
        for t in targets {
            self.owe(&t, Item::Acl(doc.clone()), now, out);
        }
        Ok(Response::MemberSet(
            self.info(self.docs.get(doc).expect("present")),
        ))
    }

    fn join(
        &mut self,
        doc: DocId,
        caller: Option<RequestId>,
        _now: Millis,
        out: &mut Vec<Eff>,
    ) -> Option<Reply> {
        if let Some(e) = self.docs.get(&doc) {
            if e.meta.joined {
                return Some(Ok((Response::Joined(self.info(e)), None)));
            }
        }
        if doc.creator == self.me {
            return Some(Err(Self::not_found(&doc)));
        }
        if let Some(p) = self.pulls.of_doc(&doc) {
            if matches!(p.purpose, Purpose::Join { .. }) {
                let (got, all) = p.progress();
                return Some(Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "joining {doc}: {got} of {all} chunks of its snapshot are in; ask again"
                    ),
                )));
            }
        }
        if !self.docs.contains_key(&doc) && self.docs.len() >= MAX_DOCS {
            return Some(Err(ApiError::new(
                ErrorCode::Overloaded,
                format!("this node keeps at most {MAX_DOCS} documents"),
            )));
        }
        // A fresh PeerID: the content is new to us, so nothing was ever written with it.
        let peer = self.fresh_peer();
        out.push(Effect::request(
            Address::ours(&doc.creator, p2p_common::api::sync::PROCESS),
            encode(&PeerRequest::JoinDoc {
                doc: doc.clone(),
                peer: Some(peer.to_string()),
            }),
            JOIN_TIMEOUT_S,
            Ctx::Join {
                doc,
                caller,
                peer,
                restarts: 0,
            },
        ));
        None
    }

    fn leave(&mut self, doc: &DocId, now: Millis, out: &mut Vec<Eff>) -> ApiResult<Response> {
        if !self.docs.contains_key(doc) {
            return Err(Self::not_found(doc));
        }
        if doc.creator == self.me {
            return Err(ApiError::bad_request(
                "the creator cannot leave its document; Delete it",
            ));
        }
        self.aware_leave(doc, now, out);
        self.drop_doc(doc, out);
        self.owe(&doc.creator.clone(), Item::Leave(doc.clone()), now, out);
        Ok(Response::Left {})
    }

    fn delete(&mut self, doc: &DocId, now: Millis, out: &mut Vec<Eff>) -> ApiResult<Response> {
        let e = self.docs.get(doc).ok_or_else(|| Self::not_found(doc))?;
        if doc.creator != self.me {
            return Err(ApiError::forbidden(format!(
                "only {} may delete {doc}; Leave it instead",
                doc.creator
            )));
        }
        let members: Vec<NodeId> = e.meta.acl.members.iter().map(|m| m.node.clone()).collect();
        self.drop_doc(doc, out);
        for m in members {
            self.owe(&m, Item::Deleted(doc.clone()), now, out);
        }
        out.push(log(Level::Info, format!("deleted {doc}")));
        Ok(Response::Deleted {})
    }

    /// A local app's change: an `Edit`, `Undo` or `Redo` (once per `op_id`, if given).
    fn edit(
        &mut self,
        doc: &DocId,
        op_id: Option<String>,
        change: Change<'_>,
        app: &Address,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let me = self.me.clone();
        let e = self.docs.get_mut(doc).ok_or_else(|| Self::not_found(doc))?;
        let Some(d) = e.doc.as_mut() else {
            return Err(ApiError::bad_request(format!(
                "{doc} is not joined yet; Join it first"
            )));
        };
        if role_in(&e.meta.acl, &me) != Some(Role::Writer) {
            return Err(ApiError::forbidden(format!(
                "this node may only read {doc}"
            )));
        }
        if SyncCore::owner_of(&e.meta.acl, e.meta.our_peer).as_ref() != Some(&me) {
            return Err(ApiError::forbidden(format!(
                "this node's PeerID for {doc} is not registered with {}",
                doc.creator
            )));
        }
        if op_id.as_ref().is_some_and(|o| e.op_set.contains(o)) {
            self.stats.duplicate_edits += 1;
            return Ok(Response::Edited(Edited {
                doc: doc.clone(),
                version: d.version(),
                duplicate: true,
            }));
        }
        let app = app.process.to_string();
        let before = d.vv();
        d.clear_change();
        let result = match change {
            Change::Ops { ops, at, utf16 } => {
                let at = at.map(to_vv).transpose().map_err(ApiError::bad_request)?;
                d.edit(&app, ops, at.as_ref(), utf16)
            }
            Change::Undo => d.undo(&app, false),
            Change::Redo => d.undo(&app, true),
        };
        // Ops are checked before any applies, so a failure leaves the document as it was;
        // should part of an edit have applied anyway (a bug: a check that missed a case),
        // it is committed and recorded like a whole edit below, so the log holds what peers
        // will be sent, and the answer is still the error (its op id is not kept: the edit
        // was refused, and a retry is checked again).
        d.loro.commit();
        let failed = match result {
            Err(msg) if d.vv() == before => return Err(ApiError::bad_request(msg)),
            Err(msg) => Some(msg),
            Ok(()) => None,
        };
        d.undo.touch(now);
        let blob = d.take_change(&before);
        let version = d.version();
        // Durable before the answer and before any peer hears of it.
        let seq = e.log_next;
        let mut batch = SyncCore::log_append(e, &blob, Batch::forced());
        if let Some(op_id) = op_id.filter(|_| failed.is_none()) {
            batch = batch.put(key_op(doc, &op_id), seq.to_le_bytes().to_vec());
            e.op_set.insert(op_id.clone());
            e.op_ids.push_back(op_id);
        }
        while e.op_ids.len() > OP_IDS_KEPT {
            if let Some(old) = e.op_ids.pop_front() {
                e.op_set.remove(&old);
                batch = batch.delete(key_op(doc, &old));
            }
        }
        out.push(Effect::Store(batch));
        self.stats.edits += 1;
        let compact = Self::needs_compaction(e);
        let targets = holders(&e.meta.acl, &me);
        if compact {
            self.arm_compact(out);
        }
        for t in targets {
            self.owe(&t, Item::Delta(doc.clone()), now, out);
        }
        let v = version.clone();
        self.subs.emit(
            doc,
            |seq| SyncEvent::Changed {
                doc: doc.clone(),
                author: me.clone(),
                local: true,
                version: v.clone(),
                seq,
            },
            out,
        );
        self.bound_undo(doc);
        if let Some(msg) = failed {
            out.push(log(
                Level::Error,
                format!("edit of {doc} failed after part of it applied (kept): {msg}"),
            ));
            return Err(ApiError::bad_request(format!(
                "{msg} (part of the edit was applied and kept)"
            )));
        }
        Ok(Response::Edited(Edited {
            doc: doc.clone(),
            version,
            duplicate: false,
        }))
    }

    /// Keep the undo histories of all documents within [`undo::MAX_UNDO_BYTES_NODE`]
    /// (`current`: the document just edited, whose history stays).
    fn bound_undo(&mut self, current: &DocId) {
        let mut cur = usize::MAX;
        let mut undos: Vec<&mut undo::Undo> = Vec::new();
        for (k, e) in self.docs.iter_mut() {
            if let Some(d) = e.doc.as_mut() {
                if k == current {
                    cur = undos.len();
                }
                undos.push(&mut d.undo);
            }
        }
        undo::bound_node(&mut undos, cur, undo::MAX_UNDO_BYTES_NODE);
    }

    fn data_since(&self, doc: &DocId, since: Option<&Version>, limit: Option<u32>) -> Reply {
        let e = self.docs.get(doc).ok_or_else(|| Self::not_found(doc))?;
        let d = e
            .doc
            .as_ref()
            .ok_or_else(|| ApiError::bad_request(format!("{doc} is not joined yet")))?;
        let since_vv = since
            .map(to_vv)
            .transpose()
            .map_err(ApiError::bad_request)?
            .unwrap_or_default();
        let limit = limit.unwrap_or(DEFAULT_PAGE) as usize;
        let acl = &e.meta.acl;
        let (changes, blob, version, more) =
            d.changes_since(&since_vv, limit, |p| SyncCore::owner_of(acl, p));
        Ok((
            Response::Data(DataPage {
                doc: doc.clone(),
                since: to_version(&since_vv),
                version: to_version(&version),
                changes,
                more,
            }),
            Some(blob),
        ))
    }

    // ----- protocol -----

    fn protocol(
        &mut self,
        req: Request,
        from: &NodeId,
        blob: Option<Vec<u8>>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Reply {
        let none = |r: Response| Ok((r, None));
        match req {
            Request::Invitation { doc, role } => {
                if doc.creator != *from {
                    return Err(ApiError::forbidden("only a document's creator invites"));
                }
                if let Some(e) = self.docs.get(&doc) {
                    if e.meta.joined {
                        return none(Response::Accepted {});
                    }
                }
                let from_creator = self.docs.keys().filter(|d| d.creator == *from).count();
                if !self.docs.contains_key(&doc)
                    && (self.docs.len() >= MAX_DOCS || from_creator >= MAX_INVITES_PER_CREATOR)
                {
                    return Err(ApiError::new(ErrorCode::Overloaded, "too many documents"));
                }
                let meta = Meta {
                    v: META_V,
                    acl: Acl {
                        doc: doc.clone(),
                        epoch: 0,
                        members: vec![Member {
                            node: self.me.clone(),
                            role,
                        }],
                        joined: Vec::new(),
                        peers: Vec::new(),
                    },
                    joined: false,
                    our_peer: 0,
                };
                let e = Entry::new(meta, None);
                out.push(Effect::Store(self.store_meta(&e, Batch::forced())));
                self.docs.insert(doc.clone(), e);
                let f = from.clone();
                self.subs.emit(
                    &doc,
                    |seq| SyncEvent::Invited {
                        doc: doc.clone(),
                        from: f.clone(),
                        role,
                        seq,
                    },
                    out,
                );
                none(Response::Accepted {})
            }
            Request::JoinDoc { doc, peer } => self.on_join_doc(&doc, from, peer, now, out),
            Request::LeaveDoc { doc } => {
                let me = self.me.clone();
                let e = self
                    .docs
                    .get_mut(&doc)
                    .ok_or_else(|| Self::not_found(&doc))?;
                if doc.creator != me || !is_member(&e.meta.acl, from) {
                    return Err(Self::not_found(&doc));
                }
                if e.meta.acl.joined.contains(from) {
                    e.meta.acl.joined.retain(|n| n != from);
                    e.meta.acl.epoch += 1;
                    e.known.remove(from);
                    e.confirmed.remove(from);
                    e.unconfirmed.remove(from);
                    self.live.forget(&doc, Some(from));
                    let e = self.docs.get(&doc).expect("present");
                    let targets = holders(&e.meta.acl, &me);
                    let batch =
                        self.store_meta(self.docs.get(&doc).expect("present"), Batch::forced());
                    out.push(Effect::Store(batch));
                    for t in targets {
                        self.owe(&t, Item::Acl(doc.clone()), now, out);
                    }
                }
                none(Response::Accepted {})
            }
            Request::AclUpdate(acl) => {
                let doc = acl.doc.clone();
                if doc.creator != *from || !self.docs.contains_key(&doc) {
                    return Err(Self::not_found(&doc));
                }
                self.adopt_acl(acl, now, out);
                none(Response::Accepted {})
            }
            Request::SyncRequest {
                doc,
                version,
                acl_epoch,
            } => {
                self.stats.sync_requests += 1;
                let theirs = to_vv(&version).map_err(ApiError::bad_request)?;
                let me = self.me.clone();
                let e = self
                    .docs
                    .get_mut(&doc)
                    .ok_or_else(|| Self::not_found(&doc))?;
                if !is_member(&e.meta.acl, from) {
                    return Err(Self::not_found(&doc));
                }
                let Some(d) = e.doc.as_ref() else {
                    return Err(Self::not_found(&doc));
                };
                let ours = d.vv();
                let (raw, full) = if theirs.is_empty() && !ours.is_empty() {
                    (d.all_updates(), true)
                } else if includes(&theirs, &ours) {
                    (Vec::new(), false)
                } else {
                    (d.updates_since(&theirs), false)
                };
                let (encoding, wire) = wire_blob(raw);
                let acl =
                    (doc.creator == me && acl_epoch < e.meta.acl.epoch).then(|| e.meta.acl.clone());
                // What it has now, and will have once it reads this answer.
                let mut k = theirs.clone();
                k.merge(&ours);
                let (wire, chunked) = if wire.len() > MAX_WIRE_BLOB {
                    // Too large for one message: offered in chunks.
                    let desc = self.offer(from, &doc, wire, now).ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::Overloaded,
                            "busy sending large documents; ask again later",
                        )
                    })?;
                    (Vec::new(), Some(desc))
                } else {
                    (wire, None)
                };
                if full {
                    self.stats.snapshots_sent += 1;
                }
                if let Some(e) = self.docs.get_mut(&doc) {
                    e.unconfirmed.remove(from);
                    e.known.insert(from.clone(), k);
                }
                let answer = SyncAnswer {
                    doc: doc.clone(),
                    version: to_version(&ours),
                    full_sync_needed: full,
                    encoding,
                    acl,
                    chunked,
                };
                self.stats.bytes_sent += wire.len() as u64;
                Ok((
                    Response::SyncAnswer(answer),
                    (!wire.is_empty()).then_some(wire),
                ))
            }
            Request::Delta {
                doc,
                version,
                encoding,
                chunked,
                stream,
            } => {
                self.stats.deltas_received += 1;
                let e = self.docs.get(&doc).ok_or_else(|| Self::not_found(&doc))?;
                if !is_member(&e.meta.acl, from) || e.doc.is_none() {
                    return Err(Self::not_found(&doc));
                }
                let theirs = to_vv(&version).map_err(ApiError::bad_request)?;
                if let Some(desc) = chunked {
                    // Fetched in chunks; the changes are checked and imported once all are
                    // in. `Accepted`, not an `Ack`: our version does not have them yet.
                    self.pull(from, &doc, desc, Purpose::Changes { encoding }, now, out)?;
                    return none(Response::Accepted {});
                }
                let blob = blob.unwrap_or_default();
                // A deflated Delta inflates to at most `inflate_cap` of its bytes.
                let blob = match encoding {
                    Encoding::Deflate => {
                        inflate(&blob, inflate_cap(blob.len())).map_err(ApiError::bad_request)?
                    }
                    Encoding::Raw => blob,
                };
                self.import_up_to(&doc, from, Encoding::Raw, &blob, MAX_INFLATED, now, out)?;
                let e = self.docs.get_mut(&doc).expect("present");
                let ours = e.doc.as_ref().map(Doc::vv).unwrap_or_default();
                let mut k = theirs;
                k.merge(&ours);
                e.known.insert(from.clone(), k);
                // The sender opens a live stream: its later changes come as `Live` frames.
                let stream = stream.filter(|s| self.live.open_in(from, *s, &doc, now));
                none(Response::Ack {
                    version: to_version(&ours),
                    stream,
                    frames: stream.map(|_| live::MAX_FRAMES_PER_MESSAGE as u32),
                })
            }
            Request::Live {} => self.on_live(from, blob.unwrap_or_default(), now, out),
            Request::LiveFrames {} => self.on_frames(from, blob.unwrap_or_default(), now, out),
            Request::DocDeleted { doc } => {
                if doc.creator != *from || !self.docs.contains_key(&doc) {
                    return Err(Self::not_found(&doc));
                }
                self.drop_doc(&doc, out);
                self.subs.emit(
                    &doc,
                    |seq| SyncEvent::Removed {
                        doc: doc.clone(),
                        seq,
                    },
                    out,
                );
                none(Response::Accepted {})
            }
            Request::GetChunk {
                doc,
                transfer,
                index,
            } => {
                let e = self.docs.get(&doc).ok_or_else(|| Self::not_found(&doc))?;
                if !is_member(&e.meta.acl, from) {
                    return Err(Self::not_found(&doc));
                }
                match self.offers.serve(from, &doc, transfer, index, now) {
                    Ok(bytes) => {
                        self.stats.bytes_sent += bytes.len() as u64;
                        Ok((Response::Chunk { transfer, index }, Some(bytes)))
                    }
                    Err(ServeError::NotOffered) => Err(ApiError::not_found(format!(
                        "no transfer {transfer} of {doc} for you (ended or expired); ask again"
                    ))),
                    Err(ServeError::BadIndex) => Err(ApiError::bad_request(format!(
                        "transfer {transfer} has no chunk {index}"
                    ))),
                    Err(ServeError::TooOften) => Err(ApiError::bad_request(format!(
                        "chunk {index} of transfer {transfer} was asked for too often; withdrawn"
                    ))),
                }
            }
            Request::Awareness { doc, entries } => self.on_awareness(from, &doc, entries, now, out),
            _ => Err(ApiError::internal("local request routed as protocol")),
        }
    }

    fn on_join_doc(
        &mut self,
        doc: &DocId,
        from: &NodeId,
        peer: Option<String>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Reply {
        let me = self.me.clone();
        let e = self.docs.get_mut(doc).ok_or_else(|| Self::not_found(doc))?;
        if doc.creator != me || !is_member(&e.meta.acl, from) {
            return Err(Self::not_found(doc));
        }
        let d = e.doc.as_ref().ok_or_else(|| Self::not_found(doc))?;
        let acl = &mut e.meta.acl;
        if let Some(p) = peer {
            let pv: u64 = p
                .parse()
                .ok()
                .filter(|v| *v != 0 && *v < u64::MAX)
                .ok_or_else(|| ApiError::bad_request("peer must be a decimal u64 in 1..2^64-1"))?;
            let p = pv.to_string();
            match acl.peers.iter().find(|o| o.peer == p) {
                Some(o) if o.node != *from => {
                    return Err(ApiError::bad_request(
                        "that PeerID belongs to another node; pick another",
                    ))
                }
                Some(_) => {}
                None => {
                    if acl.peers.iter().filter(|o| o.node == *from).count() >= MAX_PEERS_PER_NODE {
                        return Err(ApiError::new(
                            ErrorCode::Overloaded,
                            format!("at most {MAX_PEERS_PER_NODE} PeerIDs per node and document"),
                        ));
                    }
                    let frozen = (role_in(acl, from) != Some(Role::Writer)).then_some(0);
                    acl.peers.push(PeerOwner {
                        peer: p,
                        node: from.clone(),
                        frozen,
                    });
                    p2p_common::sort::sort_unstable(&mut acl.peers);
                }
            }
        }
        if !acl.joined.contains(from) {
            acl.joined.push(from.clone());
            p2p_common::sort::sort_unstable(&mut acl.joined);
        }
        acl.epoch += 1;
        let snapshot = d.all_updates();
        let version = d.version();
        let ours = d.vv();
        e.known.insert(from.clone(), ours);
        let (encoding, wire) = wire_blob(snapshot);
        let acl = e.meta.acl.clone();
        let targets: Vec<NodeId> = holders(&e.meta.acl, &me)
            .into_iter()
            .filter(|n| n != from)
            .collect();
        let batch = self.store_meta(self.docs.get(doc).expect("present"), Batch::forced());
        out.push(Effect::Store(batch));
        for t in targets {
            self.owe(&t, Item::Acl(doc.clone()), now, out);
        }
        let (wire, chunked) = if wire.len() > MAX_WIRE_BLOB {
            // Too large for one message: offered; the joiner fetches it in chunks.
            let desc = self.offer(from, doc, wire, now).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Overloaded,
                    "busy sending large documents; join again later",
                )
            })?;
            (None, Some(desc))
        } else {
            (Some(wire), None)
        };
        let answer = JoinAnswer {
            acl,
            version,
            encoding,
            chunked,
        };
        self.stats.snapshots_sent += 1;
        self.stats.bytes_sent += wire.as_ref().map_or(0, Vec::len) as u64;
        out.push(log(Level::Info, format!("{from} joined {doc}")));
        Ok((Response::JoinAnswer(answer), wire))
    }

    /// The creator's ACL, if newer than ours; a node no longer a member drops the document.
    fn adopt_acl(&mut self, acl: Acl, now: Millis, out: &mut Vec<Eff>) {
        let doc = acl.doc.clone();
        let Some(e) = self.docs.get_mut(&doc) else {
            return;
        };
        if acl.epoch <= e.meta.acl.epoch {
            return;
        }
        if acl.members.len() > MAX_MEMBERS
            || acl.peers.len() > (MAX_MEMBERS + 1) * MAX_PEERS_PER_NODE
            || acl.joined.len() > MAX_MEMBERS
        {
            out.push(log(
                Level::Warn,
                format!("{doc}: ACL over its limits; ignored"),
            ));
            return;
        }
        if !is_member(&acl, &self.me) {
            self.drop_doc(&doc, out);
            self.subs.emit(
                &doc,
                |seq| SyncEvent::Removed {
                    doc: doc.clone(),
                    seq,
                },
                out,
            );
            return;
        }
        let gone: Vec<NodeId> = e
            .meta
            .acl
            .members
            .iter()
            .map(|m| m.node.clone())
            .filter(|n| !is_member(&acl, n))
            .collect();
        for n in &gone {
            self.live.forget(&doc, Some(n));
        }
        let e = self.docs.get_mut(&doc).expect("present");
        e.meta.acl = acl;
        e.known.retain(|n, _| is_member(&e.meta.acl, n));
        e.confirmed.retain(|n, _| is_member(&e.meta.acl, n));
        e.unconfirmed.retain(|n, _| is_member(&e.meta.acl, n));
        let me = self.me.clone();
        self.aware
            .retain_nodes(&doc, |n| *n == me || is_member(&e.meta.acl, n));
        let batch = self.store_meta(self.docs.get(&doc).expect("present"), Batch::forced());
        out.push(Effect::Store(batch));
        self.aware_changed(now, out);
    }

    /// Check and import a blob from `from`; persisted lazily (anti-entropy brings back what
    /// a crash loses).
    fn import(
        &mut self,
        doc: &DocId,
        from: &NodeId,
        encoding: Encoding,
        blob: &[u8],
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Result<bool, ApiError> {
        self.import_up_to(doc, from, encoding, blob, MAX_WIRE_BLOB, now, out)
    }

    /// [`SyncCore::import`] of a blob of at most `max` wire bytes (a chunked transfer's
    /// were checked against its offer's bounds).
    #[allow(clippy::too_many_arguments)]
    fn import_up_to(
        &mut self,
        doc: &DocId,
        from: &NodeId,
        encoding: Encoding,
        blob: &[u8],
        max: usize,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Result<bool, ApiError> {
        if blob.is_empty() {
            return Ok(false);
        }
        if blob.len() > max {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "blob over the message limit",
            ));
        }
        let raw = match encoding {
            Encoding::Raw => blob.to_vec(),
            Encoding::Deflate => inflate(blob, MAX_INFLATED).map_err(ApiError::bad_request)?,
        };
        let me = self.me.clone();
        let e = self.docs.get_mut(doc).ok_or_else(|| Self::not_found(doc))?;
        if let Err(why) = check_peers(&e.meta.acl, &raw) {
            self.stats.imports_refused += 1;
            let why = match why {
                // No Loro update at all: no ACL of ours could make it valid.
                Refused::NotLoro(m) => {
                    return Err(ApiError::bad_request(format!("not a Loro update: {m}")))
                }
                Refused::Forbidden(m) => m,
            };
            // One line per power of two of refusals (a member may flood forged frames).
            if self.stats.imports_refused.is_power_of_two() {
                out.push(log(
                    Level::Warn,
                    format!(
                        "{doc}: refused changes from {from}: {why} ({} refused imports so far)",
                        self.stats.imports_refused
                    ),
                ));
            }
            // Perhaps our ACL is behind: ask the creator.
            let creator = doc.creator.clone();
            if creator != me && !e.syncing.contains(&creator) {
                if let Some(d) = e.doc.as_ref() {
                    e.syncing.add(creator.clone());
                    out.push(Effect::request(
                        Address::ours(&creator, p2p_common::api::sync::PROCESS),
                        encode(&PeerRequest::SyncRequest {
                            doc: doc.clone(),
                            version: d.version(),
                            acl_epoch: e.meta.acl.epoch,
                        }),
                        SEND_TIMEOUT_S,
                        Ctx::Sync {
                            doc: doc.clone(),
                            peer: creator,
                        },
                    ));
                }
            }
            return Err(ApiError::forbidden(why));
        }
        let Some(d) = e.doc.as_mut() else {
            return Err(Self::not_found(doc));
        };
        let moved = d
            .import(&raw)
            .map_err(|m| ApiError::bad_request(format!("not a Loro update: {m}")))?;
        let version = d.version();
        if moved {
            let batch = SyncCore::log_append(e, &raw, Batch::lazy());
            out.push(Effect::Store(batch));
            let compact = Self::needs_compaction(e);
            if compact {
                self.arm_compact(out);
            }
            let f = from.clone();
            self.subs.emit(
                doc,
                |seq| SyncEvent::Changed {
                    doc: doc.clone(),
                    author: f.clone(),
                    local: false,
                    version: version.clone(),
                    seq,
                },
                out,
            );
        }
        let _ = now;
        Ok(moved)
    }

    /// `peer` said what it has of `doc` (an Ack or an answered live frame): if it still
    /// lacks something of ours, it is owed again. A claim of more of our own PeerID's
    /// changes than we ever made is cut to what we made (it cannot have them).
    fn on_peer_version(
        &mut self,
        peer: &NodeId,
        doc: &DocId,
        v: VersionVector,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let Some(e) = self.docs.get_mut(doc) else {
            return;
        };
        let ours = e.doc.as_ref().map(Doc::vv).unwrap_or_default();
        let me = e.meta.our_peer;
        let v = live::clamp_claim(v, me, ours.get(&me).copied().unwrap_or(0));
        // Only PeerIDs of the document's ACL count (at most 16 per member): a claim of
        // others is noise, and an attacker's 200,000 of them would be kept and shown.
        let v = registered_only(&e.meta.acl, me, v);
        let lacks = !includes(&v, &ours);
        e.confirmed.insert(peer.clone(), v.clone());
        e.unconfirmed.remove(peer);
        e.known.insert(peer.clone(), v);
        if lacks {
            self.owe(peer, Item::Delta(doc.clone()), now, out);
        }
    }

    /// A `Live` frame from `from` (docs/sync.md, "Live streams").
    fn on_live(&mut self, from: &NodeId, blob: Vec<u8>, now: Millis, out: &mut Vec<Eff>) -> Reply {
        let mut left = MAX_INFLATED;
        let v = self.live_frame(from, &blob, &mut left, now, out)?;
        Ok((Response::LiveAck {}, Some(v.encode())))
    }

    /// A `LiveFrames` message from `from`: each frame is checked and imported on its own (a
    /// bad one refuses itself only, and the message logs one line at most); the answer, if
    /// one is expected, has a version per frame that asked, or none for a refused one.
    /// Bounds: [`live::MAX_FRAMES_PER_MESSAGE`] frames, one more budget token per 16 frames,
    /// [`MAX_INFLATED`] bytes inflated for all of them.
    fn on_frames(
        &mut self,
        from: &NodeId,
        blob: Vec<u8>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Reply {
        let parts = live::split_frames(&blob, live::MAX_FRAMES_PER_MESSAGE)
            .map_err(|m| ApiError::bad_request(format!("not live frames: {m}")))?;
        let extra = (parts.len() / 16) as u32;
        if extra > 0 && !self.budgets.allow(from, extra, now) {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many messages from your node; slow down",
            ));
        }
        let (n, gaps0, refused0) = (parts.len(), self.live.gaps, self.live.refused_frames);
        let mut left = MAX_INFLATED;
        let mut answers = Vec::new();
        let mut first: Option<String> = None;
        let mut scratch = Vec::new();
        for (ask, bytes) in parts {
            let r = self.live_frame(from, bytes, &mut left, now, &mut scratch);
            // The frames' own log lines are folded into the message's one line.
            out.extend(
                scratch
                    .drain(..)
                    .filter(|e| !matches!(e, Effect::Log { .. })),
            );
            match r {
                Ok(v) => {
                    if ask {
                        answers.push(Some(v.encode()));
                    }
                }
                Err(e) => {
                    self.live.refused_frames += 1;
                    first.get_or_insert_with(|| e.to_string());
                    if ask {
                        answers.push(None);
                    }
                }
            }
        }
        let (gaps, refused) = (self.live.gaps, self.live.refused_frames);
        if crossed_pow2(refused0, refused) || crossed_pow2(gaps0, gaps) {
            out.push(log(
                Level::Info,
                format!(
                    "live frames from {from}: {} of {n} refused{}, {} gaps ({refused} refused \
                     and {gaps} gaps so far)",
                    refused - refused0,
                    first.map(|m| format!(" (first: {m})")).unwrap_or_default(),
                    gaps - gaps0,
                ),
            ));
        }
        Ok((
            Response::LiveAck {},
            Some(live::encode_frame_answers(&answers)),
        ))
    }

    /// One live frame from `from` (docs/sync.md, "Live streams"): its stream, the sender's
    /// membership, the changes' PeerIDs, then the import; the receiver's version after it.
    /// `inflate_left`: the inflated bytes its message may still use.
    fn live_frame(
        &mut self,
        from: &NodeId,
        bytes: &[u8],
        inflate_left: &mut usize,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Result<VersionVector, ApiError> {
        let f = live::decode_frame(bytes)
            .map_err(|m| ApiError::bad_request(format!("not a live frame: {m}")))?;
        let (doc, gap) = match self.live.arrived(from, f.stream, f.seq, now) {
            Arrival::InOrder(d) => (d, false),
            Arrival::Gap(d) => (d, true),
            Arrival::Unknown => {
                if self.live.unknown.is_power_of_two() {
                    out.push(log(
                        Level::Info,
                        format!(
                            "live frame for unknown stream {} from {from} ({} so far)",
                            f.stream, self.live.unknown
                        ),
                    ));
                }
                return Err(ApiError::not_found(format!(
                    "{LIVE_UNKNOWN} {}: open it with a Delta",
                    f.stream
                )));
            }
        };
        let member = self
            .docs
            .get(&doc)
            .is_some_and(|e| is_member(&e.meta.acl, from) && e.doc.is_some());
        if !member {
            self.live.forget(&doc, Some(from));
            return Err(Self::not_found(&doc));
        }
        self.stats.deltas_received += 1;
        let inflated;
        let loro: &[u8] = if f.deflated {
            inflated = inflate(f.loro, (*inflate_left).min(inflate_cap(f.loro.len())))
                .map_err(ApiError::bad_request)?;
            &inflated
        } else {
            f.loro
        };
        *inflate_left = inflate_left.saturating_sub(loro.len());
        let imported = self.import_up_to(&doc, from, Encoding::Raw, loro, MAX_INFLATED, now, out);
        if gap {
            // Frames were lost (or the sender skipped numbers): ask it for what we lack.
            if self.live.gaps.is_power_of_two() {
                out.push(log(
                    Level::Info,
                    format!(
                        "{doc}: live frames from {from} missing ({} gaps so far); syncing",
                        self.live.gaps
                    ),
                ));
            }
            self.ask_sync(&doc, from, out);
        }
        imported?;
        let e = self.docs.get_mut(&doc).expect("present");
        let ours = e.doc.as_ref().map(Doc::vv).unwrap_or_default();
        let mut k = e.known.get(from).cloned().unwrap_or_default();
        k.merge(&ours);
        e.known.insert(from.clone(), k);
        Ok(ours)
    }

    /// Send `peer` a SyncRequest for `doc` unless one is in flight.
    fn ask_sync(&mut self, doc: &DocId, peer: &NodeId, out: &mut Vec<Eff>) {
        let Some(e) = self.docs.get_mut(doc) else {
            return;
        };
        let Some(d) = e.doc.as_ref() else { return };
        if e.syncing.contains(peer) {
            return;
        }
        let body = encode(&PeerRequest::SyncRequest {
            doc: doc.clone(),
            version: d.version(),
            acl_epoch: e.meta.acl.epoch,
        });
        e.syncing.add(peer.clone());
        out.push(Effect::request(
            Address::ours(peer, p2p_common::api::sync::PROCESS),
            body,
            SEND_TIMEOUT_S,
            Ctx::Sync {
                doc: doc.clone(),
                peer: peer.clone(),
            },
        ));
    }

    /// An answer to our SyncRequest from `peer`.
    fn on_sync_answer(
        &mut self,
        a: SyncAnswer,
        peer: &NodeId,
        blob: Option<Vec<u8>>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let doc = a.doc.clone();
        if let Some(acl) = a.acl {
            if *peer == doc.creator && acl.doc == doc {
                self.adopt_acl(acl, now, out);
            }
        }
        let Some(e) = self.docs.get(&doc) else { return };
        if !is_member(&e.meta.acl, peer) || e.doc.is_none() {
            return;
        }
        if let Some(desc) = a.chunked.clone() {
            // Fetched in chunks, imported once all are in; what it lacks is owed now.
            let p = Purpose::Changes {
                encoding: a.encoding,
            };
            if let Err(err) = self.pull(peer, &doc, desc, p, now, out) {
                out.push(log(
                    Level::Debug,
                    format!("{doc}: chunked sync answer from {peer} not fetched: {err}"),
                ));
            }
        } else if let Some(b) = blob {
            if let Err(err) = self.import(&doc, peer, a.encoding, &b, now, out) {
                out.push(log(
                    Level::Debug,
                    format!("{doc}: sync answer from {peer}: {err}"),
                ));
                return;
            }
        }
        let Ok(theirs) = to_vv(&a.version) else {
            return;
        };
        let e = self.docs.get_mut(&doc).expect("present");
        let ours = e.doc.as_ref().map(Doc::vv).unwrap_or_default();
        e.known.insert(peer.clone(), theirs.clone());
        e.confirmed.insert(peer.clone(), theirs.clone());
        e.unconfirmed.remove(peer);
        if !includes(&theirs, &ours) {
            self.owe(peer, Item::Delta(doc), now, out);
        }
    }

    /// The creator's answer to our JoinDoc; None while its snapshot is fetched in chunks
    /// (the caller is answered when the last one is in).
    #[allow(clippy::too_many_arguments)]
    fn on_join_answer(
        &mut self,
        mut a: JoinAnswer,
        doc: DocId,
        from: &NodeId,
        caller: Option<RequestId>,
        peer: u64,
        restarts: u32,
        blob: Option<Vec<u8>>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Option<ApiResult<Response>> {
        if *from != doc.creator || a.acl.doc != doc {
            return Some(Err(ApiError::internal("join answer from another node")));
        }
        if !is_member(&a.acl, &self.me) {
            return Some(Err(Self::not_found(&doc)));
        }
        if let Some(e) = self.docs.get(&doc) {
            if e.meta.joined {
                return Some(Ok(Response::Joined(self.info(e))));
            }
        }
        if let Some(desc) = a.chunked.take() {
            let p = Purpose::Join {
                caller,
                peer,
                answer: a,
                restarts,
            };
            return match self.pull(from, &doc, desc, p, now, out) {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Some(self.joined(a, doc, from, peer, blob, out))
    }

    /// Hold `doc` from the creator's answer and its snapshot (one blob, or reassembled).
    fn joined(
        &mut self,
        a: JoinAnswer,
        doc: DocId,
        from: &NodeId,
        peer: u64,
        blob: Option<Vec<u8>>,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let raw = match (a.encoding, blob) {
            (_, None) => Vec::new(),
            (Encoding::Raw, Some(b)) => b,
            (Encoding::Deflate, Some(b)) => {
                inflate(&b, MAX_INFLATED).map_err(ApiError::internal)?
            }
        };
        let mut d = Doc::new(doc.clone(), peer);
        if !raw.is_empty() {
            d.import(&raw).map_err(|m| {
                ApiError::internal(format!("the creator's snapshot does not load: {m}"))
            })?;
        }
        let meta = Meta {
            v: META_V,
            acl: a.acl,
            joined: true,
            our_peer: peer,
        };
        let mut e = Entry::new(meta, Some(d));
        e.known.insert(
            from.clone(),
            e.doc.as_ref().map(Doc::vv).unwrap_or_default(),
        );
        // The snapshot is our log's base: durable before we say Joined.
        let batch = self
            .store_meta(&e, Batch::forced())
            .put(key_snap(&doc), raw.clone());
        e.snap_bytes = raw.len();
        out.push(Effect::Store(batch));
        let info = self.info(&e);
        self.docs.insert(doc.clone(), e);
        out.push(log(Level::Info, format!("joined {doc}")));
        Ok(Response::Joined(info))
    }

    // ----- outcomes -----

    fn on_response(
        &mut self,
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        self.stats.bytes_received += (body.len() + blob.as_ref().map_or(0, Vec::len)) as u64;
        match ctx {
            Ctx::Event { app } => self.subs.outcome(&app, true, out),
            Ctx::Join {
                doc,
                caller,
                peer,
                restarts,
            } => {
                let r = match decode_response::<PeerAnswer>(&body) {
                    Ok(PeerAnswer::JoinAnswer(a)) => self.on_join_answer(
                        a,
                        doc.clone(),
                        &from.node,
                        caller,
                        peer,
                        restarts,
                        blob,
                        now,
                        out,
                    ),
                    Ok(_) => Some(Err(ApiError::internal("unexpected answer to JoinDoc"))),
                    Err(e) => Some(Err(e)),
                };
                if let Some(r) = r {
                    self.answer_join(&doc, caller, r, out);
                }
            }
            Ctx::Chunk { key, index } => {
                let r = match decode_response::<PeerAnswer>(&body) {
                    Ok(PeerAnswer::Chunk { transfer, index: i })
                        if transfer == key.1 && i == index && from.node == key.0 =>
                    {
                        Ok(blob.unwrap_or_default())
                    }
                    Ok(_) => Err(ApiError::bad_request("not the chunk asked for")),
                    Err(e) => Err(e),
                };
                self.on_chunk(key, index, r, now, out);
            }
            Ctx::Sync { doc, peer } => {
                if let Some(e) = self.docs.get_mut(&doc) {
                    e.syncing.remove(&peer);
                }
                self.reach.on_success(&peer, now, None);
                match decode_response::<PeerAnswer>(&body) {
                    Ok(PeerAnswer::SyncAnswer(a)) if a.doc == doc => {
                        self.on_sync_answer(a, &peer, blob, now, out)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        out.push(log(Level::Debug, format!("sync of {doc} with {peer}: {e}")))
                    }
                }
            }
            Ctx::Frames { peer, docs } => {
                self.reach.on_success(&peer, now, None);
                self.outbox.delivered(&peer, now);
                let asked: Vec<&DocId> = docs.iter().filter(|d| d.1).map(|d| &d.0).collect();
                let answers = match decode_response::<PeerAnswer>(&body) {
                    Ok(PeerAnswer::LiveAck {}) => {
                        live::decode_frame_answers(blob.as_deref().unwrap_or_default(), asked.len())
                            .map_err(|m| ApiError::bad_request(format!("bad answer: {m}")))
                    }
                    Ok(_) => Err(ApiError::bad_request("not a LiveAck")),
                    Err(e) => Err(e),
                };
                match answers {
                    Ok(versions) => {
                        for (doc, v) in asked.into_iter().zip(versions) {
                            match v {
                                Some(v) => self.on_peer_version(&peer, doc, v, now, out),
                                // That frame was refused (the receiver lost the stream, or
                                // refused the changes): what it has is unknown; ask, reopen.
                                None => {
                                    self.forget_peer_has(&peer, doc);
                                    self.owe(&peer, Item::Delta(doc.clone()), now, out);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        // The whole message refused: every frame in it may be lost.
                        out.push(log(
                            Level::Debug,
                            format!("{peer} refused {} live frames: {e}", docs.len()),
                        ));
                        for (doc, _) in &docs {
                            self.fall_back(&peer, doc);
                            self.outbox.push(&peer, Item::Delta(doc.clone()));
                        }
                        if !matches!(e.code, ErrorCode::NotFound | ErrorCode::BadRequest) {
                            self.outbox.hold(&peer, Item::Delta(docs[0].0.clone()));
                            self.retry_later(&peer, now, out);
                        }
                    }
                }
                self.pump(&peer, now, out);
            }
            Ctx::Out {
                peer,
                item,
                stream,
                live,
            } => {
                self.reach.on_success(&peer, now, None);
                let doc = item_doc(&item).clone();
                match decode_response::<PeerAnswer>(&body) {
                    Ok(PeerAnswer::Ack {
                        version,
                        stream: accepted,
                        frames,
                    }) => {
                        self.outbox.delivered(&peer, now);
                        if let Some(s) = stream {
                            self.live
                                .opened(&peer, &doc, s, accepted == Some(s), frames, now);
                        }
                        if let Ok(v) = to_vv(&version) {
                            self.on_peer_version(&peer, &doc, v, now, out);
                        }
                    }
                    Ok(PeerAnswer::LiveAck {}) if live => {
                        self.outbox.delivered(&peer, now);
                        // A version of more than the ACL's PeerIDs is no version of ours.
                        let blob = blob.filter(|b| b.len() <= live::MAX_VERSION_BYTES);
                        match blob.as_deref().map(VersionVector::decode) {
                            Some(Ok(v)) => self.on_peer_version(&peer, &doc, v, now, out),
                            _ => {
                                // Not a version: what it has is unknown; ask next time.
                                self.live.reset_out(&peer, &doc);
                                if let Some(e) = self.docs.get_mut(&doc) {
                                    e.known.remove(&peer);
                                    e.confirmed.remove(&peer);
                                    e.unconfirmed.remove(&peer);
                                }
                                self.owe(&peer, Item::Delta(doc), now, out);
                            }
                        }
                    }
                    Ok(PeerAnswer::SyncAnswer(a)) => {
                        self.outbox.delivered(&peer, now);
                        if a.doc == doc {
                            self.on_sync_answer(a, &peer, blob, now, out);
                        }
                    }
                    Ok(_) => self.outbox.delivered(&peer, now),
                    // A live frame refused (the receiver lost the stream, or refused the
                    // changes): what it has is unknown; the next changes ask and reopen.
                    Err(e) if live => {
                        out.push(log(
                            Level::Debug,
                            format!("{peer} refused a live frame of {doc}: {e}"),
                        ));
                        self.live.reset_out(&peer, &doc);
                        if let Some(en) = self.docs.get_mut(&doc) {
                            en.known.remove(&peer);
                            en.confirmed.remove(&peer);
                            en.unconfirmed.remove(&peer);
                        }
                        if e.message.starts_with(LIVE_UNKNOWN) {
                            // It restarted (or forgot the stream): ask and reopen now.
                            self.outbox.delivered(&peer, now);
                            self.owe(&peer, Item::Delta(doc), now, out);
                        } else if matches!(e.code, ErrorCode::NotFound | ErrorCode::BadRequest) {
                            self.outbox.delivered(&peer, now);
                        } else {
                            self.retry_later(&peer, now, out);
                        }
                    }
                    // Refused for good (not a member, unknown document): do not retry.
                    Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::BadRequest) => {
                        out.push(log(
                            Level::Info,
                            format!("{peer} refused {}: {e}", describe(&item)),
                        ));
                        self.outbox.delivered(&peer, now);
                        self.live.reset_out(&peer, &doc);
                        if let Some(en) = self.docs.get_mut(&doc) {
                            en.known.remove(&peer);
                            en.confirmed.remove(&peer);
                            en.unconfirmed.remove(&peer);
                        }
                    }
                    Err(e) => {
                        out.push(log(
                            Level::Debug,
                            format!("{peer} refused {} for now: {e}", describe(&item)),
                        ));
                        self.retry_later(&peer, now, out);
                    }
                }
                self.pump(&peer, now, out);
            }
        }
    }

    // ----- chunked transfers (crate::transfer) -----

    /// Offer `wire`, too large for one message, to `peer`; None when the offers are at their
    /// bounds (counted; the sweep logs it).
    fn offer(&mut self, peer: &NodeId, doc: &DocId, wire: Vec<u8>, now: Millis) -> Option<Chunked> {
        let transfer = self.rng.gen::<u64>();
        self.offers.offer(peer, doc, wire, transfer, now).ok()
    }

    /// Fetch the chunks `from` offered for `doc`; Err if the offer is bad or over our bounds.
    fn pull(
        &mut self,
        from: &NodeId,
        doc: &DocId,
        desc: Chunked,
        purpose: Purpose,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Result<(), ApiError> {
        if let Err(why) = desc.validate() {
            out.push(log(
                Level::Warn,
                format!("{doc}: refused an offer from {from}: {why}"),
            ));
            return Err(ApiError::bad_request(format!("bad chunked offer: {why}")));
        }
        let (count, total) = (desc.count(), desc.total);
        match self.pulls.start(from, doc, desc, purpose, now) {
            Ok(key) => {
                out.push(log(
                    Level::Info,
                    format!("{doc}: fetching {total} bytes in {count} chunks from {from}"),
                ));
                self.fetch(&key, out);
                Ok(())
            }
            Err((_, why)) => Err(ApiError::new(ErrorCode::Unavailable, why)),
        }
    }

    /// Ask for the chunks of a pull that may go now.
    fn fetch(&mut self, key: &PullKey, out: &mut Vec<Eff>) {
        let Some(doc) = self.pulls.get(key).map(|p| p.doc.clone()) else {
            return;
        };
        for index in self.pulls.next(key) {
            out.push(Effect::request(
                Address::ours(&key.0, p2p_common::api::sync::PROCESS),
                encode(&PeerRequest::GetChunk {
                    doc: doc.clone(),
                    transfer: key.1,
                    index,
                }),
                CHUNK_TIMEOUT_S,
                Ctx::Chunk {
                    key: key.clone(),
                    index,
                },
            ));
        }
    }

    /// The outcome of fetching chunk `index` of pull `key`.
    fn on_chunk(
        &mut self,
        key: PullKey,
        index: u32,
        r: ApiResult<Vec<u8>>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let Some(doc) = self.pulls.get(&key).map(|p| p.doc.clone()) else {
            return; // ended already
        };
        match r {
            Ok(bytes) => match self.pulls.arrived(&key, index, bytes, now) {
                Ok(Arrived::More) => self.fetch(&key, out),
                Ok(Arrived::Done(p, blob)) => self.finish(&key, &doc, p, blob, now, out),
                Err((Some(p), why)) => {
                    out.push(log(
                        Level::Warn,
                        format!("{doc}: refused the transfer from {}: {why}", key.0),
                    ));
                    let e = ApiError::bad_request(format!("{}'s transfer: {why}", key.0));
                    self.pull_ended(&key, &doc, p, e, false, out);
                }
                Err((None, _)) => {}
            },
            // The offer is gone (expired, withdrawn, the sender restarted): start over.
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::BadRequest) => {
                if let Some(p) = self.pulls.cancel(&key) {
                    self.pull_ended(&key, &doc, p, e, true, out);
                }
            }
            Err(e) => match self.pulls.failed(&key, index, &mut self.rng) {
                Failed::RetryIn(ms) => out.push(Effect::timer(ms, Timer::Chunk(key))),
                Failed::Pending | Failed::Unknown => {}
                Failed::GaveUp(p) => self.pull_ended(&key, &doc, p, e, false, out),
            },
        }
    }

    /// All of a pull is in (each chunk checked against its digest).
    fn finish(
        &mut self,
        key: &PullKey,
        doc: &DocId,
        purpose: Purpose,
        blob: Vec<u8>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        out.push(log(
            Level::Info,
            format!("{doc}: {} bytes from {} are in", blob.len(), key.0),
        ));
        match purpose {
            Purpose::Join {
                caller,
                peer,
                answer,
                ..
            } => {
                let r = self.joined(answer, doc.clone(), &key.0, peer, Some(blob), out);
                self.answer_join(doc, caller, r, out);
            }
            Purpose::Changes { encoding } => {
                let max = p2p_common::api::sync::MAX_TRANSFER as usize;
                if let Err(e) = self.import_up_to(doc, &key.0, encoding, &blob, max, now, out) {
                    out.push(log(
                        Level::Info,
                        format!("{doc}: changes from {} not imported: {e}", key.0),
                    ));
                }
            }
        }
    }

    /// A pull ended without its blob: a Join starts over (`restart`, a bounded number of
    /// times) or is answered with the error; changes are left to anti-entropy.
    fn pull_ended(
        &mut self,
        key: &PullKey,
        doc: &DocId,
        purpose: Purpose,
        err: ApiError,
        restart: bool,
        out: &mut Vec<Eff>,
    ) {
        match purpose {
            Purpose::Join {
                caller,
                peer,
                restarts,
                ..
            } if restart && restarts < JOIN_RESTARTS => {
                out.push(log(
                    Level::Info,
                    format!("{doc}: the snapshot went away mid-way ({err}); joining again"),
                ));
                out.push(Effect::request(
                    Address::ours(&doc.creator, p2p_common::api::sync::PROCESS),
                    encode(&PeerRequest::JoinDoc {
                        doc: doc.clone(),
                        peer: Some(peer.to_string()),
                    }),
                    JOIN_TIMEOUT_S,
                    Ctx::Join {
                        doc: doc.clone(),
                        caller,
                        peer,
                        restarts: restarts + 1,
                    },
                ));
            }
            Purpose::Join { caller, .. } => self.answer_join(doc, caller, Err(err), out),
            Purpose::Changes { .. } => out.push(log(
                Level::Debug,
                format!("{doc}: fetching changes from {} ended: {err}", key.0),
            )),
        }
    }

    /// Answer a local Join (logged when it failed).
    fn answer_join(
        &mut self,
        doc: &DocId,
        caller: Option<RequestId>,
        r: ApiResult<Response>,
        out: &mut Vec<Eff>,
    ) {
        if let Err(e) = &r {
            out.push(log(Level::Info, format!("join of {doc} failed: {e}")));
        }
        if let Some(id) = caller {
            out.push(Effect::reply(id, encode_result(&r)));
        }
    }

    /// Forget idle offers and lost pulls (a Join's pull always has a fetch or a retry of its
    /// own pending, which end it and answer its caller).
    fn sweep(&mut self, now: Millis, out: &mut Vec<Eff>) {
        self.sweep_armed = false;
        let offers = self.offers.expire(now);
        let pulls = self
            .pulls
            .expire(now, |p| matches!(p, Purpose::Join { .. }))
            .len();
        if offers + pulls > 0 {
            out.push(log(
                Level::Debug,
                format!("{offers} idle offers and {pulls} idle transfers dropped"),
            ));
        }
        let refused = self.offers.refused + self.pulls.refused;
        if refused > self.transfers_refused_logged {
            self.transfers_refused_logged = refused;
            out.push(log(
                Level::Warn,
                format!("{refused} chunked transfers refused so far: at their bounds"),
            ));
        }
    }

    fn arm_sweep(&mut self, out: &mut Vec<Eff>) {
        if !self.sweep_armed && !(self.offers.is_empty() && self.pulls.is_empty()) {
            self.sweep_armed = true;
            out.push(Effect::timer(TRANSFER_SWEEP_MS, Timer::Transfers));
        }
    }

    /// Frames of `doc` to `peer` may be lost: its stream starts over, and what the peer has
    /// is what it last confirmed.
    fn fall_back(&mut self, peer: &NodeId, doc: &DocId) {
        self.live.reset_out(peer, doc);
        if let Some(e) = self.docs.get_mut(doc) {
            e.unconfirmed.remove(peer);
            match e.confirmed.get(peer).cloned() {
                Some(c) => e.known.insert(peer.clone(), c),
                None => e.known.remove(peer),
            };
        }
    }

    /// What `peer` has of `doc` is unknown (it refused a frame): its stream starts over and
    /// the next changes ask first.
    fn forget_peer_has(&mut self, peer: &NodeId, doc: &DocId) {
        self.live.reset_out(peer, doc);
        if let Some(e) = self.docs.get_mut(doc) {
            e.known.remove(peer);
            e.confirmed.remove(peer);
            e.unconfirmed.remove(peer);
        }
    }

    fn retry_later(&mut self, peer: &NodeId, now: Millis, out: &mut Vec<Eff>) {
        match self.outbox.failed(peer, now, &mut self.rng) {
            AfterFailure::RetryIn(ms) => out.push(Effect::timer(ms, Timer::Retry(peer.clone()))),
            AfterFailure::Dropped(i) => {
                out.push(log(
                    Level::Info,
                    format!("gave up sending {} to {peer}", describe(&i)),
                ));
                out.push(Effect::timer(1_000, Timer::Retry(peer.clone())));
            }
        }
    }

    fn on_send_failed(
        &mut self,
        kind: p2p_common::SendErrorKind,
        ctx: Ctx,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        match ctx {
            Ctx::Event { app } => self.subs.outcome(&app, false, out),
            Ctx::Join { doc, caller, .. } => {
                let e = ApiError::new(
                    ErrorCode::Unavailable,
                    format!("{} did not answer ({kind:?}); try again", doc.creator),
                );
                self.answer_join(&doc, caller, Err(e), out);
            }
            Ctx::Chunk { key, index } => {
                self.reach.on_send_failed(&key.0, kind, now);
                let e = ApiError::new(ErrorCode::Unavailable, format!("no answer ({kind:?})"));
                self.on_chunk(key, index, Err(e), now, out);
            }
            Ctx::Sync { doc, peer } => {
                self.reach.on_send_failed(&peer, kind, now);
                if let Some(e) = self.docs.get_mut(&doc) {
                    e.syncing.remove(&peer);
                }
            }
            Ctx::Out {
                peer, item, live, ..
            } => {
                self.reach.on_send_failed(&peer, kind, now);
                if live {
                    // One-way frames before it may be lost too: the retry sends everything
                    // since what the peer last confirmed, opening a new stream.
                    self.fall_back(&peer, item_doc(&item));
                }
                self.retry_later(&peer, now, out);
            }
            Ctx::Frames { peer, docs } => {
                self.reach.on_send_failed(&peer, kind, now);
                // Every frame of the message, and one-way ones before them, may be lost.
                for (doc, _) in &docs {
                    self.fall_back(&peer, doc);
                    self.outbox.push(&peer, Item::Delta(doc.clone()));
                }
                self.retry_later(&peer, now, out);
            }
        }
    }

    /// One anti-entropy round: up to [`AE_DOCS_PER_TICK`] documents, each with one random
    /// holder (the creator half the time, so ACLs stay fresh).
    fn anti_entropy(&mut self, now: Millis, out: &mut Vec<Eff>) {
        self.arm_ae(out);
        let start = self.ae_cursor.clone();
        let mut ids: Vec<DocId> = self.docs.keys().cloned().collect();
        if let Some(c) = &start {
            // The documents after the last one visited first, then from the start.
            let i = ids.partition_point(|k| k <= c);
            ids.rotate_left(i);
        }
        ids.truncate(AE_DOCS_PER_TICK);
        for doc in ids {
            self.ae_cursor = Some(doc.clone());
            let me = self.me.clone();
            let Some(e) = self.docs.get(&doc) else {
                continue;
            };
            let Some(d) = e.doc.as_ref() else { continue };
            let hs = holders(&e.meta.acl, &me);
            let peer = if doc.creator != me && self.rng.gen_bool(0.5) {
                Some(doc.creator.clone())
            } else {
                hs.choose(&mut self.rng).cloned()
            };
            let Some(peer) = peer else { continue };
            if e.syncing.contains(&peer) || self.outbox.breakers.check(&peer, now).is_err() {
                continue;
            }
            let body = encode(&PeerRequest::SyncRequest {
                doc: doc.clone(),
                version: d.version(),
                acl_epoch: e.meta.acl.epoch,
            });
            self.docs
                .get_mut(&doc)
                .expect("present")
                .syncing
                .add(peer.clone());
            out.push(Effect::request(
                Address::ours(&peer, p2p_common::api::sync::PROCESS),
                body,
                SEND_TIMEOUT_S,
                Ctx::Sync { doc, peer },
            ));
        }
    }
}

impl Service for SyncCore {
    type Ctx = Ctx;
    type Timer = Timer;

    const WEB_API: bool = true;

    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn handle(&mut self, now: Now, input: Input<Ctx, Timer>) -> Vec<Eff> {
        let t = now.mono;
        self.wall = now.wall;
        let mut out = Vec::new();
        self.traffic.observe_input(&self.me, &input);
        match input {
            Input::Start { records, seed, .. } => {
                self.start(records, seed, t, &mut out);
            }
            Input::Request {
                id,
                from,
                body,
                blob,
                timeout_s,
            } => self.on_request(id, from, body, blob, timeout_s.is_some(), t, &mut out),
            Input::Response {
                from,
                body,
                blob,
                ctx,
            } => {
                if from.node != self.me {
                    self.reach.health_mut().on_success(t);
                }
                self.on_response(from, body, blob, ctx, t, &mut out)
            }
            Input::SendFailed { kind, ctx, .. } => self.on_send_failed(kind, ctx, t, &mut out),
            Input::Timer(Timer::AntiEntropy) => self.anti_entropy(t, &mut out),
            Input::Timer(Timer::Retry(peer)) => {
                self.outbox.retry_due(&peer);
                self.pump(&peer, t, &mut out);
            }
            Input::Timer(Timer::Flush(peer)) => {
                self.flush_armed.remove(&peer);
                self.pump(&peer, t, &mut out);
            }
            Input::Timer(Timer::Confirm(peer)) => {
                self.confirm_armed.remove(&peer);
                self.probe(&peer, t, &mut out);
            }
            Input::Timer(Timer::Compact) => self.compact(&mut out),
            Input::Timer(Timer::Chunk(key)) => {
                self.pulls.retry_due(&key);
                self.fetch(&key, &mut out);
            }
            Input::Timer(Timer::Transfers) => self.sweep(t, &mut out),
            Input::Timer(Timer::AwarenessFlush) => self.aware_flush(t, &mut out),
            Input::Timer(Timer::AwarenessTick) => self.aware_tick(t, &mut out),
            // The local API over HTTP, as the node's owner (p2p_common::web).
            Input::Http { id, request } => match p2p_common::web::route(id, request, &self.me) {
                Ok(req) => return self.handle(now, req),
                Err(reply) => out.push(reply),
            },
            Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => {}
        }
        self.arm_sweep(&mut out);
        self.traffic.observe_effects(&self.me, &out);
        out
    }
}
