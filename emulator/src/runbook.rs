//! Runbooks: the procedure a person would follow — the `af` commands they would type, verbatim —
//! plus a few directives that say which hosts get traffic, where to wait, and what must hold.
//!
//! ```text
//! # comment
//! af push example --path apps/blue --url example.com -n   # any af command line: a step
//! @traffic HOST [HOST ...] [rate=N/s]   # start traffic (default 100/s each); earlier steps are setup
//! @wait DURATION                        # keep traffic flowing, e.g. 300ms, 2s
//! @await served-by APP HOST [timeout=DURATION]  # until a request to HOST is served by APP
//! @expect no-default-error-page [HOST ...]      # implied for every traffic host over the run
//! @expect served-by APP HOST            # at the end, HOST is served only by APP
//! ```
//!
//! Paths in a runbook are relative to its own folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Step;

/// A parsed runbook.
#[derive(Clone, Debug, PartialEq)]
pub struct Runbook {
    /// Where the runbook is; relative paths in its steps are relative to this folder.
    pub dir: PathBuf,
    pub items: Vec<Item>,
}

/// One line that does something.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// 1-based, for messages.
    pub line: usize,
    pub text: String,
    pub kind: ItemKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// An `af` command line, split as a shell would (without `af`).
    Af(Vec<String>),
    Traffic {
        hosts: Vec<String>,
        rate: u32,
    },
    Wait(Duration),
    AwaitServedBy {
        app: String,
        host: String,
        timeout: Duration,
    },
    ExpectNoDefaultErrorPage {
        hosts: Vec<String>,
    },
    ExpectServedBy {
        app: String,
        host: String,
    },
}

/// A line that is not a step or a directive, with its number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RunbookError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The default traffic rate per host.
pub const DEFAULT_RATE: u32 = 100;
/// How long `@await` waits by default.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `@wait` or `@await` timeout: a rehearsal puts a deadline on it, and a runbook
/// that waits longer than a day is a typo.
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

impl Runbook {
    /// Reads and parses a runbook file.
    pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunbookError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read the runbook: {e}"),
        })?;
        // Absolute, so that the steps' relative paths mean the same from any working directory.
        let dir = path
            .parent()
            .map(|parent| {
                if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                }
            })
            .and_then(|parent| parent.canonicalize().ok())
            .unwrap_or_default();
        Runbook::parse(&text, &path.display().to_string(), dir)
    }

    /// Parses runbook text; `file` names it in errors, `dir` is what its paths are relative to.
    pub fn parse(text: &str, file: &str, dir: PathBuf) -> Result<Runbook, RunbookError> {
        let mut items = Vec::new();
        for (number, raw) in text.lines().enumerate() {
            let line = number + 1;
            let error = |message: String| RunbookError {
                file: file.to_owned(),
                line,
                message,
            };
            let words = split_words(raw).map_err(error)?;
            if words.is_empty() {
                continue;
            }
            let text = raw.trim().to_owned();
            let kind = match words[0].as_str() {
                "af" => {
                    if words.len() < 2 {
                        return Err(error("`af` needs a command".into()));
                    }
                    ItemKind::Af(words[1..].to_vec())
                }
                "@traffic" => parse_traffic(&words[1..]).map_err(error)?,
                "@wait" => {
                    let [duration] = &words[1..] else {
                        return Err(error("@wait takes one duration, e.g. @wait 500ms".into()));
                    };
                    ItemKind::Wait(parse_duration(duration).map_err(error)?)
                }
                "@await" => parse_await(&words[1..]).map_err(error)?,
                "@expect" => parse_expect(&words[1..]).map_err(error)?,
                other => {
                    return Err(error(format!(
                        "{other:?} is neither an af command nor a directive (@traffic, @wait, @await, @expect)"
                    )));
                }
            };
            items.push(Item { line, text, kind });
        }
        Ok(Runbook { dir, items })
    }

    /// The hosts that get traffic, in the order first named.
    pub fn traffic_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for item in &self.items {
            if let ItemKind::Traffic { hosts: more, .. } = &item.kind {
                for host in more {
                    if !hosts.contains(host) {
                        hosts.push(host.clone());
                    }
                }
            }
        }
        hosts
    }

    /// The hosts on which no request may see the default error page: every traffic host, and
    /// any named by `@expect no-default-error-page`.
    pub fn watched_hosts(&self) -> Vec<String> {
        let mut hosts = self.traffic_hosts();
        for item in &self.items {
            if let ItemKind::ExpectNoDefaultErrorPage { hosts: more } = &item.kind {
                for host in more {
                    if !hosts.contains(host) {
                        hosts.push(host.clone());
                    }
                }
            }
        }
        hosts
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); e.g. 300ms, 2s"))?;
    if duration > LONGEST_WAIT {
        return Err(format!(
            "{text:?} is longer than a runbook may wait ({})",
            humantime::format_duration(LONGEST_WAIT)
        ));
    }
    Ok(duration)
}

fn parse_traffic(words: &[String]) -> Result<ItemKind, String> {
    let mut hosts = Vec::new();
    let mut rate = DEFAULT_RATE;
    for word in words {
        if let Some(value) = word.strip_prefix("rate=") {
            let number = value.strip_suffix("/s").unwrap_or(value);
            rate = number.parse().ok().filter(|r| *r > 0).ok_or_else(|| {
                format!("rate={value}: expected a number of requests per second, e.g. rate=150/s")
            })?;
        } else {
            hosts.push(host_of(word)?);
        }
    }
    if hosts.is_empty() {
        return Err("@traffic needs at least one host".into());
    }
    Ok(ItemKind::Traffic { hosts, rate })
}

fn parse_await(words: &[String]) -> Result<ItemKind, String> {
    let mut timeout = DEFAULT_AWAIT_TIMEOUT;
    let mut rest = Vec::new();
    for word in words {
        match word.strip_prefix("timeout=") {
            Some(value) => timeout = parse_duration(value)?,
            None => rest.push(word.as_str()),
        }
    }
    match rest.as_slice() {
        ["served-by", app, host] => Ok(ItemKind::AwaitServedBy {
            app: app_of(app)?,
            host: host_of(host)?,
            timeout,
        }),
        _ => Err("expected: @await served-by APP HOST [timeout=DURATION]".into()),
    }
}

fn parse_expect(words: &[String]) -> Result<ItemKind, String> {
    match words.first().map(String::as_str) {
        Some("no-default-error-page") => Ok(ItemKind::ExpectNoDefaultErrorPage {
            hosts: words[1..]
                .iter()
                .map(|h| host_of(h))
                .collect::<Result<_, _>>()?,
        }),
        Some("served-by") => match &words[1..] {
            [app, host] => Ok(ItemKind::ExpectServedBy {
                app: app_of(app)?,
                host: host_of(host)?,
            }),
            _ => Err("expected: @expect served-by APP HOST".into()),
        },
        _ => Err(
            "expected: @expect no-default-error-page [HOST ...] or @expect served-by APP HOST"
                .into(),
        ),
    }
}

/// An app name, which no app has when empty (`''`).
fn app_of(word: &str) -> Result<String, String> {
    if word.is_empty() {
        return Err("an app name cannot be empty".into());
    }
    Ok(word.to_owned())
}

/// A host as the router keys it.
fn host_of(word: &str) -> Result<String, String> {
    afemu_router::normalise_host(word, "")
        .map(|h| h.into_owned())
        .ok_or_else(|| format!("{word:?} is not a host"))
}

/// Splits a line as a POSIX shell would (quotes and backslashes), up to a `#` comment.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if current.is_none() => break,
            c if c.is_whitespace() => {
                if let Some(word) = current.take() {
                    words.push(word);
                }
            }
            '\'' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                let word = current.get_or_insert_with(String::new);
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(word) = current {
        words.push(word);
    }
    Ok(words)
}

/// What an `af` command does to the routes, as a model step (`None`: it changes no route, like
/// `af apps`, or it is not one the model knows).
pub fn model_step(
    args: &[String],
    current_instances: impl Fn(&str) -> Option<u32>,
) -> Result<Option<Step>, String> {
    let Some(command) = args.first() else {
        return Ok(None);
    };
    // Positional arguments, without flags and their values.
    const VALUED: &[&str] = &[
        "--path",
        "--url",
        "--instances",
        "--mem",
        "--runtime",
        "--infra",
        "-m",
        "--manifest",
        "--label",
        "--user",
        "--email",
        "--passwd",
        "-u",
        "--instance",
        "--framework",
        "--debug",
    ];
    let mut positional = Vec::new();
    let mut urls = Vec::new();
    let mut instances: Option<u32> = None;
    let mut no_start = false;
    let mut iter = args[1..].iter();
    while let Some(arg) = iter.next() {
        if let Some((flag, value)) = arg.split_once('=').filter(|(f, _)| f.starts_with("--")) {
            match flag {
                "--url" => urls.push(value.to_owned()),
                "--instances" => instances = value.parse().ok(),
                _ => {}
            }
        } else if VALUED.contains(&arg.as_str()) {
            let value = iter.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--url" => urls.push(value.clone()),
                "--instances" => {
                    instances = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--instances {value}: not a number"))?,
                    )
                }
                _ => {}
            }
        } else if arg == "--no-start" {
            no_start = true;
        } else if !arg.starts_with('-') || is_negative_number(arg) {
            positional.push(arg.clone());
        }
    }
    let app = |position: usize| -> Result<String, String> {
        positional.get(position).cloned().ok_or_else(|| {
            format!("af {command} needs an app name here (the model does not read manifests)")
        })
    };
    let step = match command.as_str() {
        "push" => {
            if no_start {
                return Err("af push --no-start is not modelled".into());
            }
            Step::Push {
                app: app(0)?,
                uris: urls,
                instances: within_limit(instances.unwrap_or(1))?,
            }
        }
        "update" => Step::Update { app: app(0)? },
        "start" => Step::Start { app: app(0)? },
        "stop" => Step::Stop { app: app(0)? },
        // These restart a started app.
        "restart" | "env-add" | "env-del" | "mem" | "bind-service" | "unbind-service" => {
            Step::Restart { app: app(0)? }
        }
        "map" => Step::Map {
            app: app(0)?,
            uri: app(1)?,
        },
        "unmap" => Step::Unmap {
            app: app(0)?,
            uri: app(1)?,
        },
        "delete" => Step::Delete { app: app(0)? },
        "instances" | "scale" => {
            let name = app(0)?;
            let Some(count) = positional.get(1) else {
                return Ok(None); // listing instances
            };
            let now = i64::from(current_instances(&name).unwrap_or(1));
            let number = |digits: &str| {
                digits
                    .parse::<u32>()
                    .map(i64::from)
                    .map_err(|_| format!("{count}: not a number of instances"))
            };
            // Both sides fit in a u32, so neither sum overflows an i64.
            let wanted = if let Some(more) = count.strip_prefix('+') {
                now + number(more)?
            } else if let Some(fewer) = count.strip_prefix('-') {
                now - number(fewer)?
            } else {
                number(count)?
            };
            Step::Scale {
                app: name,
                instances: within_limit(
                    u32::try_from(wanted.max(0))
                        .map_err(|_| format!("{count}: more instances than there can be"))?,
                )?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(step))
}

/// The emulator refuses more than `MAX_INSTANCES` instances of an app, so the model does too
/// (and does not build registrations for billions of them).
fn within_limit(instances: u32) -> Result<u32, String> {
    if u64::from(instances) > crate::app_update::MAX_INSTANCES {
        return Err(format!(
            "{instances} instances: the emulator allows at most {}",
            crate::app_update::MAX_INSTANCES
        ));
    }
    Ok(instances)
}

/// `-1` in `af instances app -1` is a count, not a flag.
fn is_negative_number(arg: &str) -> bool {
    arg.len() > 1 && arg[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Runbook, RunbookError> {
        Runbook::parse(text, "test.runbook", PathBuf::from("/rb"))
    }

    #[test]
    fn steps_and_directives() {
        let runbook = parse(
            "# the swap\n\
             af push example --path apps/v1 --url example.com -n\n\
             \n\
             @traffic example.com WWW.example.com:80 rate=150/s\n\
             af map example2 example.com   # load-balanced\n\
             @await served-by example2 example.com timeout=5s\n\
             @wait 300ms\n\
             @expect served-by example2 example.com\n\
             @expect no-default-error-page other.com\n",
        )
        .unwrap();
        let kinds: Vec<_> = runbook
            .items
            .iter()
            .map(|i| (i.line, i.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    2,
                    ItemKind::Af(
                        [
                            "push",
                            "example",
                            "--path",
                            "apps/v1",
                            "--url",
                            "example.com",
                            "-n"
                        ]
                        .map(String::from)
                        .to_vec()
                    )
                ),
                (
                    4,
                    ItemKind::Traffic {
                        hosts: vec!["example.com".into(), "www.example.com".into()],
                        rate: 150
                    }
                ),
                (
                    5,
                    ItemKind::Af(
                        ["map", "example2", "example.com"]
                            .map(String::from)
                            .to_vec()
                    )
                ),
                (
                    6,
                    ItemKind::AwaitServedBy {
                        app: "example2".into(),
                        host: "example.com".into(),
                        timeout: Duration::from_secs(5)
                    }
                ),
                (7, ItemKind::Wait(Duration::from_millis(300))),
                (
                    8,
                    ItemKind::ExpectServedBy {
                        app: "example2".into(),
                        host: "example.com".into()
                    }
                ),
                (
                    9,
                    ItemKind::ExpectNoDefaultErrorPage {
                        hosts: vec!["other.com".into()]
                    }
                ),
            ]
        );
        assert_eq!(
            runbook.watched_hosts(),
            vec!["example.com", "www.example.com", "other.com"]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let table = [
            (
                "af push x\nmake coffee\n",
                2,
                "neither an af command nor a directive",
            ),
            ("@wait soon\n", 1, "not a duration"),
            ("@traffic\n", 1, "at least one host"),
            ("@traffic a.com rate=fast\n", 1, "requests per second"),
            ("\n\n@await served-by x\n", 3, "expected: @await"),
            ("@expect nothing-bad\n", 1, "expected: @expect"),
            ("af push \"unterminated\n", 1, "unterminated"),
            ("af\n", 1, "needs a command"),
            (
                "@expect served-by '' a.com\n",
                1,
                "app name cannot be empty",
            ),
            (
                "@await served-by \"\" a.com\n",
                1,
                "app name cannot be empty",
            ),
        ];
        for (text, line, message) in table {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("test.runbook:{line}: "))
            );
        }
    }

    #[test]
    fn quoting_as_a_shell() {
        assert_eq!(
            split_words(r#"af env-add app "GREETING=hello world" 'a b' c\ d # note"#).unwrap(),
            ["af", "env-add", "app", "GREETING=hello world", "a b", "c d"]
        );
    }

    #[test]
    fn af_commands_as_model_steps() {
        let step = |line: &str| {
            let words = split_words(line).unwrap();
            model_step(&words[1..], |_| Some(2)).unwrap()
        };
        assert_eq!(
            step("af push ex --path p --url a.com --url=b.com --instances 2 -n"),
            Some(Step::Push {
                app: "ex".into(),
                uris: vec!["a.com".into(), "b.com".into()],
                instances: 2
            })
        );
        assert_eq!(
            step("af map ex a.com"),
            Some(Step::Map {
                app: "ex".into(),
                uri: "a.com".into()
            })
        );
        assert_eq!(
            step("af update ex --path p"),
            Some(Step::Update { app: "ex".into() })
        );
        assert_eq!(
            step("af env-add ex A=b"),
            Some(Step::Restart { app: "ex".into() })
        );
        assert_eq!(
            step("af instances ex +1"),
            Some(Step::Scale {
                app: "ex".into(),
                instances: 3
            })
        );
        assert_eq!(
            step("af scale ex -1"),
            Some(Step::Scale {
                app: "ex".into(),
                instances: 1
            })
        );
        assert_eq!(step("af instances ex"), None);
        assert_eq!(step("af apps"), None);
    }

    /// A rehearsal adds an `@await` timeout to the time now, which used to panic for a timeout
    /// of 300 billion years (an `Instant` overflow); more than a day is refused.
    #[test]
    fn waits_longer_than_a_day_are_refused() {
        for text in [
            "@await served-by x a.com timeout=292300000000y\n",
            "@wait 25h\n",
        ] {
            let error = parse(text).unwrap_err();
            assert!(
                error.message.contains("longer than a runbook may wait"),
                "{error}"
            );
        }
        assert_eq!(
            parse("@wait 1day\n").unwrap().items[0].kind,
            ItemKind::Wait(LONGEST_WAIT)
        );
    }

    /// `af instances APP +N` used to add N to the count as an i64, overflowing for a large N, and
    /// to truncate a count beyond a u32 silently.
    #[test]
    fn instance_counts_beyond_a_u32_are_refused() {
        let step = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            model_step(&args, |_| Some(u32::MAX))
        };
        for count in ["+9223372036854775807", "4294967296"] {
            assert!(step(&["instances", "ex", count]).is_err(), "{count}");
        }
        assert!(step(&["instances", "ex", "+1"]).is_err());
        assert_eq!(
            step(&["scale", "ex", "-4294967295"]),
            Ok(Some(Step::Scale {
                app: "ex".into(),
                instances: 0
            }))
        );
        // Within a u32 but beyond what the emulator allows: refused before the model builds
        // registrations for each of them.
        let few = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            model_step(&args, |_| Some(2))
        };
        assert!(few(&["instances", "ex", "4000000000"]).is_err());
        assert!(few(&["push", "ex", "--instances", "101", "-n"]).is_err());
        assert_eq!(
            few(&["instances", "ex", "+98"]),
            Ok(Some(Step::Scale {
                app: "ex".into(),
                instances: 100
            }))
        );
    }
}
