//! http-server and vfs with a real component: the example `http-echo` (built by
//! `cargo xtask build` into target/examples/) binds `/api/*` and `/ws` through the
//! contract's HTTP mapping (p2p_common::http) and serves `pkg/ui` with process_lib's
//! `serve_ui` (vfs ReadDir + Read, static bindings). The test is the browser.

use p2p_emu::package::{parse_manifest, workspace_package_zip, Package};
use p2p_emu::{EmuConfig, Emulator};
use std::collections::BTreeMap;

const PID: &str = "http-echo:http-echo:p2p-patterns.os";

fn echo_package(request_capabilities: &str) -> Package {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let wasm_path = zip
        .parent()
        .unwrap()
        .join("examples")
        .join("http-echo.wasm");
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo xtask build` first",
            wasm_path.display()
        )
    });
    let manifest = format!(
        r#"[{{"process_name": "http-echo", "process_wasm_path": "/http-echo.wasm",
             "on_exit": "Restart", "request_networking": false,
             "request_capabilities": {request_capabilities},
             "grant_capabilities": [], "public": false}}]"#
    );
    let files = BTreeMap::from([
        ("http-echo.wasm".to_string(), wasm),
        ("manifest.json".to_string(), manifest.clone().into_bytes()),
        ("ui/index.html".to_string(), b"<h1>echo</h1>".to_vec()),
        ("ui/assets/app.js".to_string(), b"console.log(1)".to_vec()),
    ]);
    Package {
        package_name: "http-echo".into(),
        publisher: "p2p-patterns.os".into(),
        manifest: parse_manifest(manifest.as_bytes()).unwrap(),
        files,
    }
}

fn boot(request_capabilities: &str) -> Emulator {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let emu = Emulator::new(EmuConfig {
        echo_verbosity: None,
        ..EmuConfig::default()
    })
    .unwrap();
    emu.set_cache_dir(zip.parent().unwrap().join("emu-cache"));
    emu.add_node("alice.os").unwrap();
    emu.install("alice.os", &echo_package(request_capabilities))
        .unwrap();
    emu.run_for(1_000);
    emu
}

const ALL: &str = r#"["sqlite:distro:sys", "http-server:distro:sys", "vfs:distro:sys"]"#;

#[test]
fn http_requests_reach_the_core_through_the_mapping_and_get_its_answer() {
    let emu = boot(ALL);
    let r = emu.http(
        "alice.os",
        "POST",
        &format!("/{PID}/api/things/7?limit=5"),
        &[("Content-Type", "text/plain")],
        "hello",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({"method": "POST", "path": "/api/things/7",
                           "query": {"limit": "5"}, "body": "hello"})
    );
    // The binding is authenticated: a browser that is not logged in is refused by
    // http-server itself; an unbound path is not found.
    let r = emu.http_as(
        "alice.os",
        "GET",
        &format!("/{PID}/api/x"),
        &[],
        vec![],
        false,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        emu.http("alice.os", "GET", &format!("/{PID}/nothing"), &[], "")
            .status,
        404
    );
    assert_eq!(
        emu.http("alice.os", "GET", "/other:x:y.os/api/x", &[], "")
            .status,
        404
    );
    emu.assert_no_crashes();
}

#[test]
fn the_ui_is_served_from_the_package_drive_through_vfs() {
    let emu = boot(ALL);
    assert_eq!(
        emu.vfs_file("alice.os", "/http-echo:p2p-patterns.os/pkg/ui/index.html")
            .as_deref(),
        Some(&b"<h1>echo</h1>"[..]),
        "install unpacked the zip into the package drive"
    );
    for path in [
        format!("/{PID}"),
        format!("/{PID}/"),
        format!("/{PID}/index.html"),
    ] {
        let r = emu.http("alice.os", "GET", &path, &[], "");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "<h1>echo</h1>"),
            "{path}"
        );
        assert_eq!(r.headers["content-type"], "text/html", "{path}");
    }
    let r = emu.http("alice.os", "GET", &format!("/{PID}/assets/app.js"), &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "console.log(1)"));
    // The type process_lib's serve_ui guessed and bound with the content.
    assert!(
        r.headers["content-type"].ends_with("/javascript"),
        "{:?}",
        r.headers
    );
    emu.assert_no_crashes();
}

#[test]
fn a_websocket_client_gets_the_cores_pushes() {
    let emu = boot(ALL);
    let ch = emu.ws_open("alice.os", &format!("/{PID}/ws")).unwrap();
    emu.run_for(10);
    emu.ws_send("alice.os", ch, "Text", "ping").unwrap();
    emu.run_for(10);
    let (frames, open) = emu.ws_frames("alice.os", ch);
    assert!(open);
    assert_eq!(
        frames,
        [
            ("Text".to_string(), b"welcome".to_vec()),
            ("Text".to_string(), b"echo:ping".to_vec())
        ]
    );
    emu.ws_close("alice.os", ch).unwrap();
    emu.run_for(10);
    assert!(emu.ws_send("alice.os", ch, "Text", "late").is_err());
    assert!(emu.ws_open("alice.os", &format!("/{PID}/nows")).is_err());
    assert!(emu
        .logs()
        .iter()
        .any(|l| l.process == PID && l.message.contains(&format!("WebSocket {ch} closed"))));
    emu.assert_no_crashes();
}

#[test]
fn without_the_http_server_and_vfs_grants_nothing_is_bound() {
    let emu = boot(r#"["sqlite:distro:sys"]"#);
    assert_eq!(
        emu.http("alice.os", "GET", &format!("/{PID}/api/x"), &[], "")
            .status,
        404
    );
    assert_eq!(
        emu.http("alice.os", "GET", &format!("/{PID}/"), &[], "")
            .status,
        404
    );
    let logs: Vec<String> = emu.logs().into_iter().map(|l| l.message).collect();
    for module in ["http-server:distro:sys", "vfs:distro:sys"] {
        let line = format!("process {PID} doesn't have capability to message process {module}");
        assert!(logs.iter().any(|l| l.contains(&line)), "{line}: {logs:#?}");
    }
    assert!(
        logs.iter().any(|l| l.contains("binding /api/* failed")),
        "the driver says so: {logs:#?}"
    );
    emu.assert_no_crashes();
}
