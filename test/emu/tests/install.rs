//! Installing from the built zip gives each process exactly its manifest's capabilities,
//! and the kernel holds every process to them, on requests and on responses.

mod common;

use common::*;
use p2p_common::api::presence::{Request, Response};
use p2p_emu::package::{workspace_package_zip, Package};
use p2p_emu::{AppSpec, Capability, EmuConfig, Emulator, ProcessId};

fn cap(issuer: &str, params: &str) -> Capability {
    Capability {
        issuer: p2p_emu::Address::parse(issuer).unwrap(),
        params: params.into(),
    }
}

#[test]
fn each_process_holds_what_its_manifest_requested() {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let package = Package::from_zip_file(&zip).unwrap();
    let emu = boot3();
    for e in &package.manifest {
        let pid = package.process_id(&e.process_name);
        let mut got: Vec<String> = emu
            .capabilities("bob.os", &pid)
            .iter()
            .map(|c| format!("{} {}", c.issuer, c.params))
            .collect();
        got.sort();
        let mut want = vec![
            format!("bob.os@{pid} \"messaging\""),
            "bob.os@kernel:distro:sys \"network\"".to_string(),
            "bob.os@sqlite:distro:sys \"messaging\"".to_string(),
        ];
        // The default app granted each of our processes messaging on itself.
        want.push(format!("bob.os@{} \"messaging\"", p2p_emu::DEFAULT_APP));
        // notify signs and verifies notifications with sign:sign:sys, txcoord its decisions.
        let mut requested = vec![serde_json::json!("sqlite:distro:sys")];
        if e.process_name == "notify" || e.process_name == "txcoord" {
            want.push("bob.os@sign:sign:sys \"messaging\"".to_string());
            requested.push(serde_json::json!("sign:sign:sys"));
        }
        // Every process binds its HTTP API and WebSocket; presence also serves the page from
        // its package's drive.
        want.push("bob.os@http-server:distro:sys \"messaging\"".to_string());
        requested.push(serde_json::json!("http-server:distro:sys"));
        if e.process_name == "presence" {
            want.push("bob.os@vfs:distro:sys \"messaging\"".to_string());
            requested.push(serde_json::json!("vfs:distro:sys"));
        }
        // Every process may read and write its package's drive (where the zip was unpacked).
        for kind in ["read", "write"] {
            want.push(format!(
                "bob.os@vfs:distro:sys {{\"kind\": \"{kind}\", \"drive\": \"/p2p-patterns:p2p-patterns.os/pkg\"}}"
            ));
        }
        want.sort();
        assert!(e.request_networking && e.public, "{e:?}");
        assert_eq!(e.request_capabilities, requested);
        assert_eq!(got, want, "{pid}");
    }
    assert_eq!(
        emu.vfs_file("bob.os", "/p2p-patterns:p2p-patterns.os/pkg/presence.wasm"),
        package.files.get("presence.wasm").cloned()
    );
    // What a process did not ask for it does not hold: presence may not message sign.
    let presence = ProcessId::parse("presence:p2p-patterns:p2p-patterns.os").unwrap();
    assert!(!emu
        .capabilities("bob.os", &presence)
        .contains(&cap("bob.os@sign:sign:sys", "\"messaging\"")));
}

#[test]
fn a_process_whose_manifest_did_not_request_networking_is_cut_off_both_ways() {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let full = Package::from_zip_file(&zip).unwrap();
    let mut local_only = full.clone();
    for e in &mut local_only.manifest {
        e.request_networking = false;
    }
    let emu = Emulator::new(EmuConfig {
        echo_verbosity: None,
        ..EmuConfig::default()
    })
    .unwrap();
    emu.set_cache_dir(zip.parent().unwrap().join("emu-cache"));
    let ours: Vec<String> = full
        .manifest
        .iter()
        .map(|e| full.process_id(&e.process_name).to_string())
        .collect();
    for (node, package) in [
        ("alice.os", &full),
        ("bob.os", &full),
        ("charlie.os", &local_only),
    ] {
        emu.add_node(node).unwrap();
        emu.install(node, package).unwrap();
        emu.add_app(node, p2p_emu::DEFAULT_APP, AppSpec::granting(&ours))
            .unwrap();
    }
    emu.run_until_networking();
    for node in ["bob.os", "charlie.os"] {
        let r = presence(
            &emu,
            node,
            &Request::Join {
                bootstrap: vec!["alice.os".parse().unwrap()],
            },
        );
        assert!(matches!(r, Ok(Response::Joining { .. })), "{r:?}");
    }
    emu.run_for(20 * 6_000);
    assert!(all_alive(
        &emu,
        &["alice.os", "bob.os"],
        &["alice.os", "bob.os"]
    ));
    for viewer in ["alice.os", "bob.os"] {
        assert_eq!(
            status_of(&emu, viewer, "charlie.os"),
            None,
            "{viewer} knows charlie"
        );
    }
    let logs = emu.logs();
    assert!(logs.iter().any(|l| l.node == "charlie.os"
        && l.message.contains(
            "process presence:p2p-patterns:p2p-patterns.os doesn't have capability to send networked messages"
        )));
    // Local calls still work on charlie.
    assert!(presence(&emu, "charlie.os", &Request::Stats {}).is_ok());
    emu.assert_no_crashes();
}
