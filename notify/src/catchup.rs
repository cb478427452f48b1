//! The subscriber's half of direct delivery: a publisher's `Deliver` says how far its stream
//! reaches (`last`); if we still hold less after taking it, and nothing more arrives within
//! [`ASK_AFTER_MS`], we ask again with `Resume { up_to }`, backing off (jitter, cap) up to
//! [`MAX_ASKS`] times.
//!
//! Why: the publisher sends one batch at a time and learns what we took only from our
//! answer. When that answer is lost, it waits for its timeout and its backoff (and, after a
//! few failures, its circuit breaker) and then sends the same batch again, which we already
//! hold; the acknowledgement it needs reaches it only through another full round trip. A
//! `Resume` carries that acknowledgement on its own, and resets the publisher's backoff.
//!
//! Only the publisher's own `last` counts (a relay's is not asked for); streams in a relay
//! tree repair through `IHave` and `Graft` instead. At most one entry and one timer per
//! remote stream.
//!
//! After a restart, the first word to each stream's publisher (`Resume`) or tree parent
//! (`Graft`) must get through too: sent before our networking is up, it would be lost,
//! and nothing else would ask. So it expects an answer and is sent again on a failure
//! (one in flight per stream, [`RESTART_BACKOFF`], at most [`MAX_RESTART_TRIES`] times).
//!
//! It owns its timers ([`Timer`]); the core wraps them.

use crate::streams::StreamKey;
use p2p_common::api::encode;
use p2p_common::api::notify::{Request, PROCESS};
use p2p_common::resilience::{Backoff, Jitter};
use p2p_common::{Address, Effect, Expect, Millis, NodeId, ProcessId};
use rand::RngCore;
use std::collections::BTreeMap;

/// How long after a batch that left us behind the publisher we ask for the rest.
pub const ASK_AFTER_MS: Millis = 3_000;
/// Asks per gap without progress before we wait for the publisher's next batch.
pub const MAX_ASKS: u32 = 8;
/// Timeout of a `Resume` (seconds): only a refusal matters (the publisher dropped us).
pub const RESUME_TIMEOUT_S: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Are we still behind what the publisher of `stream` said it has?
    Ask { stream: StreamKey },
    /// Send the restart's `Resume` (or, with `graft`, `Graft`) of `stream` again.
    Restart { stream: StreamKey, graft: bool },
}

/// Attempts at the first `Resume`/`Graft` of a stream after a restart.
pub const MAX_RESTART_TRIES: u32 = 8;
/// Waits between them (networking comes up some seconds after a start).
pub const RESTART_BACKOFF: Backoff = Backoff {
    base_ms: 2_000,
    max_ms: 30_000,
    factor: 2,
    jitter: Jitter::Equal,
};

/// It awaits no answers (`Resume` expects none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctx {
    /// A `Resume` of `stream` to its publisher (its refusal says it dropped us), or, with
    /// `graft`, a restart's `Graft` to our tree parent.
    Resume { stream: StreamKey, graft: bool },
}

type Eff = Effect<Ctx, Timer>;

#[derive(Debug, Clone)]
struct Lag {
    /// The publisher's `last`, as it last told us.
    told: u64,
    /// What we held when we last looked.
    seen: u64,
    asks: u32,
}

#[derive(Debug)]
pub struct Catchup {
    lags: BTreeMap<StreamKey, Lag>,
    backoff: Backoff,
    /// Streams whose restart `Resume` (false) or `Graft` (true) is not answered yet:
    /// attempts so far, and whether one is in flight.
    restarts: BTreeMap<(StreamKey, bool), (u32, bool)>,
}

impl Default for Catchup {
    fn default() -> Self {
        Catchup {
            lags: BTreeMap::new(),
            backoff: Backoff {
                base_ms: ASK_AFTER_MS,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
            restarts: BTreeMap::new(),
        }
    }
}

impl Catchup {
    /// A batch of `k` from its publisher was answered: it says its stream reaches `told`,
    /// we hold `ours`.
    pub fn heard(&mut self, k: &StreamKey, told: u64, ours: u64, out: &mut Vec<Eff>) {
        match self.lags.get_mut(k) {
            Some(l) => {
                l.told = l.told.max(told);
                if ours > l.seen {
                    l.seen = ours;
                    l.asks = 0;
                }
            }
            None if told > ours => {
                self.lags.insert(
                    k.clone(),
                    Lag {
                        told,
                        seen: ours,
                        asks: 0,
                    },
                );
                out.push(Effect::timer(
                    ASK_AFTER_MS,
                    Timer::Ask { stream: k.clone() },
                ));
            }
            None => {}
        }
    }

    /// Forget `k` (we no longer subscribe); its timer finds nothing.
    pub fn remove(&mut self, k: &StreamKey) {
        self.lags.remove(k);
        self.restarts.remove(&(k.clone(), false));
        self.restarts.remove(&(k.clone(), true));
    }

    /// Send the restart's first word on `stream`, `body` (a `Resume` or `Graft`) to `to`,
    /// unless one is in flight; it is sent again on a failure.
    pub fn restart(
        &mut self,
        k: &StreamKey,
        graft: bool,
        to: NodeId,
        body: Vec<u8>,
        out: &mut Vec<Eff>,
    ) {
        let e = self
            .restarts
            .entry((k.clone(), graft))
            .or_insert((0, false));
        if e.1 {
            return;
        }
        e.1 = true;
        out.push(Effect::Send {
            to: Address::new(to, ProcessId::ours(PROCESS)),
            body,
            blob: None,
            expect: Some(Expect {
                timeout_s: RESUME_TIMEOUT_S,
                ctx: Ctx::Resume {
                    stream: k.clone(),
                    graft,
                },
            }),
        });
    }

    /// Whether a restart's `Resume`/`Graft` of `k` is still to be answered.
    pub fn restarting(&self, k: &StreamKey) -> bool {
        self.restarts.keys().any(|(s, _)| s == k)
    }

    /// A `Resume`/`Graft` of `k` was answered (anything: the node heard us).
    pub fn answered(&mut self, k: &StreamKey, graft: bool) {
        self.restarts.remove(&(k.clone(), graft));
    }

    /// A `Resume`/`Graft` of `k` got no answer: a restart's is sent again after a backoff.
    pub fn failed(
        &mut self,
        k: &StreamKey,
        graft: bool,
        rng: &mut dyn RngCore,
        out: &mut Vec<Eff>,
    ) {
        let key = (k.clone(), graft);
        let Some(e) = self.restarts.get_mut(&key) else {
            return;
        };
        e.1 = false;
        e.0 += 1;
        if e.0 >= MAX_RESTART_TRIES {
            self.restarts.remove(&key);
            return;
        }
        let delay = RESTART_BACKOFF.delay(e.0 - 1, rng);
        out.push(Effect::timer(
            delay,
            Timer::Restart {
                stream: k.clone(),
                graft,
            },
        ));
    }

    /// Whether we are waiting to catch up with `k`'s publisher.
    pub fn behind(&self, k: &StreamKey) -> bool {
        self.lags.contains_key(k)
    }

    /// The timer of `stream`: we hold `ours` of it (None: we no longer do).
    pub fn on_timer(
        &mut self,
        t: Timer,
        ours: Option<u64>,
        rng: &mut dyn RngCore,
        out: &mut Vec<Eff>,
    ) {
        let Timer::Ask { stream } = t else {
            return;
        };
        let Some(ours) = ours else {
            self.lags.remove(&stream);
            return;
        };
        let Some(l) = self.lags.get_mut(&stream) else {
            return;
        };
        if ours >= l.told || l.asks >= MAX_ASKS {
            self.lags.remove(&stream);
            return;
        }
        if ours > l.seen {
            // Still coming in: look again later.
            l.seen = ours;
            l.asks = 0;
            out.push(Effect::timer(ASK_AFTER_MS, Timer::Ask { stream }));
            return;
        }
        l.asks += 1;
        out.push(Effect::Send {
            to: Address::new(stream.publisher.clone(), ProcessId::ours(PROCESS)),
            body: encode(&Request::Resume {
                topic: stream.topic.clone(),
                up_to: ours,
            }),
            blob: None,
            expect: Some(Expect {
                timeout_s: RESUME_TIMEOUT_S,
                ctx: Ctx::Resume {
                    stream: stream.clone(),
                    graft: false,
                },
            }),
        });
        let delay = self.backoff.delay(l.asks, rng);
        out.push(Effect::timer(delay, Timer::Ask { stream }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn resumes(out: &[Eff]) -> Vec<u64> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send { body, .. } => match serde_json::from_slice::<Request>(body).ok()? {
                    Request::Resume { up_to, .. } => Some(up_to),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn asks_only_while_behind_and_without_progress_and_at_most_max_asks_times() {
        let k = StreamKey::new(&"alice.os".parse().unwrap(), "news");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut c = Catchup::default();
        let mut out = Vec::new();
        // Caught up: nothing to do.
        c.heard(&k, 32, 32, &mut out);
        assert!(out.is_empty() && !c.behind(&k));
        // Behind: one timer; the batches that come meanwhile add none.
        c.heard(&k, 45, 32, &mut out);
        c.heard(&k, 45, 32, &mut out);
        assert_eq!(out.len(), 1);
        // Progress since: look again, no Resume.
        let t = || Timer::Ask { stream: k.clone() };
        let mut out = Vec::new();
        c.on_timer(t(), Some(40), &mut rng, &mut out);
        assert!(resumes(&out).is_empty());
        assert_eq!(out.len(), 1, "re-armed");
        // No progress: Resume with what we hold, up to MAX_ASKS times, then stop.
        let mut asked = Vec::new();
        for _ in 0..MAX_ASKS + 3 {
            let mut out = Vec::new();
            c.on_timer(t(), Some(40), &mut rng, &mut out);
            asked.extend(resumes(&out));
        }
        assert_eq!(asked, vec![40; MAX_ASKS as usize]);
        assert!(!c.behind(&k));
        // Caught up, or unsubscribed: the timer ends it.
        c.heard(&k, 50, 45, &mut Vec::new());
        let mut out = Vec::new();
        c.on_timer(t(), Some(50), &mut rng, &mut out);
        assert!(out.is_empty() && !c.behind(&k));
        c.heard(&k, 60, 50, &mut Vec::new());
        c.on_timer(t(), None, &mut rng, &mut out);
        assert!(out.is_empty() && !c.behind(&k));
    }
}
