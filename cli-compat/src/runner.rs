//! af's runner (`lib/cli/runner.rb`): options, aliases, which command a line means and how many
//! arguments it takes, and how every way of failing is printed. Every run ends with one more
//! newline, and exits 1 on any failure.

use crate::context::Context;
use crate::error::Failure;
use crate::options::{self, Options, Parsed};
use crate::output::Out;
use crate::session::Session;

/// `af` with no command, or a wrong one.
pub const BASIC_USAGE: &str = "Usage: af [options] command [<args>] [command_options]\nTry 'af help [command]' or 'af help options' for more information.";

/// `af help`: every command.
pub const COMMAND_USAGE: &str = include_str!("command_usage.txt");

/// Every action af dispatches to, by its Ruby namespace and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Version,
    Target,
    SetTarget,
    Targets,
    Tokens,
    Info,
    Runtimes,
    Frameworks,
    Infras,
    UserInfo,
    Login,
    Logout,
    ChangePassword,
    AddUser,
    DeleteUser,
    Users,
    Apps,
    List,
    Start,
    Stop,
    Restart,
    Mem,
    Stats,
    Map,
    Unmap,
    Delete,
    Files,
    Download,
    Pull,
    Logs,
    Instances,
    Crashes,
    Crashlogs,
    Push,
    Update,
    History,
    Hash,
    Diff,
    Services,
    Environment,
    EnvironmentAdd,
    EnvironmentDel,
    Rename,
    CreateService,
    DeleteService,
    BindService,
    UnbindService,
    CloneServices,
    ExportService,
    ImportService,
    Clone,
    Aliases,
    Alias,
    Unalias,
    Tunnel,
    Console,
    MicroOnline,
    MicroOffline,
    MicroStatus,
    ManifestEdit,
    ManifestExtend,
}

impl Action {
    /// af's namespace and method names (for `--verbose` and the crash log).
    pub(crate) fn names(self) -> (&'static str, &'static str) {
        use Action::*;
        match self {
            Version => ("misc", "version"),
            Target => ("misc", "target"),
            SetTarget => ("misc", "set_target"),
            Targets => ("misc", "targets"),
            Tokens => ("misc", "tokens"),
            Info => ("misc", "info"),
            Runtimes => ("misc", "runtimes"),
            Frameworks => ("misc", "frameworks"),
            Infras => ("misc", "infras"),
            UserInfo => ("user", "info"),
            Login => ("user", "login"),
            Logout => ("user", "logout"),
            ChangePassword => ("user", "change_password"),
            AddUser => ("admin", "add_user"),
            DeleteUser => ("admin", "delete_user"),
            Users => ("admin", "users"),
            Apps => ("apps", "apps"),
            List => ("apps", "list"),
            Start => ("apps", "start"),
            Stop => ("apps", "stop"),
            Restart => ("apps", "restart"),
            Mem => ("apps", "mem"),
            Stats => ("apps", "stats"),
            Map => ("apps", "map"),
            Unmap => ("apps", "unmap"),
            Delete => ("apps", "delete"),
            Files => ("apps", "files"),
            Download => ("apps", "download"),
            Pull => ("apps", "pull"),
            Logs => ("apps", "logs"),
            Instances => ("apps", "instances"),
            Crashes => ("apps", "crashes"),
            Crashlogs => ("apps", "crashlogs"),
            Push => ("apps", "push"),
            Update => ("apps", "update"),
            History => ("apps", "history"),
            Hash => ("apps", "hash"),
            Diff => ("apps", "diff"),
            Services => ("services", "services"),
            Environment => ("apps", "environment"),
            EnvironmentAdd => ("apps", "environment_add"),
            EnvironmentDel => ("apps", "environment_del"),
            Rename => ("apps", "rename"),
            CreateService => ("services", "create_service"),
            DeleteService => ("services", "delete_service"),
            BindService => ("services", "bind_service"),
            UnbindService => ("services", "unbind_service"),
            CloneServices => ("services", "clone_services"),
            ExportService => ("services", "export_service"),
            ImportService => ("services", "import_service"),
            Clone => ("apps", "clone"),
            Aliases => ("misc", "aliases"),
            Alias => ("misc", "alias"),
            Unalias => ("misc", "unalias"),
            Tunnel => ("services", "tunnel"),
            Console => ("apps", "console"),
            MicroOnline => ("micro", "online"),
            MicroOffline => ("micro", "offline"),
            MicroStatus => ("micro", "status"),
            ManifestEdit => ("manifest", "edit"),
            ManifestExtend => ("manifest", "extend"),
        }
    }
}

/// How many arguments an action takes (af's `set_cmd` range).
#[derive(Clone, Copy, Debug)]
enum Arity {
    Exactly(usize),
}

/// What the command words come to.
#[derive(Debug, Default)]
struct Route {
    usage: Option<&'static str>,
    usage_error: Option<String>,
    action: Option<Action>,
    /// `@exit_status = false` (a wrong number of arguments).
    failed: bool,
}

impl Route {
    fn usage(&mut self, usage: &'static str) {
        self.usage = Some(usage);
    }

    /// af's `set_cmd(namespace, action, args_range)`.
    fn set(&mut self, action: Action, arity: Arity, args: &[String], help_only: bool) {
        if help_only {
            return;
        }
        let Arity::Exactly(n) = arity;
        if args.len() == n {
            self.action = Some(action);
            return;
        }
        self.failed = true;
        let name = action.names().1;
        if args.len() > n {
            let extra: Vec<String> = args[n..].iter().map(|a| format!("'{a}'")).collect();
            self.usage_error = Some(format!(
                "Too many arguments for [{name}]: {}",
                extra.join(", ")
            ));
        } else {
            self.usage_error = Some(format!("Not enough arguments for [{name}]"));
        }
    }
}

/// What to do after routing, besides running an action.
enum Routed {
    Route(Route),
    /// `af help` with no command: the whole usage, exit 0.
    FullHelp,
    /// `af usage`: the short usage, exit 0.
    BasicUsage,
    /// `af help options` / `af options`: the option summary, exit 0.
    OptionSummary,
    /// An unknown command: its name, then the short usage, exit 1.
    Unknown(String),
}

/// af's `parse_command!`: the verb, its usage line, and the action with its arity.
fn route(args: &mut Vec<String>, options: &Options, help_only: bool) -> Routed {
    use Action::*;
    let mut r = Route::default();
    if args.is_empty() {
        return Routed::Route(r);
    }
    let verb = args.remove(0);
    let n = args.len();
    let one_or_none = |n: usize| if n == 1 { 1 } else { 0 };
    macro_rules! set {
        ($action:expr, $n:expr) => {
            r.set($action, Arity::Exactly($n), args, help_only)
        };
    }
    match verb.as_str() {
        "version" => {
            r.usage("af version");
            set!(Version, 0);
        }
        "target" => {
            r.usage("af target [url] [--url]");
            if n == 1 {
                set!(SetTarget, 1);
            } else {
                set!(Target, 0);
            }
        }
        "targets" => {
            r.usage("af targets");
            set!(Targets, 0);
        }
        "tokens" => {
            r.usage("af tokens");
            set!(Tokens, 0);
        }
        "info" => {
            r.usage("af info");
            set!(Info, 0);
        }
        "runtimes" => {
            r.usage("af runtimes");
            set!(Runtimes, 0);
        }
        "frameworks" => {
            r.usage("af frameworks");
            set!(Frameworks, 0);
        }
        "infras" => {
            r.usage("af infras");
            set!(Infras, 0);
        }
        "user" => {
            r.usage("af user");
            set!(UserInfo, 0);
        }
        "login" => {
            r.usage("af login [email] [--email EMAIL] [--passwd PASS]");
            set!(Login, one_or_none(n));
        }
        "logout" => {
            r.usage("af logout");
            set!(Logout, 0);
        }
        "passwd" => {
            r.usage("af passwd");
            set!(ChangePassword, one_or_none(n));
        }
        "add-user" | "add_user" | "create_user" | "create-user" | "register" => {
            r.usage("af add-user [user] [--email EMAIL] [--passwd PASS]");
            set!(AddUser, one_or_none(n));
        }
        "delete-user" | "delete_user" | "unregister" => {
            r.usage("af delete-user <user>");
            set!(DeleteUser, 1);
        }
        "users" => {
            r.usage("af users");
            set!(Users, 0);
        }
        "apps" => {
            r.usage("af apps");
            set!(Apps, 0);
        }
        "list" => {
            r.usage("af list");
            set!(List, 0);
        }
        "start" => {
            r.usage("af start <appname>");
            set!(Start, one_or_none(n));
        }
        "stop" => {
            r.usage("af stop <appname>");
            set!(Stop, one_or_none(n));
        }
        "restart" => {
            r.usage("af restart <appname>");
            set!(Restart, one_or_none(n));
        }
        "mem" => {
            r.usage("af mem <appname> [memsize]");
            set!(Mem, if n == 2 { 2 } else { 1 });
        }
        "stats" => {
            r.usage("af stats <appname>");
            set!(Stats, one_or_none(n));
        }
        "map" => {
            r.usage("af map <appname> <url>");
            set!(Map, 2);
        }
        "unmap" => {
            r.usage("af unmap <appname> <url>");
            set!(Unmap, 2);
        }
        "delete" => {
            r.usage("af delete <appname>");
            if options.all && n == 0 {
                set!(Delete, 0);
            } else {
                set!(Delete, 1);
            }
        }
        "files" => {
            r.usage("af files <appname> [path] [--instance N] [--all] [--prefix]");
            set!(Files, if n == 1 { 1 } else { 2 });
        }
        "download" => {
            r.usage("af download <appname> [path]");
            set!(Download, if n == 1 { 1 } else { 2 });
        }
        "pull" => {
            r.usage("af pull <appname> [path]");
            set!(Pull, if n == 1 { 1 } else { 2 });
        }
        "logs" => {
            r.usage("af logs <appname> [--instance N] [--all] [--prefix]");
            set!(Logs, 1);
        }
        "instances" | "scale" => {
            if n > 1 {
                r.usage("af instances <appname> <num|delta>");
                set!(Instances, 2);
            } else {
                r.usage("af instances <appname>");
                set!(Instances, 1);
            }
        }
        "crashes" => {
            r.usage("af crashes <appname>");
            set!(Crashes, 1);
        }
        "crashlogs" => {
            r.usage("af crashlogs <appname>");
            set!(Crashlogs, 1);
        }
        "push" => {
            r.usage("af push [appname] [--path PATH] [--url URL] [--instances N] [--mem] [--runtime RUNTIME] [--no-start] [--infra infraname] [--label LABEL]");
            set!(Push, one_or_none(n));
        }
        "update" => {
            r.usage("af update <appname> [--path PATH] [--label LABEL]");
            set!(Update, one_or_none(n));
        }
        "history" => {
            r.usage("af history <appname>");
            set!(History, 1);
        }
        "hash" => {
            r.usage("hash [path] [--full]");
            set!(Hash, one_or_none(n));
        }
        "diff" => {
            r.usage("af diff <appname>");
            set!(Diff, 1);
        }
        "services" => {
            r.usage("af services");
            set!(Services, 0);
        }
        "env" => {
            r.usage("af env <appname>");
            set!(Environment, 1);
        }
        "env-add" => {
            r.usage("af env-add <appname> <variable[=]value>");
            if n == 2 || n == 3 {
                set!(EnvironmentAdd, n);
            }
        }
        "env-del" => {
            r.usage("af env-del <appname> <variable>");
            set!(EnvironmentDel, 2);
        }
        "rename" => {
            r.usage("af rename <curname> <newname>");
            set!(Rename, 2);
        }
        "create-service" | "create_service" => {
            r.usage("af create-service [service] [servicename] [appname] [--name servicename] [--bind appname] [--infra infraname]");
            if n <= 3 {
                set!(CreateService, n);
            }
        }
        "delete-service" | "delete_service" => {
            r.usage("af delete-service <service>");
            set!(DeleteService, one_or_none(n));
        }
        "bind-service" | "bind_service" => {
            r.usage("af bind-service <servicename> <appname>");
            set!(BindService, 2);
        }
        "unbind-service" | "unbind_service" => {
            r.usage("af unbind-service <servicename> <appname>");
            set!(UnbindService, 2);
        }
        "clone-services" => {
            r.usage("af clone-services <src-app> <dest-app>");
            set!(CloneServices, 2);
        }
        "export-service" => {
            r.usage("af export-service <service-name>");
            set!(ExportService, 1);
        }
        "import-service" => {
            r.usage("af import-service <service-name> <url>");
            set!(ImportService, 2);
        }
        "clone" => {
            r.usage("af clone <src-app> <dest-app> [<infra>] --label LABEL");
            if n == 2 || n == 3 {
                set!(Clone, n);
            }
        }
        "aliases" => {
            r.usage("af aliases");
            set!(Aliases, 0);
        }
        "alias" => {
            r.usage("af alias <alias[=]command>");
            if n == 1 || n == 2 {
                set!(Alias, n);
            }
        }
        "unalias" => {
            r.usage("af unalias <alias>");
            set!(Unalias, 1);
        }
        "tunnel" => {
            r.usage("af tunnel [servicename] [clientcmd] [--port port]");
            if n <= 2 {
                set!(Tunnel, n);
            }
        }
        "rails-console" => {
            r.usage("af rails-console <appname>");
            set!(Console, 1);
        }
        "micro" => {
            r.usage("af micro <online|offline|status> [--password password] [--save] [--vmx file] [--vmrun executable]");
            match args.first().map(String::as_str) {
                Some("online") => set!(MicroOnline, 1),
                Some("offline") => set!(MicroOffline, 1),
                Some("status") => set!(MicroStatus, 1),
                _ => {}
            }
        }
        "help" => {
            if args.is_empty() {
                return Routed::FullHelp;
            }
            return route(args, options, true);
        }
        "usage" => return Routed::BasicUsage,
        "options" => return Routed::OptionSummary,
        "manifest" => {
            r.usage("af manifest");
            set!(ManifestEdit, 0);
        }
        "extend-manifest" => {
            r.usage("af extend-manifest");
            set!(ManifestExtend, 1);
        }
        _ => return Routed::Unknown(verb),
    }
    Routed::Route(r)
}

/// An `af` command line as af reads it, without running it: the command it means, its words
/// and its options. What a runbook's steps are checked with before anything runs, so that a line
/// af would refuse is refused up front, with af's own words.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandLine {
    /// af's name for the action (`push`, `map`, `environment_add`, `instances`, …).
    pub action: &'static str,
    /// The words after the command, options taken out.
    pub args: Vec<String>,
    pub options: Options,
}

/// Reads `args` (without the program name) as af would (options, abbreviations, which command
/// and how many arguments), with no aliases. The error is what af would print instead of running
/// anything: `Unknown command [pussh]`, `Not enough arguments for [map] (usage: af map <appname>
/// <url>)`, `invalid option: --frob`.
pub fn parse_command(args: &[String]) -> Result<CommandLine, String> {
    let (options, mut words, version) = match options::parse(args) {
        Ok(Parsed::Run {
            options,
            args,
            version,
        }) => (*options, args, version),
        Ok(Parsed::Help | Parsed::OptionSummary) => {
            return Err("asks for af's help, which does nothing to the platform".into());
        }
        Err(error) => return Err(error.to_string()),
    };
    if version {
        return Ok(CommandLine {
            action: Action::Version.names().1,
            args: Vec::new(),
            options,
        });
    }
    match route(&mut words, &options, false) {
        Routed::Route(Route {
            action: Some(action),
            failed: false,
            ..
        }) => Ok(CommandLine {
            action: action.names().1,
            args: words,
            options,
        }),
        Routed::Route(route) => Err(match (route.usage_error, route.usage) {
            (Some(error), Some(usage)) => format!("{error} (usage: {usage})"),
            (None, Some(usage)) => format!("usage: {usage}"),
            (error, None) => error.unwrap_or_else(|| "no command".into()),
        }),
        Routed::Unknown(verb) => Err(format!("Unknown command [{verb}]")),
        Routed::FullHelp | Routed::BasicUsage | Routed::OptionSummary => {
            Err("asks for af's help, which does nothing to the platform".into())
        }
    }
}

/// Runs a command line as a person types it (`af map example2 example.com`, the leading `af`
/// optional; words split as a shell splits them, with `'…'`, `"…"` and `\` quoting); returns
/// the exit status. What runbook steps go through.
pub async fn run_line(line: &str, ctx: &mut Context) -> i32 {
    let mut words = split_words(line);
    if words.first().map(String::as_str) == Some("af") {
        words.remove(0);
    }
    run(&words, ctx).await
}

/// Splits a command line into words as a POSIX shell would (no expansion).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    current.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                current.push(next);
                            }
                        }
                        q => current.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Runs one `af` command line (without the program name) in `ctx`; returns the exit status.
///
/// This is the whole of `af`: the binary only builds a [`Context`] for the process and calls
/// this. Output goes to `ctx.stdout`, prompts read `ctx.stdin`.
pub async fn run(args: &[String], ctx: &mut Context) -> i32 {
    let stdout = std::mem::replace(&mut ctx.stdout, Box::new(std::io::sink()));
    let out = Out::new(stdout);
    let status = run_with(args, ctx, out.clone()).await;
    if let Some(stdout) = out.into_inner() {
        ctx.stdout = stdout;
    }
    status
}

async fn run_with(args: &[String], ctx: &mut Context, mut out: Out) -> i32 {
    let started = std::time::Instant::now();
    let parsed = options::parse(args);
    let (options, mut words, version) = match parsed {
        Ok(Parsed::Run {
            options,
            args,
            version,
        }) => (*options, args, version),
        Ok(Parsed::Help) => {
            out.puts_raw(&format!("{COMMAND_USAGE}\n"));
            return 0;
        }
        Ok(Parsed::OptionSummary) => {
            out.puts_raw(&format!("{}\n", options::OPTION_SUMMARY));
            return 0;
        }
        Err(error) => {
            // af's output channel is not set up yet: the message itself is not printed.
            let config = crate::config::Config::new(&ctx.home);
            let _ = config.store_crash(&format!("Type: OptionParser\nMessage: {error}\n"));
            if error.shows_usage() {
                out.puts_raw("\n");
                out.puts_raw(BASIC_USAGE);
            }
            return 1;
        }
    };
    out.colorize = ctx.is_tty && !options.no_color;
    out.enabled = !options.quiet;

    let mut session = Session::new(ctx, out.clone(), options);
    if !version {
        session.process_aliases(&mut words);
    }
    let routed = if version {
        Routed::Route(Route {
            action: Some(Action::Version),
            ..Route::default()
        })
    } else {
        route(&mut words, &session.opts, false)
    };

    let mut status = true;
    let mut action_done: Option<Action> = None;
    match routed {
        Routed::FullHelp => out.puts_raw(COMMAND_USAGE),
        Routed::BasicUsage => out.say(BASIC_USAGE),
        Routed::OptionSummary => out.puts_raw(&format!("{}\n", options::OPTION_SUMMARY)),
        Routed::Unknown(verb) => {
            out.say(&format!("af: Unknown command [{verb}]"));
            out.say(BASIC_USAGE);
            status = false;
        }
        Routed::Route(route) => {
            if route.failed {
                status = false;
            }
            if let Some(action) = route.action {
                action_done = Some(action);
                let result = session.dispatch(action, &words).await;
                if let Err(failure) = result {
                    status = session.report(failure, action, &words, started);
                }
            } else if let Some(usage) = route.usage {
                if let Some(error) = &route.usage_error {
                    out.say(error);
                }
                out.say(&format!("Usage: {usage}"));
            } else {
                out.say(BASIC_USAGE);
                status = false;
            }
        }
    }
    out.say("\n");
    if session.opts.verbose {
        let (namespace, action) = action_done.map_or(("", ""), Action::names);
        if status {
            out.puts_raw(&out.green(&format!("[{namespace}:{action}] SUCCEEDED")));
        } else {
            out.puts_raw(&out.red(&format!("[{namespace}:{action}] FAILED")));
        }
        out.say("\n");
    }
    if status { 0 } else { 1 }
}

impl Session<'_> {
    /// Prints a failure as af's runner does and says whether the run still succeeded.
    fn report(
        &mut self,
        failure: Failure,
        action: Action,
        args: &[String],
        started: std::time::Instant,
    ) -> bool {
        match failure {
            Failure::Message(message) => {
                self.out.say(&self.out.red(&message));
                self.store_crash_log(&message, action, args, started);
                false
            }
            Failure::Auth => {
                let text = if self.stored_token().is_some() {
                    "Not Authorized"
                } else {
                    "Login Required"
                };
                self.out.puts_raw(&self.out.red(text));
                false
            }
            Failure::Exit(status) => status,
        }
    }

    fn store_crash_log(
        &self,
        message: &str,
        action: Action,
        args: &[String],
        started: std::time::Instant,
    ) {
        let (_, name) = action.names();
        let mut log = format!("Action: {name}\n");
        if name != "environment_add" {
            log.push_str(&format!("Arguments: {}\n", args.join(" ")));
        }
        log.push_str(&format!(
            "Execution Time: {:.2}s\n",
            started.elapsed().as_secs_f64()
        ));
        log.push_str(&format!("Target: {}\n", self.config.target_url()));
        log.push_str("Client: v0.3.22 (afemu)\n");
        log.push_str(&format!("Message: {message}\n"));
        let _ = self.config.store_crash(&log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(
            split_words("af map example2 'www.example.com' \"a b\" c\\ d ''"),
            ["af", "map", "example2", "www.example.com", "a b", "c d", ""]
        );
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn command_lines_parse_as_af_reads_them() {
        let parse = |line: &str| parse_command(&split_words(line));
        let push = parse("push shop --path apps/v2 --url shop.com --instances 2 -n").unwrap();
        assert_eq!(push.action, "push");
        assert_eq!(push.args, ["shop"]);
        assert_eq!(push.options.url.as_deref(), Some("shop.com"));
        assert_eq!(push.options.instances, Some(2));
        assert!(push.options.no_prompt);
        let scale = parse("scale shop -1").unwrap();
        assert_eq!(
            (scale.action, scale.args.as_slice()),
            ("instances", &["shop".to_owned(), "-1".to_owned()][..])
        );
        assert_eq!(parse("pussh shop").unwrap_err(), "Unknown command [pussh]");
        assert_eq!(
            parse("map shop").unwrap_err(),
            "Not enough arguments for [map] (usage: af map <appname> <url>)"
        );
        assert_eq!(
            parse("map a b --frob").unwrap_err(),
            "invalid option: --frob"
        );
        assert!(parse("help").is_err());
    }

    #[tokio::test]
    async fn a_typed_line_runs_like_the_words() {
        let home = tempfile::tempdir().unwrap();
        let (mut ctx, out) = Context::new(home.path()).captured();
        assert_eq!(run_line("af help map", &mut ctx).await, 0);
        assert_eq!(out.text(), "Usage: af map <appname> <url>\n\n");
        let (mut ctx, out) = Context::new(home.path()).captured();
        assert_eq!(run_line("frobnicate", &mut ctx).await, 1);
        assert!(out.text().starts_with("af: Unknown command [frobnicate]\n"));
    }
}
