//! The `qimg` binary: parse the arguments, run the command, turn the result
//! into an exit code and one line on stderr.

mod cli;

use cli::program::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = Program::from_argv0(args.first().map(|a| a.as_os_str()));
    let cli = match cli::parse(program, args.clone()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli::run(cli, program) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            cli::report(program, &args, &e);
            ExitCode::from(cli::exit::for_error(&e))
        }
    }
}
