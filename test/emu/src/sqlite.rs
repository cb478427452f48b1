//! `sqlite:distro:sys` on a real SQLite (rusqlite, bundled), with the request and response
//! JSON of process_lib 3.0.0 (`hyperware_process_lib::sqlite`) and the conversions of
//! Hyperdrive 1.9.2's sqlite module:
//!
//! - parameters come in the blob as a JSON array; numbers become INTEGER (if they fit i64)
//!   or REAL, booleans integers, `null` NULL, and a **string that decodes as standard base64
//!   becomes a BLOB** of the decoded bytes (any other string is TEXT);
//! - query rows go back in the blob as a JSON array of `{column: value}` objects, BLOBs as
//!   base64 strings;
//! - statements are checked by their first word (read and write keyword lists);
//! - `Write` with a `tx_id` only queues the statement; `Commit` runs the queue in one
//!   transaction; `BeginTx` hands out an id. A transaction belongs to the package that
//!   began it and to its database: a `Write` or `Commit` naming an id that package never
//!   began there answers `NoTx`. A package may hold `MAX_OPEN_TXS_PER_PACKAGE` open
//!   transactions with `MAX_QUEUED_PER_PACKAGE` statements queued in all; past that an
//!   `IOError` says which limit;
//! - package names, publishers and db names are path parts: one that is empty, starts
//!   with `.`, or contains `/`, `\`, NUL or `..` is refused with an `IOError`.
//!
//! Databases live at `<node dir>/sqlite/<package_id>/<db>/<db>.db`.

use base64::Engine as _;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

const READ_KEYWORDS: [&str; 8] = [
    "ANALYZE", "ATTACH", "BEGIN", "EXPLAIN", "PRAGMA", "SELECT", "VALUES", "WITH",
];
const WRITE_KEYWORDS: [&str; 17] = [
    "ALTER",
    "ANALYZE",
    "COMMIT",
    "CREATE",
    "DELETE",
    "DETACH",
    "DROP",
    "END",
    "INSERT",
    "REINDEX",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "ROLLBACK",
    "SAVEPOINT",
    "UPDATE",
    "VACUUM",
];

/// What the module answers: the response body, its blob, and capabilities to give the caller.
#[derive(Debug)]
pub(crate) struct SqliteOutcome {
    pub body: Vec<u8>,
    pub blob: Option<Vec<u8>>,
    /// `(kind, db_key)` capability params issued by sqlite to the caller (on `Open`).
    pub grant: Vec<String>,
}

/// One node's database module.
pub(crate) struct SqliteModule {
    dir: PathBuf,
    dbs: BTreeMap<(String, String), Connection>,
    /// Open transactions by (calling package, (owning package, db), tx id): only the
    /// package that began one can add to or commit it, and only on that database.
    txs: BTreeMap<TxKey, Vec<(String, Vec<SqlValue>)>>,
    next_tx: u64,
}

type TxKey = (String, (String, String), u64);

/// Open transactions one package may hold at once (across its databases).
pub(crate) const MAX_OPEN_TXS_PER_PACKAGE: usize = 64;
/// Statements one package may have queued in its open transactions, all together.
pub(crate) const MAX_QUEUED_PER_PACKAGE: usize = 10_000;

/// A name used as a path part (package name, publisher, db): not empty, no separator, NUL
/// or `..`, no leading `.`.
fn valid_path_part(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains("..") && !s.contains(['/', '\\', '\0'])
}

/// A refused name, as an `IOError` (process_lib's `SqliteError` has no better variant, and
/// a client can decode this one).
fn bad_name(what: &str, name: &str) -> SqliteOutcome {
    err(json!({ "IOError": format!(
        "invalid {what} {name:?}: must be non-empty, not start with '.', and contain no '/', '\\', NUL or '..'"
    ) }))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// An error as process_lib's `SqliteError` serializes it.
fn err(e: Value) -> SqliteOutcome {
    SqliteOutcome {
        body: serde_json::to_vec(&json!({ "Err": e })).unwrap_or_default(),
        blob: None,
        grant: vec![],
    }
}

fn rusqlite_err(e: rusqlite::Error) -> SqliteOutcome {
    err(json!({ "RusqliteError": e.to_string() }))
}

fn ok(body: Value, blob: Option<Vec<u8>>) -> SqliteOutcome {
    SqliteOutcome {
        body: serde_json::to_vec(&body).unwrap_or_default(),
        blob,
        grant: vec![],
    }
}

fn first_word(s: &str) -> String {
    s.split_whitespace()
        .next()
        .map(|w| w.to_uppercase())
        .unwrap_or_default()
}

/// The JSON → SQL conversion of Hyperdrive's module (see the module docs).
pub(crate) fn json_to_sql(v: &Value) -> Option<SqlValue> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .or_else(|| n.as_f64().map(SqlValue::Real)),
        Value::String(s) => Some(match b64().decode(s) {
            Ok(bytes) => SqlValue::Blob(bytes),
            Err(_) => SqlValue::Text(s.clone()),
        }),
        Value::Bool(b) => Some(SqlValue::Integer(i64::from(*b))),
        Value::Null => Some(SqlValue::Null),
        _ => None,
    }
}

pub(crate) fn sql_to_json(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        SqlValue::Text(s) => Value::String(s),
        SqlValue::Blob(b) => Value::String(b64().encode(b)),
    }
}

fn params(blob: Option<&[u8]>) -> Result<Vec<SqlValue>, SqliteOutcome> {
    let Some(blob) = blob else {
        return Ok(vec![]);
    };
    let invalid = || err(json!("InvalidParameters"));
    match serde_json::from_slice::<Value>(blob) {
        Ok(Value::Array(vs)) => vs
            .iter()
            .map(|v| json_to_sql(v).ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

impl SqliteModule {
    pub fn new(dir: PathBuf) -> Self {
        SqliteModule {
            dir,
            dbs: BTreeMap::new(),
            txs: BTreeMap::new(),
            next_tx: 1,
        }
    }

    /// The node went down: connections close, transactions not committed are gone.
    pub fn close_all(&mut self) {
        self.dbs.clear();
        self.txs.clear();
    }

    /// `<dir>/<package_id>/<db>`, after checking that the names cannot leave `dir`.
    fn db_dir(&self, key: &(String, String)) -> Result<PathBuf, SqliteOutcome> {
        let path = self.dir.join(&key.0).join(&key.1);
        let stays_under = path
            .strip_prefix(&self.dir)
            .map(|rest| {
                rest.components().count() == 2
                    && rest
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .unwrap_or(false);
        if !stays_under {
            return Err(bad_name("database path", &path.display().to_string()));
        }
        Ok(path)
    }

    /// Statements queued by `package` in all its open transactions, and how many it has.
    fn package_txs(&self, package: &str) -> (usize, usize) {
        self.txs
            .iter()
            .filter(|((p, _, _), _)| p == package)
            .fold((0, 0), |(n, q), (_, v)| (n + 1, q + v.len()))
    }

    fn open(&mut self, key: &(String, String)) -> Result<(), SqliteOutcome> {
        if self.dbs.contains_key(key) {
            return Ok(());
        }
        let dir = self.db_dir(key)?;
        std::fs::create_dir_all(&dir).map_err(|e| err(json!({ "IOError": e.to_string() })))?;
        let conn = Connection::open(dir.join(format!("{}.db", key.1))).map_err(rusqlite_err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(rusqlite_err)?;
        self.dbs.insert(key.clone(), conn);
        Ok(())
    }

    /// Handle one request body (a `SqliteRequest`) from a process of package
    /// `source_package` (`package:publisher`).
    pub fn handle(
        &mut self,
        source_package: &str,
        body: &[u8],
        blob: Option<&[u8]>,
    ) -> SqliteOutcome {
        match self.handle_inner(source_package, body, blob) {
            Ok(o) | Err(o) => o,
        }
    }

    fn handle_inner(
        &mut self,
        source_package: &str,
        body: &[u8],
        blob: Option<&[u8]>,
    ) -> Result<SqliteOutcome, SqliteOutcome> {
        let req: Value =
            serde_json::from_slice(body).map_err(|_| err(json!("MalformedRequest")))?;
        let malformed = || err(json!("MalformedRequest"));
        let pkg = req.get("package_id").ok_or_else(malformed)?;
        let package_name = pkg
            .get("package_name")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?;
        let publisher = pkg
            .get("publisher_node")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?;
        let db = req
            .get("db")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?;
        let action = req.get("action").ok_or_else(malformed)?;
        for (what, name) in [
            ("package name", package_name),
            ("publisher", publisher),
            ("db name", db),
        ] {
            if !valid_path_part(name) {
                return Err(bad_name(what, name));
            }
        }
        let key = (format!("{package_name}:{publisher}"), db.to_string());
        let (tag, arg) = match action {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one entry");
                (k.as_str(), v.clone())
            }
            _ => return Err(malformed()),
        };
        let db_key = json!([{ "package_name": package_name, "publisher_node": publisher }, db]);
        let mut grant = vec![];
        if (tag == "Open" || tag == "RemoveDb") && source_package != key.0 {
            return Err(err(json!("MismatchingPackageId")));
        }
        if tag == "Open" {
            for kind in ["read", "write"] {
                grant.push(json!({ "kind": kind, "db_key": db_key }).to_string());
            }
        }
        if tag == "RemoveDb" {
            let dir = self.db_dir(&key)?;
            self.dbs.remove(&key);
            self.txs.retain(|(_, k, _), _| *k != key);
            let _ = std::fs::remove_dir_all(dir);
            return Ok(ok(json!("Ok"), None));
        }
        // Hyperdrive opens the database for every action.
        self.open(&key)?;
        let out = match tag {
            "Open" => ok(json!("Ok"), None),
            "Query" => {
                let query = arg.as_str().ok_or_else(malformed)?;
                if !READ_KEYWORDS.contains(&first_word(query).as_str()) {
                    return Err(err(json!("NotAReadKeyword")));
                }
                let ps = params(blob)?;
                let conn = &self.dbs[&key];
                let mut stmt = conn.prepare(query).map_err(rusqlite_err)?;
                let names: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(ps.iter()), |row| {
                        let mut m = serde_json::Map::new();
                        for (i, n) in names.iter().enumerate() {
                            m.insert(n.clone(), sql_to_json(row.get::<_, SqlValue>(i)?));
                        }
                        Ok(Value::Object(m))
                    })
                    .map_err(rusqlite_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(rusqlite_err)?;
                ok(
                    json!("Read"),
                    Some(Value::Array(rows).to_string().into_bytes()),
                )
            }
            "Write" => {
                let statement = arg
                    .get("statement")
                    .and_then(Value::as_str)
                    .ok_or_else(malformed)?;
                if !WRITE_KEYWORDS.contains(&first_word(statement).as_str()) {
                    return Err(err(json!("NotAWriteKeyword")));
                }
                let ps = params(blob)?;
                match arg.get("tx_id").and_then(Value::as_u64) {
                    Some(tx) => {
                        let tx_key = (source_package.to_string(), key.clone(), tx);
                        if !self.txs.contains_key(&tx_key) {
                            return Err(err(json!({ "NoTx": tx })));
                        }
                        let (_, queued) = self.package_txs(source_package);
                        if queued >= MAX_QUEUED_PER_PACKAGE {
                            return Err(err(json!({ "IOError": format!(
                                "package {source_package} already has {queued} statements queued in open transactions (limit {MAX_QUEUED_PER_PACKAGE})"
                            ) })));
                        }
                        self.txs
                            .get_mut(&tx_key)
                            .expect("checked above")
                            .push((statement.to_string(), ps));
                    }
                    None => {
                        let conn = &self.dbs[&key];
                        let mut stmt = conn.prepare(statement).map_err(rusqlite_err)?;
                        stmt.execute(rusqlite::params_from_iter(ps.iter()))
                            .map_err(rusqlite_err)?;
                    }
                }
                ok(json!("Ok"), None)
            }
            "BeginTx" => {
                let (open, _) = self.package_txs(source_package);
                if open >= MAX_OPEN_TXS_PER_PACKAGE {
                    return Err(err(json!({ "IOError": format!(
                        "package {source_package} already has {open} open transactions (limit {MAX_OPEN_TXS_PER_PACKAGE})"
                    ) })));
                }
                let tx_id = self.next_tx;
                self.next_tx += 1;
                self.txs
                    .insert((source_package.to_string(), key.clone(), tx_id), Vec::new());
                ok(json!({ "BeginTx": { "tx_id": tx_id } }), None)
            }
            "Commit" => {
                let tx_id = arg
                    .get("tx_id")
                    .and_then(Value::as_u64)
                    .ok_or_else(malformed)?;
                let tx_key = (source_package.to_string(), key.clone(), tx_id);
                let Some(queued) = self.txs.remove(&tx_key) else {
                    return Err(err(json!({ "NoTx": tx_id })));
                };
                let conn = self.dbs.get_mut(&key).expect("opened above");
                let tx = conn.transaction().map_err(rusqlite_err)?;
                for (statement, ps) in queued {
                    tx.execute(&statement, rusqlite::params_from_iter(ps.iter()))
                        .map_err(rusqlite_err)?;
                }
                tx.commit().map_err(rusqlite_err)?;
                ok(json!("Ok"), None)
            }
            _ => return Err(malformed()),
        };
        Ok(SqliteOutcome { grant, ..out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("p2p-emu-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn req(db: &str, action: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "package_id": {"package_name": "pkg", "publisher_node": "pub.os"},
            "db": db,
            "action": action,
        }))
        .unwrap()
    }

    fn body(o: &SqliteOutcome) -> Value {
        serde_json::from_slice(&o.body).unwrap()
    }

    #[test]
    fn open_write_query_in_process_libs_json() {
        let dir = tmp("basic");
        let mut m = SqliteModule::new(dir.clone());
        let o = m.handle("pkg:pub.os", &req("d", json!("Open")), None);
        assert_eq!(body(&o), json!("Ok"));
        assert_eq!(o.grant.len(), 2, "Open issues read and write capabilities");
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Write": {"statement": "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT, n INTEGER)", "tx_id": null}})),
            Some(b"[]"),
        );
        assert_eq!(body(&o), json!("Ok"));
        // "6b31" is valid base64: stored as a BLOB and read back as the same base64 text.
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Write": {"statement": "INSERT INTO t (k, v, n) VALUES (?, ?, ?)", "tx_id": null}})),
            Some(br#"["6b31", "plain text!", 7]"#),
        );
        assert_eq!(body(&o), json!("Ok"));
        let o = m.handle(
            "pkg:pub.os",
            &req(
                "d",
                json!({"Query": "SELECT k, v, n, typeof(k) AS tk FROM t WHERE k = ?"}),
            ),
            Some(br#"["6b31"]"#),
        );
        assert_eq!(body(&o), json!("Read"));
        let rows: Value = serde_json::from_slice(o.blob.as_ref().unwrap()).unwrap();
        assert_eq!(
            rows,
            json!([{"k": "6b31", "v": "plain text!", "n": 7, "tk": "blob"}])
        );
        // Without a blob there are no parameters.
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Query": "SELECT count(*) AS c FROM t"})),
            None,
        );
        let rows: Value = serde_json::from_slice(o.blob.as_ref().unwrap()).unwrap();
        assert_eq!(rows, json!([{"c": 1}]));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn transactions_apply_at_commit_and_survive_a_reopen() {
        let dir = tmp("tx");
        let mut m = SqliteModule::new(dir.clone());
        m.handle("pkg:pub.os", &req("d", json!("Open")), None);
        m.handle(
            "pkg:pub.os",
            &req(
                "d",
                json!({"Write": {"statement": "CREATE TABLE t (k TEXT)", "tx_id": null}}),
            ),
            None,
        );
        let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
        let tx = body(&o)["BeginTx"]["tx_id"].as_u64().unwrap();
        for k in ["a", "b"] {
            let o = m.handle(
                "pkg:pub.os",
                &req(
                    "d",
                    json!({"Write": {"statement": "INSERT INTO t VALUES (?)", "tx_id": tx}}),
                ),
                Some(format!("[\"{k}\"]").as_bytes()),
            );
            assert_eq!(body(&o), json!("Ok"));
        }
        let count = |m: &mut SqliteModule| {
            let o = m.handle(
                "pkg:pub.os",
                &req("d", json!({"Query": "SELECT count(*) AS c FROM t"})),
                None,
            );
            serde_json::from_slice::<Value>(o.blob.as_ref().unwrap()).unwrap()[0]["c"].clone()
        };
        assert_eq!(count(&mut m), json!(0), "queued, not written");
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!("Ok"));
        assert_eq!(count(&mut m), json!(2));
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!({"Err": {"NoTx": tx}}));

        // An uncommitted transaction is lost when the node goes down; data is not.
        let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
        let tx = body(&o)["BeginTx"]["tx_id"].as_u64().unwrap();
        m.handle(
            "pkg:pub.os",
            &req(
                "d",
                json!({"Write": {"statement": "INSERT INTO t VALUES ('c')", "tx_id": tx}}),
            ),
            None,
        );
        m.close_all();
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!({"Err": {"NoTx": tx}}));
        assert_eq!(count(&mut m), json!(2));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn req_as(package_name: &str, publisher: &str, db: &str, action: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "package_id": {"package_name": package_name, "publisher_node": publisher},
            "db": db,
            "action": action,
        }))
        .unwrap()
    }

    #[test]
    fn hostile_db_and_package_names_cannot_leave_the_node_dir() {
        // The module's dir sits five levels under a scratch root, so that even an escape
        // (before the fix) stays inside the scratch root.
        let root = tmp("traversal");
        let dir = root.join("a/b/c/d/sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        // Where "<dir>/pkg:pub.os/../../../victim" points: <root>/a/b/c/victim.
        let victim = root.join("a/b/c/victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        let mut m = SqliteModule::new(dir.clone());
        let refused = |o: &SqliteOutcome| {
            body(o)["Err"]["IOError"]
                .as_str()
                .is_some_and(|s| s.starts_with("invalid "))
        };
        for db in [
            "../../../victim",
            "../../../outside",
            "..",
            ".",
            "",
            ".hidden",
            "a/b",
            "a\\b",
            "a\0b",
            "x..y",
        ] {
            for action in [
                json!("RemoveDb"),
                json!("Open"),
                json!({"Query": "SELECT 1"}),
            ] {
                let o = m.handle("pkg:pub.os", &req(db, action.clone()), None);
                assert!(refused(&o), "{db:?} {action}: {:?}", body(&o));
            }
        }
        assert!(
            victim.join("keep").exists(),
            "RemoveDb deleted a folder outside its dir"
        );
        assert!(!root.join("a/b/c/outside").exists());
        assert!(!root.join("a/b/c/outside.db").exists());
        // Package ids are path parts too (Query does not check the package against the
        // caller, so this reaches the path without a MismatchingPackageId).
        for (name, publisher) in [
            ("..", "pub.os"),
            ("pkg", "../../x"),
            ("", "pub.os"),
            ("p/q", "o"),
        ] {
            let o = m.handle(
                "pkg:pub.os",
                &req_as(name, publisher, "d", json!({"Query": "SELECT 1"})),
                None,
            );
            assert!(refused(&o), "{name:?}:{publisher:?}: {:?}", body(&o));
        }
        // Nothing was created under the module's dir either, and a good name still works.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let o = m.handle("pkg:pub.os", &req("good-db_1.v2", json!("Open")), None);
        assert_eq!(body(&o), json!("Ok"));
        assert!(dir.join("pkg:pub.os/good-db_1.v2/good-db_1.v2.db").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn transactions_belong_to_their_package_and_db_and_are_bounded() {
        let dir = tmp("txown");
        let mut m = SqliteModule::new(dir.clone());
        let write =
            |tx: u64| json!({"Write": {"statement": "INSERT INTO t VALUES (1)", "tx_id": tx}});
        m.handle("pkg:pub.os", &req("d", json!("Open")), None);
        m.handle(
            "pkg:pub.os",
            &req(
                "d",
                json!({"Write": {"statement": "CREATE TABLE t (k)", "tx_id": null}}),
            ),
            None,
        );
        // A Write naming a transaction nobody began is refused, not queued.
        let o = m.handle("pkg:pub.os", &req("d", write(777)), None);
        assert_eq!(body(&o), json!({"Err": {"NoTx": 777}}));
        assert!(m.txs.is_empty());
        let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
        let tx = body(&o)["BeginTx"]["tx_id"].as_u64().unwrap();
        assert_eq!(
            body(&m.handle("pkg:pub.os", &req("d", write(tx)), None)),
            json!("Ok")
        );
        // Another package (even one allowed on this db) can neither add to it nor commit it.
        let o = m.handle("evil:pub.os", &req("d", write(tx)), None);
        assert_eq!(body(&o), json!({"Err": {"NoTx": tx}}));
        let o = m.handle(
            "evil:pub.os",
            &req("d", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!({"Err": {"NoTx": tx}}));
        // Nor can the owner commit it on another db.
        let o = m.handle(
            "pkg:pub.os",
            &req("e", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!({"Err": {"NoTx": tx}}));
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Commit": {"tx_id": tx}})),
            None,
        );
        assert_eq!(body(&o), json!("Ok"));

        // Bounds: open transactions per package, then queued statements per package.
        let mut open = vec![];
        for _ in 0..MAX_OPEN_TXS_PER_PACKAGE {
            let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
            open.push(body(&o)["BeginTx"]["tx_id"].as_u64().unwrap());
        }
        let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
        assert!(body(&o)["Err"]["IOError"]
            .as_str()
            .unwrap()
            .contains("open transactions"));
        // Another package has its own allowance.
        let o = m.handle("other:pub.os", &req("d", json!("BeginTx")), None);
        assert!(body(&o)["BeginTx"]["tx_id"].is_u64());
        for i in 0..MAX_QUEUED_PER_PACKAGE {
            let o = m.handle("pkg:pub.os", &req("d", write(open[i % open.len()])), None);
            assert_eq!(body(&o), json!("Ok"));
        }
        let o = m.handle("pkg:pub.os", &req("d", write(open[0])), None);
        assert!(body(&o)["Err"]["IOError"]
            .as_str()
            .unwrap()
            .contains("queued"));
        // Committing frees the allowance.
        let o = m.handle(
            "pkg:pub.os",
            &req("d", json!({"Commit": {"tx_id": open[0]}})),
            None,
        );
        assert_eq!(body(&o), json!("Ok"));
        assert_eq!(
            body(&m.handle("pkg:pub.os", &req("d", write(open[1])), None)),
            json!("Ok")
        );
        let o = m.handle("pkg:pub.os", &req("d", json!("BeginTx")), None);
        assert!(body(&o)["BeginTx"]["tx_id"].is_u64());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn refusals_use_process_libs_error_names() {
        let dir = tmp("err");
        let mut m = SqliteModule::new(dir.clone());
        assert_eq!(
            body(&m.handle("other:pub.os", &req("d", json!("Open")), None)),
            json!({"Err": "MismatchingPackageId"})
        );
        assert_eq!(
            body(&m.handle(
                "pkg:pub.os",
                &req("d", json!({"Query": "DELETE FROM t"})),
                None
            )),
            json!({"Err": "NotAReadKeyword"})
        );
        assert_eq!(
            body(&m.handle(
                "pkg:pub.os",
                &req(
                    "d",
                    json!({"Write": {"statement": "SELECT 1", "tx_id": null}})
                ),
                None
            )),
            json!({"Err": "NotAWriteKeyword"})
        );
        assert_eq!(
            body(&m.handle(
                "pkg:pub.os",
                &req(
                    "d",
                    json!({"Write": {"statement": "INSERT INTO t VALUES (?)", "tx_id": null}})
                ),
                Some(b"[[1]]")
            )),
            json!({"Err": "InvalidParameters"})
        );
        assert_eq!(
            body(&m.handle("pkg:pub.os", b"not json", None)),
            json!({"Err": "MalformedRequest"})
        );
        let o = m.handle(
            "pkg:pub.os",
            &req(
                "d",
                json!({"Write": {"statement": "INSERT INTO missing VALUES (1)", "tx_id": null}}),
            ),
            None,
        );
        assert!(body(&o)["Err"]["RusqliteError"]
            .as_str()
            .unwrap()
            .contains("missing"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
