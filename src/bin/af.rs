//! `af`: AppFog's client, compatible with `af` 0.3.22. All of it is the library's
//! [`afemu_cli::run`]; this only gives it the process's surroundings (`AF_HOME` or `HOME`,
//! stdout, stdin, whether stdout is a terminal) and exits with its status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(u8::try_from(afemu_cli::run_process(&args)).unwrap_or(1))
}
