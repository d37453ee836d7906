//! The frameworks and runtimes `/info` offers, as v1 named them, for the runtimes that are
//! actually on this machine, each with the version installed. `af` detects the app type from the
//! files and only checks `standalone` (and `rack`, `play`) against this list; other clients build
//! their runtime menus from it. Java web apps (`java_web`, `spring`, `grails`, `lift`) are
//! offered when both `java` and the servlet container (Jetty 9) are installed.

use std::process::Command;

use serde_json::{Value, json};

/// A runtime found on this machine.
#[derive(Debug, Clone)]
struct Runtime {
    name: &'static str,
    version: String,
    description: &'static str,
}

fn probe(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let version = text
        .split_whitespace()
        .find(|word| {
            word.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
        })?
        .trim_start_matches('v')
        .to_owned();
    Some(version)
}

/// `java -version`'s version, which it quotes (`openjdk version "17.0.15" 2025-04-15`), on
/// stderr.
fn probe_java() -> Option<String> {
    let output = Command::new("java").arg("-version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    java_version(&String::from_utf8_lossy(&output.stderr))
}

fn java_version(text: &str) -> Option<String> {
    let first_line = text.lines().next()?;
    let quoted = first_line.split('"').nth(1)?;
    quoted
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| quoted.to_owned())
}

/// Looks for node, ruby, python, php and java (blocking: runs each with `--version`), and for
/// Jetty.
pub(crate) fn detect() -> Value {
    let node = probe("node", &["--version"]).map(|version| Runtime {
        name: "node",
        version,
        description: "Node.js",
    });
    let ruby = probe("ruby", &["-e", "print RUBY_VERSION"]).map(|version| Runtime {
        name: if version.starts_with("1.8") {
            "ruby18"
        } else {
            "ruby19"
        },
        version,
        description: "Ruby",
    });
    let python = probe("python3", &["--version"]).map(|version| Runtime {
        name: "python2",
        version,
        description: "Python",
    });
    let php = probe("php", &["--version"]).map(|version| Runtime {
        name: "php",
        version,
        description: "PHP",
    });
    let java = probe_java().map(|version| Runtime {
        name: "java",
        version,
        description: "Java",
    });
    let servlet_container = super::staging::jetty_home().is_ok();
    frameworks(node, ruby, python, php, java, servlet_container)
}

fn frameworks(
    node: Option<Runtime>,
    ruby: Option<Runtime>,
    python: Option<Runtime>,
    php: Option<Runtime>,
    java: Option<Runtime>,
    servlet_container: bool,
) -> Value {
    // v1 offered node under several names (node, node06, node08); each is listed with the
    // version actually installed, which is what programs compare with their own.
    let aliases = |runtime: &Runtime| -> Vec<&'static str> {
        match runtime.name {
            "node" => vec!["node", "node06", "node08"],
            other => vec![other],
        }
    };
    let list = |runtimes: &[&Option<Runtime>]| -> Vec<Value> {
        runtimes
            .iter()
            .filter_map(|r| r.as_ref())
            .flat_map(|r| {
                aliases(r).into_iter().map(move |name| {
                    json!({"name": name, "version": r.version, "description": r.description})
                })
            })
            .collect()
    };
    let mut frameworks = serde_json::Map::new();
    let mut offer = |name: &str, runtimes: Vec<Value>| {
        if !runtimes.is_empty() {
            frameworks.insert(name.to_owned(), json!({"name": name, "runtimes": runtimes}));
        }
    };
    offer("node", list(&[&node]));
    offer("sinatra", list(&[&ruby]));
    offer("rack", list(&[&ruby]));
    offer("wsgi", list(&[&python]));
    offer("django", list(&[&python]));
    offer("php", list(&[&php]));
    if servlet_container {
        // v1 staged all four as web apps in its servlet container.
        for name in ["java_web", "spring", "grails", "lift"] {
            offer(name, list(&[&java]));
        }
    }
    // Standalone is always offered: a start command can run anything, and the built-in static
    // server needs no runtime at all.
    let mut standalone = list(&[&node, &ruby, &python, &php, &java]);
    if standalone.is_empty() {
        standalone.push(
            json!({"name": "static", "version": "1.0", "description": "built-in static server"}),
        );
    }
    frameworks.insert(
        "standalone".into(),
        json!({"name": "standalone", "runtimes": standalone}),
    );
    Value::Object(frameworks)
}

/// `GET /info/runtimes` (af's `start --debug` reads it): every runtime offered, once.
pub(crate) fn runtimes(frameworks: &Value) -> Value {
    let mut runtimes = serde_json::Map::new();
    for framework in frameworks.as_object().into_iter().flat_map(|f| f.values()) {
        for runtime in framework["runtimes"].as_array().into_iter().flatten() {
            if let Some(name) = runtime["name"].as_str() {
                runtimes.entry(name.to_owned()).or_insert_with(|| {
                    json!({
                        "version": runtime["version"],
                        "description": runtime["description"],
                        // No debugging on this platform (allow_debug is false).
                        "debug_modes": [],
                    })
                });
            }
        }
    }
    Value::Object(runtimes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_present_runtimes_are_offered() {
        let node = Some(Runtime {
            name: "node",
            version: "20.20.2".into(),
            description: "Node.js",
        });
        let offered = frameworks(node, None, None, None, None, true);
        assert_eq!(offered["node"]["runtimes"][0]["version"], "20.20.2");
        let names: Vec<_> = offered["node"]["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["node", "node06", "node08"]);
        assert!(offered.get("sinatra").is_none());
        assert_eq!(offered["standalone"]["name"], "standalone");
        let runtimes = runtimes(&offered);
        assert_eq!(runtimes["node08"]["version"], "20.20.2");
        assert_eq!(runtimes["node"]["debug_modes"], json!([]));
        let nothing = frameworks(None, None, None, None, None, true);
        assert_eq!(nothing.as_object().unwrap().len(), 1);
    }

    #[test]
    fn java_web_apps_need_java_and_the_servlet_container() {
        let version = java_version(
            "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6)\n",
        );
        assert_eq!(version.as_deref(), Some("17.0.15"));
        assert_eq!(
            java_version("java version \"1.6.0_45\"\n").as_deref(),
            Some("1.6.0_45")
        );
        let java = || {
            Some(Runtime {
                name: "java",
                version: "17.0.15".into(),
                description: "Java",
            })
        };
        let offered = frameworks(None, None, None, None, java(), true);
        for name in ["java_web", "spring", "grails", "lift"] {
            assert_eq!(offered[name]["runtimes"][0]["name"], "java", "{name}");
            assert_eq!(offered[name]["runtimes"][0]["version"], "17.0.15");
        }
        assert_eq!(offered["standalone"]["runtimes"][0]["name"], "java");
        assert_eq!(runtimes(&offered)["java"]["version"], "17.0.15");
        // Without Jetty, java still runs standalone apps, but no WAR.
        let no_container = frameworks(None, None, None, None, java(), false);
        assert!(no_container.get("java_web").is_none());
        assert_eq!(no_container["standalone"]["runtimes"][0]["name"], "java");
        let no_java = frameworks(None, None, None, None, None, true);
        assert!(no_java.get("java_web").is_none());
    }
}
