//! `cargo xtask <command>`: the package build and the project's test command.
//!
//! * `build` — installable package without kit: target/wit, wasm build, components,
//!   interface check, optional UI, `target/<package>:<publisher>.zip` (+ sha256).
//! * `check-components` — the interface check alone, on the existing `pkg/*.wasm`.
//! * `test` — native tests, build, component checks, simulator (when it exists).

mod component;
mod fsutil;
mod pkgbuild;
mod pkgzip;
mod prereq;
mod testcmd;
mod wit_check;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build              build the installable package (pkg/*.wasm, target/<package>:<publisher>.zip)
  check-components   check the interface of every pkg/*.wasm
  test               run every test: cargo test --workspace, build, component checks, simulator";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace::workspace_root();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build"] => {
            prereq::require(pkgbuild::NEEDS).and_then(|()| pkgbuild::build(&root).map(drop))
        }
        ["check-components"] => component::check_pkg_components(&root),
        ["test"] => testcmd::run_all(&root),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
