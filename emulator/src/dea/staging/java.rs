//! Java web apps (`java_web`, and `spring`, `grails`, `lift`, which v1 staged as web apps): the
//! exploded WAR run in a servlet container on the instance's port.
//!
//! v1's `java_web` plugin (`vcap-staging`'s `plugin/java_web/`) put the WAR in a Tomcat 6 of the
//! droplet's own (`tomcat/webapps/ROOT`) and ran `catalina.sh run` from `tomcat/` with
//! `-Xms<mem>m -Xmx<mem>m -Djava.io.tmpdir=$PWD/tmp`. Tomcat 6 is packaged nowhere now, so the
//! container here is Jetty 9 (Debian's `jetty9`, the same `javax.servlet` API and JSP), shared
//! from where it is installed: the droplet gets a Jetty base of its own, `jetty/`, whose one
//! context is the app at `/`, and a `jetty/startup` script that does what v1's did. The app
//! stays in `app/`, where every other framework's is.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::StartPlan;
use super::run::Staging;

/// Where Debian's `jetty9` puts Jetty's home; `AFEMU_JETTY_HOME` names another.
const DEBIAN_JETTY_HOME: &str = "/usr/share/jetty9";

/// The Jetty base in the droplet, beside `app/`.
const JETTY_BASE: &str = "jetty";

/// Jetty's modules for a WAR: servlets from `web.xml`, JSP (which brings annotations, as
/// Servlet 3 containers scan them), deployment from `webapps/`. No request log, no console
/// capture: Jetty logs to stderr, which is the instance's `logs/stderr.log`.
const START_INI: &str = "\
# Written by afemu's staging: the Jetty modules a WAR needs.
--module=server,http,deploy,webapp,jsp
# The app is deployed once, at start: nothing watches webapps/.
jetty.deploy.scanInterval=0
";

/// The one context: the app directory at `/`, as v1's Tomcat had it (`webapps/ROOT`).
const ROOT_CONTEXT: &str = r#"<?xml version="1.0"?>
<!DOCTYPE Configure PUBLIC "-//Jetty//Configure//EN" "http://www.eclipse.org/jetty/configure_9_3.dtd">
<!-- Written by afemu's staging: the app (../app, an exploded WAR) at /. -->
<Configure class="org.eclipse.jetty.webapp.WebAppContext">
  <Set name="contextPath">/</Set>
  <Set name="war"><Property name="jetty.base"/>/../app</Set>
</Configure>
"#;

/// Whether v1 staged this framework as a Java web app.
pub(super) fn is_java(framework: &str) -> bool {
    matches!(framework, "java_web" | "spring" | "grails" | "lift")
}

pub(super) async fn stage(staging: &mut Staging, framework: &str) -> Result<StartPlan, String> {
    check_war(&staging.app_dir)?;
    let java = staging.need("java", "a Java web app")?;
    let jetty_home = jetty_home()?;
    if framework != "java_web" {
        // v1 rewrote Spring, Grails and Lift apps' configuration to use the bound services
        // ("auto-reconfiguration"); here they run as they were uploaded.
        staging.say(&format!(
            "-----> A {framework} app runs as a plain web app (no auto-reconfiguration)"
        ));
    }
    let base = staging.droplet_dir.join(JETTY_BASE);
    write_jetty_base(&base, &java, &jetty_home)
        .map_err(|e| format!("cannot write the Jetty base: {e}"))?;
    staging.say(&format!(
        "-----> Running the WAR in Jetty ({}) with {}",
        jetty_home.display(),
        java.display()
    ));
    Ok(StartPlan::command(
        format!("../{JETTY_BASE}/startup"),
        false,
    ))
}

/// A line for the start-up log: whether Java web apps can be staged here.
pub(super) fn describe() -> String {
    let java = super::run::find_program("java");
    match (java, jetty_home()) {
        (Some(java), Ok(jetty)) => format!(
            "staging: Java web apps (WAR) with {} in Jetty ({})",
            java.display(),
            jetty.display()
        ),
        (None, _) => "staging: Java web apps unavailable (java not installed)".into(),
        (Some(_), Err(missing)) => format!("staging: Java web apps unavailable ({missing})"),
    }
}

/// The Jetty home Java web apps run in: `AFEMU_JETTY_HOME`, else Debian's `jetty9`; an error
/// that says what is missing when it has no `start.jar`.
pub(crate) fn jetty_home() -> Result<PathBuf, String> {
    find_jetty_home(std::env::var_os("AFEMU_JETTY_HOME"))
}

fn find_jetty_home(configured: Option<OsString>) -> Result<PathBuf, String> {
    let (home, source) = match configured.filter(|home| !home.is_empty()) {
        Some(home) => (PathBuf::from(home), "AFEMU_JETTY_HOME"),
        None => (
            PathBuf::from(DEBIAN_JETTY_HOME),
            "Debian's jetty9; AFEMU_JETTY_HOME names another",
        ),
    };
    if !home.join("start.jar").is_file() {
        return Err(format!(
            "a Java web app needs Jetty 9, which is not installed on this machine: \
             no start.jar in {} ({source})",
            home.display()
        ));
    }
    // The start script runs from the instance directory: the home must not be relative.
    home.canonicalize()
        .map_err(|e| format!("cannot resolve Jetty's home {}: {e}", home.display()))
}

/// An exploded WAR has a `WEB-INF/web.xml`; v1 refused anything else ("Web application
/// staging failed: web.xml not found").
fn check_war(app_dir: &Path) -> Result<(), String> {
    if !app_dir.join("WEB-INF").is_dir() {
        return Err("no WEB-INF/ in the upload: a Java web app is a WAR \
             (a .war, or the directory of an exploded one)"
            .into());
    }
    if !app_dir.join("WEB-INF/web.xml").is_file() {
        return Err("web.xml not found: a Java web app needs a WEB-INF/web.xml".into());
    }
    Ok(())
}

/// Writes the droplet's Jetty base: `start.ini`, `webapps/ROOT.xml`, `tmp/` (the JVM's
/// `java.io.tmpdir`, where Jetty unpacks and compiles what it must) and `startup`.
fn write_jetty_base(base: &Path, java: &Path, jetty_home: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(base.join("webapps"))?;
    fs::create_dir_all(base.join("tmp"))?;
    fs::write(base.join("start.ini"), START_INI)?;
    fs::write(base.join("webapps/ROOT.xml"), ROOT_CONTEXT)?;
    let startup = base.join("startup");
    fs::write(&startup, startup_script(java, jetty_home))?;
    fs::set_permissions(&startup, fs::Permissions::from_mode(0o755))
}

/// v1's `startup` for Tomcat, for Jetty: from the Jetty base, the JVM with the user's
/// `JAVA_OPTS`, then the heap at the app's memory limit (`VCAP_APPLICATION`'s `limits.mem`,
/// read at each start, so a changed limit needs no restaging) and the temporary directory in
/// the instance, as v1's `CATALINA_OPTS` came after `JAVA_OPTS`; Jetty listens on loopback at
/// `VCAP_APP_PORT`. `exec`, so that the pid the DEA records is the JVM's.
fn startup_script(java: &Path, jetty_home: &Path) -> String {
    let java = shell_quoted(java);
    let start_jar = shell_quoted(&jetty_home.join("start.jar"));
    let home = shell_quoted(jetty_home);
    format!(
        r#"#!/bin/sh
# Written by afemu's staging: runs the app (../app) in Jetty, as v1's startup ran it in Tomcat.
cd "$(dirname "$0")" || exit 1
mem=$(printf '%s' "$VCAP_APPLICATION" | sed -n 's/.*"mem":\([0-9][0-9]*\).*/\1/p')
heap=
if [ -n "$mem" ]; then
  heap="-Xms$((mem / 1048576))m -Xmx$((mem / 1048576))m"
fi
exec {java} $JAVA_OPTS $heap -Djava.io.tmpdir="$PWD/tmp" \
  -jar {start_jar} jetty.home={home} jetty.base="$PWD" \
  jetty.http.host=127.0.0.1 jetty.http.port="$VCAP_APP_PORT"
"#
    )
}

/// A path as one single-quoted shell word.
fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_war_has_web_inf_and_web_xml() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.html"), "x").unwrap();
        assert!(check_war(dir.path()).unwrap_err().contains("no WEB-INF/"));
        fs::create_dir(dir.path().join("WEB-INF")).unwrap();
        assert!(
            check_war(dir.path())
                .unwrap_err()
                .starts_with("web.xml not found")
        );
        fs::write(dir.path().join("WEB-INF/web.xml"), "<web-app/>").unwrap();
        assert_eq!(check_war(dir.path()), Ok(()));
    }

    #[test]
    fn a_missing_jetty_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let error = find_jetty_home(Some(empty.path().into())).unwrap_err();
        assert!(error.contains("needs Jetty 9"), "{error}");
        assert!(error.contains("AFEMU_JETTY_HOME"), "{error}");
        fs::write(empty.path().join("start.jar"), "").unwrap();
        assert_eq!(
            find_jetty_home(Some(empty.path().into())).unwrap(),
            empty.path().canonicalize().unwrap()
        );
    }

    /// The startup script run with a stand-in for java that prints its arguments: the heap
    /// follows the memory limit, the port and the Jetty base are the instance's.
    #[test]
    fn the_startup_script_passes_the_limits_to_the_jvm() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let java = dir.path().join("it's java");
        fs::write(&java, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
        fs::set_permissions(&java, fs::Permissions::from_mode(0o755)).unwrap();
        let jetty_home = dir.path().join("jetty9");
        let base = dir.path().join("instance/jetty");
        write_jetty_base(&base, &java, &jetty_home).unwrap();
        fs::create_dir(dir.path().join("instance/app")).unwrap();
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("../jetty/startup")
            .current_dir(dir.path().join("instance/app"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env(
                "VCAP_APPLICATION",
                r#"{"limits":{"disk":2147483648,"fds":256,"mem":268435456},"name":"mem"}"#,
            )
            .env("VCAP_APP_PORT", "61234")
            .env("JAVA_OPTS", "-Dfrom.user=1")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let expected = [
            "-Dfrom.user=1".to_owned(),
            "-Xms256m".into(),
            "-Xmx256m".into(),
            format!("-Djava.io.tmpdir={}/tmp", base.display()),
            "-jar".into(),
            format!("{}/start.jar", jetty_home.display()),
            format!("jetty.home={}", jetty_home.display()),
            format!("jetty.base={}", base.display()),
            "jetty.http.host=127.0.0.1".into(),
            "jetty.http.port=61234".into(),
        ];
        assert_eq!(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .collect::<Vec<_>>(),
            expected
        );
        assert!(base.join("tmp").is_dir());
        assert!(
            fs::read_to_string(base.join("webapps/ROOT.xml"))
                .unwrap()
                .contains("/../app</Set>")
        );
    }
}
