//! Python apps with a `requirements.txt`: a virtualenv of their own in the droplet (`.venv`),
//! the requirements installed into it with the machine's pip and its index configuration (the
//! cache is staging's), as AppFog's Python support did; the app runs with the virtualenv first on
//! its `PATH`.

use std::path::Path;

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
    let python = real_python(&staging.need("python3", "installing requirements.txt")?).await?;
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

/// The interpreter itself, not a wrapper in front of it (pyenv's shims write beside themselves,
/// which staging's confinement refuses): what `sys.executable` says.
async fn real_python(python: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let output = tokio::process::Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || executable.is_empty() {
        return Err(format!(
            "{} cannot say where its interpreter is: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(executable.into())
}

/// With gunicorn among the requirements, a WSGI or Django app is served by it, as v1 served
/// them (`gunicorn -c ../gunicorn.config wsgi:application`, bound to the instance's port); without
/// it, by the start staging chose (Python's own wsgiref, Django's runserver).
pub(super) fn gunicorn_command(app_dir: &Path, chosen: &str) -> Option<String> {
    if !app_dir.join(VENV).join("bin").join("gunicorn").is_file() {
        return None;
    }
    // `python3 -m`: the instance's own virtualenv (a script's `#!` names the droplet's).
    let bind = "python3 -m gunicorn -b 127.0.0.1:$VCAP_APP_PORT";
    if chosen == super::WSGI_LAUNCHER {
        return Some(format!("{bind} wsgi:application"));
    }
    if chosen == super::DJANGO_START {
        // The project's package: the directory beside manage.py with settings.py and wsgi.py.
        let project = std::fs::read_dir(app_dir)
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .filter(|dir| dir.join("settings.py").is_file() && dir.join("wsgi.py").is_file())
            .filter_map(|dir| Some(dir.file_name()?.to_str()?.to_owned()))
            .min()?;
        let application = super::shell_word(&format!("{project}.wsgi:application"));
        return Some(format!(
            "python3 manage.py migrate --noinput >> ../logs/startup.log 2>&1; \
{bind} {application}"
        ));
    }
    None
}
