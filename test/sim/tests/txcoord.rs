//! txcoord on simulated nodes: docs/api.md's txcoord section, replayed line by line.

use p2p_common::api::txcoord::ManagerMessage;
use p2p_common::service::{Effect, Input, Now, RequestId, Service};
use p2p_common::txcoord::{answer, Manager};
use p2p_common::{NodeId, ProcessId};
use p2p_sim::sim::AppSpec;
use p2p_sim::{factory, Mode, NetConfig, Sim, SimConfig};
use serde_json::Value;
use std::collections::BTreeMap;

/// The manager app of the docs (`kv`, managing the resources `kv` and `audit`): the module
/// example's key-value store, answering through `p2p_common::txcoord::answer`. An operation
/// `slow=…` is voted on after 4 s (past txcoord's 3 s manager timeout). It keeps every
/// message it got and every answer it gave.
#[derive(Default)]
struct DocKv {
    prepared: BTreeMap<(String, String), (String, String)>,
    data: BTreeMap<(String, String), String>,
    got: Vec<Vec<u8>>,
    answered: Vec<Option<Vec<u8>>>,
}

impl Manager for DocKv {
    fn prepare(&mut self, tx_id: &str, res: &str, _c: &NodeId, op: &str) -> Result<(), String> {
        let (k, v) = op.split_once('=').ok_or("operation must be key=value")?;
        self.prepared
            .insert((tx_id.into(), res.into()), (k.into(), v.into()));
        Ok(())
    }
    fn commit(&mut self, tx_id: &str, res: &str) {
        if let Some((k, v)) = self.prepared.remove(&(tx_id.into(), res.into())) {
            self.data.insert((res.into(), k), v);
        }
    }
    fn abort(&mut self, tx_id: &str, res: &str) {
        self.prepared.remove(&(tx_id.into(), res.into()));
    }
    fn in_doubt(&self) -> Vec<(String, String)> {
        self.prepared.keys().cloned().collect()
    }
}

impl DocKv {
    fn reply(&mut self, k: usize, id: RequestId) -> Vec<Effect<(), (usize, RequestId)>> {
        let body = self.got[k].clone();
        let a = answer(self, &body).expect("a manager message");
        self.answered[k] = Some(a.clone());
        vec![Effect::reply(id, a)]
    }
}

impl Service for DocKv {
    type Ctx = ();
    type Timer = (usize, RequestId);
    fn name(&self) -> &'static str {
        "kv"
    }
    fn handle(
        &mut self,
        _now: Now,
        input: Input<(), (usize, RequestId)>,
    ) -> Vec<Effect<(), (usize, RequestId)>> {
        match input {
            Input::Request { id, body, .. } => {
                let k = self.got.len();
                self.got.push(body.clone());
                self.answered.push(None);
                match serde_json::from_slice::<ManagerMessage>(&body) {
                    Ok(ManagerMessage::PrepareTransaction { operation, .. })
                        if operation.starts_with("slow=") =>
                    {
                        vec![Effect::timer(4_000, (k, id))]
                    }
                    _ => self.reply(k, id),
                }
            }
            Input::Timer((k, id)) => self.reply(k, id),
            _ => vec![],
        }
    }
}

const TXCOORD: &str = "txcoord";

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

fn tag(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The lines of docs/api.md's txcoord section.
fn section() -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .unwrap();
    let start = doc.find("\n## txcoord").expect("txcoord section") + 1;
    let section = &doc[start..];
    section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)].to_string()
}

/// Every `→` / `←` line of docs/api.md's txcoord section, in order, on alice.os, bob.os and
/// charlie.os: the requests of the app `my-app` to alice.os's txcoord, the manager `kv`'s to
/// bob.os's, and, in the protocol section, charlie.os's txcoord's to bob.os's. A manager
/// message (`Hello`, `PrepareTransaction`, ...) is compared with the next one `kv` got, and
/// the `←` under it with what `kv` answered; `TxDecided` with the next request the app got.
#[test]
fn documented_txcoord_examples_are_what_txcoord_answers() {
    let mut cfg = SimConfig::new(5, 3);
    cfg.net = NetConfig::for_mode(Mode::Realistic);
    let mut s = Sim::new(cfg)
        .with_process(TXCOORD, factory(txcoord::core::new))
        .with_process("kv", factory(|_| DocKv::default()));
    let my_app = ProcessId::parse("my-app:my-app:someone.os").unwrap();
    s.add_app(0, my_app.clone(), AppSpec::granting_all());
    // Networking comes up 15-20 s after start.
    s.run_for(21_000).unwrap();
    let kv_pid = ProcessId::ours("kv");
    let alice_tx = s.addr(0, TXCOORD);
    let bob_tx = s.addr(1, TXCOORD);

    let text = section();
    let lines: Vec<&str> = text.lines().collect();
    let (mut heading, mut kv_seen, mut app_seen) = (String::new(), 0usize, 0usize);
    let mut last: Option<(u64, String)> = None;
    let mut kv_answer: Option<Vec<u8>> = None;
    let mut kv_registration: Option<String> = None;
    // Documented transaction id → the real one, in the order `Started` showed them.
    let mut ids: Vec<(String, String)> = Vec::new();
    let to_doc = |ids: &Vec<(String, String)>, b: &[u8]| {
        let mut t = String::from_utf8_lossy(b).to_string();
        for (d, r) in ids {
            t = t.replace(r.as_str(), d);
        }
        json(t.as_bytes())
    };
    let (mut compared, mut failures) = (0, Vec::<String>::new());
    let kv_log = |s: &Sim| {
        let kv = s.core::<DocKv>(1, "kv").expect("kv runs");
        (kv.got.clone(), kv.answered.clone())
    };
    for line in &lines {
        if let Some(h) = line.strip_prefix("### ") {
            heading = h.to_string();
            if heading.starts_with("Protocol") {
                // bob.os's kv registers again as documented above (its Hello is not shown).
                let body = kv_registration
                    .clone()
                    .expect("kv's registration is documented");
                s.request_from(1, kv_pid.clone(), &bob_tx, body.into_bytes(), 10);
                s.run_for(2_000).unwrap();
                kv_seen = kv_log(&s).0.len();
            }
        }
        if let Some(body) = line.strip_prefix("→ ") {
            let doc = json(body.as_bytes());
            let t = tag(&doc);
            if [
                "Hello",
                "PrepareTransaction",
                "CommitTransaction",
                "AbortTransaction",
            ]
            .contains(&t.as_str())
            {
                compared += 1;
                let (got, answered) = kv_log(&s);
                match got.get(kv_seen) {
                    Some(m) if to_doc(&ids, m) == doc => {}
                    Some(m) => {
                        failures.push(format!("{body}\n  kv got {}", String::from_utf8_lossy(m)))
                    }
                    None => failures.push(format!("{body}: kv got no such message")),
                }
                kv_answer = answered.get(kv_seen).cloned().flatten();
                kv_seen += 1;
                continue;
            }
            if t == "TxDecided" {
                compared += 1;
                let got: Vec<_> = s
                    .node(0)
                    .app_messages
                    .iter()
                    .filter(|m| m.app == my_app && m.from == alice_tx)
                    .collect();
                match got.get(app_seen) {
                    Some(m) if to_doc(&ids, &m.body) == doc => {}
                    Some(m) => failures.push(format!(
                        "{body}\n  the app got {}",
                        String::from_utf8_lossy(&m.body)
                    )),
                    None => failures.push(format!("{body}: the app got no such message")),
                }
                app_seen += 1;
                continue;
            }
            let mut real_body = body.to_string();
            for (d, r) in &ids {
                real_body = real_body.replace(d.as_str(), r);
            }
            let manager_op = t == "RegisterManager" || t == "UnregisterManager";
            if t == "RegisterManager" && doc["RegisterManager"]["resource"] == "kv" {
                kv_registration.get_or_insert_with(|| body.to_string());
            }
            let h = if heading.starts_with("Protocol") {
                s.request_from(
                    2,
                    ProcessId::ours(TXCOORD),
                    &bob_tx,
                    real_body.into_bytes(),
                    10,
                )
            } else if manager_op {
                s.request_from(1, kv_pid.clone(), &bob_tx, real_body.into_bytes(), 10)
            } else {
                s.request_from(0, my_app.clone(), &alice_tx, real_body.into_bytes(), 10)
            };
            last = Some((h, body.to_string()));
            kv_answer = None;
            s.run_for(6_000).unwrap();
        } else if let Some(body) = line.strip_prefix("← ") {
            let doc = json(body.as_bytes());
            compared += 1;
            if let Some(a) = kv_answer.take() {
                if json(&a) != doc {
                    failures.push(format!(
                        "{body}\n  kv answered {}",
                        String::from_utf8_lossy(&a)
                    ));
                }
                continue;
            }
            let (h, req) = last.take().expect("a request before each answer");
            match s.outcome(h) {
                Some(p2p_sim::AppOutcome::Response(b)) => {
                    let b = b.clone();
                    if let (Some(d), Ok(Value::Object(r))) = (
                        doc.pointer("/Ok/Started/tx_id"),
                        serde_json::from_slice::<Value>(&b),
                    ) {
                        let real = r["Ok"]["Started"]["tx_id"].as_str().unwrap().to_string();
                        ids.push((d.as_str().unwrap().to_string(), real));
                    }
                    let real = to_doc(&ids, &b);
                    if real != doc {
                        failures.push(format!("{req}\n  {body}\n  txcoord answered {real}"));
                    }
                }
                other => failures.push(format!("{req}: no answer ({other:?})")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(compared >= 29, "only {compared} comparisons");
    assert_eq!(ids.len(), 3, "{ids:?}");
}

/// The decision event is delivered like other app deliveries: while the starting app is
/// down it is retried with backoff (one in flight), it survives a restart of txcoord (its
/// record is forced with the commit decision), and the app, back, gets it exactly once.
#[test]
fn the_decision_event_reaches_an_app_that_was_down_once() {
    let mut cfg = SimConfig::new(9, 2);
    cfg.net = NetConfig::for_mode(Mode::Realistic);
    let mut s = Sim::new(cfg)
        .with_process(TXCOORD, factory(txcoord::core::new))
        .with_process("kv", factory(|_| DocKv::default()));
    let my_app = ProcessId::parse("my-app:my-app:someone.os").unwrap();
    s.add_app(0, my_app.clone(), AppSpec::granting_all());
    s.run_for(21_000).unwrap();
    let (alice_tx, bob_tx) = (s.addr(0, TXCOORD), s.addr(1, TXCOORD));
    let reg = br#"{"RegisterManager": {"resource": "kv", "coordinators": {"Only": ["alice.os"]}}}"#;
    let reg = reg.to_vec();
    s.request_from(1, ProcessId::ours("kv"), &bob_tx, reg, 10);
    s.run_for(2_000).unwrap();
    let events = |s: &Sim| {
        s.node(0)
            .app_messages
            .iter()
            .filter(|m| m.app == my_app && m.from == alice_tx)
            .map(|m| json(&m.body))
            .collect::<Vec<_>>()
    };
    for restart in [false, true] {
        let start = br#"{"Start": {"participants": [{"node": "bob.os", "resource": "kv", "operation": "a=1"}]}}"#;
        let h = s.request_from(0, my_app.clone(), &alice_tx, start.to_vec(), 10);
        s.run_for(50).unwrap();
        let Some(p2p_sim::AppOutcome::Response(b)) = s.outcome(h) else {
            panic!("no answer to Start")
        };
        let tx_id = json(b)["Ok"]["Started"]["tx_id"]
            .as_str()
            .unwrap()
            .to_string();
        // The app goes down before the decision reaches it.
        s.remove_app(0, &my_app);
        s.run_for(30_000).unwrap();
        if restart {
            s.crash(0);
            s.run_for(5_000).unwrap();
            s.restart(0);
            s.run_for(25_000).unwrap();
        }
        let c = s.core::<txcoord::core::TxCoord>(0, TXCOORD).unwrap();
        assert_eq!(
            c.coord.events_waiting(),
            1,
            "restart {restart}: still to deliver"
        );
        let before = events(&s).len();
        assert!(events(&s)
            .iter()
            .all(|e| e["TxDecided"]["tx_id"] != tx_id.as_str()));
        s.add_app(0, my_app.clone(), AppSpec::granting_all());
        s.run_for(120_000).unwrap();
        let got: Vec<Value> = events(&s)[before..].to_vec();
        assert_eq!(got.len(), 1, "restart {restart}: {got:?}");
        assert_eq!(got[0]["TxDecided"]["tx_id"], tx_id.as_str());
        assert_eq!(got[0]["TxDecided"]["outcome"], "Committed");
        let c = s.core::<txcoord::core::TxCoord>(0, TXCOORD).unwrap();
        assert_eq!(c.coord.events_waiting(), 0);
        assert!(c.coord.events_delivered >= 1);
        // Nothing of it is left on disk.
        let left = s
            .records(0, TXCOORD)
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(b"e/"))
            .count();
        assert_eq!(left, 0, "restart {restart}");
    }
}
