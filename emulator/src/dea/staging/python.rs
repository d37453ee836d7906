//! Python apps with a `requirements.txt`: a virtualenv of their own in the droplet (`.venv`),
//! the requirements installed into it with the machine's pip and its index configuration (the
//! cache is staging's), as AppFog's Python support did; the app runs with the virtualenv first on
//! its `PATH`.

use super::run::Staging;

/// Where the virtualenv lives, in the app directory.
const VENV: &str = ".venv";

/// Stages the requirements; returns what the start exports.
pub(super) async fn stage(staging: &mut Staging) -> Result<Vec<(String, String)>, String> {
    let requirements = std::fs::read(staging.app_dir.join("requirements.txt"))
        .map_err(|e| format!("cannot read requirements.txt: {e}"))?;
    if std::str::from_utf8(&requirements).is_err() {
        return Err("requirements.txt is not text (UTF-8)".into());
    }
    let python = staging.need("python3", "installing requirements.txt")?;
    let venv = staging.app_dir.join(VENV);
    if venv.exists() || venv.is_symlink() {
        // A virtualenv that came with the app was made for another machine's paths.
        staging.say("-----> Replacing the .venv that came with the app");
        std::fs::remove_dir_all(&venv)
            .or_else(|_| std::fs::remove_file(&venv))
            .map_err(|e| format!("cannot remove the uploaded .venv: {e}"))?;
    }
    // The virtualenv without a pip of its own (fast, no network); the machine's pip installs
    // into it.
    staging
        .run(
            "Creating a virtualenv",
            &python,
            &["-m", "venv", "--without-pip", VENV],
            &[],
            None,
        )
        .await?;
    let cache = staging.cache("pip")?;
    let venv_python = format!("{VENV}/bin/python");
    staging
        .run(
            "pip install",
            &python,
            &[
                "-m",
                "pip",
                "--python",
                &venv_python,
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                "-r",
                "requirements.txt",
            ],
            &[("PIP_CACHE_DIR", cache.as_os_str())],
            None,
        )
        .await?;
    Ok(vec![
        ("VIRTUAL_ENV".into(), format!("$PWD/{VENV}")),
        ("PATH".into(), format!("$PWD/{VENV}/bin:$PATH")),
    ])
}
