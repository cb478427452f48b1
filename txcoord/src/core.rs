//! Pure core of `txcoord`: two-phase commit with presumed abort (Mohan, Lindsay, Obermarck).
//! A small composition of two sub-machines that own their state, timers and contexts:
//! [`Coordinator`] (transactions this node started) and [`Participant`] (this node's
//! resources in others' transactions, and the registry of local resource managers).
//! Design and state machines: docs/txcoord.md.

pub use crate::coordinator::{CCtx, CTimer, Coordinator};
pub use crate::participant::{PCtx, PTimer, Participant};
use p2p_common::api::txcoord::{
    coordinator_of, ListFilter, Request as TxReq, Response, Role, SignedOutcome, TxStatus,
    DEFAULT_PAGE, MAX_QUERY_BATCH,
};
use p2p_common::api::{decode_request, encode_result, try_decode_response, ApiError, ApiResult};
use p2p_common::resilience::backoff::{Backoff, Jitter};
use p2p_common::resilience::inbound::{BudgetConfig, SenderBudgets};
use p2p_common::service::{log, Effect, Input, Level, Now, RequestId, Service};
use p2p_common::{Address, Records};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Context of an awaited send: each sub-machine owns its variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    C(CCtx),
    P(PCtx),
}

/// Timers: each sub-machine owns its variant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    C(CTimer),
    P(PTimer),
}

pub type Eff = Effect<Ctx, Timer>;

/// Largest request body txcoord accepts (16 participants × 16 KiB operations and change).
pub const MAX_BODY: usize = 300 * 1024;

/// Settings (defaults suit Hyperware; tests and the model checker change some).
#[derive(Debug, Clone)]
pub struct Config {
    /// Timeout of Prepare, Commit, Abort and QueryOutcome (seconds).
    pub prepare_timeout_s: u64,
    /// Timeout of a message to a local resource manager (seconds).
    pub manager_timeout_s: u64,
    /// Backoff of every retry (Prepare, decision, query, delivery to a manager).
    pub retry: Backoff,
    /// A prepared participant without a decision starts asking after this long.
    pub query_after_ms: u64,
    /// Most transactions coordinated at once.
    pub max_coordinated: usize,
    /// Most participant entries, and most per coordinator node.
    pub max_participating: usize,
    pub max_per_coordinator: usize,
    /// Most prepared entries (voted yes, waiting for the decision) per coordinator node: what
    /// a coordinator that stops deciding, crashed, cut off or hostile, holds here for good.
    pub max_prepared_per_coordinator: usize,
    /// Finished transactions remembered for Status.
    pub history: usize,
    /// Attempts to deliver an abort before relying on presumed abort.
    pub abort_attempts: u32,
    /// Attempts to deliver the decision event to the app that started a transaction (with
    /// `retry`'s backoff: about 3 minutes for 10), and most events waiting at once.
    pub event_attempts: u32,
    pub max_events: usize,
    /// Remote messages per sender node: burst and refill per second.
    pub budget: BudgetConfig,
    /// Mutation switches (tests only): write the coordinator's commit decision, or the
    /// participant's prepared record, lazily instead of forced. The model checker must
    /// find the violation each one causes.
    pub mutation_lazy_commit_record: bool,
    pub mutation_lazy_prepared_record: bool,
    /// Mutations too: the participant's "committed" record, or its `Refused` record, written
    /// lazily; a manager vote that timed out no longer counted as a possible yes.
    pub mutation_lazy_committed_record: bool,
    pub mutation_lazy_refused_record: bool,
    pub mutation_vote_timeout_not_a_yes: bool,
    /// Mutations of the trust rule: a relayed decision taken whatever NetKeyVerify answers,
    /// or a peer's unsigned `Committed`/`Aborted` taken as if the coordinator had said it.
    pub mutation_verify_always_ok: bool,
    pub mutation_trust_unsigned_peer: bool,
    /// A relayed decision checked as a commit whatever outcome it claims (the signed
    /// message no longer names the outcome).
    pub mutation_verify_ignores_outcome: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prepare_timeout_s: 5,
            manager_timeout_s: 3,
            retry: Backoff {
                base_ms: 1_000,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
            query_after_ms: 10_000,
            max_coordinated: 1_000,
            max_participating: 10_000,
            max_per_coordinator: 1_000,
            max_prepared_per_coordinator: 200,
            history: 1_000,
            abort_attempts: 6,
            event_attempts: 10,
            max_events: 1_000,
            budget: BudgetConfig {
                per_second: 200,
                burst: 2_000,
                max_senders: 1_000,
            },
            mutation_lazy_commit_record: false,
            mutation_lazy_prepared_record: false,
            mutation_lazy_committed_record: false,
            mutation_lazy_refused_record: false,
            mutation_vote_timeout_not_a_yes: false,
            mutation_verify_always_ok: false,
            mutation_trust_unsigned_peer: false,
            mutation_verify_ignores_outcome: false,
        }
    }
}

pub fn reply_err(id: RequestId, e: ApiError) -> Eff {
    Effect::reply(id, encode_result::<Response>(&Err(e)))
}

#[derive(Clone)]
pub struct TxCoord {
    our: Address,
    pub cfg: Config,
    pub coord: Coordinator,
    pub part: Participant,
    rng: ChaCha8Rng,
    budgets: SenderBudgets,
}

pub fn new(our: Address) -> TxCoord {
    TxCoord::with_config(our, Config::default())
}

impl TxCoord {
    pub fn with_config(our: Address, cfg: Config) -> TxCoord {
        TxCoord {
            coord: Coordinator::new(our.clone()),
            part: Participant::new(our.clone()),
            budgets: SenderBudgets::new(cfg.budget.clone()),
            our,
            cfg,
            rng: ChaCha8Rng::seed_from_u64(0),
        }
    }

    /// The protocol state, without counters, retry attempts, deadlines or the random
    /// generator (the model checker's notion of "the same state").
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        self.coord.fingerprint(&mut s);
        s.push('|');
        self.part.fingerprint(&mut s);
        s
    }

    fn request(
        &mut self,
        now: Now,
        id: RequestId,
        from: Address,
        body: &[u8],
        timeout_s: Option<u64>,
    ) -> Vec<Eff> {
        let local = from.node == self.our.node;
        if !local && !self.budgets.allow(&from.node, 1, now.mono) {
            // Over budget: no work, no log line per message (the budget logs nothing).
            return match timeout_s {
                Some(_) => vec![reply_err(
                    id,
                    ApiError::new(
                        p2p_common::ErrorCode::Overloaded,
                        "too many txcoord messages from your node; retry later",
                    ),
                )],
                None => vec![],
            };
        }
        let req =
            match decode_request::<TxReq>(body, crate::NAME, MAX_BODY).and_then(TxReq::validated) {
                Ok(r) => r,
                Err(e) => {
                    let mut out = vec![log(Level::Debug, format!("bad request from {from}: {e}"))];
                    if timeout_s.is_some() {
                        out.push(reply_err(id, e));
                    }
                    return out;
                }
            };
        if !req.is_open() && !req.is_protocol() && !local {
            return vec![reply_err(
                id,
                ApiError::forbidden(format!(
                    "only apps on {} may use this txcoord operation",
                    self.our.node
                )),
            )];
        }
        if !req.is_open() && !req.is_protocol() && from.process == self.our.process {
            return vec![reply_err(
                id,
                ApiError::forbidden("txcoord does not call its own local API"),
            )];
        }
        let cfg = &self.cfg;
        let rng = &mut self.rng;
        let ok = |r: ApiResult<Response>| Effect::reply(id, encode_result(&r));
        match req {
            TxReq::Ping {} => vec![ok(Ok(Response::Pong(pong(&self.our))))],
            TxReq::Info {} => vec![ok(Ok(info(&self.our)))],
            TxReq::Start {
                participants,
                timeout_ms,
            } => self
                .coord
                .start(id, &from, participants, timeout_ms, cfg, rng),
            TxReq::AbortTx { tx_id } => {
                if p2p_common::api::txcoord::coordinator_of(&tx_id).as_ref() != Some(&self.our.node)
                {
                    return vec![reply_err(
                        id,
                        ApiError::bad_request(format!(
                            "{tx_id:?} is not a transaction this node coordinates; abort it on its coordinator"
                        )),
                    )];
                }
                self.coord.abort_by_app(id, &from, &tx_id, cfg)
            }
            TxReq::Status { tx_id } => {
                let r = match self.part.status(&tx_id) {
                    Some(s) if self.coord.status(&tx_id).is_err() => Ok(Response::Status(s)),
                    _ => self.coord.status(&tx_id),
                };
                vec![ok(r)]
            }
            TxReq::List(f) => vec![ok(Ok(self.list(&f)))],
            TxReq::RegisterManager {
                resource,
                coordinators,
            } => self.part.register(id, &from, resource, coordinators, now),
            TxReq::UnregisterManager { resource } => self.part.unregister(id, &from, resource),
            TxReq::Prepare {
                tx_id,
                resource,
                operation,
                participants,
                deadline_ms,
            } => self.part.on_prepare(
                id,
                &from,
                tx_id,
                resource,
                operation,
                participants,
                deadline_ms,
                cfg,
            ),
            TxReq::Commit {
                tx_id,
                resource,
                signature,
            } => self
                .part
                .on_decision(id, &from, tx_id, resource, true, signature, cfg),
            TxReq::Abort {
                tx_id,
                resource,
                signature,
            } => self
                .part
                .on_decision(id, &from, tx_id, resource, false, signature, cfg),
            TxReq::QueryOutcome { tx_id, more } => self.query(now, id, &from, tx_id, more),
        }
    }

    /// A termination query about `tx_id` and up to `MAX_QUERY_BATCH - 1` more (the rest of
    /// `more` is not answered): each answered by the coordinator side if we coordinate it,
    /// else by the participant side. An error about `tx_id` is the answer; a transaction of
    /// `more` we may not tell the asker about is left out.
    fn query(
        &mut self,
        now: Now,
        id: RequestId,
        from: &Address,
        tx_id: String,
        mut more: Vec<String>,
    ) -> Vec<Eff> {
        if coordinator_of(&tx_id).is_none() {
            return vec![reply_err(
                id,
                ApiError::bad_request(format!(
                    "{:?} is not a transaction id (<node>/<hex>)",
                    tx_id.chars().take(80).collect::<String>()
                )),
            )];
        }
        // Ids that are not transaction ids are dropped, never echoed.
        more.retain(|t| coordinator_of(t).is_some());
        more.truncate(MAX_QUERY_BATCH - 1);
        // Each transaction asked about costs like a message of its own.
        if !more.is_empty() && !self.budgets.allow(&from.node, more.len() as u32, now.mono) {
            return vec![reply_err(
                id,
                ApiError::new(
                    p2p_common::ErrorCode::Overloaded,
                    "too many txcoord messages from your node; retry later",
                ),
            )];
        }
        let mut out = Vec::new();
        let one = |this: &mut Self, tx: &str, out: &mut Vec<Eff>| {
            if coordinator_of(tx).as_ref() == Some(&this.our.node) {
                this.coord.query(&from.node, tx)
            } else {
                let (eff, r) = this.part.answer_query(&from.node, tx, &this.cfg);
                out.extend(eff);
                r
            }
        };
        let (outcome, signature) = match one(self, &tx_id, &mut out) {
            Ok(r) => r,
            Err(e) => {
                out.push(reply_err(id, e));
                return out;
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(tx_id.clone());
        let mut answers = Vec::new();
        for tx in more {
            if !seen.insert(tx.clone()) {
                continue;
            }
            if let Ok((outcome, signature)) = one(self, &tx, &mut out) {
                answers.push(SignedOutcome {
                    tx_id: tx,
                    outcome,
                    signature,
                });
            }
        }
        out.push(Effect::reply(
            id,
            encode_result(&Ok(Response::Outcome {
                tx_id,
                outcome,
                signature,
                more: answers,
            })),
        ));
        out
    }

    fn list(&self, f: &ListFilter) -> Response {
        // The cursor is "<tx_id> <role>" (the last entry of the previous page); a bare
        // tx_id (older pages) means after every entry of that transaction.
        let after = |t: &TxStatus| match f.cursor.as_deref().map(|c| c.split_once(' ')) {
            None => true,
            Some(None) => Some(t.tx_id.as_str()) > f.cursor.as_deref(),
            Some(Some((tx, role))) => (t.tx_id.as_str(), role_name(t.role)) > (tx, role),
        };
        let mut all = self.coord.list();
        if f.include_finished == Some(true) {
            all.extend(self.coord.finished());
        }
        all.extend(self.part.list());
        all.retain(|t| {
            f.phase.is_none_or(|p| p == t.phase) && f.role.is_none_or(|r| r == t.role) && after(t)
        });
        all.sort_by(|a, b| (&a.tx_id, role_name(a.role)).cmp(&(&b.tx_id, role_name(b.role))));
        let limit = f.limit.unwrap_or(DEFAULT_PAGE) as usize;
        let next_cursor = (all.len() > limit).then(|| {
            let last = &all[limit - 1];
            format!("{} {}", last.tx_id, role_name(last.role))
        });
        all.truncate(limit);
        Response::Transactions {
            transactions: all,
            next_cursor,
        }
    }

    fn answer(
        &mut self,
        now: Now,
        ctx: Ctx,
        answer: Result<Vec<u8>, p2p_common::SendErrorKind>,
        blob: Option<Vec<u8>>,
    ) -> Vec<Eff> {
        match ctx {
            // sign:sign:sys: the signature is in the blob.
            Ctx::C(CCtx::Sign(tx)) => {
                let a = answer.map(|b| (b, blob)).map_err(|k| format!("{k:?}"));
                self.coord.on_signed(tx, a, &self.cfg)
            }
            // The app has the event whatever it answered.
            Ctx::C(CCtx::Event(app, tx)) => {
                let a = answer.map(|_| ()).map_err(|k| format!("{k:?}"));
                self.coord
                    .on_event_answer(app, tx, a, &self.cfg, &mut self.rng)
            }
            Ctx::C(c) => {
                let a = match answer {
                    Ok(body) => try_decode_response::<Response>(&body).map_err(|e| e.to_string()),
                    Err(k) => Err(format!("{k:?}")),
                };
                self.coord.on_answer(c, a, &self.cfg, &mut self.rng)
            }
            Ctx::P(p) => self
                .part
                .on_answer(now, p, answer, &self.cfg, &mut self.rng),
        }
    }
}

fn pong(our: &Address) -> p2p_common::api::Pong {
    p2p_common::basic::pong(&our.node)
}

fn info(our: &Address) -> Response {
    Response::Info(p2p_common::basic::service_info(crate::NAME, &our.node))
}

impl Service for TxCoord {
    type Ctx = Ctx;
    type Timer = Timer;

    const WEB_API: bool = true;

    fn name(&self) -> &'static str {
        crate::NAME
    }

    fn handle(&mut self, now: Now, input: Input<Ctx, Timer>) -> Vec<Eff> {
        match input {
            Input::Start { records, seed, .. } => {
                self.rng = ChaCha8Rng::seed_from_u64(seed);
                self.recover(&records)
            }
            Input::Request {
                id,
                from,
                body,
                timeout_s,
                ..
            } => self.request(now, id, from, &body, timeout_s),
            Input::Response {
                body, blob, ctx, ..
            } => self.answer(now, ctx, Ok(body), blob),
            Input::SendFailed { kind, ctx, .. } => self.answer(now, ctx, Err(kind), None),
            Input::Timer(Timer::C(t)) => self.coord.on_timer(t, &self.cfg),
            Input::Timer(Timer::P(t)) => self.part.on_timer(t, now, &self.cfg),
            // The local API over HTTP, as the node's owner (p2p_common::web).
            Input::Http { id, request } => {
                match p2p_common::web::route(id, request, &self.our.node) {
                    Ok(req) => self.handle(now, req),
                    Err(reply) => vec![reply],
                }
            }
            Input::Read { .. }
            | Input::WsOpen { .. }
            | Input::WsMessage { .. }
            | Input::WsClose { .. } => {
                vec![]
            }
        }
    }
}

impl TxCoord {
    fn recover(&mut self, records: &Records) -> Vec<Eff> {
        let mut out = vec![log(
            Level::Info,
            format!(
                "txcoord started on {} ({} records)",
                self.our,
                records.len()
            ),
        )];
        out.extend(self.part.recover(records, &self.cfg, &mut self.rng));
        out.extend(self.coord.recover(records, &self.cfg, &mut self.rng));
        out
    }
}

/// A role's name in a List cursor (sorted as the page is).
fn role_name(r: Role) -> &'static str {
    match r {
        Role::Coordinator => "Coordinator",
        Role::Participant => "Participant",
    }
}
