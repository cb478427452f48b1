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

use litemap::LiteMap;
use loro::VersionVector;
use p2p_common::api::sync::DocId;
use p2p_common::{Millis, NodeId};

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
/// A version in a `LiveAck` is at most this long (a document has at most 65 nodes of 16
/// PeerIDs, about 12 bytes each in Loro's encoding); a longer one is taken for no version.
pub const MAX_VERSION_BYTES: usize = 16 << 10;
/// Frames (documents) in one `LiveFrames` message at most, sent or accepted: a receiver
/// says its own bound in the `Ack` that opens a stream (`frames`), and a sender packs at
/// most the smaller of the two.
pub const MAX_FRAMES_PER_MESSAGE: usize = 64;
/// A `LiveFrames` message's blob is at most this long: a flush whose frames are longer goes
/// as several messages (a single frame longer than this goes alone).
pub const MAX_FRAMES_BYTES: usize = 256 << 10;

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

/// One frame of a batch as it is sent: the frame's bytes ([`encode_frame`]) and whether it
/// expects an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub ask: bool,
    pub frame: Vec<u8>,
}

/// Packs `parts` into the blobs of as few `LiveFrames` messages as the bounds allow, each
/// at most `max_parts` parts and [`MAX_FRAMES_BYTES`] (a part longer than that alone); the
/// parts keep their order. A part is its length shifted left by one, with the lowest bit set
/// when it expects an answer (LEB128), then the frame.
pub fn pack_frames(parts: &[Part], max_parts: usize) -> Vec<Vec<Part>> {
    let max_parts = max_parts.max(1);
    let mut out: Vec<Vec<Part>> = Vec::new();
    let mut bytes = 0;
    for p in parts {
        let len = p.frame.len() + 5;
        let fits = out
            .last()
            .is_some_and(|m| m.len() < max_parts && bytes + len <= MAX_FRAMES_BYTES);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += len;
        out.last_mut().expect("pushed").push(p.clone());
    }
    out
}

/// The blob of one `LiveFrames` message.
pub fn encode_frames(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.frame.len() + 3).sum());
    for p in parts {
        let _ = leb128::write::unsigned(&mut out, (p.frame.len() as u64) << 1 | u64::from(p.ask));
        out.extend_from_slice(&p.frame);
    }
    out
}

/// Splits a `LiveFrames` blob into its parts (whether each expects an answer, its frame),
/// reading no further than `max` parts: more, or a length past the blob's end, refuses the
/// whole message (its parts cannot be told apart). A part's frame is checked on its own.
pub fn split_frames(blob: &[u8], max: usize) -> Result<Vec<(bool, &[u8])>, String> {
    let mut r = blob;
    let mut parts = Vec::new();
    while !r.is_empty() {
        if parts.len() >= max {
            return Err(format!("more than {max} frames in one message"));
        }
        let head = &r[..r.len().min(5)];
        let mut cur = head;
        let tagged = leb128::read::unsigned(&mut cur).map_err(|_| "bad frame length")?;
        r = &r[head.len() - cur.len()..];
        let len = usize::try_from(tagged >> 1).unwrap_or(usize::MAX);
        if len > r.len() {
            return Err(format!(
                "frame {} is {len} bytes, {} left in the message",
                parts.len(),
                r.len()
            ));
        }
        parts.push((tagged & 1 == 1, &r[..len]));
        r = &r[len..];
    }
    if parts.is_empty() {
        return Err("no frames".into());
    }
    Ok(parts)
}

/// The answer to a `LiveFrames` message that expects one (`LiveAck`'s blob): per part that
/// asked, in order, the receiver's version after it (Loro's `VersionVector::encode`) or
/// None if the part was refused; each is its length (LEB128, 0 = refused), then the bytes.
pub fn encode_frame_answers(answers: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in answers {
        let v = a.as_deref().unwrap_or_default();
        let _ = leb128::write::unsigned(&mut out, v.len() as u64);
        out.extend_from_slice(v);
    }
    out
}

/// Reads [`encode_frame_answers`]: exactly `n` answers, else an error.
pub fn decode_frame_answers(blob: &[u8], n: usize) -> Result<Vec<Option<VersionVector>>, String> {
    let mut r = blob;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let head = &r[..r.len().min(5)];
        let mut cur = head;
        let len = leb128::read::unsigned(&mut cur).map_err(|_| "bad answer length")? as usize;
        r = &r[head.len() - cur.len()..];
        if len > r.len() {
            return Err("answer past the end".into());
        }
        if len > MAX_VERSION_BYTES {
            return Err(format!("a version of {len} bytes"));
        }
        out.push(if len == 0 {
            None
        } else {
            Some(VersionVector::decode(&r[..len]).map_err(|e| format!("not a version: {e}"))?)
        });
        r = &r[len..];
    }
    if !r.is_empty() {
        return Err("more answers than frames asked".into());
    }
    Ok(out)
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
    out: LiteMap<(NodeId, DocId), OutLink>,
    /// When frames last went to each peer (the start of its flush window).
    flushed: LiteMap<NodeId, Millis>,
    inn: LiteMap<(NodeId, u32), InLink>,
    /// Peers that take `LiveFrames` (their opening Ack said `frames`), with how many frames
    /// per message; a peer not here (of an older version) gets one `Live` message per frame.
    framed: LiteMap<NodeId, usize>,
    /// Per sender: how many of its streams are open here.
    per_sender: LiteMap<NodeId, usize>,
    /// Counters (tests, logs): gaps seen, frames for unknown streams, opens refused.
    pub gaps: u64,
    pub unknown: u64,
    pub refused_opens: u64,
    /// Frames of `LiveFrames` messages refused (each message logs one line at most).
    pub refused_frames: u64,
    /// Streams dropped to make room for a new one (the table was full).
    pub evicted: u64,
}

impl Live {
    pub fn new() -> Live {
        Live::default()
    }

    // ----- sending -----

    /// How changes of `doc` go to `peer` now. `in_flush`: a frame to `peer` went in this
    /// same flush (the sender's pass over what it owes the peer), so this one may join it.
    pub fn next_send(&mut self, peer: &NodeId, doc: &DocId, now: Millis, in_flush: bool) -> Send {
        let key = (peer.clone(), doc.clone());
        if let Some(l) = self.out.get_mut(&key) {
            if !l.open {
                return Send::Open(l.stream);
            }
            // One flush window per peer: the documents owed at its start go together, each
            // once; one owed later in the window waits for its end (so a burst of edits to
            // many documents leaves as one message, not one per document).
            if let Some(&t) = self.flushed.get(peer) {
                let joins = now == t && in_flush && l.last_frame != Some(now);
                if !joins && now < t + FLUSH_MS {
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

    /// An empty frame of `doc` to `peer` expecting an answer, when frames went one-way since
    /// the last answer (the last of them may be lost, and no later frame would ask): its
    /// stream and sequence number, if the stream is open and no frame asked within
    /// [`ACK_EVERY_MS`].
    pub fn probe(&mut self, peer: &NodeId, doc: &DocId, now: Millis) -> Option<(u32, u32)> {
        let l = self.out.get_mut(&(peer.clone(), doc.clone()))?;
        if !l.open || l.last_ack_ask.is_some_and(|t| now < t + ACK_EVERY_MS) {
            return None;
        }
        l.last_ack_ask = Some(now);
        l.last_frame = Some(now);
        let seq = l.next_seq;
        l.next_seq = l.next_seq.wrapping_add(1);
        Some((l.stream, seq))
    }

    /// `peer` answered the `Delta` that opened `stream` for `doc`: `accepted` if its Ack
    /// named the stream. An old peer does not: it keeps getting `Delta`s. `frames`: the
    /// Ack's bound of frames per `LiveFrames` message (None: the peer takes `Live` only).
    pub fn opened(
        &mut self,
        peer: &NodeId,
        doc: &DocId,
        stream: u32,
        accepted: bool,
        frames: Option<u32>,
        now: Millis,
    ) {
        if let Some(l) = self.out.get_mut(&(peer.clone(), doc.clone())) {
            if l.stream == stream && accepted {
                match frames {
                    Some(n) if n >= 2 => {
                        let n = (n as usize).min(MAX_FRAMES_PER_MESSAGE);
                        self.framed.insert(peer.clone(), n);
                    }
                    _ => {
                        self.framed.remove(peer);
                    }
                }
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

    /// How many frames one `LiveFrames` message to `peer` may carry; None: it takes `Live`
    /// messages only (a peer of an older version).
    pub fn frames_to(&self, peer: &NodeId) -> Option<usize> {
        self.framed.get(peer).copied()
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
        if n >= MAX_STREAMS_PER_SENDER {
            self.refused_opens += 1;
            return false;
        }
        if self.inn.len() >= MAX_STREAMS_IN {
            // Full: the stream used least recently goes (its sender reopens it if it is
            // still alive: its next answered frame learns the stream is gone).
            let oldest = self
                .inn
                .iter()
                .min_by_key(|(_, l)| l.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.evicted += 1;
                self.drop_in(|key, _| *key == k);
            }
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
        self.framed.retain(|p, _| out.keys().any(|k| k.0 == *p));
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

    fn part(ask: bool, len: usize) -> Part {
        Part {
            ask,
            frame: encode_frame(3, 9, false, &vec![7; len]),
        }
    }

    #[test]
    fn a_flush_packs_into_as_few_messages_as_the_bounds_allow() {
        // Forty small frames: one message.
        let small: Vec<Part> = (0..40).map(|i| part(i % 7 == 0, 100)).collect();
        let packed = pack_frames(&small, MAX_FRAMES_PER_MESSAGE);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0], small, "order kept");
        // The receiver's bound of frames per message.
        assert_eq!(pack_frames(&small, 16).len(), 3);
        assert_eq!(pack_frames(&small, 0).len(), 40, "at least one per message");
        // Over the byte cap: as many messages as the bytes need, each within the cap.
        let big: Vec<Part> = (0..10).map(|_| part(false, 60_000)).collect();
        let packed = pack_frames(&big, MAX_FRAMES_PER_MESSAGE);
        let total: usize = big.iter().map(|p| p.frame.len()).sum();
        assert_eq!(packed.len(), total.div_ceil(MAX_FRAMES_BYTES));
        for m in &packed {
            assert!(encode_frames(m).len() <= MAX_FRAMES_BYTES);
        }
        // A frame longer than the cap goes alone.
        let huge = vec![
            part(false, 10),
            part(true, MAX_FRAMES_BYTES + 1),
            part(false, 10),
        ];
        let packed = pack_frames(&huge, MAX_FRAMES_PER_MESSAGE);
        assert_eq!(packed.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn frames_split_back_and_broken_framing_is_refused_whole() {
        let parts = vec![part(true, 5), part(false, 0), part(true, 300)];
        let blob = encode_frames(&parts);
        let split = split_frames(&blob, 8).unwrap();
        assert_eq!(split.len(), 3);
        for ((ask, bytes), p) in split.iter().zip(&parts) {
            assert_eq!((*ask, *bytes), (p.ask, &p.frame[..]));
        }
        // Each frame decodes on its own.
        assert_eq!(decode_frame(split[2].1).unwrap().loro.len(), 300);
        assert!(split_frames(&blob, 2).unwrap_err().contains("more than 2"));
        assert!(split_frames(&[], 8).is_err(), "no frames");
        // A length past the end, or a length that never ends: nothing can be told apart.
        assert!(split_frames(&blob[..blob.len() - 1], 8).is_err());
        assert!(split_frames(&[0xff; 9], 8).is_err());
        // 10,000 empty frames: refused after reading the bound's worth of lengths.
        let flood = vec![0u8; 10_000];
        assert!(split_frames(&flood, MAX_FRAMES_PER_MESSAGE).is_err());
        // A frame whose own header is bad still splits: it is refused by itself.
        let bad = encode_frames(&[
            Part {
                ask: false,
                frame: vec![0xff; 6],
            },
            part(false, 1),
        ]);
        let split = split_frames(&bad, 8).unwrap();
        assert!(decode_frame(split[0].1).is_err());
        assert!(decode_frame(split[1].1).is_ok());
    }

    #[test]
    fn frame_answers_round_trip_and_must_match_the_frames_asked() {
        let mut v = VersionVector::new();
        v.insert(5, 40);
        let blob = encode_frame_answers(&[Some(v.encode()), None]);
        assert_eq!(
            decode_frame_answers(&blob, 2).unwrap(),
            vec![Some(v.clone()), None]
        );
        assert!(decode_frame_answers(&blob, 1).is_err(), "one too many");
        assert!(decode_frame_answers(&blob, 3).is_err(), "one too few");
        assert!(decode_frame_answers(&[9, 1], 1).is_err(), "past the end");
        assert_eq!(decode_frame_answers(&[], 0).unwrap(), vec![]);
    }

    #[test]
    fn a_peer_takes_frames_batched_only_once_its_ack_said_so() {
        let mut l = Live::new();
        let (p, doc) = (n("bob.os"), d("alice.os/n"));
        let Send::Open(s) = l.next_send(&p, &doc, 0, false) else {
            panic!()
        };
        l.opened(&p, &doc, s, true, None, 10);
        assert_eq!(l.frames_to(&p), None, "an older peer: one Live per frame");
        l.opened(&p, &doc, s, true, Some(1_000_000), 10);
        assert_eq!(
            l.frames_to(&p),
            Some(MAX_FRAMES_PER_MESSAGE),
            "capped at ours"
        );
        l.opened(&p, &doc, s, true, Some(8), 10);
        assert_eq!(l.frames_to(&p), Some(8));
        l.opened(&p, &doc, s + 1, true, None, 10);
        assert_eq!(
            l.frames_to(&p),
            Some(8),
            "another stream's answer changes nothing"
        );
        l.forget(&doc, None);
        assert_eq!(l.frames_to(&p), None, "forgotten with its last stream");
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
        let Send::Open(s) = l.next_send(&p, &doc, 0, false) else {
            panic!()
        };
        // Until the peer accepts, every send is the opening Delta again.
        assert_eq!(l.next_send(&p, &doc, 10, false), Send::Open(s));
        l.opened(&p, &doc, s + 1, true, None, 100);
        assert!(
            !l.is_open(&p, &doc),
            "another stream's answer opens nothing"
        );
        l.opened(&p, &doc, s, false, None, 100);
        assert!(!l.is_open(&p, &doc), "an old peer's Ack opens nothing");
        l.opened(&p, &doc, s, true, None, 100);
        assert_eq!(
            l.next_send(&p, &doc, 200, false),
            Send::Frame {
                stream: s,
                seq: 1,
                ask: false
            }
        );
        assert_eq!(l.next_send(&p, &doc, 250, false), Send::Wait(300));
        // Another document to the same peer shares the window: it goes at its start.
        let other = d("alice.os/m");
        let Send::Open(s2) = l.next_send(&p, &other, 250, false) else {
            panic!()
        };
        l.opened(&p, &other, s2, true, None, 250);
        assert_eq!(l.next_send(&p, &other, 260, false), Send::Wait(300));
        assert!(matches!(
            l.next_send(&p, &doc, 300, false),
            Send::Frame { .. }
        ));
        // Owed at the same instant but not in the same flush: it waits for the window's end.
        assert_eq!(l.next_send(&p, &other, 300, false), Send::Wait(400));
        assert!(matches!(
            l.next_send(&p, &other, 300, true),
            Send::Frame { .. }
        ));
        // A second frame of the same document in the same instant waits for the next window.
        assert_eq!(l.next_send(&p, &doc, 300, true), Send::Wait(400));
        l.reset_out(&p, &other);
        let mut asks = 0;
        for t in (400..4_400).step_by(100) {
            match l.next_send(&p, &doc, t, false) {
                Send::Frame { ask, .. } => asks += ask as u32,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(asks, 2, "one answered frame per {ACK_EVERY_MS} ms");
        l.reset_out(&p, &doc);
        assert!(matches!(l.next_send(&p, &doc, 5_000, false), Send::Open(s2) if s2 != s));
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

    #[test]
    fn a_full_table_evicts_the_stream_used_least_recently() {
        let mut l = Live::new();
        let senders = MAX_STREAMS_IN / MAX_STREAMS_PER_SENDER;
        for s in 0..senders {
            let from = n(&format!("s{s}.os"));
            for i in 0..MAX_STREAMS_PER_SENDER as u32 {
                let t = (s * MAX_STREAMS_PER_SENDER) as Millis + Millis::from(i) + 1;
                assert!(l.open_in(&from, i, &d(&format!("s{s}.os/d{i}")), t));
            }
        }
        assert_eq!(l.streams_in(), MAX_STREAMS_IN);
        // s0's stream 0 was used last just now: s0's stream 1 is the oldest.
        assert!(matches!(
            l.arrived(&n("s0.os"), 0, 1, 10_000),
            Arrival::InOrder(_)
        ));
        assert!(l.open_in(&n("late.os"), 1, &d("late.os/x"), 10_001));
        assert_eq!(l.streams_in(), MAX_STREAMS_IN);
        assert_eq!(l.evicted, 1);
        assert_eq!(l.arrived(&n("s0.os"), 1, 1, 10_002), Arrival::Unknown);
        assert!(matches!(
            l.arrived(&n("s0.os"), 0, 2, 10_002),
            Arrival::InOrder(_)
        ));
        assert!(matches!(
            l.arrived(&n("late.os"), 1, 1, 10_002),
            Arrival::InOrder(_)
        ));
    }

    #[test]
    fn a_probe_asks_only_on_an_open_stream_not_asked_lately() {
        let mut l = Live::new();
        let (p, doc) = (n("bob.os"), d("alice.os/n"));
        assert_eq!(l.probe(&p, &doc, 0), None, "no stream");
        let Send::Open(s) = l.next_send(&p, &doc, 0, false) else {
            panic!()
        };
        assert_eq!(l.probe(&p, &doc, 0), None, "not open yet");
        l.opened(&p, &doc, s, true, Some(64), 100);
        assert_eq!(
            l.probe(&p, &doc, 1_000),
            None,
            "the opening answer was just now"
        );
        assert_eq!(l.probe(&p, &doc, 2_100), Some((s, 1)));
        assert_eq!(l.probe(&p, &doc, 2_200), None, "asked just now");
        assert!(matches!(
            l.next_send(&p, &doc, 2_300, false),
            Send::Frame {
                seq: 2,
                ask: false,
                ..
            }
        ));
    }
}
