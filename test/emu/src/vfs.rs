//! `vfs:distro:sys`, in memory per node, with the request and response JSON of process_lib
//! 3.0.0 (`hyperware_process_lib::vfs`) and the capability rules of Hyperdrive 1.9.2's vfs:
//!
//! - paths are `/<package_id>/<drive>/<rest>`; a process may read and write the drives of
//!   its own package, anything else needs a `{"kind": "read"|"write", "drive":
//!   "/<package_id>/<drive>"}` capability issued by vfs, or `{"root": true}`;
//! - `CreateDrive` (own package or root) gives the caller read and write on the drive;
//! - `ReadDir` answers entries named relative to the vfs root, without a leading `/`
//!   (`p2p-patterns:p2p-patterns.os/pkg/ui/index.html`), which process_lib's `serve_ui`
//!   relies on; `Read` answers `"Read"` with the contents in the blob;
//! - only requests from our own node are served.
//!
//! Installing a package writes its zip's files to `/<package_id>/pkg/` (as app-store does).
//! Open files have a cursor, one per path as Hyperdrive keeps one open handle per path: it
//! starts at 0 when a file is first opened (`OpenFile`, or any cursor action), `Seek`
//! moves it (`{"SeekFrom": {"new_offset"}}`), `WriteAll` writes the blob at it (past the end
//! the gap is zeros), `ReadExact {length}` and `ReadToEnd` read from it, and `CloseFile`
//! drops it. `Write` replaces the whole file, `Append` writes at the end, `Read` reads the
//! whole file, whatever the cursor. `SetLen` truncates or extends with zeros. A file may
//! not grow past `MAX_FILE_LEN` (256 MiB): such a write answers an `IOError`. Other actions
//! (`Rename`, `CopyFile`, `AddZip`, `Hash`) answer an `IOError` saying they are not emulated.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What vfs answers, and the capability params it issues to the caller.
#[derive(Debug)]
pub(crate) struct VfsOutcome {
    pub body: Vec<u8>,
    pub blob: Option<Vec<u8>>,
    pub grant: Vec<String>,
}

fn answer(v: Value, blob: Option<Vec<u8>>) -> VfsOutcome {
    VfsOutcome {
        body: serde_json::to_vec(&v).unwrap_or_default(),
        blob,
        grant: vec![],
    }
}

fn err(e: Value) -> VfsOutcome {
    answer(json!({ "Err": e }), None)
}

fn not_found() -> VfsOutcome {
    err(json!({"IOError": "No such file or directory (os error 2)"}))
}

/// The largest file the emulator holds (in memory): a write, extension or `SetLen` past
/// it is refused with an `IOError` before anything is allocated.
pub(crate) const MAX_FILE_LEN: u64 = 256 << 20;

fn too_large() -> VfsOutcome {
    err(json!({
        "IOError": format!("file would exceed the emulator's {MAX_FILE_LEN}-byte limit (File too large, os error 27)")
    }))
}

/// `at + len`, if it is within [`MAX_FILE_LEN`] (no overflow).
fn file_end(at: u64, len: u64) -> Option<u64> {
    at.checked_add(len).filter(|&end| end <= MAX_FILE_LEN)
}

/// One node's files.
#[derive(Default)]
pub(crate) struct Vfs {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    /// Cursors of open files, by path.
    cursors: BTreeMap<String, u64>,
}

/// `/a/b/../c` and friends are refused; the result has no leading or trailing `/`.
fn normalize(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The capability params vfs issues for `kind` on `drive` (Hyperdrive's exact string).
pub(crate) fn drive_cap(kind: &str, drive: &str) -> String {
    format!("{{\"kind\": \"{kind}\", \"drive\": \"{drive}\"}}")
}

impl Vfs {
    fn parent_dirs(path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            out.push(acc.clone());
        }
        out
    }

    fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self.dirs.contains(path)
            || self.files.keys().any(|f| {
                f.len() > path.len() && f.starts_with(path) && f.as_bytes()[path.len()] == b'/'
            })
    }

    /// Write a file, creating its directories (install, and `Write`).
    pub fn write(&mut self, path: &str, bytes: Vec<u8>) {
        if let Some(p) = normalize(path) {
            for d in Self::parent_dirs(&p) {
                self.dirs.insert(d);
            }
            self.files.insert(p, bytes);
        }
    }

    pub fn read(&self, path: &str) -> Option<&Vec<u8>> {
        self.files.get(&normalize(path)?)
    }

    fn children(&self, dir: &str) -> Vec<(String, bool)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        let names = self
            .files
            .keys()
            .map(|f| (f, false))
            .chain(self.dirs.iter().map(|d| (d, true)));
        for (name, is_dir) in names {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            match rest.split_once('/') {
                Some((first, _)) => {
                    out.insert(format!("{prefix}{first}"), true);
                }
                None => {
                    out.entry(format!("{prefix}{rest}")).or_insert(is_dir);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Serve one request from `source_package` (`package:publisher`). `has_cap(params)`
    /// says whether the caller holds a vfs capability with these params (compared as JSON).
    pub fn handle(
        &mut self,
        source_package: &str,
        has_cap: &dyn Fn(&Value) -> bool,
        body: &[u8],
        blob: Option<&[u8]>,
    ) -> VfsOutcome {
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            return err(json!("MalformedRequest"));
        };
        let (Some(path), Some(action)) =
            (req.get("path").and_then(Value::as_str), req.get("action"))
        else {
            return err(json!("MalformedRequest"));
        };
        let (name, arg) = match action {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one entry");
                (k.as_str(), v.clone())
            }
            _ => return err(json!("MalformedRequest")),
        };
        let Some(norm) = normalize(path) else {
            return err(json!({"ParseError": {"error": "path escapes its drive", "path": path}}));
        };
        let root = has_cap(&json!({"root": true}));
        if norm.is_empty() || norm.split('/').count() < 2 {
            // The root or a package folder: listing it needs the root capability.
            if name == "ReadDir" {
                if !root {
                    return err(json!("NoReadCap"));
                }
                return self.read_dir(&norm);
            }
            return err(json!("MalformedRequest"));
        }
        let mut parts = norm.splitn(3, '/');
        let package = parts.next().unwrap_or_default().to_string();
        let drive_name = parts.next().unwrap_or_default();
        if !package.contains(':') {
            return err(json!("MalformedRequest"));
        }
        let drive = format!("/{package}/{drive_name}");
        let own = package == source_package;
        let may = |kind: &str| {
            own || root
                || serde_json::from_str::<Value>(&drive_cap(kind, &drive))
                    .is_ok_and(|c| has_cap(&c))
        };
        let writes = [
            "CreateDir",
            "CreateDirAll",
            "CreateFile",
            "OpenFile",
            "CloseFile",
            "Write",
            "WriteAll",
            "Append",
            "SyncAll",
            "RemoveFile",
            "RemoveDir",
            "RemoveDirAll",
            "AddZip",
            "SetLen",
            "Rename",
            "CopyFile",
        ];
        if name == "CreateDrive" {
            if !own && !root {
                return err(json!("NoWriteCap"));
            }
            self.dirs.insert(norm.clone());
            let mut out = answer(json!("Ok"), None);
            out.grant = vec![drive_cap("read", &drive), drive_cap("write", &drive)];
            return out;
        }
        if writes.contains(&name) {
            if !may("write") {
                return err(json!("NoWriteCap"));
            }
        } else if !may("read") {
            return err(json!("NoReadCap"));
        }
        match name {
            "CreateDir" | "CreateDirAll" => {
                if name == "CreateDir" && !Self::parent_dirs(&norm).iter().all(|d| self.is_dir(d)) {
                    return not_found();
                }
                for d in Self::parent_dirs(&norm) {
                    self.dirs.insert(d);
                }
                self.dirs.insert(norm);
                answer(json!("Ok"), None)
            }
            "CreateFile" => {
                self.write(&norm, Vec::new());
                answer(json!("Ok"), None)
            }
            "OpenFile" => {
                let create = arg.get("create").and_then(Value::as_bool).unwrap_or(false);
                if !self.files.contains_key(&norm) {
                    if !create {
                        return not_found();
                    }
                    self.write(&norm, Vec::new());
                }
                self.cursors.entry(norm).or_insert(0);
                answer(json!("Ok"), None)
            }
            "CloseFile" => {
                self.cursors.remove(&norm);
                answer(json!("Ok"), None)
            }
            "SyncAll" => answer(json!("Ok"), None),
            "Seek" => {
                let Some(len) = self.files.get(&norm).map(|f| f.len() as i128) else {
                    return not_found();
                };
                let at = *self.cursors.get(&norm).unwrap_or(&0) as i128;
                let target = match (arg.get("Start"), arg.get("End"), arg.get("Current")) {
                    (Some(n), None, None) => n.as_u64().map(i128::from),
                    (None, Some(n), None) => n.as_i64().map(|d| len + i128::from(d)),
                    (None, None, Some(n)) => n.as_i64().map(|d| at + i128::from(d)),
                    _ => None,
                };
                let Some(target) = target else {
                    return err(json!("MalformedRequest"));
                };
                let Ok(new_offset) = u64::try_from(target) else {
                    return err(json!({
                        "IOError": "invalid seek to a negative or overflowing position (os error 22)"
                    }));
                };
                self.cursors.insert(norm, new_offset);
                answer(json!({"SeekFrom": {"new_offset": new_offset}}), None)
            }
            "WriteAll" => {
                let Some(blob) = blob else {
                    return err(json!("NoBlob"));
                };
                let at = *self.cursors.get(&norm).unwrap_or(&0);
                let Some(f) = self.files.get_mut(&norm) else {
                    return not_found();
                };
                let Some(end) = file_end(at, blob.len() as u64) else {
                    return too_large();
                };
                let (at, end) = (at as usize, end as usize);
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[at..end].copy_from_slice(blob);
                self.cursors.insert(norm, end as u64);
                answer(json!("Ok"), None)
            }
            "ReadExact" | "ReadToEnd" => {
                let at = *self.cursors.get(&norm).unwrap_or(&0);
                let Some(f) = self.files.get(&norm) else {
                    return not_found();
                };
                let from = usize::try_from(at).unwrap_or(usize::MAX).min(f.len());
                let to = if name == "ReadExact" {
                    let Some(n) = arg.get("length").and_then(Value::as_u64) else {
                        return err(json!("MalformedRequest"));
                    };
                    match usize::try_from(n).ok().and_then(|n| from.checked_add(n)) {
                        Some(to) if to <= f.len() => to,
                        _ => return err(json!({"IOError": "failed to fill whole buffer"})),
                    }
                } else {
                    f.len()
                };
                let bytes = f[from..to].to_vec();
                self.cursors.insert(norm, to as u64);
                answer(json!("Read"), Some(bytes))
            }
            "SetLen" => {
                let Some(n) = arg.as_u64() else {
                    return err(json!("MalformedRequest"));
                };
                let Some(f) = self.files.get_mut(&norm) else {
                    return not_found();
                };
                if n > MAX_FILE_LEN {
                    return too_large();
                }
                f.resize(n as usize, 0);
                answer(json!("Ok"), None)
            }
            "Write" | "Append" => {
                let Some(blob) = blob else {
                    return err(json!("NoBlob"));
                };
                if name == "Append" {
                    let Some(f) = self.files.get_mut(&norm) else {
                        return not_found();
                    };
                    if file_end(f.len() as u64, blob.len() as u64).is_none() {
                        return too_large();
                    }
                    f.extend_from_slice(blob);
                } else {
                    if blob.len() as u64 > MAX_FILE_LEN {
                        return too_large();
                    }
                    self.write(&norm, blob.to_vec());
                }
                answer(json!("Ok"), None)
            }
            "Read" => match self.files.get(&norm) {
                Some(f) => answer(json!("Read"), Some(f.clone())),
                None => not_found(),
            },
            "ReadToString" => match self.files.get(&norm) {
                Some(f) => match String::from_utf8(f.clone()) {
                    Ok(s) => answer(json!({ "ReadToString": s }), None),
                    Err(_) => err(json!({"IOError": "stream did not contain valid UTF-8"})),
                },
                None => not_found(),
            },
            "ReadDir" => self.read_dir(&norm),
            "Metadata" => {
                if let Some(f) = self.files.get(&norm) {
                    answer(
                        json!({"Metadata": {"file_type": "File", "len": f.len()}}),
                        None,
                    )
                } else if self.is_dir(&norm) {
                    answer(
                        json!({"Metadata": {"file_type": "Directory", "len": 0}}),
                        None,
                    )
                } else {
                    not_found()
                }
            }
            "Len" => match self.files.get(&norm) {
                Some(f) => answer(json!({ "Len": f.len() }), None),
                None => not_found(),
            },
            "RemoveFile" => match self.files.remove(&norm) {
                Some(_) => {
                    self.cursors.remove(&norm);
                    answer(json!("Ok"), None)
                }
                None => not_found(),
            },
            "RemoveDir" | "RemoveDirAll" => {
                if !self.is_dir(&norm) {
                    return not_found();
                }
                let inside = format!("{norm}/");
                if name == "RemoveDir" && !self.children(&norm).is_empty() {
                    return err(json!({"IOError": "Directory not empty (os error 39)"}));
                }
                self.files.retain(|f, _| !f.starts_with(&inside));
                self.dirs.retain(|d| d != &norm && !d.starts_with(&inside));
                answer(json!("Ok"), None)
            }
            other => err(json!({
                "IOError": format!("p2p-emu: the vfs action {other} is not emulated")
            })),
        }
    }

    fn read_dir(&self, dir: &str) -> VfsOutcome {
        if !self.is_dir(dir) {
            return not_found();
        }
        let entries: Vec<Value> = self
            .children(dir)
            .into_iter()
            .map(|(path, is_dir)| {
                json!({"path": path, "file_type": if is_dir { "Directory" } else { "File" }})
            })
            .collect();
        answer(json!({ "ReadDir": entries }), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(v: &mut Vfs, pkg: &str, caps: &[Value], body: Value, blob: Option<&[u8]>) -> Value {
        let has = |c: &Value| caps.contains(c);
        let out = v.handle(pkg, &has, &serde_json::to_vec(&body).unwrap(), blob);
        let mut r: Value = serde_json::from_slice(&out.body).unwrap();
        if let Some(b) = out.blob {
            r = json!([r, String::from_utf8_lossy(&b)]);
        }
        r
    }

    #[test]
    fn files_dirs_and_the_package_drive() {
        let mut v = Vfs::default();
        v.write("/p:q.os/pkg/ui/index.html", b"<h1>".to_vec());
        v.write("/p:q.os/pkg/ui/assets/a.js", b"js".to_vec());
        let own = "p:q.os";
        let dir = call(
            &mut v,
            own,
            &[],
            json!({"path": "p:q.os/pkg/ui", "action": "ReadDir"}),
            None,
        );
        assert_eq!(
            dir,
            json!({"ReadDir": [
                {"path": "p:q.os/pkg/ui/assets", "file_type": "Directory"},
                {"path": "p:q.os/pkg/ui/index.html", "file_type": "File"}
            ]})
        );
        let read = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/pkg/ui/index.html", "action": "Read"}),
            None,
        );
        assert_eq!(read, json!(["Read", "<h1>"]));
        let w = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/data/x", "action": "Write"}),
            Some(b"1"),
        );
        assert_eq!(w, json!("Ok"));
        let w = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/data/x", "action": "Write"}),
            None,
        );
        assert_eq!(w, json!({"Err": "NoBlob"}));
        let m = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/data/x", "action": "Metadata"}),
            None,
        );
        assert_eq!(m, json!({"Metadata": {"file_type": "File", "len": 1}}));
        let gone = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/data/y", "action": "Read"}),
            None,
        );
        assert_eq!(
            gone,
            json!({"Err": {"IOError": "No such file or directory (os error 2)"}})
        );
        let esc = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/pkg/../../x:y.os/pkg/a", "action": "Read"}),
            None,
        );
        assert!(esc["Err"].get("ParseError").is_some(), "{esc}");
        for bad in [
            json!({"path": 1}),
            json!({"path": "/p:q.os/pkg", "action": {"A": 1, "B": 2}}),
        ] {
            assert_eq!(
                call(&mut v, own, &[], bad, None),
                json!({"Err": "MalformedRequest"})
            );
        }
        let seek = call(
            &mut v,
            own,
            &[],
            json!({"path": "/p:q.os/data/x", "action": "Hash"}),
            None,
        );
        assert!(seek["Err"]["IOError"]
            .as_str()
            .unwrap()
            .contains("not emulated"));
    }

    #[test]
    fn hostile_offsets_and_lengths_are_refused_without_allocating() {
        let mut v = Vfs::default();
        let own = "p:q.os";
        let act = |v: &mut Vfs, action: Value, blob: Option<&[u8]>| {
            call(
                v,
                own,
                &[],
                json!({"path": "/p:q.os/data/f", "action": action}),
                blob,
            )
        };
        let too_large = |r: &Value| {
            r["Err"]["IOError"]
                .as_str()
                .is_some_and(|m| m.contains("limit"))
        };
        assert_eq!(
            act(&mut v, json!({"OpenFile": {"create": true}}), None),
            json!("Ok")
        );
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b"abc")), json!("Ok"));
        // WriteAll at u64::MAX: `at + len` overflows.
        assert_eq!(
            act(&mut v, json!({"Seek": {"Start": u64::MAX}}), None),
            json!({"SeekFrom": {"new_offset": u64::MAX}})
        );
        let r = act(&mut v, json!("WriteAll"), Some(b"x"));
        assert!(too_large(&r), "{r}");
        // ReadExact of u64::MAX bytes, from the cursor at u64::MAX and from 0.
        let r = act(&mut v, json!({"ReadExact": {"length": u64::MAX}}), None);
        assert_eq!(
            r,
            json!({"Err": {"IOError": "failed to fill whole buffer"}})
        );
        act(&mut v, json!({"Seek": {"Start": 1}}), None);
        let r = act(&mut v, json!({"ReadExact": {"length": u64::MAX}}), None);
        assert_eq!(
            r,
            json!({"Err": {"IOError": "failed to fill whole buffer"}})
        );
        // A write just past the cap, and SetLen to 1 TiB: refused, nothing allocated.
        act(&mut v, json!({"Seek": {"Start": MAX_FILE_LEN}}), None);
        let r = act(&mut v, json!("WriteAll"), Some(b"x"));
        assert!(too_large(&r), "{r}");
        let r = act(&mut v, json!({"SetLen": 1u64 << 40}), None);
        assert!(too_large(&r), "{r}");
        let r = act(&mut v, json!({"SetLen": u64::MAX}), None);
        assert!(too_large(&r), "{r}");
        // The file is untouched, and the cap itself is allowed.
        assert_eq!(act(&mut v, json!("Read"), None), json!(["Read", "abc"]));
        assert_eq!(act(&mut v, json!({"SetLen": 2}), None), json!("Ok"));
        assert_eq!(act(&mut v, json!("Read"), None), json!(["Read", "ab"]));
    }

    #[test]
    fn seek_write_all_and_read_exact_share_one_cursor_per_open_file() {
        let mut v = Vfs::default();
        let own = "p:q.os";
        let act = |v: &mut Vfs, action: Value, blob: Option<&[u8]>| {
            call(
                v,
                own,
                &[],
                json!({"path": "/p:q.os/data/f", "action": action}),
                blob,
            )
        };
        assert_eq!(
            act(&mut v, json!({"OpenFile": {"create": false}}), None),
            json!({"Err": {"IOError": "No such file or directory (os error 2)"}})
        );
        assert_eq!(
            act(&mut v, json!({"OpenFile": {"create": true}}), None),
            json!("Ok")
        );
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b"hello")), json!("Ok"));
        // The cursor is after "hello": the next WriteAll continues there.
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b" world")), json!("Ok"));
        assert_eq!(
            act(&mut v, json!("Read"), None),
            json!(["Read", "hello world"])
        );
        assert_eq!(
            act(&mut v, json!({"Seek": {"Start": 6}}), None),
            json!({"SeekFrom": {"new_offset": 6}})
        );
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b"W")), json!("Ok"));
        assert_eq!(
            act(&mut v, json!("Read"), None),
            json!(["Read", "hello World"])
        );
        assert_eq!(
            act(&mut v, json!({"Seek": {"End": -5}}), None),
            json!({"SeekFrom": {"new_offset": 6}})
        );
        assert_eq!(
            act(&mut v, json!({"ReadExact": {"length": 3}}), None),
            json!(["Read", "Wor"])
        );
        assert_eq!(
            act(&mut v, json!({"Seek": {"Current": -2}}), None),
            json!({"SeekFrom": {"new_offset": 7}})
        );
        assert_eq!(
            act(&mut v, json!("ReadToEnd"), None),
            json!(["Read", "orld"])
        );
        assert_eq!(
            act(&mut v, json!({"ReadExact": {"length": 1}}), None),
            json!({"Err": {"IOError": "failed to fill whole buffer"}})
        );
        let neg = act(&mut v, json!({"Seek": {"Current": -100}}), None);
        assert!(
            neg["Err"]["IOError"].as_str().unwrap().contains("negative"),
            "{neg}"
        );
        assert_eq!(
            act(&mut v, json!({"Seek": {"Up": 1}}), None),
            json!({"Err": "MalformedRequest"})
        );
        // Past the end, the gap is zeros; SetLen cuts and extends.
        assert_eq!(
            act(&mut v, json!({"Seek": {"Start": 13}}), None),
            json!({"SeekFrom": {"new_offset": 13}})
        );
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b"!")), json!("Ok"));
        assert_eq!(v.read("/p:q.os/data/f").unwrap(), b"hello World\0\0!");
        assert_eq!(act(&mut v, json!({"SetLen": 5}), None), json!("Ok"));
        assert_eq!(act(&mut v, json!("Read"), None), json!(["Read", "hello"]));
        assert_eq!(
            act(&mut v, json!("WriteAll"), None),
            json!({"Err": "NoBlob"})
        );
        // Closing drops the cursor: the file opens at 0 again.
        assert_eq!(act(&mut v, json!("CloseFile"), None), json!("Ok"));
        assert_eq!(
            act(&mut v, json!({"OpenFile": {"create": false}}), None),
            json!("Ok")
        );
        assert_eq!(act(&mut v, json!("WriteAll"), Some(b"J")), json!("Ok"));
        assert_eq!(act(&mut v, json!("Read"), None), json!(["Read", "Jello"]));
        // Another package needs the write capability for WriteAll.
        let other = call(
            &mut v,
            "x:y.os",
            &[],
            json!({"path": "/p:q.os/data/f", "action": "WriteAll"}),
            Some(b"x"),
        );
        assert_eq!(other, json!({"Err": "NoWriteCap"}));
    }

    #[test]
    fn other_packages_need_a_drive_or_root_capability() {
        let mut v = Vfs::default();
        v.write("/p:q.os/pkg/a", b"a".to_vec());
        let req = json!({"path": "/p:q.os/pkg/a", "action": "Read"});
        assert_eq!(
            call(&mut v, "o:q.os", &[], req.clone(), None),
            json!({"Err": "NoReadCap"})
        );
        let read: Value = serde_json::from_str(&drive_cap("read", "/p:q.os/pkg")).unwrap();
        assert_eq!(
            call(&mut v, "o:q.os", &[read.clone()], req.clone(), None),
            json!(["Read", "a"])
        );
        let write = json!({"path": "/p:q.os/pkg/a", "action": "Write"});
        assert_eq!(
            call(&mut v, "o:q.os", &[read], write.clone(), Some(b"b")),
            json!({"Err": "NoWriteCap"})
        );
        assert_eq!(
            call(
                &mut v,
                "o:q.os",
                &[json!({"root": true})],
                write,
                Some(b"b")
            ),
            json!("Ok")
        );
        assert_eq!(
            call(
                &mut v,
                "o:q.os",
                &[],
                json!({"path": "/", "action": "ReadDir"}),
                None
            ),
            json!({"Err": "NoReadCap"})
        );
        // CreateDrive of its own package grants read and write on it.
        let has = |_: &Value| false;
        let out = v.handle(
            "o:q.os",
            &has,
            br#"{"path": "/o:q.os/log", "action": "CreateDrive"}"#,
            None,
        );
        assert_eq!(
            out.grant,
            [
                drive_cap("read", "/o:q.os/log"),
                drive_cap("write", "/o:q.os/log")
            ]
        );
        let out = v.handle(
            "o:q.os",
            &has,
            br#"{"path": "/p:q.os/x", "action": "CreateDrive"}"#,
            None,
        );
        assert!(out.grant.is_empty() && String::from_utf8_lossy(&out.body).contains("NoWriteCap"));
    }
}
