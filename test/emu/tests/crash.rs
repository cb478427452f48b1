//! A panic inside a real component is reported with its message.

use p2p_emu::package::{workspace_package_zip, Package};
use p2p_emu::{AppSpec, EmuConfig, Emulator};

#[test]
fn presence_without_the_sqlite_grant_panics_and_the_message_is_reported() {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let mut package = Package::from_zip_file(&zip).unwrap();
    // A manifest that forgot `"sqlite:distro:sys"`: storage is unreachable, so the runner
    // refuses to run (common/src/runner.rs), as it would on a node.
    for e in &mut package.manifest {
        if e.process_name == "presence" {
            e.request_capabilities.clear();
        }
    }
    let emu = Emulator::new(EmuConfig {
        echo_verbosity: None,
        ..EmuConfig::default()
    })
    .unwrap();
    emu.set_cache_dir(zip.parent().unwrap().join("emu-cache"));
    emu.add_node("alice.os").unwrap();
    emu.install("alice.os", &package).unwrap();
    emu.run_for(3_500);
    let crashes = emu.crashes();
    let presence: Vec<_> = crashes
        .iter()
        .filter(|c| c.process == "presence:p2p-patterns:p2p-patterns.os")
        .collect();
    assert!(
        presence.len() >= 2,
        "presence crashes and is restarted (on_exit Restart): {crashes:#?}"
    );
    let m = &presence[0].message;
    assert!(
        m.contains("storage unavailable (sqlite:distro:sys)")
            && m.contains("the package manifest must request"),
        "the panic message is reported: {m}"
    );
    assert!(m.contains("panicked at"), "with its location: {m}");
    // The other processes, which kept their grant, run.
    assert!(crashes.iter().all(|c| c.process.starts_with("presence:")));
    let grants = vec!["sync:p2p-patterns:p2p-patterns.os".to_string()];
    let app = emu
        .add_app("alice.os", p2p_emu::DEFAULT_APP, AppSpec::granting(&grants))
        .unwrap();
    let sync = emu.request(&app, &Emulator::ours("alice.os", "sync"), "\"Ping\"", 5);
    assert!(sync.is_ok(), "{sync:?}");
}
