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
/// Smallest chunk size a multi-chunk transfer may use (so a header cannot claim millions
/// of one-byte chunks).
pub const MIN_CHUNK: u32 = 64 << 10;

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
    /// The chunks received so far: memory grows with what arrived, not with the claim.
    chunks: BTreeMap<u32, Vec<u8>>,
    bytes: u64,
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
        self.open.values().map(|a| a.bytes).sum()
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
        if h.count > 1 && h.chunk < MIN_CHUNK {
            return Err(ChunkError::Malformed(
                "chunks of a multi-chunk transfer are at least 64 KiB",
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
            // A late duplicate of a finished transfer: acknowledged, not reopened.
            return Ok(None);
        }
        if !self.open.contains_key(&key) {
            let mine = self.open.keys().filter(|(n, _)| n == from).count();
            if mine >= self.max_per_sender {
                return Err(ChunkError::TooManyTransfers);
            }
            if h.count == 1 {
                self.finish(key, now);
                return Ok(Some(bytes.to_vec()));
            }
            if self.open.len() >= self.max_open {
                // Full: the transfer that has waited longest for a chunk goes.
                if let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, a)| a.touched)
                    .map(|(k, _)| k.clone())
                {
                    self.open.remove(&oldest);
                }
            }
            self.open.insert(
                key.clone(),
                Assembly {
                    header: h,
                    chunks: BTreeMap::new(),
                    bytes: 0,
                    touched: now,
                },
            );
        }
        let a = self.open.get_mut(&key).expect("present");
        if a.header.count != h.count || a.header.total != h.total || a.header.chunk != h.chunk {
            return Err(ChunkError::Inconsistent);
        }
        a.touched = now;
        if !a.chunks.contains_key(&h.index) {
            a.bytes += bytes.len() as u64;
            a.chunks.insert(h.index, bytes.to_vec());
        }
        if a.chunks.len() as u32 == a.header.count {
            let a = self.open.remove(&key).expect("present");
            self.finish(key, now);
            let mut data = Vec::with_capacity(a.bytes as usize);
            for (_, c) in a.chunks {
                data.extend_from_slice(&c);
            }
            return Ok(Some(data));
        }
        Ok(None)
    }

    fn finish(&mut self, key: (NodeId, u64), now: Millis) {
        if self.done.len() >= 1024 {
            if let Some(oldest) = self
                .done
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.done.remove(&oldest);
            }
        }
        self.done.insert(key, now);
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
    fn lies_in_headers_are_refused_and_memory_follows_what_arrived() {
        const C: u32 = MIN_CHUNK;
        let mut r = Reassembly::new(1 << 20, 1, 1_000);
        let a = n("mallory.os");
        let h = |transfer, index, count, chunk, total| ChunkHeader {
            transfer,
            index,
            count,
            chunk,
            total,
        };
        let c = vec![0u8; C as usize];
        assert!(matches!(
            r.accept(&a, h(1, 0, 1, 10, 1 << 30), &[0; 10], 0),
            Err(ChunkError::TooLarge { .. })
        ));
        assert!(matches!(
            r.accept(&a, h(1, 5, 2, C, 2 * u64::from(C)), &c, 0),
            Err(ChunkError::Malformed(_))
        ));
        // Millions of one-byte chunks: refused.
        assert!(matches!(
            r.accept(&a, h(1, 0, 1 << 20, 1, 1 << 20), &[0], 0),
            Err(ChunkError::Malformed(_))
        ));
        assert!(matches!(
            r.accept(&a, h(1, 0, 2, C, 2 * u64::from(C)), &c[1..], 0),
            Err(ChunkError::Malformed(_))
        ));
        // A transfer claiming 1 MiB holds only the chunk that came.
        let big = h(1, 0, 16, C, 16 * u64::from(C));
        assert_eq!(r.accept(&a, big, &c, 0), Ok(None));
        assert_eq!(r.buffered(), u64::from(C));
        assert_eq!(
            r.accept(&a, ChunkHeader { transfer: 2, ..big }, &c, 0),
            Err(ChunkError::TooManyTransfers)
        );
        let liar = ChunkHeader {
            index: 15,
            total: 16 * u64::from(C) - 1,
            ..big
        };
        assert!(r.accept(&a, liar, &c[1..], 0).is_err());
        assert_eq!(r.expire(999), 0);
        assert_eq!(r.expire(1_000), 1);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn strangers_filling_the_table_do_not_lock_out_a_live_transfer() {
        const C: u32 = MIN_CHUNK;
        let mut r = Reassembly::new(1 << 20, 1, 60_000);
        let c = vec![1u8; C as usize];
        let h = |t| ChunkHeader {
            transfer: t,
            index: 0,
            count: 2,
            chunk: C,
            total: 2 * u64::from(C),
        };
        for i in 0..8 {
            assert_eq!(r.accept(&n(&format!("m{i}.os")), h(1), &c, i), Ok(None));
        }
        // Table full (8 open): a new transfer evicts the longest-waiting one and completes.
        assert_eq!(r.accept(&n("alice.os"), h(1), &c, 100), Ok(None));
        assert_eq!(r.open(), 8);
        let last = ChunkHeader { index: 1, ..h(1) };
        assert_eq!(
            r.accept(&n("alice.os"), last, &c, 101)
                .unwrap()
                .map(|d| d.len()),
            Some(2 * C as usize)
        );
    }

    #[test]
    fn a_duplicated_single_chunk_transfer_is_delivered_once() {
        let mut r = Reassembly::new(1 << 20, 1, 60_000);
        let h = ChunkHeader {
            transfer: 3,
            index: 0,
            count: 1,
            chunk: 5,
            total: 5,
        };
        assert!(r.accept(&n("bob.os"), h, b"hello", 0).unwrap().is_some());
        assert_eq!(r.accept(&n("bob.os"), h, b"hello", 1), Ok(None));
    }

    #[test]
    fn a_chunk_that_keeps_failing_fails_the_transfer() {
        let mut out = Outgoing::new(1, vec![1; 25], 10, 1, 2);
        // (Outgoing accepts any chunk size; receivers require MIN_CHUNK for multi-chunk.)
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
        fn any_size_and_order_reassembles(len in 0usize..400_000, chunk in (MIN_CHUNK as usize)..200_000, seed in any::<u64>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let mut out = Outgoing::new(seed, data.clone(), chunk, u32::MAX, 1);
            let mut batch = out.poll();
            let k = batch.len();
            batch.rotate_left((seed as usize) % k.max(1));
            let mut r = Reassembly::new(1 << 20, 1, 10);
            let mut got = None;
            for (h, b) in batch {
                if let Some(d) = r.accept(&n("bob.os"), h, &b, 0).unwrap() { got = Some(d); }
            }
            prop_assert_eq!(got, Some(data));
        }
    }
}
