//! Undo and redo of one app's own edits, on Loro's `UndoManager`.
//!
//! Every app on this node writes a document with the node's one Loro PeerID, and an
//! `UndoManager` records the local commits of that PeerID. So that one app's undo never
//! undoes another app's edit, each app's commits carry an origin of their own
//! (`app:<process>;`), and each app gets its own manager (created on its first edit of the
//! document) that excludes every other app's origin: the other apps' edits, like imported
//! remote changes, are what its steps are rebased over, never steps of its own. At most
//! [`MAX_UNDO_APPS`] apps per document keep a history; edits of further apps commit with an
//! origin every manager excludes, and their `Undo` is refused.
//!
//! The history lives in memory only: after a restart (or a fresh join) it starts empty.
//!
//! Loro's `UndoManager` (its diff composition and transformation for every container type)
//! adds 269,433 bytes to sync.wasm's core module (2,989,244 bytes without it, 3,258,677
//! with it, measured 2026-12-02), over the build's size limit, so it is behind the cargo
//! feature `undo` (default on, which native builds, tests and the simulator get). The process builds (`cargo xtask build`, kit) use
//! `--no-default-features`: there [`Undo`] records nothing and `Undo`/`Redo` answer an
//! error saying so (docs/sync.md, "Undo and redo").

use loro::LoroDoc;
#[cfg(feature = "undo")]
use loro::UndoManager;

/// Apps per document whose edits keep an undo history.
pub const MAX_UNDO_APPS: usize = 8;
/// Undo steps kept per app and document (older ones are forgotten).
pub const MAX_UNDO_STEPS: usize = 64;
/// The origin of edits no history records (apps beyond [`MAX_UNDO_APPS`]).
#[cfg(feature = "undo")]
const UNTRACKED: &str = "sync:untracked";

/// The undo histories of one document, one per app.
#[cfg(feature = "undo")]
#[derive(Default)]
pub struct Undo {
    /// (origin, manager), in the order the apps first edited.
    apps: Vec<(String, UndoManager)>,
}

/// The origin an app's commits carry (ends with `;`, so no app's prefix is another's).
pub fn origin(app: &str) -> String {
    format!("app:{app};")
}

#[cfg(feature = "undo")]
impl Undo {
    /// The origin `app`'s next edit commits with; its history starts with its first edit.
    pub fn track(&mut self, loro: &LoroDoc, app: &str) -> String {
        let mine = origin(app);
        if self.apps.iter().any(|(o, _)| *o == mine) {
            return mine;
        }
        if self.apps.len() >= MAX_UNDO_APPS {
            return UNTRACKED.into();
        }
        let mut m = UndoManager::new(loro);
        m.set_max_undo_steps(MAX_UNDO_STEPS);
        m.add_exclude_origin_prefix(UNTRACKED);
        for (o, other) in &mut self.apps {
            m.add_exclude_origin_prefix(o);
            other.add_exclude_origin_prefix(&mine);
        }
        self.apps.push((mine.clone(), m));
        mine
    }

    /// Whether an app other than the one committing as `origin` keeps a history here.
    pub fn others(&self, origin: &str) -> bool {
        self.apps.iter().any(|(o, _)| o != origin)
    }

    /// After an edit that reached the document as an import (made at an older version
    /// while changes this app had not seen had arrived: `Doc::edit_at`): Loro's
    /// `UndoManager` rebases a step only over changes made after it, never over changes
    /// concurrent to it, so undoing this edit could take back the wrong characters. The
    /// app's history ends here (its steps are forgotten; its next edit starts a new one).
    /// Only called when no other app keeps a history ([`Undo::others`] is false): theirs
    /// would fold the edit into their next step.
    pub fn end_at_import(&mut self, origin: &str) {
        if let Some((_, m)) = self.apps.iter_mut().find(|(o, _)| o == origin) {
            // Moves the history past the imported change, then forgets it.
            let _ = m.record_new_checkpoint();
            m.clear();
        }
    }

    /// Stop recording (around a temporary checkout, which would clear every history).
    pub fn pause(&self) {
        for (_, m) in &self.apps {
            m.pause();
        }
    }

    pub fn resume(&self) {
        for (_, m) in &self.apps {
            m.resume();
        }
    }

    /// Undo (or redo) `app`'s last step that still changes something, as a local commit
    /// with `app`'s origin. An error says there is nothing to undo (redo).
    pub fn step(&mut self, loro: &LoroDoc, app: &str, redo: bool) -> Result<(), String> {
        let what = if redo { "redo" } else { "undo" };
        let mine = origin(app);
        let nothing = || {
            format!("nothing to {what}: this app has no edit of this document left to {what} (the history starts empty when sync starts)")
        };
        let Some((_, m)) = self.apps.iter_mut().find(|(o, _)| *o == mine) else {
            return Err(if self.apps.len() >= MAX_UNDO_APPS {
                format!("nothing to {what}: undo history is kept for at most {MAX_UNDO_APPS} apps per document")
            } else {
                nothing()
            });
        };
        // Each round consumes one step (a step that became a no-op, say its text was
        // deleted by another node meanwhile, is consumed and the one before it tried).
        for _ in 0..=MAX_UNDO_STEPS {
            let left = if redo { m.can_redo() } else { m.can_undo() };
            if !left {
                break;
            }
            loro.set_next_commit_origin(&mine);
            let changed = if redo { m.redo() } else { m.undo() }
                .map_err(|e| format!("{what} failed: {e}"))?;
            if changed {
                return Ok(());
            }
        }
        Err(nothing())
    }
}

/// Without the feature `undo`: no history; `Undo`/`Redo` are refused with the reason.
#[cfg(not(feature = "undo"))]
#[derive(Default)]
pub struct Undo;

#[cfg(not(feature = "undo"))]
impl Undo {
    pub fn track(&mut self, _loro: &LoroDoc, app: &str) -> String {
        origin(app)
    }
    pub fn others(&self, _origin: &str) -> bool {
        false
    }
    pub fn end_at_import(&mut self, _origin: &str) {}
    pub fn pause(&self) {}
    pub fn resume(&self) {}
    pub fn step(&mut self, _loro: &LoroDoc, _app: &str, redo: bool) -> Result<(), String> {
        Err(format!(
            "{} is not in this build of sync: Loro's undo adds about 270 KB to sync.wasm, over its size limit (docs/sync.md)",
            if redo { "Redo" } else { "Undo" }
        ))
    }
}

#[cfg(all(test, feature = "undo"))]
mod tests {
    use crate::doc::tests::{d, ins, sync};
    use crate::doc::Doc;
    use loro::VersionVector;
    use p2p_common::api::sync::{Op, Value};

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
        a.redo_ok("app-a");
        assert_eq!(a.text(), "A1 B1  B2");
        // B's history is untouched by A's undo and redo.
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "A1 B1 ");
        // An app that never edited has nothing to undo.
        assert!(a.undo("app-c", false).is_err());
        assert!(a.undo("app-c", true).is_err());
    }

    impl Doc {
        fn redo_ok(&mut self, app: &str) {
            self.undo(app, true).unwrap();
        }
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
    fn fields_and_counters_undo_and_a_concurrent_edit_at_an_older_version_ends_the_history() {
        let (mut a, mut b) = (d(1), d(2));
        a.edit("app", &[ins(0, "abc")], None, false).unwrap();
        sync(&mut a, &mut b);
        let seen = a.vv();
        b.edit("app", &[ins(0, "X")], None, false).unwrap();
        sync(&mut a, &mut b);
        // Made at `seen` (before X arrived), imported: not undoable, and it ends the
        // history (Loro would rebase its undo over the later changes only).
        a.edit("app", &[ins(3, "!")], Some(&seen), false).unwrap();
        assert_eq!(a.text(), "Xabc!");
        let err = a.undo("app", false).unwrap_err();
        assert!(err.contains("nothing to undo"), "{err}");
        a.edit(
            "app",
            &[
                Op::Update {
                    item_id: "t".into(),
                    field: "done".into(),
                    value: Value::Bool(true),
                },
                Op::Increment {
                    counter: "n".into(),
                    by: 2,
                },
            ],
            None,
            false,
        )
        .unwrap();
        a.edit("app", &[ins(0, "<")], None, false).unwrap();
        a.undo("app", false).unwrap();
        assert_eq!(a.text(), "Xabc!", "only the last edit");
        a.undo("app", false).unwrap();
        let c = a.content();
        assert!(c.items.is_empty(), "{:?}", c.items);
        assert!(
            c.counters.iter().all(|k| k.value == 0.0),
            "{:?}",
            c.counters
        );
        assert!(a.undo("app", false).is_err());
        assert_eq!(a.text(), "Xabc!");
        assert!(a.vv() != VersionVector::new());
    }

    #[test]
    fn with_two_apps_an_edit_at_an_older_version_is_its_own_step() {
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
        // B's undo takes back "<" alone, not A's edit made at the older version.
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "Xabcdef!");
        a.undo("app-a", false).unwrap();
        assert_eq!(a.text(), "Xabcdef");
        a.undo("app-b", false).unwrap();
        assert_eq!(a.text(), "Xabc");
    }

    #[test]
    fn histories_are_bounded_in_apps() {
        let mut a = d(1);
        for i in 0..super::MAX_UNDO_APPS + 2 {
            a.edit(&format!("app-{i}"), &[ins(0, "x")], None, false)
                .unwrap();
        }
        let last = format!("app-{}", super::MAX_UNDO_APPS + 1);
        let err = a.undo(&last, false).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        // The untracked app's edits are nobody's step: app-0 undoes its own only.
        a.undo("app-0", false).unwrap();
        assert_eq!(a.text().len(), super::MAX_UNDO_APPS + 1);
        assert!(a.undo("app-0", false).is_err());
    }
}
