//! Undo and redo of one app's own edits, recorded by element identity.
//!
//! Every app on this node writes a document with the node's one Loro PeerID, so Loro cannot
//! tell one app's changes from another's; this module keeps, per app and document, what each
//! of the app's edits did, in terms that stay true however the document moves on:
//!
//! - an insert is remembered as the Loro IDs of the elements it created (a few runs of
//!   consecutive IDs); undoing it deletes those of them still there, wherever they now are;
//! - a delete is remembered as the deleted content and a cursor on its first element;
//!   undoing it inserts the content again where that element would be now;
//! - a field write as the value it replaced; undoing it writes that value back only while the
//!   field still holds what the app wrote (a later write, local or remote, wins);
//! - an increment as its amount; undoing it adds the opposite.
//!
//! Undo and redo are new local changes, replicated like any edit. Another app's edits and
//! remote changes are never part of an app's step, so an app's undo takes back its own edits
//! only. An edit made at an older version (`Edit` with `at`, applied where the user saw it) is
//! a step like any other: its elements' IDs are the same wherever it was applied.
//!
//! Bounds: [`MAX_UNDO_APPS`] apps per document keep a history (further apps' `Undo` is
//! refused), [`MAX_UNDO_STEPS`] steps each for undo and for redo, and [`MAX_UNDO_BYTES`] of
//! recorded content per app and document (the oldest steps go first; a single step larger
//! than that ends the history). The history lives in memory only: after a restart (or a
//! fresh join) it starts empty.

use crate::doc::TEXT;
use loro::cursor::{Cursor, Side};
use loro::{ContainerID, ContainerTrait, LoroDoc, LoroValue, ValueOrContainer, ID};
use std::collections::VecDeque;

/// Apps per document whose edits keep an undo history.
pub const MAX_UNDO_APPS: usize = 8;
/// Undo steps kept per app and document (older ones are forgotten); redo steps likewise.
pub const MAX_UNDO_STEPS: usize = 64;
/// Recorded content (deleted text and values, replaced field values) kept per app and
/// document, undo and redo together.
pub const MAX_UNDO_BYTES: usize = 1 << 20;
/// Recorded content kept on this node, all documents together: past it, the histories of
/// the documents least recently edited or undone are forgotten (`SyncCore` enforces it).
pub const MAX_UNDO_BYTES_NODE: usize = 16 << 20;

/// A sequence container: the text, or list `l:<name>` (its root name).
#[derive(Clone, Debug, PartialEq)]
pub enum Seq {
    Text,
    List(String),
}

/// Elements one insert created: `len` consecutive Loro IDs of `peer` from `start`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    peer: u64,
    start: i32,
    len: i32,
}

impl Run {
    fn has(&self, id: ID) -> bool {
        id.peer == self.peer && id.counter >= self.start && id.counter < self.start + self.len
    }
}

/// Content taken out of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Items {
    Text(String),
    Values(Vec<LoroValue>),
}

impl Items {
    fn count(&self) -> usize {
        match self {
            Items::Text(s) => s.chars().count(),
            Items::Values(v) => v.len(),
        }
    }
}

/// What takes back one op (or one part of it).
#[derive(Clone, Debug)]
pub enum Inverse {
    /// Delete the elements of `runs` still in `seq`.
    Remove { seq: Seq, runs: Vec<Run> },
    /// Insert `items` where the element under `at` (their first) would be now, kept after
    /// element `left` and before element `right` (their visible neighbours when they were
    /// deleted) while those are there; `origin` is the position when recorded, used only
    /// if the cursor does not resolve. `was`: the IDs the items had.
    Restore {
        seq: Seq,
        at: Cursor,
        left: Option<ID>,
        right: Option<ID>,
        origin: usize,
        items: Items,
        was: Vec<Run>,
    },
    /// For each (field, expect, set): if the field holds `expect` (None: absent), make it
    /// `set` (None: delete it).
    Fields {
        item: String,
        entries: Vec<(String, Option<LoroValue>, Option<LoroValue>)>,
    },
    /// Add `by` to counter `c:<counter>`.
    Add { counter: String, by: f64 },
}

/// One edit's inverses, in the order of the edit's ops (applied last to first).
pub type Step = Vec<Inverse>;

/// A list or map value: what the API never writes, and undo does not put back (its size is
/// not bounded by what the history counts).
fn nested(v: &LoroValue) -> bool {
    matches!(
        v,
        LoroValue::List(_) | LoroValue::Map(_) | LoroValue::Container(_)
    )
}

fn value_bytes(v: &LoroValue) -> usize {
    match v {
        LoroValue::String(s) => s.len() + 16,
        LoroValue::Binary(b) => b.len() + 16,
        _ => 16,
    }
}

fn step_bytes(step: &Step) -> usize {
    step.iter()
        .map(|inv| {
            48 + match inv {
                Inverse::Remove { runs, .. } => runs.len() * 16,
                Inverse::Restore { items, was, .. } => {
                    was.len() * 16
                        + match items {
                            Items::Text(s) => s.len(),
                            Items::Values(v) => v.iter().map(value_bytes).sum::<usize>(),
                        }
                }
                Inverse::Fields { item, entries } => {
                    item.len()
                        + entries
                            .iter()
                            .map(|(f, a, b)| {
                                f.len()
                                    + a.as_ref().map_or(0, value_bytes)
                                    + b.as_ref().map_or(0, value_bytes)
                            })
                            .sum::<usize>()
                }
                Inverse::Add { counter, .. } => counter.len(),
            }
        })
        .sum()
}

/// Reading and writing a sequence container by position (code points for the text).
struct SeqRef<'a> {
    loro: &'a LoroDoc,
    seq: &'a Seq,
}

impl SeqRef<'_> {
    fn len(&self) -> usize {
        match self.seq {
            Seq::Text => self.loro.get_text(TEXT).len_unicode(),
            Seq::List(n) => self.loro.get_list(n.as_str()).len(),
        }
    }

    fn container(&self) -> ContainerID {
        match self.seq {
            Seq::Text => self.loro.get_text(TEXT).id(),
            Seq::List(n) => self.loro.get_list(n.as_str()).id(),
        }
    }

    fn id_at(&self, p: usize) -> Option<ID> {
        match self.seq {
            Seq::Text => self
                .loro
                .get_text(TEXT)
                .get_cursor(p, Side::Middle)
                .and_then(|c| c.id),
            Seq::List(n) => self.loro.get_list(n.as_str()).get_id_at(p),
        }
    }

    fn cursor(&self, p: usize) -> Option<Cursor> {
        match self.seq {
            Seq::Text => self.loro.get_text(TEXT).get_cursor(p, Side::Middle),
            Seq::List(n) => self.loro.get_list(n.as_str()).get_cursor(p, Side::Middle),
        }
    }

    /// Where the element `id` is now, or would be if it was deleted.
    fn pos_of(&self, id: ID, container: &ContainerID) -> Option<usize> {
        let c = Cursor::new(Some(id), container.clone(), Side::Middle, 0);
        self.loro.get_cursor_pos(&c).ok().map(|r| r.current.pos)
    }

    fn items(&self, p: usize, n: usize) -> Option<Items> {
        match self.seq {
            Seq::Text => self
                .loro
                .get_text(TEXT)
                .slice(p, p + n)
                .ok()
                .map(Items::Text),
            Seq::List(name) => {
                let list = self.loro.get_list(name.as_str());
                // Nested containers and values (the API never makes them) come back as null.
                let values = (p..p + n)
                    .map(|i| match list.get(i) {
                        Some(ValueOrContainer::Value(v)) if !nested(&v) => v,
                        _ => LoroValue::Null,
                    })
                    .collect();
                Some(Items::Values(values))
            }
        }
    }

    fn insert(&self, p: usize, items: &Items) -> bool {
        match (self.seq, items) {
            (Seq::Text, Items::Text(s)) => self.loro.get_text(TEXT).insert(p, s).is_ok(),
            (Seq::List(n), Items::Values(vs)) => {
                let list = self.loro.get_list(n.as_str());
                vs.iter()
                    .enumerate()
                    .all(|(i, v)| list.insert(p + i, v.clone()).is_ok())
            }
            _ => false,
        }
    }

    fn delete(&self, p: usize, n: usize) -> bool {
        match self.seq {
            Seq::Text => self.loro.get_text(TEXT).delete(p, n).is_ok(),
            Seq::List(name) => self.loro.get_list(name.as_str()).delete(p, n).is_ok(),
        }
    }

    /// The runs of IDs of the `n` elements from position `p`, just inserted: one insert's
    /// elements have consecutive IDs, so the first and the last usually tell.
    fn runs(&self, p: usize, n: usize) -> Vec<Run> {
        if n == 0 {
            return Vec::new();
        }
        if let (Some(a), Some(b)) = (self.id_at(p), self.id_at(p + n - 1)) {
            if a.peer == b.peer && i64::from(b.counter) - i64::from(a.counter) == n as i64 - 1 {
                return vec![Run {
                    peer: a.peer,
                    start: a.counter,
                    len: n as i32,
                }];
            }
        }
        self.scan(p, n)
    }

    /// The runs of IDs of the `n` elements from position `p`, element by element.
    fn scan(&self, p: usize, n: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for id in (p..p + n).filter_map(|q| self.id_at(q)) {
            match runs.last_mut() {
                Some(r) if r.peer == id.peer && r.start + r.len == id.counter => r.len += 1,
                _ => runs.push(Run {
                    peer: id.peer,
                    start: id.counter,
                    len: 1,
                }),
            }
        }
        runs
    }

    /// Restores for the `n` elements from `p`, about to be deleted, leaving out those in
    /// `skip` (elements the same step inserted: undoing the insert covers them).
    fn restores(&self, p: usize, n: usize, skip: &[Run]) -> Vec<Inverse> {
        let mut groups: Vec<(usize, usize)> = Vec::new();
        if skip.is_empty() {
            groups.push((p, n));
        } else {
            for q in p..p + n {
                if self
                    .id_at(q)
                    .is_some_and(|id| skip.iter().any(|r| r.has(id)))
                {
                    continue;
                }
                match groups.last_mut() {
                    Some((s, k)) if *s + *k == q => *k += 1,
                    _ => groups.push((q, 1)),
                }
            }
        }
        groups
            .into_iter()
            .filter(|(_, k)| *k > 0)
            .filter_map(|(s, k)| {
                Some(Inverse::Restore {
                    seq: self.seq.clone(),
                    at: self.cursor(s)?,
                    left: s.checked_sub(1).and_then(|l| self.id_at(l)),
                    right: self.id_at(s + k),
                    origin: s,
                    items: self.items(s, k)?,
                    was: self.scan(s, k),
                })
            })
            .collect()
    }
}

/// Records one edit's inverses as its ops apply (positions are code points, before the op
/// for deletes and writes, after it for inserts).
#[derive(Default)]
pub struct Recorder {
    step: Step,
}

impl Recorder {
    /// After inserting `n` elements at `p`.
    pub fn inserted(&mut self, loro: &LoroDoc, seq: Seq, p: usize, n: usize) {
        let runs = SeqRef { loro, seq: &seq }.runs(p, n);
        if !runs.is_empty() {
            self.step.push(Inverse::Remove { seq, runs });
        }
    }

    /// Before deleting `n` elements at `p`.
    pub fn deleting(&mut self, loro: &LoroDoc, seq: Seq, p: usize, n: usize) {
        if n == 0 {
            return;
        }
        let own: Vec<Run> = self
            .step
            .iter()
            .filter_map(|inv| match inv {
                Inverse::Remove { seq: s, runs } if *s == seq => Some(runs.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let r = SeqRef { loro, seq: &seq };
        let restores = r.restores(p, n, &own);
        self.step.extend(restores);
    }

    /// Before writing `field` of item `item` (`new`: None deletes it).
    pub fn writing(&mut self, loro: &LoroDoc, item: &str, field: &str, new: Option<LoroValue>) {
        let map = loro.get_map(format!("i:{item}").as_str());
        let old = match map.get(field) {
            Some(ValueOrContainer::Value(v)) if !nested(&v) => Some(v),
            None => None,
            // A nested container or value (the API never writes one) is not put back.
            Some(_) => return,
        };
        self.step.push(Inverse::Fields {
            item: item.into(),
            entries: vec![(field.into(), new, old)],
        });
    }

    /// Before removing every field of item `item`.
    pub fn clearing(&mut self, loro: &LoroDoc, item: &str) {
        let map = loro.get_map(format!("i:{item}").as_str());
        let mut entries = Vec::new();
        map.for_each(|k, v| {
            if let ValueOrContainer::Value(v) = v {
                if !nested(&v) {
                    entries.push((k.to_string(), None, Some(v)));
                }
            }
        });
        if !entries.is_empty() {
            self.step.push(Inverse::Fields {
                item: item.into(),
                entries,
            });
        }
    }

    pub fn incremented(&mut self, counter: &str, by: f64) {
        self.step.push(Inverse::Add {
            counter: counter.into(),
            by: -by,
        });
    }

    pub fn finish(self) -> Step {
        self.step
    }
}

/// Elements an undo re-created: (the IDs they had, the IDs they have now), in order.
type Remap = (Vec<Run>, Vec<Run>);

/// Apply one inverse; what takes it back in turn (empty: it changed nothing). A restore adds
/// to `remaps`.
fn apply(loro: &LoroDoc, inv: &Inverse, remaps: &mut Vec<Remap>) -> Vec<Inverse> {
    match inv {
        Inverse::Remove { seq, runs } => {
            let r = SeqRef { loro, seq };
            let container = r.container();
            let len = r.len();
            // A run's elements keep their order: those still there lie between where its
            // first and its last element are (or would be). One pass over the union of those
            // windows, however many runs: the work is bounded by the sequence's length.
            let mut windows: Vec<(usize, usize)> = Vec::new();
            for run in runs {
                if len == 0 {
                    break;
                }
                let first = r.pos_of(ID::new(run.peer, run.start), &container);
                let last = r.pos_of(ID::new(run.peer, run.start + run.len - 1), &container);
                if let (Some(a), Some(b)) = (first, last) {
                    if a <= b.min(len - 1) {
                        windows.push((a, b.min(len - 1)));
                    }
                }
            }
            p2p_common::sort::sort_unstable(&mut windows);
            let mut sorted: Vec<Run> = runs.clone();
            p2p_common::sort::sort_unstable_by(&mut sorted, |x, y| {
                (x.peer, x.start).cmp(&(y.peer, y.start))
            });
            let mine = |id: ID| {
                let i = sorted.partition_point(|x| (x.peer, x.start) <= (id.peer, id.counter));
                i > 0 && sorted[i - 1].has(id)
            };
            let mut at: Vec<usize> = Vec::new();
            let mut next = 0;
            for (a, b) in windows {
                for p in a.max(next)..=b {
                    if r.id_at(p).is_some_and(mine) {
                        at.push(p);
                    }
                }
                next = next.max(b + 1);
            }
            let mut groups: Vec<(usize, usize)> = Vec::new();
            for p in at {
                match groups.last_mut() {
                    Some((s, n)) if *s + *n == p => *n += 1,
                    _ => groups.push((p, 1)),
                }
            }
            let mut back = Vec::new();
            // From the back, so earlier positions stay valid.
            for (s, n) in groups.into_iter().rev() {
                let restore = r.restores(s, n, &[]);
                if r.delete(s, n) {
                    back.extend(restore);
                }
            }
            back
        }
        Inverse::Restore {
            seq,
            at,
            left,
            right,
            origin,
            items,
            was,
        } => {
            let r = SeqRef { loro, seq };
            let len = r.len();
            let container = r.container();
            // Where the first deleted element would be, but between the neighbours while
            // they are there: text put back since (with new IDs) may sit on either side of
            // the items' own tombstones.
            let alive = |id: Option<ID>| {
                let id = id?;
                let p = r.pos_of(id, &container)?;
                (r.id_at(p) == Some(id)).then_some(p)
            };
            let lo = alive(*left).map_or(0, |p| p + 1);
            let hi = alive(*right).unwrap_or(len).max(lo);
            let p = loro
                .get_cursor_pos(at)
                .map(|q| q.current.pos)
                .unwrap_or(*origin)
                .clamp(lo, hi)
                .min(len);
            let n = items.count();
            if n == 0 || !r.insert(p, items) {
                return Vec::new();
            }
            let runs = r.runs(p, n);
            remaps.push((was.clone(), runs.clone()));
            vec![Inverse::Remove {
                seq: seq.clone(),
                runs,
            }]
        }
        Inverse::Fields { item, entries } => {
            let map = loro.get_map(format!("i:{item}").as_str());
            let mut back = Vec::new();
            for (field, expect, set) in entries {
                let now = match map.get(field) {
                    Some(ValueOrContainer::Value(v)) => Some(v),
                    None => None,
                    Some(ValueOrContainer::Container(_)) => continue,
                };
                if now != *expect {
                    continue;
                }
                let done = match set {
                    Some(v) => map.insert(field, v.clone()).is_ok(),
                    None => map.delete(field).is_ok(),
                };
                if done {
                    back.push((field.clone(), set.clone(), expect.clone()));
                }
            }
            if back.is_empty() {
                return Vec::new();
            }
            vec![Inverse::Fields {
                item: item.clone(),
                entries: back,
            }]
        }
        Inverse::Add { counter, by } => {
            let c = loro.get_counter(format!("c:{counter}").as_str());
            if c.increment(*by).is_err() {
                return Vec::new();
            }
            vec![Inverse::Add {
                counter: counter.clone(),
                by: -by,
            }]
        }
    }
}

/// In `step`, elements `was` become `now` (an undo re-created them with new IDs), so that
/// an earlier insert's undo still finds them.
fn remap_step(step: &mut [Inverse], was: &[Run], now: &[Run]) {
    for inv in step {
        match inv {
            Inverse::Remove { runs, .. } => *runs = remap(runs, was, now),
            Inverse::Restore { left, right, .. } => {
                for id in [left, right].into_iter().flatten() {
                    if was.iter().any(|r| r.has(*id)) {
                        let one = [Run {
                            peer: id.peer,
                            start: id.counter,
                            len: 1,
                        }];
                        if let [r] = remap(&one, was, now).as_slice() {
                            *id = ID::new(r.peer, r.start);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn total(runs: &[Run]) -> i64 {
    runs.iter().map(|r| i64::from(r.len)).sum()
}

/// `runs` with each element of `was` replaced by the element of `now` at the same index.
fn remap(runs: &[Run], was: &[Run], now: &[Run]) -> Vec<Run> {
    if total(was) != total(now) {
        return runs.to_vec();
    }
    let mut out: Vec<Run> = Vec::new();
    let mut emit = |r: Run| {
        if r.len <= 0 {
            return;
        }
        match out.last_mut() {
            Some(l) if l.peer == r.peer && l.start + l.len == r.start => l.len += r.len,
            _ => out.push(r),
        }
    };
    for r in runs {
        // Where `r` overlaps `was`: (first counter, end counter, index in `was`).
        let mut hits: Vec<(i32, i32, i64)> = Vec::new();
        let mut off = 0i64;
        for w in was {
            if w.peer == r.peer {
                let lo = r.start.max(w.start);
                let hi = (r.start + r.len).min(w.start + w.len);
                if lo < hi {
                    hits.push((lo, hi, off + i64::from(lo - w.start)));
                }
            }
            off += i64::from(w.len);
        }
        p2p_common::sort::sort_unstable(&mut hits);
        let mut cur = r.start;
        for (lo, hi, idx) in hits {
            emit(Run {
                peer: r.peer,
                start: cur,
                len: lo - cur,
            });
            // Indices idx..idx + (hi - lo) of `now`.
            let (mut want, mut left) = (idx, i64::from(hi - lo));
            let mut off = 0i64;
            for n in now {
                let end = off + i64::from(n.len);
                if left > 0 && want < end && want >= off {
                    let take = left.min(end - want);
                    emit(Run {
                        peer: n.peer,
                        start: n.start + (want - off) as i32,
                        len: take as i32,
                    });
                    want += take;
                    left -= take;
                }
                off = end;
            }
            cur = hi;
        }
        emit(Run {
            peer: r.peer,
            start: cur,
            len: r.start + r.len - cur,
        });
    }
    out
}

/// One app's history.
struct History {
    app: String,
    undo: VecDeque<(Step, usize)>,
    redo: VecDeque<(Step, usize)>,
    bytes: usize,
}

impl History {
    fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
        self.bytes = 0;
    }

    /// Push `step` on the undo (`redo`: redo) stack, forgetting the oldest steps past the
    /// bounds. A step over the byte budget by itself is not kept, and neither is what lies
    /// beyond it (taking that back would skip it): made by an edit, it ends the history;
    /// made by an undo (a redo), the redo (undo) stack is emptied and the other stays.
    fn push(&mut self, step: Step, redo: bool, edit: bool) {
        let b = step_bytes(&step);
        if b > MAX_UNDO_BYTES {
            if edit {
                self.clear();
            } else {
                let stack = if redo { &mut self.redo } else { &mut self.undo };
                for (_, b) in stack.drain(..) {
                    self.bytes -= b;
                }
            }
            return;
        }
        self.bytes += b;
        let stack = if redo { &mut self.redo } else { &mut self.undo };
        stack.push_back((step, b));
        while stack.len() > MAX_UNDO_STEPS {
            if let Some((_, b)) = stack.pop_front() {
                self.bytes -= b;
            }
        }
        while self.bytes > MAX_UNDO_BYTES {
            // The oldest undo step first, then the furthest redo step.
            let Some((_, b)) = self.undo.pop_front().or_else(|| self.redo.pop_front()) else {
                break;
            };
            self.bytes -= b;
        }
    }
}

/// The undo histories of one document, one per app.
#[derive(Default)]
pub struct Undo {
    apps: Vec<History>,
    /// When an app last edited or undid here (see [`Undo::touch`]).
    used: u64,
}

impl Undo {
    /// Recorded content kept, every app's.
    pub fn bytes(&self) -> usize {
        self.apps.iter().map(|h| h.bytes).sum()
    }

    /// Note that an app edited or undid at `now` (milliseconds).
    pub fn touch(&mut self, now: u64) {
        self.used = now;
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    /// Forget every app's history (to bound the node's memory).
    pub fn forget(&mut self) {
        for h in &mut self.apps {
            h.clear();
        }
    }

    /// A recorder for `app`'s next edit, or None if [`MAX_UNDO_APPS`] other apps keep a
    /// history here. The app's history starts with its first edit.
    pub fn recorder(&mut self, app: &str) -> Option<Recorder> {
        if !self.apps.iter().any(|h| h.app == app) {
            let fresh = History {
                app: app.into(),
                undo: VecDeque::new(),
                redo: VecDeque::new(),
                bytes: 0,
            };
            if self.apps.len() < MAX_UNDO_APPS {
                self.apps.push(fresh);
            } else if let Some(h) = self
                .apps
                .iter_mut()
                .find(|h| h.undo.is_empty() && h.redo.is_empty())
            {
                // A slot whose history is empty (used up, or forgotten) goes to the new app.
                *h = fresh;
            } else {
                return None;
            }
        }
        Some(Recorder::default())
    }

    /// `app`'s edit is done: its step goes on the undo stack, and what it could redo is gone.
    pub fn record(&mut self, app: &str, step: Step) {
        let Some(h) = self.apps.iter_mut().find(|h| h.app == app) else {
            return;
        };
        if step.is_empty() {
            return;
        }
        for (_, b) in h.redo.drain(..) {
            h.bytes -= b;
        }
        h.push(step, false, true);
    }

    /// Undo (or redo) `app`'s last step that still changes something, as local changes (not
    /// committed). An error says there is nothing to undo (redo).
    pub fn step(&mut self, loro: &LoroDoc, app: &str, redo: bool) -> Result<(), String> {
        let what = if redo { "redo" } else { "undo" };
        let nothing = || {
            format!("nothing to {what}: this app has no edit of this document left to {what} (the history starts empty when sync starts)")
        };
        let full = self.apps.len() >= MAX_UNDO_APPS;
        let Some(k) = self.apps.iter().position(|h| h.app == app) else {
            return Err(if full {
                format!("nothing to {what}: undo history is kept for at most {MAX_UNDO_APPS} apps per document")
            } else {
                nothing()
            });
        };
        // Each round consumes one step; a step that became a no-op (say its text was deleted
        // by another node meanwhile) is dropped and the one before it tried.
        loop {
            let h = &mut self.apps[k];
            let popped = if redo {
                h.redo.pop_back()
            } else {
                h.undo.pop_back()
            };
            let Some((mut step, b)) = popped else {
                return Err(nothing());
            };
            h.bytes -= b;
            let mut back: Step = Vec::new();
            let mut remaps: Vec<Remap> = Vec::new();
            for i in (0..step.len()).rev() {
                let before = remaps.len();
                back.extend(apply(loro, &step[i], &mut remaps));
                for (was, now) in &remaps[before..] {
                    remap_step(&mut step[..i], was, now);
                }
            }
            // Elements put back have new IDs: every history's inserts follow them.
            for (was, now) in &remaps {
                for h in &mut self.apps {
                    for (s, _) in h.undo.iter_mut().chain(h.redo.iter_mut()) {
                        remap_step(s, was, now);
                    }
                }
            }
            if back.is_empty() {
                continue;
            }
            // Applied last to first, like an edit's step: what was undone last is redone
            // first.
            self.apps[k].push(back, !redo, false);
            return Ok(());
        }
    }
}

/// Keep the histories of `docs` (a node's documents) within `cap` bytes: past it, those of
/// the documents least recently edited or undone are forgotten, never `docs[current]`'s
/// (one document's histories are bounded far below the node's).
pub fn bound_node(docs: &mut [&mut Undo], current: usize, cap: usize) {
    let mut total: usize = docs.iter().map(|u| u.bytes()).sum();
    if total <= cap {
        return;
    }
    let mut lru: Vec<(u64, usize)> = docs
        .iter()
        .enumerate()
        .filter(|(i, u)| *i != current && u.bytes() > 0)
        .map(|(i, u)| (u.used, i))
        .collect();
    p2p_common::sort::sort_unstable(&mut lru);
    for (_, i) in lru {
        if total <= cap {
            break;
        }
        total -= docs[i].bytes();
        docs[i].forget();
    }
}

#[cfg(test)]
mod tests {
    use super::{bound_node, MAX_UNDO_APPS, MAX_UNDO_BYTES};
    use crate::doc::tests::{d, ins, sync};
    use p2p_common::api::sync::{Op, Value};

    fn del(pos: u32, len: u32) -> Op {
        Op::Delete { pos, len }
    }

    #[test]
    fn an_apps_undo_takes_back_only_its_own_edits_and_redo_restores_them() {
        let mut a = d(1);
        a.edit("app-a", &[ins(0, "A1 ")], None, false).unwrap();
        a.edit("app-b", &[ins(3, "B1 ")], None, false).unwrap();
        a.edit("app-a", &[ins(6, "A2")], None, false).unwrap();
        a.edit("app-b", &[ins(8, " B2")], None, false).unwrap();
        assert_eq!(a.text(), "A1 B1 A2 B2");
        a.undo("app-a", false).unwrap();
        assert_eq!(a.text(), "A1 B1  B2", "A's last edit only");
        a.undo("app-a", false).unwrap();
        assert_eq!(a.text(), "B1  B2");
        let err = a.undo("app-a", false).unwrap_err();
        assert!(err.contains("nothing to undo"), "{err}");
        a.undo("app-a", true).unwrap();
        assert_eq!(a.text(), "A1 B1  B2");
        // B's history is untouched by A's undo and redo.
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "A1 B1 ");
        // An app that never edited has nothing to undo.
        assert!(a.undo("app-c", false).is_err());
        assert!(a.undo("app-c", true).is_err());
    }

    #[test]
    fn undo_keeps_remote_edits_and_replicates() {
        let (mut a, mut b) = (d(1), d(2));
        a.edit("app", &[ins(0, "hello")], None, false).unwrap();
        sync(&mut a, &mut b);
        b.edit("app", &[ins(0, ">> ")], None, false).unwrap();
        a.edit("app", &[ins(5, " world")], None, false).unwrap();
        sync(&mut a, &mut b);
        assert_eq!(a.text(), ">> hello world");
        // The remote edit is no step of ours: undo takes back " world", then "hello".
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), ">> hello");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), ">> ");
        assert!(
            a.undo("app", false).is_err(),
            "b's edit is never undone on a"
        );
        sync(&mut a, &mut b);
        assert_eq!(b.text(), ">> ");
        a.undo("app", true).unwrap();
        sync(&mut a, &mut b);
        assert_eq!(b.text(), ">> hello");
    }

    #[test]
    fn undoing_a_delete_puts_the_text_back_where_it_was_after_remote_edits() {
        let (mut a, mut b) = (d(1), d(2));
        a.edit("app", &[ins(0, "one two three")], None, false)
            .unwrap();
        sync(&mut a, &mut b);
        a.edit("app", &[del(3, 4)], None, false).unwrap();
        assert_eq!(a.text(), "one three");
        b.edit("app", &[ins(0, "zero "), ins(18, "!")], None, false)
            .unwrap();
        sync(&mut a, &mut b);
        assert_eq!(a.text(), "zero one three!");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "zero one two three!");
        a.undo("app", true).unwrap();
        assert_eq!(a.text(), "zero one three!");
        a.undo("app", false).unwrap();
        sync(&mut a, &mut b);
        assert_eq!(b.text(), "zero one two three!");
        // Undo of the first insert takes out exactly a's characters, b's stay.
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "zero !");
    }

    #[test]
    fn a_splice_in_one_edit_undoes_as_one_step() {
        let mut a = d(1);
        a.edit("app", &[ins(0, "hello")], None, false).unwrap();
        // Replace "ell" by "ipp", then delete part of what this same edit inserted.
        a.edit("app", &[del(1, 3), ins(1, "ippy"), del(4, 1)], None, false)
            .unwrap();
        assert_eq!(a.text(), "hippo");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "hello");
        a.undo("app", true).unwrap();
        assert_eq!(a.text(), "hippo");
        a.undo("app", false).unwrap();
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "");
    }

    #[test]
    fn undo_of_an_insert_partly_deleted_by_a_peer_removes_the_rest_and_redo_brings_back_only_that()
    {
        let (mut a, mut b) = (d(1), d(2));
        a.edit("app", &[ins(0, "abcdef")], None, false).unwrap();
        sync(&mut a, &mut b);
        b.edit("app", &[del(1, 2), ins(3, "XY")], None, false)
            .unwrap();
        sync(&mut a, &mut b);
        assert_eq!(a.text(), "adeXYf");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "XY");
        a.undo("app", true).unwrap();
        assert_eq!(a.text(), "adeXYf");
        // Deleted entirely by the peer: the step is a no-op, dropped; nothing else to undo.
        sync(&mut a, &mut b);
        b.edit("app", &[del(0, 6)], None, false).unwrap();
        sync(&mut a, &mut b);
        let err = a.undo("app", false).unwrap_err();
        assert!(err.contains("nothing to undo"), "{err}");
    }

    #[test]
    fn fields_lists_and_counters_undo_and_a_later_write_wins() {
        let (mut a, mut b) = (d(1), d(2));
        let up = |f: &str, v: i64| Op::Update {
            item_id: "t".into(),
            field: f.into(),
            value: Value::Int(v),
        };
        a.edit("app", &[up("x", 1), up("y", 1)], None, false)
            .unwrap();
        a.edit(
            "app",
            &[
                up("x", 2),
                up("y", 2),
                Op::Increment {
                    counter: "n".into(),
                    by: 5,
                },
                Op::ListInsert {
                    list: "l".into(),
                    index: 0,
                    value: Value::Str("p".into()),
                },
                Op::ListInsert {
                    list: "l".into(),
                    index: 1,
                    value: Value::Str("q".into()),
                },
            ],
            None,
            false,
        )
        .unwrap();
        sync(&mut a, &mut b);
        b.edit("app", &[up("y", 9)], None, false).unwrap();
        sync(&mut a, &mut b);
        a.undo("app", false).unwrap();
        let c = a.content();
        let field = |c: &p2p_common::api::sync::Content, f: &str| {
            c.items[0]
                .fields
                .iter()
                .find(|x| x.field == f)
                .map(|x| x.value.clone())
        };
        assert_eq!(field(&c, "x"), Some(Value::Int(1)), "put back");
        assert_eq!(field(&c, "y"), Some(Value::Int(9)), "b's later write stays");
        assert_eq!(c.counters[0].value, 0.0);
        assert!(c.lists.iter().all(|l| l.values.is_empty()), "{:?}", c.lists);
        a.undo("app", false).unwrap();
        let c = a.content();
        assert_eq!(field(&c, "x"), None, "the first write undone: absent again");
        // RemoveItem and ListDelete come back too.
        a.undo("app", true).unwrap();
        a.undo("app", true).unwrap();
        a.edit(
            "app",
            &[
                Op::RemoveItem {
                    item_id: "t".into(),
                },
                Op::ListDelete {
                    list: "l".into(),
                    index: 0,
                    len: 2,
                },
            ],
            None,
            false,
        )
        .unwrap();
        assert!(a.content().items.is_empty());
        a.undo("app", false).unwrap();
        let c = a.content();
        assert_eq!(field(&c, "x"), Some(Value::Int(2)));
        assert_eq!(field(&c, "y"), Some(Value::Int(9)));
        assert_eq!(
            c.lists[0].values,
            vec![Value::Str("p".into()), Value::Str("q".into())]
        );
        sync(&mut a, &mut b);
        assert_eq!(a.content().items, b.content().items);
    }

    #[test]
    fn an_edit_at_an_older_version_is_a_step_like_any_other() {
        let (mut a, mut b) = (d(1), d(2));
        a.edit("app-a", &[ins(0, "abc")], None, false).unwrap();
        a.edit("app-b", &[ins(3, "def")], None, false).unwrap();
        sync(&mut a, &mut b);
        let seen = a.vv();
        b.edit("app", &[ins(0, "X")], None, false).unwrap();
        sync(&mut a, &mut b);
        a.edit("app-a", &[ins(6, "!")], Some(&seen), false).unwrap();
        a.edit("app-b", &[ins(0, "<")], None, false).unwrap();
        assert_eq!(a.text(), "<Xabcdef!");
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "Xabcdef!");
        a.undo("app-a", false).unwrap();
        assert_eq!(a.text(), "Xabcdef");
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "Xabc");
        // A delete made at the older version, in UTF-16 positions, undone.
        a.edit("app-a", &[ins(4, "😀ok")], None, true).unwrap();
        let seen = a.vv();
        b.edit("app", &[ins(0, "Y")], None, false).unwrap();
        sync(&mut a, &mut b);
        a.edit("app-a", &[del(4, 2)], Some(&seen), true).unwrap();
        assert_eq!(a.text(), "YXabcok");
        a.undo("app-a", false).unwrap();
        assert_eq!(a.text(), "YXabc😀ok");
    }

    #[test]
    fn histories_are_bounded_in_apps_and_bytes() {
        let mut a = d(1);
        for i in 0..MAX_UNDO_APPS + 2 {
            a.edit(&format!("app-{i}"), &[ins(0, "x")], None, false)
                .unwrap();
        }
        let last = format!("app-{}", MAX_UNDO_APPS + 1);
        let err = a.undo(&last, false).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        // The untracked app's edits are nobody's step: app-0 undoes its own only.
        a.undo("app-0", false).unwrap();
        assert_eq!(a.text().len(), MAX_UNDO_APPS + 1);
        assert!(a.undo("app-0", false).is_err());

        // Deleting more than the byte budget at once ends the history.
        let mut b = d(2);
        let big = "y".repeat(MAX_UNDO_BYTES / 8 + 1);
        for _ in 0..9 {
            let n = b.text().chars().count() as u32;
            b.edit("app", &[ins(n, &big)], None, false).unwrap();
        }
        b.edit("app", &[ins(0, "z")], None, false).unwrap();
        let n = b.text().chars().count() as u32;
        b.edit("app", &[del(0, n)], None, false).unwrap();
        let err = b.undo("app", false).unwrap_err();
        assert!(err.contains("nothing to undo"), "{err}");
        let h = &b.undo.apps[0];
        assert_eq!((h.undo.len(), h.bytes), (0, 0));
        // Within the budget, the oldest steps give way.
        for _ in 0..30 {
            b.edit("app", &[ins(0, &big)], None, false).unwrap();
            let n = big.chars().count() as u32;
            b.edit("app", &[del(0, n)], None, false).unwrap();
        }
        let h = &b.undo.apps[0];
        assert!(
            h.bytes <= MAX_UNDO_BYTES && h.undo.len() < 60,
            "{} {}",
            h.bytes,
            h.undo.len()
        );
    }

    #[test]
    fn the_node_bound_forgets_the_least_recently_used_documents_first() {
        let mut docs: Vec<_> = (1..=4).map(d).collect();
        for (i, doc) in docs.iter_mut().enumerate() {
            doc.edit("app", &[ins(0, &"x".repeat(1000))], None, false)
                .unwrap();
            doc.edit("app", &[del(0, 1000)], None, false).unwrap();
            // Last used: document 1 first, then 0, 3, 2.
            doc.undo.touch([20, 10, 40, 30][i]);
        }
        let each = docs[0].undo.bytes();
        assert!(each > 1000, "{each}");
        let mut undos: Vec<_> = docs.iter_mut().map(|d| &mut d.undo).collect();
        bound_node(&mut undos, 1, 4 * each);
        assert!(
            undos.iter().all(|u| u.bytes() == each),
            "within the cap: kept"
        );
        // Room for two: the least recently used (document 1) is current, so the next two
        // (0, then 3) go.
        bound_node(&mut undos, 1, 2 * each);
        let kept: Vec<bool> = undos.iter().map(|u| u.bytes() > 0).collect();
        assert_eq!(kept, [false, true, true, false]);
        // The current document's history stays even alone over the cap.
        bound_node(&mut undos, 1, 0);
        let kept: Vec<bool> = undos.iter().map(|u| u.bytes() > 0).collect();
        assert_eq!(kept, [false, true, false, false]);
        assert!(docs[1].undo("app", false).is_ok());
        let err = docs[3].undo("app", false).unwrap_err();
        assert!(err.contains("nothing to undo"), "{err}");
    }

    #[test]
    fn text_put_back_by_another_apps_redo_keeps_its_order() {
        let mut a = d(1);
        a.edit("A", &[ins(0, "abc")], None, false).unwrap();
        a.edit("B", &[del(1, 1)], None, false).unwrap();
        a.undo("A", false).unwrap();
        assert_eq!(a.text(), "");
        a.undo("A", true).unwrap();
        assert_eq!(a.text(), "ac");
        // "a" was put back with a new ID: B's restore still goes right after it.
        a.undo("B", false).unwrap();
        assert_eq!(a.text(), "abc");
    }

    #[test]
    fn a_field_written_at_an_older_version_undoes_to_what_the_document_held() {
        let (mut a, mut b) = (d(3), d(2));
        let up = |v: i64| Op::Update {
            item_id: "t".into(),
            field: "x".into(),
            value: Value::Int(v),
        };
        let x = |d: &crate::doc::Doc| {
            d.content().items[0]
                .fields
                .iter()
                .find(|f| f.field == "x")
                .map(|f| f.value.clone())
        };
        a.edit("app", &[up(1)], None, false).unwrap();
        sync(&mut a, &mut b);
        let seen = a.vv();
        b.edit("app", &[up(2)], None, false).unwrap();
        sync(&mut a, &mut b);
        // Written while the app looked at the version before b's write (peer 3 wins ties).
        a.edit("app", &[up(3), ins(0, "q")], Some(&seen), false)
            .unwrap();
        assert_eq!(x(&a), Some(Value::Int(3)));
        a.undo("app", false).unwrap();
        assert_eq!(x(&a), Some(Value::Int(2)), "not the stale 1 of the view");
    }

    #[test]
    fn utf16_positions_inside_a_surrogate_pair_are_refused_whole() {
        let mut a = d(1);
        a.edit("app", &[ins(0, "a😀")], None, false).unwrap();
        let v = a.vv();
        // The Delete starts inside the emoji once "Q" is in front; the Insert inside it.
        for ops in [
            vec![ins(0, "Q"), del(2, 1)],
            vec![del(2, 1), ins(2, "x")],
            vec![ins(2, "x")],
            vec![ins(3, "😀"), ins(4, "x")],
            vec![del(0, 2)],
        ] {
            let err = a.edit("app", &ops, None, true).unwrap_err();
            assert!(err.contains("inside a character"), "{ops:?}: {err}");
            assert_eq!(
                (a.vv(), a.text()),
                (v.clone(), "a😀".to_string()),
                "{ops:?}"
            );
        }
        // Boundaries, also inside text the same edit inserted, apply and undo.
        a.edit("app", &[ins(3, "😀b"), del(1, 2), ins(3, "c")], None, true)
            .unwrap();
        assert_eq!(a.text(), "a😀cb");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "a😀");
        // Lengths near u32::MAX do not wrap (a usize is 32 bits on wasm32).
        let err = a.edit("app", &[del(1, u32::MAX)], None, true).unwrap_err();
        assert!(err.contains("past the text's end"), "{err}");
    }

    #[test]
    fn an_empty_history_gives_its_slot_to_a_new_app() {
        let mut a = d(1);
        for i in 0..MAX_UNDO_APPS {
            a.edit(&format!("old-{i}"), &[ins(0, "x")], None, false)
                .unwrap();
        }
        a.edit("new", &[ins(0, "y")], None, false).unwrap();
        let err = a.undo("new", false).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        a.undo.forget();
        a.edit("new", &[ins(0, "y")], None, false).unwrap();
        a.undo("new", false).unwrap();
        assert_eq!(a.text(), "y".to_string() + &"x".repeat(MAX_UNDO_APPS));
    }

    #[test]
    fn undoing_an_insert_over_the_budget_loses_only_its_redo() {
        let mut a = d(1);
        a.edit("app", &[ins(0, "small ")], None, false).unwrap();
        let big = "z".repeat(MAX_UNDO_BYTES + 1);
        a.edit("app", &[ins(6, &big)], None, false).unwrap();
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "small ");
        let err = a.undo("app", true).unwrap_err();
        assert!(err.contains("nothing to redo"), "{err}");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "");
    }

    #[test]
    fn undoing_inserts_a_peer_wrote_inside_keeps_the_peers_text() {
        let (mut a, mut b) = (d(1), d(2));
        // 64 nested two-character inserts in one edit: "aaaa…bbbb".
        let ops: Vec<Op> = (0..64u32).map(|i| ins(i, "ab")).collect();
        a.edit("app", &ops, None, false).unwrap();
        sync(&mut a, &mut b);
        b.edit(
            "app",
            &[ins(64, &"x".repeat(5000)), ins(0, "<")],
            None,
            false,
        )
        .unwrap();
        sync(&mut a, &mut b);
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "<".to_string() + &"x".repeat(5000));
        a.undo("app", true).unwrap();
        sync(&mut a, &mut b);
        assert_eq!(a.text(), b.text());
        assert_eq!(a.text().matches('a').count(), 64);
    }

    #[test]
    fn restores_keep_their_order_among_neighbours_that_came_back() {
        // B deletes "b", C deletes "c" (whose visible neighbour is then "a"); undone in
        // the order B, C.
        let mut a = d(1);
        a.edit("A", &[ins(0, "abc")], None, false).unwrap();
        a.edit("B", &[del(1, 1)], None, false).unwrap();
        a.edit("C", &[del(1, 1)], None, false).unwrap();
        a.undo("B", false).unwrap();
        a.undo("C", false).unwrap();
        assert_eq!(a.text(), "abc");
        // At the start of the text: B deletes "a", A undoes and redoes its insert ("bc" with
        // new IDs), B undoes.
        let mut a = d(1);
        a.edit("A", &[ins(0, "abc")], None, false).unwrap();
        a.edit("B", &[del(0, 1)], None, false).unwrap();
        a.undo("A", false).unwrap();
        a.undo("A", true).unwrap();
        assert_eq!(a.text(), "bc");
        a.undo("B", false).unwrap();
        assert_eq!(a.text(), "abc");
        // Two deletes at the start in one edit.
        let mut a = d(1);
        a.edit("A", &[ins(0, "abc")], None, false).unwrap();
        a.edit("A", &[del(0, 1), del(0, 1)], None, false).unwrap();
        a.undo("A", false).unwrap();
        assert_eq!(a.text(), "abc");
    }

    #[test]
    fn an_undo_whose_inverse_is_over_the_budget_empties_the_redo_stack() {
        let mut a = d(1);
        a.edit("app", &[ins(0, "x")], None, false).unwrap();
        a.edit(
            "app",
            &[ins(1, &"z".repeat(MAX_UNDO_BYTES + 1))],
            None,
            false,
        )
        .unwrap();
        a.edit("app", &[ins(0, "y")], None, false).unwrap();
        a.undo("app", false).unwrap();
        // Its redo would not be kept: the "y" redo beyond it goes too.
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "x");
        let err = a.undo("app", true).unwrap_err();
        assert!(err.contains("nothing to redo"), "{err}");
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "");
    }
}
