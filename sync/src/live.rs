//! Live streams: the cheap way a node's changes of a document reach a peer while both are
//! online (docs/sync.md, "Live streams").
//!
//! A `Delta` (JSON: document, full version) carrying `stream: n` opens a stream per
//! (peer, document); a receiver that knows streams answers its `Ack` with the same `stream`.
//! From then on the sender's changes of that document go as `Live` frames: the bare body
//! `"Live"` and a blob of a few bytes of header (stream id, sequence number, encoding) in
//! front of Loro's bytes. Most frames are one-way; at most once per [`ACK_EVERY_MS`] a frame
//! is sent expecting an answer (`LiveAck`, with the receiver's version in Loro's binary
//! encoding), which is the sender's loss detection and bookkeeping. Frames to one peer go
//! at most once per [`FLUSH_MS`] (all documents owed to it at the start of the window), so
//! edits made meanwhile leave together.
//!
//! The receiver checks each frame's sequence number: a gap (a frame lost with a broken
//! connection, or a forged jump) makes it ask the sender for what it lacks with a
//! `SyncRequest`, the anti-entropy exchange, which heals whatever was missed. A frame for a
//! stream it does not know (it restarted, or the id is forged) is dropped, and the next
//! answered frame tells the sender to open the stream again.
//!
//! This module holds both sides' state, bounded, and the frame codec; the core
//! ([`crate::core`]) does the sending, importing and answering.

use loro::VersionVector;
use p2p_common::api::sync::DocId;
use p2p_common::{Millis, NodeId};
use std::collections::BTreeMap;

/// Live frames to one peer leave at most this often (edits made meanwhile go together).
pub const FLUSH_MS: Millis = 100;
/// A live frame expects an answer when none did for this long (loss detection; the
/// answer's timeout and the retry backoff are the outbox's, as for a `Delta`).
pub const ACK_EVERY_MS: Millis = 2_000;
/// Streams one sender may have open here, and in all; an open beyond them is answered
/// without `stream` (the sender keeps sending `Delta`s).
pub const MAX_STREAMS_PER_SENDER: usize = 256;
pub const MAX_STREAMS_IN: usize = 4096;
/// A frame's header is at most this long (two LEB128 numbers: a u32 and a u32 with a flag).
pub const MAX_HEADER: usize = 10;

/// A parsed frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub stream: u32,
    pub seq: u32,
    pub deflated: bool,
    pub loro: &'a [u8],
}

/// A frame's bytes: the stream id, then the sequence number shifted left by one with the
/// lowest bit set when the Loro bytes are deflated (both LEB128), then Loro's bytes. New
/// flags would come as fields of the JSON body, which peers ignore when unknown.
pub fn encode_frame(stream: u32, seq: u32, deflated: bool, loro: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(loro.len() + MAX_HEADER);
    // Writing to a Vec cannot fail.
    let _ = leb128::write::unsigned(&mut out, u64::from(stream));
    let _ = leb128::write::unsigned(&mut out, u64::from(seq) << 1 | u64::from(deflated));
    out.extend_from_slice(loro);
    out
}

/// Parse a frame; an error says what is wrong (a bad or overlong varint, a value out of
/// range).
pub fn decode_frame(blob: &[u8]) -> Result<Frame<'_>, String> {
    let mut r = blob;
    let mut num = |what: &str, max: u64| -> Result<u64, String> {
        // At most 5 bytes (33 bits): a longer varint is refused before it is read on.
        let head = &r[..r.len().min(5)];
        let mut cur = head;
        let v = leb128::read::unsigned(&mut cur).map_err(|_| format!("bad {what}"))?;
        let used = head.len() - cur.len();
        r = &r[used..];
        if v > max {
            return Err(format!("{what} out of range"));
        }
        Ok(v)
    };
    let stream = num("stream id", u64::from(u32::MAX))? as u32;
    let tagged = num("sequence number", (u64::from(u32::MAX) << 1) | 1)?;
    Ok(Frame {
        stream,
        seq: (tagged >> 1) as u32,
        deflated: tagged & 1 == 1,
        loro: r,
    })
}

/// A peer's claim of what it has (an `Ack` or `LiveAck`), with any counter of our own
/// PeerID beyond what we made (`made`) cut to it: nobody can have our changes we never made.
pub fn clamp_claim(mut claim: VersionVector, our_peer: u64, made: i32) -> VersionVector {
    if claim.get(&our_peer).is_some_and(|c| *c > made) {
        claim.insert(our_peer, made);
    }
    claim
}

/// Our side of a stream to a peer.
#[derive(Debug, Clone)]
struct OutLink {
    stream: u32,
    /// The receiver accepted the stream (its Ack named it).
    open: bool,
    next_seq: u32,
    /// When a frame last went, and when one last expected an answer.
    last_frame: Option<Millis>,
    last_ack_ask: Option<Millis>,
}

/// A peer's stream to us.
#[derive(Debug, Clone)]
struct InLink {
    doc: DocId,
    next_seq: u32,
    last_used: Millis,
}

/// What a frame that arrived means.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next frame of the stream (or a late or replayed earlier one: importing it again
    /// is harmless).
    InOrder(DocId),
    /// Frames were skipped: import this one and ask the sender for what is missing.
    Gap(DocId),
    /// No such stream from this sender.
    Unknown,
}

/// How the next frame to a peer goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Send {
    /// A `Delta` opening stream `n` (the stream is not open yet).
    Open(u32),
    /// A `Live` frame with this stream id and sequence number; `ask`: expecting an answer.
    Frame { stream: u32, seq: u32, ask: bool },
    /// Not before this time (frames go at most once per [`FLUSH_MS`]).
    Wait(Millis),
}

#[derive(Debug, Default)]
pub struct Live {
    next_stream: u32,
    out: BTreeMap<(NodeId, DocId), OutLink>,
    /// When frames last went to each peer (the start of its flush window).
    flushed: BTreeMap<NodeId, Millis>,
    inn: BTreeMap<(NodeId, u32), InLink>,
    /// Per sender: how many of its streams are open here.
    per_sender: BTreeMap<NodeId, usize>,
    /// Counters (tests, logs): gaps seen, frames for unknown streams, opens refused.
    pub gaps: u64,
    pub unknown: u64,
    pub refused_opens: u64,
}

impl Live {
    pub fn new() -> Live {
        Live::default()
    }

    // ----- sending -----

    /// How changes of `doc` go to `peer` now.
    pub fn next_send(&mut self, peer: &NodeId, doc: &DocId, now: Millis) -> Send {
        let key = (peer.clone(), doc.clone());
        if let Some(l) = self.out.get_mut(&key) {
            if !l.open {
                return Send::Open(l.stream);
            }
            // One flush window per peer: every document owed goes at its start, each once.
            if let Some(&t) = self.flushed.get(peer) {
                if (now != t || l.last_frame == Some(now)) && now < t + FLUSH_MS {
                    return Send::Wait(t + FLUSH_MS);
                }
            }
            l.last_frame = Some(now);
            let ask = l.last_ack_ask.is_none_or(|t| now >= t + ACK_EVERY_MS);
            let seq = l.next_seq;
            l.next_seq = l.next_seq.wrapping_add(1);
            self.flushed.insert(peer.clone(), now);
            if ask {
                l.last_ack_ask = Some(now);
            }
            return Send::Frame {
                stream: l.stream,
                seq,
                ask,
            };
        }
        // Stream ids are ours to pick; small numbers keep the frames short.
        self.next_stream = self.next_stream.wrapping_add(1).max(1);
        let stream = self.next_stream;
        self.out.insert(
            key,
            OutLink {
                stream,
                open: false,
                next_seq: 0,
                last_frame: None,
                last_ack_ask: None,
            },
        );
        Send::Open(stream)
    }

    /// `peer` answered the `Delta` that opened `stream` for `doc`: `accepted` if its Ack
    /// named the stream. An old peer does not: it keeps getting `Delta`s.
    pub fn opened(&mut self, peer: &NodeId, doc: &DocId, stream: u32, accepted: bool, now: Millis) {
        if let Some(l) = self.out.get_mut(&(peer.clone(), doc.clone())) {
            if l.stream == stream && accepted {
                l.open = true;
                l.next_seq = 1;
                // The opening Delta was answered just now.
                l.last_ack_ask = Some(now);
            }
        }
    }

    /// The stream to `peer` for `doc` is gone (the peer does not know it, refused a frame,
    /// or an answered frame failed): the next changes open a new one.
    pub fn reset_out(&mut self, peer: &NodeId, doc: &DocId) {
        self.out.remove(&(peer.clone(), doc.clone()));
    }

    /// Whether a stream to `peer` for `doc` is open.
    pub fn is_open(&self, peer: &NodeId, doc: &DocId) -> bool {
        self.out
            .get(&(peer.clone(), doc.clone()))
            .is_some_and(|l| l.open)
    }

    // ----- receiving -----

    /// `from` opens `stream` for `doc` (its `Delta` named it): true if accepted.
    pub fn open_in(&mut self, from: &NodeId, stream: u32, doc: &DocId, now: Millis) -> bool {
        // One stream per sender and document: a new one replaces the old.
        self.drop_in(|k, l| k.0 == *from && (l.doc == *doc || k.1 == stream));
        let n = self.per_sender.get(from).copied().unwrap_or(0);
        if n >= MAX_STREAMS_PER_SENDER || self.inn.len() >= MAX_STREAMS_IN {
            self.refused_opens += 1;
            return false;
        }
        self.inn.insert(
            (from.clone(), stream),
            InLink {
                doc: doc.clone(),
                next_seq: 1,
                last_used: now,
            },
        );
        *self.per_sender.entry(from.clone()).or_default() += 1;
        true
    }

    /// A frame `seq` of `stream` arrived from `from`.
    pub fn arrived(&mut self, from: &NodeId, stream: u32, seq: u32, now: Millis) -> Arrival {
        let Some(l) = self.inn.get_mut(&(from.clone(), stream)) else {
            self.unknown += 1;
            return Arrival::Unknown;
        };
        l.last_used = now;
        let expected = l.next_seq;
        if seq < expected {
            return Arrival::InOrder(l.doc.clone());
        }
        l.next_seq = seq.saturating_add(1);
        if seq == expected {
            Arrival::InOrder(l.doc.clone())
        } else {
            self.gaps += 1;
            Arrival::Gap(l.doc.clone())
        }
    }

    /// Forget every stream, both ways, of `doc` (deleted, left) or, with `peer`, only that
    /// peer's (no longer a member).
    pub fn forget(&mut self, doc: &DocId, peer: Option<&NodeId>) {
        let hit = |n: &NodeId| peer.is_none_or(|p| p == n);
        self.out.retain(|k, _| !(k.1 == *doc && hit(&k.0)));
        let out = &self.out;
        self.flushed.retain(|p, _| out.keys().any(|k| k.0 == *p));
        self.drop_in(|k, l| l.doc == *doc && hit(&k.0));
    }

    fn drop_in(&mut self, gone: impl Fn(&(NodeId, u32), &InLink) -> bool) {
        let per = &mut self.per_sender;
        self.inn.retain(|k, l| {
            if gone(k, l) {
                if let Some(n) = per.get_mut(&k.0) {
                    *n -= 1;
                    if *n == 0 {
                        per.remove(&k.0);
                    }
                }
                false
            } else {
                true
            }
        });
    }

    /// Streams open to us (tests).
    pub fn streams_in(&self) -> usize {
        self.inn.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }
    fn d(s: &str) -> DocId {
        s.parse().unwrap()
    }

    #[test]
    fn frames_round_trip_and_bad_headers_are_refused() {
        for (stream, seq, deflated) in [(1, 0, true), (127, 128, false), (u32::MAX, u32::MAX, true)]
        {
            let f = encode_frame(stream, seq, deflated, b"loro");
            assert!(f.len() <= MAX_HEADER + 4);
            assert_eq!(
                decode_frame(&f),
                Ok(Frame {
                    stream,
                    seq,
                    deflated,
                    loro: b"loro"
                })
            );
        }
        // Short frames: the usual header is 2 or 3 bytes.
        assert_eq!(encode_frame(1, 50, true, b"").len(), 2);
        assert_eq!(encode_frame(1, 8_000, false, b"").len(), 3);
        assert!(decode_frame(&[]).is_err());
        assert!(decode_frame(&[1]).unwrap_err().contains("sequence"));
        // A varint over its range, or never ending, is refused without reading on.
        assert!(decode_frame(&[0xff, 0xff, 0xff, 0xff, 0x7f, 1]).is_err());
        assert!(decode_frame(&[1, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(decode_frame(&[0xff; 1000]).is_err());
    }

    #[test]
    fn an_ack_claiming_changes_we_never_made_is_cut_to_ours() {
        let mut claim = VersionVector::new();
        claim.insert(1, 1_000_000);
        claim.insert(2, 40);
        let v = clamp_claim(claim.clone(), 1, 12);
        assert_eq!(v.get(&1), Some(&12));
        assert_eq!(
            v.get(&2),
            Some(&40),
            "other peers' counters are the claimant's own"
        );
        assert_eq!(clamp_claim(claim, 3, 5).get(&1), Some(&1_000_000));
    }

    #[test]
    fn frames_go_once_per_flush_window_and_ask_for_an_answer_now_and_then() {
        let mut l = Live::new();
        let (p, doc) = (n("bob.os"), d("alice.os/n"));
        let Send::Open(s) = l.next_send(&p, &doc, 0) else {
            panic!()
        };
        // Until the peer accepts, every send is the opening Delta again.
        assert_eq!(l.next_send(&p, &doc, 10), Send::Open(s));
        l.opened(&p, &doc, s + 1, true, 100);
        assert!(
            !l.is_open(&p, &doc),
            "another stream's answer opens nothing"
        );
        l.opened(&p, &doc, s, false, 100);
        assert!(!l.is_open(&p, &doc), "an old peer's Ack opens nothing");
        l.opened(&p, &doc, s, true, 100);
        assert_eq!(
            l.next_send(&p, &doc, 200),
            Send::Frame {
                stream: s,
                seq: 1,
                ask: false
            }
        );
        assert_eq!(l.next_send(&p, &doc, 250), Send::Wait(300));
        // Another document to the same peer shares the window: it goes at its start.
        let other = d("alice.os/m");
        let Send::Open(s2) = l.next_send(&p, &other, 250) else {
            panic!()
        };
        l.opened(&p, &other, s2, true, 250);
        assert_eq!(l.next_send(&p, &other, 260), Send::Wait(300));
        assert!(matches!(l.next_send(&p, &doc, 300), Send::Frame { .. }));
        assert!(matches!(l.next_send(&p, &other, 300), Send::Frame { .. }));
        // A second frame of the same document in the same instant waits for the next window.
        assert_eq!(l.next_send(&p, &doc, 300), Send::Wait(400));
        l.reset_out(&p, &other);
        let mut asks = 0;
        for t in (400..4_400).step_by(100) {
            match l.next_send(&p, &doc, t) {
                Send::Frame { ask, .. } => asks += ask as u32,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(asks, 2, "one answered frame per {ACK_EVERY_MS} ms");
        l.reset_out(&p, &doc);
        assert!(matches!(l.next_send(&p, &doc, 5_000), Send::Open(s2) if s2 != s));
    }

    #[test]
    fn receivers_see_gaps_replays_and_forged_streams_within_bounds() {
        let mut l = Live::new();
        let (a, doc) = (n("alice.os"), d("alice.os/n"));
        assert_eq!(l.arrived(&a, 1, 1, 0), Arrival::Unknown, "never opened");
        assert!(l.open_in(&a, 1, &doc, 0));
        assert_eq!(l.arrived(&a, 1, 1, 0), Arrival::InOrder(doc.clone()));
        assert_eq!(
            l.arrived(&a, 1, 1, 0),
            Arrival::InOrder(doc.clone()),
            "replay"
        );
        assert_eq!(l.arrived(&a, 1, u32::MAX, 0), Arrival::Gap(doc.clone()));
        assert_eq!(
            l.arrived(&a, 1, 2, 0),
            Arrival::InOrder(doc.clone()),
            "late"
        );
        assert_eq!(l.gaps, 1);
        assert_eq!(
            l.arrived(&n("eve.os"), 1, 1, 0),
            Arrival::Unknown,
            "other node"
        );
        assert_eq!(l.unknown, 2);
        // Reopening replaces the stream of that document.
        assert!(l.open_in(&a, 7, &doc, 0));
        assert_eq!(l.arrived(&a, 1, 3, 0), Arrival::Unknown);
        assert_eq!(l.streams_in(), 1);
        // Bounds per sender and in all.
        for i in 0..MAX_STREAMS_PER_SENDER as u32 + 10 {
            l.open_in(&n("eve.os"), i, &d(&format!("eve.os/d{i}")), 0);
        }
        assert_eq!(l.streams_in(), 1 + MAX_STREAMS_PER_SENDER);
        assert_eq!(l.refused_opens, 10);
        l.forget(&doc, Some(&a));
        assert_eq!(l.streams_in(), MAX_STREAMS_PER_SENDER);
        l.forget(&d("eve.os/d3"), None);
        assert_eq!(l.streams_in(), MAX_STREAMS_PER_SENDER - 1);
        assert!(l.open_in(&n("eve.os"), 9_999, &d("eve.os/x"), 0));
    }
}
