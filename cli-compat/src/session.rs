//! One run of an af command: the options, the dot-files, the client (made when first needed,
//! as af's `Base#client`), the manifest loaded before the command runs (af's `Base#initialize`),
//! and the helpers every command shares (`info`, `each_app`, prompts).

use std::path::PathBuf;

use crate::api::Api;
use crate::config::Config;
use crate::context::Context;
use crate::error::{CmdResult, Failure};
use crate::json::Json;
use crate::manifest::{self, AppEntry};
use crate::options::Options;
use crate::output::Out;
use crate::prompt::{Answer, Ask};
use crate::runner::Action;

pub(crate) struct Session<'c> {
    pub(crate) ctx: &'c mut Context,
    pub(crate) out: Out,
    pub(crate) opts: Options,
    pub(crate) config: Config,
    api: Option<Api>,
    client_info: Option<Json>,
    /// af's `@path`: `--path` or `.`.
    pub(crate) path: String,
    pub(crate) manifest_file: Option<PathBuf>,
    pub(crate) manifest: Option<Json>,
    /// The infra the manifest's applications name (af sets `client.infra` while loading).
    manifest_infra: Option<String>,
    /// af's `@application`: the app path being worked on.
    pub(crate) application: Option<String>,
    /// af's `@app_info`: its manifest entry.
    pub(crate) app_info: Option<Json>,
}

impl<'c> Session<'c> {
    pub(crate) fn new(ctx: &'c mut Context, out: Out, opts: Options) -> Session<'c> {
        let config = Config::new(ctx.home.clone());
        let path = opts.path.clone().unwrap_or_else(|| ".".into());
        Session {
            ctx,
            out,
            opts,
            config,
            api: None,
            client_info: None,
            path,
            manifest_file: None,
            manifest: None,
            manifest_infra: None,
            application: None,
            app_info: None,
        }
    }

    /// af's `process_aliases!`: a first word that is an alias is replaced by its command.
    pub(crate) fn process_aliases(&self, words: &mut [String]) {
        let Some(first) = words.first_mut() else {
            return;
        };
        if let Some((_, command)) = self.config.aliases().into_iter().find(|(k, _)| k == first) {
            *first = command.unwrap_or_default();
        }
    }

    pub(crate) async fn dispatch(&mut self, action: Action, args: &[String]) -> CmdResult {
        self.load_manifest(action).await?;
        let arg = |i: usize| args.get(i).map(String::as_str);
        use Action::*;
        match action {
            Version => {
                self.out.say("af 0.3.22");
                Ok(())
            }
            Target => self.target(),
            SetTarget => self.set_target(&args[0]).await,
            Targets | Tokens => self.targets(),
            Info => self.info_cmd().await,
            Runtimes => self.runtimes().await,
            Frameworks => self.frameworks().await,
            Infras => self.infras().await,
            Aliases => self.aliases_cmd(),
            Alias => self.alias(&args[0], arg(1)),
            Unalias => self.unalias(&args[0]),
            UserInfo => self.user_info().await,
            Login => self.login(arg(0)).await,
            Logout => self.logout(),
            ChangePassword => self.change_password(arg(0)).await,
            AddUser => self.add_user(arg(0)).await,
            DeleteUser => self.delete_user(&args[0]).await,
            Users => self.users().await,
            Apps | List => self.list().await,
            Start => self.start(arg(0), false).await,
            Stop => self.stop(arg(0)).await,
            Restart => self.restart(arg(0)).await,
            Mem => self.mem(&args[0], arg(1)).await,
            Stats => self.stats(arg(0)).await,
            Map => self.map(&args[0], &args[1]).await,
            Unmap => self.unmap(&args[0], &args[1]).await,
            Delete => self.delete(arg(0)).await,
            Files => self.files(&args[0], arg(1).unwrap_or("/")).await,
            Download => self.download(&args[0], arg(1)).await,
            Pull => self.pull(&args[0], arg(1)).await,
            Logs => self.logs(&args[0]).await,
            Instances => self.instances(&args[0], arg(1)).await,
            Crashes => self.crashes(&args[0], true, 0).await.map(drop),
            Crashlogs => self.crashlogs(&args[0]).await,
            Push => self.push(arg(0)).await,
            Update => self.update(arg(0)).await,
            History => self.history(&args[0]).await,
            Hash => self.hash_cmd(arg(0)),
            Diff => self.diff(&args[0]).await,
            Environment => self.environment(&args[0]).await,
            EnvironmentAdd => self.environment_add(&args[0], &args[1], arg(2)).await,
            EnvironmentDel => self.environment_del(&args[0], &args[1]).await,
            Rename => self.rename(&args[0], &args[1]).await,
            Services => self.services().await,
            CreateService => self.create_service(arg(0), arg(1), arg(2)).await,
            DeleteService => self.delete_service(arg(0)).await,
            BindService => self.bind_service_banner(&args[0], &args[1], true).await,
            UnbindService => self.unbind_service_banner(&args[0], &args[1], true).await,
            CloneServices => self.clone_services(&args[0], &args[1]).await,
            ExportService => self.export_service(&args[0]).await,
            ImportService => self.import_service(&args[0], &args[1]).await,
            Clone => self.clone_app(&args[0], &args[1], arg(2)).await,
            Tunnel => self.tunnel(arg(0), arg(1)).await,
            Console => self.console(),
            MicroOnline | MicroOffline | MicroStatus => self.micro(),
            ManifestEdit => self.manifest_edit().await,
            ManifestExtend => self.manifest_extend(&args[0]).await,
        }
    }

    // ---------------------------------------------------------------- the client

    /// The token stored for the target (`--token-file` or `~/.af_token`).
    pub(crate) fn stored_token(&self) -> Option<String> {
        let target = self.config.target_url();
        self.config
            .auth_token(&target, self.token_file().as_deref())
            .ok()
            .flatten()
    }

    pub(crate) fn token_file(&self) -> Option<PathBuf> {
        self.opts
            .token_file
            .as_deref()
            .map(|f| self.ctx.expand_path(f))
    }

    /// af's `Base#client`: made on first use for the stored target and token.
    pub(crate) fn client(&mut self) -> CmdResult<&mut Api> {
        if self.api.is_none() {
            let target = self.config.target_url();
            let token = self
                .config
                .auth_token(&target, self.token_file().as_deref())
                .map_err(|e| Failure::message(e.to_string()))?;
            let mut api = Api::new(&target, token, self.ctx.http_timeout, self.out.clone());
            api.trace = self.opts.trace.clone();
            api.proxy = self.opts.proxy.clone();
            api.infra = self.manifest_infra.clone();
            self.api = Some(api);
        }
        Ok(self.api.as_mut().expect("just made"))
    }

    /// af's `client_info`: `GET /info`, once.
    pub(crate) async fn client_info(&mut self) -> CmdResult<Json> {
        if let Some(info) = &self.client_info {
            return Ok(info.clone());
        }
        let info = self.client()?.info().await?;
        self.client_info = Some(info.clone());
        Ok(info)
    }

    /// The target URL as af's commands name it.
    pub(crate) fn target_url(&self) -> String {
        self.config.target_url()
    }

    /// af's `frameworks_info`: the framework names `/info` offers.
    pub(crate) async fn frameworks_info(&mut self) -> CmdResult<Vec<String>> {
        let info = self.client_info().await?;
        Ok(info
            .get("frameworks")
            .as_object()
            .map(|fs| fs.iter().map(|(_, f)| f.get("name").to_ruby_s()).collect())
            .unwrap_or_default())
    }

    /// af's `runtimes_info`: every runtime of every framework `/info` offers, by name.
    pub(crate) async fn runtimes_info(&mut self) -> CmdResult<Vec<(String, Json)>> {
        let info = self.client_info().await?;
        let mut runtimes: Vec<(String, Json)> = Vec::new();
        for (_, framework) in info.get("frameworks").as_object().into_iter().flatten() {
            for runtime in framework.get("runtimes").items() {
                let name = runtime.get("name").to_ruby_s();
                match runtimes.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, slot)) => *slot = runtime.clone(),
                    None => runtimes.push((name, runtime.clone())),
                }
            }
        }
        Ok(runtimes)
    }

    // ---------------------------------------------------------------- the manifest

    /// af's `Base#initialize`: find and load the manifest (symbols resolved, except for
    /// `af manifest`, which edits it raw).
    async fn load_manifest(&mut self, action: Action) -> CmdResult {
        let start = self.ctx.expand_path(&self.path);
        let Some(file) = manifest::find(self.opts.manifest.as_deref(), &start) else {
            return Ok(());
        };
        let mut infra = None;
        let mut tree =
            manifest::load_structure(&file, &file, &self.ctx.cwd, &self.ctx.home, &mut infra)?;
        self.manifest_file = Some(file);
        if infra.is_some() {
            self.manifest_infra = infra.clone();
            if let Some(api) = &mut self.api {
                api.infra = infra;
            }
        }
        if !matches!(action, Action::ManifestEdit | Action::ManifestExtend) {
            self.resolve_manifest(&mut tree).await?;
        }
        self.manifest = Some(tree);
        Ok(())
    }

    /// af's `resolve_manifest`, with what its symbols need from the client worked out first.
    pub(crate) async fn resolve_manifest(&mut self, tree: &mut Json) -> CmdResult {
        let suggest = if manifest::needs_suggest_url(tree) {
            Some(self.client()?.suggest_url(None).await)
        } else {
            None
        };
        let target = self.client()?.target.clone();
        let application = self.application.clone();
        let symbols = manifest::Symbols {
            target_url: &target,
            suggest_url: suggest.as_deref(),
            application: application.as_deref(),
        };
        manifest::resolve(tree, &symbols)
    }

    /// af's `each_app`.
    pub(crate) fn each_app(&self, panic: bool) -> CmdResult<Vec<AppEntry>> {
        manifest::each_app(
            self.manifest.as_ref(),
            self.manifest_file.as_deref(),
            &self.path,
            &self.ctx.cwd,
            &self.ctx.home,
            panic,
        )
    }

    /// Sets af's `@application` / `@app_info` for one app of `each_app`.
    pub(crate) fn enter_app(&mut self, entry: &AppEntry) {
        self.application = Some(entry.application.clone());
        self.app_info = entry.info.clone();
    }

    pub(crate) fn leave_app(&mut self) {
        self.application = None;
        self.app_info = None;
    }

    /// af's `info(what, default)` for string options: the option, else the manifest entry.
    pub(crate) fn info_value(&self, what: &str) -> Json {
        let option = match what {
            "name" => self.opts.name.clone(),
            "url" => self.opts.url.clone(),
            "mem" => self.opts.mem.clone(),
            "runtime" => self.opts.runtime.clone(),
            "infra" => self.opts.infra.clone(),
            "exec" => self.opts.exec.clone(),
            _ => None,
        };
        if let Some(value) = option {
            return Json::Str(value);
        }
        if what == "instances"
            && let Some(n) = self.opts.instances
        {
            return Json::Int(n);
        }
        match &self.app_info {
            Some(info) if info.get(what).truthy() => info.get(what).clone(),
            _ => Json::Null,
        }
    }

    // ---------------------------------------------------------------- prompts

    /// Asks a question on the context's stdin.
    pub(crate) fn ask(&mut self, question: Ask) -> CmdResult<Answer> {
        question.run(&mut *self.ctx.stdin, &self.out)
    }

    /// af's `no_prompt`.
    pub(crate) fn no_prompt(&self) -> bool {
        self.opts.no_prompt
    }

    /// `Time.at(seconds).strftime("%m/%d/%Y %I:%M%p")` in the context's zone.
    pub(crate) fn format_time(&self, seconds: &Json) -> String {
        let Some(seconds) = seconds.as_f64() else {
            return String::new();
        };
        let Ok(timestamp) = jiff::Timestamp::from_second(seconds.floor() as i64) else {
            return String::new();
        };
        timestamp
            .to_zoned(self.ctx.time_zone.clone())
            .strftime("%m/%d/%Y %I:%M%p")
            .to_string()
    }
}
