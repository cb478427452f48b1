//! A small test-only core that exercises everything the simulator models: periodic timers,
//! requests with timeouts and contexts, replies, persistence, and per-request outcomes.
//!
//! Wire: `{"Echo": {"n": 7}}` answered `{"Ok": {"n": 7, "node": "bob.os"}}`;
//! `{"Bump": {}}` increments a counter kept in memory only; `{"Save": {}}` persists it.

use p2p_common::api::{decode_request, encode, encode_result, ApiResult};
use p2p_common::service::log;
use p2p_common::{Address, Effect, Input, Level, Millis, SendErrorKind, Service};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const NAME: &str = "echo";
/// Timeout of the core's own echo requests (seconds).
pub const ECHO_TIMEOUT_S: u64 = 10;

#[derive(Debug, Serialize, Deserialize)]
pub enum EchoRequest {
    Echo { n: u64 },
    Bump {},
    Save {},
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EchoReply {
    pub n: u64,
    pub node: String,
}

/// How one of our echo requests ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Failed(SendErrorKind),
}

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    counter: u64,
}

pub struct EchoCore {
    our: Address,
    peers: Vec<Address>,
    /// Milliseconds between our own echo requests; 0 = never send on our own.
    period_ms: Millis,
    rng: ChaCha8Rng,
    next_n: u64,
    /// Our requests awaiting an outcome: n -> sent at.
    pub pending: BTreeMap<u64, Millis>,
    /// Outcome(s) per request number; more than one would break at-most-once accounting.
    pub outcomes: BTreeMap<u64, Vec<Outcome>>,
    /// Answers whose number did not match the context we attached.
    pub mismatches: u64,
    /// Requests that got a second outcome (must stay 0: at most one outcome per request).
    pub extra_outcomes: u64,
    /// Echo requests received, in arrival order (duplicates included).
    pub received: Vec<u64>,
    /// Bumped in memory; lost on crash unless saved.
    pub counter: u64,
    /// What the last Start restored.
    pub restored: u64,
    /// The last `now` this core was handed.
    pub last_now: Millis,
}

impl EchoCore {
    pub fn new(our: Address, peers: Vec<Address>, period_ms: Millis) -> Self {
        let peers = peers.into_iter().filter(|p| p != &our).collect();
        EchoCore {
            our,
            peers,
            period_ms,
            rng: ChaCha8Rng::seed_from_u64(0),
            next_n: 0,
            pending: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            mismatches: 0,
            extra_outcomes: 0,
            received: Vec::new(),
            counter: 0,
            restored: 0,
            last_now: 0,
        }
    }

    fn finish(&mut self, context: &[u8], outcome: Outcome) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else {
            self.mismatches += 1;
            return;
        };
        let n = u64::from_le_bytes(bytes);
        self.pending.remove(&n);
        let o = self.outcomes.entry(n).or_default();
        if !o.is_empty() {
            self.extra_outcomes += 1;
        }
        o.push(outcome);
    }
}

impl Service for EchoCore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        self.last_now = now;
        match input {
            Input::Start { persisted, seed } => {
                self.rng = ChaCha8Rng::seed_from_u64(seed);
                let saved: Saved = persisted
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                self.counter = saved.counter;
                self.restored = saved.counter;
                let mut out = vec![log(
                    Level::Info,
                    format!("echo up, counter {}", saved.counter),
                )];
                if self.period_ms > 0 {
                    out.push(Effect::SetTimer {
                        after_ms: self.period_ms,
                        context: Vec::new(),
                    });
                }
                out
            }
            Input::Timer { .. } => {
                let mut out = vec![Effect::SetTimer {
                    after_ms: self.period_ms,
                    context: Vec::new(),
                }];
                if !self.peers.is_empty() {
                    let to = self.peers[self.rng.gen_range(0..self.peers.len())].clone();
                    let n = self.next_n;
                    self.next_n += 1;
                    self.pending.insert(n, now);
                    out.push(Effect::Send {
                        to,
                        body: encode(&EchoRequest::Echo { n }),
                        timeout_s: Some(ECHO_TIMEOUT_S),
                        context: n.to_le_bytes().to_vec(),
                    });
                }
                out
            }
            Input::Request {
                body,
                expects_response,
                ..
            } => {
                let mut persist = false;
                let node = self.our.node.to_string();
                let result: ApiResult<EchoReply> = decode_request::<EchoRequest>(&body, NAME, 4096)
                    .map(|r| {
                        let n = match r {
                            EchoRequest::Echo { n } => {
                                self.received.push(n);
                                n
                            }
                            EchoRequest::Bump {} => {
                                self.counter += 1;
                                self.counter
                            }
                            EchoRequest::Save {} => {
                                persist = true;
                                self.counter
                            }
                        };
                        EchoReply { n, node }
                    });
                let mut out = Vec::new();
                if persist {
                    out.push(Effect::Persist {
                        state: encode(&Saved {
                            counter: self.counter,
                        }),
                    });
                }
                if expects_response {
                    out.push(Effect::Reply {
                        body: encode_result(&result),
                    });
                }
                out
            }
            Input::Response { body, context, .. } => {
                let ok = matches!(serde_json::from_slice::<ApiResult<EchoReply>>(&body), Ok(Ok(r)) if context == r.n.to_le_bytes());
                if !ok {
                    self.mismatches += 1;
                }
                self.finish(&context, Outcome::Answered);
                vec![]
            }
            Input::SendFailed { kind, context, .. } => {
                self.finish(&context, Outcome::Failed(kind));
                vec![]
            }
        }
    }
}
