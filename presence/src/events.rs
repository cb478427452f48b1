//! The events sub-machine: subscriptions of local apps, their queues and deliveries, the
//! node-wide event sequence, and what of it is on disk. It owns its state and its request
//! contexts ([`EventsCtx`], wrapped by the core's `Ctx`); the core tells it what changed
//! ([`Events::emit`]) and routes the local API's Subscribe / Unsubscribe and the outcomes of
//! its deliveries to it. It has no timers.

use crate::members::Member;
use p2p_common::api::presence::{EventKind, NodeInfo, PresenceEvent, Response, SubscriberMessage};
use p2p_common::api::{encode, encode_result, ApiError, ApiResult, ErrorCode};
use p2p_common::appreach::{Confirmations, HelloOutcome, Waiting};
use p2p_common::service::log;
use p2p_common::{
    Address, Batch, Effect, Level, Millis, NodeId, Records, RequestId, SendErrorKind,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Timeout of event deliveries to local subscribers (seconds).
const EVENT_TIMEOUT_S: u64 = 5;
/// Events in flight per subscriber.
const EVENT_WINDOW: u32 = 8;
/// Consecutive failed deliveries after which a subscription is dropped.
const EVENT_FAILURES: u32 = 3;
/// Most subscriptions kept; a Subscribe beyond is refused (`Overloaded`).
pub const MAX_SUBSCRIBERS: usize = 64;
/// Event numbers reserved on disk at a time: the reservation is written (forced) once per
/// this many events, and a restart continues above it, so no number is ever used twice.
const EVENT_SEQ_BLOCK: u64 = 1_024;
/// One record per subscription (`sub/<address>`), written forced before it is confirmed.
const SUBSCRIBER_PREFIX: &[u8] = b"sub/";
/// The event number reserved on disk (see [`EVENT_SEQ_BLOCK`]).
pub const KEY_EVENT_SEQ: &[u8] = b"evseq";

/// The contexts of the requests the events machine sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EventsCtx {
    /// An event delivery to a subscriber.
    Delivery { subscriber: Address },
    /// The first delivery to a subscribing app, before its Subscribe is answered.
    Welcome { token: u64 },
}

#[derive(Debug, Default)]
struct Subscriber {
    queue: VecDeque<PresenceEvent>,
    in_flight: u32,
    failures: u32,
}

pub struct Events {
    subscribers: BTreeMap<Address, Subscriber>,
    /// The number of the last membership event (one sequence for every subscriber, counted
    /// with or without subscribers, so a `ListNodes` answer can say which event it reflects).
    seq: u64,
    /// The highest event number reserved on disk: a restart continues above it.
    reserved: u64,
    /// Subscriptions waiting for their first delivery.
    welcomes: Confirmations<Address>,
    /// Events sent to subscribers, and dropped from full queues.
    pub sent: u64,
    pub dropped: u64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            subscribers: BTreeMap::new(),
            seq: 0,
            reserved: 0,
            welcomes: Confirmations::new(64),
            sent: 0,
            dropped: 0,
        }
    }
}

/// The membership changes one message brought, for its one log line (each change is
/// logged at Debug by [`Events::emit`]).
#[derive(Default)]
pub struct Changes {
    count: usize,
    first: String,
    by_kind: BTreeMap<String, usize>,
}

impl Changes {
    pub fn add(&mut self, kind: &EventKind, node: &NodeId, m: Option<&Member>) {
        if self.count == 0 {
            let inc = m.map_or(0, |m| m.incarnation);
            self.first = format!("{kind:?} {node} (incarnation {inc})");
        }
        self.count += 1;
        *self.by_kind.entry(format!("{kind:?}")).or_default() += 1;
    }

    pub fn line(&self, sender: Option<&NodeId>) -> Option<String> {
        match self.count {
            0 => None,
            1 => Some(self.first.clone()),
            n => {
                let who = sender.map_or("our failure detector".to_string(), |s| s.to_string());
                let kinds: Vec<String> = self
                    .by_kind
                    .iter()
                    .map(|(k, c)| format!("{c} {k}"))
                    .collect();
                Some(format!(
                    "{n} membership changes from {who} ({}), first {}",
                    kinds.join(", "),
                    self.first
                ))
            }
        }
    }
}

fn key(a: &Address) -> Vec<u8> {
    let mut key = SUBSCRIBER_PREFIX.to_vec();
    key.extend_from_slice(a.to_string().as_bytes());
    key
}

fn full() -> ApiError {
    ApiError::new(
        ErrorCode::Overloaded,
        format!("presence keeps at most {MAX_SUBSCRIBERS} subscriptions"),
    )
}

impl Events {
    /// The number of the last event.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// The reservation record, for the core's forced batch at start and on other writes.
    pub fn reservation(&self) -> (&'static [u8], Vec<u8>) {
        (KEY_EVENT_SEQ, self.reserved.to_le_bytes().to_vec())
    }

    /// After a restart: event numbers continue above the reservation, with a gap (a restored
    /// subscriber sees that it missed what happened while we were down, and resyncs), and
    /// the subscriptions come back.
    pub fn restore<C, T>(&mut self, records: &Records, out: &mut Vec<Effect<C, T>>) {
        if let Some(r) = records
            .get(KEY_EVENT_SEQ)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes)
        {
            self.seq = r.saturating_add(1);
        }
        for (k, _) in records.range(SUBSCRIBER_PREFIX.to_vec()..) {
            let Some(name) = k.strip_prefix(SUBSCRIBER_PREFIX) else {
                break;
            };
            if self.subscribers.len() >= MAX_SUBSCRIBERS {
                break;
            }
            match std::str::from_utf8(name).ok().map(Address::parse) {
                Some(Ok(a)) => {
                    self.subscribers.insert(a, Subscriber::default());
                }
                _ => out.push(log(
                    Level::Warn,
                    format!(
                        "unreadable subscription record {:?}",
                        String::from_utf8_lossy(k)
                    ),
                )),
            }
        }
    }

    /// Reserve the next block of numbers (the core writes [`Self::reservation`] forced).
    pub fn reserve(&mut self) {
        self.reserved = self.seq.saturating_add(EVENT_SEQ_BLOCK);
    }

    /// A membership change: number it, queue it for every subscriber (at most `cap` each,
    /// the oldest dropped: the gap in `seq` shows it) and send what the windows allow.
    #[allow(clippy::too_many_arguments)]
    pub fn emit<C: From<EventsCtx>, T>(
        &mut self,
        kind: EventKind,
        node: &NodeId,
        incarnation: u64,
        info: Option<NodeInfo>,
        at: Millis,
        cap: usize,
        out: &mut Vec<Effect<C, T>>,
    ) {
        // The core logs one line per message for the changes it brought (see `merge`).
        out.push(log(
            Level::Debug,
            format!("{kind:?} {node} (incarnation {incarnation})"),
        ));
        self.seq += 1;
        let seq = self.seq;
        if seq > self.reserved {
            // On disk before any event carries a number above it: once per block.
            self.reserved = seq + EVENT_SEQ_BLOCK;
            let (k, v) = self.reservation();
            out.push(Effect::Store(Batch::forced().put(k, v)));
        }
        let subs: Vec<Address> = self.subscribers.keys().cloned().collect();
        for a in subs {
            let s = self.subscribers.get_mut(&a).expect("listed");
            s.queue.push_back(PresenceEvent {
                kind: kind.clone(),
                node: node.clone(),
                incarnation,
                at,
                seq,
                info: info.clone(),
            });
            while s.queue.len() > cap {
                s.queue.pop_front();
                self.dropped += 1;
            }
            self.pump(&a, out);
        }
    }

    /// Send queued events to a subscriber, up to the window.
    fn pump<C: From<EventsCtx>, T>(&mut self, a: &Address, out: &mut Vec<Effect<C, T>>) {
        let Some(s) = self.subscribers.get_mut(a) else {
            return;
        };
        while s.in_flight < EVENT_WINDOW {
            let Some(ev) = s.queue.pop_front() else { break };
            s.in_flight += 1;
            self.sent += 1;
            out.push(Effect::request(
                a.clone(),
                encode(&SubscriberMessage::PresenceEvent(ev)),
                EVENT_TIMEOUT_S,
                EventsCtx::Delivery {
                    subscriber: a.clone(),
                }
                .into(),
            ));
        }
    }

    /// Subscribe `app`, which awaits the answer to request `id`: confirmed only once a
    /// first message (the welcome) reached it, so an app that did not grant us messaging is
    /// told so instead of silently getting nothing. `Ok(Some(send))`: the welcome to send,
    /// and the answer comes with its outcome; `Ok(None)`: subscribed already.
    pub fn subscribe<C: From<EventsCtx>, T>(
        &mut self,
        id: RequestId,
        app: &Address,
        me: &NodeId,
        now: Millis,
    ) -> ApiResult<Option<Effect<C, T>>> {
        if self.subscribers.contains_key(app) {
            return Ok(None);
        }
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(full());
        }
        if self.welcomes.waiting_for(app) {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "a Subscribe of this app is already being confirmed; retry in a few seconds",
            ));
        }
        let welcome = SubscriberMessage::Welcome {
            node: me.clone(),
            seq: self.seq,
        };
        self.welcomes
            .begin(
                app.clone(),
                id,
                app.clone(),
                encode(&welcome),
                now,
                |token| EventsCtx::Welcome { token }.into(),
            )
            .map(Some)
    }

    /// A Subscribe that awaits no answer (fire-and-forget): subscribed at once, no welcome.
    pub fn subscribe_now<C, T>(
        &mut self,
        app: &Address,
        out: &mut Vec<Effect<C, T>>,
    ) -> ApiResult<()> {
        if !self.subscribers.contains_key(app) {
            if self.subscribers.len() >= MAX_SUBSCRIBERS {
                return Err(full());
            }
            self.subscribers.insert(app.clone(), Subscriber::default());
            out.push(Effect::Store(Batch::forced().put(key(app), b"{}".to_vec())));
        }
        Ok(())
    }

    /// Unsubscribe `app` (also one whose welcome is still out); off disk before the answer.
    pub fn unsubscribe<C, T>(
        &mut self,
        app: &Address,
        out: &mut Vec<Effect<C, T>>,
    ) -> ApiResult<()> {
        let pending = self.welcomes.cancel(app);
        match self.subscribers.remove(app) {
            Some(_) => {
                out.push(Effect::Store(Batch::forced().delete(key(app))));
                Ok(())
            }
            None if pending => Ok(()),
            None => Err(ApiError::not_found(format!("{app} is not subscribed"))),
        }
    }

    /// Answer the held Subscribe of a welcome's outcome; the subscription is on disk first.
    fn confirm<C, T>(&mut self, w: Waiting<Address>, out: &mut Vec<Effect<C, T>>) {
        let answer: ApiResult<Response> = if w.cancelled {
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "unsubscribed before the subscription was confirmed",
            ))
        } else if self.subscribers.len() >= MAX_SUBSCRIBERS {
            Err(full())
        } else {
            self.subscribers.entry(w.app.clone()).or_default();
            out.push(Effect::Store(
                Batch::forced().put(key(&w.app), b"{}".to_vec()),
            ));
            out.push(log(Level::Info, format!("{} subscribed", w.app)));
            Ok(Response::Subscribed {})
        };
        out.push(Effect::reply(w.request, encode_result(&answer)));
    }

    /// An answer (any body) to one of our requests to an app.
    pub fn on_response<C: From<EventsCtx>, T>(
        &mut self,
        ctx: EventsCtx,
        out: &mut Vec<Effect<C, T>>,
    ) {
        match ctx {
            EventsCtx::Delivery { subscriber } => {
                if let Some(s) = self.subscribers.get_mut(&subscriber) {
                    s.in_flight = s.in_flight.saturating_sub(1);
                    s.failures = 0;
                }
                self.pump(&subscriber, out);
            }
            EventsCtx::Welcome { token } => {
                if let Some(w) = self.welcomes.confirmed(token) {
                    self.confirm(w, out);
                }
            }
        }
    }

    /// One of our requests to an app failed. Three failed deliveries in a row end the
    /// subscription: off disk, and a last `Dropped` message in case the app is back.
    pub fn on_failed<C: From<EventsCtx>, T>(
        &mut self,
        ctx: EventsCtx,
        kind: SendErrorKind,
        me: &NodeId,
        now: Millis,
        out: &mut Vec<Effect<C, T>>,
    ) {
        match ctx {
            EventsCtx::Welcome { token } => {
                match self.welcomes.failed(token, kind, now, crate::NAME) {
                    Some(HelloOutcome::Refused(w, e)) => {
                        out.push(log(Level::Warn, format!("subscribe refused: {e}")));
                        let err: ApiResult<Response> = Err(e);
                        out.push(Effect::reply(w.request, encode_result(&err)));
                    }
                    // Late: the app got it while blocked on its own Subscribe.
                    Some(HelloOutcome::Delivered(w)) => self.confirm(w, out),
                    None => {}
                }
            }
            EventsCtx::Delivery { subscriber } => {
                let drop_it = match self.subscribers.get_mut(&subscriber) {
                    Some(s) => {
                        s.in_flight = s.in_flight.saturating_sub(1);
                        s.failures += 1;
                        s.failures >= EVENT_FAILURES
                    }
                    None => false,
                };
                if !drop_it {
                    self.pump(&subscriber, out);
                    return;
                }
                self.subscribers.remove(&subscriber);
                out.push(log(
                    Level::Warn,
                    format!("dropping subscriber {subscriber}: {EVENT_FAILURES} deliveries failed"),
                ));
                out.push(Effect::Store(Batch::forced().delete(key(&subscriber))));
                let bye = SubscriberMessage::Dropped {
                    node: me.clone(),
                    seq: self.seq,
                    reason: format!(
                        "{EVENT_FAILURES} deliveries in a row failed; subscribe again and \
                         resync with ListNodes"
                    ),
                };
                out.push(Effect::Send {
                    to: subscriber,
                    body: encode(&bye),
                    blob: None,
                    expect: None,
                });
            }
        }
    }
}
