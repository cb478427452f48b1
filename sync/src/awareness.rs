//! Ephemeral awareness: each member app's caret or selection and state in a document, so an
//! editor can show who is where (docs/sync.md, "Awareness"). Pure: no I/O, `now` is an
//! argument.
//!
//! A last-writer-wins map per document keyed by (node, app process), each entry with a
//! `clock` (a newer one replaces it; an equal one only refreshes its age) and the time its
//! app last set it. Never stored, never in the CRDT. Positions are Loro `Cursor`s on the
//! document's text, so a remote edit before a caret moves it with the text. Loro's own
//! `EphemeralStore` reads the system clock; time is an input here, so it is not used.
//!
//! The core sends what [`Awareness`] hands it: a node's own entries of a document, to the
//! members holding it, at most once per [`FLUSH_MS`] window, and again every
//! [`HEARTBEAT_MS`] while any is set. Loss is fine: the next flush or heartbeat repairs it.

use crate::doc::TEXT;
use crate::vecmap::{VecMap, VecSet};
use loro::cursor::{Cursor, PosType, Side};
use loro::{ContainerTrait as _, LoroDoc};
use p2p_common::api::sync::validate_awareness_state;
use p2p_common::api::sync::{
    AwarenessCursor, AwarenessEntry, AwarenessPeer, AwarenessState, DocId, WireCursor,
    MAX_AWARENESS_PER_NODE, MAX_WIRE_CURSOR,
};
use p2p_common::{Millis, NodeId};

/// An entry not set again for this long expires (on every node alike: an entry travels
/// with its age).
pub const TTL_MS: Millis = 30_000;
/// Changes go out at once, then at most once per window of this length.
pub const FLUSH_MS: Millis = 100;
/// A node's own entries are sent again this often while any is set.
pub const HEARTBEAT_MS: Millis = 10_000;
/// Most entries per document (all nodes), and in all.
pub const MAX_PER_DOC: usize = 64;
pub const MAX_ENTRIES: usize = 4096;

/// A document, node and app process: whose entry changed.
pub type Key = (DocId, NodeId, String);

struct Slot {
    node: NodeId,
    process: String,
    clock: u64,
    /// When its app last set it (our monotonic clock, from the sender's age).
    updated: Millis,
    cursor: Option<(Cursor, Cursor)>,
    state: Option<AwarenessState>,
}

impl Slot {
    fn cleared(&self) -> bool {
        self.cursor.is_none() && self.state.is_none()
    }
    fn wire(&self, now: Millis) -> AwarenessEntry {
        AwarenessEntry {
            node: self.node.clone(),
            process: self.process.clone(),
            clock: self.clock,
            age_ms: now.saturating_sub(self.updated),
            cursor: self.cursor.as_ref().map(|(a, h)| WireCursor {
                anchor: hex(&a.encode()),
                head: hex(&h.encode()),
            }),
            state: self.state.clone(),
        }
    }
}

fn same_cursor(a: &Option<(Cursor, Cursor)>, b: &Option<(Cursor, Cursor)>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some((a1, h1)), Some((a2, h2))) => {
            a1.encode() == a2.encode() && h1.encode() == h2.encode()
        }
        _ => false,
    }
}

/// What the core is to do: send each document's entries (ours) to its holders, and tell
/// subscribers which entries changed.
#[derive(Default)]
pub struct Out {
    pub sends: Vec<(DocId, Vec<AwarenessEntry>)>,
    pub events: Vec<Key>,
}

impl Out {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.events.is_empty()
    }
}

/// Every document's awareness entries, ours and the other members'.
#[derive(Default)]
pub struct Awareness {
    docs: VecMap<DocId, Vec<Slot>>,
    total: usize,
    /// Documents whose own entries are to go out at the next flush.
    dirty: VecSet<DocId>,
    changed: VecSet<Key>,
    /// A flush window is open (its timer armed): changes wait for it.
    pub window: bool,
    clock: u64,
    next_heartbeat: Option<Millis>,
    /// When the tick timer is armed for.
    pub tick_at: Option<Millis>,
    /// Entries refused at the bounds.
    pub refused: u64,
}

impl Awareness {
    /// Entries held in all (tests, bounds).
    pub fn len(&self) -> usize {
        self.total
    }
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn slots(&mut self, doc: &DocId) -> &mut Vec<Slot> {
        if !self.docs.contains_key(doc) {
            self.docs.insert(doc.clone(), Vec::new());
        }
        self.docs.get_mut(doc).expect("inserted")
    }

    fn room(&self, doc: &DocId, node: &NodeId) -> bool {
        let slots = self.docs.get(doc);
        let in_doc = slots.map_or(0, Vec::len);
        let of_node = slots.map_or(0, |s| s.iter().filter(|s| s.node == *node).count());
        self.total < MAX_ENTRIES && in_doc < MAX_PER_DOC && of_node < MAX_AWARENESS_PER_NODE
    }

    /// Our app `process` on `me` sets (or, both `None`, clears) its entry in `doc`. `wall`:
    /// Unix ms, the base of the clock (so a restarted node's entries still win).
    #[allow(clippy::too_many_arguments)]
    pub fn set_local(
        &mut self,
        now: Millis,
        wall: Millis,
        doc: &DocId,
        me: &NodeId,
        process: &str,
        cursor: Option<(Cursor, Cursor)>,
        state: Option<AwarenessState>,
    ) -> Result<(), String> {
        let clock = self.clock.saturating_add(1).max(wall);
        let exists = self
            .docs
            .get(doc)
            .is_some_and(|s| s.iter().any(|s| s.node == *me && s.process == process));
        if !exists {
            if cursor.is_none() && state.is_none() {
                return Ok(());
            }
            if !self.room(doc, me) {
                self.refused += 1;
                return Err(format!(
                    "{doc} has its most awareness entries (at most {MAX_AWARENESS_PER_NODE} apps per node, {MAX_PER_DOC} per document)"
                ));
            }
            self.total += 1;
            self.slots(doc).push(Slot {
                node: me.clone(),
                process: process.to_string(),
                clock: 0,
                updated: now,
                cursor: None,
                state: None,
            });
        }
        let slot = self
            .slots(doc)
            .iter_mut()
            .find(|s| s.node == *me && s.process == process)
            .expect("present");
        slot.updated = now;
        // A renewal (nothing changed) goes out too, with its new age, but is no event.
        let changed = !(same_cursor(&slot.cursor, &cursor) && slot.state == state);
        if changed {
            slot.clock = clock;
            slot.cursor = cursor;
            slot.state = state;
            self.clock = clock;
            self.changed
                .add((doc.clone(), me.clone(), process.to_string()));
        }
        self.dirty.add(doc.clone());
        self.next_heartbeat.get_or_insert(now + HEARTBEAT_MS);
        Ok(())
    }

    /// Clear every entry of ours matching `doc` (all when `None`) and `process`.
    pub fn clear_local(
        &mut self,
        now: Millis,
        wall: Millis,
        me: &NodeId,
        doc: Option<&DocId>,
        process: &str,
    ) {
        let docs: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(d, s)| {
                doc.is_none_or(|x| x == *d)
                    && s.iter()
                        .any(|s| s.node == *me && s.process == process && !s.cleared())
            })
            .map(|(d, _)| d.clone())
            .collect();
        for d in docs {
            let _ = self.set_local(now, wall, &d, me, process, None, None);
        }
    }

    /// Entries `from` sent for `doc`: only its own node's (a claim about another node is
    /// refused, the whole message with it), each checked. Returns how many were applied.
    pub fn receive(
        &mut self,
        now: Millis,
        doc: &DocId,
        text: &LoroDoc,
        from: &NodeId,
        entries: Vec<AwarenessEntry>,
    ) -> Result<usize, String> {
        if entries.len() > MAX_AWARENESS_PER_NODE {
            return Err(format!(
                "at most {MAX_AWARENESS_PER_NODE} awareness entries per node and document"
            ));
        }
        let mut checked = Vec::with_capacity(entries.len());
        for e in entries {
            if e.node != *from {
                return Err(format!(
                    "an awareness entry for {}: a node sends only its own",
                    e.node
                ));
            }
            if e.process.is_empty() || e.process.len() > 256 {
                return Err("an awareness entry's process is 1..=256 bytes".into());
            }
            if let Some(s) = &e.state {
                validate_awareness_state(s)?;
            }
            let cursor = match &e.cursor {
                None => None,
                Some(c) => Some((wire_cursor(text, &c.anchor)?, wire_cursor(text, &c.head)?)),
            };
            checked.push((e, cursor));
        }
        let mut applied = 0;
        for (e, cursor) in checked {
            if e.age_ms >= TTL_MS {
                continue;
            }
            let updated = now.saturating_sub(e.age_ms);
            let at = self.docs.get(doc).and_then(|s| {
                s.iter()
                    .position(|s| s.node == e.node && s.process == e.process)
            });
            let i = match at {
                Some(i) => i,
                None if self.room(doc, from) => {
                    self.total += 1;
                    let slots = self.slots(doc);
                    slots.push(Slot {
                        node: e.node.clone(),
                        process: e.process.clone(),
                        clock: 0,
                        updated,
                        cursor: None,
                        state: None,
                    });
                    slots.len() - 1
                }
                None => {
                    self.refused += 1;
                    continue;
                }
            };
            let slot = &mut self.slots(doc)[i];
            let mut event = false;
            if e.clock > slot.clock {
                let was = slot.cleared();
                let changed = !(same_cursor(&slot.cursor, &cursor) && slot.state == e.state);
                slot.clock = e.clock;
                slot.updated = updated;
                slot.cursor = cursor;
                slot.state = e.state;
                event = changed && !(was && slot.cleared());
                applied += 1;
            } else if e.clock == slot.clock {
                slot.updated = slot.updated.max(updated);
                applied += 1;
            }
            if event {
                self.changed.add((doc.clone(), e.node, e.process));
            }
        }
        Ok(applied)
    }

    /// The live entries of `doc`, sorted by node and process, positions resolved in `text`'s
    /// current text (a position that cannot be resolved yet: cursor `null`).
    pub fn view(
        &self,
        now: Millis,
        doc: &DocId,
        text: &LoroDoc,
        utf16: bool,
    ) -> Vec<AwarenessPeer> {
        let mut v: Vec<AwarenessPeer> = self
            .docs
            .get(doc)
            .into_iter()
            .flatten()
            .filter(|s| !s.cleared() && s.updated + TTL_MS > now)
            .map(|s| AwarenessPeer {
                node: s.node.clone(),
                process: s.process.clone(),
                cursor: s.cursor.as_ref().and_then(|(a, h)| {
                    Some(AwarenessCursor {
                        anchor: resolve(text, a, utf16)?,
                        head: resolve(text, h, utf16)?,
                    })
                }),
                state: s.state.clone(),
                age_ms: now.saturating_sub(s.updated),
            })
            .collect();
        p2p_common::sort::sort_unstable_by(&mut v, |a, b| {
            (&a.node, &a.process).cmp(&(&b.node, &b.process))
        });
        v
    }

    /// Our own entries of each document in `docs`, as they go on the wire.
    fn own(&self, now: Millis, me: &NodeId, docs: &[DocId]) -> Vec<(DocId, Vec<AwarenessEntry>)> {
        docs.iter()
            .filter_map(|d| {
                let e: Vec<AwarenessEntry> = self
                    .docs
                    .get(d)?
                    .iter()
                    .filter(|s| s.node == *me && s.updated + TTL_MS > now)
                    .map(|s| s.wire(now))
                    .collect();
                (!e.is_empty()).then(|| (d.clone(), e))
            })
            .collect()
    }

    /// What changed since the last flush: own entries to send, events. The window stays
    /// open (the core re-arms the flush timer) while something went out.
    pub fn flush(&mut self, now: Millis, me: &NodeId) -> Out {
        let dirty: Vec<DocId> = self.dirty.iter().map(|(d, _)| d.clone()).collect();
        self.dirty = VecSet::new();
        let out = Out {
            sends: self.own(now, me, &dirty),
            events: std::mem::take(&mut self.changed)
                .iter()
                .map(|(k, _)| k.clone())
                .collect(),
        };
        self.window = !out.is_empty();
        out
    }

    /// Whether a change waits for a flush and no window is open (flush now).
    pub fn flush_due(&self) -> bool {
        !self.window && !(self.dirty.is_empty() && self.changed.is_empty())
    }

    /// Expire entries not set for [`TTL_MS`] (events for the live ones), and send our own
    /// again when the heartbeat is due.
    pub fn tick(&mut self, now: Millis, me: &NodeId) -> Out {
        self.tick_at = None;
        let mut expired = Vec::new();
        let mut gone = 0;
        self.docs.retain(|d, slots| {
            slots.retain(|s| {
                let live = s.updated + TTL_MS > now;
                if !live {
                    gone += 1;
                    if !s.cleared() {
                        expired.push((d.clone(), s.node.clone(), s.process.clone()));
                    }
                }
                live
            });
            !slots.is_empty()
        });
        self.total -= gone;
        let mut out = Out::default();
        for k in expired {
            if self.changed.contains(&k) {
                self.changed.remove(&k);
            }
            out.events.push(k);
        }
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            let docs: Vec<DocId> = self.docs.iter().map(|(d, _)| d.clone()).collect();
            out.sends = self.own(now, me, &docs);
            self.next_heartbeat = (!out.sends.is_empty()).then_some(now + HEARTBEAT_MS);
        }
        out
    }

    /// When [`Awareness::tick`] is next due (an expiry or the heartbeat), if ever.
    pub fn next_tick(&self) -> Option<Millis> {
        let expiry = self
            .docs
            .iter()
            .flat_map(|(_, s)| s.iter().map(|s| s.updated + TTL_MS))
            .min();
        match (expiry, self.next_heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forget `doc` (no longer held): nothing is sent, no events.
    pub fn forget_doc(&mut self, doc: &DocId) {
        if let Some(s) = self.docs.remove(doc) {
            self.total -= s.len();
        }
        self.dirty.remove(doc);
        self.changed.retain(|k, _| k.0 != *doc);
    }

    /// Our entries of `doc` cleared, to send before we stop holding it; `doc` forgotten.
    pub fn leave(
        &mut self,
        now: Millis,
        wall: Millis,
        me: &NodeId,
        doc: &DocId,
    ) -> Vec<AwarenessEntry> {
        let procs: Vec<String> = self
            .docs
            .get(doc)
            .into_iter()
            .flatten()
            .filter(|s| s.node == *me && !s.cleared())
            .map(|s| s.process.clone())
            .collect();
        for p in &procs {
            let _ = self.set_local(now, wall, doc, me, p, None, None);
        }
        let sent = self
            .own(now, me, std::slice::from_ref(doc))
            .pop()
            .map(|(_, e)| e)
            .unwrap_or_default();
        self.forget_doc(doc);
        sent
    }

    /// Drop the entries of nodes `keep` refuses (no longer members); events for them.
    pub fn retain_nodes(&mut self, doc: &DocId, keep: impl Fn(&NodeId) -> bool) {
        let Some(slots) = self.docs.get_mut(doc) else {
            return;
        };
        let before = slots.len();
        let mut gone = Vec::new();
        slots.retain(|s| {
            let k = keep(&s.node);
            if !k && !s.cleared() {
                gone.push((doc.clone(), s.node.clone(), s.process.clone()));
            }
            k
        });
        self.total -= before - slots.len();
        for k in gone {
            self.changed.add(k);
        }
    }
}

/// A cursor at code point `pos` (UTF-16 code unit with `utf16`) of `loro`'s text.
pub fn cursor_at(loro: &LoroDoc, pos: u32, utf16: bool) -> Result<Cursor, String> {
    let text = loro.get_text(TEXT);
    let (len, unit) = if utf16 {
        (text.len_utf16(), "UTF-16 code units")
    } else {
        (text.len_unicode(), "characters")
    };
    if pos as usize > len {
        return Err(format!(
            "cursor position {pos} is past the text's end ({len} {unit})"
        ));
    }
    let u = if utf16 {
        text.convert_pos(pos as usize, PosType::Utf16, PosType::Unicode)
            .filter(|u| {
                text.convert_pos(*u, PosType::Unicode, PosType::Utf16) == Some(pos as usize)
            })
            .ok_or_else(|| format!("cursor position {pos} is inside a character"))?
    } else {
        pos as usize
    };
    text.get_cursor(u, Side::Middle)
        .ok_or_else(|| "no cursor at that position".to_string())
}

/// Where `c` is in `loro`'s current text, if it can be resolved.
pub fn resolve(loro: &LoroDoc, c: &Cursor, utf16: bool) -> Option<u32> {
    let p = loro.get_cursor_pos(c).ok()?.current.pos;
    let p = if utf16 {
        loro.get_text(TEXT)
            .convert_pos(p, PosType::Unicode, PosType::Utf16)?
    } else {
        p
    };
    u32::try_from(p).ok()
}

/// A wire cursor: hex of an encoded Loro cursor on the document's text.
fn wire_cursor(loro: &LoroDoc, h: &str) -> Result<Cursor, String> {
    let bad = || "an awareness cursor is not an encoded cursor on the text".to_string();
    if h.len() > MAX_WIRE_CURSOR || h.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let c = Cursor::decode(&bytes).map_err(|_| bad())?;
    if c.container != loro.get_text(TEXT).id() {
        return Err(bad());
    }
    Ok(c)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::parse(s).unwrap()
    }
    fn doc() -> DocId {
        "alice.os/n".parse().unwrap()
    }
    fn text(s: &str) -> LoroDoc {
        let d = LoroDoc::new();
        d.get_text(TEXT).insert(0, s).unwrap();
        d.commit();
        d
    }
    fn caret(d: &LoroDoc, p: u32) -> Option<(Cursor, Cursor)> {
        Some((
            cursor_at(d, p, false).unwrap(),
            cursor_at(d, p, false).unwrap(),
        ))
    }

    #[test]
    fn a_caret_moves_with_text_inserted_before_it() {
        let d = text("hello world");
        let c = cursor_at(&d, 6, false).unwrap();
        d.get_text(TEXT).insert(0, "¡").unwrap();
        d.commit();
        assert_eq!(resolve(&d, &c, false), Some(7));
        // UTF-16: an emoji is two code units.
        d.get_text(TEXT).insert(0, "😀").unwrap();
        d.commit();
        assert_eq!(resolve(&d, &c, false), Some(8));
        assert_eq!(resolve(&d, &c, true), Some(9));
        let u = cursor_at(&d, 9, true).unwrap();
        assert_eq!(resolve(&d, &u, false), Some(8));
        assert!(cursor_at(&d, 1, true).is_err(), "inside the emoji");
        assert!(cursor_at(&d, 14, false).is_err(), "past the end");
        // At the end: stays at the end.
        let end = cursor_at(&d, 13, false).unwrap();
        d.get_text(TEXT).insert(13, "!").unwrap();
        assert_eq!(resolve(&d, &end, false), Some(14));
    }

    #[test]
    fn set_flush_view_and_expire() {
        let d = text("abc");
        let (me, bob) = (node("alice.os"), node("bob.os"));
        let mut a = Awareness::default();
        a.set_local(1_000, 5, &doc(), &me, "app:app:x.os", caret(&d, 2), None)
            .unwrap();
        assert!(a.flush_due());
        let out = a.flush(1_000, &me);
        assert_eq!(out.sends.len(), 1);
        assert_eq!(out.events, vec![(doc(), me.clone(), "app:app:x.os".into())]);
        assert!(a.window && !a.flush_due());
        // bob's node receives it 50 ms later and sees the caret where alice put it.
        let mut b = Awareness::default();
        let entries = out.sends[0].1.clone();
        assert_eq!(
            b.receive(1_050, &doc(), &d, &me, entries.clone()).unwrap(),
            1
        );
        let v = b.view(1_050, &doc(), &d, false);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].cursor, Some(AwarenessCursor { anchor: 2, head: 2 }));
        // A duplicate is no event; a stale one changes nothing.
        b.flush(1_050, &bob);
        b.receive(1_060, &doc(), &d, &me, entries.clone()).unwrap();
        assert!(b.flush(1_060, &bob).events.is_empty());
        // A renewal at alice is sent but is no event.
        a.flush(1_100, &me);
        a.set_local(1_200, 6, &doc(), &me, "app:app:x.os", caret(&d, 2), None)
            .unwrap();
        let out = a.flush(1_200, &me);
        assert_eq!(out.sends.len(), 1);
        assert!(out.events.is_empty());
        // Nothing set again: expired everywhere TTL after the last set.
        assert_eq!(a.next_tick(), Some(1_000 + HEARTBEAT_MS));
        let hb = a.tick(1_000 + HEARTBEAT_MS, &me);
        assert_eq!(hb.sends.len(), 1, "heartbeat");
        assert_eq!(hb.sends[0].1[0].age_ms, HEARTBEAT_MS - 200);
        assert!(
            b.tick(1_059 + TTL_MS, &bob).events.is_empty(),
            "refreshed by the duplicate"
        );
        let gone = b.tick(1_060 + TTL_MS, &bob);
        assert_eq!(gone.events.len(), 1);
        assert!(b.is_empty());
        let gone = a.tick(1_200 + TTL_MS, &me);
        assert_eq!(gone.events.len(), 1);
        assert!(a.is_empty() && a.next_tick().is_none());
    }

    #[test]
    fn cleared_entries_replace_older_ones_and_are_not_shown() {
        let d = text("abc");
        let me = node("alice.os");
        let mut a = Awareness::default();
        let st: AwarenessState = [("name".to_string(), "A".to_string())].into();
        a.set_local(0, 100, &doc(), &me, "p", caret(&d, 1), Some(st))
            .unwrap();
        let set = a.flush(0, &me).sends.remove(0).1;
        a.set_local(10, 100, &doc(), &me, "p", None, None).unwrap();
        let clear = a.flush(10, &me).sends.remove(0).1;
        assert!(clear[0].clock > set[0].clock);
        let mut b = Awareness::default();
        b.receive(20, &doc(), &d, &me, clear).unwrap();
        // The older set arrives late (reordered): it does not come back.
        b.receive(21, &doc(), &d, &me, set).unwrap();
        assert!(b.view(22, &doc(), &d, false).is_empty());
        assert!(a.view(22, &doc(), &d, false).is_empty());
    }

    #[test]
    fn hostile_entries_are_refused() {
        let d = text("abc");
        let (bob, carol) = (node("bob.os"), node("carol.os"));
        let mut a = Awareness::default();
        let entry = |n: &NodeId, p: &str| AwarenessEntry {
            node: n.clone(),
            process: p.into(),
            clock: 1,
            age_ms: 0,
            cursor: None,
            state: Some([("k".to_string(), "v".to_string())].into()),
        };
        // bob speaks for carol: the whole message is refused.
        let e = a
            .receive(
                0,
                &doc(),
                &d,
                &bob,
                vec![entry(&bob, "p"), entry(&carol, "p")],
            )
            .unwrap_err();
        assert!(e.contains("only its own"), "{e}");
        assert!(a.is_empty());
        // Too many entries in one message; garbage cursors; a cursor on another container.
        let many: Vec<_> = (0..=MAX_AWARENESS_PER_NODE)
            .map(|i| entry(&bob, &format!("p{i}")))
            .collect();
        assert!(a.receive(0, &doc(), &d, &bob, many).is_err());
        let mut bad = entry(&bob, "p");
        bad.cursor = Some(WireCursor {
            anchor: "zz".into(),
            head: "00".into(),
        });
        assert!(a.receive(0, &doc(), &d, &bob, vec![bad.clone()]).is_err());
        let other = d.get_list("l");
        other.insert(0, 1).unwrap();
        let c = other.get_cursor(0, Side::Middle).unwrap();
        bad.cursor = Some(WireCursor {
            anchor: hex(&c.encode()),
            head: hex(&c.encode()),
        });
        assert!(a.receive(0, &doc(), &d, &bob, vec![bad]).is_err());
        let mut big = entry(&bob, "p");
        big.state = Some([("k".to_string(), "v".repeat(2000))].into());
        assert!(a.receive(0, &doc(), &d, &bob, vec![big]).is_err());
        assert!(a.is_empty());
        // Per node at most MAX_AWARENESS_PER_NODE entries, however many messages.
        for i in 0..3 * MAX_AWARENESS_PER_NODE {
            let _ = a.receive(0, &doc(), &d, &bob, vec![entry(&bob, &format!("p{i}"))]);
        }
        assert_eq!(a.len(), MAX_AWARENESS_PER_NODE);
        assert_eq!(a.refused, 2 * MAX_AWARENESS_PER_NODE as u64);
        // Per document at most MAX_PER_DOC.
        for n in 0..2 * MAX_PER_DOC {
            let who = node(&format!("n{n}.os"));
            let _ = a.receive(0, &doc(), &d, &who, vec![entry(&who, "p")]);
        }
        assert_eq!(a.len(), MAX_PER_DOC);
        a.retain_nodes(&doc(), |n| *n != bob);
        assert_eq!(a.len(), MAX_PER_DOC - MAX_AWARENESS_PER_NODE);
        a.forget_doc(&doc());
        assert!(a.is_empty());
    }
}
