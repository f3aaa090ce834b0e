//! `trueip`: find the real client IP behind proxies — explain a decision, or run the gateway.

#![warn(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice,
    clippy::allow_attributes_without_reason,
    unreachable_pub
)]

#[cfg(feature = "mimalloc-plain")]
mod alloc;
mod audit;
mod check;
mod explain;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "mimalloc-plain")]
#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;

#[cfg(all(feature = "mimalloc", not(feature = "mimalloc-plain")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Find the real client IP of a request that crossed CDNs, load balancers and proxies,
/// without letting anyone forge it.
#[derive(Parser)]
#[command(name = "trueip", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Explain(explain::ExplainArgs),
    Serve(trueip_gateway::ServeArgs),
    Ranges(trueip_gateway::RangesArgs),
    Simulate(simulate::SimulateArgs),
    Audit(audit::AuditArgs),
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Serve(args) => trueip_gateway::run(args),
        Command::Ranges(args) => trueip_gateway::ranges(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Check(args) => check::run(args),
    }
}
