//! Message and byte counters per link and per message type.

use p2p_common::NodeId;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Count {
    pub msgs: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: usize) {
        self.msgs += 1;
        self.bytes += bytes as u64;
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Remote messages (requests and responses) by "from -> to".
    pub per_link: BTreeMap<String, Count>,
    /// The same by the sending process's name and link: "notify from -> to" (so one
    /// service's messages can be told from another's running on the same nodes).
    pub per_process_link: BTreeMap<String, Count>,
    /// All messages except timers by type: the request's tag (`Ping`), or `reply:Ok`/`reply:Err`.
    pub per_type: BTreeMap<String, Count>,
    pub remote: Count,
    pub local: Count,
    pub lost: u64,
    pub duplicated: u64,
    /// Replies that broke the reply rule: dropped by a driver (a core replied twice or
    /// outside a request) or by the kernel (nothing to answer). Must stay 0.
    pub reply_rule_violations: u64,
    /// Requests that got a second answer (must stay 0).
    pub double_answers: u64,
    /// Store calls carried out: forced (durable before the next effect) and unforced.
    pub forced_writes: u64,
    pub unforced_writes: u64,
    pub stored_bytes: u64,
    /// Messages the kernel refused for a missing messaging capability.
    pub capability_refusals: u64,
    /// Connections opened, recycled (30 min), culled (peer limit); messages over the size
    /// limit (each tore its connection down).
    pub connections_opened: u64,
    pub recycled: u64,
    pub culled: u64,
    pub oversized: u64,
}

impl Stats {
    /// `size`: body plus blob.
    #[allow(clippy::too_many_arguments)]
    pub fn record_send(
        &mut self,
        process: &str,
        from: &NodeId,
        to: &NodeId,
        body: &[u8],
        reply: bool,
        size: usize,
    ) {
        let tag = tag_of(body);
        let key = if reply {
            // An answer's variant: `{"Ok":{"Ack":...}}` -> `reply:Ack`; an error `reply:Err`.
            let inner = body.strip_prefix(b"{\"Ok\":".as_slice()).unwrap_or(body);
            format!("reply:{}", tag_of(inner))
        } else {
            tag.to_string()
        };
        self.per_type.entry(key).or_default().add(size);
        if from == to {
            self.local.add(size);
        } else {
            self.remote.add(size);
            self.per_link
                .entry(format!("{from} -> {to}"))
                .or_default()
                .add(size);
            self.per_process_link
                .entry(format!("{process} {from} -> {to}"))
                .or_default()
                .add(size);
        }
    }
}

/// The externally-tagged variant name of a JSON body (`{"Ping":...}` or `"Ping"` -> `Ping`).
pub fn tag_of(body: &[u8]) -> &str {
    let s = std::str::from_utf8(body).unwrap_or("");
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix("{\"").or_else(|| s.strip_prefix('"')) {
        if let Some(end) = rest.find('"') {
            return &rest[..end];
        }
    }
    "other"
}
