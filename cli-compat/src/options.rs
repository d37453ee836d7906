//! af's command line, parsed the way af's Ruby `OptionParser` setup parses it: one global set of
//! options that any command accepts, anywhere on the line; long options may be abbreviated to
//! any unambiguous prefix (`--no-st`, even `--n-s`), case-insensitively, with `_` for `-`; a
//! single letter that is not a short option completes a long one (`-l` is `--label`); an
//! optional argument (`-t [KEY]`) takes the next word unless it starts with `-`; and `-N`
//! numbers are pulled out first so that `af instances app -1` is a delta, not an option.

/// What a switch takes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    Nothing,
    Required,
    Optional,
}

/// Which option a switch sets (several switches may set the same one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Email,
    Password,
    TokenFile,
    Name,
    Bind,
    Instance,
    Instances,
    Url,
    Mem,
    Path,
    Label,
    NoStart,
    Force,
    All,
    Full,
    Trace,
    Crash,
    Debug,
    Manifest,
    Quiet,
    Vmx,
    Vmrun,
    Save,
    NoZip,
    NoResources,
    NoColor,
    Verbose,
    NoPrompt,
    PrefixLogs,
    Json,
    Version,
    Help,
    Port,
    Runtime,
    Exec,
    NoFramework,
    Canary,
    Proxy,
    Infra,
    Options,
}

/// One `opts.on(...)` line of af's runner: its long and short names.
struct Switch {
    long: &'static [&'static str],
    short: Option<char>,
    takes: Takes,
    key: Key,
}

const fn sw(long: &'static [&'static str], short: Option<char>, takes: Takes, key: Key) -> Switch {
    Switch {
        long,
        short,
        takes,
        key,
    }
}

use Takes::{Nothing, Optional, Required};

/// af 0.3.22's switches, in the order it defines them.
const SWITCHES: &[Switch] = &[
    sw(&["email"], None, Required, Key::Email),
    sw(&["user"], None, Required, Key::Email),
    sw(&["passwd"], None, Required, Key::Password),
    sw(&["pass"], None, Required, Key::Password),
    sw(&["password"], None, Required, Key::Password),
    sw(&["token-file"], None, Required, Key::TokenFile),
    sw(&["app"], None, Required, Key::Name),
    sw(&["name"], None, Required, Key::Name),
    sw(&["bind"], None, Required, Key::Bind),
    sw(&["instance"], None, Required, Key::Instance),
    sw(&["instances"], None, Required, Key::Instances),
    sw(&["url"], None, Required, Key::Url),
    sw(&["mem"], None, Required, Key::Mem),
    sw(&["path"], None, Required, Key::Path),
    sw(&["label"], None, Required, Key::Label),
    sw(&["no-start"], None, Nothing, Key::NoStart),
    sw(&["nostart"], None, Nothing, Key::NoStart),
    sw(&["force"], None, Nothing, Key::Force),
    sw(&["all"], None, Nothing, Key::All),
    sw(&["full"], None, Nothing, Key::Full),
    sw(&[], Some('t'), Optional, Key::Trace),
    sw(&["trace"], None, Optional, Key::Trace),
    sw(&["crash"], None, Nothing, Key::Crash),
    sw(&[], Some('d'), Optional, Key::Debug),
    sw(&["debug"], None, Optional, Key::Debug),
    sw(&[], Some('m'), Required, Key::Manifest),
    sw(&["manifest"], None, Required, Key::Manifest),
    sw(&["quiet"], Some('q'), Nothing, Key::Quiet),
    sw(&["vmx"], None, Required, Key::Vmx),
    sw(&["vmrun"], None, Required, Key::Vmrun),
    sw(&["save"], None, Nothing, Key::Save),
    sw(&["no-zip"], None, Nothing, Key::NoZip),
    sw(&["nozip"], None, Nothing, Key::NoZip),
    sw(&["no-resources"], None, Nothing, Key::NoResources),
    sw(&["noresources"], None, Nothing, Key::NoResources),
    sw(&["no-color"], None, Nothing, Key::NoColor),
    sw(&["verbose"], None, Nothing, Key::Verbose),
    sw(&["no-prompt"], Some('n'), Nothing, Key::NoPrompt),
    sw(&["noprompt"], None, Nothing, Key::NoPrompt),
    sw(&["non-interactive"], None, Nothing, Key::NoPrompt),
    sw(&["prefix"], None, Nothing, Key::PrefixLogs),
    sw(&["prefix-logs"], None, Nothing, Key::PrefixLogs),
    sw(&["prefixlogs"], None, Nothing, Key::PrefixLogs),
    sw(&["json"], None, Nothing, Key::Json),
    sw(&["version"], Some('v'), Nothing, Key::Version),
    sw(&["help"], Some('h'), Nothing, Key::Help),
    sw(&["port"], None, Required, Key::Port),
    sw(&["runtime"], None, Required, Key::Runtime),
    sw(&["exec"], None, Required, Key::Exec),
    sw(&["noframework"], None, Nothing, Key::NoFramework),
    sw(&["canary"], None, Nothing, Key::Canary),
    sw(&[], Some('u'), Required, Key::Proxy),
    sw(&["infra"], None, Required, Key::Infra),
    sw(&["options"], None, Nothing, Key::Options),
];

/// Every option af knows, as the commands read them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub email: Option<String>,
    pub password: Option<String>,
    pub token_file: Option<String>,
    pub name: Option<String>,
    pub bind: Option<String>,
    pub instance: Option<String>,
    /// `--instances N`, converted with Ruby's `Integer()`.
    pub instances: Option<i64>,
    pub url: Option<String>,
    pub mem: Option<String>,
    pub path: Option<String>,
    pub label: Option<String>,
    pub no_start: bool,
    pub force: bool,
    pub all: bool,
    pub full: bool,
    /// `-t` / `--trace [KEY]`: `Some("22")` when given without a key.
    pub trace: Option<String>,
    pub crash: bool,
    /// `-d` / `--debug [MODE]`: `run` when given without a mode.
    pub debug: Option<String>,
    pub manifest: Option<String>,
    pub quiet: bool,
    pub vmx: Option<String>,
    pub vmrun: Option<String>,
    pub save: bool,
    pub no_zip: bool,
    pub no_resources: bool,
    pub no_color: bool,
    pub verbose: bool,
    pub no_prompt: bool,
    pub prefix_logs: bool,
    pub json: bool,
    pub port: Option<String>,
    pub runtime: Option<String>,
    pub exec: Option<String>,
    pub no_framework: bool,
    pub canary: bool,
    /// `-u EMAIL`: sent as `PROXY-USER` (admin impersonation), not the login email.
    pub proxy: Option<String>,
    pub infra: Option<String>,
}

/// What the command line asked for besides options.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// Options and the remaining words (the command and its arguments).
    Run {
        options: Box<Options>,
        args: Vec<String>,
        /// `-v`/`--version` was given: the command is `version` whatever the words say.
        version: bool,
    },
    /// `-h`/`--help`: print the full usage and stop.
    Help,
    /// `--options`: print the option summary and stop.
    OptionSummary,
}

/// An `OptionParser` error. af prints nothing of its message (its output is not set up yet);
/// an invalid or ambiguous option gets the short usage, anything else just exit status 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    Invalid(String),
    Ambiguous(String),
    MissingArgument(String),
    NeedlessArgument(String),
    /// `--instances` that Ruby's `Integer()` refuses.
    BadInteger(String),
}

impl OptionError {
    /// af answers an invalid or ambiguous option with the short usage; anything else silently.
    pub fn shows_usage(&self) -> bool {
        matches!(self, OptionError::Invalid(_) | OptionError::Ambiguous(_))
    }
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::Invalid(o) => write!(f, "invalid option: {o}"),
            OptionError::Ambiguous(o) => write!(f, "ambiguous option: {o}"),
            OptionError::MissingArgument(o) => write!(f, "missing argument: {o}"),
            OptionError::NeedlessArgument(o) => write!(f, "needless argument: {o}"),
            OptionError::BadInteger(v) => write!(f, "invalid value for Integer(): {v:?}"),
        }
    }
}

/// The summary `af --options` prints (OptionParser's own layout).
pub const OPTION_SUMMARY: &str = "\nAvailable options:\n\n        --email EMAIL\n        --user EMAIL\n        --passwd PASS\n        --pass PASS\n        --password PASS\n        --token-file TOKEN_FILE\n        --app NAME\n        --name NAME\n        --bind BIND\n        --instance INST\n        --instances INST\n        --url URL\n        --mem MEM\n        --path PATH\n        --label LABEL\n        --no-start\n        --nostart\n        --force\n        --all\n        --full\n    -t [TKEY]\n        --trace [TKEY]\n        --crash\n    -d [MODE]\n        --debug [MODE]\n    -m FILE\n        --manifest FILE\n    -q, --quiet\n        --vmx FILE\n        --vmrun FILE\n        --save\n        --no-zip\n        --nozip\n        --no-resources\n        --noresources\n        --no-color\n        --verbose\n    -n, --no-prompt\n        --noprompt\n        --non-interactive\n        --prefix\n        --prefix-logs\n        --prefixlogs\n        --json\n    -v, --version\n    -h, --help\n        --port PORT\n        --runtime RUNTIME\n        --exec EXEC\n        --noframework\n        --canary\n    -u PROXY\n        --infra INFRA\n        --options\n";

/// Parses af's command line.
pub fn parse(args: &[String]) -> Result<Parsed, OptionError> {
    // `-N` words are instance deltas, set aside before option parsing and appended after.
    let (deltas, mut rest): (Vec<String>, Vec<String>) =
        args.iter().cloned().partition(|a| is_delta(a));
    rest.reverse();
    let mut argv = rest; // a stack: the next word is at the end
    let mut options = Options::default();
    let mut words = Vec::new();
    let mut version = false;

    while let Some(arg) = argv.pop() {
        if arg == "--" {
            while let Some(word) = argv.pop() {
                words.push(word);
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n.replace('_', "-"), Some(v.to_owned())),
                None => (long.replace('_', "-"), None),
            };
            let switch = complete_long(&name).map_err(|e| e.with_option(&arg))?;
            let value = match switch.takes {
                Nothing => {
                    if attached.is_some() {
                        return Err(OptionError::NeedlessArgument(arg));
                    }
                    None
                }
                Required => match attached {
                    Some(v) => Some(v),
                    None => Some(
                        argv.pop()
                            .ok_or(OptionError::MissingArgument(arg.clone()))?,
                    ),
                },
                Optional => attached.or_else(|| take_optional(&mut argv)),
            };
            match apply(&mut options, switch, value)? {
                Flow::Continue => {}
                Flow::Version => version = true,
                Flow::Help => return Ok(Parsed::Help),
                Flow::Summary => return Ok(Parsed::OptionSummary),
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let mut chars = arg[1..].chars();
            let letter = chars.next().unwrap_or('-');
            let rest: String = chars.collect();
            let rest = (!rest.is_empty()).then_some(rest);
            let switch = match SWITCHES.iter().find(|s| s.short == Some(letter)) {
                Some(switch) => switch,
                None => complete_long(&letter.to_string()).map_err(|e| e.with_option(&arg))?,
            };
            let value = match switch.takes {
                Nothing => {
                    if let Some(rest) = rest {
                        if rest.starts_with('=') {
                            return Err(OptionError::NeedlessArgument(arg));
                        }
                        // `-nq` is `-n -q`.
                        argv.push(format!("-{rest}"));
                    }
                    None
                }
                Required => match rest {
                    Some(v) => Some(v),
                    None => Some(
                        argv.pop()
                            .ok_or(OptionError::MissingArgument(arg.clone()))?,
                    ),
                },
                Optional => rest.or_else(|| take_optional(&mut argv)),
            };
            match apply(&mut options, switch, value)? {
                Flow::Continue => {}
                Flow::Version => version = true,
                Flow::Help => return Ok(Parsed::Help),
                Flow::Summary => return Ok(Parsed::OptionSummary),
            }
        } else {
            words.push(arg);
        }
    }
    words.extend(deltas);
    Ok(Parsed::Run {
        options: Box::new(options),
        args: words,
        version,
    })
}

fn is_delta(arg: &str) -> bool {
    arg.strip_prefix('-')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// An optional argument is the next word, unless there is none or it looks like an option.
fn take_optional(argv: &mut Vec<String>) -> Option<String> {
    if argv.last().is_some_and(|next| !next.starts_with('-')) {
        argv.pop()
    } else {
        None
    }
}

enum Flow {
    Continue,
    Version,
    Help,
    Summary,
}

fn apply(
    options: &mut Options,
    switch: &Switch,
    value: Option<String>,
) -> Result<Flow, OptionError> {
    let o = options;
    match switch.key {
        Key::Email => o.email = value,
        Key::Password => o.password = value,
        Key::TokenFile => o.token_file = value,
        Key::Name => o.name = value,
        Key::Bind => o.bind = value,
        Key::Instance => o.instance = value,
        Key::Instances => {
            let text = value.unwrap_or_default();
            o.instances = Some(ruby_integer(&text).ok_or(OptionError::BadInteger(text))?);
        }
        Key::Url => o.url = value,
        Key::Mem => o.mem = value,
        Key::Path => o.path = value,
        Key::Label => o.label = value,
        Key::NoStart => o.no_start = true,
        Key::Force => o.force = true,
        Key::All => o.all = true,
        Key::Full => o.full = true,
        Key::Trace => o.trace = Some(value.unwrap_or_else(|| "22".into())),
        Key::Crash => o.crash = true,
        Key::Debug => o.debug = Some(value.unwrap_or_else(|| "run".into())),
        Key::Manifest => o.manifest = value,
        Key::Quiet => o.quiet = true,
        Key::Vmx => o.vmx = value,
        Key::Vmrun => o.vmrun = value,
        Key::Save => o.save = true,
        Key::NoZip => o.no_zip = true,
        Key::NoResources => o.no_resources = true,
        Key::NoColor => o.no_color = true,
        Key::Verbose => o.verbose = true,
        Key::NoPrompt => o.no_prompt = true,
        Key::PrefixLogs => o.prefix_logs = true,
        Key::Json => o.json = true,
        Key::Version => return Ok(Flow::Version),
        Key::Help => return Ok(Flow::Help),
        Key::Port => o.port = value,
        Key::Runtime => o.runtime = value,
        Key::Exec => o.exec = value,
        Key::NoFramework => o.no_framework = true,
        Key::Canary => o.canary = true,
        Key::Proxy => o.proxy = value,
        Key::Infra => o.infra = value,
        Key::Options => return Ok(Flow::Summary),
    }
    Ok(Flow::Continue)
}

/// Ruby's `Integer(str)` for the decimal forms people type: optional sign, digits, `_` between
/// digits, surrounding blanks.
pub fn ruby_integer(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

/// Completion failed: which way.
#[derive(Debug)]
enum CompleteError {
    Invalid,
    Ambiguous,
}

impl CompleteError {
    fn with_option(self, arg: &str) -> OptionError {
        match self {
            CompleteError::Invalid => OptionError::Invalid(arg.to_owned()),
            CompleteError::Ambiguous => OptionError::Ambiguous(arg.to_owned()),
        }
    }
}

/// `OptionParser#complete(:long, key, icase = true)`: an exact name wins; otherwise every word
/// of the key is a prefix of a word of the name (`n-s` → `no-start`); among several candidates
/// the shortest wins when it is a prefix of all the others, else the key is ambiguous.
fn complete_long(key: &str) -> Result<&'static Switch, CompleteError> {
    if let Some(exact) = SWITCHES.iter().find(|s| s.long.contains(&key)) {
        return Ok(exact);
    }
    let mut candidates: Vec<(&'static str, usize)> = Vec::new();
    for (index, switch) in SWITCHES.iter().enumerate() {
        for name in switch.long {
            if abbreviation_matches(key, name) {
                candidates.push((name, index));
            }
        }
    }
    candidates.sort_by_key(|(name, _)| name.len());
    let mut iter = candidates.into_iter();
    let Some((mut canon, mut canon_switch)) = iter.next() else {
        return Err(CompleteError::Invalid);
    };
    for (name, switch) in iter {
        if switch == canon_switch {
            continue;
        }
        if canon.starts_with(name) {
            canon = name;
            canon_switch = switch;
        } else if name.starts_with(canon) {
            continue;
        } else {
            return Err(CompleteError::Ambiguous);
        }
    }
    Ok(&SWITCHES[canon_switch])
}

/// `Regexp.new('\A' + Regexp.quote(key).gsub(/\w+\b/, '\&\w*'), true) =~ name`.
fn abbreviation_matches(key: &str, name: &str) -> bool {
    let key: Vec<char> = key.to_lowercase().chars().collect();
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    // Split the key into runs: words (prefix of a word in the name) and literal characters.
    let mut ki = 0;
    let mut ni = 0;
    while ki < key.len() {
        if is_word(key[ki]) {
            let start = ki;
            while ki < key.len() && is_word(key[ki]) {
                ki += 1;
            }
            for c in &key[start..ki] {
                if name.get(ni) != Some(c) {
                    return false;
                }
                ni += 1;
            }
            // `\w*`: the rest of the word in the name.
            while ni < name.len() && is_word(name[ni]) {
                ni += 1;
            }
        } else {
            if name.get(ni) != Some(&key[ki]) {
                return false;
            }
            ki += 1;
            ni += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<(Options, Vec<String>), OptionError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match parse(&args)? {
            Parsed::Run { options, args, .. } => Ok((*options, args)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn options_anywhere_and_deltas_last() {
        let (o, args) = run("instances -n app -3").unwrap();
        assert!(o.no_prompt);
        assert_eq!(args, ["instances", "app", "-3"]);
        let (o, args) = run("push app --path /x --url a.b --instances 2 --mem 128M").unwrap();
        assert_eq!(args, ["push", "app"]);
        assert_eq!(o.path.as_deref(), Some("/x"));
        assert_eq!(o.instances, Some(2));
    }

    #[test]
    fn abbreviations_like_optionparser() {
        assert!(run("apps --no-st").unwrap().0.no_start);
        assert!(run("apps --n-s").unwrap().0.no_start);
        assert!(run("apps --NO_START").unwrap().0.no_start);
        assert_eq!(
            run("apps --inst 3").unwrap().0.instance.as_deref(),
            Some("3")
        );
        assert_eq!(
            run("apps --pass x").unwrap().0.password.as_deref(),
            Some("x")
        );
        assert!(run("apps --pref").unwrap().0.prefix_logs);
        assert_eq!(
            run("apps --passw x"),
            Err(OptionError::Ambiguous("--passw".into()))
        );
        assert_eq!(
            run("apps --ver"),
            Err(OptionError::Ambiguous("--ver".into()))
        );
        assert_eq!(
            run("apps --bogus"),
            Err(OptionError::Invalid("--bogus".into()))
        );
    }

    #[test]
    fn short_letters_complete_long_names() {
        assert_eq!(run("push -l foo").unwrap().0.label.as_deref(), Some("foo"));
        assert_eq!(run("push -lfoo").unwrap().0.label.as_deref(), Some("foo"));
        assert!(run("apps -s").unwrap().0.save);
        assert_eq!(run("push -p x"), Err(OptionError::Ambiguous("-p".into())));
        assert_eq!(run("apps -w"), Err(OptionError::Invalid("-w".into())));
        let (o, _) = run("apps -nq").unwrap();
        assert!(o.no_prompt && o.quiet);
        assert_eq!(run("apps -n3"), Err(OptionError::Invalid("-3".into())));
    }

    #[test]
    fn optional_and_required_arguments() {
        assert_eq!(run("apps -t").unwrap().0.trace.as_deref(), Some("22"));
        assert_eq!(run("apps -t key").unwrap().0.trace.as_deref(), Some("key"));
        assert_eq!(run("apps -tn").unwrap().0.trace.as_deref(), Some("n"));
        let (o, _) = run("apps --trace -n").unwrap();
        assert_eq!(o.trace.as_deref(), Some("22"));
        assert!(o.no_prompt);
        assert_eq!(run("push --path -n").unwrap().0.path.as_deref(), Some("-n"));
        assert_eq!(
            run("push -m"),
            Err(OptionError::MissingArgument("-m".into()))
        );
        assert_eq!(
            run("apps --force=1"),
            Err(OptionError::NeedlessArgument("--force=1".into()))
        );
        assert_eq!(run("apps --url=").unwrap().0.url.as_deref(), Some(""));
        assert_eq!(run("apps -d").unwrap().0.debug.as_deref(), Some("run"));
        assert_eq!(run("apps -- -n").unwrap().1, ["apps", "-n"]);
    }

    #[test]
    fn instances_must_be_an_integer() {
        assert_eq!(run("push --instances 1_0").unwrap().0.instances, Some(10));
        assert!(matches!(
            run("push --instances x"),
            Err(OptionError::BadInteger(_))
        ));
    }

    #[test]
    fn help_version_and_summary() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(parse(&args("apps -h")), Ok(Parsed::Help));
        assert_eq!(parse(&args("--options")), Ok(Parsed::OptionSummary));
        assert!(matches!(
            parse(&args("apps -v")),
            Ok(Parsed::Run { version: true, .. })
        ));
    }
}
