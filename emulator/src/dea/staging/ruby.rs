//! Ruby apps with a `Gemfile`: their gems installed with Bundler into the droplet, as v1's
//! `gemfile_task.rb` did, and run under `bundle exec`.

use super::run::Staging;

/// What Bundler's staging leaves for the start: the variables to export, and whether start
/// commands go through `bundle exec`.
pub(super) struct Bundle {
    pub(super) exports: Vec<(String, String)>,
}

impl Bundle {
    /// The framework's start command under `bundle exec`, for commands staging chose.
    pub(super) fn command_for(&self, command: &str) -> Option<String> {
        Some(format!("bundle exec {command}"))
    }
}

pub(super) async fn stage(staging: &mut Staging) -> Result<Bundle, String> {
    let _ = staging;
    Err("Bundler staging is not written yet".into())
}
