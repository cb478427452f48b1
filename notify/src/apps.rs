//! Local apps' subscriptions: each (app, stream) has its own cursor, the last sequence
//! number the app answered (durable, written before the next one goes out), so an app that
//! was down or slow receives what it missed when it is back, within the stream's
//! retention, and is told of any range that left it first. One message is in flight per
//! subscription, so the app receives a stream strictly in sequence order, each
//! notification once (a retry follows only a failed delivery). A failed delivery waits a
//! jittered, capped backoff; a `Subscribe` of an existing subscription tries at once.
//!
//! It owns its timers ([`Timer`]) and contexts ([`Ctx`]); the core wraps them.

use crate::streams::{Entry, StreamKey, Streams};
use p2p_common::api::encode;
use p2p_common::api::notify::{AppMessage, DeliveryStats, SeqRange, SubscriptionInfo};
use p2p_common::resilience::{Backoff, Jitter};
use p2p_common::service::log;
use p2p_common::{Address, Batch, Effect, Expect, Level, Millis, Records};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Timeout of a delivery to an app (seconds): long enough for an app busy with a blocking
/// call of its own (10 s by default) to answer, so a retry means it did not get it.
pub const APP_TIMEOUT_S: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Retry { app: Address, stream: StreamKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// A message to `app` covering up to `up_to`.
    Deliver {
        app: Address,
        stream: StreamKey,
        up_to: u64,
        lost: u64,
        /// When it went out (monotonic).
        sent_at: Millis,
        /// It is the stream's last message, `Revoked`: answered, the subscription ends.
        revoked: bool,
    },
}

type Eff = Effect<Ctx, Timer>;

#[derive(Debug, Clone)]
pub struct AppSub {
    pub cursor: u64,
    in_flight: bool,
    waiting: bool,
    attempt: u32,
    pub delivered: u64,
    pub failed: u64,
    pub lost: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorRecord {
    cursor: u64,
}

type Key = (Address, StreamKey);

fn key_bytes(app: &Address, s: &StreamKey) -> Vec<u8> {
    format!("a {app} {} {}", s.publisher, s.topic).into_bytes()
}

#[derive(Debug)]
pub struct Apps {
    pub subs: BTreeMap<Key, AppSub>,
    backoff: Backoff,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            subs: BTreeMap::new(),
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
        }
    }
}

impl Apps {
    pub fn get(&self, app: &Address, s: &StreamKey) -> Option<&AppSub> {
        self.subs.get(&(app.clone(), s.clone()))
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Subscribe `app` to `stream` after `cursor` (durable in `batch`).
    pub fn add(&mut self, app: &Address, stream: &StreamKey, cursor: u64, batch: &mut Batch) {
        self.subs.insert(
            (app.clone(), stream.clone()),
            AppSub {
                cursor,
                in_flight: false,
                waiting: false,
                attempt: 0,
                delivered: 0,
                failed: 0,
                lost: 0,
            },
        );
        batch.ops.push((
            key_bytes(app, stream),
            Some(serde_json::to_vec(&CursorRecord { cursor }).expect("serializes")),
        ));
    }

    pub fn remove(&mut self, app: &Address, stream: &StreamKey, batch: &mut Batch) -> bool {
        let had = self.subs.remove(&(app.clone(), stream.clone())).is_some();
        if had {
            batch.ops.push((key_bytes(app, stream), None));
        }
        had
    }

    /// Whether any app reads `stream`.
    pub fn readers(&self, stream: &StreamKey) -> bool {
        self.subs.keys().any(|(_, s)| s == stream)
    }

    /// The lowest cursor of `stream`'s readers.
    pub fn min_cursor(&self, stream: &StreamKey) -> Option<u64> {
        self.subs
            .iter()
            .filter(|((_, s), _)| s == stream)
            .map(|(_, a)| a.cursor)
            .min()
    }

    /// An existing subscription asked again: the app is there, try at once.
    pub fn kick(
        &mut self,
        app: &Address,
        stream: &StreamKey,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        if let Some(a) = self.subs.get_mut(&(app.clone(), stream.clone())) {
            a.attempt = 0;
            if a.waiting {
                a.waiting = false;
                out.push(Effect::CancelTimer(Timer::Retry {
                    app: app.clone(),
                    stream: stream.clone(),
                }));
            }
        }
        self.pump(app, stream, streams, now, out);
    }

    /// Deliver the next message of `stream` to every app reading it.
    pub fn pump_stream(
        &mut self,
        stream: &StreamKey,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let apps: Vec<Address> = self
            .subs
            .keys()
            .filter(|(_, s)| s == stream)
            .map(|(a, _)| a.clone())
            .collect();
        for a in apps {
            self.pump(&a, stream, streams, now, out);
        }
    }

    pub fn pump_all(&mut self, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let keys: Vec<Key> = self.subs.keys().cloned().collect();
        for (a, s) in keys {
            self.pump(&a, &s, streams, now, out);
        }
    }

    /// Send `app` the next message of `stream` after its cursor, if it is not busy.
    pub fn pump(
        &mut self,
        app: &Address,
        stream: &StreamKey,
        streams: &Streams,
        now: Millis,
        out: &mut Vec<Eff>,
    ) {
        let Some(a) = self.subs.get_mut(&(app.clone(), stream.clone())) else {
            return;
        };
        let Some(st) = streams.get(stream) else {
            return;
        };
        if a.in_flight || a.waiting {
            return;
        }
        if a.cursor >= st.last {
            // Everything received went out: a revoked stream's last word.
            if let Some(reason) = &st.revoked {
                a.in_flight = true;
                let msg = AppMessage::Revoked {
                    publisher: stream.publisher.clone(),
                    topic: stream.topic.clone(),
                    reason: reason.clone(),
                };
                out.push(Effect::Send {
                    to: app.clone(),
                    body: encode(&msg),
                    blob: None,
                    expect: Some(Expect {
                        timeout_s: APP_TIMEOUT_S,
                        ctx: Ctx::Deliver {
                            app: app.clone(),
                            stream: stream.clone(),
                            up_to: a.cursor,
                            lost: 0,
                            sent_at: now,
                            revoked: true,
                        },
                    }),
                });
            }
            return;
        }
        let next = a.cursor + 1;
        let lost_msg = |range: SeqRange| AppMessage::Lost {
            publisher: stream.publisher.clone(),
            topic: stream.topic.clone(),
            range,
        };
        let (msg, blob, up_to, lost) = if next < st.first {
            let r = SeqRange {
                from: next,
                to: st.first - 1,
            };
            (lost_msg(r), None, r.to, r.to - r.from + 1)
        } else {
            match st.entry_at(next) {
                Some((_, Entry::Note { note, payload, .. })) => (
                    AppMessage::HandleNotification(note.clone()),
                    Some(payload.clone()),
                    next,
                    0,
                ),
                Some((_, Entry::Lost { to, .. })) => {
                    let r = SeqRange {
                        from: next,
                        to: *to,
                    };
                    (lost_msg(r), None, r.to, r.to - r.from + 1)
                }
                // Cannot happen (first..=last is covered); wait for more.
                None => return,
            }
        };
        a.in_flight = true;
        out.push(Effect::Send {
            to: app.clone(),
            body: encode(&msg),
            blob,
            expect: Some(Expect {
                timeout_s: APP_TIMEOUT_S,
                ctx: Ctx::Deliver {
                    app: app.clone(),
                    stream: stream.clone(),
                    up_to,
                    lost,
                    sent_at: now,
                    revoked: false,
                },
            }),
        });
    }

    /// The app answered: advance its cursor (durable before the next message goes out).
    /// True if that was a `Revoked`: the subscription is gone (removed in `batch`).
    pub fn on_answered(
        &mut self,
        ctx: Ctx,
        streams: &Streams,
        now: Millis,
        batch: &mut Batch,
        out: &mut Vec<Eff>,
    ) -> bool {
        let Ctx::Deliver {
            app,
            stream,
            up_to,
            lost,
            revoked,
            ..
        } = ctx;
        if revoked {
            out.push(log(
                Level::Info,
                format!("{app} told its subscription to {stream} was revoked; removed"),
            ));
            return self.remove(&app, &stream, batch);
        }
        let Some(a) = self.subs.get_mut(&(app.clone(), stream.clone())) else {
            return false;
        };
        a.in_flight = false;
        a.attempt = 0;
        if up_to > a.cursor {
            a.cursor = up_to;
            if lost > 0 {
                a.lost += lost;
            } else {
                a.delivered += 1;
            }
            batch.ops.push((
                key_bytes(&app, &stream),
                Some(serde_json::to_vec(&CursorRecord { cursor: up_to }).expect("serializes")),
            ));
        }
        self.pump(&app, &stream, streams, now, out);
        false
    }

    /// A delivery failed: retried after a backoff. The kernel refuses a local message at
    /// once when the app is not running (or did not grant us messaging); a Timeout after
    /// [`APP_TIMEOUT_S`] means the app did not answer: it was stuck, or crashed with the
    /// message queued. Only an app that received it and took longer than that to answer
    /// sees it twice (with the same id).
    pub fn on_failed(&mut self, ctx: Ctx, rng: &mut dyn RngCore, out: &mut Vec<Eff>) {
        let Ctx::Deliver { app, stream, .. } = ctx;
        let Some(a) = self.subs.get_mut(&(app.clone(), stream.clone())) else {
            return;
        };
        a.in_flight = false;
        a.failed += 1;
        let delay = self.backoff.delay(a.attempt, rng).max(100);
        a.attempt = a.attempt.saturating_add(1);
        a.waiting = true;
        if a.attempt.is_power_of_two() {
            out.push(log(
                Level::Info,
                format!(
                    "{stream}: delivery to {app} refused {} times in a row (not running, or no grant); next try in {delay} ms",
                    a.attempt
                ),
            ));
        }
        out.push(Effect::timer(delay, Timer::Retry { app, stream }));
    }

    pub fn on_timer(&mut self, t: Timer, streams: &Streams, now: Millis, out: &mut Vec<Eff>) {
        let Timer::Retry { app, stream } = t;
        if let Some(a) = self.subs.get_mut(&(app.clone(), stream.clone())) {
            a.waiting = false;
        }
        self.pump(&app, &stream, streams, now, out);
    }

    pub fn list(&self, app: &Address, streams: &Streams) -> Vec<SubscriptionInfo> {
        self.subs
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|((_, s), sub)| SubscriptionInfo {
                publisher: s.publisher.clone(),
                topic: s.topic.clone(),
                cursor: sub.cursor,
                pending: streams
                    .get(s)
                    .map_or(0, |st| st.last.saturating_sub(sub.cursor)),
            })
            .collect()
    }

    pub fn stats(&self, streams: &Streams) -> Vec<DeliveryStats> {
        self.subs
            .iter()
            .map(|((a, s), sub)| DeliveryStats {
                app: a.to_string(),
                publisher: s.publisher.clone(),
                topic: s.topic.clone(),
                delivered: sub.delivered,
                failed: sub.failed,
                pending: streams
                    .get(s)
                    .map_or(0, |st| st.last.saturating_sub(sub.cursor)),
                dropped_by_retention: sub.lost,
            })
            .collect()
    }

    /// Rebuild from records (`a ...`); returns how many were unreadable.
    pub fn restore(&mut self, records: &Records) -> usize {
        let mut bad = 0;
        for (k, v) in records.range(b"a ".to_vec()..b"a!".to_vec()) {
            let parsed = std::str::from_utf8(&k[2..]).ok().and_then(|rest| {
                let mut it = rest.splitn(3, ' ');
                let app = Address::parse(it.next()?).ok()?;
                let p = p2p_common::NodeId::parse(it.next()?).ok()?;
                Some((app, StreamKey::new(&p, it.next()?)))
            });
            match (parsed, serde_json::from_slice::<CursorRecord>(v)) {
                (Some((app, s)), Ok(r)) => {
                    self.subs.insert(
                        (app, s),
                        AppSub {
                            cursor: r.cursor,
                            in_flight: false,
                            waiting: false,
                            attempt: 0,
                            delivered: 0,
                            failed: 0,
                            lost: 0,
                        },
                    );
                }
                _ => bad += 1,
            }
        }
        bad
    }
}
