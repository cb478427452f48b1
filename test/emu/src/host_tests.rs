//! Unit tests of every host function, with processes written in Rust against the same
//! `hyperware:process/standard` trait the components call, under the real scheduler.

use crate::bindings::wit::{
    Address, Capability, Host, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response,
    SendErrorKind,
};
use crate::host::{HostState, Script};
use crate::ids::{messaging_cap, network_cap};
use crate::{AppSpec, EmuConfig, Emulator, Reply};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

type R = wasmtime::Result<()>;

fn script(f: impl Fn(&mut HostState) -> R + Send + Sync + 'static) -> Script {
    Arc::new(f)
}

/// Two nodes (a.os, b.os) with networking up at once, an app on each granting every
/// process of package `t:t.os` messaging.
fn emu() -> Emulator {
    let cfg = EmuConfig {
        boot_offline_ms: 0,
        echo_verbosity: None,
        ..EmuConfig::default()
    };
    emu_with(cfg)
}

fn emu_with(cfg: EmuConfig) -> Emulator {
    let emu = Emulator::new(cfg).unwrap();
    for n in ["a.os", "b.os"] {
        emu.add_node(n).unwrap();
    }
    emu
}

fn app(emu: &Emulator, node: &str, grants: &[&str]) -> Address {
    let grants: Vec<String> = grants.iter().map(|s| format!("{s}:t:t.os")).collect();
    let mut spec = AppSpec::granting(&grants);
    spec.request_networking = true;
    emu.add_app(node, "app:t:t.os", spec).unwrap()
}

fn addr(node: &str, process: &str) -> Address {
    Address::new(node, ProcessId::new(process, "t", "t.os"))
}

fn req(body: &str, expects: Option<u64>) -> Request {
    Request {
        inherit: false,
        expects_response: expects,
        body: body.as_bytes().to_vec(),
        metadata: None,
        capabilities: vec![],
    }
}

fn resp(body: &[u8]) -> Response {
    Response {
        inherit: false,
        body: body.to_vec(),
        metadata: None,
        capabilities: vec![],
    }
}

fn blob(b: &[u8]) -> Option<LazyLoadBlob> {
    Some(LazyLoadBlob {
        mime: None,
        bytes: b.to_vec(),
    })
}

fn body(r: &Result<Reply, SendErrorKind>) -> String {
    match r {
        Ok(r) => String::from_utf8_lossy(&r.body).into_owned(),
        Err(e) => k(*e).to_string(),
    }
}

/// A process that answers every request with `echo:<body>` (and the request's blob), after
/// `delay_ms` if set. (A request without expects_response may still have someone to
/// answer: an inherited rsvp.)
fn echo(delay_ms: u64) -> Script {
    script(move |h| loop {
        if let Ok((_, Message::Request(r))) = h.receive()? {
            let b = h.get_blob()?;
            if delay_ms > 0 {
                let timer = Address::new("our", ProcessId::new("timer", "distro", "sys"));
                let set = format!("{{\"SetTimer\":{delay_ms}}}");
                h.send_and_await_response(timer, req(&set, Some(60)), None)?
                    .map_err(|e| anyhow::anyhow!("timer: {:?}", e.kind))?;
            }
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&r.body);
            h.send_response(resp(&out), b)?;
        }
    })
}

fn k(kind: SendErrorKind) -> &'static str {
    match kind {
        SendErrorKind::Offline => "Offline",
        SendErrorKind::Timeout => "Timeout",
    }
}

/// Lines a script records for the test.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn add(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn print_our_and_state() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "p:t:t.os",
        false,
        OnExit::None,
        vec![],
        script(move |h| {
            n.add(h.our()?.to_string());
            h.print_to_terminal(0, "hello".into())?;
            n.add(format!("{:?}", h.get_state()?));
            h.set_state(b"s1".to_vec())?;
            n.add(format!("{:?} {}", h.get_state()?, h.has_blob()?));
            h.clear_state()?;
            n.add(format!("{:?} {}", h.get_state()?, h.has_blob()?));
            h.set_state(b"kept".to_vec())?;
            // Stay (a process whose init returns with OnExit::None is removed).
            loop {
                let _ = h.receive()?;
            }
        }),
    );
    emu.run_for(10);
    emu.assert_no_crashes();
    assert_eq!(
        notes.get(),
        [
            "a.os@p:t:t.os",
            "None",
            "Some([115, 49]) true",
            "None false",
        ]
    );
    assert!(emu
        .logs()
        .iter()
        .any(|l| l.message == "hello" && l.node == "a.os" && l.process == "p:t:t.os"));
    let pid = ProcessId::new("p", "t", "t.os");
    assert_eq!(emu.state("a.os", &pid), Some(b"kept".to_vec()));
    // State survives a node restart and is what the next life reads.
    emu.kill_node("a.os").unwrap();
    emu.start_node("a.os").unwrap();
    emu.run_for(10);
    assert_eq!(notes.get()[5], "Some([107, 101, 112, 116])");
}

#[test]
fn receive_get_blob_last_blob_and_the_prompting_message() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    let p = emu.install_script(
        "a.os",
        "p:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| {
            // 1: a request with a blob that wants an answer.
            let (src, m) = h.receive()?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let Message::Request(r) = m else {
                anyhow::bail!("not a request")
            };
            n.add(format!(
                "1 {} {:?} {} {:?}",
                src,
                r.expects_response,
                h.has_blob()?,
                h.get_blob()?.map(|b| b.bytes)
            ));
            h.send_response(resp(b"r1"), None)?;
            // 2: fire-and-forget without a blob: no current blob, the last one stays.
            let _ = h.receive()?;
            n.add(format!(
                "2 {} {:?} {:?}",
                h.has_blob()?,
                h.get_blob()?,
                h.last_blob()?.map(|b| b.bytes)
            ));
            // 3: answered with inherit: the response carries the request's blob.
            let _ = h.receive()?;
            let mut r = resp(b"r3");
            r.inherit = true;
            h.send_response(r, None)?;
            Ok(())
        }),
    );
    // Apps grant messaging to processes that exist when they are installed.
    let a = app(&emu, "a.os", &["p"]);
    let r = emu.request_with_blob(&a, &p, "q1", Some(b"one".to_vec()), 5);
    assert_eq!(body(&r), "r1");
    emu.send(&a, &p, "q2").unwrap();
    let r = emu.request_with_blob(&a, &p, "q3", Some(b"three".to_vec()), 5);
    assert_eq!(r.as_ref().unwrap().blob.as_deref(), Some(&b"three"[..]));
    emu.assert_no_crashes();
    assert_eq!(
        notes.get(),
        [
            "1 a.os@app:t:t.os Some(5) true Some([111, 110, 101])",
            "2 false None Some([111, 110, 101])",
        ]
    );
}

#[test]
fn a_response_restores_the_prompt_saved_with_its_request() {
    let emu = emu();
    emu.install_script("a.os", "e:t:t.os", true, OnExit::None, vec![], echo(100));
    let notes = Notes::default();
    let n = notes.clone();
    let m = emu.install_script(
        "a.os",
        "m:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| loop {
            match h.receive()? {
                Ok((_, Message::Request(r))) if r.body == b"relay" => {
                    // Ask e (slow) with a context; answer our caller when e answers.
                    h.send_request(
                        addr("our", "e"),
                        req("x", Some(5)),
                        Some(b"ctx".to_vec()),
                        None,
                    )?;
                }
                Ok((_, Message::Request(_))) => h.send_response(resp(b"other-ok"), None)?,
                Ok((src, Message::Response((r, ctx)))) => {
                    n.add(format!("{src} {:?}", ctx));
                    h.send_response(r, None)?;
                }
                Err((e, ctx)) => n.add(format!("error {} {:?}", k(e.kind), ctx)),
            }
        }),
    );
    let a = app(&emu, "a.os", &["m", "e"]);
    let first = emu.start_request(&a, &m, "relay", None, 5).unwrap();
    emu.run_for(10);
    // Another caller's request in between becomes the prompt and is answered at once.
    let second = emu.request(&a, &m, "other", 5);
    assert_eq!(body(&second), "other-ok");
    let first = emu.wait_outcome(first, 5_000).expect("answered");
    assert_eq!(body(&first), "echo:x", "the first caller gets e's answer");
    assert_eq!(notes.get(), ["a.os@e:t:t.os Some([99, 116, 120])"]);
    emu.assert_no_crashes();
}

#[test]
fn inherit_lets_the_next_hop_answer_the_original_caller() {
    let emu = emu();
    emu.install_script("a.os", "e:t:t.os", true, OnExit::None, vec![], echo(0));
    let m = emu.install_script(
        "a.os",
        "m:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(|h| loop {
            if let Ok((_, Message::Request(_))) = h.receive()? {
                // No expects_response: e's answer goes to whoever asked us.
                let mut r = req("fwd", None);
                r.inherit = true;
                h.send_request(addr("our", "e"), r, None, None)?;
            }
        }),
    );
    let a = app(&emu, "a.os", &["m", "e"]);
    let r = emu.request_with_blob(&a, &m, "q", Some(b"b".to_vec()), 5);
    let r = r.expect("answered by e");
    assert_eq!(r.body, b"echo:fwd");
    assert_eq!(r.source, addr("a.os", "e"));
    assert_eq!(
        r.blob.as_deref(),
        Some(&b"b"[..]),
        "inherit carries the blob along"
    );
}

#[test]
fn send_and_await_response_queues_other_messages_and_refuses_misuse() {
    let emu = emu();
    emu.install_script("a.os", "e:t:t.os", true, OnExit::None, vec![], echo(200));
    let notes = Notes::default();
    let n = notes.clone();
    let q = emu.install_script(
        "a.os",
        "q:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| {
            let _ = h.receive()?; // "go"
            let r = h.send_and_await_response(addr("our", "e"), req("x", Some(5)), blob(b"bb"))?;
            match r {
                Ok((src, Message::Response((r, ctx)))) => n.add(format!(
                    "awaited {src} {} {:?} {:?}",
                    String::from_utf8_lossy(&r.body),
                    ctx,
                    h.get_blob()?.map(|b| b.bytes)
                )),
                other => n.add(format!("unexpected {other:?}")),
            }
            for _ in 0..2 {
                if let Ok((_, Message::Request(r))) = h.receive()? {
                    n.add(format!("then {}", String::from_utf8_lossy(&r.body)));
                }
            }
            let e = h
                .send_and_await_response(addr("our", "q"), req("x", Some(1)), None)
                .unwrap_err();
            n.add(format!("{e}"));
            let e = h
                .send_and_await_response(addr("our", "e"), req("x", None), None)
                .unwrap_err();
            n.add(format!("{e}"));
            Ok(())
        }),
    );
    let a = app(&emu, "a.os", &["q", "e"]);
    emu.send(&a, &q, "go").unwrap();
    emu.run_for(50);
    emu.send(&a, &q, "m1").unwrap();
    emu.send(&a, &q, "m2").unwrap();
    emu.run_for(1_000);
    let notes = notes.get();
    assert_eq!(notes[0], "awaited a.os@e:t:t.os echo:x None Some([98, 98])");
    assert_eq!(notes[1..3], ["then m1", "then m2"]);
    assert!(
        notes[3].contains("cannot await a Request to `our`"),
        "{}",
        notes[3]
    );
    assert!(notes[4].contains("must expect response"), "{}", notes[4]);
}

#[test]
fn timeouts_offline_and_contexts() {
    let emu = emu();
    emu.install_script(
        "a.os",
        "silent:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(|h| loop {
            let _ = h.receive()?;
        }),
    );
    emu.install_script(
        "b.os",
        "other:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(|h| loop {
            let _ = h.receive()?;
        }),
    );
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("a.os")],
        script(move |h| {
            let cases: [(Address, u64, &str); 5] = [
                (addr("our", "missing"), 5, "local-missing"),
                (addr("a.os", "silent"), 2, "silent"),
                (addr("b.os", "missing"), 3, "remote-missing"),
                (addr("b.os", "other"), 1, "remote-silent"),
                (addr("z.os", "p"), 5, "unknown-node"),
            ];
            for (target, secs, ctx) in cases {
                let t0 = h.now();
                h.send_request(
                    target,
                    req(ctx, Some(secs)),
                    Some(ctx.as_bytes().to_vec()),
                    blob(b"kept"),
                )?;
                match h.receive()? {
                    Err((e, c)) => {
                        let Message::Request(r) = &e.message else {
                            anyhow::bail!("no request")
                        };
                        n.add(format!(
                            "{ctx}: {} after {} ms, ctx {}, body {}, blob {:?}, target {}",
                            k(e.kind),
                            h.now() - t0,
                            String::from_utf8_lossy(&c.unwrap_or_default()),
                            String::from_utf8_lossy(&r.body),
                            e.lazy_load_blob.map(|b| b.bytes),
                            e.target
                        ));
                    }
                    Ok(m) => n.add(format!("{ctx}: unexpected {m:?}")),
                }
            }
            // Without expects_response nothing ever comes back.
            h.send_request(addr("our", "missing"), req("ff", None), None, None)?;
            h.send_request(addr("z.os", "p"), req("ff", None), None, None)?;
            let timer = Address::new("our", ProcessId::new("timer", "distro", "sys"));
            h.send_request(
                timer,
                req("{\"SetTimer\":100}", Some(1)),
                Some(b"t".to_vec()),
                None,
            )?;
            match h.receive()? {
                Ok((src, Message::Response((_, c)))) => n.add(format!("next: {src} {:?}", c)),
                other => n.add(format!("next: {other:?}")),
            }
            Ok(())
        }),
    );
    emu.run_for(30_000);
    emu.assert_no_crashes();
    let k = "[107, 101, 112, 116]";
    assert_eq!(
        notes.get(),
        [
            format!("local-missing: Timeout after 0 ms, ctx local-missing, body local-missing, blob Some({k}), target a.os@missing:t:t.os"),
            format!("silent: Timeout after 2000 ms, ctx silent, body silent, blob Some({k}), target a.os@silent:t:t.os"),
            format!("remote-missing: Timeout after 3000 ms, ctx remote-missing, body remote-missing, blob Some({k}), target b.os@missing:t:t.os"),
            format!("remote-silent: Timeout after 1000 ms, ctx remote-silent, body remote-silent, blob Some({k}), target b.os@other:t:t.os"),
            format!("unknown-node: Offline after 0 ms, ctx unknown-node, body unknown-node, blob Some({k}), target z.os@p:t:t.os"),
            "next: a.os@timer:distro:sys Some([116])".to_string(),
        ]
    );
}

#[test]
fn offline_while_networking_comes_up_and_for_a_node_that_is_down() {
    let cfg = EmuConfig {
        boot_offline_ms: 10_000,
        echo_verbosity: None,
        ..EmuConfig::default()
    };
    let emu = emu_with(cfg);
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "b.os",
        "e:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("b.os")],
        echo(0),
    );
    let s = emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("a.os")],
        script(move |h| loop {
            let Ok((_, Message::Request(_))) = h.receive()? else {
                continue;
            };
            let t0 = h.now();
            let r = h.send_and_await_response(addr("b.os", "e"), req("x", Some(30)), None)?;
            n.add(match r {
                Ok(_) => format!("answered after {} ms", h.now() - t0),
                Err(e) => format!("{} after {} ms", k(e.kind), h.now() - t0),
            });
        }),
    );
    let a = app(&emu, "a.os", &["s"]);
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(10_000);
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(1_000);
    emu.kill_node("b.os").unwrap();
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(10_000);
    assert_eq!(
        notes.get(),
        [
            "Offline after 1000 ms",
            "answered after 4 ms",
            "Offline after 5000 ms"
        ]
    );
}

#[test]
fn capabilities_are_checked_on_requests_and_responses() {
    let emu = emu();
    // `closed` is not public; `s` holds no capability on it at first.
    let closed = emu.install_script(
        "a.os",
        "closed:t:t.os",
        false,
        OnExit::None,
        vec![],
        echo(0),
    );
    let notes = Notes::default();
    let n = notes.clone();
    let closed2 = closed.clone();
    emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| {
            let caps = h.our_capabilities()?;
            n.add(format!("{}", caps.len()));
            let r = h.send_and_await_response(closed2.clone(), req("x", Some(5)), None)?;
            n.add(format!("{:?}", r.err().map(|e| k(e.kind))));
            let remote = h.send_and_await_response(addr("b.os", "any"), req("x", Some(5)), None)?;
            n.add(format!("remote {:?}", remote.err().map(|e| k(e.kind))));
            h.save_capabilities(vec![messaging_cap("a.os", &closed2.process)])?;
            let r = h.send_and_await_response(closed2.clone(), req("x", Some(5)), None)?;
            n.add(format!(
                "{:?}",
                r.map(|(_, m)| matches!(m, Message::Response(_)))
            ));
            h.drop_capabilities(vec![messaging_cap("a.os", &closed2.process)])?;
            n.add(format!("{}", h.our_capabilities()?.len()));
            // Capabilities attached to a request are filtered: only ours survive.
            let mut r = req("caps", Some(5));
            r.capabilities = vec![
                Capability {
                    issuer: h.our()?,
                    params: "\"x\"".into(),
                },
                network_cap("a.os"),
            ];
            h.send_request(addr("our", "app"), r, None, None)?;
            Ok(())
        }),
    );
    emu.run_for(100);
    assert_eq!(
        notes.get(),
        [
            "1",
            "Some(\"Timeout\")",
            "remote Some(\"Timeout\")",
            "Ok(true)",
            "1"
        ]
    );
    let logs: Vec<String> = emu.logs().into_iter().map(|l| l.message).collect();
    assert!(
        logs.iter().any(|l| l
            .contains("process s:t:t.os doesn't have capability to message process closed:t:t.os")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l
                .contains("process s:t:t.os doesn't have capability to send networked messages")),
        "{logs:?}"
    );

    // Responses: `closed` answers an app that granted it nothing; the kernel drops the
    // answer and the app times out. With the grant the answer comes.
    let mut spec = AppSpec::granting_nothing();
    spec.request_capabilities = vec!["closed:t:t.os".into()];
    let stranger = emu.add_app("a.os", "stranger:t:t.os", spec).unwrap();
    assert_eq!(
        emu.request(&stranger, &closed, "x", 2),
        Err(SendErrorKind::Timeout)
    );
    let mut spec = AppSpec::granting(&["closed:t:t.os".to_string()]);
    spec.request_capabilities = vec!["closed:t:t.os".into()];
    let friend = emu.add_app("a.os", "friend:t:t.os", spec).unwrap();
    assert_eq!(body(&emu.request(&friend, &closed, "x", 2)), "echo:x");
}

#[test]
fn attached_capabilities_are_filtered() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "r:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| loop {
            if let Ok((_, Message::Request(r))) = h.receive()? {
                let mut got: Vec<String> = r
                    .capabilities
                    .iter()
                    .map(|c| format!("{} {}", c.issuer, c.params))
                    .collect();
                got.sort();
                n.add(got.join(", "));
            }
        }),
    );
    let s = emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(|h| {
            let _ = h.receive()?;
            let mut r = req("caps", None);
            r.capabilities = vec![
                Capability {
                    issuer: h.our()?,
                    params: "\"mine\"".into(),
                },
                network_cap("a.os"),
                messaging_cap("a.os", &h.our()?.process),
            ];
            h.send_request(addr("our", "r"), r, None, None)?;
            Ok(())
        }),
    );
    let a = app(&emu, "a.os", &["s", "r"]);
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(10);
    assert_eq!(
        notes.get(),
        ["a.os@s:t:t.os \"messaging\", a.os@s:t:t.os \"mine\""],
        "s issues its own; it holds no network capability"
    );
}

#[test]
fn timer_answers_after_the_delay_with_the_context() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| {
            let timer = Address::new("our", ProcessId::new("timer", "distro", "sys"));
            h.send_request(
                timer.clone(),
                req("{\"SetTimer\":250}", Some(1)),
                Some(b"a".to_vec()),
                None,
            )?;
            h.send_request(
                timer.clone(),
                req("{\"SetTimer\":100}", Some(1)),
                Some(b"b".to_vec()),
                None,
            )?;
            h.send_request(timer.clone(), req("{\"SetTimer\":50}", None), None, None)?;
            for _ in 0..2 {
                if let Ok((src, Message::Response((r, c)))) = h.receive()? {
                    n.add(format!("{} {src} {:?} {:?}", h.now(), r.body, c));
                }
            }
            Ok(())
        }),
    );
    emu.run_for(1_000);
    emu.assert_no_crashes();
    assert_eq!(
        notes.get(),
        [
            "100 a.os@timer:distro:sys [] Some([98])",
            "250 a.os@timer:distro:sys [] Some([97])"
        ]
    );
}

#[test]
fn sqlite_from_a_process_needs_the_capability() {
    let emu = emu();
    let notes = Notes::default();
    let sqlite = ProcessId::new("sqlite", "distro", "sys");
    let n = notes.clone();
    let run = move |h: &mut HostState| -> R {
        let db = Address::new("our", ProcessId::new("sqlite", "distro", "sys"));
        let call = |h: &mut HostState,
                    action: &str,
                    params: Option<&str>|
         -> wasmtime::Result<String> {
            let body = format!(
                r#"{{"package_id": {{"package_name": "t", "publisher_node": "t.os"}}, "db": "d", "action": {action}}}"#
            );
            let r = h.send_and_await_response(
                db.clone(),
                req(&body, Some(5)),
                params.and_then(|p| blob(p.as_bytes())),
            )?;
            Ok(match r {
                Ok((_, Message::Response((r, _)))) => {
                    let b = h
                        .get_blob()?
                        .map(|b| String::from_utf8_lossy(&b.bytes).into_owned());
                    format!(
                        "{} {}",
                        String::from_utf8_lossy(&r.body),
                        b.unwrap_or_default()
                    )
                }
                Ok(_) => "?".into(),
                Err(e) => k(e.kind).to_string(),
            })
        };
        n.add(call(h, "\"Open\"", None)?);
        n.add(call(h, r#"{"Write": {"statement": "CREATE TABLE IF NOT EXISTS t (k TEXT, v INTEGER)", "tx_id": null}}"#, None)?);
        n.add(call(
            h,
            r#"{"Write": {"statement": "INSERT INTO t VALUES (?, ?)", "tx_id": null}}"#,
            Some(r#"["hello world", 5]"#),
        )?);
        n.add(call(h, r#"{"Query": "SELECT k, v FROM t"}"#, Some("[]"))?);
        // Stay, holding what sqlite issued (init returning with OnExit::None removes it).
        loop {
            let _ = h.receive()?;
        }
    };
    emu.install_script(
        "a.os",
        "without:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(run.clone()),
    );
    emu.run_for(100);
    assert_eq!(
        notes.get(),
        ["Timeout", "Timeout", "Timeout", "Timeout"],
        "no capability, no database"
    );
    notes.0.lock().unwrap().clear();
    emu.install_script(
        "a.os",
        "with:t:t.os",
        true,
        OnExit::None,
        vec![messaging_cap("a.os", &sqlite)],
        script(run),
    );
    emu.run_for(100);
    assert_eq!(
        notes.get(),
        [
            "\"Ok\" ",
            "\"Ok\" ",
            "\"Ok\" ",
            "\"Read\" [{\"k\":\"hello world\",\"v\":5}]"
        ]
    );
    let caps = emu.capabilities("a.os", &ProcessId::new("with", "t", "t.os"));
    assert!(
        caps.iter()
            .any(|c| c.issuer.process == sqlite && c.params.contains("\"write\"")),
        "Open issues the db capabilities: {caps:?}"
    );
}

#[test]
fn on_exit_restart_backoff_and_crash_messages() {
    let emu = emu();
    let lives = Arc::new(AtomicU32::new(0));
    let l = lives.clone();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "c:t:t.os",
        true,
        OnExit::Restart,
        vec![],
        script(move |h| {
            let life = l.fetch_add(1, Ordering::SeqCst);
            let on_exit = matches!(h.get_on_exit()?, OnExit::Restart);
            n.add(format!("life {life} at {} restart {on_exit}", h.now()));
            match life {
                0 => panic!("boom in life 0"),
                1 => anyhow::bail!("trap in life 1"),
                _ => {
                    h.set_on_exit(OnExit::None)?;
                    Ok(())
                }
            }
        }),
    );
    emu.run_for(10_000);
    assert_eq!(
        notes.get(),
        [
            "life 0 at 0 restart true",
            "life 1 at 0 restart true",
            "life 2 at 1000 restart true",
        ],
        "first restart at once, then backoff"
    );
    let crashes = emu.crashes();
    assert_eq!(crashes.len(), 2);
    assert!(
        crashes[0].message.contains("boom in life 0"),
        "{:?}",
        crashes[0]
    );
    assert!(
        crashes[1].message.contains("trap in life 1"),
        "{:?}",
        crashes[1]
    );
    assert!(
        !emu.is_running("a.os", &ProcessId::new("c", "t", "t.os")),
        "on_exit None: not restarted"
    );
}

#[test]
fn killed_processes_end_quietly() {
    let emu = emu();
    let pid = ProcessId::new("k", "t", "t.os");
    emu.install_script(
        "a.os",
        "k:t:t.os",
        true,
        OnExit::Restart,
        vec![],
        script(|h| loop {
            let _ = h.receive()?;
        }),
    );
    emu.run_for(10);
    assert!(emu.is_running("a.os", &pid));
    emu.kill_process("a.os", &pid).unwrap();
    emu.run_for(5_000);
    assert!(!emu.is_running("a.os", &pid), "killed, not restarted");
    emu.start_process("a.os", &pid).unwrap();
    emu.run_for(10);
    assert!(emu.is_running("a.os", &pid));
    emu.assert_no_crashes();
}

#[test]
fn spawn_starts_a_child_from_the_vfs_with_the_parents_capabilities_only() {
    let emu = emu();
    emu.with_world(|w| {
        w.nodes
            .get_mut("a.os")
            .unwrap()
            .vfs
            .write("/t:t.os/pkg/child.wasm", b"(a script plays it)".to_vec())
    });
    let child = ProcessId::new("child", "t", "t.os");
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "child:t:t.os",
        false,
        OnExit::None,
        vec![],
        script(move |h| loop {
            if let Ok((src, Message::Request(_))) = h.receive()? {
                let caps: Vec<String> = h
                    .our_capabilities()?
                    .iter()
                    .map(|c| format!("{} {}", c.issuer, c.params))
                    .collect();
                n.add(format!("child got a request from {src}; holds {caps:?}"));
                h.send_response(resp(b"hi parent"), None)?;
            }
        }),
    );
    // The script above stands for the child's component; the spawn below replaces its entry.
    emu.kill_process("a.os", &child).unwrap();
    emu.with_world(|w| {
        w.nodes
            .get_mut("a.os")
            .unwrap()
            .procs
            .retain(|p| p.id != child)
    });
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "sp:t:t.os",
        false,
        OnExit::None,
        vec![],
        script(move |h| {
            let parent_cap = messaging_cap("a.os", &ProcessId::new("sp", "t", "t.os"));
            let missing = h.spawn(
                None,
                "/t:t.os/pkg/none.wasm".into(),
                OnExit::None,
                vec![],
                vec![],
                false,
            )?;
            n.add(format!("{missing:?}"));
            let app = ProcessId::new("app", "t", "t.os");
            let got = h.spawn(
                Some("child".into()),
                "t:t.os/pkg/child.wasm".into(),
                OnExit::None,
                vec![parent_cap.clone(), network_cap("a.os")],
                vec![(app, "\"messaging\"".into())],
                false,
            )?;
            n.add(format!(
                "{}",
                got.map(|p| p.to_string()).unwrap_or_default()
            ));
            let again = h.spawn(
                Some("child".into()),
                "t:t.os/pkg/child.wasm".into(),
                OnExit::None,
                vec![],
                vec![],
                false,
            )?;
            n.add(format!("{again:?}"));
            let r = h.send_and_await_response(addr("our", "child"), req("x", Some(5)), None)?;
            n.add(format!(
                "{:?}",
                r.map(|(_, m)| matches!(m, Message::Response(_)))
            ));
            Ok(())
        }),
    );
    let app = app(&emu, "a.os", &[]);
    emu.run_for(100);
    emu.assert_no_crashes();
    let got = notes.get();
    assert!(got[0].contains("no-file-at-path"), "{got:?}");
    assert_eq!(got[1], "child:t:t.os");
    assert!(got[2].contains("name-taken"), "{got:?}");
    assert_eq!(
        got[3],
        "child got a request from a.os@sp:t:t.os; holds [\"a.os@child:t:t.os \\\"messaging\\\"\", \"a.os@sp:t:t.os \\\"messaging\\\"\"]",
        "messaging on itself and on the parent (held by the parent), not network (not held)"
    );
    assert_eq!(got[4], "Ok(true)");
    assert!(emu
        .capabilities("a.os", &app.process)
        .contains(&messaging_cap("a.os", &child)));
}

#[test]
fn a_process_that_ends_with_on_exit_none_is_removed_and_may_be_spawned_again() {
    let emu = emu();
    emu.with_world(|w| {
        w.nodes
            .get_mut("a.os")
            .unwrap()
            .vfs
            .write("/t:t.os/pkg/child.wasm", b"(a script plays it)".to_vec())
    });
    let child = ProcessId::new("child", "t", "t.os");
    // The child answers one request, then init returns.
    emu.install_script(
        "a.os",
        "child:t:t.os",
        false,
        OnExit::None,
        vec![],
        script(move |h| loop {
            if let Ok((_, Message::Request(_))) = h.receive()? {
                h.send_response(resp(b"once"), None)?;
                return Ok(());
            }
        }),
    );
    emu.kill_process("a.os", &child).unwrap();
    emu.with_world(|w| {
        w.nodes
            .get_mut("a.os")
            .unwrap()
            .procs
            .retain(|p| p.id != child)
    });
    let parent = |name: &'static str, notes: Notes| {
        script(move |h| {
            // The child may answer its parent (messaging on it, which the parent holds).
            let on_parent = messaging_cap("a.os", &ProcessId::new(name, "t", "t.os"));
            let got = h.spawn(
                Some("child".into()),
                "t:t.os/pkg/child.wasm".into(),
                OnExit::None,
                vec![on_parent],
                vec![],
                false,
            )?;
            notes.add(format!("{got:?}"));
            let r = h.send_and_await_response(addr("our", "child"), req("x", Some(5)), None)?;
            notes.add(format!(
                "{:?}",
                r.map(|(_, m)| matches!(m, Message::Response(_)))
            ));
            loop {
                let _ = h.receive()?;
            }
        })
    };
    let first = Notes::default();
    emu.install_script(
        "a.os",
        "sp:t:t.os",
        false,
        OnExit::None,
        vec![],
        parent("sp", first.clone()),
    );
    emu.run_for(100);
    assert_eq!(first.get()[1], "Ok(true)", "{:?}", first.get());
    // Gone from the process table: not running, holding nothing, and a request to it fails.
    assert!(!emu.is_running("a.os", &child));
    assert!(emu.capabilities("a.os", &child).is_empty());
    let app = app(&emu, "a.os", &[]);
    let r = emu.request(&app, &Address::new("a.os", child.clone()), "\"x\"", 5);
    assert_eq!(r.err(), Some(SendErrorKind::Timeout));
    assert!(emu.logs().iter().any(|l| l
        .message
        .contains("process child:t:t.os had no OnExit behavior")));
    // Spawned again under the same name: a new life answers.
    let second = Notes::default();
    emu.install_script(
        "a.os",
        "sp2:t:t.os",
        false,
        OnExit::None,
        vec![],
        parent("sp2", second.clone()),
    );
    emu.run_for(100);
    let got = second.get();
    assert!(got[0].starts_with("Ok("), "spawned again: {got:?}");
    assert_eq!(got[1], "Ok(true)", "{got:?}");
    emu.assert_no_crashes();
}

#[test]
fn http_server_hands_url_params_over_and_serves_local_only_paths_to_loopback_only() {
    let emu = emu();
    let http = crate::ids::http_server_pid();
    let bound = Notes::default();
    let n = bound.clone();
    emu.install_script(
        "a.os",
        "web:t:t.os",
        false,
        OnExit::None,
        vec![messaging_cap("a.os", &http)],
        script(move |h| {
            let server = Address::new("our", crate::ids::http_server_pid());
            for (path, local_only) in [("/doc/:id", false), ("/admin/:what", true)] {
                let bind = format!(
                    r#"{{"Bind":{{"path":"{path}","authenticated":false,"local_only":{local_only},"cache":false}}}}"#
                );
                let r = h.send_and_await_response(server.clone(), req(&bind, Some(5)), None)?;
                n.add(format!("{:?}", r.map(|(_, m)| matches!(m, Message::Response(_)))));
            }
            loop {
                if let Ok((_, Message::Request(r))) = h.receive()? {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    let answer = serde_json::json!({"status": 200, "headers": {}});
                    let params = v["Http"]["url_params"].to_string();
                    let from = v["Http"]["source_socket_addr"].to_string();
                    h.send_response(
                        resp(&serde_json::to_vec(&answer).unwrap()),
                        blob(format!("{params} {from}").as_bytes()),
                    )?;
                }
            }
        }),
    );
    emu.run_for(100);
    assert_eq!(bound.get(), ["Ok(true)", "Ok(true)"]);
    let r = emu.http("a.os", "GET", "/web:t:t.os/doc/42?x=1", &[], vec![]);
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"id":"42"} "127.0.0.1:50000""#.to_string())
    );
    // From another machine: an ordinary path is served, a local_only one is refused.
    let r = emu.http_remote("a.os", "GET", "/web:t:t.os/doc/7", &[], vec![]);
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"id":"7"} "203.0.113.7:50000""#.to_string())
    );
    let r = emu.http_remote("a.os", "GET", "/web:t:t.os/admin/stats", &[], vec![]);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = emu.http("a.os", "GET", "/web:t:t.os/admin/stats", &[], vec![]);
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"what":"stats"} "127.0.0.1:50000""#.to_string())
    );
    assert_eq!(
        emu.http("a.os", "GET", "/web:t:t.os/doc", &[], vec![])
            .status,
        404
    );
    emu.assert_no_crashes();
}

#[test]
fn send_requests_sends_each_in_order() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "r:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(move |h| loop {
            if let Ok((_, Message::Request(r))) = h.receive()? {
                n.add(String::from_utf8_lossy(&r.body).into_owned());
            }
        }),
    );
    emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![],
        script(|h| {
            h.send_requests(vec![
                (addr("our", "r"), req("1", None), None, None),
                (addr("our", "r"), req("2", None), None, None),
                (addr("our", "r"), req("3", None), None, None),
            ])?;
            Ok(())
        }),
    );
    emu.run_for(10);
    assert_eq!(notes.get(), ["1", "2", "3"]);
}

#[test]
fn runs_are_deterministic() {
    fn run() -> Vec<String> {
        let emu = emu();
        emu.install_script(
            "a.os",
            "e:t:t.os",
            true,
            OnExit::None,
            vec![network_cap("a.os")],
            echo(7),
        );
        for (i, n) in ["b.os", "a.os"].iter().enumerate() {
            let mut caps = vec![network_cap(n)];
            caps.push(messaging_cap(n, &ProcessId::new("e", "t", "t.os")));
            emu.install_script(
                n,
                &format!("c{i}:t:t.os"),
                true,
                OnExit::None,
                caps,
                script(move |h| {
                    for k in 0..20 {
                        let r = h.send_and_await_response(
                            addr("a.os", "e"),
                            req(&format!("{k}"), Some(5)),
                            None,
                        )?;
                        let b = match r {
                            Ok((_, Message::Response((r, _)))) => r.body,
                            _ => vec![],
                        };
                        h.print_to_terminal(
                            0,
                            format!("{} {}", h.now(), String::from_utf8_lossy(&b)),
                        )?;
                    }
                    Ok(())
                }),
            );
        }
        emu.run_for(5_000);
        emu.logs()
            .into_iter()
            .map(|l| format!("{} {} {} {}", l.at, l.node, l.process, l.message))
            .collect()
    }
    let one = run();
    assert!(one.len() >= 40, "{one:?}");
    assert_eq!(one, run());
}

#[test]
fn a_partition_makes_the_other_side_offline_until_healed() {
    let emu = emu();
    let notes = Notes::default();
    let n = notes.clone();
    emu.install_script(
        "b.os",
        "e:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("b.os")],
        echo(0),
    );
    let s = emu.install_script(
        "a.os",
        "s:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("a.os")],
        script(move |h| loop {
            let Ok((_, Message::Request(_))) = h.receive()? else {
                continue;
            };
            let t0 = h.now();
            let r = h.send_and_await_response(addr("b.os", "e"), req("x", Some(30)), None)?;
            n.add(match r {
                Ok(_) => "answered".to_string(),
                Err(e) => format!("{} after {} ms", k(e.kind), h.now() - t0),
            });
        }),
    );
    let a = app(&emu, "a.os", &["s"]);
    emu.partition(&[&["a.os"], &["b.os"]]);
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(6_000);
    emu.heal();
    emu.send(&a, &s, "go").unwrap();
    emu.run_for(100);
    assert_eq!(notes.get(), ["Offline after 5000 ms", "answered"]);
}

#[test]
fn sign_signs_with_the_node_key_and_verifies_across_nodes() {
    use p2p_common::sign::{sign_body, signed_bytes, verify_body};
    let emu = emu();
    let sign = |node: &str| Address::new(node, ProcessId::new("sign", "sign", "sys"));
    let notes = Notes::default();
    let signature = Arc::new(Mutex::new(Vec::new()));
    // On a.os: `p` requested sign:sign:sys; it signs "m", and a request it cannot parse
    // gets no answer.
    let (n, sig) = (notes.clone(), signature.clone());
    let s = sign("our");
    emu.install_script(
        "a.os",
        "p:t:t.os",
        true,
        OnExit::None,
        vec![messaging_cap("a.os", &sign("a.os").process)],
        script(move |h| {
            let (_, m) = h
                .send_and_await_response(
                    s.clone(),
                    req(std::str::from_utf8(&sign_body()).unwrap(), Some(5)),
                    blob(b"m"),
                )?
                .map_err(|e| anyhow::anyhow!("{:?}", e.kind))?;
            let Message::Response((r, _)) = m else {
                anyhow::bail!("not a response")
            };
            let got = h.get_blob()?.map(|b| b.bytes).unwrap_or_default();
            n.add(format!(
                "{} {}",
                String::from_utf8_lossy(&r.body),
                got.len()
            ));
            *sig.lock().unwrap() = got;
            let bad = h.send_and_await_response(s.clone(), req("\"Dance\"", Some(2)), None)?;
            n.add(format!("bad {:?}", bad.err().map(|e| k(e.kind))));
            Ok(())
        }),
    );
    emu.run_for(3_000);
    let sig = signature.lock().unwrap().clone();
    assert_eq!(notes.get(), ["\"NetKeySign\" 64", "bad Some(\"Timeout\")"]);
    // The net key signed [a.os@sign:sign:sys, a.os@p:t:t.os, m].
    let signer = p2p_common::Address::parse("a.os@p:t:t.os").unwrap();
    let keys = p2p_common::sign::model::NetKeys::new(EmuConfig::default().seed);
    assert!(keys.verify("a.os", &signed_bytes(&signer, b"m"), &sig));
    assert!(
        emu.logs()
            .iter()
            .any(|l| l.process == "sign:sign:sys"
                && l.message.contains("error handling sign request"))
    );

    // On b.os: `q` verifies a.os's signature (true), a changed message (false), and one
    // claimed by another process (false). `node` must be the signer's full address.
    let n = notes.clone();
    let s = sign("our");
    let sig2 = sig.clone();
    emu.install_script(
        "b.os",
        "q:t:t.os",
        true,
        OnExit::None,
        vec![messaging_cap("b.os", &sign("b.os").process)],
        script(move |h| {
            let a = p2p_common::Address::parse("a.os@p:t:t.os").unwrap();
            let other = p2p_common::Address::parse("a.os@other:t:t.os").unwrap();
            for (who, msg) in [(&a, &b"m"[..]), (&a, b"n"), (&other, b"m")] {
                let body = verify_body(who, &sig2);
                let r = h.send_and_await_response(
                    s.clone(),
                    req(std::str::from_utf8(&body).unwrap(), Some(5)),
                    blob(msg),
                )?;
                let (_, Message::Response((r, _))) =
                    r.map_err(|e| anyhow::anyhow!("{:?}", e.kind))?
                else {
                    anyhow::bail!("not a response")
                };
                n.add(String::from_utf8_lossy(&r.body).into_owned());
            }
            Ok(())
        }),
    );
    emu.run_for(100);
    assert_eq!(
        notes.get()[2..],
        [
            r#"{"NetKeyVerify":true}"#,
            r#"{"NetKeyVerify":false}"#,
            r#"{"NetKeyVerify":false}"#
        ]
    );

    // sign:sign:sys is not public: without the capability a request fails at once; it has
    // no networking, so another node's request is dropped; and its answer reaches only a
    // process it may message (a public one, or one that granted it messaging).
    let n = notes.clone();
    emu.install_script(
        "a.os",
        "nocap:t:t.os",
        true,
        OnExit::None,
        vec![network_cap("a.os")],
        script(move |h| {
            let t0 = h.now();
            let r = h.send_and_await_response(sign("our"), req("\"NetKeySign\"", Some(5)), None)?;
            n.add(format!(
                "nocap {:?} after {} ms",
                r.err().map(|e| k(e.kind)),
                h.now() - t0
            ));
            let r =
                h.send_and_await_response(sign("b.os"), req("\"NetKeySign\"", Some(5)), None)?;
            n.add(format!("remote {:?}", r.err().map(|e| k(e.kind))));
            Ok(())
        }),
    );
    emu.install_script(
        "a.os",
        "private:t:t.os",
        false,
        OnExit::None,
        vec![messaging_cap("a.os", &sign("a.os").process)],
        script({
            let n = notes.clone();
            move |h| {
                let r =
                    h.send_and_await_response(sign("our"), req("\"NetKeySign\"", Some(5)), None)?;
                n.add(format!("private {:?}", r.err().map(|e| k(e.kind))));
                Ok(())
            }
        }),
    );
    emu.run_for(20_000);
    emu.assert_no_crashes();
    let got = notes.get();
    assert!(
        got.contains(&"nocap Some(\"Timeout\") after 0 ms".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"remote Some(\"Timeout\")".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"private Some(\"Timeout\")".to_string()),
        "{got:?}"
    );
    assert!(emu.logs().iter().any(|l| l.message.contains(
        "process sign:sign:sys doesn't have capability to message process private:t:t.os"
    )));
}
