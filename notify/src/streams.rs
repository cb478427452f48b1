//! Streams: for each (publisher node, topic) this node holds, the notifications it keeps,
//! in sequence order — the log of a topic of ours (what the outbox sends from) or what
//! we received of a remote topic (what local apps are served from).
//!
//! A stream knows `last`, the highest sequence number it holds every predecessor of (or
//! was told it lost), and `first`, the oldest it still retains. What lies in between is
//! kept as entries: a notification with its payload, or a `Lost` range. Accepting a batch
//! checks order and dedups by sequence number (a notification's id is
//! `<publisher>/<topic>/<seq>`, so that is dedup by id): only `last + 1` is accepted, a
//! copy of anything up to `last` is a duplicate, anything beyond is refused (the sender
//! resends from `last + 1`).
//!
//! Storage: one record per entry (`e <pub> <topic> <seq>`) and one per stream
//! (`s <pub> <topic>`: first, last, whether we subscribed remotely). Each write costs the
//! change only.

use p2p_common::api::notify::{Notification, SeqRange, TopicRetention};
use p2p_common::{Batch, Millis, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stream: (publisher, topic).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamKey {
    pub publisher: NodeId,
    pub topic: String,
}

impl StreamKey {
    pub fn new(publisher: &NodeId, topic: &str) -> Self {
        StreamKey {
            publisher: publisher.clone(),
            topic: topic.to_string(),
        }
    }
    /// The id of notification `seq` of this stream.
    pub fn note_id(&self, seq: u64) -> String {
        format!("{}/{}/{}", self.publisher, self.topic, seq)
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.publisher, self.topic)
    }
}

/// One entry of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Note {
        note: Notification,
        payload: Vec<u8>,
        /// When we stored it (Unix ms, our clock): retention counts from here.
        kept_at: Millis,
    },
    /// Sequence numbers from this entry's key up to `to` will never arrive.
    Lost { to: u64, kept_at: Millis },
}

impl Entry {
    fn kept_at(&self) -> Millis {
        match self {
            Entry::Note { kept_at, .. } | Entry::Lost { kept_at, .. } => *kept_at,
        }
    }
    /// The last sequence number this entry covers (its key is the first).
    pub fn end(&self, seq: u64) -> u64 {
        match self {
            Entry::Note { .. } => seq,
            Entry::Lost { to, .. } => *to,
        }
    }
    fn size(&self) -> usize {
        match self {
            Entry::Note { payload, .. } => payload.len() + 256,
            Entry::Lost { .. } => 64,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum EntryHeader {
    Note { note: Notification, kept_at: Millis },
    Lost { to: u64, kept_at: Millis },
}

/// Entry record: 4-byte header length, the JSON header, then the raw payload.
fn encode_entry(e: &Entry) -> Vec<u8> {
    let (header, payload) = match e {
        Entry::Note {
            note,
            payload,
            kept_at,
        } => (
            EntryHeader::Note {
                note: note.clone(),
                kept_at: *kept_at,
            },
            &payload[..],
        ),
        Entry::Lost { to, kept_at } => (
            EntryHeader::Lost {
                to: *to,
                kept_at: *kept_at,
            },
            &[][..],
        ),
    };
    let h = serde_json::to_vec(&header).expect("serializes");
    let mut v = Vec::with_capacity(4 + h.len() + payload.len());
    v.extend_from_slice(&(h.len() as u32).to_le_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    v
}

fn decode_entry(v: &[u8]) -> Option<Entry> {
    let len = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let h: EntryHeader = serde_json::from_slice(v.get(4..4 + len)?).ok()?;
    let payload = v.get(4 + len..)?.to_vec();
    Some(match h {
        EntryHeader::Note { note, kept_at } => Entry::Note {
            note,
            payload,
            kept_at,
        },
        EntryHeader::Lost { to, kept_at } => Entry::Lost { to, kept_at },
    })
}

/// What a stream's record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StreamRecord {
    first: u64,
    last: u64,
    remote: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<String>,
}

/// Retention: an entry is dropped when it is older than `retention_ms`, or to keep a
/// stream within `max_entries` and `max_bytes`, or when nobody needs it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub retention_ms: Millis,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Retention {
    /// These bounds with a topic's own age and count (its bytes bound stays).
    pub fn with_topic(self, t: TopicRetention) -> Retention {
        Retention {
            retention_ms: t.max_age_s.saturating_mul(1_000),
            max_entries: t.max_count as usize,
            max_bytes: self.max_bytes,
        }
    }
    /// Age and count as the API reports them.
    pub fn as_topic(&self) -> TopicRetention {
        TopicRetention {
            max_age_s: self.retention_ms / 1_000,
            max_count: u32::try_from(self.max_entries).unwrap_or(u32::MAX),
        }
    }
}

impl Default for Retention {
    /// A day, 1,000 notifications (the API's defaults), 8 MiB per stream.
    fn default() -> Self {
        Retention {
            retention_ms: 0,
            max_entries: 0,
            max_bytes: 8 << 20,
        }
        .with_topic(TopicRetention::default())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Oldest retained sequence number (`last + 1` when nothing is retained).
    pub first: u64,
    /// Everything up to here is held or known lost.
    pub last: u64,
    /// A stream of another node's topic that we subscribed to.
    pub remote: bool,
    /// The publisher revoked our subscription (its reason): nothing more is taken
    /// (`remote` is false); its apps get what they have not yet, then `Revoked`, and the
    /// stream goes once they all answered it.
    pub revoked: Option<String>,
    /// Entries by first sequence number.
    pub entries: BTreeMap<u64, Entry>,
    bytes: usize,
}

impl Stream {
    /// The entry covering `seq`, if retained.
    pub fn entry_at(&self, seq: u64) -> Option<(u64, &Entry)> {
        let (&k, e) = self.entries.range(..=seq).next_back()?;
        (e.end(k) >= seq).then_some((k, e))
    }
}

/// The outcome of accepting a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub new: u64,
    pub duplicates: u64,
    /// Notes beyond `last + 1` (a gap before them), or not of this stream.
    pub refused: u64,
}

/// Every stream this node holds. Retention is the caller's to choose per stream (a topic
/// of ours has its own settings; see [`Streams::prune`]).
#[derive(Debug, Default)]
pub struct Streams {
    pub map: BTreeMap<StreamKey, Stream>,
}

fn stream_key(k: &StreamKey) -> Vec<u8> {
    format!("s {} {}", k.publisher, k.topic).into_bytes()
}
fn entry_key(k: &StreamKey, seq: u64) -> Vec<u8> {
    format!("e {} {} {:020}", k.publisher, k.topic, seq).into_bytes()
}

impl Streams {
    pub fn new() -> Self {
        Streams::default()
    }

    pub fn get(&self, k: &StreamKey) -> Option<&Stream> {
        self.map.get(k)
    }

    /// Create a stream starting after `last` (nothing retained) if it does not exist.
    pub fn ensure(&mut self, k: &StreamKey, last: u64, remote: bool, batch: &mut Batch) {
        if !self.map.contains_key(k) {
            self.map.insert(
                k.clone(),
                Stream {
                    first: last + 1,
                    last,
                    remote,
                    ..Stream::default()
                },
            );
            self.write_meta(k, batch);
        }
    }

    /// The publisher of remote stream `k` revoked our subscription: take nothing more of
    /// it, keep what the apps have not received yet (durable in `batch`). False if we do
    /// not subscribe to `k`.
    pub fn revoke(&mut self, k: &StreamKey, reason: String, batch: &mut Batch) -> bool {
        match self.map.get_mut(k) {
            Some(s) if s.remote => {
                s.remote = false;
                s.revoked = Some(reason);
                self.write_meta(k, batch);
                true
            }
            _ => false,
        }
    }

    /// We subscribe to `k` again (its publisher admitted us after a revocation).
    pub fn readmit(&mut self, k: &StreamKey, batch: &mut Batch) {
        if let Some(s) = self.map.get_mut(k).filter(|s| s.revoked.is_some()) {
            s.revoked = None;
            s.remote = true;
            self.write_meta(k, batch);
        }
    }

    /// Remove a stream and its entries.
    pub fn remove(&mut self, k: &StreamKey, batch: &mut Batch) {
        if let Some(s) = self.map.remove(k) {
            for seq in s.entries.keys() {
                batch.ops.push((entry_key(k, *seq), None));
            }
            batch.ops.push((stream_key(k), None));
        }
    }

    fn write_meta(&self, k: &StreamKey, batch: &mut Batch) {
        if let Some(s) = self.map.get(k) {
            let r = StreamRecord {
                first: s.first,
                last: s.last,
                remote: s.remote,
                revoked: s.revoked.clone(),
            };
            batch.ops.push((
                stream_key(k),
                Some(serde_json::to_vec(&r).expect("serializes")),
            ));
        }
    }

    fn push(&mut self, k: &StreamKey, seq: u64, e: Entry, batch: &mut Batch) {
        batch.ops.push((entry_key(k, seq), Some(encode_entry(&e))));
        let s = self.map.get_mut(k).expect("stream exists");
        s.bytes += e.size();
        s.last = e.end(seq);
        s.entries.insert(seq, e);
    }

    /// Append a notification we publish (`note.seq` must be `last + 1`).
    pub fn append(
        &mut self,
        k: &StreamKey,
        note: Notification,
        payload: Vec<u8>,
        wall: Millis,
        batch: &mut Batch,
    ) {
        let seq = note.seq;
        self.push(
            k,
            seq,
            Entry::Note {
                note,
                payload,
                kept_at: wall,
            },
            batch,
        );
        self.write_meta(k, batch);
    }

    /// Accept a batch from the stream's publisher: a lost range first (if it starts right
    /// after `last`), then notes in order. Writes go into `batch`.
    pub fn accept(
        &mut self,
        k: &StreamKey,
        lost: Option<SeqRange>,
        notes: Vec<(Notification, Vec<u8>)>,
        wall: Millis,
        batch: &mut Batch,
    ) -> Accepted {
        let mut out = Accepted::default();
        let Some(s) = self.map.get(k) else {
            out.refused = notes.len() as u64;
            return out;
        };
        let mut last = s.last;
        if let Some(r) = lost {
            if r.from <= last + 1 && r.to > last && r.from <= r.to {
                self.push(
                    k,
                    last + 1,
                    Entry::Lost {
                        to: r.to,
                        kept_at: wall,
                    },
                    batch,
                );
                last = r.to;
            }
        }
        for (note, payload) in notes {
            let ours = note.publisher == k.publisher
                && note.topic == k.topic
                && note.id == k.note_id(note.seq)
                && note.size as usize == payload.len();
            if !ours {
                out.refused += 1;
            } else if note.seq <= last {
                out.duplicates += 1;
            } else if note.seq == last + 1 {
                let seq = note.seq;
                self.push(
                    k,
                    seq,
                    Entry::Note {
                        note,
                        payload,
                        kept_at: wall,
                    },
                    batch,
                );
                last = seq;
                out.new += 1;
            } else {
                out.refused += 1;
            }
        }
        if out.new > 0 || lost.is_some() {
            self.write_meta(k, batch);
        }
        out
    }

    /// Drop entries of `k` that are past `ret`'s age, over its bounds, or covered by
    /// `needed_after` (every reader has everything up to it; `None`: nobody reads). Returns
    /// how many sequence numbers were dropped.
    pub fn prune(
        &mut self,
        k: &StreamKey,
        needed_after: Option<u64>,
        ret: Retention,
        wall: Millis,
        batch: &mut Batch,
    ) -> u64 {
        let Some(s) = self.map.get_mut(k) else {
            return 0;
        };
        let mut dropped = 0;
        loop {
            let Some((&seq, e)) = s.entries.first_key_value() else {
                break;
            };
            let end = e.end(seq);
            let consumed = needed_after.is_none_or(|n| end <= n);
            let expired = wall.saturating_sub(e.kept_at()) > ret.retention_ms;
            let over = s.entries.len() > ret.max_entries || s.bytes > ret.max_bytes;
            if !(consumed || expired || over) {
                break;
            }
            let e = s.entries.remove(&seq).expect("first entry");
            s.bytes = s.bytes.saturating_sub(e.size());
            batch.ops.push((entry_key(k, seq), None));
            // `end` is at most MAX_SEQ (lost ranges are checked on arrival); saturate anyway.
            s.first = end.saturating_add(1);
            dropped += end.saturating_add(1).saturating_sub(seq);
        }
        if s.entries.is_empty() {
            s.first = s.last.saturating_add(1);
        }
        if dropped > 0 {
            self.write_meta(k, batch);
        }
        dropped
    }

    /// Rebuild from records (`s ...` and `e ...`); unreadable records are skipped and
    /// counted.
    pub fn restore(&mut self, records: &p2p_common::Records) -> usize {
        let mut bad = 0;
        for (key, v) in records.range(b"s ".to_vec()..b"s!".to_vec()) {
            let parsed = std::str::from_utf8(&key[2..]).ok().and_then(|rest| {
                let (p, t) = rest.split_once(' ')?;
                Some(StreamKey::new(&NodeId::parse(p).ok()?, t))
            });
            match (parsed, serde_json::from_slice::<StreamRecord>(v)) {
                (Some(k), Ok(r)) => {
                    self.map.insert(
                        k,
                        Stream {
                            first: r.first,
                            last: r.last,
                            remote: r.remote,
                            revoked: r.revoked,
                            ..Stream::default()
                        },
                    );
                }
                _ => bad += 1,
            }
        }
        for (key, v) in records.range(b"e ".to_vec()..b"e!".to_vec()) {
            let parsed = std::str::from_utf8(&key[2..]).ok().and_then(|rest| {
                let mut it = rest.splitn(3, ' ');
                let p = NodeId::parse(it.next()?).ok()?;
                let t = it.next()?;
                let seq: u64 = it.next()?.parse().ok()?;
                Some((StreamKey::new(&p, t), seq))
            });
            match (parsed, decode_entry(v)) {
                (Some((k, seq)), Some(e)) => match self.map.get_mut(&k) {
                    Some(s) => {
                        s.bytes += e.size();
                        s.entries.insert(seq, e);
                    }
                    None => bad += 1,
                },
                _ => bad += 1,
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_common::api::notify::PayloadKind;

    fn key() -> StreamKey {
        StreamKey::new(&"alice.os".parse().unwrap(), "news")
    }

    fn note(seq: u64, payload: &[u8]) -> (Notification, Vec<u8>) {
        (
            Notification {
                id: key().note_id(seq),
                publisher: "alice.os".parse().unwrap(),
                topic: "news".into(),
                seq,
                at: 0,
                kind: PayloadKind::Blob,
                size: payload.len() as u32,
                signature: vec![],
            },
            payload.to_vec(),
        )
    }

    fn apply(records: &mut p2p_common::Records, b: Batch) {
        for (k, v) in b.ops {
            match v {
                Some(v) => records.insert(k, v),
                None => records.remove(&k),
            };
        }
    }

    #[test]
    fn accepts_in_order_only_and_counts_duplicates() {
        let mut s = Streams::new();
        let mut b = Batch::forced();
        s.ensure(&key(), 0, true, &mut b);
        let a = s.accept(
            &key(),
            None,
            vec![note(1, b"a"), note(1, b"a"), note(3, b"c")],
            5,
            &mut b,
        );
        assert_eq!(
            a,
            Accepted {
                new: 1,
                duplicates: 1,
                refused: 1
            }
        );
        assert_eq!(s.get(&key()).unwrap().last, 1);
        // A note claiming another id, publisher or size is refused.
        let (mut forged, p) = note(2, b"b");
        forged.id = "x".into();
        let a = s.accept(&key(), None, vec![(forged, p)], 5, &mut b);
        assert_eq!(a.refused, 1);
        let (mut short, _) = note(2, b"bb");
        short.size = 5;
        assert_eq!(
            s.accept(&key(), None, vec![(short, b"bb".to_vec())], 5, &mut b)
                .refused,
            1
        );
        // A lost range right after `last`, then the next note.
        let a = s.accept(
            &key(),
            Some(SeqRange { from: 2, to: 4 }),
            vec![note(5, b"e")],
            6,
            &mut b,
        );
        assert_eq!(a.new, 1);
        let st = s.get(&key()).unwrap();
        assert_eq!(st.last, 5);
        assert!(matches!(
            st.entry_at(3),
            Some((2, Entry::Lost { to: 4, .. }))
        ));
    }

    #[test]
    fn retention_drops_old_and_consumed_entries_and_restore_rebuilds() {
        let ret = Retention {
            retention_ms: 100,
            max_entries: 3,
            max_bytes: 1 << 20,
        };
        let mut s = Streams::new();
        let mut records = p2p_common::Records::new();
        let mut b = Batch::forced();
        s.ensure(&key(), 0, false, &mut b);
        for i in 1..=5 {
            let (n, p) = note(i, b"x");
            s.append(&key(), n, p, i * 10, &mut b);
        }
        // Over max_entries: the two oldest go.
        assert_eq!(s.prune(&key(), Some(0), ret, 50, &mut b), 2);
        assert_eq!(s.get(&key()).unwrap().first, 3);
        apply(&mut records, b);
        let mut again = Streams::new();
        assert_eq!(again.restore(&records), 0);
        let st = again.get(&key()).unwrap();
        assert_eq!((st.first, st.last, st.entries.len()), (3, 5, 3));
        // Expired by time, then consumed.
        let mut b = Batch::lazy();
        assert_eq!(again.prune(&key(), Some(0), ret, 135, &mut b), 1);
        assert_eq!(again.prune(&key(), Some(4), ret, 135, &mut b), 1);
        assert_eq!(again.prune(&key(), None, ret, 135, &mut b), 1);
        let st = again.get(&key()).unwrap();
        assert_eq!((st.first, st.last), (6, 5));
    }
}
