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
    /// All messages except timers by type: the request's tag (`Ping`), or `reply:Ok`/`reply:Err`.
    pub per_type: BTreeMap<String, Count>,
    pub remote: Count,
    pub local: Count,
    pub lost: u64,
    pub duplicated: u64,
    /// Replies that broke the reply rule: dropped by a driver (a core replied twice or
    /// outside a request) or by the kernel (nothing to answer). Must stay 0.
    pub reply_rule_violations: u64,
}

impl Stats {
    pub fn record_send(&mut self, from: &NodeId, to: &NodeId, body: &[u8], reply: bool) {
        let tag = tag_of(body);
        let key = if reply {
            format!("reply:{tag}")
        } else {
            tag.to_string()
        };
        self.per_type.entry(key).or_default().add(body.len());
        if from == to {
            self.local.add(body.len());
        } else {
            self.remote.add(body.len());
            self.per_link
                .entry(format!("{from} -> {to}"))
                .or_default()
                .add(body.len());
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
