//! A small test-only core that exercises everything the simulator models: periodic timers,
//! requests with timeouts and contexts, replies, persistence, and per-request outcomes.
//!
//! Wire: `{"Echo": {"n": 7}}` answered `{"Ok": {"n": 7, "node": "bob.os"}}`;
//! `{"Bump": {}}` increments a counter kept in memory only; `{"Save": {}}` persists it;
//! `{"Put": {"key": 1, "forced": true}}` stores the counter as keyed record `key`;
//! `{"Relay": {"node": "bob.os", "n": 7}}` asks bob's echo and answers with bob's answer
//! when it comes (replying later).

use p2p_common::api::{decode_request, encode, encode_result, ApiResult};
use p2p_common::service::log;
use p2p_common::{
    Address, Batch, Effect, Input, Level, Millis, NodeId, Now, RequestId, SendErrorKind, Service,
};
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
    Put { key: u64, forced: bool },
    Relay { node: String, n: u64 },
}

/// Context of the echo core's sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoCtx {
    /// One of our own periodic echoes.
    Own(u64),
    /// A relayed echo: answer `caller` when it comes back.
    Relay { caller: RequestId, n: u64 },
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
    pub last_now: Now,
    /// Keyed records handed over at the last start.
    pub records_at_start: usize,
    /// WebSocket channels open to this core.
    pub ws_channels: Vec<u32>,
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
            last_now: Now::default(),
            records_at_start: 0,
            ws_channels: Vec::new(),
        }
    }

    fn finish(&mut self, n: u64, outcome: Outcome) {
        self.pending.remove(&n);
        let o = self.outcomes.entry(n).or_default();
        if !o.is_empty() {
            self.extra_outcomes += 1;
        }
        o.push(outcome);
    }
}

impl Service for EchoCore {
    type Ctx = EchoCtx;
    type Timer = ();

    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, now: Now, input: Input<EchoCtx, ()>) -> Vec<Effect<EchoCtx, ()>> {
        self.last_now = now;
        match input {
            Input::Start {
                persisted,
                records,
                seed,
            } => {
                self.rng = ChaCha8Rng::seed_from_u64(seed);
                self.records_at_start = records.len();
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
                    out.push(Effect::timer(self.period_ms, ()));
                }
                out
            }
            Input::Timer(()) => {
                let mut out = vec![Effect::timer(self.period_ms, ())];
                if !self.peers.is_empty() {
                    let to = self.peers[self.rng.gen_range(0..self.peers.len())].clone();
                    let n = self.next_n;
                    self.next_n += 1;
                    self.pending.insert(n, now.mono);
                    out.push(Effect::request(
                        to,
                        encode(&EchoRequest::Echo { n }),
                        ECHO_TIMEOUT_S,
                        EchoCtx::Own(n),
                    ));
                }
                out
            }
            Input::Request {
                id,
                body,
                timeout_s,
                ..
            } => {
                let mut persist = false;
                let mut put = None;
                let mut relay = None;
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
                            EchoRequest::Put { key, forced } => {
                                put = Some((key, forced));
                                self.counter
                            }
                            EchoRequest::Relay { node, n } => {
                                relay = Some((node, n));
                                n
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
                if let Some((key, forced)) = put {
                    let b = if forced {
                        Batch::forced()
                    } else {
                        Batch::lazy()
                    };
                    out.push(Effect::Store(b.put(
                        key.to_be_bytes().to_vec(),
                        self.counter.to_le_bytes().to_vec(),
                    )));
                }
                if let Some((node, n)) = relay {
                    if let Ok(node) = NodeId::parse(&node) {
                        out.push(Effect::request(
                            Address::ours(&node, NAME),
                            encode(&EchoRequest::Echo { n }),
                            ECHO_TIMEOUT_S,
                            EchoCtx::Relay { caller: id, n },
                        ));
                        // Answered when bob's answer (or error) comes back.
                        return out;
                    }
                }
                if timeout_s.is_some() {
                    out.push(Effect::reply(id, encode_result(&result)));
                }
                out
            }
            Input::Response { body, ctx, .. } => match ctx {
                EchoCtx::Own(n) => {
                    let ok = matches!(serde_json::from_slice::<ApiResult<EchoReply>>(&body), Ok(Ok(r)) if r.n == n);
                    if !ok {
                        self.mismatches += 1;
                    }
                    self.finish(n, Outcome::Answered);
                    vec![]
                }
                EchoCtx::Relay { caller, .. } => vec![Effect::reply(caller, body)],
            },
            Input::SendFailed { kind, ctx, .. } => match ctx {
                EchoCtx::Own(n) => {
                    self.finish(n, Outcome::Failed(kind));
                    vec![]
                }
                EchoCtx::Relay { caller, .. } => {
                    let e: ApiResult<()> = Err(p2p_common::ApiError::new(
                        p2p_common::ErrorCode::Unavailable,
                        format!("relay failed: {kind:?}"),
                    ));
                    vec![Effect::reply(caller, encode_result(&e))]
                }
            },
            Input::Http { id, request } => {
                let body = serde_json::json!({
                    "method": request.method,
                    "path": request.path,
                    "body_len": request.body.len(),
                })
                .to_string()
                .into_bytes();
                let mut out = vec![Effect::HttpReply {
                    id,
                    status: 200,
                    headers: [("content-type".to_string(), "application/json".to_string())].into(),
                    body,
                }];
                for &channel in &self.ws_channels {
                    out.push(Effect::WsPush {
                        channel,
                        kind: p2p_common::service::WsKind::Text,
                        data: format!("{} {}", request.method, request.path).into_bytes(),
                    });
                }
                out
            }
            Input::WsOpen { channel, .. } => {
                self.ws_channels.push(channel);
                vec![]
            }
            Input::WsClose { channel } => {
                self.ws_channels.retain(|c| *c != channel);
                vec![]
            }
            _ => vec![],
        }
    }
}

/// A test-only core that sends large data in chunks with [`p2p_common::chunk`]:
/// `{"Send": {"to": "bob.os", "len": 30000000}}` starts a transfer of `len` pseudo-random
/// bytes (answered at once); `{"Whole": {"to": "bob.os", "len": N}}` sends them in one
/// message instead (which the network refuses above 10 MiB). Received transfers are kept in
/// `received` as (from, bytes).
pub mod blob {
    use p2p_common::api::{encode, encode_result, ApiResult};
    use p2p_common::chunk::{ChunkHeader, Outgoing, Reassembly, DEFAULT_CHUNK};
    use p2p_common::{Address, Effect, Input, NodeId, Now, Service};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    pub const NAME: &str = "blob";

    #[derive(Debug, Serialize, Deserialize)]
    pub enum BlobRequest {
        Send { to: String, len: usize },
        Whole { to: String, len: usize },
        Chunk(ChunkHeader),
    }

    /// The bytes a transfer of `len` carries.
    pub fn data(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[derive(Default)]
    pub struct BlobCore {
        our: Option<Address>,
        next: u64,
        outgoing: BTreeMap<u64, (NodeId, Outgoing)>,
        incoming: Option<Reassembly>,
        pub received: Vec<(NodeId, Vec<u8>)>,
        pub failed_sends: u64,
        pub whole_failed: u64,
    }

    impl BlobCore {
        pub fn new(our: Address) -> Self {
            BlobCore {
                our: Some(our),
                ..Default::default()
            }
        }
        fn pump(&mut self, transfer: u64) -> Vec<Effect<(u64, u32), ()>> {
            let Some((to, out)) = self.outgoing.get_mut(&transfer) else {
                return vec![];
            };
            let to = Address::ours(to, NAME);
            out.poll()
                .into_iter()
                .map(|(h, bytes)| Effect::Send {
                    to: to.clone(),
                    body: encode(&BlobRequest::Chunk(h)),
                    blob: Some(bytes),
                    expect: Some(p2p_common::Expect {
                        timeout_s: 60,
                        ctx: (transfer, h.index),
                    }),
                })
                .collect()
        }
    }

    impl Service for BlobCore {
        type Ctx = (u64, u32);
        type Timer = ();
        fn name(&self) -> &'static str {
            NAME
        }
        fn handle(
            &mut self,
            now: Now,
            input: Input<(u64, u32), ()>,
        ) -> Vec<Effect<(u64, u32), ()>> {
            let reasm = self
                .incoming
                .get_or_insert_with(|| Reassembly::new(64 << 20, 2, 600_000));
            match input {
                Input::Request {
                    id,
                    from,
                    body,
                    blob,
                    timeout_s,
                } => {
                    let ok: ApiResult<()> = Ok(());
                    match serde_json::from_slice::<BlobRequest>(&body) {
                        Ok(BlobRequest::Chunk(h)) => {
                            let r = reasm.accept(
                                &from.node,
                                h,
                                blob.as_deref().unwrap_or(&[]),
                                now.mono,
                            );
                            if let Ok(Some(d)) = &r {
                                self.received.push((from.node.clone(), d.clone()));
                            }
                            let res: ApiResult<()> = r
                                .map(|_| ())
                                .map_err(|e| p2p_common::ApiError::bad_request(e.to_string()));
                            timeout_s
                                .map(|_| Effect::reply(id, encode_result(&res)))
                                .into_iter()
                                .collect()
                        }
                        Ok(BlobRequest::Send { to, len }) => {
                            let to = NodeId::parse(&to).expect("node");
                            self.next += 1;
                            let t = self.next;
                            self.outgoing
                                .insert(t, (to, Outgoing::new(t, data(len), DEFAULT_CHUNK, 2, 5)));
                            let mut out = self.pump(t);
                            out.push(Effect::reply(id, encode_result(&ok)));
                            out
                        }
                        Ok(BlobRequest::Whole { to, len }) => {
                            let to = NodeId::parse(&to).expect("node");
                            let h = ChunkHeader {
                                transfer: 0,
                                index: 0,
                                count: 1,
                                chunk: len as u32,
                                total: len as u64,
                            };
                            vec![
                                Effect::Send {
                                    to: Address::ours(&to, NAME),
                                    body: encode(&BlobRequest::Chunk(h)),
                                    blob: Some(data(len)),
                                    expect: Some(p2p_common::Expect {
                                        timeout_s: 30,
                                        ctx: (0, 0),
                                    }),
                                },
                                Effect::reply(id, encode_result(&ok)),
                            ]
                        }
                        Err(e) => vec![Effect::reply(
                            id,
                            encode_result::<()>(&Err(p2p_common::ApiError::bad_request(
                                e.to_string(),
                            ))),
                        )],
                    }
                }
                Input::Response { ctx: (t, i), .. } => {
                    if let Some((_, o)) = self.outgoing.get_mut(&t) {
                        o.on_ack(i);
                        if o.done() {
                            self.outgoing.remove(&t);
                            return vec![];
                        }
                    }
                    self.pump(t)
                }
                Input::SendFailed { ctx: (t, i), .. } => {
                    if t == 0 {
                        self.whole_failed += 1;
                        return vec![];
                    }
                    self.failed_sends += 1;
                    if let Some((_, o)) = self.outgoing.get_mut(&t) {
                        o.on_failed(i);
                    }
                    self.pump(t)
                }
                _ => {
                    let _ = &self.our;
                    vec![]
                }
            }
        }
    }
}
