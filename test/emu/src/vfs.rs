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
//! Actions on open files with a cursor (`Seek`, `WriteAll`, `ReadExact`, ...) are not
//! emulated: they answer an `IOError` that says so.

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

/// One node's files.
#[derive(Default)]
pub(crate) struct Vfs {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
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
                answer(json!("Ok"), None)
            }
            "CloseFile" | "SyncAll" => answer(json!("Ok"), None),
            "Write" | "Append" => {
                let Some(blob) = blob else {
                    return err(json!("NoBlob"));
                };
                if name == "Append" {
                    let Some(f) = self.files.get_mut(&norm) else {
                        return not_found();
                    };
                    f.extend_from_slice(blob);
                } else {
                    self.write(&norm, blob.to_vec());
                }
                answer(json!("Ok"), None)
            }
            "Read" | "ReadToEnd" => match self.files.get(&norm) {
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
                Some(_) => answer(json!("Ok"), None),
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
            json!({"path": "/p:q.os/data/x", "action": {"Seek": {"Start": 0}}}),
            None,
        );
        assert!(seek["Err"]["IOError"]
            .as_str()
            .unwrap()
            .contains("not emulated"));
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
