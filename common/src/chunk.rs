//! Sending data larger than one message: split into chunks, send a window of them, reassemble
//! with bounds. Hyperware tears a peer connection down on a message over ~10 MiB (platform
//! notes §6), so anything large crosses in [`DEFAULT_CHUNK`]-sized pieces, each in the blob
//! of its own request with a small JSON [`ChunkHeader`].
//!
//! [`Outgoing`] is the sender's sub-machine (which chunk next, which are in flight, retries
//! with a cap); [`Reassembly`] the receiver's (per sender and transfer, bounded in size,
//! count and idle time, tolerant of duplicates and reordering). Both are pure.

use crate::ids::NodeId;
use crate::service::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Chunk size: well under the 10 MiB message limit, with room for the header.
pub const DEFAULT_CHUNK: usize = 4 << 20;

/// What travels with each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// Sender-chosen id of the transfer.
    pub transfer: u64,
    pub index: u32,
    pub count: u32,
    /// Size of every chunk but the last.
    pub chunk: u32,
    /// Total bytes.
    pub total: u64,
}

impl ChunkHeader {
    /// Bytes chunk `index` must have.
    pub fn expected_len(&self) -> u64 {
        let start = u64::from(self.index) * u64::from(self.chunk);
        self.total.saturating_sub(start).min(u64::from(self.chunk))
    }
}

/// Chunks needed for `len` bytes (at least one, so empty data still arrives).
pub fn chunk_count(len: usize, chunk: usize) -> u32 {
    (len.div_ceil(chunk.max(1))).max(1) as u32
}

/// The sender's side of one transfer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    transfer: u64,
    data: Vec<u8>,
    chunk: usize,
    count: u32,
    window: u32,
    max_attempts: u32,
    /// Not yet sent, or to send again.
    queue: BTreeSet<u32>,
    in_flight: BTreeSet<u32>,
    acked: u32,
    attempts: BTreeMap<u32, u32>,
    failed: bool,
}

impl Outgoing {
    /// `window`: chunks in flight at once; `max_attempts`: sends of one chunk before giving up.
    pub fn new(transfer: u64, data: Vec<u8>, chunk: usize, window: u32, max_attempts: u32) -> Self {
        let chunk = chunk.max(1);
        let count = chunk_count(data.len(), chunk);
        Outgoing {
            transfer,
            data,
            chunk,
            count,
            window: window.max(1),
            max_attempts: max_attempts.max(1),
            queue: (0..count).collect(),
            in_flight: BTreeSet::new(),
            acked: 0,
            attempts: BTreeMap::new(),
            failed: false,
        }
    }

    pub fn transfer(&self) -> u64 {
        self.transfer
    }
    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn total(&self) -> u64 {
        self.data.len() as u64
    }
    /// Every chunk acknowledged.
    pub fn done(&self) -> bool {
        self.acked == self.count
    }
    /// A chunk failed `max_attempts` times.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn header(&self, index: u32) -> ChunkHeader {
        ChunkHeader {
            transfer: self.transfer,
            index,
            count: self.count,
            chunk: self.chunk as u32,
            total: self.data.len() as u64,
        }
    }

    /// The chunks to send now (up to the window), with their bytes.
    pub fn poll(&mut self) -> Vec<(ChunkHeader, Vec<u8>)> {
        let mut out = Vec::new();
        while !self.failed && (self.in_flight.len() as u32) < self.window {
            let Some(i) = self.queue.pop_first() else {
                break;
            };
            *self.attempts.entry(i).or_default() += 1;
            self.in_flight.insert(i);
            let start = i as usize * self.chunk;
            let end = (start + self.chunk).min(self.data.len());
            out.push((self.header(i), self.data[start..end].to_vec()));
        }
        out
    }

    /// The receiver has chunk `index`.
    pub fn on_ack(&mut self, index: u32) {
        if self.in_flight.remove(&index) {
            self.acked += 1;
        }
    }

    /// Sending chunk `index` failed; it goes back in the queue unless it used its attempts.
    pub fn on_failed(&mut self, index: u32) {
        if !self.in_flight.remove(&index) {
            return;
        }
        if self.attempts.get(&index).copied().unwrap_or(0) >= self.max_attempts {
            self.failed = true;
        } else {
            self.queue.insert(index);
        }
    }
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    TooLarge {
        total: u64,
        max: u64,
    },
    Malformed(&'static str),
    /// The sender has too many transfers open.
    TooManyTransfers,
    /// The header disagrees with earlier chunks of the same transfer.
    Inconsistent,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::TooLarge { total, max } => {
                write!(f, "transfer of {total} bytes is over the {max}-byte limit")
            }
            ChunkError::Malformed(m) => write!(f, "malformed chunk: {m}"),
            ChunkError::TooManyTransfers => write!(f, "too many transfers open from this node"),
            ChunkError::Inconsistent => write!(f, "chunk disagrees with its transfer"),
        }
    }
}

#[derive(Debug, Clone)]
struct Assembly {
    header: ChunkHeader,
    data: Vec<u8>,
    have: BTreeSet<u32>,
    touched: Millis,
}

/// The receiver's side: transfers being reassembled, bounded.
#[derive(Debug, Clone)]
pub struct Reassembly {
    max_total: u64,
    max_per_sender: usize,
    /// Transfers open from all senders together (bounds memory: `max_open × max_total`).
    max_open: usize,
    idle_ms: Millis,
    open: BTreeMap<(NodeId, u64), Assembly>,
    /// Recently completed transfers, so a late duplicate chunk is acknowledged, not reopened.
    done: BTreeMap<(NodeId, u64), Millis>,
}

impl Reassembly {
    /// `max_total`: largest transfer; `max_per_sender`: transfers open per node; `idle_ms`:
    /// a transfer with no chunk for this long is dropped. At most 8 × `max_per_sender`
    /// transfers are open in all.
    pub fn new(max_total: u64, max_per_sender: usize, idle_ms: Millis) -> Self {
        let max_per_sender = max_per_sender.max(1);
        Reassembly {
            max_total,
            max_per_sender,
            max_open: max_per_sender * 8,
            idle_ms,
            open: BTreeMap::new(),
            done: BTreeMap::new(),
        }
    }

    /// Bytes held for incomplete transfers.
    pub fn buffered(&self) -> u64 {
        self.open.values().map(|a| a.data.len() as u64).sum()
    }

    /// Transfers open.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Take one chunk; the whole data once its last chunk is in. Duplicates are accepted
    /// (and change nothing), so a retried chunk is acknowledged again.
    pub fn accept(
        &mut self,
        from: &NodeId,
        h: ChunkHeader,
        bytes: &[u8],
        now: Millis,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if h.total > self.max_total {
            return Err(ChunkError::TooLarge {
                total: h.total,
                max: self.max_total,
            });
        }
        if h.chunk == 0 || h.index >= h.count {
            return Err(ChunkError::Malformed(
                "index out of range or zero chunk size",
            ));
        }
        if u64::from(chunk_count(h.total as usize, h.chunk as usize)) != u64::from(h.count) {
            return Err(ChunkError::Malformed(
                "count does not match total and chunk size",
            ));
        }
        if bytes.len() as u64 != h.expected_len() {
            return Err(ChunkError::Malformed(
                "chunk length does not match its header",
            ));
        }
        let key = (from.clone(), h.transfer);
        if self.done.contains_key(&key) {
            return Ok(None);
        }
        if !self.open.contains_key(&key) {
            let mine = self.open.keys().filter(|(n, _)| n == from).count();
            if mine >= self.max_per_sender || self.open.len() >= self.max_open {
                return Err(ChunkError::TooManyTransfers);
            }
            if h.count == 1 {
                return Ok(Some(bytes.to_vec()));
            }
            self.open.insert(
                key.clone(),
                Assembly {
                    header: h,
                    data: Vec::new(),
                    have: BTreeSet::new(),
                    touched: now,
                },
            );
        }
        let a = self.open.get_mut(&key).expect("present");
        if a.header.count != h.count || a.header.total != h.total || a.header.chunk != h.chunk {
            return Err(ChunkError::Inconsistent);
        }
        a.touched = now;
        if a.have.insert(h.index) {
            if a.data.is_empty() {
                // Allocated on the first chunk, within the checked bound.
                a.data = vec![0; h.total as usize];
            }
            let start = h.index as usize * h.chunk as usize;
            a.data[start..start + bytes.len()].copy_from_slice(bytes);
        }
        if a.have.len() as u32 == a.header.count {
            let a = self.open.remove(&key).expect("present");
            if self.done.len() >= 1024 {
                self.done.pop_first();
            }
            self.done.insert(key, now);
            return Ok(Some(a.data));
        }
        Ok(None)
    }

    /// Drop transfers idle for too long; how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.open.len();
        let idle = self.idle_ms;
        self.open
            .retain(|_, a| now.saturating_sub(a.touched) < idle);
        self.done.retain(|_, t| now.saturating_sub(*t) < idle);
        before - self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }

    #[test]
    fn thirty_megabytes_cross_in_eight_chunks_in_any_order_with_duplicates() {
        let data: Vec<u8> = (0..30_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Outgoing::new(9, data.clone(), DEFAULT_CHUNK, 3, 4);
        assert_eq!(out.count(), 8);
        let mut r = Reassembly::new(64 << 20, 2, 60_000);
        let mut got = None;
        let mut round = 0;
        while !out.done() {
            let mut batch = out.poll();
            assert!(batch.len() <= 3, "window respected");
            batch.reverse();
            for (h, bytes) in batch {
                // Every chunk's message stays under Hyperware's 10 MiB limit.
                assert!(bytes.len() < 10 << 20);
                if round == 0 && h.index == 1 {
                    out.on_failed(h.index);
                    continue;
                }
                // Each chunk twice (a retry whose ack was lost): the data comes out once.
                for _ in 0..2 {
                    if let Some(d) = r.accept(&n("alice.os"), h, &bytes, round).unwrap() {
                        assert!(got.is_none(), "delivered once");
                        got = Some(d);
                    }
                }
                out.on_ack(h.index);
            }
            round += 1;
        }
        assert_eq!(got.as_deref(), Some(&data[..]));
        assert_eq!(r.open(), 0);
    }

    #[test]
    fn lies_in_headers_are_refused_before_anything_is_allocated() {
        let mut r = Reassembly::new(1 << 20, 1, 1_000);
        let a = n("mallory.os");
        let h = ChunkHeader {
            transfer: 1,
            index: 0,
            count: 1,
            chunk: 10,
            total: 1 << 30,
        };
        assert!(matches!(
            r.accept(&a, h, &[0; 10], 0),
            Err(ChunkError::TooLarge { .. })
        ));
        let h = ChunkHeader {
            transfer: 1,
            index: 5,
            count: 2,
            chunk: 10,
            total: 20,
        };
        assert!(matches!(
            r.accept(&a, h, &[0; 10], 0),
            Err(ChunkError::Malformed(_))
        ));
        let h = ChunkHeader {
            transfer: 1,
            index: 0,
            count: 2,
            chunk: 10,
            total: 20,
        };
        assert!(matches!(
            r.accept(&a, h, &[0; 9], 0),
            Err(ChunkError::Malformed(_))
        ));
        assert_eq!(r.accept(&a, h, &[0; 10], 0), Ok(None));
        let other = ChunkHeader { transfer: 2, ..h };
        assert_eq!(
            r.accept(&a, other, &[0; 10], 0),
            Err(ChunkError::TooManyTransfers)
        );
        let liar = ChunkHeader {
            total: 19,
            count: 2,
            ..h
        };
        assert!(r
            .accept(&a, ChunkHeader { index: 1, ..liar }, &[0; 9], 0)
            .is_err());
        assert_eq!(r.expire(999), 0);
        assert_eq!(r.expire(1_000), 1);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_chunk_that_keeps_failing_fails_the_transfer() {
        let mut out = Outgoing::new(1, vec![1; 25], 10, 1, 2);
        for _ in 0..2 {
            let b = out.poll();
            assert_eq!(b[0].0.index, 0);
            out.on_failed(0);
        }
        assert!(out.failed());
        assert!(out.poll().is_empty());
    }

    proptest! {
        #[test]
        fn any_size_and_order_reassembles(len in 0usize..5_000, chunk in 1usize..700, seed in any::<u64>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let mut out = Outgoing::new(seed, data.clone(), chunk, u32::MAX, 1);
            let mut batch = out.poll();
            let k = batch.len();
            batch.rotate_left((seed as usize) % k.max(1));
            let mut r = Reassembly::new(10_000, 1, 10);
            let mut got = None;
            for (h, b) in batch {
                if let Some(d) = r.accept(&n("bob.os"), h, &b, 0).unwrap() { got = Some(d); }
            }
            prop_assert_eq!(got, Some(data));
        }
    }
}
