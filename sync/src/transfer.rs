//! Chunked transfers: a blob too large for one message (Hyperware drops a connection over
//! 10 MiB) is *offered* instead of sent, and the receiver *pulls* it chunk by chunk.
//!
//! - [`Offers`] (the sender's sub-machine) keeps the bytes of each offer for the one node
//!   and document it was made to, serves a chunk only to that node, a bounded number of
//!   times each, and forgets an offer nobody asked from for [`OFFER_IDLE_MS`]. Offers are
//!   bounded in count, per peer, and in bytes.
//! - [`Pulls`] (the receiver's) fetches the chunks of an offer it accepted, a small window
//!   at a time, checks each against its length and SHA-256 digest from the offer, retries a
//!   failed fetch with jittered backoff (the chunks already in are kept: a transfer resumes
//!   where it broke), and gives up after [`CHUNK_ATTEMPTS`] failures of one chunk. Pulls
//!   are bounded in count, per sender, and in the bytes their offers announce (checked
//!   before any chunk is fetched, so a claim of a huge transfer holds nothing).
//!
//! Nothing arrives unasked: a chunk is only ever the answer to our own `GetChunk`, so a node
//! cannot push chunks at us, and memory grows with the chunks that arrived and checked out,
//! never with what an offer claims. A pull is kept in memory only; after a restart it
//! starts over (anti-entropy or the app's next `Join` asks again). Both are pure.

use p2p_common::api::sync::{Chunked, DocId, TRANSFER_CHUNK};
use p2p_common::resilience::{Backoff, Jitter};
use p2p_common::{Millis, NodeId};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Offers kept at once, per peer, and their bytes in all.
pub const MAX_OFFERS: usize = 8;
pub const MAX_OFFERS_PER_PEER: usize = 2;
pub const MAX_OFFER_BYTES: u64 = 128 << 20;
/// An offer nobody fetched a chunk of for this long is forgotten.
pub const OFFER_IDLE_MS: Millis = 60_000;
/// Times one chunk of an offer is served (a lost answer is asked again; a node asking more
/// often than this is not resuming, it is draining our bandwidth).
pub const MAX_SERVES_PER_CHUNK: u32 = 4;

/// Pulls at once, per sender, and the bytes their offers announce in all.
pub const MAX_PULLS: usize = 4;
pub const MAX_PULLS_PER_PEER: usize = 2;
pub const MAX_PULL_BYTES: u64 = 128 << 20;
/// Chunk requests in flight per pull.
pub const PULL_WINDOW: usize = 2;
/// Fetches of one chunk before the pull gives up.
pub const CHUNK_ATTEMPTS: u32 = 6;
/// A pull with no chunk for this long is dropped (the sweep; a pull always has a fetch or a
/// retry timer of its own pending, so this only catches what got lost).
pub const PULL_IDLE_MS: Millis = 120_000;

/// SHA-256 of `bytes`, lower-case hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The offer of `bytes` in chunks of `chunk` bytes as transfer `transfer`.
pub fn describe(transfer: u64, bytes: &[u8], chunk: u32) -> Chunked {
    let chunk = chunk.clamp(64 << 10, TRANSFER_CHUNK);
    Chunked {
        transfer,
        total: bytes.len() as u64,
        chunk,
        digests: bytes.chunks(chunk as usize).map(digest).collect(),
    }
}

fn slice(desc: &Chunked, bytes: &[u8], index: u32) -> Vec<u8> {
    let start = index as usize * desc.chunk as usize;
    let end = (start + desc.chunk as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

struct Offer {
    transfer: u64,
    peer: NodeId,
    doc: DocId,
    bytes: Vec<u8>,
    desc: Chunked,
    touched: Millis,
    serves: Vec<u32>,
}

/// Why a chunk is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeError {
    /// No such offer to this node for this document (never made, expired, or ended).
    NotOffered,
    /// The offer has no chunk of that index.
    BadIndex,
    /// The chunk was asked for too often; the offer is withdrawn.
    TooOften,
}

/// The sender's side: offers kept for the node they were made to (a few: a list).
#[derive(Default)]
pub struct Offers {
    offers: Vec<Offer>,
    /// Offers refused for the bounds (logged by the core as a power of two).
    pub refused: u64,
}

impl Offers {
    /// Offer `bytes` of `doc` to `peer` as transfer `transfer` (a fresh random id). An earlier
    /// offer of the same document to the same peer is replaced (it is older). Err when the
    /// bounds are reached (the peer may ask again later).
    pub fn offer(
        &mut self,
        peer: &NodeId,
        doc: &DocId,
        bytes: Vec<u8>,
        transfer: u64,
        now: Millis,
    ) -> Result<Chunked, String> {
        self.expire(now);
        if let Some(i) = self
            .offers
            .iter()
            .position(|o| o.peer == *peer && o.doc == *doc)
        {
            if self.offers[i].bytes == bytes {
                let o = &mut self.offers[i];
                o.touched = now;
                return Ok(o.desc.clone());
            }
            self.offers.swap_remove(i);
        }
        let theirs = self.offers.iter().filter(|o| o.peer == *peer).count();
        let held = self.bytes();
        if theirs >= MAX_OFFERS_PER_PEER
            || self.offers.len() >= MAX_OFFERS
            || held + bytes.len() as u64 > MAX_OFFER_BYTES
            || self.offers.iter().any(|o| o.transfer == transfer)
        {
            self.refused += 1;
            return Err(format!(
                "busy sending large documents ({} offers, {held} bytes held); ask again later",
                self.offers.len()
            ));
        }
        let desc = describe(transfer, &bytes, TRANSFER_CHUNK);
        self.offers.push(Offer {
            transfer,
            peer: peer.clone(),
            doc: doc.clone(),
            serves: vec![0; desc.digests.len()],
            bytes,
            desc: desc.clone(),
            touched: now,
        });
        Ok(desc)
    }

    /// Chunk `index` of `transfer` for `peer`, if it was offered to it for `doc`.
    pub fn serve(
        &mut self,
        peer: &NodeId,
        doc: &DocId,
        transfer: u64,
        index: u32,
        now: Millis,
    ) -> Result<Vec<u8>, ServeError> {
        let Some(i) = self
            .offers
            .iter()
            .position(|o| o.transfer == transfer && o.peer == *peer && o.doc == *doc)
        else {
            return Err(ServeError::NotOffered);
        };
        let o = &mut self.offers[i];
        let Some(n) = o.serves.get_mut(index as usize) else {
            return Err(ServeError::BadIndex);
        };
        if *n >= MAX_SERVES_PER_CHUNK {
            self.offers.swap_remove(i);
            return Err(ServeError::TooOften);
        }
        *n += 1;
        o.touched = now;
        Ok(slice(&o.desc, &o.bytes, index))
    }

    /// Whether an offer of `doc` to `peer` is open (so no second one is made while it is).
    pub fn open_to(&self, peer: &NodeId, doc: &DocId) -> bool {
        self.offers.iter().any(|o| o.peer == *peer && o.doc == *doc)
    }

    /// Forget offers idle for [`OFFER_IDLE_MS`]; how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.offers.len();
        self.offers
            .retain(|o| now.saturating_sub(o.touched) < OFFER_IDLE_MS);
        before - self.offers.len()
    }

    pub fn forget_doc(&mut self, doc: &DocId) {
        self.offers.retain(|o| o.doc != *doc);
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }
    /// Bytes held for offers.
    pub fn bytes(&self) -> u64 {
        self.offers.iter().map(|o| o.desc.total).sum()
    }
}

/// A pull: who offered, the offer, what came, what the core will do with it (`P`).
pub struct Pull<P> {
    key: PullKey,
    pub from: NodeId,
    pub doc: DocId,
    pub desc: Chunked,
    pub purpose: P,
    chunks: Vec<Option<Vec<u8>>>,
    got: u32,
    /// Chunk indices asked for and not answered yet (at most [`PULL_WINDOW`]).
    in_flight: Vec<u32>,
    attempts: Vec<u32>,
    failures: u32,
    waiting: bool,
    touched: Millis,
}

impl<P> Pull<P> {
    /// Chunks in so far, and in all.
    pub fn progress(&self) -> (u32, u32) {
        (self.got, self.desc.count())
    }
    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.chunks.iter().flatten().map(|c| c.len() as u64).sum()
    }
}

/// The key of a pull: the offering node and its transfer id.
pub type PullKey = (NodeId, u64);

/// What a chunk's arrival did.
pub enum Arrived<P> {
    /// More chunks to come.
    More,
    /// The last chunk: the whole blob, checked, and the pull's purpose.
    Done(P, Vec<u8>),
}

/// What a failed fetch does.
pub enum Failed<P> {
    /// Fetch again after this long (arm the pull's retry timer).
    RetryIn(Millis),
    /// Another fetch of the pull is still in flight; its outcome decides.
    Pending,
    /// The chunk failed [`CHUNK_ATTEMPTS`] times: the pull is dropped.
    GaveUp(P),
    /// No such pull (ended already).
    Unknown,
}

/// The receiver's side: the transfers being fetched (a few: a list).
pub struct Pulls<P> {
    pulls: Vec<Pull<P>>,
    backoff: Backoff,
    /// Offers refused for the bounds.
    pub refused: u64,
}

impl<P> Default for Pulls<P> {
    fn default() -> Self {
        Pulls {
            pulls: Vec::new(),
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: 30_000,
                factor: 2,
                jitter: Jitter::Equal,
            },
            refused: 0,
        }
    }
}

impl<P> Pulls<P> {
    fn find(&self, key: &PullKey) -> Option<usize> {
        self.pulls.iter().position(|p| p.key == *key)
    }
    fn find_mut(&mut self, key: &PullKey) -> Option<&mut Pull<P>> {
        self.pulls.iter_mut().find(|p| p.key == *key)
    }
    fn take(&mut self, key: &PullKey) -> Option<Pull<P>> {
        self.find(key).map(|i| self.pulls.swap_remove(i))
    }

    /// Accept `desc`, offered by `from` for `doc`: checked, within the bounds, and the only
    /// pull of that document. Nothing is fetched yet ([`Pulls::next`]).
    pub fn start(
        &mut self,
        from: &NodeId,
        doc: &DocId,
        desc: Chunked,
        purpose: P,
        now: Millis,
    ) -> Result<PullKey, (P, String)> {
        if let Err(why) = desc.validate() {
            return Err((purpose, format!("bad offer: {why}")));
        }
        if self.pulls.iter().any(|p| p.doc == *doc) {
            return Err((purpose, format!("already fetching {doc}")));
        }
        let key = (from.clone(), desc.transfer);
        let theirs = self.pulls.iter().filter(|p| p.from == *from).count();
        let announced: u64 = self.pulls.iter().map(|p| p.desc.total).sum();
        if theirs >= MAX_PULLS_PER_PEER
            || self.pulls.len() >= MAX_PULLS
            || announced + desc.total > MAX_PULL_BYTES
            || self.find(&key).is_some()
        {
            self.refused += 1;
            return Err((
                purpose,
                format!(
                    "busy fetching large documents ({} transfers, {announced} bytes announced)",
                    self.pulls.len()
                ),
            ));
        }
        let n = desc.count() as usize;
        self.pulls.push(Pull {
            key: key.clone(),
            from: from.clone(),
            doc: doc.clone(),
            desc,
            purpose,
            chunks: vec![None; n],
            got: 0,
            in_flight: Vec::new(),
            attempts: vec![0; n],
            failures: 0,
            waiting: false,
            touched: now,
        });
        Ok(key)
    }

    pub fn get(&self, key: &PullKey) -> Option<&Pull<P>> {
        self.pulls.iter().find(|p| p.key == *key)
    }

    /// The pull of `doc`, if one runs.
    pub fn of_doc(&self, doc: &DocId) -> Option<&Pull<P>> {
        self.pulls.iter().find(|p| p.doc == *doc)
    }

    /// Chunks to fetch now (marked in flight): up to [`PULL_WINDOW`] in flight, none while a
    /// retry timer is armed.
    pub fn next(&mut self, key: &PullKey) -> Vec<u32> {
        let Some(p) = self.find_mut(key) else {
            return Vec::new();
        };
        if p.waiting {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..p.desc.count() {
            if p.in_flight.len() >= PULL_WINDOW {
                break;
            }
            if p.chunks[i as usize].is_none() && !p.in_flight.contains(&i) {
                p.in_flight.push(i);
                p.attempts[i as usize] += 1;
                out.push(i);
            }
        }
        out
    }

    /// Chunk `index` arrived with `bytes`. A chunk whose length or digest is not the
    /// offer's ends the pull (Err, with its purpose): the sender sent something else than
    /// it offered. A chunk not asked for is ignored.
    pub fn arrived(
        &mut self,
        key: &PullKey,
        index: u32,
        bytes: Vec<u8>,
        now: Millis,
    ) -> Result<Arrived<P>, (Option<P>, String)> {
        let Some(p) = self.find_mut(key) else {
            return Err((None, "no such transfer".into()));
        };
        if !unmark(&mut p.in_flight, index) {
            return Ok(Arrived::More);
        }
        let why = if bytes.len() as u64 != p.desc.len_of(index) {
            Some(format!(
                "chunk {index} has {} bytes, the offer said {}",
                bytes.len(),
                p.desc.len_of(index)
            ))
        } else if digest(&bytes) != p.desc.digests[index as usize].to_ascii_lowercase() {
            Some(format!("chunk {index} does not match its digest"))
        } else {
            None
        };
        if let Some(why) = why {
            let p = self.take(key).expect("present");
            return Err((Some(p.purpose), why));
        }
        p.touched = now;
        p.failures = 0;
        p.chunks[index as usize] = Some(bytes);
        p.got += 1;
        if p.got < p.desc.count() {
            return Ok(Arrived::More);
        }
        let p = self.take(key).expect("present");
        let mut all = Vec::with_capacity(p.desc.total as usize);
        for c in p.chunks.into_iter().flatten() {
            all.extend_from_slice(&c);
        }
        Ok(Arrived::Done(p.purpose, all))
    }

    /// Fetching chunk `index` failed (no answer, or a refusal for now).
    pub fn failed(&mut self, key: &PullKey, index: u32, rng: &mut impl RngCore) -> Failed<P> {
        let Some(p) = self.find_mut(key) else {
            return Failed::Unknown;
        };
        if !unmark(&mut p.in_flight, index) {
            return Failed::Pending;
        }
        if p.attempts[index as usize] >= CHUNK_ATTEMPTS {
            let p = self.take(key).expect("present");
            return Failed::GaveUp(p.purpose);
        }
        if p.waiting {
            return Failed::Pending;
        }
        p.waiting = true;
        let failures = p.failures;
        p.failures += 1;
        Failed::RetryIn(self.backoff.delay(failures, rng).max(100))
    }

    /// The pull's retry timer fired: fetching may go on ([`Pulls::next`]).
    pub fn retry_due(&mut self, key: &PullKey) {
        if let Some(p) = self.find_mut(key) {
            p.waiting = false;
        }
    }

    /// End a pull (the offer is gone, the document left); its purpose.
    pub fn cancel(&mut self, key: &PullKey) -> Option<P> {
        self.take(key).map(|p| p.purpose)
    }

    /// Drop pulls with no chunk for [`PULL_IDLE_MS`] whose `keep` says so; their keys.
    pub fn expire(&mut self, now: Millis, keep: impl Fn(&P) -> bool) -> Vec<PullKey> {
        let dead: Vec<PullKey> = self
            .pulls
            .iter()
            .filter(|p| now.saturating_sub(p.touched) >= PULL_IDLE_MS && !keep(&p.purpose))
            .map(|p| p.key.clone())
            .collect();
        self.pulls.retain(|p| !dead.contains(&p.key));
        dead
    }

    /// Keys of the pulls of `doc`.
    pub fn of(&self, doc: &DocId) -> Vec<PullKey> {
        self.pulls
            .iter()
            .filter(|p| p.doc == *doc)
            .map(|p| p.key.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pulls.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pulls.is_empty()
    }
    /// Bytes held for pulls in progress.
    pub fn held(&self) -> u64 {
        self.pulls.iter().map(Pull::held).sum()
    }
}

/// Take `index` out of `in_flight`; whether it was there.
fn unmark(in_flight: &mut Vec<u32>, index: u32) -> bool {
    match in_flight.iter().position(|i| *i == index) {
        Some(k) => {
            in_flight.swap_remove(k);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn n(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }
    fn d(s: &str) -> DocId {
        s.parse().unwrap()
    }
    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn an_offer_crosses_in_checked_chunks_and_resumes_after_a_failure() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let bytes = data(18_000_000);
        let mut offers = Offers::default();
        let (alice, bob, doc) = (n("alice.os"), n("bob.os"), d("alice.os/big"));
        let desc = offers.offer(&bob, &doc, bytes.clone(), 7, 0).unwrap();
        assert_eq!(desc.count(), 5);
        let mut pulls: Pulls<&str> = Pulls::default();
        let key = pulls.start(&alice, &doc, desc, "join", 0).unwrap();
        let mut done = None;
        let mut t = 0;
        let mut failed_once = false;
        while done.is_none() {
            t += 100;
            let asks = pulls.next(&key);
            assert!(asks.len() <= PULL_WINDOW);
            for i in asks {
                if i == 2 && !failed_once {
                    failed_once = true;
                    match pulls.failed(&key, i, &mut rng) {
                        Failed::RetryIn(ms) => assert!((100..=1_000).contains(&ms)),
                        _ => panic!("retry expected"),
                    }
                    pulls.retry_due(&key);
                    continue;
                }
                let chunk = offers.serve(&bob, &doc, 7, i, t).unwrap();
                assert!(chunk.len() <= TRANSFER_CHUNK as usize);
                if let Arrived::Done(p, all) = pulls.arrived(&key, i, chunk, t).unwrap() {
                    done = Some((p, all));
                }
            }
        }
        let (p, all) = done.unwrap();
        assert_eq!(p, "join");
        assert!(all == bytes, "reassembled exactly");
        assert!(pulls.is_empty());
    }

    #[test]
    fn forged_and_oversized_chunks_end_the_pull() {
        let bytes = data(9_000_000);
        let desc = describe(1, &bytes, TRANSFER_CHUNK);
        let (alice, doc) = (n("alice.os"), d("alice.os/big"));
        let mut pulls: Pulls<u8> = Pulls::default();
        // A forged chunk (right length, other bytes).
        let key = pulls.start(&alice, &doc, desc.clone(), 1, 0).unwrap();
        assert_eq!(pulls.next(&key), vec![0, 1]);
        let mut forged = bytes[..TRANSFER_CHUNK as usize].to_vec();
        forged[10] ^= 1;
        match pulls.arrived(&key, 0, forged, 1) {
            Err((Some(1), why)) => assert!(why.contains("digest"), "{why}"),
            _ => panic!("a forged chunk is refused"),
        }
        assert!(pulls.is_empty(), "and frees what the pull held");
        // A chunk longer than offered.
        let key = pulls.start(&alice, &doc, desc.clone(), 2, 0).unwrap();
        pulls.next(&key);
        let long = bytes[..TRANSFER_CHUNK as usize + 1].to_vec();
        assert!(matches!(pulls.arrived(&key, 0, long, 1), Err((Some(2), _))));
        // A chunk nobody asked for is ignored, held nowhere.
        let key = pulls.start(&alice, &doc, desc.clone(), 3, 0).unwrap();
        pulls.next(&key);
        let last = bytes[2 * TRANSFER_CHUNK as usize..].to_vec();
        assert!(matches!(pulls.arrived(&key, 2, last, 1), Ok(Arrived::More)));
        assert_eq!(pulls.held(), 0);
        // Out of order: chunk 1 before chunk 0 is fine.
        let c1 = bytes[TRANSFER_CHUNK as usize..2 * TRANSFER_CHUNK as usize].to_vec();
        assert!(matches!(pulls.arrived(&key, 1, c1, 2), Ok(Arrived::More)));
        assert_eq!(pulls.held(), u64::from(TRANSFER_CHUNK));
    }

    #[test]
    fn offers_that_claim_too_much_hold_nothing() {
        let (m, doc) = (n("mallory.os"), d("alice.os/big"));
        let mut pulls: Pulls<()> = Pulls::default();
        let mut huge = describe(1, &data(1 << 20), TRANSFER_CHUNK);
        huge.total = 1 << 30; // 1 GB, with one digest
        assert!(pulls.start(&m, &doc, huge, (), 0).is_err());
        let mut lying = describe(1, &data(1 << 20), TRANSFER_CHUNK);
        lying.chunk = 1; // millions of one-byte chunks
        assert!(pulls.start(&m, &doc, lying, (), 0).is_err());
        let mut bad_digest = describe(1, &data(1 << 20), TRANSFER_CHUNK);
        bad_digest.digests[0] = "zz".into();
        assert!(pulls.start(&m, &doc, bad_digest, (), 0).is_err());
        // Per sender, per document, and in all.
        let ok = |t| describe(t, &data(100_000), TRANSFER_CHUNK);
        assert!(pulls.start(&m, &d("alice.os/a"), ok(1), (), 0).is_ok());
        assert!(pulls.start(&m, &d("alice.os/a"), ok(2), (), 0).is_err());
        assert!(pulls.start(&m, &d("alice.os/b"), ok(3), (), 0).is_ok());
        assert!(
            pulls.start(&m, &d("alice.os/c"), ok(4), (), 0).is_err(),
            "at most {MAX_PULLS_PER_PEER} from one node"
        );
        for (i, who) in ["a.os", "b.os"].iter().enumerate() {
            let doc = d(&format!("alice.os/x{i}"));
            assert!(pulls.start(&n(who), &doc, ok(10 + i as u64), (), 0).is_ok());
        }
        assert!(pulls
            .start(&n("c.os"), &d("alice.os/y"), ok(20), (), 0)
            .is_err());
        assert_eq!(pulls.len(), MAX_PULLS);
        assert_eq!(pulls.held(), 0, "nothing is held before chunks arrive");
        // Idle pulls go (unless kept).
        assert!(pulls.expire(PULL_IDLE_MS - 1, |_| false).is_empty());
        assert_eq!(pulls.expire(PULL_IDLE_MS, |_| false).len(), MAX_PULLS);
    }

    #[test]
    fn a_chunk_that_keeps_failing_gives_up() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (a, doc) = (n("alice.os"), d("alice.os/big"));
        let mut pulls: Pulls<u8> = Pulls::default();
        let key = pulls
            .start(&a, &doc, describe(1, &data(100_000), TRANSFER_CHUNK), 5, 0)
            .unwrap();
        for k in 0..CHUNK_ATTEMPTS {
            assert_eq!(pulls.next(&key), vec![0]);
            match pulls.failed(&key, 0, &mut rng) {
                Failed::RetryIn(ms) => {
                    assert!(k + 1 < CHUNK_ATTEMPTS);
                    assert!(ms <= 30_000);
                    pulls.retry_due(&key);
                }
                Failed::GaveUp(p) => {
                    assert_eq!(k + 1, CHUNK_ATTEMPTS);
                    assert_eq!(p, 5);
                }
                _ => panic!("unexpected"),
            }
        }
        assert!(pulls.is_empty());
    }

    #[test]
    fn offers_serve_only_their_node_a_bounded_number_of_times() {
        let (bob, eve, doc) = (n("bob.os"), n("eve.os"), d("alice.os/big"));
        let mut o = Offers::default();
        let bytes = data(5_000_000);
        let desc = o.offer(&bob, &doc, bytes.clone(), 9, 0).unwrap();
        assert_eq!(o.serve(&eve, &doc, 9, 0, 1), Err(ServeError::NotOffered));
        assert_eq!(
            o.serve(&bob, &d("alice.os/other"), 9, 0, 1),
            Err(ServeError::NotOffered)
        );
        assert_eq!(o.serve(&bob, &doc, 9, 2, 1), Err(ServeError::BadIndex));
        // The same bytes offered again: the same offer.
        assert_eq!(o.offer(&bob, &doc, bytes.clone(), 10, 1).unwrap(), desc);
        for _ in 0..MAX_SERVES_PER_CHUNK {
            assert!(o.serve(&bob, &doc, 9, 1, 2).is_ok());
        }
        assert_eq!(o.serve(&bob, &doc, 9, 1, 3), Err(ServeError::TooOften));
        assert!(o.is_empty(), "withdrawn");
        // Bounds: per peer, and idle offers expire.
        for k in 0..MAX_OFFERS_PER_PEER {
            let doc = d(&format!("alice.os/d{k}"));
            assert!(o.offer(&bob, &doc, data(100), k as u64, 10).is_ok());
        }
        assert!(o.offer(&bob, &d("alice.os/z"), data(100), 99, 10).is_err());
        assert_eq!(o.expire(10 + OFFER_IDLE_MS - 1), 0);
        assert_eq!(o.expire(10 + OFFER_IDLE_MS), MAX_OFFERS_PER_PEER);
    }
}
