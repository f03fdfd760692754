//! `mbt`, the host tool: builds data, trains, evaluates, exports and benchmarks the MBT model,
//! and offers the debugging tools (`mbt tokenize`) that make the shared tokenizer checkable
//! from outside.
//!
//! Exit codes: 0 success, 1 an error (bad input, failed I/O; the message names the file or
//! field), 2 a usage error (clap), 130 interrupted training.

mod cli;
mod data;
mod events;
mod model;
mod probe;
mod timeline;
mod tokenize;
mod train;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tokenize(cmd) => tokenize::run(cmd),
        Command::Data(data::DataCmd::Probe(args)) => probe::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Train(a) => train::run(train::TrainArgs {
            config: a.config,
            overrides: a.overrides,
            data: a.data,
            out: a.out,
            resume: a.resume,
            seed: a.seed,
            limit_train: a.limit_train,
            limit_val: a.limit_val,
            max_steps: a.max_steps,
            cache: a.cache,
            pool: a.pool,
            trunks: a.trunks,
            init: a.personalise.init.map(|init| train::personalise::InitArgs {
                init,
                add_labels: a.personalise.add_labels,
                forgetting_data: a.personalise.forgetting_data,
                forgetting_split: a.personalise.forgetting_split,
                forgetting_limit: a.personalise.forgetting_limit,
                replay: a.personalise.replay,
                replay_limit: a.personalise.replay_limit,
                no_replay: a.personalise.no_replay,
                new_label_threshold: a.personalise.new_label_threshold,
            }),
        }),
        Command::Eval(a) => train::eval::run(train::eval::EvalArgs {
            model: a.model,
            config: a.config,
            data: a.data,
            split: a.split,
            crops: a.crops,
            batch_size: a.batch_size,
            limit: a.limit,
            out: a.out,
            logits: a.logits,
            runtime: a.runtime,
        }),
        Command::Export(args) => model::export(args),
        Command::Infer(args) => model::infer(args),
        Command::Model(cmd) => model::model(cmd),
        Command::Bench(cmd) => model::bench(cmd),
        Command::Events(cmd) => events::run(cmd),
        Command::Timeline(a) => timeline::run(timeline::TimelineArgs {
            model: a.model,
            clip: a.clip,
            out: a.out,
            mbtd: a.mbtd,
            overrides: a.overrides,
        }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<train::Interrupted>() => {
            eprintln!("mbt: {e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("mbt: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
