//! `af`: AppFog's client, compatible with `af` 0.3.22. All of it is the library's
//! [`afemu_cli::run`]; this only gives it the process's surroundings (`AF_HOME` or `HOME`,
//! stdout, stdin, whether stdout is a terminal) and exits with its status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("af: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    let mut context = afemu_cli::Context::from_process();
    let status = runtime.block_on(afemu_cli::run(&args, &mut context));
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
