//! The `qimg` binary: parse the arguments, run the command, turn the result
//! into an exit code and one line on stderr.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                cli::exit::FAILURE
            } else {
                cli::exit::SUCCESS
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qimg: {e}");
            ExitCode::from(cli::exit::for_error(&e))
        }
    }
}
