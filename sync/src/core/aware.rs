//! The core's side of awareness ([`crate::awareness`]): the local `SetAwareness` and
//! `GetAwareness`, the protocol `Awareness` message, flushes, ticks, and what leaving,
//! unsubscribing and ACL changes clear.

use super::{Eff, Reply, SyncCore, Timer};
use crate::awareness::{cursor_at, Out, FLUSH_MS};
use p2p_common::api::sync::{
    AwarenessCursor, AwarenessEntry, AwarenessState, AwarenessView, DocId, PeerRequest, Response,
    SyncEvent, PROCESS,
};
use p2p_common::api::{encode, ApiError, ApiResult, ErrorCode};
use p2p_common::service::log;
use p2p_common::{Address, Effect, Level, Millis, NodeId};

impl SyncCore {
    /// `SetAwareness` from local app `from`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_awareness(
        &mut self,
        now: Millis,
        from: &Address,
        doc: &DocId,
        cursor: Option<AwarenessCursor>,
        state: Option<AwarenessState>,
        utf16: bool,
        out: &mut Vec<Eff>,
    ) -> ApiResult<Response> {
        let d = self.held(doc)?;
        let cursor = match cursor {
            None => None,
            Some(c) => Some((
                cursor_at(&d.loro, c.anchor, utf16).map_err(ApiError::bad_request)?,
                cursor_at(&d.loro, c.head, utf16).map_err(ApiError::bad_request)?,
            )),
        };
        let (me, wall) = (self.me.clone(), self.wall);
        self.aware
            .set_local(
                now,
                wall,
                doc,
                &me,
                &from.process.to_string(),
                cursor,
                state,
            )
            .map_err(|m| ApiError::new(ErrorCode::Overloaded, m))?;
        self.aware_changed(now, out);
        Ok(Response::AwarenessSet {})
    }

    pub(super) fn get_awareness(
        &self,
        now: Millis,
        doc: &DocId,
        utf16: bool,
    ) -> ApiResult<Response> {
        let d = self.held(doc)?;
        Ok(Response::Awareness(AwarenessView {
            doc: doc.clone(),
            peers: self.aware.view(now, doc, &d.loro, utf16),
        }))
    }

    fn held(&self, doc: &DocId) -> ApiResult<&crate::doc::Doc> {
        self.docs
            .get(doc)
            .ok_or_else(|| Self::not_found(doc))?
            .doc
            .as_ref()
            .ok_or_else(|| ApiError::bad_request(format!("{doc} is not joined yet; Join it first")))
    }

    /// A member's `Awareness` message: its own entries. A non-member gets the answer of a
    /// document that does not exist.
    pub(super) fn on_awareness(
        &mut self,
        from: &NodeId,
        doc: &DocId,
        entries: Vec<AwarenessEntry>,
        now: Millis,
        out: &mut Vec<Eff>,
    ) -> Reply {
        let Some((e, d)) = self
            .docs
            .get(doc)
            .and_then(|e| Some((e, e.doc.as_ref()?)))
            .filter(|(e, _)| super::is_member(&e.meta.acl, from))
        else {
            return Err(Self::not_found(doc));
        };
        let _ = e;
        if !self.aware_budgets.allow(from, 1, now) {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many awareness messages from your node; slow down",
            ));
        }
        match self.aware.receive(now, doc, &d.loro, from, entries) {
            Ok(_) => {
                self.aware_changed(now, out);
                Ok((Response::Accepted {}, None))
            }
            Err(why) => {
                self.aware_refused += 1;
                if self.aware_refused.is_power_of_two() {
                    out.push(log(
                        Level::Warn,
                        format!(
                            "{doc}: refused awareness from {from}: {why} ({} refused so far)",
                            self.aware_refused
                        ),
                    ));
                }
                Err(ApiError::bad_request(why))
            }
        }
    }

    /// After a change: flush at once unless a window is open; keep the tick armed.
    pub(super) fn aware_changed(&mut self, now: Millis, out: &mut Vec<Eff>) {
        if self.aware.flush_due() {
            self.aware_flush(now, out);
        }
        self.arm_aware_tick(now, out);
    }

    /// The flush timer (or a first change): send and tell what changed; the window stays
    /// open while something went out.
    pub(super) fn aware_flush(&mut self, now: Millis, out: &mut Vec<Eff>) {
        let o = self.aware.flush(now, &self.me);
        self.aware_out(o, out);
        if self.aware.window {
            out.push(Effect::timer(FLUSH_MS, Timer::AwarenessFlush));
        }
    }

    /// The tick timer: expiries and heartbeats.
    pub(super) fn aware_tick(&mut self, now: Millis, out: &mut Vec<Eff>) {
        let o = self.aware.tick(now, &self.me);
        self.aware_out(o, out);
        self.arm_aware_tick(now, out);
    }

    fn arm_aware_tick(&mut self, now: Millis, out: &mut Vec<Eff>) {
        if let Some(t) = self.aware.next_tick() {
            if self.aware.tick_at.is_none_or(|a| t < a) {
                self.aware.tick_at = Some(t);
                out.push(Effect::timer(
                    t.saturating_sub(now).max(1),
                    Timer::AwarenessTick,
                ));
            }
        }
    }

    /// Our entries of `doc`, cleared, to its holders before we stop holding it.
    pub(super) fn aware_leave(&mut self, doc: &DocId, now: Millis, out: &mut Vec<Eff>) {
        let (me, wall) = (self.me.clone(), self.wall);
        let entries = self.aware.leave(now, wall, &me, doc);
        if !entries.is_empty() {
            self.aware_send(doc, entries, out);
        }
    }

    /// A local app unsubscribed: its entries are cleared.
    pub(super) fn aware_unsubscribed(&mut self, app: &Address, now: Millis, out: &mut Vec<Eff>) {
        let (me, wall) = (self.me.clone(), self.wall);
        self.aware
            .clear_local(now, wall, &me, None, &app.process.to_string());
        self.aware_changed(now, out);
    }

    fn aware_send(&mut self, doc: &DocId, entries: Vec<AwarenessEntry>, out: &mut Vec<Eff>) {
        let Some(e) = self.docs.get(doc) else { return };
        let body = encode(&PeerRequest::Awareness {
            doc: doc.clone(),
            entries,
        });
        for h in super::holders(&e.meta.acl, &self.me) {
            self.stats.bytes_sent += body.len() as u64;
            out.push(Effect::notify(Address::ours(&h, PROCESS), body.clone()));
        }
    }

    fn aware_out(&mut self, o: Out, out: &mut Vec<Eff>) {
        for (doc, entries) in o.sends {
            self.aware_send(&doc, entries, out);
        }
        for (doc, node, process) in o.events {
            self.subs.emit(
                &doc,
                |seq| SyncEvent::AwarenessChanged {
                    doc: doc.clone(),
                    node: node.clone(),
                    process: process.clone(),
                    seq,
                },
                out,
            );
        }
    }
}
