//! The `qimg` binary: parse the arguments, run the command, turn the result
//! into an exit code and one line on stderr.

mod cli;

use cli::program::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    bound_allocator_memory();
    quiet_contained_panics();
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

/// A panic on an HTTP request thread is caught there and reported as the
/// exchange's error, in the command's one error line; the default hook
/// would print it first. Every other panic is reported as before.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(qimg::io::http::REQUEST_THREAD) {
            default(info);
        }
    }));
}

/// Metadata tables (64 KiB to 2 MiB each) are loaded and evicted all the
/// time by several threads. With glibc's default of one heap per thread,
/// memory a table freed in one thread's heap is not reused by the next
/// load in another, and resident memory grew well past the cache budget
/// (a compare of two 16-deep chains: 136 MiB for 32 MiB of tables). One
/// heap for the process reuses it; its lock is not contended, since the
/// bulk buffers of a copy are separate mappings, allocated once.
fn bound_allocator_memory() {
    // SAFETY: mallopt only tunes the allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
