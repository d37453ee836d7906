//! `af`: a client compatible with AppFog's `af` 0.3.22, and the typed v1 API client it is built on.
//!
//! # Layout
//!
//! - [`run`] and [`Context`]: `af` as a library call. `run(&args, &mut ctx)` does what
//!   `af ARGS…` does and returns its exit status ([`run_line`] takes the line as typed); the
//!   context says where the dot-files live, where output goes, where prompt answers come from,
//!   whether stdout is a terminal and how fast a start is polled. The `af` binary is `run`
//!   with [`Context::from_process`].
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! let home = std::path::Path::new("/tmp/af-home");
//! let (mut ctx, printed) = afemu_cli::Context::new(home)
//!     .with_poll_interval(Duration::from_millis(20))
//!     .captured();
//! let status = afemu_cli::run_line("af map example2 example.com", &mut ctx).await;
//! assert_eq!((status, printed.text().as_str()), (0, "Successfully mapped url\n\n"));
//! # }
//! ```
//! - `runner`: af's command line: which command, how many arguments, how failures print.
//! - `options`: af's `OptionParser` setup (abbreviations, `-N` deltas, optional arguments).
//! - `session` and `commands/`: the commands, one group a file, as af groups them
//!   (`commands/tunnel.rs`: `af tunnel` and its forwarder).
//! - `api`: the v1 API as the commands call it (af's `VMC::Client`): the login check, af's
//!   error texts, `-t` tracing.
//! - [`config`]: the dot-files (`~/.af_target`, `~/.af_token`, `~/.af_instances`,
//!   `~/.af_aliases`), shared with the real af.
//! - `manifest`: `manifest.yml` (upward search, `inherit`, symbols, `depends-on`).
//! - [`package`]: what an upload holds (`.afignore`, `*.log` left out, the zip).
//! - `output`, `table`, `prompt`, `json`, `yaml_out`: af's way of printing, terminal-table 1.4
//!   tables, interact's prompts, JSON with keys in order, Psych's YAML.
//! - [`fuzzing`]: the manifest loading, reachable from the fuzz targets in `fuzz/`.
//! - [`client`]: [`V1Client`], a typed v1 client for tests and tools (the emulator's harness
//!   uses it): the same wire protocol, composed operations (push, map, scale…).
//!
//! # Invariant
//!
//! This crate speaks only HTTP to whatever it targets. It does not link the emulator: it must
//! work against any v1 cloud controller. The one exception is `af tunnel`, which needs afemu's
//! `/_afemu/tunnel/services/NAME` (v1 kept credentials from clients) and then relays TCP from a
//! local port to the service's server itself, where af relayed it through an app it pushed.
//!
//! Where af 0.3.22 has a bug, this client does the right thing instead; `COMPATIBILITY.md`
//! lists every such difference.

mod afignore;
mod api;
pub mod client;
mod commands;
pub mod config;
mod context;
mod error;
mod frameworks;
pub mod fuzzing;
pub mod json;
mod manifest;
pub mod options;
mod output;
pub mod package;
mod prompt;
mod runner;
mod session;
mod table;
mod yaml_out;

pub use client::{ClientError, V1Client};
pub use context::{Captured, Context, Interrupt, InterruptSource};
pub use runner::{
    BASIC_USAGE, COMMAND_USAGE, CommandLine, parse_command, run, run_line, split_words,
};

/// `af` as a process: `args` (without the program's name) run with the process's surroundings
/// (`AF_HOME` or `HOME`, stdin, stdout, whether it is a terminal); the exit status.
pub fn run_process(args: &[String]) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("af: cannot start: {error}");
            return 1;
        }
    };
    let mut context = Context::from_process();
    runtime.block_on(run(args, &mut context))
}
