//! af's framework table and detection (`lib/cli/frameworks.rb`): which framework a directory
//! is, the memory it gets by default, whether it needs a URL, a start command or a runtime.

use std::path::Path;

/// af's `FRAMEWORKS`: menu name, name sent, default memory, description.
const FRAMEWORKS: &[(&str, &str, &str, &str)] = &[
    ("Rails", "rails3", "256M", "Rails Application"),
    (
        "Spring",
        "spring",
        "512M",
        "Java SpringSource Spring Application",
    ),
    (
        "Grails",
        "grails",
        "512M",
        "Java SpringSource Grails Application",
    ),
    ("Lift", "lift", "512M", "Scala Lift Application"),
    ("JavaWeb", "java_web", "512M", "Java Web Application"),
    ("Standalone", "standalone", "64M", "Standalone Application"),
    ("Sinatra", "sinatra", "128M", "Sinatra Application"),
    ("Node", "node", "64M", "Node.js Application"),
    ("PHP", "php", "128M", "PHP Application"),
    (
        "Erlang/OTP Rebar",
        "otp_rebar",
        "64M",
        "Erlang/OTP Rebar Application",
    ),
    ("WSGI", "wsgi", "64M", "Python WSGI Application"),
    ("Django", "django", "128M", "Python Django Application"),
    ("aspdotnet", "aspdotnet", "128M", "ASP.NET Application"),
    ("Rack", "rack", "128M", "Rack Application"),
    ("Play", "play", "256M", "Play Framework Application"),
];

/// A framework as af's `Framework` object holds it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Framework {
    /// The name sent in `staging.framework`.
    pub(crate) name: String,
    memory: String,
    pub(crate) description: String,
    /// The `exec` af computes (and never sends).
    pub(crate) exec: Option<String>,
    /// Only Rails has a console.
    pub(crate) console: bool,
}

impl Framework {
    /// af's `Framework.new` with no arguments: the unknown framework (`--noframework`).
    pub(crate) fn unknown() -> Framework {
        Framework {
            name: "http://b20nine.com/unknown".into(),
            memory: "256M".into(),
            description: "Unknown Application Type".into(),
            exec: None,
            console: false,
        }
    }

    /// af's `Framework.create(name, opts)`.
    pub(crate) fn create(
        name: &str,
        memory: Option<String>,
        description: Option<String>,
        exec: Option<String>,
        console: bool,
    ) -> Framework {
        Framework {
            name: name.to_owned(),
            memory: memory.unwrap_or_else(|| "256M".into()),
            description: description.unwrap_or_else(|| "Unknown Application Type".into()),
            exec,
            console,
        }
    }

    /// By menu name (`Framework.lookup('Node')`).
    pub(crate) fn lookup(key: &str) -> Option<Framework> {
        FRAMEWORKS
            .iter()
            .find(|(k, ..)| *k == key)
            .map(|&(_, name, mem, description)| Framework {
                name: name.into(),
                memory: mem.into(),
                description: description.into(),
                exec: None,
                console: name == "rails3",
            })
    }

    /// By the name sent (`Framework.lookup_by_framework('node')`).
    pub(crate) fn lookup_by_framework(name: &str) -> Option<Framework> {
        FRAMEWORKS
            .iter()
            .find(|(_, n, ..)| *n == name)
            .and_then(|(key, ..)| Framework::lookup(key))
    }

    /// The menu names whose framework the target offers (`known_frameworks`).
    pub(crate) fn known(available: &[String]) -> Vec<String> {
        FRAMEWORKS
            .iter()
            .filter(|(_, name, ..)| available.iter().any(|a| a == name))
            .map(|(key, ..)| (*key).to_owned())
            .collect()
    }

    pub(crate) fn is_standalone(&self) -> bool {
        self.name == "standalone"
    }

    pub(crate) fn require_url(&self) -> bool {
        !self.is_standalone()
    }

    pub(crate) fn require_start_command(&self) -> bool {
        self.is_standalone()
    }

    pub(crate) fn prompt_for_runtime(&self) -> bool {
        self.is_standalone()
    }

    /// The memory af proposes; a standalone app's depends on its runtime.
    pub(crate) fn memory(&self, runtime: Option<&str>) -> String {
        if self.is_standalone() {
            match runtime {
                Some(r) if r.starts_with("ruby") || r == "php" => return "128M".into(),
                Some("java" | "java7") => return "512M".into(),
                _ => {}
            }
        }
        self.memory.clone()
    }

    /// The memory of the framework itself (the manifest's `framework.info.mem`).
    pub(crate) fn mem(&self) -> &str {
        &self.memory
    }

    /// The runtime a standalone app suggests (`default_runtime`).
    pub(crate) fn default_runtime(&self, path: &Path) -> Option<String> {
        if !self.is_standalone() {
            return None;
        }
        if !path.is_dir() {
            let text = path.to_string_lossy();
            if text.ends_with(".jar") || text.ends_with(".class") {
                return Some("java".into());
            }
            if text.ends_with(".rb") {
                return Some("ruby18".into());
            }
            if text.ends_with(".zip") {
                return runtime_from_zip(path);
            }
            return None;
        }
        let files = glob_recursive(path);
        if files.iter().any(|f| f.ends_with(".rb")) {
            return Some("ruby18".into());
        }
        if files
            .iter()
            .any(|f| f.ends_with(".class") || f.ends_with(".jar"))
        {
            return Some("java".into());
        }
        if let Some(zip) = top_level(path, ".zip").first() {
            return runtime_from_zip(&path.join(zip));
        }
        None
    }
}

impl std::fmt::Display for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// af's `Framework.detect(path, frameworks offered)`.
pub(crate) fn detect(path: &Path, available: &[String]) -> Option<Framework> {
    let offered = |name: &str| available.iter().any(|a| a == name);
    if !path.is_dir() {
        let text = path.to_string_lossy();
        if text.ends_with(".war") {
            return Some(framework_from_listing(&zip_listing(path)));
        }
        if text.ends_with(".zip") {
            return framework_from_zip(&zip_listing(path), available);
        }
        return offered("standalone")
            .then(|| Framework::lookup("Standalone"))
            .flatten();
    }
    if path.join("config/environment.rb").exists() {
        return Framework::lookup("Rails");
    }
    if path.join("config.ru").exists() && offered("rack") {
        return Framework::lookup("Rack");
    }
    if let Some(war) = top_level(path, ".war").first() {
        return Some(framework_from_listing(&zip_listing(&path.join(war))));
    }
    if path.join("WEB-INF/web.xml").exists() {
        return Some(framework_from_listing(&glob_recursive(path).join("\n")));
    }
    let ruby_files = top_level(path, ".rb");
    if !ruby_files.is_empty() {
        for file in &ruby_files {
            let text = std::fs::read_to_string(path.join(file)).unwrap_or_default();
            if requires_sinatra(&text) {
                let mut sinatra = Framework::lookup("Sinatra")?;
                sinatra.exec = Some(format!("ruby {file}"));
                return Some(sinatra);
            }
        }
        // af's `elsif` chain ends here for Ruby files: no PHP, Node… check, only the fallback.
    } else if !top_level(path, ".php").is_empty() {
        return Framework::lookup("PHP");
    } else if has_erlang_release(path) {
        return Framework::lookup("Erlang/OTP Rebar");
    } else if path.join("manage.py").exists() && path.join("settings.py").exists() {
        return Framework::lookup("Django");
    } else if path.join("wsgi.py").exists() {
        return Framework::lookup("WSGI");
    } else if top_level_names(path)
        .iter()
        .any(|n| n.eq_ignore_ascii_case("web.config"))
    {
        return Framework::lookup("aspdotnet");
    } else if !top_level(path, ".js").is_empty() {
        if ["server.js", "app.js", "index.js", "main.js"]
            .iter()
            .any(|f| path.join(f).exists())
        {
            return Framework::lookup("Node");
        }
    } else if let Some(zip) = top_level(path, ".zip").first() {
        return framework_from_zip(&zip_listing(&path.join(zip)), available);
    }
    offered("standalone")
        .then(|| Framework::lookup("Standalone"))
        .flatten()
}

/// `^\s*#?\s*require\s*\(?\s*['"]sinatra['"]` on some line.
fn requires_sinatra(text: &str) -> bool {
    text.lines().any(|line| {
        let rest = line.trim_start();
        let rest = rest.strip_prefix('#').unwrap_or(rest).trim_start();
        let Some(rest) = rest.strip_prefix("require") else {
            return false;
        };
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('(').unwrap_or(rest).trim_start();
        let mut chars = rest.chars();
        let Some(quote @ ('\'' | '"')) = chars.next() else {
            return false;
        };
        let _ = quote;
        let rest = chars.as_str();
        rest.strip_prefix("sinatra")
            .is_some_and(|r| r.starts_with(['\'', '"']))
    })
}

fn has_erlang_release(path: &Path) -> bool {
    let releases = path.join("releases");
    let mut rel = false;
    let mut boot = false;
    for dir in std::fs::read_dir(releases).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            rel |= name.ends_with(".rel");
            boot |= name.ends_with(".boot");
        }
    }
    rel && boot
}

/// Which Java framework a war (or a tree with `WEB-INF`) is, from its entry names.
fn framework_from_listing(listing: &str) -> Framework {
    let has = |prefix: &str, suffix: &str| {
        listing.lines().any(|line| {
            line.find(prefix)
                .is_some_and(|at| line[at + prefix.len()..].contains(suffix))
        })
    };
    let key = if has("WEB-INF/lib/grails-web", ".jar") {
        "Grails"
    } else if has("WEB-INF/lib/lift-webkit", ".jar") {
        "Lift"
    } else if has("WEB-INF/classes/org/springframework", "")
        || has("WEB-INF/lib/spring-core", ".jar")
        || has("WEB-INF/lib/org.springframework.core", ".jar")
    {
        "Spring"
    } else {
        "JavaWeb"
    };
    Framework::lookup(key).unwrap_or_else(Framework::unknown)
}

fn framework_from_zip(listing: &str, available: &[String]) -> Option<Framework> {
    let offered = |name: &str| available.iter().any(|a| a == name);
    let play = listing.lines().any(|l| {
        l.find("lib/play.")
            .is_some_and(|at| l[at + "lib/play.".len()..].contains(".jar"))
    });
    if offered("play") && play {
        return Framework::lookup("Play");
    }
    offered("standalone")
        .then(|| Framework::lookup("Standalone"))
        .flatten()
}

fn runtime_from_zip(path: &Path) -> Option<String> {
    zip_listing(path)
        .lines()
        .any(|l| l.trim_end().ends_with(".jar"))
        .then(|| "java".into())
}

/// The names of a zip's entries, one a line (af reads `unzip -l`).
pub(crate) fn zip_listing(path: &Path) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return String::new();
    };
    let Ok(mut archive) = zip::ZipArchive::new(file) else {
        return String::new();
    };
    (0..archive.len())
        .filter_map(|i| {
            archive
                .by_index(i)
                .ok()
                .and_then(|e| e.name().ok().map(|n| n.into_owned()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Dir.glob('*' + ext)` in `path`: visible top-level files with that extension, sorted.
fn top_level(path: &Path, ext: &str) -> Vec<String> {
    top_level_names(path)
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect()
}

fn top_level_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// `Dir['**/*']` under `path`: visible paths, relative, sorted.
fn glob_recursive(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(path)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .flatten()
        .filter_map(|e| {
            e.path()
                .strip_prefix(path)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    fn detected(files: &[(&str, &str)], available: &[&str]) -> Option<String> {
        let dir = dir_with(files);
        let available: Vec<String> = available.iter().map(|s| (*s).to_owned()).collect();
        detect(dir.path(), &available).map(|f| f.name)
    }

    #[test]
    fn detection_follows_afs_order() {
        assert_eq!(detected(&[("server.js", "")], &[]).as_deref(), Some("node"));
        assert_eq!(detected(&[("lib.js", "")], &[]), None);
        assert_eq!(
            detected(&[("lib.js", "")], &["standalone"]).as_deref(),
            Some("standalone")
        );
        assert_eq!(detected(&[("index.php", "")], &[]).as_deref(), Some("php"));
        assert_eq!(
            detected(&[("app.rb", "require 'sinatra'\n")], &[]).as_deref(),
            Some("sinatra")
        );
        // A Ruby file that is not Sinatra stops the chain: index.php is not looked at.
        assert_eq!(detected(&[("x.rb", ""), ("index.php", "")], &[]), None);
        assert_eq!(
            detected(&[("config/environment.rb", "")], &[]).as_deref(),
            Some("rails3")
        );
        assert_eq!(detected(&[("config.ru", "")], &[]), None);
        assert_eq!(
            detected(&[("config.ru", "")], &["rack"]).as_deref(),
            Some("rack")
        );
        assert_eq!(
            detected(&[("manage.py", ""), ("settings.py", "")], &[]).as_deref(),
            Some("django")
        );
        assert_eq!(detected(&[("wsgi.py", "")], &[]).as_deref(), Some("wsgi"));
        assert_eq!(
            detected(&[("index.html", "")], &["standalone"]).as_deref(),
            Some("standalone")
        );
    }

    #[test]
    fn memory_and_requirements() {
        let node = Framework::lookup_by_framework("node").unwrap();
        assert_eq!(node.memory(None), "64M");
        assert!(node.require_url() && !node.require_start_command());
        let standalone = Framework::lookup("Standalone").unwrap();
        assert_eq!(standalone.memory(Some("ruby19")), "128M");
        assert_eq!(standalone.memory(Some("java")), "512M");
        assert!(!standalone.require_url() && standalone.require_start_command());
        assert!(Framework::lookup_by_framework("rails3").unwrap().console);
        assert_eq!(Framework::lookup_by_framework("nope"), None);
        assert_eq!(Framework::unknown().to_string(), "Unknown Application Type");
    }

    #[test]
    fn sinatra_requires() {
        assert!(requires_sinatra("  require 'sinatra'"));
        assert!(requires_sinatra("# require(\"sinatra\")"));
        assert!(!requires_sinatra("require 'sinatra/base'"));
    }
}
