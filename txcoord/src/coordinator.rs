//! The coordinator sub-machine: one entry per transaction this node started.
//!
//! Presumed abort: nothing is written until the decision. A commit decision is forced
//! (`c/<tx>`) before the first Commit goes out and re-sent until every participant
//! acknowledges; then an unforced end record replaces it (`h/<tx>`, bounded history for
//! Status) and the transaction is forgotten. An abort is never forced. Asked about a
//! transaction it has no record of, the coordinator answers Aborted.

use crate::core::{reply_err, Config, Ctx, Eff, Timer};
use p2p_common::api::txcoord::{
    AppEvent, Outcome, ParticipantSpec, Phase, Request as TxReq, Response, Role, TxStatus, Vote,
    VoteView,
};
use p2p_common::api::{encode, encode_result, ApiError, ApiResult, ErrorCode};
use p2p_common::service::{log, Batch, Effect, Level, RequestId};
use p2p_common::{Address, NodeId};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Context of a send the coordinator awaits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CCtx {
    Prepare(String, usize),
    Decide(String, usize),
    /// The decision event of transaction `String` to the app that started it.
    Event(Address, String),
}

/// The coordinator's timers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CTimer {
    /// Re-send Prepare or the decision to participant `usize`.
    Retry(String, usize),
    /// The vote deadline.
    Deadline(String),
    /// Send the next decision event to this app again.
    Event(Address),
}

#[derive(Debug, Clone)]
struct Part {
    spec: ParticipantSpec,
    vote: Option<Vote>,
    reason: String,
    acked: bool,
    in_flight: bool,
    attempt: u32,
}

#[derive(Debug, Clone)]
struct CTx {
    parts: Vec<Part>,
    phase: Phase,
    app: Option<Address>,
    deadline_ms: u64,
    reason: String,
    /// The app answered the decision event (its `e/` record goes with the end record).
    event_acked: bool,
}

/// Decision events waiting for one app: oldest first, one in flight.
#[derive(Debug, Clone, Default)]
struct AppBox {
    queue: VecDeque<(String, Vec<u8>)>,
    in_flight: bool,
    attempt: u32,
}

/// A decision event not yet answered by its app (`e/<tx>`): forced with a commit decision,
/// lazy for an abort; deleted lazily once answered.
#[derive(Serialize, Deserialize)]
struct EventRecord {
    app: String,
    body: String,
}

/// The forced commit record.
#[derive(Serialize, Deserialize)]
struct CommitRecord {
    v: u32,
    parts: Vec<(NodeId, String)>,
    #[serde(default)]
    app: Option<String>,
}

/// The unforced end record.
#[derive(Serialize, Deserialize)]
struct EndRecord {
    outcome: Outcome,
    seq: u64,
    /// The participant nodes (sorted), the only ones told the outcome. Empty in a record
    /// written before they were kept: then anyone is.
    #[serde(default)]
    nodes: Vec<NodeId>,
    /// Each participant's vote as it ended (for `List` with `include_finished`); empty in a
    /// record written before they were kept.
    #[serde(default)]
    votes: Vec<VoteView>,
    #[serde(default)]
    reason: String,
}

/// A finished transaction: its outcome, its sequence number in the history, its
/// participant nodes (sorted; at most `MAX_PARTICIPANTS`), and what `List` shows of it: each
/// participant's vote as it ended (at most `MAX_PARTICIPANTS`, reasons clipped) and why.
#[derive(Debug, Clone)]
struct Finished {
    outcome: Outcome,
    seq: u64,
    nodes: Vec<NodeId>,
    votes: Vec<VoteView>,
    reason: String,
}

#[derive(Clone)]
pub struct Coordinator {
    our: Address,
    txs: BTreeMap<String, CTx>,
    /// Finished transactions, oldest first (bounded by `Config::history`).
    history: BTreeMap<String, Finished>,
    order: VecDeque<(u64, String)>,
    next_seq: u64,
    /// Decision events per app.
    events: BTreeMap<Address, AppBox>,
    pub commits: u64,
    pub aborts: u64,
    /// Decision events the app answered, and those given up after `event_attempts`.
    pub events_delivered: u64,
    pub events_dropped: u64,
}

fn ckey(tx: &str) -> Vec<u8> {
    format!("c/{tx}").into_bytes()
}
fn hkey(tx: &str) -> Vec<u8> {
    format!("h/{tx}").into_bytes()
}
fn ekey(tx: &str) -> Vec<u8> {
    format!("e/{tx}").into_bytes()
}

impl Coordinator {
    pub fn new(our: Address) -> Self {
        Coordinator {
            our,
            txs: BTreeMap::new(),
            history: BTreeMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            events: BTreeMap::new(),
            commits: 0,
            aborts: 0,
            events_delivered: 0,
            events_dropped: 0,
        }
    }

    /// Decision events not yet answered.
    pub fn events_waiting(&self) -> usize {
        self.events.values().map(|b| b.queue.len()).sum()
    }

    /// Queue a decision event; sends it now if nothing is in flight to that app.
    fn queue_event(
        &mut self,
        app: Address,
        tx_id: &str,
        body: Vec<u8>,
        cfg: &Config,
        out: &mut Vec<Eff>,
    ) {
        if self.events_waiting() >= cfg.max_events {
            self.events_dropped += 1;
            out.push(log(
                Level::Warn,
                format!(
                    "{} decision events are waiting; the one of {tx_id} for {app} is not sent (Status answers it)",
                    cfg.max_events
                ),
            ));
            return;
        }
        let b = self.events.entry(app.clone()).or_default();
        b.queue.push_back((tx_id.to_string(), body));
        out.extend(self.send_event(&app));
    }

    fn send_event(&mut self, app: &Address) -> Vec<Eff> {
        let Some(b) = self.events.get_mut(app) else {
            return vec![];
        };
        if b.in_flight {
            return vec![];
        }
        let Some((tx, body)) = b.queue.front() else {
            return vec![];
        };
        b.in_flight = true;
        vec![Effect::request(
            app.clone(),
            body.clone(),
            5,
            Ctx::C(CCtx::Event(app.clone(), tx.clone())),
        )]
    }

    /// The app answered the decision event of `tx` (any answer: `Ok`), or the send failed.
    pub fn on_event_answer(
        &mut self,
        app: Address,
        tx: String,
        delivered: Result<(), String>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let Some(b) = self.events.get_mut(&app) else {
            return vec![];
        };
        if !b.in_flight || b.queue.front().map(|f| &f.0) != Some(&tx) {
            return vec![];
        }
        b.in_flight = false;
        let mut out = Vec::new();
        let done = match delivered {
            // Any answer means the app has it.
            Ok(()) => {
                self.events_delivered += 1;
                true
            }
            Err(e) if b.attempt + 1 >= cfg.event_attempts => {
                self.events_dropped += 1;
                out.push(log(
                    Level::Warn,
                    format!(
                        "decision event of {tx} did not reach {app} in {} attempts ({e}); Status answers it",
                        cfg.event_attempts
                    ),
                ));
                true
            }
            Err(_) => false,
        };
        if done {
            b.queue.pop_front();
            b.attempt = 0;
            let empty = b.queue.is_empty();
            match self.txs.get_mut(&tx) {
                Some(t) => t.event_acked = true,
                None => out.push(Effect::Store(Batch::lazy().delete(ekey(&tx)))),
            }
            if empty {
                self.events.remove(&app);
            } else {
                out.extend(self.send_event(&app));
            }
        } else {
            let d = cfg.retry.delay(b.attempt, rng).max(100);
            b.attempt = b.attempt.saturating_add(1);
            out.push(Effect::timer(d, Timer::C(CTimer::Event(app))));
        }
        out
    }

    pub fn active(&self) -> usize {
        self.txs.len()
    }

    /// Rebuild from durable records: every forced commit decision is finished.
    pub fn recover(
        &mut self,
        records: &BTreeMap<Vec<u8>, Vec<u8>>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let mut out = Vec::new();
        let mut ends: Vec<(String, Finished)> = Vec::new();
        for (k, v) in records {
            let Ok(k) = std::str::from_utf8(k) else {
                continue;
            };
            if let Some(tx) = k.strip_prefix("c/") {
                match serde_json::from_slice::<CommitRecord>(v) {
                    Ok(r) => {
                        let parts = r
                            .parts
                            .into_iter()
                            .map(|(node, resource)| Part {
                                spec: ParticipantSpec {
                                    node,
                                    resource,
                                    operation: String::new(),
                                },
                                vote: Some(Vote::Yes),
                                reason: String::new(),
                                acked: false,
                                in_flight: false,
                                attempt: 0,
                            })
                            .collect();
                        self.txs.insert(
                            tx.to_string(),
                            CTx {
                                parts,
                                phase: Phase::Committing,
                                app: r.app.and_then(|a| Address::parse(&a).ok()),
                                deadline_ms: 0,
                                reason: String::new(),
                                event_acked: false,
                            },
                        );
                    }
                    Err(e) => out.push(log(
                        Level::Error,
                        format!("unreadable commit record of {tx}: {e}"),
                    )),
                }
            } else if let Some(tx) = k.strip_prefix("h/") {
                if let Ok(r) = serde_json::from_slice::<EndRecord>(v) {
                    let mut nodes = r.nodes;
                    nodes.sort();
                    nodes.dedup();
                    nodes.truncate(p2p_common::api::txcoord::MAX_PARTICIPANTS);
                    let (outcome, seq) = (r.outcome, r.seq);
                    let mut votes = r.votes;
                    votes.truncate(p2p_common::api::txcoord::MAX_PARTICIPANTS);
                    for v in &mut votes {
                        v.reason = clip(&v.reason);
                    }
                    ends.push((
                        tx.to_string(),
                        Finished {
                            outcome,
                            seq,
                            nodes,
                            votes,
                            reason: clip(&r.reason),
                        },
                    ));
                }
            } else if let Some(tx) = k.strip_prefix("e/") {
                match serde_json::from_slice::<EventRecord>(v)
                    .ok()
                    .and_then(|r| Some((Address::parse(&r.app).ok()?, r.body)))
                {
                    Some((app, body)) => self
                        .events
                        .entry(app)
                        .or_default()
                        .queue
                        .push_back((tx.to_string(), body.into_bytes())),
                    None => out.push(log(
                        Level::Error,
                        format!("unreadable event record of {tx}"),
                    )),
                }
            }
        }
        ends.sort_by_key(|e| e.1.seq);
        for (tx, f) in ends {
            self.next_seq = self.next_seq.max(f.seq + 1);
            self.remember(tx, f, cfg, &mut out);
        }
        let open: Vec<String> = self.txs.keys().cloned().collect();
        if !open.is_empty() {
            out.push(log(
                Level::Info,
                format!("recovered {} committed transactions to finish", open.len()),
            ));
        }
        for app in self.events.keys() {
            // Unanswered decision events go out again, spread a little too.
            let after = 500 + rng.gen_range(0..500);
            out.push(Effect::timer(after, Timer::C(CTimer::Event(app.clone()))));
        }
        for tx in open {
            let n = self.txs[&tx].parts.len();
            for i in 0..n {
                // Networking may not be up yet: the first attempt is spread a little.
                let after = 500 + rng.gen_range(0..500);
                out.push(Effect::timer(after, Timer::C(CTimer::Retry(tx.clone(), i))));
            }
        }
        out
    }

    fn remember(&mut self, tx: String, f: Finished, cfg: &Config, out: &mut Vec<Eff>) {
        self.order.push_back((f.seq, tx.clone()));
        self.history.insert(tx, f);
        while self.order.len() > cfg.history {
            if let Some((s, old)) = self.order.pop_front() {
                if self.history.get(&old).is_some_and(|f| f.seq == s) {
                    self.history.remove(&old);
                    out.push(Effect::Store(Batch::lazy().delete(hkey(&old))));
                }
            }
        }
    }

    /// A local app starts a transaction: answered at once with its id.
    pub fn start(
        &mut self,
        id: RequestId,
        from: &Address,
        participants: Vec<ParticipantSpec>,
        timeout_ms: Option<u64>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        if self.txs.len() >= cfg.max_coordinated {
            return vec![reply_err(
                id,
                ApiError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "{} transactions are open on this node (the most it coordinates); retry when some finish",
                        self.txs.len()
                    ),
                ),
            )];
        }
        let tx_id = format!("{}/{:016x}", self.our.node, rng.next_u64());
        let deadline_ms = timeout_ms.unwrap_or(p2p_common::api::txcoord::DEFAULT_TIMEOUT_MS);
        let parts = participants
            .into_iter()
            .map(|spec| Part {
                spec,
                vote: None,
                reason: String::new(),
                acked: false,
                in_flight: false,
                attempt: 0,
            })
            .collect::<Vec<_>>();
        let n = parts.len();
        self.txs.insert(
            tx_id.clone(),
            CTx {
                parts,
                phase: Phase::Preparing,
                app: Some(from.clone()),
                deadline_ms,
                reason: String::new(),
                event_acked: false,
            },
        );
        let mut out = vec![Effect::reply(
            id,
            encode_result(&Ok(Response::Started {
                tx_id: tx_id.clone(),
            })),
        )];
        out.push(Effect::timer(
            deadline_ms,
            Timer::C(CTimer::Deadline(tx_id.clone())),
        ));
        for i in 0..n {
            out.extend(self.send(&tx_id, i, cfg));
        }
        out.push(log(
            Level::Debug,
            format!("started {tx_id} with {n} participants"),
        ));
        out
    }

    /// Send what participant `i` needs now (Prepare or the decision), one at a time.
    fn send(&mut self, tx_id: &str, i: usize, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(tx_id) else {
            return vec![];
        };
        let nodes: Vec<NodeId> = {
            let mut v: Vec<NodeId> = tx.parts.iter().map(|p| p.spec.node.clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        let phase = tx.phase;
        let Some(p) = tx.parts.get_mut(i) else {
            return vec![];
        };
        if p.in_flight {
            return vec![];
        }
        let to = Address::ours(&p.spec.node, crate::NAME);
        let (body, ctx) = match phase {
            Phase::Preparing if p.vote.is_none() => (
                TxReq::Prepare {
                    tx_id: tx_id.to_string(),
                    resource: p.spec.resource.clone(),
                    operation: p.spec.operation.clone(),
                    participants: nodes,
                    deadline_ms: tx.deadline_ms,
                },
                CCtx::Prepare(tx_id.to_string(), i),
            ),
            Phase::Committing | Phase::Aborting if !p.acked => {
                let (id, resource) = (tx_id.to_string(), p.spec.resource.clone());
                let r = if phase == Phase::Committing {
                    TxReq::Commit {
                        tx_id: id,
                        resource,
                    }
                } else {
                    TxReq::Abort {
                        tx_id: id,
                        resource,
                    }
                };
                (r, CCtx::Decide(tx_id.to_string(), i))
            }
            _ => return vec![],
        };
        p.in_flight = true;
        vec![Effect::request(
            to,
            encode(&body),
            cfg.prepare_timeout_s,
            Ctx::C(ctx),
        )]
    }

    /// Decide: commit is forced before phase two; abort is not written at all.
    fn decide(&mut self, tx_id: &str, commit: bool, reason: String, cfg: &Config) -> Vec<Eff> {
        let reason = clip(&reason);
        let Some(tx) = self.txs.get_mut(tx_id) else {
            return vec![];
        };
        if tx.phase != Phase::Preparing {
            return vec![];
        }
        let mut out = vec![Effect::CancelTimer(Timer::C(CTimer::Deadline(
            tx_id.to_string(),
        )))];
        tx.reason = reason;
        let event = tx.app.clone().map(|app| {
            let ev = AppEvent::TxDecided {
                tx_id: tx_id.to_string(),
                outcome: if commit {
                    Outcome::Committed
                } else {
                    Outcome::Aborted
                },
                votes: votes(tx),
                reason: tx.reason.clone(),
            };
            let body = encode(&ev);
            let rec = encode(&EventRecord {
                app: app.to_string(),
                body: String::from_utf8(body.clone()).expect("JSON is UTF-8"),
            });
            (app, body, rec)
        });
        if commit {
            tx.phase = Phase::Committing;
            self.commits += 1;
            let rec = CommitRecord {
                v: 1,
                parts: tx
                    .parts
                    .iter()
                    .map(|p| (p.spec.node.clone(), p.spec.resource.clone()))
                    .collect(),
                app: tx.app.as_ref().map(|a| a.to_string()),
            };
            let b = if cfg.mutation_lazy_commit_record {
                Batch::lazy()
            } else {
                Batch::forced()
            };
            // The event record rides in the same forced batch: no extra forced write.
            let mut b = b.put(ckey(tx_id), encode(&rec));
            if let Some((_, _, r)) = &event {
                b = b.put(ekey(tx_id), r.clone());
            }
            out.push(Effect::Store(b));
        } else {
            tx.phase = Phase::Aborting;
            self.aborts += 1;
            if let Some((_, _, r)) = &event {
                out.push(Effect::Store(Batch::lazy().put(ekey(tx_id), r.clone())));
            }
        }
        let n = tx.parts.len();
        for p in tx.parts.iter_mut() {
            // Anything still in flight belongs to phase one; the decision goes out fresh.
            p.in_flight = false;
            p.attempt = 0;
        }
        if let Some((app, body, _)) = event {
            self.queue_event(app, tx_id, body, cfg, &mut out);
        }
        for i in 0..n {
            out.push(Effect::CancelTimer(Timer::C(CTimer::Retry(
                tx_id.to_string(),
                i,
            ))));
            out.extend(self.send(tx_id, i, cfg));
        }
        out.push(log(
            Level::Debug,
            format!(
                "{tx_id} decided {}",
                if commit { "commit" } else { "abort" }
            ),
        ));
        out
    }

    /// Every participant acknowledged (or, for an abort, ran out of attempts): end record,
    /// forget.
    fn finish_if_done(&mut self, tx_id: &str, cfg: &Config) -> Vec<Eff> {
        let Some(tx) = self.txs.get(tx_id) else {
            return vec![];
        };
        if !tx.parts.iter().all(|p| p.acked) {
            return vec![];
        }
        let outcome = if tx.phase == Phase::Committing {
            Outcome::Committed
        } else {
            Outcome::Aborted
        };
        let event_acked = tx.event_acked;
        let (ended, reason) = (votes(tx), tx.reason.clone());
        let mut nodes: Vec<NodeId> = tx.parts.iter().map(|p| p.spec.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        self.txs.remove(tx_id);
        let seq = self.next_seq;
        self.next_seq += 1;
        let end = EndRecord {
            outcome,
            seq,
            nodes,
            votes: ended,
            reason,
        };
        let mut b = Batch::lazy().put(hkey(tx_id), encode(&end));
        if outcome == Outcome::Committed {
            b = b.delete(ckey(tx_id));
        }
        if event_acked {
            b = b.delete(ekey(tx_id));
        }
        let mut out = vec![Effect::Store(b)];
        let f = Finished {
            outcome,
            seq,
            nodes: end.nodes,
            votes: end.votes,
            reason: end.reason,
        };
        self.remember(tx_id.to_string(), f, cfg, &mut out);
        out
    }

    fn retry_later(
        &mut self,
        tx_id: &str,
        i: usize,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        let Some(tx) = self.txs.get_mut(tx_id) else {
            return vec![];
        };
        let phase = tx.phase;
        let Some(p) = tx.parts.get_mut(i) else {
            return vec![];
        };
        p.in_flight = false;
        if phase == Phase::Aborting && p.attempt + 1 >= cfg.abort_attempts {
            // Abort is presumed: a participant that missed it learns it by asking.
            p.acked = true;
            return self.finish_if_done(tx_id, cfg);
        }
        let d = cfg.retry.delay(p.attempt, rng).max(100);
        p.attempt = p.attempt.saturating_add(1);
        vec![Effect::timer(
            d,
            Timer::C(CTimer::Retry(tx_id.to_string(), i)),
        )]
    }

    pub fn on_answer(
        &mut self,
        ctx: CCtx,
        answer: Result<ApiResult<Response>, String>,
        cfg: &Config,
        rng: &mut dyn RngCore,
    ) -> Vec<Eff> {
        match ctx {
            CCtx::Event(app, tx) => self.on_event_answer(app, tx, answer.map(|_| ()), cfg, rng),
            CCtx::Prepare(tx_id, i) => {
                let Some(tx) = self.txs.get_mut(&tx_id) else {
                    return vec![];
                };
                if tx.phase != Phase::Preparing {
                    return vec![];
                }
                let Some(p) = tx.parts.get_mut(i) else {
                    return vec![];
                };
                p.in_flight = false;
                match answer {
                    Ok(Ok(Response::Voted { vote, reason, .. })) => {
                        if p.vote.is_none() {
                            p.vote = Some(vote);
                            p.reason = clip(&reason);
                        }
                        if vote == Vote::No {
                            let why = format!(
                                "{} / {} voted no: {}",
                                p.spec.node, p.spec.resource, p.reason
                            );
                            return self.decide(&tx_id, false, why, cfg);
                        }
                        if tx.parts.iter().all(|p| p.vote == Some(Vote::Yes)) {
                            return self.decide(&tx_id, true, String::new(), cfg);
                        }
                        vec![]
                    }
                    Ok(Err(e))
                        if !matches!(
                            e.code,
                            ErrorCode::Overloaded | ErrorCode::Unavailable | ErrorCode::Internal
                        ) =>
                    {
                        // The error text comes from a remote node: bounded like a reason.
                        let why = clip(&format!(
                            "{} / {} refused: {e}",
                            p.spec.node, p.spec.resource
                        ));
                        p.vote = Some(Vote::No);
                        p.reason = why.clone();
                        self.decide(&tx_id, false, why, cfg)
                    }
                    // Voting, a transient error, no answer: ask again later.
                    _ => self.retry_later(&tx_id, i, cfg, rng),
                }
            }
            CCtx::Decide(tx_id, i) => {
                let Some(tx) = self.txs.get_mut(&tx_id) else {
                    return vec![];
                };
                let Some(p) = tx.parts.get_mut(i) else {
                    return vec![];
                };
                match answer {
                    Ok(Ok(Response::Ack { .. })) => {
                        p.in_flight = false;
                        p.acked = true;
                        self.finish_if_done(&tx_id, cfg)
                    }
                    _ => self.retry_later(&tx_id, i, cfg, rng),
                }
            }
        }
    }

    pub fn on_timer(&mut self, t: CTimer, cfg: &Config) -> Vec<Eff> {
        match t {
            CTimer::Event(app) => self.send_event(&app),
            CTimer::Retry(tx, i) => self.send(&tx, i, cfg),
            CTimer::Deadline(tx_id) => {
                let Some(tx) = self.txs.get(&tx_id) else {
                    return vec![];
                };
                if tx.phase != Phase::Preparing {
                    return vec![];
                }
                let missing: Vec<String> = tx
                    .parts
                    .iter()
                    .filter(|p| p.vote.is_none())
                    .map(|p| format!("{} / {}", p.spec.node, p.spec.resource))
                    .collect();
                let why = format!(
                    "no vote within {} ms from {}",
                    tx.deadline_ms,
                    missing.join(", ")
                );
                self.decide(&tx_id, false, why, cfg)
            }
        }
    }

    /// The starting app aborts before the decision; afterwards this answers the outcome.
    pub fn abort_by_app(
        &mut self,
        id: RequestId,
        from: &Address,
        tx_id: &str,
        cfg: &Config,
    ) -> Vec<Eff> {
        match self.txs.get(tx_id) {
            Some(tx) if tx.app.as_ref().is_some_and(|a| a != from) => vec![reply_err(
                id,
                ApiError::forbidden(format!(
                    "{tx_id} was started by {}; only that app may abort it",
                    tx.app.as_ref().map(|a| a.to_string()).unwrap_or_default()
                )),
            )],
            Some(_) => {
                let mut out = self.decide(tx_id, false, format!("aborted by {from}"), cfg);
                out.push(Effect::reply(id, encode_result(&self.status(tx_id))));
                out
            }
            None => vec![Effect::reply(id, encode_result(&self.status(tx_id)))],
        }
    }

    /// Status of a transaction this node coordinates (or coordinated, within the history).
    pub fn status(&self, tx_id: &str) -> ApiResult<Response> {
        if let Some(tx) = self.txs.get(tx_id) {
            return Ok(Response::Status(self.view(tx_id, tx)));
        }
        if let Some(f) = self.history.get(tx_id) {
            return Ok(Response::Status(TxStatus {
                tx_id: tx_id.to_string(),
                role: Role::Coordinator,
                phase: if f.outcome == Outcome::Committed {
                    Phase::Committed
                } else {
                    Phase::Aborted
                },
                votes: vec![],
                reason: String::new(),
            }));
        }
        Err(ApiError::not_found(format!(
            "no transaction {tx_id} here: it was aborted (this node coordinated it and has no \
             record: presumed abort), finished long ago, or never existed"
        )))
    }

    fn view(&self, tx_id: &str, tx: &CTx) -> TxStatus {
        TxStatus {
            tx_id: tx_id.to_string(),
            role: Role::Coordinator,
            phase: tx.phase,
            votes: votes(tx),
            reason: tx.reason.clone(),
        }
    }

    pub fn list(&self) -> Vec<TxStatus> {
        self.txs.iter().map(|(k, tx)| self.view(k, tx)).collect()
    }

    /// The finished transactions of the history (at most `Config::history`), each with its
    /// participants' votes as they ended.
    pub fn finished(&self) -> impl Iterator<Item = TxStatus> + '_ {
        self.history.iter().map(|(k, f)| TxStatus {
            tx_id: k.clone(),
            role: Role::Coordinator,
            phase: if f.outcome == Outcome::Committed {
                Phase::Committed
            } else {
                Phase::Aborted
            },
            votes: f.votes.clone(),
            reason: f.reason.clone(),
        })
    }

    /// A termination query: what we know, only to the transaction's participants (open or
    /// finished), and Aborted for what we have no record of (presumed abort).
    pub fn query(&self, from: &NodeId, tx_id: &str) -> ApiResult<Response> {
        let stranger = || {
            Err(ApiError::forbidden(format!(
                "{from} is not a participant of {tx_id}"
            )))
        };
        let outcome = match (self.txs.get(tx_id), self.history.get(tx_id)) {
            (Some(tx), _) if !tx.parts.iter().any(|p| &p.spec.node == from) => return stranger(),
            (Some(tx), _) => match tx.phase {
                Phase::Committing => Outcome::Committed,
                Phase::Aborting => Outcome::Aborted,
                _ => Outcome::Pending,
            },
            // An older end record keeps no nodes: it answers anyone, as before.
            (None, Some(f)) if !f.nodes.is_empty() && f.nodes.binary_search(from).is_err() => {
                return stranger()
            }
            (None, Some(f)) => f.outcome,
            (None, None) => Outcome::Aborted,
        };
        Ok(Response::Outcome {
            tx_id: tx_id.to_string(),
            outcome,
        })
    }

    /// The protocol state (not counters, attempts or deadlines), for the model checker.
    pub fn fingerprint(&self, out: &mut String) {
        use std::fmt::Write;
        for (k, tx) in &self.txs {
            let _ = write!(out, "C{k}:{:?}[", tx.phase);
            for p in &tx.parts {
                let _ = write!(out, "{:?}{}{},", p.vote, p.acked as u8, p.in_flight as u8);
            }
            out.push(']');
        }
        for (k, f) in &self.history {
            let _ = write!(out, "H{k}:{:?}", f.outcome);
        }
        for (app, b) in &self.events {
            let _ = write!(out, "E{app}:{}{}", b.queue.len(), b.in_flight as u8);
        }
    }

    /// The decision this coordinator took or presumes for `tx_id`.
    pub fn decision(&self, tx_id: &str) -> Outcome {
        match self.txs.get(tx_id).map(|t| t.phase) {
            Some(Phase::Committing) => Outcome::Committed,
            Some(Phase::Preparing) => Outcome::Pending,
            Some(_) => Outcome::Aborted,
            None => self
                .history
                .get(tx_id)
                .map(|f| f.outcome)
                .unwrap_or(Outcome::Aborted),
        }
    }
}

fn votes(tx: &CTx) -> Vec<VoteView> {
    tx.parts
        .iter()
        .map(|p| VoteView {
            node: p.spec.node.clone(),
            resource: p.spec.resource.clone(),
            vote: p.vote,
            reason: p.reason.clone(),
            acked: p.acked,
        })
        .collect()
}

/// A reason as stored and reported: at most `MAX_REASON` characters (it may quote a remote
/// node's text).
fn clip(s: &str) -> String {
    s.chars()
        .take(p2p_common::api::txcoord::MAX_REASON)
        .collect()
}
