//! `cargo xtask <command>`: the package build and the project's test command.
//!
//! * `build` — installable package without kit: target/wit, wasm build, components,
//!   interface check, optional UI, `target/<package>:<publisher>.zip` (+ sha256).
//! * `check-components` — the interface check alone, on the existing `pkg/*.wasm`.
//! * `docs` — rewrite (or with `--check`, compare) the generated tables of
//!   docs/performance.md from the build and the simulator benches.
//! * `test` — the steps of [`testcmd::STEPS`] (all, or `--step <name>`), after checking
//!   their prerequisites.
//!
//! Exit codes: 0 success, 1 a failed build or check, 2 a command line that cannot be run.
#![recursion_limit = "256"]

mod cli;
mod component;
mod fsutil;
mod perfdocs;
mod pkgbuild;
mod pkgzip;
mod prereq;
mod testcmd;
mod wit_check;
mod workspace;

use std::process::ExitCode;

use cli::Cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match cli::parse(&args, &testcmd::step_names(testcmd::STEPS)) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {}\n\n{}", err.message, cli::help(err.topic));
            return ExitCode::from(2);
        }
    };
    let root = workspace::workspace_root();
    let result = match cli {
        Cli::Help(topic) => {
            println!("{}", cli::help(topic));
            return ExitCode::SUCCESS;
        }
        Cli::Test { list: true, .. } => {
            print!("{}", testcmd::list(testcmd::STEPS));
            return ExitCode::SUCCESS;
        }
        Cli::Build => {
            prereq::require(pkgbuild::NEEDS).and_then(|()| pkgbuild::build(&root).map(drop))
        }
        Cli::CheckComponents => component::check_pkg_components(&root),
        Cli::Docs { check } => prereq::require(pkgbuild::NEEDS).and_then(|()| {
            if check {
                perfdocs::check(&root)
            } else {
                perfdocs::generate(&root)
            }
        }),
        Cli::Test { steps, .. } => testcmd::run(&root, &steps),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
