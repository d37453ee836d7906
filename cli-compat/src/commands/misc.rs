//! `target`, `targets`, `info`, `runtimes`, `frameworks`, `infras`, `aliases`, `alias`,
//! `unalias` (af's `commands/misc.rb`).

use crate::api::Api;
use crate::config::normalize_target;
use crate::error::{AfError, CmdResult, Failure};
use crate::json::Json;
use crate::output::pretty_size;
use crate::prompt::Ask;
use crate::session::Session;
use crate::table::Table;

impl Session<'_> {
    /// `af target`: the current target.
    pub(crate) fn target(&mut self) -> CmdResult {
        let target = self.target_url();
        if self.opts.json {
            self.out
                .say(&crate::json_object! {"target" => target}.pretty());
            return Ok(());
        }
        self.out.say("\n");
        self.out.say(&format!("[{target}]"));
        Ok(())
    }

    /// `af target URL`: checks `GET /info` (no token) and stores the target.
    pub(crate) async fn set_target(&mut self, url: &str) -> CmdResult {
        let url = normalize_target(url);
        let client = Api::new(&url, None, self.ctx.http_timeout, self.out.clone());
        if !client.target_valid().await {
            if !self.no_prompt() {
                self.out.say(
                    &self
                        .out
                        .red(&format!("Host is not available or is not valid: '{url}'")),
                );
                let show = self.ask(Ask::new("Would you like see the response?").yes_no(false))?;
                if show.yes() {
                    let body = client.raw_info().await?;
                    self.out.say(&format!("\n<<<\n{body}\n>>>\n"));
                }
            }
            return Err(Failure::Exit(false));
        }
        self.config
            .store_target(&url)
            .map_err(|e| Failure::message(e.to_string()))?;
        self.out
            .say(&self.out.green(&format!("Successfully targeted to [{url}]")));
        Ok(())
    }

    /// `af targets` / `af tokens`: every stored target and its token.
    pub(crate) fn targets(&mut self) -> CmdResult {
        let tokens = self
            .config
            .tokens(None)
            .map_err(|e| Failure::message(e.to_string()))?;
        // af fails on a missing token file (`empty?` on nil); no file is no targets.
        let tokens = tokens.unwrap_or_else(Json::object);
        if self.opts.json {
            self.out.say(&tokens.pretty());
            return Ok(());
        }
        let pairs = tokens.as_object().cloned().unwrap_or_default();
        if pairs.is_empty() {
            self.out.say("None specified");
            return Ok(());
        }
        let mut table = Table::new(&["Target", "Authorization"]);
        for (target, token) in &pairs {
            table.push(&[target.clone(), token.to_ruby_s()]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af info`: the target's description and, when logged in, the user and usage.
    pub(crate) async fn info_cmd(&mut self) -> CmdResult {
        let info = self.client_info().await?;
        if self.opts.json {
            self.out.say(&info.pretty());
            return Ok(());
        }
        let target = self.client()?.target.clone();
        self.out
            .say(&format!("\n{}", info.get("description").to_ruby_s()));
        self.out.say(&format!(
            "For support visit {}",
            info.get("support").to_ruby_s()
        ));
        self.out.say("");
        self.out.say(&format!(
            "Target:   {target} (v{})",
            info.get("version").to_ruby_s()
        ));
        self.out.say("Client:   v0.3.22");
        if info.get("user").truthy() {
            self.out.say("");
            self.out
                .say(&format!("User:     {}", info.get("user").to_ruby_s()));
        }
        let usage = info.get("usage");
        let limits = info.get("limits");
        if usage.truthy() && limits.truthy() {
            let mib = |v: &Json| megabytes(v);
            let total = pretty_size(&mib(limits.get("memory")), 1);
            let used = pretty_size(
                &mib(if usage.get("memory").truthy() {
                    usage.get("memory")
                } else {
                    &Json::Int(0)
                }),
                1,
            );
            self.out
                .say(&format!("Usage:    Memory   ({used} of {total} total)"));
            self.out.say(&format!(
                "          Services ({} of {} total)",
                usage.get("services").to_ruby_s(),
                limits.get("services").to_ruby_s()
            ));
            if limits.get("apps").truthy() {
                let apps = or_zero(usage.get("apps"));
                self.out.say(&format!(
                    "          Apps     ({} of {} total)",
                    apps.to_ruby_s(),
                    limits.get("apps").to_ruby_s()
                ));
            }
        }
        Ok(())
    }

    /// `af runtimes`: the runtimes of the frameworks `/info` offers.
    pub(crate) async fn runtimes(&mut self) -> CmdResult {
        if !self.client()?.logged_in().await? {
            return Err(AfError::Auth.into());
        }
        let runtimes = self.runtimes_info().await?;
        if self.opts.json {
            self.out.say(&Json::Object(runtimes).pretty());
            return Ok(());
        }
        if runtimes.is_empty() {
            self.out.say("No Runtimes");
            return Ok(());
        }
        let mut table = Table::new(&["Name", "Description", "Version"]);
        for (_, runtime) in &runtimes {
            table.push(&[
                runtime.get("name").to_ruby_s(),
                runtime.get("description").to_ruby_s(),
                runtime.get("version").to_ruby_s(),
            ]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af frameworks`: the frameworks `/info` offers.
    pub(crate) async fn frameworks(&mut self) -> CmdResult {
        if !self.client()?.logged_in().await? {
            return Err(AfError::Auth.into());
        }
        let frameworks = self.frameworks_info().await?;
        if self.opts.json {
            let list = Json::Array(
                frameworks
                    .iter()
                    .map(|f| Json::Array(vec![Json::str(f.as_str())]))
                    .collect(),
            );
            self.out.say(&list.pretty());
            return Ok(());
        }
        if frameworks.is_empty() {
            self.out.say("No Frameworks");
            return Ok(());
        }
        let mut table = Table::new(&["Name"]);
        for name in &frameworks {
            table.push(&[name]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af infras`: AppFog's infrastructures.
    pub(crate) async fn infras(&mut self) -> CmdResult {
        let infras = self.client()?.infras().await;
        if infras.is_empty() {
            self.out.say("Multiple infras not supported");
            return Ok(());
        }
        let unavailable = infras
            .iter()
            .any(|i| i.contains_key("available") && i.get("available") == &Json::Bool(false));
        let table = if unavailable {
            let mut table = Table::new(&["Name", "Description", "Message"]);
            for i in &infras {
                let message = if i.get("available").truthy() {
                    String::new()
                } else {
                    format!("Unavailable - {}", i.get("unavail_message").to_ruby_s())
                };
                table.push(&[
                    i.get("infra").to_ruby_s(),
                    i.get("description").to_ruby_s(),
                    message,
                ]);
            }
            table
        } else {
            let mut table = Table::new(&["Name", "Description"]);
            for i in &infras {
                table.push(&[i.get("infra").to_ruby_s(), i.get("description").to_ruby_s()]);
            }
            table
        };
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af aliases`.
    pub(crate) fn aliases_cmd(&mut self) -> CmdResult {
        let aliases = self.config.aliases();
        if self.opts.json {
            let json = Json::Object(
                aliases
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::from(v.clone())))
                    .collect(),
            );
            self.out.say(&json.pretty());
            return Ok(());
        }
        if aliases.is_empty() {
            self.out.say("No Aliases");
            return Ok(());
        }
        let mut table = Table::new(&["Alias", "Command"]);
        for (k, v) in &aliases {
            table.push(&[k.clone(), v.clone().unwrap_or_default()]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af alias NAME=COMMAND` or `af alias NAME COMMAND`.
    pub(crate) fn alias(&mut self, key: &str, value: Option<&str>) -> CmdResult {
        let (key, value) = match value {
            Some(v) => (key.to_owned(), Some(v.to_owned())),
            None => {
                // Ruby's `split('=')` (trailing empty pieces dropped): the first two pieces.
                let pieces = crate::commands::ruby_split(key, '=');
                (
                    pieces.first().cloned().unwrap_or_default(),
                    pieces.get(1).cloned(),
                )
            }
        };
        let mut aliases = self.config.aliases();
        match aliases.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value.clone(),
            None => aliases.push((key.clone(), value.clone())),
        }
        self.config
            .store_aliases(&aliases)
            .map_err(|e| Failure::message(e.to_string()))?;
        self.out.say(&self.out.green(&format!(
            "Successfully aliased '{key}' to '{}'",
            value.unwrap_or_default()
        )));
        Ok(())
    }

    /// `af unalias NAME`.
    pub(crate) fn unalias(&mut self, key: &str) -> CmdResult {
        let mut aliases = self.config.aliases();
        if let Some(index) = aliases.iter().position(|(k, _)| k == key) {
            aliases.remove(index);
            self.config
                .store_aliases(&aliases)
                .map_err(|e| Failure::message(e.to_string()))?;
            self.out
                .say(&self.out.green(&format!("Successfully unaliased '{key}'")));
        } else {
            self.out
                .say(&self.out.red(&format!("Unknown alias '{key}'")));
        }
        Ok(())
    }

    /// `af rails-console`: needs Caldecott, which af tells you to install.
    pub(crate) fn console(&mut self) -> CmdResult {
        self.caldecott_missing("vmc rails-console")
    }

    fn caldecott_missing(&mut self, command: &str) -> CmdResult {
        for line in [
            format!("To use `{command}', you must first install Caldecott:"),
            String::new(),
            "\tgem install caldecott".into(),
            String::new(),
            "Note that you'll need a C compiler. If you're on OS X, Xcode".into(),
            "will provide one. If you're on Windows, try DevKit.".into(),
            String::new(),
            "This manual step will be removed in the future.".into(),
            String::new(),
        ] {
            self.out.say(&line);
        }
        Err(Failure::err("Caldecott is not installed."))
    }

    /// `af micro …`: Micro Cloud Foundry VMs are not something this client drives.
    pub(crate) fn micro(&mut self) -> CmdResult {
        Err(Failure::err(
            "Micro Cloud Foundry is not supported by this af (it drives a local VMware VM)",
        ))
    }
}

/// A count of megabytes as bytes, keeping Ruby's Integer or Float.
fn megabytes(value: &Json) -> Json {
    match value {
        Json::Int(i) => Json::Int(i.saturating_mul(1024 * 1024)),
        Json::Float(f) => Json::Float(f * 1024.0 * 1024.0),
        _ => Json::Null,
    }
}

fn or_zero(value: &Json) -> Json {
    if value.truthy() {
        value.clone()
    } else {
        Json::Int(0)
    }
}
