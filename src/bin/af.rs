//! `af`: the AppFog client, compatible with AppFog's `af` 0.3.22. Only the skeleton is here yet:
//! the commands arrive with their own issue; the library (`afemu_cli`) already has the typed v1
//! client they are built on.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("-v" | "--version" | "version") => {
            println!("af 0.3.22 (afemu {})", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "af: the af commands are not built yet; use AppFog's own af against `afemu serve`, \
                 or the afemu_cli::V1Client library"
            );
            ExitCode::from(2)
        }
    }
}
