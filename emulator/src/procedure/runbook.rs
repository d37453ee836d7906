//! Runbooks: the procedure a person would follow — the `af` commands they would type, verbatim —
//! plus a few directives that say which hosts get traffic, where to wait, and what must hold.
//! `afemu check` and `afemu rehearse` read a runbook through this one parser, so that they refuse
//! the same lines with the same words (docs/RUNBOOKS.md is the reference).
//!
//! ```text
//! # comment
//! af push example --path apps/blue --url example.com -n   # any af command line: a step
//! @traffic HOST [HOST ...] [rate=N/s]   # traffic from here on, once the router has every route
//!                                       # change so far (default 100/s a host)
//! @writes HOST PATH [rate=N/s]          # writes from here on: POST PATH, its {key} a new key
//!                                       # each time (default 20/s); watched as traffic is
//! @wait DURATION                        # let time pass, e.g. 300ms, 2s
//! @await served-by APP HOST [timeout=D]       # until a request to HOST is served by APP
//! @await new-version APP HOST [timeout=D]     # ... by APP's newest version (its last push,
//!                                             # update or restart)
//! @await not-served-by APP HOST [timeout=D]   # until the router no longer sends HOST to APP
//! @expect no-default-error-page [HOST ...]    # implied for every traffic host over the run
//! @expect served-by APP HOST            # at the end, HOST is served only by APP
//! @expect writes-kept HOST PATH         # at the end, GET PATH lists every write HOST acknowledged
//! ```
//!
//! Paths in a runbook are relative to its own folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afemu_cli::{CommandLine, parse_command};

use crate::procedure::model::Step;

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
    /// An `af` command line, split as a shell would (without `af`); af's parser accepts it.
    Af(Vec<String>),
    /// `$ COMMAND`: a shell command (a deploy script, a make target), run by `/bin/sh -c` in
    /// the runbook's folder with `af` on its `PATH` targeted at the emulator; each `af` it runs
    /// is a step of its own. Which those are is known only when it runs.
    Exec(String),
    /// `@traffic` (GET `/`), or `@writes` (POST to `write`, a path with `{key}` in it).
    Traffic {
        hosts: Vec<String>,
        rate: u32,
        write: Option<String>,
    },
    Wait(Duration),
    Await {
        until: Await,
        timeout: Duration,
    },
    ExpectNoDefaultErrorPage {
        hosts: Vec<String>,
    },
    ExpectServedBy {
        app: String,
        host: String,
    },
    /// At the end, a GET of `path` on `host` lists every write to `host` the app acknowledged.
    ExpectWritesKept {
        host: String,
        path: String,
    },
}

/// What an `@await` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Await {
    /// A request to `host` is served by `app` (any of its instances).
    ServedBy { app: String, host: String },
    /// A request to `host` is served by an instance of `app` that runs the app's newest version:
    /// the one its last push, update or restart started (v1's `<droplet>-<run_count>`).
    NewVersion { app: String, host: String },
    /// The router sends no request for `host` to `app` any more.
    NotServedBy { app: String, host: String },
}

impl Await {
    pub fn app(&self) -> &str {
        match self {
            Await::ServedBy { app, .. }
            | Await::NewVersion { app, .. }
            | Await::NotServedBy { app, .. } => app,
        }
    }

    pub fn host(&self) -> &str {
        match self {
            Await::ServedBy { host, .. }
            | Await::NewVersion { host, .. }
            | Await::NotServedBy { host, .. } => host,
        }
    }
}

impl std::fmt::Display for Await {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Await::ServedBy { app, host } => write!(f, "{host} served by {app}"),
            Await::NewVersion { app, host } => {
                write!(f, "{host} served by {app}'s newest version")
            }
            Await::NotServedBy { app, host } => write!(f, "{host} no longer sent to {app}"),
        }
    }
}

/// A line that is not a step or a directive, with its number (0: the runbook as a whole).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RunbookError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for RunbookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
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
    /// A runbook with neither traffic nor an expectation is refused: it could only pass by
    /// observing nothing.
    pub fn parse(text: &str, file: &str, dir: PathBuf) -> Result<Runbook, RunbookError> {
        let mut items = Vec::new();
        for (number, raw) in text.lines().enumerate() {
            let line = number + 1;
            let error = |message: String| RunbookError {
                file: file.to_owned(),
                line,
                message,
            };
            // A command is the shell's to read, quotes, `#` and all.
            let trimmed = raw.trim();
            if let Some(command) = trimmed.strip_prefix('$')
                && (command.is_empty() || command.starts_with(char::is_whitespace))
            {
                let command = command.trim();
                if command.is_empty() {
                    return Err(error("`$` needs a command, e.g. $ ./deploy.sh".into()));
                }
                if command.contains('\0') {
                    return Err(error("a command cannot hold a NUL byte".into()));
                }
                items.push(Item {
                    line,
                    text: trimmed.to_owned(),
                    kind: ItemKind::Exec(command.to_owned()),
                });
                continue;
            }
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
                    let args = words[1..].to_vec();
                    check_af_line(&args).map_err(error)?;
                    ItemKind::Af(args)
                }
                "@traffic" => parse_traffic(&words[1..]).map_err(error)?,
                "@writes" => parse_writes(&words[1..]).map_err(error)?,
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
                        "{other:?} is neither an af command, a `$ command` nor a directive (@traffic, @writes, @wait, @await, @expect)"
                    )));
                }
            };
            items.push(Item { line, text, kind });
        }
        // An await that watches requests needs requests to watch.
        let mut with_traffic: Vec<&str> = Vec::new();
        for item in &items {
            match &item.kind {
                ItemKind::Traffic { hosts, .. } => {
                    with_traffic.extend(hosts.iter().map(String::as_str));
                }
                ItemKind::Await {
                    until: until @ (Await::ServedBy { .. } | Await::NewVersion { .. }),
                    ..
                } if !with_traffic.contains(&until.host()) => {
                    return Err(RunbookError {
                        file: file.to_owned(),
                        line: item.line,
                        message: format!(
                            "{} gets no traffic before this line, so no request could show what \
                             this @await waits for: name it in an earlier @traffic",
                            until.host()
                        ),
                    });
                }
                _ => {}
            }
        }
        // Writes kept: only writes the app acknowledged can be looked for.
        for item in &items {
            if let ItemKind::ExpectWritesKept { host, .. } = &item.kind {
                let written = items.iter().any(|i| {
                    matches!(&i.kind, ItemKind::Traffic { hosts, write: Some(_), .. } if hosts.contains(host))
                });
                if !written {
                    return Err(RunbookError {
                        file: file.to_owned(),
                        line: item.line,
                        message: format!(
                            "no @writes sends writes to {host}, so no write could be acknowledged \
                             and kept"
                        ),
                    });
                }
            }
        }
        let observes = items.iter().any(|item| {
            matches!(
                item.kind,
                ItemKind::Traffic { .. }
                    | ItemKind::ExpectNoDefaultErrorPage { .. }
                    | ItemKind::ExpectServedBy { .. }
                    | ItemKind::ExpectWritesKept { .. }
            )
        });
        if !observes {
            return Err(RunbookError {
                file: file.to_owned(),
                line: 0,
                message: "nothing to observe: the runbook has no @traffic and no @expect, so it \
                          could only pass by seeing nothing"
                    .into(),
            });
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
    Ok(ItemKind::Traffic {
        hosts,
        rate,
        write: None,
    })
}

/// The default rate of `@writes`: each write is a request the app answers only once it is
/// stored, slower than a page.
pub const DEFAULT_WRITE_RATE: u32 = 20;

fn parse_writes(words: &[String]) -> Result<ItemKind, String> {
    const USAGE: &str = "expected: @writes HOST PATH [rate=N/s], PATH with {key} where each \
                         write's key goes, e.g. @writes www.example.com /write?key={key}";
    let mut rate = DEFAULT_WRITE_RATE;
    let mut rest = Vec::new();
    for word in words {
        match word.strip_prefix("rate=") {
            Some(value) => {
                let number = value.strip_suffix("/s").unwrap_or(value);
                rate = number.parse().ok().filter(|r| *r > 0).ok_or_else(|| {
                    format!("rate={value}: expected a number of writes per second, e.g. rate=20/s")
                })?;
            }
            None => rest.push(word.as_str()),
        }
    }
    let [host, path] = rest.as_slice() else {
        return Err(USAGE.into());
    };
    let path = path_of(path)?;
    if !path.contains("{key}") {
        return Err(format!("{path:?} has no {{key}}: {USAGE}"));
    }
    Ok(ItemKind::Traffic {
        hosts: vec![host_of(host)?],
        rate,
        write: Some(path),
    })
}

/// A request path (and query) as a runbook may name it.
fn path_of(word: &str) -> Result<String, String> {
    let valid = word.starts_with('/')
        && word.len() <= 1024
        && word.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
        && format!("http://host{}", word.replace("{key}", "k"))
            .parse::<http::Uri>()
            .is_ok();
    if valid {
        Ok(word.to_owned())
    } else {
        Err(format!(
            "{word:?} is not a request path: it starts with '/', has no spaces, no '#', is a \
             valid URI path and query, and is at most 1024 bytes"
        ))
    }
}

const AWAIT_USAGE: &str =
    "expected: @await served-by|new-version|not-served-by APP HOST [timeout=DURATION]";

fn parse_await(words: &[String]) -> Result<ItemKind, String> {
    let mut timeout = DEFAULT_AWAIT_TIMEOUT;
    let mut rest = Vec::new();
    for word in words {
        match word.strip_prefix("timeout=") {
            Some(value) => timeout = parse_duration(value)?,
            None => rest.push(word.as_str()),
        }
    }
    let [what, app, host] = rest.as_slice() else {
        return Err(AWAIT_USAGE.into());
    };
    let (app, host) = (app_of(app)?, host_of(host)?);
    let until = match *what {
        "served-by" => Await::ServedBy { app, host },
        "new-version" => Await::NewVersion { app, host },
        "not-served-by" => Await::NotServedBy { app, host },
        _ => return Err(AWAIT_USAGE.into()),
    };
    Ok(ItemKind::Await { until, timeout })
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
        Some("writes-kept") => match &words[1..] {
            [host, path] => Ok(ItemKind::ExpectWritesKept {
                host: host_of(host)?,
                path: path_of(path)?,
            }),
            _ => Err("expected: @expect writes-kept HOST PATH".into()),
        },
        _ => Err(
            "expected: @expect no-default-error-page [HOST ...], @expect served-by APP HOST or \
             @expect writes-kept HOST PATH"
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

/// An `af` line as a runbook may hold it: one af itself accepts, and whose effect on the routes
/// the reference model knows, so that `check` can prove what `rehearse` runs.
pub(crate) fn check_af_line(args: &[String]) -> Result<(), String> {
    let command = parse_command(args).map_err(|e| format!("af refuses this line: {e}"))?;
    // The step with any current instance count: only the shape of the line matters here.
    model_step(&command, |_| Some(1)).map(|_| ())
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
/// `af apps`). `current_instances` gives an app's instance count now, for `af instances APP +1`.
/// The error says why the line cannot be modelled (af would run it, but `check` could not say
/// what it does to the routes, so a runbook may not hold it).
pub fn model_step(
    command: &CommandLine,
    current_instances: impl Fn(&str) -> Option<u32>,
) -> Result<Option<Step>, String> {
    let action = command.action;
    let app = |what: &str| -> Result<String, String> {
        match command.args.first() {
            Some(app) if !app.is_empty() => Ok(app.clone()),
            _ => Err(format!(
                "af {what} in a runbook names its app (the app names of a manifest.yml are not read)"
            )),
        }
    };
    let step = match action {
        "push" => {
            let app = app("push")?;
            let Some(url) = command.options.url.clone() else {
                return Err(
                    "af push in a runbook names its URL with --url (the default af would choose \
                     depends on the app's framework)"
                        .into(),
                );
            };
            let instances = match command.options.instances {
                None => 1,
                Some(n) => u32::try_from(n)
                    .map_err(|_| format!("--instances {n}: not a number of instances"))?,
            };
            Step::Push {
                app,
                uris: vec![url],
                instances: within_limit(instances)?,
                start: !command.options.no_start,
            }
        }
        "update" => Step::Update {
            app: app("update")?,
        },
        "start" => Step::Start { app: app("start")? },
        "stop" => Step::Stop { app: app("stop")? },
        "restart" => Step::Restart {
            app: app("restart")?,
        },
        // `af mem APP` alone shows the memory.
        "mem" if command.args.len() < 2 => return Ok(None),
        // These change the app, then af restarts it if it is started.
        "mem" | "environment_add" | "environment_del" => Step::Reconfigure {
            app: app("mem, env-add and env-del")?,
        },
        "bind_service" | "unbind_service" => Step::Reconfigure {
            app: command
                .args
                .get(1)
                .cloned()
                .ok_or("bind-service needs an app")?,
        },
        "map" | "unmap" => {
            let (app, uri) = (command.args[0].clone(), command.args[1].clone());
            if action == "map" {
                Step::Map { app, uri }
            } else {
                Step::Unmap { app, uri }
            }
        }
        "delete" => {
            if command.options.all {
                return Err("af delete --all is not for a runbook: name the app to delete".into());
            }
            Step::Delete {
                app: app("delete")?,
            }
        }
        "instances" => {
            let name = app("instances")?;
            let Some(count) = command.args.get(1) else {
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
        "rename" | "clone" => {
            return Err(format!(
                "af {action} moves an app's routes in a way afemu check does not model; \
                 a runbook may not use it"
            ));
        }
        // af binds the source's services to the destination, then restarts it if started.
        "clone_services" => Step::Reconfigure {
            app: command
                .args
                .get(1)
                .cloned()
                .ok_or("clone-services needs a destination app")?,
        },
        // A rehearsal targets its emulator and logs in itself: a runbook's af must not leave it
        // (a line `af target https://api.appfog.com` would deploy to the real platform).
        "target" | "set_target" | "login" | "logout" => {
            let shown = if action == "set_target" {
                "target"
            } else {
                action
            };
            return Err(format!(
                "af {shown} in a runbook would take af away from the emulator it is rehearsed \
                 on; the rehearsal targets it and logs in by itself"
            ));
        }
        "delete_user" => {
            return Err(
                "af delete-user deletes that user's apps, which afemu check does not follow; \
                 a runbook may not use it"
                    .into(),
            );
        }
        "alias" | "unalias" => {
            return Err(format!(
                "af {action} changes what later commands mean, which afemu check does not \
                 follow: write the command itself"
            ));
        }
        "tunnel" | "console" => {
            return Err(format!(
                "af {action} runs until it is interrupted: not a step of a runbook"
            ));
        }
        "create_service" if command.options.bind.is_some() || command.args.len() == 3 => {
            return Err(
                "af create-service with an app binds and restarts it: use af create-service, \
                 then af bind-service"
                    .into(),
            );
        }
        _ => return Ok(None),
    };
    Ok(Some(step))
}

/// The emulator refuses more than `MAX_INSTANCES` instances of an app, so the model does too
/// (and does not build registrations for billions of them).
fn within_limit(instances: u32) -> Result<u32, String> {
    if u64::from(instances) > crate::control::MAX_INSTANCES {
        return Err(format!(
            "{instances} instances: the emulator allows at most {}",
            crate::control::MAX_INSTANCES
        ));
    }
    Ok(instances)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Runbook, RunbookError> {
        Runbook::parse(text, "test.runbook", PathBuf::from("/rb"))
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
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
             @expect no-default-error-page other.com\n\
             @await new-version example2 example.com\n\
             @await not-served-by example example.com timeout=1s\n",
        )
        .unwrap();
        let kinds: Vec<_> = runbook
            .items
            .iter()
            .map(|i| (i.line, i.kind.clone()))
            .collect();
        let (app, host) = ("example2".to_owned(), "example.com".to_owned());
        assert_eq!(
            kinds,
            vec![
                (
                    2,
                    ItemKind::Af(words(&[
                        "push",
                        "example",
                        "--path",
                        "apps/v1",
                        "--url",
                        "example.com",
                        "-n"
                    ]))
                ),
                (
                    4,
                    ItemKind::Traffic {
                        hosts: vec!["example.com".into(), "www.example.com".into()],
                        rate: 150,
                        write: None,
                    }
                ),
                (5, ItemKind::Af(words(&["map", "example2", "example.com"]))),
                (
                    6,
                    ItemKind::Await {
                        until: Await::ServedBy {
                            app: app.clone(),
                            host: host.clone()
                        },
                        timeout: Duration::from_secs(5)
                    }
                ),
                (7, ItemKind::Wait(Duration::from_millis(300))),
                (
                    8,
                    ItemKind::ExpectServedBy {
                        app: app.clone(),
                        host: host.clone()
                    }
                ),
                (
                    9,
                    ItemKind::ExpectNoDefaultErrorPage {
                        hosts: vec!["other.com".into()]
                    }
                ),
                (
                    10,
                    ItemKind::Await {
                        until: Await::NewVersion {
                            app,
                            host: host.clone()
                        },
                        timeout: DEFAULT_AWAIT_TIMEOUT
                    }
                ),
                (
                    11,
                    ItemKind::Await {
                        until: Await::NotServedBy {
                            app: "example".into(),
                            host
                        },
                        timeout: Duration::from_secs(1)
                    }
                ),
            ]
        );
        assert_eq!(
            runbook.watched_hosts(),
            vec!["example.com", "www.example.com", "other.com"]
        );
    }

    /// Commands that change routes in ways the model does not follow are refused, never taken
    /// as changing nothing; clone-services restarts its destination as af does.
    #[test]
    fn what_the_model_cannot_follow_is_refused() {
        for (line, message) in [
            ("af alias env=restart", "changes what later commands mean"),
            ("af unalias env", "changes what later commands mean"),
            ("af delete-user a@b.c", "deletes that user's apps"),
            ("af tunnel db none", "runs until it is interrupted"),
            (
                "af target https://api.appfog.com",
                "take af away from the emulator",
            ),
            (
                "af login ops@example.com --passwd x",
                "take af away from the emulator",
            ),
        ] {
            let error = parse(&format!("@traffic a.com\n{line}\n")).unwrap_err();
            assert!(error.message.contains(message), "{line}: {error}");
        }
        let runbook = parse("@traffic a.com\naf clone-services blue green\n").unwrap();
        let ItemKind::Af(args) = &runbook.items[1].kind else {
            panic!("{:?}", runbook.items[1]);
        };
        let command = parse_command(args).unwrap();
        assert_eq!(
            model_step(&command, |_| Some(1)),
            Ok(Some(Step::Reconfigure {
                app: "green".into()
            }))
        );
    }

    #[test]
    fn a_command_line_is_the_shells_to_read() {
        let runbook = Runbook::parse(
            "@traffic a.com\n  $ ./deploy.sh 'two words' # and a comment\n$\tmake swap\n",
            "t",
            PathBuf::new(),
        )
        .unwrap();
        let kinds: Vec<&ItemKind> = runbook.items.iter().map(|i| &i.kind).collect();
        assert_eq!(
            kinds[1..],
            [
                &ItemKind::Exec("./deploy.sh 'two words' # and a comment".into()),
                &ItemKind::Exec("make swap".into()),
            ]
        );
        assert_eq!(
            runbook.items[1].text,
            "$ ./deploy.sh 'two words' # and a comment"
        );
        for (text, message) in [
            ("@traffic a.com\n$\n", "`$` needs a command"),
            ("@traffic a.com\n$   \n", "`$` needs a command"),
            ("@traffic a.com\n$deploy\n", "neither an af command"),
            ("$ ./deploy.sh\n", "nothing to observe"),
        ] {
            let error = Runbook::parse(text, "t", PathBuf::new()).unwrap_err();
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let table = [
            (
                "af push x --url x.com\nmake coffee\n",
                2,
                "neither an af command, a `$ command` nor a directive",
            ),
            ("@wait soon\n", 1, "not a duration"),
            ("@traffic\n", 1, "at least one host"),
            ("@traffic a.com rate=fast\n", 1, "requests per second"),
            ("\n\n@await served-by x\n", 3, "expected: @await"),
            (
                "@await new-version x b.com\n",
                1,
                "b.com gets no traffic before this line",
            ),
            ("@await arrived x a.com\n", 1, "expected: @await"),
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
            // What af itself refuses, in af's words.
            (
                "af pussh shop --url a.com\n",
                1,
                "af refuses this line: Unknown command [pussh]",
            ),
            (
                "af map shop\n",
                1,
                "Not enough arguments for [map] (usage: af map <appname> <url>)",
            ),
            ("af map a b --frob\n", 1, "invalid option: --frob"),
            // What the model cannot follow.
            ("af push shop -n\n", 1, "names its URL with --url"),
            ("af push --url a.com\n", 1, "names its app"),
            ("af rename a b\n", 1, "does not model"),
            ("af delete --all\n", 1, "name the app"),
            ("@writes a.com /write\n", 1, "has no {key}"),
            ("@writes a.com\n", 1, "expected: @writes HOST PATH"),
            ("@writes a.com write?k={key}\n", 1, "is not a request path"),
            ("@writes a.com /w?k={key} rate=0\n", 1, "writes per second"),
            (
                "@expect writes-kept a.com\n",
                1,
                "expected: @expect writes-kept",
            ),
            (
                "@expect writes-kept a.com /keys\n",
                1,
                "no @writes sends writes to a.com",
            ),
        ];
        for (text, line, message) in table {
            let error = parse(&format!("{text}@traffic a.com\n")).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("test.runbook:{line}: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn writes_and_the_expectation_that_they_are_kept() {
        let runbook = parse(
            "@writes www.a.com /write?key={key}&v=1 rate=30/s\n\
             @expect writes-kept www.a.com /keys\n",
        )
        .unwrap();
        assert_eq!(
            runbook.items[0].kind,
            ItemKind::Traffic {
                hosts: vec!["www.a.com".into()],
                rate: 30,
                write: Some("/write?key={key}&v=1".into()),
            }
        );
        assert_eq!(
            runbook.items[1].kind,
            ItemKind::ExpectWritesKept {
                host: "www.a.com".into(),
                path: "/keys".into(),
            }
        );
        // A written host is watched as a traffic host is.
        assert_eq!(runbook.watched_hosts(), ["www.a.com"]);
    }

    #[test]
    fn a_runbook_that_observes_nothing_is_refused() {
        for text in ["", "# nothing\n", "af push x --url x.com -n\n@wait 1s\n"] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, 0);
            assert!(error.message.contains("nothing to observe"), "{error}");
            assert!(
                error.to_string().starts_with("test.runbook: nothing"),
                "{error}"
            );
        }
        assert!(parse("@expect served-by a a.com\n").is_ok());
    }

    #[test]
    fn quoting_as_a_shell() {
        assert_eq!(
            split_words(r#"af env-add app "GREETING=hello world" 'a b' c\ d # note"#).unwrap(),
            ["af", "env-add", "app", "GREETING=hello world", "a b", "c d"]
        );
    }

    fn step_of(line: &str, instances: u32) -> Result<Option<Step>, String> {
        let words = split_words(line).unwrap();
        let command = parse_command(&words[1..]).unwrap();
        model_step(&command, |_| Some(instances))
    }

    #[test]
    fn af_commands_as_model_steps() {
        let step = |line: &str| step_of(line, 2).unwrap();
        // af keeps the last --url, as Ruby's OptionParser does.
        assert_eq!(
            step("af push ex --path p --url a.com --url=b.com --instances 2 -n"),
            Some(Step::Push {
                app: "ex".into(),
                uris: vec!["b.com".into()],
                instances: 2,
                start: true,
            })
        );
        assert_eq!(
            step("af push ex --url a.com --no-start"),
            Some(Step::Push {
                app: "ex".into(),
                uris: vec!["a.com".into()],
                instances: 1,
                start: false,
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
        for line in [
            "af env-add ex A=b",
            "af env-del ex A",
            "af mem ex 256M",
            "af bind-service db ex",
        ] {
            assert_eq!(
                step(line),
                Some(Step::Reconfigure { app: "ex".into() }),
                "{line}"
            );
        }
        assert_eq!(step("af mem ex"), None);
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
        assert_eq!(step("af stats ex"), None);
    }

    /// A rehearsal adds an `@await` timeout to the time now, which used to panic for a timeout
    /// of 300 billion years (an `Instant` overflow); more than a day is refused.
    #[test]
    fn waits_longer_than_a_day_are_refused() {
        for text in [
            "@await served-by x a.com timeout=292300000000y\n",
            "@wait 25h\n",
        ] {
            let error = parse(&format!("{text}@traffic a.com\n")).unwrap_err();
            assert!(
                error.message.contains("longer than a runbook may wait"),
                "{error}"
            );
        }
        assert_eq!(
            parse("@wait 1day\n@traffic a.com\n").unwrap().items[0].kind,
            ItemKind::Wait(LONGEST_WAIT)
        );
    }

    /// `af instances APP +N` used to add N to the count as an i64, overflowing for a large N, and
    /// to truncate a count beyond a u32 silently.
    #[test]
    fn instance_counts_beyond_a_u32_are_refused() {
        for count in ["+9223372036854775807", "4294967296"] {
            assert!(
                step_of(&format!("af instances ex {count}"), u32::MAX).is_err(),
                "{count}"
            );
        }
        assert!(step_of("af instances ex +1", u32::MAX).is_err());
        assert_eq!(
            step_of("af scale ex -4294967295", u32::MAX),
            Ok(Some(Step::Scale {
                app: "ex".into(),
                instances: 0
            }))
        );
        // Within a u32 but beyond what the emulator allows: refused before the model builds
        // registrations for each of them.
        assert!(step_of("af instances ex 4000000000", 2).is_err());
        assert!(step_of("af push ex --url a.com --instances 101 -n", 2).is_err());
        assert_eq!(
            step_of("af instances ex +98", 2),
            Ok(Some(Step::Scale {
                app: "ex".into(),
                instances: 100
            }))
        );
    }
}
