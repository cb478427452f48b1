//! The participant sub-machine: one entry per (transaction, resource) on this node, and the
//! registry of local resource managers.
//!
//! Forced writes: "prepared" (`p/<tx>/<resource>`) before a yes vote, "committed" (the same
//! key) before acknowledging a commit. A no vote and an abort write nothing; the record is
//! deleted lazily once the manager has applied the outcome. A prepared participant never
//! decides alone: without a decision it asks the coordinator, then the other participants,
//! with backoff. Only a transaction's coordinator may drive it here.

use crate::core::{reply_err, Config, Ctx, Eff, Timer};
use p2p_common::api::txcoord::{
    coordinator_of, Coordinators, ManagerAnswer, ManagerMessage, Outcome, Phase, Request as TxReq,
    Response, Role, TxStatus, Vote, VoteView, MAX_TIMEOUT_MS,
};
use p2p_common::api::{encode, encode_result, try_decode_response, ApiError, ApiResult, ErrorCode};
use p2p_common::appreach::{Confirmations, HelloOutcome};
use p2p_common::service::{log, Batch, Effect, Level, Now, RequestId, SendErrorKind};
use p2p_common::{Address, NodeId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// (transaction id, resource).
pub type PKey = (String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PCtx {
    /// The manager's vote; answer Prepare request `RequestId` with it.
    Vote(PKey, RequestId),
    /// The manager applying the outcome.
    Deliver(PKey),
    /// A termination query to `NodeId`.
    Query(PKey, NodeId),
    Hello(u64),
    /// After a restart: the recorded manager of this resource, asked what it is in doubt about.
    Recover(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PTimer {
    Query(PKey),
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
    /// A send for this entry is in flight (one at a time: vote, delivery or query).
    in_flight: bool,
    attempt: u32,
    /// Next termination target (index into coordinator + nodes).
    round: usize,
    reason: String,
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
}

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
    /// Entries that ended, with whether they committed: a late copy of their Prepare is
    /// answered from here (never asking the manager again). Memory only, bounded per kind:
    /// `ended_order[1]` the committed ones, `[0]` the others, each oldest first, so cheap no
    /// votes cannot push out the memory of commits.
    ended: BTreeMap<PKey, Ended>,
    ended_order: [VecDeque<PKey>; 2],
    pub prepared_yes: u64,
}

/// How an entry ended, for late copies of its Prepare: committed, or the no vote's reason.
#[derive(Clone, Debug)]
enum Ended {
    Committed,
    No(String),
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
            prepared_yes: 0,
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
                    round: 0,
                    reason: String::new(),
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
            return vec![match end {
                Ended::Committed => voted(Vote::Yes, ""),
                Ended::No(reason) => voted(Vote::No, reason),
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
                round: 0,
                reason: String::new(),
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
        cfg: &Config,
    ) -> Vec<Eff> {
        if let Err(e) = self.check_coordinator(from, &tx_id) {
            return vec![reply_err(id, e)];
        }
        let key = (tx_id.clone(), resource);
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
        let end = if tx.state == State::Committed {
            Ended::Committed
        } else if tx.reason.is_empty() {
            Ended::No("this transaction already ended here".into())
        } else {
            Ended::No(tx.reason.clone())
        };
        let kind = matches!(end, Ended::Committed);
        let prev = self.ended.insert(key.clone(), end);
        if prev.is_none_or(|p| matches!(p, Ended::Committed) != kind) {
            let order = &mut self.ended_order[kind as usize];
            order.push_back(key.clone());
            if order.len() > ENDED_KEPT {
                if let Some(old) = order.pop_front() {
                    // Only if it is still of this kind (it may have ended again since).
                    if self
                        .ended
                        .get(&old)
                        .is_some_and(|e| matches!(e, Ended::Committed) == kind)
                    {
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

    /// A termination query from another participant (we are not the coordinator).
    pub fn on_query(
        &mut self,
        id: RequestId,
        from: &NodeId,
        tx_id: String,
        cfg: &Config,
    ) -> Vec<Eff> {
        let mine: Vec<PKey> = self.txs.of_tx(&tx_id).map(|(k, _)| k.clone()).collect();
        let answer = |o| {
            Effect::reply(
                id,
                encode_result(&Ok(Response::Outcome {
                    tx_id: tx_id.clone(),
                    outcome: o,
                })),
            )
        };
        if mine.is_empty() {
            return vec![answer(Outcome::Unknown)];
        }
        if !self.txs.map[&mine[0]].nodes.contains(from) {
            return vec![reply_err(
                id,
                ApiError::forbidden(format!("{from} is not a participant of {tx_id}")),
            )];
        }
        let mut out = Vec::new();
        let mut outcome = Outcome::Pending;
        for k in &mine {
            let st = self.txs.map[k].state;
            match st {
                State::Committed => outcome = Outcome::Committed,
                State::Aborted | State::Refused => {
                    if outcome != Outcome::Committed {
                        outcome = Outcome::Aborted
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
            // Not voted yes anywhere here: refuse for good (forced) and let them abort.
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
        out.push(answer(outcome));
        out
    }

    fn query(&mut self, key: &PKey, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(key) else {
            return vec![];
        };
        if tx.state != State::Prepared || tx.in_flight {
            return vec![];
        }
        let Some(coord) = coordinator_of(&key.0) else {
            return vec![];
        };
        let mut targets = vec![coord];
        targets.extend(tx.nodes.iter().filter(|n| **n != self.our.node).cloned());
        let target = targets[tx.round % targets.len()].clone();
        tx.round = tx.round.wrapping_add(1);
        tx.in_flight = true;
        vec![Effect::request(
            Address::ours(&target, crate::NAME),
            encode(&TxReq::QueryOutcome {
                tx_id: key.0.clone(),
            }),
            cfg.prepare_timeout_s,
            Ctx::P(PCtx::Query(key.clone(), target)),
        )]
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
            PCtx::Query(key, _target) => {
                let outcome = match answer.as_deref().map(try_decode_response::<Response>) {
                    Ok(Ok(Ok(Response::Outcome { outcome, .. }))) => Some(outcome),
                    _ => None,
                };
                let Some(tx) = self.txs.get_mut(&key) else {
                    return vec![];
                };
                tx.in_flight = false;
                if tx.state != State::Prepared {
                    // Decided while the query was out: the delivery waited for it.
                    return self.deliver(&key, cfg);
                }
                match outcome {
                    Some(Outcome::Committed) => self.learn(&key, true, cfg),
                    Some(Outcome::Aborted) => self.learn(&key, false, cfg),
                    _ => {
                        let k = key.clone();
                        self.again_later(&key, PTimer::Query(k), cfg, rng)
                    }
                }
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
                            round: 0,
                            reason: "in doubt at the manager, never voted yes here".into(),
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

    pub fn on_timer(&mut self, t: PTimer, cfg: &Config) -> Vec<Eff> {
        match t {
            PTimer::Query(k) => self.query(&k, cfg),
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
        for (k, c) in &self.ended {
            let c = matches!(c, Ended::Committed) as u8;
            let _ = write!(out, "E{}/{}:{c},", k.0, k.1);
        }
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
