//! One replicated document: the Loro document and what the service needs around it (version
//! conversion, edits with positions read in an older version, content, paged history, the
//! PeerIDs a blob carries, wire compression). Pure: no I/O.
//!
//! Layout of the Loro document (root containers, so every node names them alike and
//! concurrent first writes never conflict): the text is the root text `text`; item
//! `<id>` is the root map `i:<id>` (field → value); list `<name>` the root list `l:<name>`;
//! counter `<name>` the root counter `c:<name>`.

use crate::undo::{Recorder, Seq};
use loro::cursor::{PosType, Side};
use loro::{ExportMode, IdSpan, LoroDoc, LoroValue, ToJson as _, VersionVector, ID};
use p2p_common::api::sync::{
    ChangeSummary, Content, Counter, DocId, Field, Item, List, Op, Value, Version,
};
use std::collections::BTreeMap;

/// Text root container.
pub const TEXT: &str = "text";

/// Loro's version vector as our wire version.
pub fn to_version(vv: &VersionVector) -> Version {
    Version::from_pairs(vv.iter().map(|(p, c)| (*p, (*c).max(0) as u32)))
}

/// Our wire version as Loro's version vector; a peer that is no decimal u64 is an error.
pub fn to_vv(v: &Version) -> Result<VersionVector, String> {
    let pairs = v.pairs()?;
    if pairs.iter().any(|(_, c)| *c > i32::MAX as u32) {
        return Err("version counter out of range".into());
    }
    Ok(pairs.into_iter().map(|(p, c)| (p, c as i32)).collect())
}

/// Whether `a` includes everything `b` has.
pub fn includes(a: &VersionVector, b: &VersionVector) -> bool {
    b.iter().all(|(p, c)| a.get(p).copied().unwrap_or(0) >= *c)
}

/// The PeerIDs whose changes a blob (update or snapshot) carries, each with the end of its
/// counters there, sorted, from its header, without importing it. A blob that is not
/// Loro's is an error.
pub fn blob_changes(blob: &[u8]) -> Result<Vec<(u64, u32)>, String> {
    // No checksum here: `import` checks it before applying anything, so a blob whose
    // header was read without it still cannot apply changes this list does not name.
    let meta = LoroDoc::decode_import_blob_meta(blob, false).map_err(|e| e.to_string())?;
    let mut peers: Vec<(u64, u32)> = meta
        .partial_end_vv
        .iter()
        .filter(|(p, end)| meta.partial_start_vv.get(p).copied().unwrap_or(0) < **end)
        .map(|(p, end)| (*p, (*end).max(0) as u32))
        .collect();
    p2p_common::sort::sort_unstable(&mut peers);
    Ok(peers)
}

/// The PeerIDs of [`blob_changes`].
pub fn blob_peers(blob: &[u8]) -> Result<Vec<u64>, String> {
    Ok(blob_changes(blob)?.into_iter().map(|(p, _)| p).collect())
}

/// Deflate `data` for the wire (raw deflate, level 6).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 6)
}

/// Inflate a wire blob, refusing output over `max` bytes (a deflate bomb).
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(data, max)
        .map_err(|e| format!("blob does not inflate within {max} bytes: {:?}", e.status))
}

fn to_loro(v: &Value) -> LoroValue {
    match v {
        Value::Null => LoroValue::Null,
        Value::Bool(b) => LoroValue::Bool(*b),
        Value::Int(i) => LoroValue::I64(*i),
        Value::Float(f) => LoroValue::Double(*f),
        Value::Str(s) => LoroValue::String(s.as_str().into()),
    }
}

fn from_loro(v: &LoroValue) -> Value {
    match v {
        LoroValue::Null => Value::Null,
        LoroValue::Bool(b) => Value::Bool(*b),
        LoroValue::I64(i) => Value::Int(*i),
        LoroValue::Double(f) => Value::Float(*f),
        LoroValue::String(s) => Value::Str(s.to_string()),
        other => Value::Str(other.to_json()),
    }
}

/// The bytes of this node's own commits since they were last taken, as Loro hands them
/// over (`subscribe_local_update`): the durable record of an edit, with no export.
type LocalUpdates = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A document's Loro state.
pub struct Doc {
    pub id: DocId,
    pub loro: LoroDoc,
    local: LocalUpdates,
    /// Keeps the local-update subscription alive (dropping it unsubscribes).
    _local_sub: loro::Subscription,
    /// The version an app last edited against (`Edit` with `at`), as a document of its own.
    view: Option<LoroDoc>,
    /// Each app's undo history (in memory only).
    pub undo: crate::undo::Undo,
}

impl Doc {
    /// An empty document writing as `peer`.
    pub fn new(id: DocId, peer: u64) -> Doc {
        let loro = LoroDoc::new();
        // Any u64 but u64::MAX is a valid PeerID; ours come from the seed.
        let _ = loro.set_peer_id(peer.min(u64::MAX - 1));
        let local = LocalUpdates::default();
        let sink = local.clone();
        let _local_sub = loro.subscribe_local_update(Box::new(move |bytes| {
            if let Ok(mut l) = sink.lock() {
                l.push(bytes.clone());
            }
            true
        }));
        Doc {
            id,
            loro,
            local,
            _local_sub,
            view: None,
            undo: crate::undo::Undo::default(),
        }
    }

    pub fn vv(&self) -> VersionVector {
        self.loro.oplog_vv()
    }

    pub fn version(&self) -> Version {
        to_version(&self.vv())
    }

    /// Apply one edit of local app `app` atomically as one Loro change. `at`: positions of
    /// a splice are read in that version. Every op is checked before anything is applied.
    pub fn edit(
        &mut self,
        app: &str,
        ops: &[Op],
        at: Option<&VersionVector>,
        utf16: bool,
    ) -> Result<(), String> {
        let mut rec = self.undo.recorder(app);
        let at = at.filter(|v| *v != &self.vv());
        if let Some(v) = at {
            if self.owns_latest(v) {
                self.edit_at(ops, v, utf16, rec.as_mut())?;
                if let Some(r) = rec {
                    self.undo.record(app, r.finish());
                }
                return Ok(());
            }
        }
        // Rebased positions are code points in the current text.
        let (ops, utf16) = match at {
            Some(v) => (self.rebase_splice(ops, v, utf16)?, false),
            None => {
                self.check(ops, utf16)?;
                (ops.to_vec(), utf16)
            }
        };
        apply_in(&self.loro, &ops, utf16, rec.as_mut(), &self.loro)?;
        self.loro.commit();
        if let Some(r) = rec {
            self.undo.record(app, r.finish());
        }
        Ok(())
    }

    /// Undo (`redo`: redo) `app`'s last edit of this document that still changes something,
    /// as a new local change (replicated like an edit).
    pub fn undo(&mut self, app: &str, redo: bool) -> Result<(), String> {
        let r = self.undo.step(&self.loro, app, redo);
        self.loro.commit();
        r
    }

    /// Whether version `at` includes this node's own latest change (the usual case: an app's
    /// view includes its own edits), so a change made at `at` can carry our PeerID: Loro
    /// requires each PeerID's changes to follow one another.
    fn owns_latest(&self, at: &VersionVector) -> bool {
        let peer = self.loro.peer_id();
        let ours = self.vv().get(&peer).copied().unwrap_or(0);
        at.get(&peer).copied().unwrap_or(0) == ours
    }

    /// The edit made at version `at` itself, with our PeerID: positions are read in `at`,
    /// and Loro merges the change with everything since as the concurrent change it is, the
    /// same on every node. It is made on the *view*, a second Loro document holding exactly
    /// `at` (brought forward by importing what it lacks, so an app whose view only grows
    /// costs one small import per edit; a view that went back is rebuilt), and imported.
    fn edit_at(
        &mut self,
        ops: &[Op],
        at: &VersionVector,
        utf16: bool,
        rec: Option<&mut Recorder>,
    ) -> Result<(), String> {
        if !includes(&self.vv(), at) {
            return Err("`at` names a version this node does not have (yet)".into());
        }
        Self::splice_shape(ops)?;
        let peer = self.loro.peer_id();
        self.loro.commit();
        if !self
            .view
            .as_ref()
            .is_some_and(|v| includes(at, &v.oplog_vv()))
        {
            self.view = Some(LoroDoc::new());
        }
        let Some(view) = self.view.as_ref() else {
            return Err("no view".into());
        };
        let have = view.oplog_vv();
        let spans: Vec<IdSpan> = at
            .iter()
            .filter_map(|(p, c)| {
                let h = have.get(p).copied().unwrap_or(0);
                (h < *c).then(|| IdSpan::new(*p, h, *c))
            })
            .collect();
        if !spans.is_empty() {
            let u = self
                .loro
                .export(ExportMode::updates_in_range(spans))
                .map_err(|e| format!("reading version `at`: {e}"))?;
            view.import(&u)
                .map_err(|e| format!("reading version `at`: {e}"))?;
        }
        if view.oplog_vv() != *at {
            self.view = None;
            return Err("`at` is not a version of this document".into());
        }
        view.set_peer_id(peer).map_err(|e| e.to_string())?;
        check_in(view, ops, utf16).map_err(|e| format!("in version `at`: {e}"))?;
        // Recorded in the view: the elements' IDs are the same in the document.
        if let Err(e) = apply_in(view, ops, utf16, rec, &self.loro) {
            // Checked, so not expected; the view may hold part of it: rebuilt next time.
            self.view = None;
            return Err(e);
        }
        view.commit();
        let change = view
            .export(ExportMode::updates(at))
            .map_err(|e| e.to_string())?;
        self.loro
            .import(&change)
            .map_err(|e| format!("importing the edit: {e}"))?;
        // Our change, though it reached the document as an import: its record.
        self.local_updates().push(change);
        Ok(())
    }

    /// With `at`, an edit's text ops are one splice: a Delete and/or an Insert at the same
    /// position (further positions would be relative to a version that does not exist).
    fn splice_shape(ops: &[Op]) -> Result<(), String> {
        let positional: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o, Op::Insert { .. } | Op::Delete { .. }))
            .collect();
        let shape_ok = match positional.as_slice() {
            [] | [Op::Insert { .. }] | [Op::Delete { .. }] => true,
            [Op::Delete { pos: a, .. }, Op::Insert { pos: b, .. }] => a == b,
            _ => false,
        };
        if !shape_ok {
            return Err("with `at`, an Edit's text ops are one splice: a Delete and/or an Insert at the same position".into());
        }
        Ok(())
    }

    fn check(&self, ops: &[Op], utf16: bool) -> Result<(), String> {
        check_in(&self.loro, ops, utf16)
    }

    /// The ops of a splice made against version `at` (at most one Delete and one Insert at
    /// the same position, in that order, plus non-positional ops), with positions moved to
    /// where those characters are now.
    fn rebase_splice(
        &mut self,
        ops: &[Op],
        at: &VersionVector,
        utf16: bool,
    ) -> Result<Vec<Op>, String> {
        if !includes(&self.vv(), at) {
            return Err("`at` names a version this node does not have (yet)".into());
        }
        Self::splice_shape(ops)?;
        let positional: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o, Op::Insert { .. } | Op::Delete { .. }))
            .collect();
        if positional.is_empty() {
            return Ok(ops.to_vec());
        }
        let frontiers = self.loro.vv_to_frontiers(at);
        self.loro.commit();
        self.loro
            .checkout(&frontiers)
            .map_err(|e| format!("reading version `at`: {e}"))?;
        let text = self.loro.get_text(TEXT);
        let old_len = if utf16 {
            text.len_utf16()
        } else {
            text.len_unicode()
        };
        let to_unicode = |p: usize| -> usize {
            if utf16 {
                text.convert_pos(
                    p,
                    loro::cursor::PosType::Utf16,
                    loro::cursor::PosType::Unicode,
                )
                .unwrap_or(p)
            } else {
                p
            }
        };
        let mut cursors = Vec::new();
        let mut bad = None;
        for op in &positional {
            match op {
                Op::Insert { pos, .. } => {
                    let p = *pos as usize;
                    if p > old_len {
                        bad = Some(format!(
                            "Insert at {p} past the end ({old_len}) of version `at`"
                        ));
                        break;
                    }
                    let u = to_unicode(p);
                    // The character before the insertion point, or the start.
                    let c = if u == 0 {
                        None
                    } else {
                        text.get_cursor(u - 1, Side::Middle)
                    };
                    cursors.push(vec![c]);
                }
                Op::Delete { pos, len } => {
                    let (p, n) = (*pos as usize, *len as usize);
                    if p + n > old_len {
                        bad = Some(format!(
                            "Delete of {p}..{} past the end ({old_len}) of version `at`",
                            p + n
                        ));
                        break;
                    }
                    if n > super::core::MAX_AT_DELETE {
                        bad = Some(format!(
                            "with `at`, a Delete spans at most {} characters",
                            super::core::MAX_AT_DELETE
                        ));
                        break;
                    }
                    let (u0, u1) = (to_unicode(p), to_unicode(p + n));
                    cursors.push((u0..u1).map(|u| text.get_cursor(u, Side::Middle)).collect());
                }
                _ => {}
            }
        }
        self.loro.checkout_to_latest();
        if let Some(b) = bad {
            return Err(b);
        }
        let text = self.loro.get_text(TEXT);
        let alive = |c: &loro::cursor::Cursor| -> Option<usize> {
            self.loro.get_cursor_pos(c).ok().map(|r| r.current.pos)
        };
        let mut out = Vec::new();
        let mut pi = 0;
        for op in ops {
            match op {
                Op::Insert { text: s, .. } => {
                    let pos = match &cursors[pi][0] {
                        None => 0,
                        Some(c) => {
                            // After the character before; if it is gone, where it was.
                            let id = c.id;
                            let p = alive(c).unwrap_or(0);
                            let still_there = id.is_some_and(|id| {
                                text.get_cursor(p, Side::Middle).and_then(|k| k.id) == Some(id)
                            });
                            if still_there {
                                p + 1
                            } else {
                                p
                            }
                        }
                    };
                    pi += 1;
                    // Deletes of the same splice are all after this point: it does not move.
                    let pos = pos.min(text.len_unicode());
                    out.push(Op::Insert {
                        pos: pos as u32,
                        text: s.clone(),
                    });
                }
                Op::Delete { .. } => {
                    // Each character of the old range that is still there, as runs.
                    let mut now: Vec<usize> = cursors[pi]
                        .iter()
                        .flatten()
                        .filter_map(|c| {
                            let p = alive(c)?;
                            let id = c.id?;
                            (text.get_cursor(p, Side::Middle).and_then(|k| k.id) == Some(id))
                                .then_some(p)
                        })
                        .collect();
                    pi += 1;
                    p2p_common::sort::sort_unstable(&mut now);
                    now.dedup();
                    // Delete runs from the back so earlier positions stay valid.
                    let mut runs: Vec<(usize, usize)> = Vec::new();
                    for p in now {
                        match runs.last_mut() {
                            Some((s, n)) if *s + *n == p => *n += 1,
                            _ => runs.push((p, 1)),
                        }
                    }
                    for (s, n) in runs.iter().rev() {
                        out.push(Op::Delete {
                            pos: *s as u32,
                            len: *n as u32,
                        });
                    }
                }
                other => out.push(other.clone()),
            }
        }
        // Positions are now Unicode code points in the current text.
        self.check(&out, false)?;
        Ok(out)
    }

    /// The content and version.
    pub fn content(&self) -> Content {
        let mut items = Vec::new();
        let mut lists = Vec::new();
        let mut counters = Vec::new();
        let mut text = String::new();
        if let LoroValue::Map(roots) = self.loro.get_deep_value() {
            let mut names: Vec<&String> = roots.keys().collect();
            p2p_common::sort::sort_unstable(&mut names);
            for name in names {
                let v = &roots[name];
                if name == TEXT {
                    if let LoroValue::String(s) = v {
                        text = s.to_string();
                    }
                } else if let Some(id) = name.strip_prefix("i:") {
                    if let LoroValue::Map(m) = v {
                        let mut fields: Vec<Field> = m
                            .iter()
                            .map(|(k, v)| Field {
                                field: k.clone(),
                                value: from_loro(v),
                            })
                            .collect();
                        p2p_common::sort::sort_unstable_by(&mut fields, |a, b| {
                            a.field.cmp(&b.field)
                        });
                        if !fields.is_empty() {
                            items.push(Item {
                                item_id: id.to_string(),
                                fields,
                            });
                        }
                    }
                } else if let Some(l) = name.strip_prefix("l:") {
                    if let LoroValue::List(vs) = v {
                        lists.push(List {
                            list: l.to_string(),
                            values: vs.iter().map(from_loro).collect(),
                        });
                    }
                } else if let Some(c) = name.strip_prefix("c:") {
                    if let LoroValue::Double(f) = v {
                        counters.push(Counter {
                            counter: c.to_string(),
                            value: *f,
                        });
                    }
                }
            }
        }
        Content {
            doc: self.id.clone(),
            text,
            items,
            lists,
            counters,
            version: self.version(),
        }
    }

    /// The text alone.
    pub fn text(&self) -> String {
        self.loro.get_text(TEXT).to_string()
    }

    /// Changes after `since`, at most `limit`, in causal (Lamport) order: their summaries,
    /// the Loro update blob of exactly them, the version after them, and whether more follow.
    pub fn changes_since(
        &self,
        since: &VersionVector,
        limit: usize,
        owner: impl Fn(u64) -> Option<p2p_common::NodeId>,
    ) -> (Vec<ChangeSummary>, Vec<u8>, VersionVector, bool) {
        let mut all: Vec<(u32, u64, i32, i32)> = Vec::new();
        for (peer, end) in self.vv().iter() {
            let mut c = since.get(peer).copied().unwrap_or(0).max(0);
            while c < *end {
                let Some(ch) = self.loro.get_change(ID::new(*peer, c)) else {
                    break;
                };
                let ch_end = ch.id.counter + ch.len as i32;
                let lamport = ch.lamport + (c - ch.id.counter) as u32;
                all.push((lamport, *peer, c, ch_end.min(*end)));
                c = ch_end.max(c + 1);
            }
        }
        p2p_common::sort::sort_unstable(&mut all);
        let more = all.len() > limit;
        all.truncate(limit);
        let mut version = since.clone();
        let spans: Vec<IdSpan> = all
            .iter()
            .map(|(_, p, s, e)| {
                let cur = version.get(p).copied().unwrap_or(0);
                version.insert(*p, (*e).max(cur));
                IdSpan::new(*p, *s, *e)
            })
            .collect();
        let blob = if spans.is_empty() {
            Vec::new()
        } else {
            self.loro
                .export(ExportMode::UpdatesInRange {
                    spans: spans.into(),
                })
                .unwrap_or_default()
        };
        let summaries = all
            .iter()
            .map(|(l, p, s, e)| ChangeSummary {
                peer: p.to_string(),
                counter: *s as u32,
                len: (*e - *s) as u32,
                lamport: *l,
                author: owner(*p),
            })
            .collect();
        (summaries, blob, version, more)
    }

    fn local_updates(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Nothing panics while holding the lock, so it is never poisoned.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget our commits' bytes collected so far (before an edit, whose record is then
    /// [`Doc::take_change`]).
    pub fn clear_change(&mut self) {
        self.local_updates().clear();
    }

    /// The Loro update of our commits since [`Doc::clear_change`] (an edit's durable record):
    /// the bytes Loro handed over at the commit when it was one (the usual case), else an
    /// export of everything after `before`, the version before the edit.
    pub fn take_change(&mut self, before: &VersionVector) -> Vec<u8> {
        let mut l = std::mem::take(&mut *self.local_updates());
        if l.len() == 1 {
            return l.pop().unwrap_or_default();
        }
        self.updates_since(before)
    }

    /// Loro updates after `from` (what a peer at `from` lacks).
    pub fn updates_since(&self, from: &VersionVector) -> Vec<u8> {
        self.loro
            .export(ExportMode::updates(from))
            .unwrap_or_default()
    }

    /// The whole history as one update blob: what a joining or empty peer gets. Loro's
    /// updates deflate to about half of what its snapshot (state plus history) does.
    pub fn all_updates(&self) -> Vec<u8> {
        self.updates_since(&VersionVector::new())
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.loro.export(ExportMode::Snapshot).unwrap_or_default()
    }

    /// Import a blob already checked (PeerIDs); returns whether the version moved.
    pub fn import(&mut self, blob: &[u8]) -> Result<bool, String> {
        let before = self.vv();
        self.loro.import(blob).map_err(|e| e.to_string())?;
        Ok(self.vv() != before)
    }
}

/// An op's kind, for error messages (a Debug of the op would drag float formatting along).
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Insert { .. } => "an Insert",
        Op::Delete { .. } => "a Delete",
        Op::Update { .. } => "an Update",
        Op::RemoveItem { .. } => "a RemoveItem",
        Op::ListInsert { .. } => "a ListInsert",
        Op::ListDelete { .. } => "a ListDelete",
        Op::Increment { .. } => "an Increment",
    }
}

/// Apply checked ops to `loro`'s current state (no commit), recording their inverses in
/// `rec` (an undo step). `fields`: the document whose field values an `Update` or
/// `RemoveItem` replaces (`loro` itself, except for an edit made on the view of an older
/// version, whose values would be stale). UTF-16 positions (checked to be character
/// boundaries) are converted to code points, which the recorder needs.
fn apply_in(
    loro: &LoroDoc,
    ops: &[Op],
    utf16: bool,
    mut rec: Option<&mut Recorder>,
    fields: &LoroDoc,
) -> Result<(), String> {
    let text = loro.get_text(TEXT);
    let unicode = |p: usize| -> usize {
        if utf16 {
            text.convert_pos(p, PosType::Utf16, PosType::Unicode)
                .unwrap_or(p)
        } else {
            p
        }
    };
    for op in ops {
        if let Some(r) = rec.as_deref_mut() {
            match op {
                Op::Delete { pos, len } => {
                    let u = unicode(*pos as usize);
                    let end = unicode(*pos as usize + *len as usize);
                    r.deleting(loro, Seq::Text, u, end.saturating_sub(u));
                }
                Op::Update {
                    item_id,
                    field,
                    value,
                } => r.writing(fields, item_id, field, Some(to_loro(value))),
                Op::RemoveItem { item_id } => r.clearing(fields, item_id),
                Op::ListDelete { list, index, len } => r.deleting(
                    loro,
                    Seq::List(format!("l:{list}")),
                    *index as usize,
                    *len as usize,
                ),
                Op::Increment { counter, by } => r.incremented(counter, *by as f64),
                Op::Insert { .. } | Op::ListInsert { .. } => {}
            }
        }
        let at = match op {
            Op::Insert { pos, .. } => unicode(*pos as usize),
            _ => 0,
        };
        let r = match op {
            Op::Insert { text: s, .. } => text.insert(at, s),
            Op::Delete { pos, len } => {
                let u = unicode(*pos as usize);
                let end = unicode(*pos as usize + *len as usize);
                text.delete(u, end.saturating_sub(u))
            }
            Op::Update {
                item_id,
                field,
                value,
            } => loro
                .get_map(format!("i:{item_id}").as_str())
                .insert(field, to_loro(value)),
            Op::RemoveItem { item_id } => loro.get_map(format!("i:{item_id}").as_str()).clear(),
            Op::ListInsert { list, index, value } => loro
                .get_list(format!("l:{list}").as_str())
                .insert(*index as usize, to_loro(value)),
            Op::ListDelete { list, index, len } => loro
                .get_list(format!("l:{list}").as_str())
                .delete(*index as usize, *len as usize),
            Op::Increment { counter, by } => loro
                .get_counter(format!("c:{counter}").as_str())
                .increment(*by as f64),
        };
        // Checked above; a failure here is a bug, but never a panic.
        r.map_err(|e| format!("applying {}: {e}", op_name(op)))?;
        if let Some(r) = rec.as_deref_mut() {
            match op {
                Op::Insert { text: s, .. } => r.inserted(loro, Seq::Text, at, s.chars().count()),
                Op::ListInsert { list, index, .. } => {
                    r.inserted(loro, Seq::List(format!("l:{list}")), *index as usize, 1)
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Bounds of every positional op, in order (lengths change as ops apply); with `utf16`, also
/// that no position falls inside a character (a surrogate pair), so that every op of a
/// checked edit applies. Sums are in u64: on wasm32 a usize would wrap.
fn check_in(loro: &LoroDoc, ops: &[Op], utf16: bool) -> Result<(), String> {
    let text = loro.get_text(TEXT);
    let mut text_len = if utf16 {
        text.len_utf16()
    } else {
        text.len_unicode()
    } as u64;
    let mut model = utf16.then(|| Utf16Text::new(text_len as usize));
    let inside = |i: usize, p: u64| {
        format!("op {i}: UTF-16 position {p} is inside a character (a surrogate pair)")
    };
    let mut lists: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Insert { pos, text: s } => {
                let p = u64::from(*pos);
                if p > text_len {
                    return Err(format!(
                        "op {i}: Insert at {pos} past the text's end ({text_len})"
                    ));
                }
                if let Some(m) = model.as_mut() {
                    if !m.boundary(&text, p as usize) {
                        return Err(inside(i, p));
                    }
                    m.insert(p as usize, s);
                }
                text_len += if utf16 {
                    s.encode_utf16().count()
                } else {
                    s.chars().count()
                } as u64;
            }
            Op::Delete { pos, len } => {
                let (p, end) = (u64::from(*pos), u64::from(*pos) + u64::from(*len));
                if end > text_len {
                    return Err(format!(
                        "op {i}: Delete of {pos}..{end} past the text's end ({text_len})"
                    ));
                }
                if let Some(m) = model.as_mut() {
                    for q in [p, end] {
                        if !m.boundary(&text, q as usize) {
                            return Err(inside(i, q));
                        }
                    }
                    m.delete(p as usize, end as usize);
                }
                text_len -= u64::from(*len);
            }
            Op::ListInsert { list, index, .. } | Op::ListDelete { list, index, .. } => {
                let n = lists
                    .entry(list.as_str())
                    .or_insert_with(|| loro.get_list(format!("l:{list}").as_str()).len() as u64);
                let (end, grow) = match op {
                    Op::ListDelete { len, .. } => (u64::from(*index) + u64::from(*len), false),
                    _ => (u64::from(*index), true),
                };
                if end > *n {
                    return Err(format!("op {i}: list {list:?} has {n} entries"));
                }
                if grow {
                    *n += 1;
                } else {
                    *n -= end - u64::from(*index);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The text as an edit's earlier ops leave it, in UTF-16 units, for telling whether a
/// position is a character boundary: pieces that are either a range of the document's text
/// or a string an earlier Insert added (at most two pieces more per op).
struct Utf16Text<'a> {
    pieces: Vec<Piece<'a>>,
}

enum Piece<'a> {
    /// UTF-16 units start..end of the document's text.
    Doc(usize, usize),
    /// An inserted string.
    New(&'a str),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Doc(a, b) => b - a,
            Piece::New(s) => s.encode_utf16().count(),
        }
    }
}

/// The byte index of UTF-16 offset `o` in `s`, if `o` is a character boundary.
fn utf16_byte(s: &str, o: usize) -> Option<usize> {
    let mut n = 0;
    for (b, c) in s.char_indices() {
        if n == o {
            return Some(b);
        }
        if n > o {
            return None;
        }
        n += c.len_utf16();
    }
    (n == o).then_some(s.len())
}

impl<'a> Utf16Text<'a> {
    fn new(len: usize) -> Self {
        Utf16Text {
            pieces: vec![Piece::Doc(0, len)],
        }
    }

    /// The piece holding position `p` strictly inside it, with `p`'s offset there.
    fn find(&self, p: usize) -> Option<(usize, usize)> {
        let mut at = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            let n = piece.len();
            if p > at && p < at + n {
                return Some((i, p - at));
            }
            at += n;
        }
        None
    }

    fn boundary(&self, text: &loro::LoroText, p: usize) -> bool {
        let Some((i, o)) = self.find(p) else {
            return true;
        };
        match self.pieces[i] {
            Piece::Doc(a, _) => {
                let q = a + o;
                text.convert_pos(q, PosType::Utf16, PosType::Unicode)
                    .and_then(|u| text.convert_pos(u, PosType::Unicode, PosType::Utf16))
                    == Some(q)
            }
            Piece::New(s) => utf16_byte(s, o).is_some(),
        }
    }

    /// Split so that a piece starts at `p` (a boundary); the index of that piece.
    fn split(&mut self, p: usize) -> usize {
        let Some((i, o)) = self.find(p) else {
            let mut at = 0;
            for (i, piece) in self.pieces.iter().enumerate() {
                if at >= p {
                    return i;
                }
                at += piece.len();
            }
            return self.pieces.len();
        };
        let (left, right) = match self.pieces[i] {
            Piece::Doc(a, b) => (Piece::Doc(a, a + o), Piece::Doc(a + o, b)),
            Piece::New(s) => {
                let k = utf16_byte(s, o).unwrap_or(s.len());
                (Piece::New(&s[..k]), Piece::New(&s[k..]))
            }
        };
        self.pieces[i] = left;
        self.pieces.insert(i + 1, right);
        i + 1
    }

    fn insert(&mut self, p: usize, s: &'a str) {
        let i = self.split(p);
        self.pieces.insert(i, Piece::New(s));
    }

    fn delete(&mut self, p: usize, end: usize) {
        let i = self.split(p);
        // Splitting at `end` (>= p) leaves the pieces before `i` alone.
        let j = self.split(end);
        self.pieces.drain(i..j);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh document with Loro peer `peer` (shared with undo.rs's tests).
    pub(crate) fn d(peer: u64) -> Doc {
        Doc::new("alice.os/t".parse().unwrap(), peer)
    }
    pub(crate) fn ins(pos: u32, t: &str) -> Op {
        Op::Insert {
            pos,
            text: t.into(),
        }
    }
    /// Exchange what each lacks.
    pub(crate) fn sync(a: &mut Doc, b: &mut Doc) {
        let ab = a.updates_since(&b.vv());
        let ba = b.updates_since(&a.vv());
        b.import(&ab).unwrap();
        a.import(&ba).unwrap();
    }

    #[test]
    fn a_splice_made_against_an_older_version_lands_where_the_user_saw_it() {
        let mut a = d(1);
        let mut b = d(2);
        a.edit("app", &[ins(0, "hello world")], None, false)
            .unwrap();
        sync(&mut a, &mut b);
        let seen = b.vv();
        // Meanwhile alice rewrites the start; bob's app still shows "hello world".
        a.edit("app", &[ins(0, ">> ")], None, false).unwrap();
        sync(&mut a, &mut b);
        assert_eq!(b.text(), ">> hello world");
        // Bob replaced "world" (5..11 in what he saw) with "there", and appended "!".
        b.edit(
            "app",
            &[Op::Delete { pos: 6, len: 5 }, ins(6, "there")],
            Some(&seen),
            false,
        )
        .unwrap();
        assert_eq!(b.text(), ">> hello there");
        b.edit("app", &[ins(11, "!")], Some(&seen), false).unwrap();
        assert_eq!(b.text(), ">> hello there!");
        // A character deleted concurrently is not deleted twice (nor its neighbour).
        let seen = b.vv();
        a.edit("app", &[Op::Delete { pos: 0, len: 3 }], None, false)
            .unwrap();
        sync(&mut a, &mut b);
        b.edit("app", &[Op::Delete { pos: 0, len: 4 }], Some(&seen), false)
            .unwrap();
        assert_eq!(b.text(), "ello there!");
        // Only a splice may name an older version; positions past its end are refused.
        let seen = b.vv();
        a.edit("app", &[ins(0, "-")], None, false).unwrap();
        sync(&mut a, &mut b);
        assert!(b
            .edit("app", &[ins(0, "a"), ins(1, "b")], Some(&seen), false)
            .is_err());
        let old = VersionVector::new();
        assert!(b.edit("app", &[ins(1, "x")], Some(&old), false).is_err());
        assert_eq!(b.text(), "-ello there!");
    }

    #[test]
    fn utf16_positions_for_javascript_editors() {
        let mut a = d(1);
        a.edit("app", &[ins(0, "😀b")], None, false).unwrap();
        // After the emoji: code point 1, UTF-16 unit 2.
        a.edit("app", &[ins(2, "x")], None, true).unwrap();
        assert_eq!(a.text(), "😀xb");
        a.edit("app", &[ins(1, "y")], None, false).unwrap();
        assert_eq!(a.text(), "😀yxb");
        assert!(a.edit("app", &[ins(99, "z")], None, true).is_err());
    }

    #[test]
    fn blob_peers_reads_the_header_and_refuses_garbage() {
        let mut a = d(77);
        a.edit("app", &[ins(0, "x")], None, false).unwrap();
        let mut b = d(88);
        b.import(&a.updates_since(&VersionVector::new())).unwrap();
        b.edit("app", &[ins(0, "y")], None, false).unwrap();
        assert_eq!(
            blob_peers(&b.updates_since(&VersionVector::new())).unwrap(),
            vec![77, 88]
        );
        assert_eq!(
            blob_changes(&b.updates_since(&VersionVector::new())).unwrap(),
            vec![(77, 1), (88, 1)]
        );
        // Only what the peer lacks: bob's own change.
        assert_eq!(blob_peers(&b.updates_since(&a.vv())).unwrap(), vec![88]);
        assert_eq!(blob_peers(&b.snapshot()).unwrap(), vec![77, 88]);
        for junk in [
            &b"x"[..],
            &[0u8; 64],
            b"loro\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ] {
            assert!(blob_peers(junk).is_err());
        }
    }

    #[test]
    fn an_edit_record_holds_every_commit_when_there_was_more_than_one() {
        // The usual edit is one commit, whose bytes Loro hands over; an edit that made
        // two commits, or none, is recorded as an export since the version before it.
        let mut a = d(1);
        a.edit("app", &[ins(0, "ab")], None, false).unwrap();
        let mut b = d(2);
        b.import(&a.all_updates()).unwrap();
        let before = a.vv();
        a.clear_change();
        a.edit("app", &[ins(2, "c")], None, false).unwrap();
        a.edit("app", &[ins(3, "d")], None, false).unwrap();
        assert_eq!(a.local_updates().len(), 2, "two commits: the export path");
        let record = a.take_change(&before);
        assert!(a.local_updates().is_empty());
        // Bob, at `before`, gets both commits from the record alone (the last commit's
        // bytes would leave him waiting for the first: "ab").
        b.import(&record).unwrap();
        assert_eq!(b.text(), "abcd");
        assert_eq!(b.vv(), a.vv());
        // A refused edit commits nothing: its record adds nothing.
        let before = a.vv();
        a.clear_change();
        assert!(a.edit("app", &[ins(99, "x")], None, false).is_err());
        let empty = a.take_change(&before);
        assert!(blob_changes(&empty).map_or(true, |c| c.is_empty()));
        assert!(!b.import(&empty).unwrap_or(false), "nothing new");
        // One commit: its bytes as Loro handed them over, the same change.
        let before = a.vv();
        a.clear_change();
        a.edit("app", &[ins(4, "e")], None, false).unwrap();
        let one = a.take_change(&before);
        assert_eq!(blob_changes(&one).unwrap(), vec![(1, 5)]);
        b.import(&one).unwrap();
        assert_eq!(b.text(), "abcde");
    }

    #[test]
    fn inflate_is_bounded() {
        let big = deflate(&vec![7u8; 1 << 20]);
        assert!(big.len() < 10_000);
        assert_eq!(inflate(&big, 1 << 20).unwrap().len(), 1 << 20);
        assert!(inflate(&big, (1 << 20) - 1).is_err());
        assert!(inflate(b"\xff\xff", 100).is_err());
    }

    #[test]
    fn items_lists_and_counters_read_back_sorted() {
        let mut a = d(1);
        a.edit(
            "app",
            &[
                Op::Update {
                    item_id: "b".into(),
                    field: "z".into(),
                    value: Value::Int(1),
                },
                Op::Update {
                    item_id: "a".into(),
                    field: "title".into(),
                    value: Value::Str("t".into()),
                },
                Op::ListInsert {
                    list: "tags".into(),
                    index: 0,
                    value: Value::Bool(true),
                },
                Op::Increment {
                    counter: "views".into(),
                    by: 3,
                },
            ],
            None,
            false,
        )
        .unwrap();
        a.edit(
            "app",
            &[Op::RemoveItem {
                item_id: "b".into(),
            }],
            None,
            false,
        )
        .unwrap();
        let c = a.content();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].item_id, "a");
        assert_eq!(c.lists[0].values, vec![Value::Bool(true)]);
        assert_eq!(c.counters[0].value, 3.0);
        assert!(a
            .edit(
                "app",
                &[Op::ListDelete {
                    list: "tags".into(),
                    index: 0,
                    len: 2
                }],
                None,
                false
            )
            .is_err());
    }
}
