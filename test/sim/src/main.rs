//! `cargo run --release -p p2p-sim -- <command>`: check, bench, replay.

use clap::{Parser, Subcommand};
use p2p_sim::scenarios;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "p2p-sim",
    about = "Deterministic simulator for the p2p-patterns services"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run N seeded random fault scenarios with every invariant checked.
    Check {
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed (seeds run from here upward).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Service scenario; all of them when omitted.
        #[arg(long)]
        service: Option<String>,
        /// Cluster size; each scenario's default when omitted.
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// Print a service's benchmark as one JSON object.
    Bench {
        service: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the full trace of one run.
    Replay {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value = "ping")]
        service: String,
        #[arg(long)]
        nodes: Option<usize>,
    },
    /// List the scenarios.
    List,
}

fn pick(service: &Option<String>) -> Result<Vec<Box<dyn scenarios::Scenario>>, String> {
    match service {
        None => Ok(scenarios::all()),
        Some(s) => scenarios::find(s).map(|x| vec![x]).ok_or_else(|| {
            let names: Vec<_> = scenarios::all().iter().map(|s| s.name()).collect();
            format!("no scenario {s:?}; known: {}", names.join(", "))
        }),
    }
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::List => {
            for s in scenarios::all() {
                println!("{} (default {} nodes)", s.name(), s.default_nodes());
            }
            ExitCode::SUCCESS
        }
        Cmd::Check {
            seeds,
            from,
            service,
            nodes,
        } => {
            let list = match pick(&service) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let (mut passed, mut failed) = (0u64, 0u64);
            for sc in &list {
                let n = nodes.unwrap_or(sc.default_nodes());
                for seed in from..from + seeds {
                    match sc.run(seed, n, false) {
                        Ok(_) => passed += 1,
                        Err(e) => {
                            failed += 1;
                            // Re-run the seed with recording on to show how it got there.
                            let e = match sc.run(seed, n, true) {
                                Err(full) => full,
                                Ok(_) => e,
                            };
                            eprintln!("FAIL {} {e}", sc.name());
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Bench { service, json } => match scenarios::find(&service) {
            Some(sc) => {
                let mut m = sc.bench();
                m.insert("service".into(), serde_json::json!(service));
                let v = serde_json::Value::Object(m);
                if json {
                    println!("{v}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no scenario {service:?}");
                ExitCode::from(2)
            }
        },
        Cmd::Replay {
            seed,
            service,
            nodes,
        } => match scenarios::find(&service) {
            Some(sc) => {
                let n = nodes.unwrap_or(sc.default_nodes());
                let result = sc.run(seed, n, true);
                let (sim_trace, verdict) = match &result {
                    Ok(sim) => (
                        sim.trace.all().map(|a| a.to_vec()).unwrap_or_default(),
                        "passed".to_string(),
                    ),
                    Err(e) => (e.trace_tail.clone(), format!("FAILED: {e}")),
                };
                for l in sim_trace {
                    println!("{l}");
                }
                if let Ok(sim) = &result {
                    println!("trace digest {}", sim.trace_digest());
                }
                println!("seed {seed} {verdict}");
                if result.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            None => {
                eprintln!("no scenario {service:?}");
                ExitCode::from(2)
            }
        },
    }
}
