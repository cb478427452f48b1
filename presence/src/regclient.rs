//! The registry client: our registrations at bootstrap nodes, one sub-machine per bootstrap.
//!
//! - At most one registration in flight per bootstrap; a renewal or join that finds one in
//!   flight (or a retry pending) is folded into it.
//! - A failed attempt schedules one retry with full-jitter exponential backoff up to a cap,
//!   and then keeps retrying at the cap for as long as we want that bootstrap: a bootstrap
//!   that is down for a day costs on the order of a hundred attempts, and sees each client
//!   once when it returns.
//! - A failure is logged once per change of state (reachable → failing → reachable).
//! - Paging through a registry listing stops on a cursor that does not advance or after
//!   [`MAX_PAGES`] pages (a malicious bootstrap cannot make us page forever).
//!
//! It owns that state, its timers ([`RegTick`]: the renewal and one retry per bootstrap,
//! wrapped by the core's `Tick`) and its request contexts ([`RegCtx`], wrapped by the core's
//! `Ctx`), and sends its own requests. What a bootstrap answers (a [`Listing`]) the core
//! merges through admission, then asks [`RegClient::next_page`] for the page after it.

use crate::node::Node;
use p2p_common::api::presence::{Request, Response, Update, MAX_PAGE};
use p2p_common::api::{ApiResult, ErrorCode, PROTOCOL_VERSION};
use p2p_common::resilience::{Backoff, Jitter};
use p2p_common::service::log;
use p2p_common::{Effect, Level, Millis, NodeId, SendErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The retry cap: a bootstrap that is down is retried about every 15 minutes.
pub const DEFAULT_CAP_MS: Millis = 15 * 60_000;

/// Most registry pages fetched after one registration.
pub const MAX_PAGES: u32 = 20;

/// Timeout of registry requests (seconds).
const REGISTER_TIMEOUT_S: u64 = 10;

/// The registry client's timers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegTick {
    /// Renew our registrations (every third of the registry TTL).
    Renew,
    /// Retry the registration at `bootstrap` (one timer per bootstrap).
    Retry { bootstrap: NodeId },
}

/// The contexts of the registry client's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RegCtx {
    Register { bootstrap: NodeId },
    ListRegistry { bootstrap: NodeId },
    Deregister,
}

/// Nodes a bootstrap listed (its answer to our registration, or a page after it), for the
/// core to merge; `registered` when it is the answer to a registration.
pub struct Listing {
    pub bootstrap: NodeId,
    pub nodes: Vec<Update>,
    pub next_cursor: Option<NodeId>,
    pub registered: bool,
}

#[derive(Debug, Default, Clone)]
struct Boot {
    in_flight: bool,
    /// A retry timer is armed.
    retry_armed: bool,
    /// Failures in a row.
    failures: u32,
    /// The next attempt should ask for the node list.
    want_list: bool,
    /// The registration out (or answered last) asked for the node list: only then do we
    /// page through the listing (a bootstrap that offers a cursor to a renewal is ignored).
    listing: bool,
    /// Pages fetched since the last registration, and the last cursor seen.
    pages: u32,
    last_cursor: Option<NodeId>,
}

/// What the core should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a registration (asking for the list or not).
    Register { list: bool },
    /// Arm the retry timer for this bootstrap after `after_ms`.
    RetryIn { after_ms: Millis },
    /// Log a change of state (once).
    Log(String),
    /// Fetch the next page.
    Page { cursor: NodeId },
}

#[derive(Debug, Clone)]
pub struct RegClient {
    boots: BTreeMap<NodeId, Boot>,
    backoff: Backoff,
    /// Attempts sent (for tests and stats).
    pub attempts: u64,
    /// Registrations that failed or were refused (for `Stats`).
    pub failed: u64,
}

impl RegClient {
    /// Retries back off from 1 s up to `cap_ms`.
    pub fn new(cap_ms: Millis) -> Self {
        RegClient {
            boots: BTreeMap::new(),
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: cap_ms.max(1_000),
                factor: 2,
                jitter: Jitter::Full,
            },
            attempts: 0,
            failed: 0,
        }
    }

    /// Forget bootstraps we no longer want (but not an attempt still in flight or a retry
    /// still armed: their outcome must find their state, or a second attempt could start).
    pub fn retain(&mut self, wanted: &[NodeId]) {
        self.boots
            .retain(|b, s| wanted.contains(b) || s.in_flight || s.retry_armed);
    }

    /// The retry timer for `b` fired while we did not want `b` (left, or another list).
    pub fn on_retry_ignored(&mut self, b: &NodeId) {
        if let Some(s) = self.boots.get_mut(b) {
            s.retry_armed = false;
        }
    }

    /// We want to (re)register at `b` now. Sends unless an attempt is in flight or a retry is
    /// pending (then the wish is folded into that one).
    pub fn want(&mut self, b: &NodeId, list: bool) -> Option<Action> {
        let s = self.boots.entry(b.clone()).or_default();
        s.want_list |= list;
        if s.in_flight || s.retry_armed {
            return None;
        }
        s.in_flight = true;
        let list = std::mem::take(&mut s.want_list);
        s.listing = list;
        self.attempts += 1;
        Some(Action::Register { list })
    }

    /// The retry timer for `b` fired.
    pub fn on_retry(&mut self, b: &NodeId) -> Option<Action> {
        let s = self.boots.get_mut(b)?;
        s.retry_armed = false;
        s.want_list = true;
        self.want(b, true)
    }

    /// `b` answered our registration.
    pub fn on_success(&mut self, b: &NodeId) -> Vec<Action> {
        let Some(s) = self.boots.get_mut(b) else {
            return vec![];
        };
        s.in_flight = false;
        s.want_list = false;
        s.pages = 0;
        s.last_cursor = None;
        let was_failing = s.failures > 0;
        s.failures = 0;
        if was_failing {
            vec![Action::Log(format!("bootstrap {b} reachable again"))]
        } else {
            vec![]
        }
    }

    /// Our registration at `b` failed (no answer, or refused as overloaded).
    pub fn on_failure<R: RngCore + ?Sized>(
        &mut self,
        b: &NodeId,
        why: &str,
        rng: &mut R,
    ) -> Vec<Action> {
        let Some(s) = self.boots.get_mut(b) else {
            return vec![];
        };
        s.in_flight = false;
        s.failures = s.failures.saturating_add(1);
        s.want_list = true;
        let mut out = Vec::new();
        if s.failures == 1 {
            out.push(Action::Log(format!(
                "bootstrap {b} failing ({why}); retrying with backoff"
            )));
        }
        if !s.retry_armed {
            s.retry_armed = true;
            let attempt = s.failures - 1;
            let cap = self.backoff.max_ms;
            let after_ms = if self.backoff.ceiling(attempt) >= cap {
                // At the cap: retry every cap, jittered by 10% so clients do not align.
                cap - cap / 10 + rng.next_u64() % (cap / 10).max(1)
            } else {
                self.backoff.delay(attempt, rng).max(200)
            };
            out.push(Action::RetryIn { after_ms });
        }
        out
    }

    /// A registry page from `b` pointed to `next`; whether to fetch it.
    pub fn on_page(&mut self, b: &NodeId, next: Option<NodeId>) -> Option<Action> {
        let s = self.boots.get_mut(b)?;
        let next = next?;
        if !s.listing {
            return None;
        }
        if s.last_cursor.as_ref().is_some_and(|c| &next <= c) {
            return Some(Action::Log(format!(
                "bootstrap {b} sent a cursor that does not advance; stopped paging"
            )));
        }
        if s.pages >= MAX_PAGES {
            return Some(Action::Log(format!(
                "bootstrap {b}: stopped paging after {MAX_PAGES} pages"
            )));
        }
        s.pages += 1;
        s.last_cursor = Some(next.clone());
        Some(Action::Page { cursor: next })
    }

    // ----- the client's messages, answers and timers -----

    /// The renewal timer, armed at start and re-armed when it fires.
    pub fn renew_timer<C, T: From<RegTick>>(node: &Node) -> Effect<C, T> {
        Effect::timer(
            (node.cfg.registry_ttl_ms / 3).max(1_000),
            RegTick::Renew.into(),
        )
    }

    /// Register at every bootstrap of `node` (`list` asks for other nodes back: joining,
    /// not renewing).
    pub fn register_all<C: From<RegCtx>, T: From<RegTick>>(
        &mut self,
        node: &Node,
        list: bool,
        out: &mut Vec<Effect<C, T>>,
    ) {
        for b in &node.bootstrap {
            if let Some(a) = self.want(b, list) {
                self.act(node, b, vec![a], out);
            }
        }
    }

    /// `Join`: forget the bootstraps no longer listed, register at the listed ones.
    pub fn join<C: From<RegCtx>, T: From<RegTick>>(
        &mut self,
        node: &Node,
        out: &mut Vec<Effect<C, T>>,
    ) {
        self.retain(&node.bootstrap);
        self.register_all(node, true, out);
    }

    /// `Leave`: deregister from every bootstrap.
    pub fn leave<C: From<RegCtx>, T>(node: &Node, out: &mut Vec<Effect<C, T>>) {
        for b in &node.bootstrap {
            let ctx = RegCtx::Deregister.into();
            out.push(node.send(b, &Request::Deregister {}, Some((REGISTER_TIMEOUT_S, ctx))));
        }
    }

    /// Carry out what the per-bootstrap state asks.
    fn act<C: From<RegCtx>, T: From<RegTick>>(
        &mut self,
        node: &Node,
        b: &NodeId,
        actions: Vec<Action>,
        out: &mut Vec<Effect<C, T>>,
    ) {
        for a in actions {
            match a {
                Action::Log(m) => out.push(log(Level::Warn, m)),
                Action::RetryIn { after_ms } => out.push(Effect::timer(
                    after_ms,
                    RegTick::Retry {
                        bootstrap: b.clone(),
                    }
                    .into(),
                )),
                Action::Page { cursor } => {
                    let req = Request::ListRegistry {
                        cursor: Some(cursor),
                        limit: Some(MAX_PAGE),
                    };
                    let ctx = RegCtx::ListRegistry {
                        bootstrap: b.clone(),
                    }
                    .into();
                    out.push(node.send(b, &req, Some((REGISTER_TIMEOUT_S, ctx))));
                }
                Action::Register { list } => {
                    let req = Request::RegisterNode {
                        info: node.info.clone(),
                        incarnation: node.incarnation,
                        protocol_version: PROTOCOL_VERSION,
                        list,
                    };
                    let ctx = RegCtx::Register {
                        bootstrap: b.clone(),
                    }
                    .into();
                    out.push(node.send(b, &req, Some((REGISTER_TIMEOUT_S, ctx))));
                }
            }
        }
    }

    /// A bootstrap answered; the nodes it listed, if any, for the core to merge (then
    /// [`Self::next_page`]).
    pub fn on_response<C: From<RegCtx>, T: From<RegTick>, R: RngCore + ?Sized>(
        &mut self,
        node: &Node,
        ctx: RegCtx,
        resp: ApiResult<Response>,
        rng: &mut R,
        out: &mut Vec<Effect<C, T>>,
    ) -> Option<Listing> {
        match ctx {
            RegCtx::Register { bootstrap } => match resp {
                Ok(Response::Registered {
                    nodes, next_cursor, ..
                }) => {
                    let acts = self.on_success(&bootstrap);
                    self.act(node, &bootstrap, acts, out);
                    Some(Listing {
                        bootstrap,
                        nodes,
                        next_cursor,
                        registered: true,
                    })
                }
                Err(e) if e.code == ErrorCode::Overloaded => {
                    self.failed += 1;
                    let acts = self.on_failure(&bootstrap, "overloaded", rng);
                    self.act(node, &bootstrap, acts, out);
                    None
                }
                other => {
                    // An answer, so the bootstrap is up; it did not take us.
                    let acts = self.on_success(&bootstrap);
                    self.act(node, &bootstrap, acts, out);
                    self.failed += 1;
                    out.push(log(
                        Level::Warn,
                        format!("bootstrap {bootstrap} did not register us: {other:?}"),
                    ));
                    None
                }
            },
            RegCtx::ListRegistry { bootstrap } => match resp {
                Ok(Response::Registry { nodes, next_cursor }) => Some(Listing {
                    bootstrap,
                    nodes,
                    next_cursor,
                    registered: false,
                }),
                _ => None,
            },
            RegCtx::Deregister => None,
        }
    }

    /// The page after a listing, if we want it (the paging guard: see [`Self::on_page`]).
    pub fn next_page<C: From<RegCtx>, T: From<RegTick>>(
        &mut self,
        node: &Node,
        b: &NodeId,
        next: Option<NodeId>,
        out: &mut Vec<Effect<C, T>>,
    ) {
        if let Some(a) = self.on_page(b, next) {
            self.act(node, b, vec![a], out);
        }
    }

    /// A request of ours to a bootstrap failed.
    pub fn on_failed<C: From<RegCtx>, T: From<RegTick>, R: RngCore + ?Sized>(
        &mut self,
        node: &Node,
        ctx: RegCtx,
        kind: SendErrorKind,
        rng: &mut R,
        out: &mut Vec<Effect<C, T>>,
    ) {
        if let RegCtx::Register { bootstrap } = ctx {
            self.failed += 1;
            let acts = self.on_failure(&bootstrap, &format!("{kind:?}"), rng);
            self.act(node, &bootstrap, acts, out);
        }
    }

    /// A timer of ours fired. `live`: members we believe alive (a renewal asks for the node
    /// list again only when we know nobody alive).
    pub fn on_tick<C: From<RegCtx>, T: From<RegTick>>(
        &mut self,
        node: &Node,
        t: RegTick,
        live: usize,
        out: &mut Vec<Effect<C, T>>,
    ) {
        let wanted = node.joined && !node.left;
        match t {
            RegTick::Renew => {
                out.push(Self::renew_timer(node));
                if wanted {
                    self.register_all(node, live == 0, out);
                }
            }
            RegTick::Retry { bootstrap } => {
                if wanted && node.bootstrap.contains(&bootstrap) {
                    if let Some(a) = self.on_retry(&bootstrap) {
                        self.act(node, &bootstrap, vec![a], out);
                    }
                } else {
                    // Not wanted now (left, or another bootstrap list): a later Join starts
                    // afresh instead of waiting for a retry that will never fire.
                    self.on_retry_ignored(&bootstrap);
                }
            }
        }
    }

    /// Failures in a row at `b`.
    pub fn failures(&self, b: &NodeId) -> u32 {
        self.boots.get(b).map_or(0, |s| s.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn b() -> NodeId {
        NodeId::parse("boot.os").unwrap()
    }

    #[test]
    fn one_attempt_in_flight_and_renewals_fold_into_it() {
        let mut c = RegClient::new(100_000);
        assert_eq!(c.want(&b(), true), Some(Action::Register { list: true }));
        assert_eq!(c.want(&b(), false), None);
        assert_eq!(c.want(&b(), true), None);
        assert_eq!(c.attempts, 1);
        c.on_success(&b());
        assert_eq!(c.want(&b(), false), Some(Action::Register { list: false }));
    }

    #[test]
    fn a_bootstrap_down_for_a_day_costs_about_one_attempt_per_cap_and_logs_once() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cap = DEFAULT_CAP_MS;
        let mut c = RegClient::new(cap);
        let mut now: Millis = 0;
        let mut logs = 0;
        let mut next_renew = 0;
        let mut retry_at: Option<Millis> = None;
        let day = 24 * 3_600_000;
        c.want(&b(), true);
        let mut pending_fail = Some(10_000); // each attempt times out after 10 s
        while now < day {
            // Earliest of: attempt outcome, retry timer, renewal tick (every 100 s).
            let t = [pending_fail, retry_at, Some(next_renew)]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            now = t;
            if pending_fail == Some(t) {
                pending_fail = None;
                for a in c.on_failure(&b(), "Offline", &mut rng) {
                    match a {
                        Action::Log(_) => logs += 1,
                        Action::RetryIn { after_ms } => retry_at = Some(now + after_ms),
                        _ => {}
                    }
                }
            } else if retry_at == Some(t) {
                retry_at = None;
                if c.on_retry(&b()).is_some() {
                    assert!(pending_fail.is_none(), "two attempts in flight");
                    pending_fail = Some(now + 10_000);
                }
            } else {
                next_renew = now + 100_000;
                if c.want(&b(), false).is_some() {
                    assert!(pending_fail.is_none(), "two attempts in flight");
                    pending_fail = Some(now + 10_000);
                }
            }
        }
        assert_eq!(logs, 1, "one line when it started failing");
        // About one attempt per cap (plus the fast first few): on the order of a hundred in
        // a day, not thousands.
        assert!(
            c.attempts <= day / (cap * 9 / 10) + 20,
            "{} attempts",
            c.attempts
        );
        assert!(
            c.attempts >= day / (cap + 10_000),
            "keeps trying: {}",
            c.attempts
        );
        // The bootstrap comes back: the attempt in flight (or the next retry) succeeds, it
        // is logged once, and the next renewal is an ordinary one.
        if pending_fail.is_none() {
            assert!(c.on_retry(&b()).is_some());
        }
        assert_eq!(c.on_success(&b()).len(), 1);
        assert_eq!(c.failures(&b()), 0);
        assert_eq!(c.want(&b(), false), Some(Action::Register { list: false }));
    }

    #[test]
    fn an_ignored_retry_does_not_block_a_later_join_and_retain_keeps_what_is_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut c = RegClient::new(100_000);
        c.want(&b(), true);
        c.on_failure(&b(), "Offline", &mut rng);
        // The node leaves; the retry fires and is ignored; it joins again.
        c.on_retry_ignored(&b());
        assert_eq!(c.want(&b(), true), Some(Action::Register { list: true }));
        // Switching bootstrap lists keeps the attempt in flight: no second one.
        c.retain(&[]);
        assert_eq!(c.want(&b(), true), None);
    }

    #[test]
    fn a_cursor_offered_to_a_renewal_is_not_followed() {
        let mut c = RegClient::new(100_000);
        let n = |s: &str| NodeId::parse(s).unwrap();
        // A renewal asks for no list: whatever cursor the bootstrap sends, we do not page.
        assert_eq!(c.want(&b(), false), Some(Action::Register { list: false }));
        c.on_success(&b());
        assert_eq!(c.on_page(&b(), Some(n("m.os"))), None);
        // A join asks for the list: its listing is paged.
        assert_eq!(c.want(&b(), true), Some(Action::Register { list: true }));
        c.on_success(&b());
        assert!(matches!(
            c.on_page(&b(), Some(n("m.os"))),
            Some(Action::Page { .. })
        ));
    }

    #[test]
    fn paging_stops_on_a_cursor_that_does_not_advance_or_after_the_limit() {
        let mut c = RegClient::new(100_000);
        c.want(&b(), true);
        let n = |s: &str| NodeId::parse(s).unwrap();
        assert!(matches!(
            c.on_page(&b(), Some(n("m.os"))),
            Some(Action::Page { .. })
        ));
        assert!(matches!(
            c.on_page(&b(), Some(n("m.os"))),
            Some(Action::Log(_))
        ));
        assert!(matches!(
            c.on_page(&b(), Some(n("a.os"))),
            Some(Action::Log(_))
        ));
        let mut c = RegClient::new(100_000);
        c.want(&b(), true);
        let mut pages = 0;
        for i in 0..1_000 {
            match c.on_page(&b(), Some(n(&format!("n{i:05}.os")))) {
                Some(Action::Page { .. }) => pages += 1,
                _ => break,
            }
        }
        assert_eq!(pages, MAX_PAGES);
    }
}
