//! `mbt`, the host tool: builds data, trains, evaluates, exports and benchmarks the MBT model,
//! and offers the debugging tools (`mbt tokenize`) that make the shared tokenizer checkable
//! from outside.
//!
//! Exit codes: 0 success, 1 an error (bad input, failed I/O; the message names the file or
//! field), 2 a usage error (clap), 3 a subcommand that is not built yet.

mod cli;
mod data;
mod model;
mod tokenize;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Raised by subcommands that later issues fill in.
#[derive(Debug)]
struct NotYet(&'static str);

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`mbt {}` is not implemented yet in this build", self.0)
    }
}

impl std::error::Error for NotYet {}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tokenize(cmd) => tokenize::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Train(_) => Err(NotYet("train").into()),
        Command::Eval(_) => Err(NotYet("eval").into()),
        Command::Export(args) => model::export(args),
        Command::Infer(args) => model::infer(args),
        Command::Model(cmd) => model::model(cmd),
        Command::Bench(cmd) => model::bench(cmd),
        Command::Events(_) => Err(NotYet("events").into()),
        Command::Timeline(_) => Err(NotYet("timeline").into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<NotYet>() => {
            eprintln!("mbt: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("mbt: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
