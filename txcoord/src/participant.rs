//! The participant sub-machine: one entry per (transaction, resource) on this node, and the
//! registry of local resource managers.
//!
//! Forced writes: "prepared" (`p/<tx>/<resource>`) before a yes vote, "committed" (the same
//! key) before acknowledging a commit. A no vote and an abort write nothing; the record is
//! deleted lazily once the manager has applied the outcome. A prepared participant never
//! decides alone: without a decision it asks the coordinator, then the other participants,
//! with backoff, in one batched query per target node at a time ([`Asking`]). It takes an
//! outcome only from the coordinator itself (Hyperware authenticates the sending node) or,
//! from another participant, with the coordinator's signed decision, checked with
//! `sign:sign:sys` NetKeyVerify first. Only a transaction's coordinator may drive it here.

use crate::core::{reply_err, Config, Ctx, Eff, Timer};
use p2p_common::api::txcoord::{
    coordinator_of, decision_message, Coordinators, ManagerAnswer, ManagerMessage, Outcome, Phase,
    Request as TxReq, Response, Role, TxStatus, Vote, VoteView, MAX_QUERY_BATCH, MAX_TIMEOUT_MS,
};
use p2p_common::api::{encode, encode_result, try_decode_response, ApiError, ApiResult, ErrorCode};
use p2p_common::appreach::{Confirmations, HelloOutcome};
use p2p_common::service::{log, Batch, Effect, Expect, Level, Now, RequestId, SendErrorKind};
use p2p_common::sign::{sign_address, verify_body, SignResponse};
use p2p_common::{Address, NodeId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// (transaction id, resource).
pub type PKey = (String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PCtx {
    /// The manager's vote; answer Prepare request `RequestId` with it.
    Vote(PKey, RequestId),
    /// The manager applying the outcome.
    Deliver(PKey),
    /// A batched termination query to `NodeId` about these transactions.
    Query(NodeId, Vec<String>),
    /// NetKeyVerify of a peer's relayed decision of transaction `String`: (commit, signature).
    Verify(String, bool, Vec<u8>),
    Hello(u64),
    /// After a restart: the recorded manager of this resource, asked what it is in doubt about.
    Recover(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PTimer {
    /// An entry prepared this long without a decision starts asking.
    Query(PKey),
    /// The next batched termination query to this node is due.
    Ask(NodeId),
    Deliver(PKey),
    Forget(PKey),
    /// The coordinator's vote deadline has passed (with slack): a refused entry may go.
    Expire(PKey),
    /// Ask this resource's manager for its in-doubt list again.
    InDoubt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum State {
    /// Waiting for the manager's vote (memory only).
    Asking,
    /// Voted no (memory only).
    VotedNo,
    /// Voted yes (forced).
    Prepared,
    /// Decided commit (forced); the manager is being told.
    Committed,
    /// Decided abort (memory only); the manager is being told.
    Aborted,
    /// Will vote no whatever the manager says: told another participant it can abort (forced).
    Refused,
}

#[derive(Debug, Clone)]
struct PTx {
    /// The transaction's coordinator (parsed once, for the per-coordinator counts).
    coord: NodeId,
    state: State,
    /// Every node of the transaction (coordinator excluded), for termination queries.
    nodes: Vec<NodeId>,
    /// A record of this entry is on disk.
    on_disk: bool,
    /// The manager voted yes (it holds prepared state to drop on abort).
    manager_prepared: bool,
    /// A send to the manager for this entry is in flight (one at a time: vote or delivery;
    /// termination queries are per target node, see [`Asking`]).
    in_flight: bool,
    attempt: u32,
    reason: String,
    /// The coordinator's signed decision, as the coordinator sent it or as a peer relayed
    /// it (checked); empty if we have none. Shown to peers that ask us.
    signature: Vec<u8>,
}

/// Per coordinator node: its entries here, and how many of them are prepared (voted yes and
/// waiting for its decision; only that decision ends them, across restarts too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub entries: usize,
    pub prepared: usize,
}

/// The participant table: the entries, with per-coordinator counts kept on every insert,
/// removal and change into or out of `Prepared` (so admitting a Prepare costs no scan), and
/// a count of entries visited by iterations (tests check that a Prepare visits none).
#[derive(Clone, Default)]
struct Table {
    map: BTreeMap<PKey, PTx>,
    per_coord: BTreeMap<NodeId, Count>,
    visited: std::cell::Cell<u64>,
}

impl Table {
    fn len(&self) -> usize {
        self.map.len()
    }
    fn get(&self, k: &PKey) -> Option<&PTx> {
        self.map.get(k)
    }
    /// Change `state` through [`Table::set_state`] when it enters or leaves `Prepared`.
    fn get_mut(&mut self, k: &PKey) -> Option<&mut PTx> {
        self.map.get_mut(k)
    }
    fn count(&self, coord: &NodeId) -> Count {
        self.per_coord.get(coord).copied().unwrap_or_default()
    }
    fn insert(&mut self, k: PKey, tx: PTx) {
        let c = self.per_coord.entry(tx.coord.clone()).or_default();
        c.entries += 1;
        c.prepared += (tx.state == State::Prepared) as usize;
        if let Some(old) = self.map.insert(k, tx) {
            self.uncount(&old);
        }
    }
    fn remove(&mut self, k: &PKey) -> Option<PTx> {
        let tx = self.map.remove(k)?;
        self.uncount(&tx);
        Some(tx)
    }
    fn uncount(&mut self, tx: &PTx) {
        if let Some(c) = self.per_coord.get_mut(&tx.coord) {
            c.entries -= 1;
            c.prepared -= (tx.state == State::Prepared) as usize;
            if c.entries == 0 {
                self.per_coord.remove(&tx.coord);
            }
        }
    }
    fn set_state(&mut self, k: &PKey, st: State) -> Option<&mut PTx> {
        let tx = self.map.get_mut(k)?;
        if let Some(c) = self.per_coord.get_mut(&tx.coord) {
            c.prepared -= (tx.state == State::Prepared) as usize;
            c.prepared += (st == State::Prepared) as usize;
        }
        tx.state = st;
        Some(tx)
    }
    fn visit(&self, n: usize) {
        self.visited.set(self.visited.get() + n as u64);
    }
    fn iter(&self) -> impl Iterator<Item = (&PKey, &PTx)> {
        self.map.iter().inspect(|_| self.visit(1))
    }
    fn values(&self) -> impl Iterator<Item = &PTx> {
        self.iter().map(|(_, t)| t)
    }
    /// The entries of one transaction.
    fn of_tx<'a>(&'a self, tx_id: &'a str) -> impl Iterator<Item = (&'a PKey, &'a PTx)> + 'a {
        self.map
            .range((tx_id.to_string(), String::new())..)
            .take_while(move |(k, _)| k.0 == tx_id)
            .inspect(|_| self.visit(1))
    }
    /// The counts recomputed from the entries (tests compare them with the kept ones).
    fn recount(&self) -> BTreeMap<NodeId, Count> {
        let mut m: BTreeMap<NodeId, Count> = BTreeMap::new();
        for t in self.map.values() {
            let c = m.entry(t.coord.clone()).or_default();
            c.entries += 1;
            c.prepared += (t.state == State::Prepared) as usize;
        }
        m
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    state: State,
    nodes: Vec<NodeId>,
    /// The signed decision (with the forced committed record), hex; empty if none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "p2p_common::api::notify::hex_bytes"
    )]
    sig: Vec<u8>,
}

/// An entry that ended, remembered (memory only, bounded) to answer late Prepares and
/// peers' termination queries.
#[derive(Debug, Clone)]
struct Ended {
    outcome: End,
    /// Every node of the transaction (coordinator excluded): who may be shown `signature`.
    nodes: Vec<NodeId>,
    /// The coordinator's signed decision, if we had one; empty if not.
    signature: Vec<u8>,
}

/// How an entry ended: committed, or aborted or voted no, with the reason a late copy of
/// its Prepare is answered with.
#[derive(Debug, Clone)]
enum End {
    Committed,
    No(String),
}

impl Ended {
    fn committed(&self) -> bool {
        matches!(self.outcome, End::Committed)
    }
}

/// Termination queries, batched per target node: an in-doubt transaction is asked of one
/// node at a time (the coordinator first, then, each time the coordinator gives no answer,
/// the next other participant, and after any peer's answer that decides nothing the
/// coordinator again). Each target has one query in flight, carrying up to
/// [`MAX_QUERY_BATCH`] transactions, and its own backoff.
#[derive(Debug, Clone, Default)]
struct Asking {
    /// Per in-doubt transaction: the node it is asked of (or whose answer is being
    /// verified) and how many peers it has asked so far (for the rotation).
    by_tx: BTreeMap<String, (NodeId, usize)>,
    targets: BTreeMap<NodeId, Target>,
    /// NetKeyVerify requests in flight.
    verifying: usize,
}

/// Queries to one node.
#[derive(Debug, Clone, Default)]
struct Target {
    /// Transactions waiting to be asked, oldest first (by a sequence number).
    queue: BTreeMap<u64, String>,
    queued: BTreeMap<String, u64>,
    next_seq: u64,
    in_flight: bool,
    /// Consecutive rounds that failed or left something undecided (the backoff).
    attempt: u32,
    /// No query before this (monotonic ms).
    not_before: u64,
    /// In-doubt transactions asked of this node now, and those it coordinates (wherever
    /// they are asked now: its backoff must outlive a round at the peers). The target is
    /// dropped when both are 0 and nothing is in flight.
    refs: usize,
    home: usize,
}

impl Target {
    fn push(&mut self, tx: &str) {
        if self.queued.contains_key(tx) {
            return;
        }
        let s = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(s, tx.to_string());
        self.queued.insert(tx.to_string(), s);
    }
    fn remove(&mut self, tx: &str) {
        if let Some(s) = self.queued.remove(tx) {
            self.queue.remove(&s);
        }
    }
    fn unused(&self) -> bool {
        self.refs == 0 && self.home == 0 && !self.in_flight
    }
}

/// Most NetKeyVerify checks of relayed decisions in flight at once; an answer beyond that
/// is treated as unsigned (the transaction is asked of its coordinator again).
pub const MAX_VERIFYING: usize = 256;

fn pkey(k: &PKey) -> Vec<u8> {
    format!("p/{}/{}", k.0, k.1).into_bytes()
}
fn mkey(r: &str) -> Vec<u8> {
    format!("m/{r}").into_bytes()
}

/// A registered manager on disk (`m/<resource>`). An older record is the bare address: it
/// gets the default, this node only.
#[derive(Serialize, Deserialize)]
struct ManagerRecord {
    app: String,
    coordinators: Coordinators,
}

/// The value of a manager's record `m/<resource>` (the model check writes it directly).
pub fn manager_record(app: &Address, coordinators: &Coordinators) -> Vec<u8> {
    encode(&ManagerRecord {
        app: app.to_string(),
        coordinators: coordinators.clone(),
    })
}

#[derive(Clone)]
pub struct Participant {
    our: Address,
    txs: Table,
    managers: BTreeMap<String, Address>,
    /// Per registered resource, whose transactions it takes part in (normalized).
    coordinators: BTreeMap<String, Coordinators>,
    /// Registrations waiting for their hello: (resource, coordinators).
    hellos: Confirmations<(String, Coordinators)>,
    /// Managers whose in-doubt list is still to be read (after a restart of ours, or a
    /// registration whose Hello timed out because the app was blocked on it): per resource,
    /// whether an ask is in flight and the attempts so far. One ask in flight per manager.
    in_doubt_asks: BTreeMap<String, (bool, u32)>,
    /// Entries that ended, with how they ended: a late copy of their Prepare is answered
    /// from here (never asking the manager again), and a participant's termination query
    /// with the coordinator's signed decision if we kept it. Memory only, bounded per kind:
    /// `ended_order[1]` the committed ones, `[0]` the others, each oldest first, so cheap no
    /// votes cannot push out the memory of commits.
    ended: BTreeMap<PKey, Ended>,
    ended_order: [VecDeque<PKey>; 2],
    asking: Asking,
    pub prepared_yes: u64,
    /// Termination queries sent (batched messages), and relayed decisions whose signature
    /// did not verify.
    pub queries_sent: u64,
    pub forged_decisions: u64,
}

/// After the coordinator's vote deadline (`deadline_ms`, capped) a refused entry may go: the
/// deadline is counted from our receipt of the Prepare, which is later than the coordinator
/// started counting, plus a Prepare timeout of slack.
fn expire_after(deadline_ms: u64, cfg: &Config) -> u64 {
    deadline_ms + cfg.prepare_timeout_s * 1_000
}

/// Attempts to read a manager's in-doubt list (with `Config::retry`'s backoff, capped at
/// 30 s: about 8 minutes) before waiting for it to register again.
pub const IN_DOUBT_ATTEMPTS: u32 = 20;

/// Most ended entries remembered for late Prepares, of each kind (committed, and not).
pub const ENDED_KEPT: usize = 1_000;

impl Participant {
    pub fn new(our: Address) -> Self {
        Participant {
            our,
            txs: Table::default(),
            managers: BTreeMap::new(),
            coordinators: BTreeMap::new(),
            hellos: Confirmations::new(64),
            in_doubt_asks: BTreeMap::new(),
            ended: BTreeMap::new(),
            ended_order: [VecDeque::new(), VecDeque::new()],
            asking: Asking::default(),
            prepared_yes: 0,
            queries_sent: 0,
            forged_decisions: 0,
        }
    }

    pub fn entries(&self) -> usize {
        self.txs.len()
    }

    /// The kept counts of `coord`'s entries (entries, prepared).
    pub fn count(&self, coord: &NodeId) -> Count {
        self.txs.count(coord)
    }

    /// Whether the per-coordinator counts kept on every change equal a recount of the table
    /// (the model check and the tests assert it; it scans, so it is not called in service).
    pub fn check_counts(&self) -> Result<(), String> {
        let kept: BTreeMap<NodeId, Count> = self.txs.per_coord.clone();
        let recount = self.txs.recount();
        if kept == recount {
            Ok(())
        } else {
            Err(format!(
                "per-coordinator counts {kept:?} differ from a recount {recount:?}"
            ))
        }
    }

    /// Table entries visited by iterations so far (a Prepare must visit none: its cost may
    /// not grow with the table).
    pub fn entries_visited(&self) -> u64 {
        self.txs.visited.get()
    }

    /// Entries holding a manager's locks: voted yes and the manager not yet told the outcome.
    pub fn blocked(&self) -> usize {
        self.txs
            .values()
            .filter(|t| matches!(t.state, State::Prepared | State::Committed))
            .count()
    }

    pub fn recover(
        &mut self,
        records: &BTreeMap<Vec<u8>, Vec<u8>>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let mut out = Vec::new();
        for (k, v) in records {
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            if let Some(r) = k.strip_prefix("m/") {
                let rec = match serde_json::from_slice::<ManagerRecord>(v) {
                    Ok(m) => Address::parse(&m.app).ok().map(|a| (a, m.coordinators)),
                    // An older record: the address alone, and the default.
                    Err(_) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| Address::parse(s).ok())
                        .map(|a| (a, self.our_only())),
                };
                match rec {
                    Some((a, c)) => {
                        self.managers.insert(r.to_string(), a);
                        self.coordinators.insert(r.to_string(), c.normalized());
                    }
                    None => out.push(log(Level::Error, format!("unreadable record {k}"))),
                }
            }
        }
        let resources: Vec<String> = self.managers.keys().cloned().collect();
        for r in resources {
            out.extend(self.ask_in_doubt(&r, cfg));
        }
        for (k, v) in records {
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            let Some(rest) = k.strip_prefix("p/") else {
                continue;
            };
            // The tx id holds one '/', the resource none.
            let Some((tx, res)) = rest.rsplit_once('/') else {
                continue;
            };
            let Ok(r) = serde_json::from_slice::<Record>(v) else {
                out.push(log(Level::Error, format!("unreadable record {k}")));
                continue;
            };
            let Some(coord) = coordinator_of(tx) else {
                out.push(log(Level::Error, format!("unreadable record {k}")));
                continue;
            };
            let key = (tx.to_string(), res.to_string());
            self.txs.insert(
                key.clone(),
                PTx {
                    coord,
                    state: r.state,
                    nodes: r.nodes,
                    on_disk: true,
                    // A refusal may have raced a yes of the manager: it gets an abort too.
                    manager_prepared: true,
                    in_flight: false,
                    attempt: 0,
                    reason: String::new(),
                    signature: r.sig,
                },
            );
            match r.state {
                State::Prepared => {
                    let d = 500 + cfg.retry.delay(0, rng);
                    out.push(Effect::timer(d, Timer::P(PTimer::Query(key))));
                }
                State::Committed => out.push(Effect::timer(100, Timer::P(PTimer::Deliver(key)))),
                // Refused: when it was prepared is lost, so the longest vote deadline.
                _ => out.push(Effect::timer(
                    expire_after(MAX_TIMEOUT_MS, cfg),
                    Timer::P(PTimer::Expire(key)),
                )),
            }
        }
        out
    }

    fn write(&self, k: &PKey, tx: &PTx, forced: bool) -> Eff {
        let rec = Record {
            v: 1,
            state: tx.state,
            nodes: tx.nodes.clone(),
            sig: tx.signature.clone(),
        };
        let b = if forced {
            Batch::forced()
        } else {
            Batch::lazy()
        };
        Effect::Store(b.put(pkey(k), encode(&rec)))
    }

    /// Phase one from the coordinator.
    #[allow(clippy::too_many_arguments)]
    pub fn on_prepare(
        &mut self,
        id: RequestId,
        from: &Address,
        tx_id: String,
        resource: String,
        operation: String,
        mut nodes: Vec<NodeId>,
        deadline_ms: u64,
        cfg: &Config,
    ) -> Vec<Eff> {
        if let Err(e) = self.check_coordinator(from, &tx_id) {
            return vec![reply_err(id, e)];
        }
        let key = (tx_id.clone(), resource.clone());
        let voted = |vote, reason: &str| {
            Effect::reply(
                id,
                encode_result(&Ok(Response::Voted {
                    tx_id: tx_id.clone(),
                    vote,
                    reason: reason.to_string(),
                })),
            )
        };
        if let Some(tx) = self.txs.get_mut(&key) {
            if tx.state == State::Asking && !tx.in_flight {
                // The manager's earlier vote timed out (it may have voted yes since): ask
                // it again with this copy of the Prepare; the entry is kept meanwhile.
                if let Some(manager) = self.managers.get(&resource).cloned() {
                    if operation.len() <= p2p_common::api::txcoord::MAX_OPERATION {
                        tx.in_flight = true;
                        let msg = ManagerMessage::PrepareTransaction {
                            tx_id,
                            coordinator: coordinator_of(&key.0).expect("checked"),
                            resource,
                            operation,
                        };
                        return vec![Effect::request(
                            manager,
                            encode(&msg),
                            cfg.manager_timeout_s,
                            Ctx::P(PCtx::Vote(key, id)),
                        )];
                    }
                }
            }
            return vec![match tx.state {
                State::Asking => Effect::reply(
                    id,
                    encode_result(&Ok(Response::Voting {
                        tx_id: tx_id.clone(),
                    })),
                ),
                State::Prepared | State::Committed => voted(Vote::Yes, ""),
                _ => voted(Vote::No, &tx.reason),
            }];
        }
        if let Some(end) = self.ended.get(&key) {
            // A late copy of a Prepare whose transaction ended here (or that we voted no
            // on, which keeps no entry): answer what we voted.
            return vec![match &end.outcome {
                End::Committed => voted(Vote::Yes, ""),
                End::No(reason) => voted(Vote::No, reason),
            }];
        }
        if p2p_common::api::txcoord::validate_resource(&resource).is_err()
            || operation.len() > p2p_common::api::txcoord::MAX_OPERATION
        {
            return vec![voted(Vote::No, "invalid resource or operation")];
        }
        let Some(manager) = self.managers.get(&resource).cloned() else {
            return vec![voted(
                Vote::No,
                &format!("no manager registered for {resource} on {}", self.our.node),
            )];
        };
        let coord = coordinator_of(&tx_id).expect("checked");
        if !self.admits(&resource, &coord) {
            // Before the manager is asked, and without a table slot.
            return vec![voted(
                Vote::No,
                &format!(
                    "{} / {resource} does not take part in transactions coordinated by {coord} \
                     (not among its manager's coordinators)",
                    self.our.node
                ),
            )];
        }
        let count = self.txs.count(&coord);
        if self.txs.len() >= cfg.max_participating || count.entries >= cfg.max_per_coordinator {
            return vec![voted(
                Vote::No,
                &format!("{} has too many open transactions", self.our.node),
            )];
        }
        if count.prepared >= cfg.max_prepared_per_coordinator {
            // Prepared entries stay until the coordinator decides: one that does not (down,
            // cut off or hostile) holds at most this many of our slots.
            return vec![voted(
                Vote::No,
                &format!(
                    "{} holds {} transactions of {coord} prepared and undecided",
                    self.our.node, count.prepared
                ),
            )];
        }
        nodes.retain(|n| n != &coord);
        nodes.sort();
        nodes.dedup();
        nodes.truncate(p2p_common::api::txcoord::MAX_PARTICIPANTS);
        self.txs.insert(
            key.clone(),
            PTx {
                coord: coord.clone(),
                state: State::Asking,
                nodes,
                on_disk: false,
                manager_prepared: false,
                in_flight: true,
                attempt: 0,
                reason: String::new(),
                signature: Vec::new(),
            },
        );
        let msg = ManagerMessage::PrepareTransaction {
            tx_id,
            coordinator: coord,
            resource,
            operation,
        };
        vec![
            Effect::request(
                manager,
                encode(&msg),
                cfg.manager_timeout_s,
                Ctx::P(PCtx::Vote(key.clone(), id)),
            ),
            // After the coordinator's vote deadline it can no longer commit without our
            // yes: an entry that refused may then go (`PTimer::Expire`).
            Effect::timer(
                expire_after(deadline_ms.min(MAX_TIMEOUT_MS), cfg),
                Timer::P(PTimer::Expire(key)),
            ),
        ]
    }

    /// This node only: the default of `RegisterManager`'s `coordinators`.
    fn our_only(&self) -> Coordinators {
        Coordinators::Only(vec![self.our.node.clone()])
    }

    /// Whether the manager of `resource` takes part in transactions `coord` coordinates.
    fn admits(&self, resource: &str, coord: &NodeId) -> bool {
        match self.coordinators.get(resource) {
            Some(c) => c.admits(coord),
            None => *coord == self.our.node,
        }
    }

    fn check_coordinator(&self, from: &Address, tx_id: &str) -> Result<(), ApiError> {
        let Some(coord) = coordinator_of(tx_id) else {
            return Err(ApiError::bad_request(format!(
                "{tx_id:?} is not a transaction id (<node>/<hex>)"
            )));
        };
        if coord != from.node || from.process != self.our.process {
            return Err(ApiError::forbidden(format!(
                "only txcoord on {coord} may drive {tx_id}"
            )));
        }
        Ok(())
    }

    /// Phase two from the coordinator.
    pub fn on_decision(
        &mut self,
        id: RequestId,
        from: &Address,
        tx_id: String,
        resource: String,
        commit: bool,
        signature: Vec<u8>,
        cfg: &Config,
    ) -> Vec<Eff> {
        if let Err(e) = self.check_coordinator(from, &tx_id) {
            return vec![reply_err(id, e)];
        }
        let key = (tx_id.clone(), resource);
        if signature.len() == 64 {
            // From the coordinator itself (authenticated): kept to show peers that ask.
            // Only on an entry this decision agrees with (an Abort's signature on a committed
            // entry would be relayed as a commit's, and refused by every peer).
            if let Some(tx) = self.txs.get_mut(&key) {
                let agrees = if commit {
                    matches!(tx.state, State::Prepared | State::Committed)
                } else {
                    tx.state != State::Committed
                };
                if tx.signature.is_empty() && agrees {
                    tx.signature = signature;
                }
            }
        }
        let ack = |o| {
            Effect::reply(
                id,
                encode_result(&Ok(Response::Ack {
                    tx_id: tx_id.clone(),
                    outcome: o,
                })),
            )
        };
        let Some(tx) = self.txs.get(&key) else {
            // No record: we acknowledged and forgot, or never voted yes.
            let o = if commit {
                Outcome::Committed
            } else {
                Outcome::Aborted
            };
            return vec![ack(o)];
        };
        let st = tx.state;
        match (commit, st) {
            (true, State::Prepared) => {
                let mut out = self.learn(&key, true, cfg);
                out.push(ack(Outcome::Committed));
                out
            }
            (true, State::Committed) => vec![ack(Outcome::Committed)],
            (false, State::Aborted) => vec![ack(Outcome::Aborted)],
            (false, State::Committed) | (true, _) => vec![reply_err(
                id,
                ApiError::new(
                    ErrorCode::Forbidden,
                    format!("{tx_id} is {st:?} here; that decision contradicts our vote"),
                ),
            )],
            (false, _) => {
                let mut out = self.learn(&key, false, cfg);
                out.push(ack(Outcome::Aborted));
                out
            }
        }
    }

    /// The outcome is known: record it (a commit forced) and tell the manager.
    fn learn(&mut self, key: &PKey, commit: bool, cfg: &Config) -> Vec<Eff> {
        let out = self.learn_entry(key, commit, cfg);
        if !self.undecided(&key.0) {
            self.stop_asking(&key.0);
        }
        out
    }

    fn learn_entry(&mut self, key: &PKey, commit: bool, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(key) else {
            return vec![];
        };
        let mut out = vec![Effect::CancelTimer(Timer::P(PTimer::Query(key.clone())))];
        match (commit, tx.state) {
            (true, State::Prepared) => {
                let tx = self.txs.set_state(key, State::Committed).expect("present");
                tx.attempt = 0;
                let tx = tx.clone();
                out.push(self.write(key, &tx, !cfg.mutation_lazy_committed_record));
                out.extend(self.deliver(key, cfg));
            }
            (false, State::Prepared) => {
                let tx = self.txs.set_state(key, State::Aborted).expect("present");
                tx.attempt = 0;
                out.extend(self.deliver(key, cfg));
            }
            (false, State::Asking) => {
                tx.state = State::Aborted;
                tx.attempt = 0;
                if !tx.in_flight {
                    // An earlier vote timed out: the manager may hold a late yes; tell it.
                    out.push(Effect::CancelTimer(Timer::P(PTimer::Forget(key.clone()))));
                    out.extend(self.deliver(key, cfg));
                }
                // Else the manager's vote comes back later and is answered no.
            }
            (false, State::VotedNo | State::Refused) => {
                out.push(Effect::CancelTimer(Timer::P(PTimer::Forget(key.clone()))));
                if tx.in_flight {
                    // The manager is still voting: its answer is turned into a no.
                    tx.state = State::Aborted;
                } else {
                    tx.state = State::Aborted;
                    tx.attempt = 0;
                    // Without a manager yes, this ends at once.
                    out.extend(self.deliver(key, cfg));
                }
            }
            _ => {}
        }
        out
    }

    /// Tell the manager the outcome (one attempt in flight; retried until it answers).
    fn deliver(&mut self, key: &PKey, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(key) else {
            return vec![];
        };
        // Refused and VotedNo are as final as Aborted (this entry never votes yes): a
        // manager that may hold a yes is told to abort at once, not only when the
        // coordinator's abort arrives (it may give up first) or the forget timer fires.
        let refused_prepared =
            matches!(tx.state, State::Refused | State::VotedNo) && tx.manager_prepared;
        if tx.in_flight
            || !(matches!(tx.state, State::Committed | State::Aborted) || refused_prepared)
        {
            return vec![];
        }
        if tx.state == State::Aborted && !tx.manager_prepared {
            return self.done(key);
        }
        let Some(manager) = self.managers.get(&key.1).cloned() else {
            // Told when the manager registers again.
            return vec![];
        };
        tx.in_flight = true;
        let (tx_id, resource) = key.clone();
        let msg = if tx.state == State::Committed {
            ManagerMessage::CommitTransaction { tx_id, resource }
        } else {
            ManagerMessage::AbortTransaction { tx_id, resource }
        };
        vec![Effect::request(
            manager,
            encode(&msg),
            cfg.manager_timeout_s,
            Ctx::P(PCtx::Deliver(key.clone())),
        )]
    }

    /// The manager applied the outcome: forget (the end is lazy).
    fn done(&mut self, key: &PKey) -> Vec<Eff> {
        let Some(tx) = self.txs.remove(key) else {
            return vec![];
        };
        let outcome = if tx.state == State::Committed {
            End::Committed
        } else if tx.reason.is_empty() {
            End::No("this transaction already ended here".into())
        } else {
            End::No(tx.reason.clone())
        };
        let kind = matches!(outcome, End::Committed);
        let end = Ended {
            outcome,
            nodes: tx.nodes,
            signature: tx.signature,
        };
        let prev = self.ended.insert(key.clone(), end);
        if prev.is_none_or(|p| p.committed() != kind) {
            let order = &mut self.ended_order[kind as usize];
            order.push_back(key.clone());
            if order.len() > ENDED_KEPT {
                if let Some(old) = order.pop_front() {
                    // Only if it is still of this kind (it may have ended again since).
                    if self.ended.get(&old).is_some_and(|e| e.committed() == kind) {
                        self.ended.remove(&old);
                    }
                }
            }
        }
        let mut out = vec![
            Effect::CancelTimer(Timer::P(PTimer::Deliver(key.clone()))),
            Effect::CancelTimer(Timer::P(PTimer::Query(key.clone()))),
            Effect::CancelTimer(Timer::P(PTimer::Forget(key.clone()))),
            Effect::CancelTimer(Timer::P(PTimer::Expire(key.clone()))),
        ];
        if tx.on_disk {
            out.push(Effect::Store(Batch::lazy().delete(pkey(key))));
        }
        out
    }

    /// A termination query from another participant about one transaction (we are not its
    /// coordinator): its outcome here, with the coordinator's signed decision if we have
    /// it. An unsigned Committed or Aborted is only a hint to the asker (it asks the
    /// coordinator); a participant that has not voted yes refuses for good (forced, so it
    /// votes no when the coordinator asks again) and says Aborted.
    pub fn answer_query(
        &mut self,
        from: &NodeId,
        tx_id: &str,
        cfg: &Config,
    ) -> (Vec<Eff>, Result<(Outcome, Vec<u8>), ApiError>) {
        let mine: Vec<PKey> = self.txs.of_tx(tx_id).map(|(k, _)| k.clone()).collect();
        if mine.is_empty() {
            // Ended here: the signed decision, to a participant, if we kept one.
            let ended = self
                .ended
                .range((tx_id.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == tx_id)
                .map(|(_, e)| e)
                .find(|e| !e.signature.is_empty() && e.nodes.contains(from));
            return match ended {
                Some(e) => (
                    vec![],
                    Ok((
                        if e.committed() {
                            Outcome::Committed
                        } else {
                            Outcome::Aborted
                        },
                        e.signature.clone(),
                    )),
                ),
                None => (vec![], Ok((Outcome::Unknown, Vec::new()))),
            };
        }
        if !self.txs.map[&mine[0]].nodes.contains(from) {
            return (
                vec![],
                Err(ApiError::forbidden(format!(
                    "{from} is not a participant of {tx_id}"
                ))),
            );
        }
        let mut out = Vec::new();
        let mut outcome = Outcome::Pending;
        let mut signature = Vec::new();
        for k in &mine {
            let t = &self.txs.map[k];
            match t.state {
                State::Committed => {
                    outcome = Outcome::Committed;
                    signature = t.signature.clone();
                }
                State::Aborted | State::Refused => {
                    if outcome != Outcome::Committed {
                        outcome = Outcome::Aborted;
                        if signature.is_empty() {
                            signature = t.signature.clone();
                        }
                    }
                }
                _ => {}
            }
        }
        if outcome == Outcome::Pending
            && mine
                .iter()
                .any(|k| matches!(self.txs.map[k].state, State::Asking | State::VotedNo))
            && !mine
                .iter()
                .any(|k| self.txs.map[k].state == State::Prepared)
        {
            // Not voted yes anywhere here: refuse for good (forced), so that our vote to the
            // coordinator is no (the Prepare it re-sends, or the answer of the one in flight).
            for k in &mine {
                let tx = self.txs.get_mut(k).expect("listed");
                tx.state = State::Refused;
                tx.on_disk = true;
                tx.reason = "refused during cooperative termination".into();
                let tx = tx.clone();
                out.push(self.write(k, &tx, !cfg.mutation_lazy_refused_record));
                // It stays (answering no) until the vote deadline (`PTimer::Expire`).
                // A manager ask that timed out may hide a yes: tell it to abort now (a vote
                // still in flight is handled when it comes back).
                out.extend(self.deliver(k, cfg));
            }
            outcome = Outcome::Aborted;
        }
        (out, Ok((outcome, signature)))
    }

    /// Whether some entry of `tx_id` is prepared and waits for the decision.
    fn undecided(&self, tx_id: &str) -> bool {
        self.txs
            .of_tx(tx_id)
            .any(|(_, t)| t.state == State::Prepared)
    }

    fn stop_asking(&mut self, tx_id: &str) {
        let Some((target, _)) = self.asking.by_tx.remove(tx_id) else {
            return;
        };
        if let Some(t) = self.asking.targets.get_mut(&target) {
            t.remove(tx_id);
            t.refs = t.refs.saturating_sub(1);
        }
        self.gc_target(&target);
        if let Some(coord) = coordinator_of(tx_id) {
            if let Some(t) = self.asking.targets.get_mut(&coord) {
                t.home = t.home.saturating_sub(1);
            }
            self.gc_target(&coord);
        }
    }

    fn gc_target(&mut self, target: &NodeId) {
        if self.asking.targets.get(target).is_some_and(Target::unused) {
            self.asking.targets.remove(target);
        }
    }

    /// Queue `tx_id` to be asked of `target` next (`peers`: peers asked so far).
    fn ask_of(&mut self, tx_id: &str, target: NodeId, peers: usize) {
        match self.asking.by_tx.get(tx_id).cloned() {
            Some((old, _)) => {
                if let Some(t) = self.asking.targets.get_mut(&old) {
                    t.remove(tx_id);
                    t.refs = t.refs.saturating_sub(1);
                }
                if old != target {
                    self.gc_target(&old);
                }
            }
            None => {
                if let Some(coord) = coordinator_of(tx_id) {
                    self.asking.targets.entry(coord).or_default().home += 1;
                }
            }
        }
        self.asking
            .by_tx
            .insert(tx_id.to_string(), (target.clone(), peers));
        let t = self.asking.targets.entry(target).or_default();
        t.refs += 1;
        t.push(tx_id);
    }

    /// An entry has waited long enough for the decision: ask its coordinator.
    fn query(&mut self, key: &PKey, now: Now, cfg: &Config) -> Vec<Eff> {
        if !self
            .txs
            .get(key)
            .is_some_and(|t| t.state == State::Prepared)
            || self.asking.by_tx.contains_key(&key.0)
        {
            return vec![];
        }
        let Some(coord) = coordinator_of(&key.0) else {
            return vec![];
        };
        self.ask_of(&key.0, coord.clone(), 0);
        self.flush(&coord, now, cfg)
    }

    /// Send the next batched query to `target` if none is in flight and its backoff allows
    /// (else make sure its timer is armed).
    fn flush(&mut self, target: &NodeId, now: Now, cfg: &Config) -> Vec<Eff> {
        let Some(t) = self.asking.targets.get_mut(target) else {
            return vec![];
        };
        if t.in_flight || t.queue.is_empty() {
            return vec![];
        }
        if now.mono < t.not_before {
            return vec![Effect::timer(
                t.not_before - now.mono,
                Timer::P(PTimer::Ask(target.clone())),
            )];
        }
        let mut ids = Vec::new();
        while ids.len() < MAX_QUERY_BATCH {
            let Some((_, tx)) = t.queue.pop_first() else {
                break;
            };
            t.queued.remove(&tx);
            ids.push(tx);
        }
        t.in_flight = true;
        self.queries_sent += 1;
        let first = ids[0].clone();
        vec![Effect::request(
            Address::ours(target, crate::NAME),
            encode(&TxReq::QueryOutcome {
                tx_id: first,
                more: ids[1..].to_vec(),
            }),
            cfg.prepare_timeout_s,
            Ctx::P(PCtx::Query(target.clone(), ids)),
        )]
    }

    /// The answer (or failure) of a batched query to `target` about `ids`.
    fn on_query_answer(
        &mut self,
        now: Now,
        target: NodeId,
        ids: Vec<String>,
        answer: Result<Vec<u8>, SendErrorKind>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let mut answers: BTreeMap<String, (Outcome, Vec<u8>)> = BTreeMap::new();
        let failed = match answer.as_deref().map(try_decode_response::<Response>) {
            Ok(Ok(Ok(Response::Outcome {
                tx_id,
                outcome,
                signature,
                more,
            }))) => {
                answers.insert(tx_id, (outcome, signature));
                for o in more.into_iter().take(MAX_QUERY_BATCH) {
                    answers.entry(o.tx_id).or_insert((o.outcome, o.signature));
                }
                false
            }
            _ => true,
        };
        let mut out = Vec::new();
        let mut touched = BTreeSet::new();
        touched.insert(target.clone());
        let mut undecided = false;
        for id in ids {
            if !self.undecided(&id) {
                self.stop_asking(&id);
                continue;
            }
            let Some((at, peers)) = self.asking.by_tx.get(&id).cloned() else {
                continue;
            };
            if at != target {
                continue;
            }
            let Some(coord) = coordinator_of(&id) else {
                self.stop_asking(&id);
                continue;
            };
            let direct = coord == target;
            let got = if failed { None } else { answers.remove(&id) };
            match got {
                // The coordinator itself (Hyperware authenticates the sending node).
                Some((o @ (Outcome::Committed | Outcome::Aborted), sig)) if direct => {
                    out.extend(self.learn_tx(&id, o == Outcome::Committed, sig, cfg));
                }
                Some((o @ (Outcome::Committed | Outcome::Aborted), sig))
                    if !direct && cfg.mutation_trust_unsigned_peer && sig.is_empty() =>
                {
                    out.extend(self.learn_tx(&id, o == Outcome::Committed, sig, cfg));
                }
                Some((o @ (Outcome::Committed | Outcome::Aborted), sig))
                    if !direct && sig.len() == 64 && self.asking.verifying < MAX_VERIFYING =>
                {
                    // A peer relays the coordinator's signed decision: check it first.
                    self.asking.verifying += 1;
                    let commit = o == Outcome::Committed;
                    out.push(Effect::Send {
                        to: sign_address(&self.our.node),
                        body: verify_body(&Address::ours(&coord, crate::NAME), &sig),
                        blob: Some(decision_message(
                            &id,
                            commit || cfg.mutation_verify_ignores_outcome,
                        )),
                        expect: Some(Expect {
                            timeout_s: cfg.manager_timeout_s,
                            ctx: Ctx::P(PCtx::Verify(id.clone(), commit, sig)),
                        }),
                    });
                }
                // The coordinator is up but has not decided (or did not answer this one).
                _ if direct && !failed => {
                    undecided = true;
                    self.ask_of(&id, coord, peers);
                }
                // No answer from the coordinator: the next other participant.
                _ if direct => {
                    let others: Vec<NodeId> = self
                        .txs
                        .of_tx(&id)
                        .flat_map(|(_, t)| t.nodes.iter().cloned())
                        .filter(|n| *n != self.our.node && *n != coord)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let next = if others.is_empty() {
                        coord
                    } else {
                        others[peers % others.len()].clone()
                    };
                    touched.insert(next.clone());
                    self.ask_of(&id, next, peers + 1);
                }
                // A peer's unsigned word, Pending, Unknown or no answer: only the coordinator
                // decides for us; ask it again (its own backoff applies).
                _ => {
                    touched.insert(coord.clone());
                    self.ask_of(&id, coord, peers);
                }
            }
        }
        if let Some(t) = self.asking.targets.get_mut(&target) {
            t.in_flight = false;
            if failed || undecided {
                let d = cfg.retry.delay(t.attempt, rng).max(100);
                t.attempt = t.attempt.saturating_add(1);
                t.not_before = now.mono + d;
            } else {
                t.attempt = 0;
                t.not_before = now.mono;
            }
        }
        for n in touched {
            out.extend(self.flush(&n, now, cfg));
            self.gc_target(&n);
        }
        out
    }

    /// The decision of `tx_id` is known (from its coordinator, or a checked signature):
    /// every prepared entry of it learns it, and keeps the signature to show peers.
    fn learn_tx(&mut self, tx_id: &str, commit: bool, sig: Vec<u8>, cfg: &Config) -> Vec<Eff> {
        let keys: Vec<PKey> = self
            .txs
            .of_tx(tx_id)
            .filter(|(_, t)| t.state == State::Prepared)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if sig.len() == 64 {
                if let Some(t) = self.txs.get_mut(&k) {
                    t.signature = sig.clone();
                }
            }
            out.extend(self.learn(&k, commit, cfg));
        }
        self.stop_asking(tx_id);
        out
    }

    fn again_later(
        &mut self,
        key: &PKey,
        timer: PTimer,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(key) else {
            return vec![];
        };
        tx.in_flight = false;
        let d = cfg.retry.delay(tx.attempt, rng).max(100);
        tx.attempt = tx.attempt.saturating_add(1);
        vec![Effect::timer(d, Timer::P(timer))]
    }

    pub fn on_answer(
        &mut self,
        now: Now,
        ctx: PCtx,
        answer: Result<Vec<u8>, SendErrorKind>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        match ctx {
            PCtx::Vote(key, id) => {
                let quota_full = self.txs.get(&key).is_some_and(|t| {
                    self.txs.count(&t.coord).prepared >= cfg.max_prepared_per_coordinator
                });
                let Some(tx) = self.txs.get_mut(&key) else {
                    return vec![];
                };
                tx.in_flight = false;
                let vote = match &answer {
                    Ok(body) => match try_decode_response::<ManagerAnswer>(body) {
                        Ok(Ok(ManagerAnswer::Vote { vote, reason })) => Some((vote, reason)),
                        Ok(Err(e)) => Some((Vote::No, format!("manager refused: {e}"))),
                        _ => Some((Vote::No, "the manager's answer is not a vote".into())),
                    },
                    // The manager is slow: the coordinator asks again.
                    Err(SendErrorKind::Timeout) => None,
                    Err(SendErrorKind::Offline) => Some((Vote::No, "manager unreachable".into())),
                };
                let tx_id = key.0.clone();
                let reply = |r: Response| Effect::reply(id, encode_result(&Ok(r)));
                let st = tx.state;
                match (st, vote) {
                    (State::Asking, None) => {
                        // The manager is slow and may still vote yes: keep the entry, so an
                        // abort (or the forget timer) tells the manager to drop its state.
                        // Without a retried Prepare for a while (the coordinator is cut off
                        // or gave up), it refuses and tells the manager (see `on_timer`).
                        if !cfg.mutation_vote_timeout_not_a_yes {
                            tx.manager_prepared = true;
                        }
                        let d = cfg.query_after_ms + cfg.retry.delay(0, rng);
                        vec![
                            reply(Response::Voting { tx_id }),
                            Effect::timer(d, Timer::P(PTimer::Forget(key))),
                        ]
                    }
                    (State::Asking, Some((Vote::Yes, _))) if quota_full => {
                        // Asks admitted together filled the coordinator's quota of prepared
                        // entries meanwhile: vote no, and the manager drops its yes.
                        let tx = self.txs.get_mut(&key).expect("present");
                        tx.state = State::VotedNo;
                        tx.manager_prepared = true;
                        tx.reason =
                            "too many transactions of this coordinator prepared and undecided"
                                .into();
                        let reason = tx.reason.clone();
                        let mut out = vec![reply(Response::Voted {
                            tx_id,
                            vote: Vote::No,
                            reason,
                        })];
                        out.extend(self.deliver(&key, cfg));
                        out
                    }
                    (State::Asking, Some((Vote::Yes, _))) => {
                        let tx = self.txs.set_state(&key, State::Prepared).expect("present");
                        tx.on_disk = true;
                        tx.manager_prepared = true;
                        self.prepared_yes += 1;
                        let tx = tx.clone();
                        let store = if cfg.mutation_lazy_prepared_record {
                            Effect::Store(Batch::lazy().put(
                                pkey(&key),
                                encode(&Record {
                                    v: 1,
                                    state: tx.state,
                                    nodes: tx.nodes.clone(),
                                    sig: Vec::new(),
                                }),
                            ))
                        } else {
                            self.write(&key, &tx, true)
                        };
                        let d = cfg.query_after_ms + cfg.retry.delay(0, rng);
                        vec![
                            store,
                            reply(Response::Voted {
                                tx_id,
                                vote: Vote::Yes,
                                reason: String::new(),
                            }),
                            // Only the decision ends a prepared entry.
                            Effect::CancelTimer(Timer::P(PTimer::Expire(key.clone()))),
                            Effect::timer(d, Timer::P(PTimer::Query(key))),
                        ]
                    }
                    (State::Asking, Some((Vote::No, reason))) => {
                        tx.state = State::VotedNo;
                        tx.reason = reason.chars().take(256).collect();
                        let reason = tx.reason.clone();
                        let prepared = tx.manager_prepared;
                        let mut out = vec![reply(Response::Voted {
                            tx_id,
                            vote: Vote::No,
                            reason,
                        })];
                        if prepared {
                            // An earlier ask of this entry timed out (the manager may have
                            // voted yes then): it is told to abort now, and the entry ends
                            // when it has.
                            out.extend(self.deliver(&key, cfg));
                        } else {
                            // No table slot for a no vote: a repeat of the Prepare is
                            // answered from the memory of ended entries.
                            out.extend(self.done(&key));
                        }
                        out
                    }
                    // Aborted or refused while the manager was voting: no, and undo a yes.
                    (_, v) => {
                        let yes = matches!(v, Some((Vote::Yes, _)));
                        let vote_timed_out = v.is_none();
                        let mut out = vec![reply(Response::Voted {
                            tx_id,
                            vote: Vote::No,
                            reason: "aborted while the manager was voting".into(),
                        })];
                        // A timeout may hide a yes (the manager answered after txcoord
                        // stopped waiting): the manager is told to abort then too. Refused
                        // is as final as Aborted (forced: this entry never votes yes), so
                        // it is told now, not only when (or if) the coordinator's abort
                        // arrives: an abort that finds the entry with nothing prepared at
                        // the manager ends it without telling the manager.
                        tx.manager_prepared = tx.manager_prepared || yes || vote_timed_out;
                        out.extend(self.deliver(&key, cfg));
                        out
                    }
                }
            }
            PCtx::Deliver(key) => {
                let ok = matches!(
                    answer.as_deref().map(try_decode_response::<ManagerAnswer>),
                    Ok(Ok(Ok(ManagerAnswer::Done {})))
                );
                if ok {
                    match self.txs.get_mut(&key) {
                        // Refused stays (and votes no) until the vote deadline; the manager
                        // is clean. A voted-no entry ends now.
                        Some(t) if t.state == State::Refused => {
                            t.in_flight = false;
                            t.manager_prepared = false;
                            vec![]
                        }
                        _ => self.done(&key),
                    }
                } else {
                    let k = key.clone();
                    self.again_later(&key, PTimer::Deliver(k), cfg, rng)
                }
            }
            PCtx::Query(target, ids) => self.on_query_answer(now, target, ids, answer, cfg, rng),
            PCtx::Verify(tx_id, commit, sig) => {
                self.asking.verifying = self.asking.verifying.saturating_sub(1);
                let ok = cfg.mutation_verify_always_ok
                    || matches!(
                        answer
                            .as_deref()
                            .map(serde_json::from_slice::<SignResponse>),
                        Ok(Ok(SignResponse::NetKeyVerify(true)))
                    );
                if !self.undecided(&tx_id) {
                    self.stop_asking(&tx_id);
                    return vec![];
                }
                if ok {
                    return self.learn_tx(&tx_id, commit, sig, cfg);
                }
                let Some(coord) = coordinator_of(&tx_id) else {
                    return vec![];
                };
                let peers = self.asking.by_tx.get(&tx_id).map_or(0, |a| a.1);
                let mut out = Vec::new();
                if answer.is_ok() {
                    // Checked and false: a forged or replayed decision (one counter, one
                    // debug line: a hostile peer must not fill the log).
                    self.forged_decisions += 1;
                    out.push(log(
                        Level::Debug,
                        format!("a relayed decision of {tx_id} did not verify; asking {coord}"),
                    ));
                }
                self.ask_of(&tx_id, coord.clone(), peers);
                out.extend(self.flush(&coord, now, cfg));
                out
            }
            PCtx::Recover(resource) => {
                let Some((in_flight, attempt)) = self.in_doubt_asks.get_mut(&resource) else {
                    return vec![];
                };
                *in_flight = false;
                match answer {
                    Ok(body) => {
                        self.in_doubt_asks.remove(&resource);
                        self.in_doubt(&resource, &body, cfg)
                    }
                    Err(_) if *attempt + 1 >= IN_DOUBT_ATTEMPTS => {
                        self.in_doubt_asks.remove(&resource);
                        vec![log(
                            Level::Info,
                            format!("manager of {resource} did not report its in-doubt transactions in {IN_DOUBT_ATTEMPTS} attempts; it is asked again when it registers"),
                        )]
                    }
                    Err(_) => {
                        let d = cfg.retry.delay(*attempt, rng).max(100);
                        *attempt += 1;
                        vec![Effect::timer(d, Timer::P(PTimer::InDoubt(resource)))]
                    }
                }
            }
            PCtx::Hello(token) => {
                let in_doubt = match &answer {
                    Ok(body) => Some(body.clone()),
                    Err(_) => None,
                };
                let outcome = match answer {
                    Ok(_) => self.hellos.confirmed(token).map(HelloOutcome::Delivered),
                    Err(kind) => self.hellos.failed(token, kind, now.mono, crate::NAME),
                };
                match outcome {
                    None => vec![],
                    Some(HelloOutcome::Refused(w, e)) => vec![reply_err(w.request, e)],
                    Some(HelloOutcome::Delivered(w)) => {
                        let resource = w.key.0.clone();
                        let mut out = self.registered(w.request, w.app, w.key, cfg);
                        match in_doubt {
                            Some(body) => {
                                self.in_doubt_asks.remove(&resource);
                                out.extend(self.in_doubt(&resource, &body, cfg));
                            }
                            // The Hello reached the app but timed out: the app was busy,
                            // typically blocked on this very registration (the typed
                            // client's `register_manager` is). Ask again after the reply,
                            // which frees it, until it answers.
                            None => {
                                self.in_doubt_asks.insert(resource.clone(), (false, 0));
                                out.extend(self.ask_in_doubt(&resource, cfg));
                            }
                        }
                        out
                    }
                }
            }
        }
    }

    /// The manager's in-doubt list: a transaction we have no entry for never got our yes
    /// (a yes is forced first, and an entry is dropped only after the manager applied the
    /// outcome), so it is aborted; one we decided is delivered again.
    fn in_doubt(&mut self, resource: &str, body: &[u8], cfg: &Config) -> Vec<Eff> {
        let Ok(Ok(ManagerAnswer::InDoubt { tx_ids })) = try_decode_response::<ManagerAnswer>(body)
        else {
            return vec![];
        };
        let mut out = Vec::new();
        for tx_id in tx_ids.into_iter().take(cfg.max_per_coordinator) {
            let Some(coord) = coordinator_of(&tx_id) else {
                continue;
            };
            let key = (tx_id, resource.to_string());
            let room = self.txs.len() < cfg.max_participating;
            match self.txs.get_mut(&key) {
                None if room => {
                    // Refused for good (forced): a Prepare still on its way gets a no.
                    self.txs.insert(
                        key.clone(),
                        PTx {
                            coord,
                            state: State::Refused,
                            nodes: vec![],
                            on_disk: true,
                            manager_prepared: true,
                            in_flight: false,
                            attempt: 0,
                            reason: "in doubt at the manager, never voted yes here".into(),
                            signature: Vec::new(),
                        },
                    );
                    let t = self.txs.map[&key].clone();
                    out.push(self.write(&key, &t, !cfg.mutation_lazy_refused_record));
                    // Its Prepare's deadline is not known here: the longest one.
                    out.push(Effect::timer(
                        expire_after(MAX_TIMEOUT_MS, cfg),
                        Timer::P(PTimer::Expire(key.clone())),
                    ));
                    out.extend(self.deliver(&key, cfg));
                }
                Some(t) if matches!(t.state, State::Committed | State::Aborted) && !t.in_flight => {
                    // An abort that thought the manager had nothing prepared learns otherwise.
                    t.manager_prepared = true;
                    t.attempt = 0;
                    out.extend(self.deliver(&key, cfg));
                }
                // Never voted yes here (refused, or voted no): the manager holds prepared
                // state all the same, so it gets the abort (now if refused, else when the
                // entry aborts).
                Some(t) if matches!(t.state, State::Refused | State::VotedNo) => {
                    t.manager_prepared = true;
                    if !t.in_flight {
                        t.attempt = 0;
                        out.extend(self.deliver(&key, cfg));
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub fn on_timer(&mut self, t: PTimer, now: Now, cfg: &Config) -> Vec<Eff> {
        match t {
            PTimer::Query(k) => self.query(&k, now, cfg),
            PTimer::Ask(n) => self.flush(&n, now, cfg),
            PTimer::Deliver(k) => self.deliver(&k, cfg),
            PTimer::InDoubt(r) => self.ask_in_doubt(&r, cfg),
            PTimer::Expire(k) => match self.txs.get(&k).map(|t| (t.state, t.in_flight)) {
                // The coordinator's vote deadline has passed: it cannot commit without our
                // yes any more, so a refusal needs no slot.
                Some((State::Refused, false)) => self.learn(&k, false, cfg),
                // Still voting, or telling the manager: look again later (it may refuse).
                Some((State::Asking | State::VotedNo | State::Refused, _)) => vec![Effect::timer(
                    cfg.query_after_ms,
                    Timer::P(PTimer::Expire(k)),
                )],
                _ => vec![],
            },
            PTimer::Forget(k) => match self.txs.get(&k).map(|t| (t.state, t.in_flight)) {
                // The manager's vote timed out and no Prepare came again since: never voted
                // yes to the coordinator, so refuse for good here and tell the manager (it
                // may have voted yes late).
                Some((State::Asking, false)) => self.give_up(&k, cfg),
                _ => vec![],
            },
        }
    }

    /// Ask the manager of `resource` for its in-doubt list (`Hello`, answered `InDoubt`), one
    /// ask in flight; retried with backoff on no answer (see `PCtx::Recover`).
    fn ask_in_doubt(&mut self, resource: &str, cfg: &Config) -> Vec<Eff> {
        let Some(app) = self.managers.get(resource).cloned() else {
            self.in_doubt_asks.remove(resource);
            return vec![];
        };
        let ask = self
            .in_doubt_asks
            .entry(resource.to_string())
            .or_insert((false, 0));
        if ask.0 {
            return vec![];
        }
        ask.0 = true;
        vec![Effect::request(
            app,
            encode(&ManagerMessage::Hello {
                resource: resource.to_string(),
            }),
            cfg.manager_timeout_s,
            Ctx::P(PCtx::Recover(resource.to_string())),
        )]
    }

    /// Refuse (forced) an entry whose manager vote timed out, and tell the manager to abort.
    fn give_up(&mut self, key: &PKey, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(key) else {
            return vec![];
        };
        tx.state = State::Refused;
        tx.on_disk = true;
        tx.attempt = 0;
        tx.reason = "the manager did not vote in time".into();
        let t = tx.clone();
        // It stays (answering no) until the vote deadline (`PTimer::Expire`).
        let mut out = vec![self.write(key, &t, !cfg.mutation_lazy_refused_record)];
        out.extend(self.deliver(key, cfg));
        out
    }

    pub fn register(
        &mut self,
        id: RequestId,
        from: &Address,
        resource: String,
        coordinators: Option<Coordinators>,
        now: Now,
    ) -> Vec<Eff> {
        if let Some(m) = self.managers.get(&resource) {
            if m != from {
                return vec![reply_err(
                    id,
                    ApiError::forbidden(format!(
                        "{resource} is managed by {m}; it must unregister first"
                    )),
                )];
            }
        }
        let hello = ManagerMessage::Hello {
            resource: resource.clone(),
        };
        let coordinators = coordinators.unwrap_or_else(|| self.our_only()).normalized();
        match self.hellos.begin(
            (resource, coordinators),
            id,
            from.clone(),
            encode(&hello),
            now.mono,
            |t| Ctx::P(PCtx::Hello(t)),
        ) {
            Ok(e) => vec![e],
            Err(e) => vec![reply_err(id, e)],
        }
    }

    /// The hello reached the manager: record it (forced: it was told it is registered) and
    /// tell it every outcome it has not applied yet.
    fn registered(
        &mut self,
        id: RequestId,
        app: Address,
        (resource, coordinators): (String, Coordinators),
        cfg: &Config,
    ) -> Vec<Eff> {
        self.managers.insert(resource.clone(), app.clone());
        self.coordinators
            .insert(resource.clone(), coordinators.clone());
        let mut out = vec![Effect::Store(
            Batch::forced().put(mkey(&resource), manager_record(&app, &coordinators)),
        )];
        let pending: Vec<PKey> = self
            .txs
            .iter()
            .filter(|(k, t)| {
                k.1 == resource && matches!(t.state, State::Committed | State::Aborted)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &pending {
            // One with a send in flight is left to it: that may be the manager's vote (an
            // entry aborted while the manager voted), whose answer must still find the entry
            // (a yes is then aborted at the manager); a delivery in flight to the manager's
            // earlier life is retried when it fails. The model check found this: an entry
            // ended here, the late yes found nothing and the manager held it for ever.
            if let Some(t) = self.txs.get_mut(k) {
                if t.in_flight {
                    continue;
                }
                t.attempt = 0;
            }
            out.extend(self.deliver(k, cfg));
        }
        out.push(Effect::reply(
            id,
            encode_result(&Ok(Response::ManagerRegistered {
                resource,
                pending: pending.len() as u32,
                coordinators,
            })),
        ));
        out.push(log(Level::Info, format!("manager {app} registered")));
        out
    }

    pub fn unregister(&mut self, id: RequestId, from: &Address, resource: String) -> Vec<Eff> {
        match self.managers.get(&resource) {
            Some(m) if m != from => vec![reply_err(
                id,
                ApiError::forbidden(format!("{resource} is managed by {m}, not {from}")),
            )],
            None => vec![reply_err(
                id,
                ApiError::not_found(format!("no manager registered for {resource}")),
            )],
            Some(_) => {
                self.managers.remove(&resource);
                self.in_doubt_asks.remove(&resource);
                self.coordinators.remove(&resource);
                vec![
                    Effect::Store(Batch::forced().delete(mkey(&resource))),
                    Effect::reply(
                        id,
                        encode_result(&Ok(Response::ManagerUnregistered { resource })),
                    ),
                ]
            }
        }
    }

    pub fn status(&self, tx_id: &str) -> Option<TxStatus> {
        let votes: Vec<(Phase, VoteView)> = self
            .txs
            .of_tx(tx_id)
            .map(|(k, t)| (phase(t.state), self.vote_view(k, t)))
            .collect();
        let phase = votes.iter().map(|(p, _)| *p).min()?;
        Some(TxStatus {
            tx_id: tx_id.to_string(),
            role: Role::Participant,
            phase,
            votes: votes.into_iter().map(|(_, v)| v).collect(),
            reason: String::new(),
        })
    }

    fn vote_view(&self, k: &PKey, t: &PTx) -> VoteView {
        VoteView {
            node: self.our.node.clone(),
            resource: k.1.clone(),
            vote: match t.state {
                State::Asking => None,
                State::Prepared | State::Committed => Some(Vote::Yes),
                State::Aborted if t.manager_prepared => Some(Vote::Yes),
                _ => Some(Vote::No),
            },
            reason: t.reason.clone(),
            acked: false,
        }
    }

    pub fn list(&self) -> Vec<TxStatus> {
        let mut ids: Vec<&String> = self.txs.iter().map(|(k, _)| &k.0).collect();
        ids.dedup();
        ids.iter().filter_map(|t| self.status(t)).collect()
    }

    pub fn fingerprint(&self, out: &mut String) {
        use std::fmt::Write;
        for (k, t) in &self.txs.map {
            let _ = write!(
                out,
                "P{}/{}:{:?}{}{}{},",
                k.0, k.1, t.state, t.on_disk as u8, t.manager_prepared as u8, t.in_flight as u8
            );
        }
        for (k, e) in &self.ended {
            let c = e.committed() as u8;
            let s = !e.signature.is_empty() as u8;
            let _ = write!(out, "E{}/{}:{c}{s},", k.0, k.1);
        }
        // Termination queries: where each transaction is asked, what is queued or in flight.
        for (tx, (n, _)) in &self.asking.by_tx {
            let _ = write!(out, "Q{tx}>{n},");
        }
        for (n, t) in &self.asking.targets {
            let _ = write!(out, "T{n}:{}{},", t.queue.len(), t.in_flight as u8);
        }
        let _ = write!(out, "V{},", self.asking.verifying);
        for (r, (f, _)) in &self.in_doubt_asks {
            let _ = write!(out, "D{r}:{},", *f as u8);
        }
    }
}

fn phase(s: State) -> Phase {
    match s {
        State::Asking => Phase::Preparing,
        State::Prepared => Phase::Prepared,
        State::Committed => Phase::Committing,
        State::Aborted | State::VotedNo | State::Refused => Phase::Aborting,
    }
}

/// Keep ApiResult in scope for readers of this module's signatures.
#[allow(dead_code)]
type _R = ApiResult<()>;
