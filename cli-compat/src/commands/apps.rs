//! The app commands that read or change an existing app (af's `commands/apps.rb`): `apps`,
//! `start`, `stop`, `restart`, `mem`, `map`, `unmap`, `delete`, `files`, `logs`, `crashes`,
//! `crashlogs`, `instances`, `stats`, `env`, `env-add`, `env-del`, `rename`, and af's start
//! polling.

use crate::error::{AfError, CmdResult, Failure};
use crate::frameworks::Framework;
use crate::json::Json;
use crate::output::{pretty_size, uptime_string};
use crate::prompt::{Ask, AskDefault};
use crate::session::Session;
use crate::table::Table;

/// af's start constants (`apps.rb`), in polls: dots are printed for the first 26 polls, a
/// missing health gives up after the 6th, the startup log is tailed after the 45th, and the
/// wait ends after the 120th.
const TICKER_TICKS: u32 = 25;
const HEALTH_TICKS: u32 = 5;
const TAIL_TICKS: u32 = 45;
const GIVEUP_TICKS: u32 = 120;
const LINE_LENGTH: usize = 80;

/// af's `health(app)`: `RUNNING`, `STOPPED`, a percentage of instances up, or `N/A`.
pub(crate) fn health(app: &Json) -> String {
    let state = app.get("state");
    if !state.truthy() {
        return "N/A".into();
    }
    if state.as_str() == Some("STOPPED") {
        return "STOPPED".into();
    }
    let running = app.get("runningInstances");
    let expected = app.get("instances").as_f64();
    if state.as_str() == Some("STARTED")
        && let (Some(expected), Some(running)) = (expected, running.as_f64())
        && expected > 0.0
    {
        let ratio: f64 = format!("{:.3}", running / expected).parse().unwrap_or(0.0);
        return if ratio == 1.0 {
            "RUNNING".into()
        } else {
            format!("{}%", (ratio * 100.0).round() as i64)
        };
    }
    if state.as_str() == Some("STARTED") {
        return "N/A".into();
    }
    state.to_ruby_s()
}

/// af's `mem_choice_to_quota`: `128M` → 128 (`/(\d+)M/i`), else `to_i * 1024` (`1G` → 1024).
pub(crate) fn mem_choice_to_quota(choice: &str) -> i64 {
    let bytes = choice.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if b.eq_ignore_ascii_case(&b'M') && i > 0 && bytes[i - 1].is_ascii_digit() {
            let start = bytes[..i]
                .iter()
                .rposition(|c| !c.is_ascii_digit())
                .map_or(0, |p| p + 1);
            return choice[start..i].parse().unwrap_or(i64::MAX);
        }
    }
    crate::prompt::ruby_to_i(choice).saturating_mul(1024)
}

/// af's `mem_quota_to_choice`: 128 → `128M`, 2048 → `2G`.
pub(crate) fn mem_quota_to_choice(mem: &Json) -> String {
    let value = mem.as_f64().unwrap_or(0.0);
    if value < 1024.0 {
        format!("{}M", mem.to_ruby_s())
    } else {
        format!("{}G", (value / 1024.0).trunc() as i64)
    }
}

/// af's `normalize_mem`: a bare number is megabytes.
pub(crate) fn normalize_mem(mem: &str) -> String {
    if mem.to_ascii_uppercase().contains(['K', 'G', 'M']) {
        mem.to_owned()
    } else {
        format!("{mem}M")
    }
}

/// Ruby's `split(sep)` (trailing empty pieces dropped, an empty string has none).
pub(crate) fn ruby_split(text: &str, separator: char) -> Vec<String> {
    let mut pieces: Vec<String> = text.split(separator).map(str::to_owned).collect();
    while pieces.last().is_some_and(String::is_empty) {
        pieces.pop();
    }
    pieces
}

fn ruby_lines(text: &str) -> Vec<String> {
    ruby_split(text, '\n')
}

impl Session<'_> {
    /// `af apps`: every app, sorted by name.
    pub(crate) async fn list(&mut self) -> CmdResult {
        let apps = self.client()?.apps().await?;
        let mut apps = apps.items().to_vec();
        apps.sort_by_key(|a| a.get("name").to_ruby_s());
        if self.opts.json {
            self.out.say(&Json::Array(apps).pretty());
            return Ok(());
        }
        self.out.say("\n");
        if apps.is_empty() {
            self.out.say("No Applications");
            return Ok(());
        }
        let infra_supported = apps.iter().any(|a| a.get("infra").truthy());
        let mut table = Table::new(&["Application", "# ", "Health", "URLS", "Services"]);
        if infra_supported {
            table.push_late_heading("In");
        }
        for app in &apps {
            let mut row = vec![
                app.get("name").to_ruby_s(),
                app.get("instances").to_ruby_s(),
                health(app),
                join(app.get("uris")),
                join(app.get("services")),
            ];
            if infra_supported {
                row.push(if app.get("infra").truthy() {
                    app.get("infra").get("provider").to_ruby_s()
                } else {
                    "   ".into()
                });
            }
            table.push(&row);
        }
        self.out.say(&table.render());
        Ok(())
    }

    /// `af map APP URL`: the URL appended as typed, the whole document PUT back.
    pub(crate) async fn map(&mut self, name: &str, url: &str) -> CmdResult {
        let client = self.client()?;
        let mut app = client.app_info(name).await?;
        let mut uris = app.get("uris").items().to_vec();
        uris.push(Json::str(url));
        app.set("uris", Json::Array(uris));
        client.update_app(name, &app).await?;
        self.out.say(&self.out.green("Successfully mapped url"));
        Ok(())
    }

    /// `af unmap APP URL`: `http(s)://` dropped; the URL must be mapped exactly.
    pub(crate) async fn unmap(&mut self, name: &str, url: &str) -> CmdResult {
        let client = self.client()?;
        let mut app = client.app_info(name).await?;
        let url = strip_scheme(url);
        let uris = app.get("uris").items().to_vec();
        if !uris.iter().any(|u| u.as_str() == Some(url)) {
            return Err(Failure::err("Invalid url"));
        }
        let kept: Vec<Json> = uris
            .into_iter()
            .filter(|u| u.as_str() != Some(url))
            .collect();
        app.set("uris", Json::Array(kept));
        client.update_app(name, &app).await?;
        self.out.say(&self.out.green("Successfully unmapped url"));
        Ok(())
    }

    /// `af mem APP [SIZE]`: asks for the size when none is given (even with `-n`, as af).
    pub(crate) async fn mem(&mut self, name: &str, size: Option<&str>) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        let current_choice = mem_quota_to_choice(app.get("resources").get("memory"));
        let wanted = match size {
            Some(size) => normalize_mem(size),
            None => {
                let choices = self.mem_choices().await?;
                self.ask(
                    Ask::new("Update Memory Reservation?")
                        .default(AskDefault::Text(current_choice.clone()))
                        .choices(choices),
                )?
                .text()
                .unwrap_or_default()
            }
        };
        let current = mem_choice_to_quota(&current_choice);
        let wanted_quota = mem_choice_to_quota(&wanted);
        self.out.print(&format!(
            "Updating Memory Reservation to {}: ",
            mem_quota_to_choice(&Json::Int(wanted_quota))
        ));
        let instances = app.get("instances").as_i64().unwrap_or(0);
        self.check_has_capacity_for((wanted_quota - current) * instances)
            .await?;
        if wanted_quota != current {
            let mut resources = app.get("resources").clone();
            resources.set("memory", Json::Int(wanted_quota));
            app.set("resources", resources);
            self.client()?.update_app(name, &app).await?;
            self.out.ok();
            if app.get("state").as_str() == Some("STARTED") {
                self.restart(Some(name)).await?;
            }
        } else {
            self.out.ok();
        }
        Ok(())
    }

    /// af's `mem_choices`: the sizes that fit what is left of the account's memory.
    pub(crate) async fn mem_choices(&mut self) -> CmdResult<Vec<String>> {
        let all = ["64M", "128M", "256M", "512M", "1G", "2G"];
        let info = self.client_info().await?;
        let (usage, limits) = (info.get("usage"), info.get("limits"));
        if !usage.truthy() || !limits.truthy() {
            return Ok(all.iter().map(|s| (*s).to_owned()).collect());
        }
        let available = number_to_i(limits.get("memory")) - number_to_i(usage.get("memory"));
        if available < 64 {
            self.check_has_capacity_for(64).await?;
        }
        let count = match available {
            a if a < 128 => 1,
            a if a < 256 => 2,
            a if a < 512 => 3,
            a if a < 1024 => 4,
            a if a < 2048 => 5,
            _ => 6,
        };
        Ok(all[..count].iter().map(|s| (*s).to_owned()).collect())
    }

    /// af's `check_has_capacity_for(megabytes)`.
    pub(crate) async fn check_has_capacity_for(&mut self, wanted: i64) -> CmdResult {
        let info = self.client_info().await?;
        let (usage, limits) = (info.get("usage"), info.get("limits"));
        if !usage.truthy() || !limits.truthy() {
            return Ok(());
        }
        let available = number_to_i(limits.get("memory")) - number_to_i(usage.get("memory"));
        if wanted > available {
            let bytes = |mb: i64| Json::Int(mb.saturating_mul(1024 * 1024));
            let total = pretty_size(&bytes(number_to_i(limits.get("memory"))), 1);
            let used = pretty_size(&bytes(number_to_i(usage.get("memory"))), 1);
            self.out
                .say(&self.out.yellow("Not enough capacity for operation."));
            let left = pretty_size(&bytes(available), 1);
            return Err(Failure::err(format!(
                "Current Usage: ({used} of {total} total, {left} available for use)"
            )));
        }
        Ok(())
    }

    /// af's `check_app_limit`.
    pub(crate) async fn check_app_limit(&mut self) -> CmdResult {
        let info = self.client_info().await?;
        let (usage, limits) = (info.get("usage"), info.get("limits"));
        if !usage.truthy() || !limits.truthy() || !limits.get("apps").truthy() {
            return Ok(());
        }
        if limits.get("apps") == usage.get("apps") {
            self.out
                .say(&self.out.red("Not enough capacity for operation."));
            let apps = usage.get("apps");
            return Err(Failure::err(format!(
                "Current Usage: ({} of {} total apps already in use)",
                if apps.truthy() {
                    apps.to_ruby_s()
                } else {
                    "0".into()
                },
                limits.get("apps").to_ruby_s()
            )));
        }
        Ok(())
    }

    /// `af delete APP` / `af delete --all`.
    pub(crate) async fn delete(&mut self, name: Option<&str>) -> CmdResult {
        let force = self.opts.force;
        if self.opts.all {
            let go = self.no_prompt()
                || force
                || self
                    .ask(Ask::new("Delete ALL applications?").yes_no(false))?
                    .yes();
            if go {
                let apps = self.client()?.apps().await?;
                for app in apps.items() {
                    self.delete_app(&app.get("name").to_ruby_s(), force).await?;
                }
            }
            return Ok(());
        }
        let Some(name) = name else {
            return Err(Failure::err("No valid appname given"));
        };
        self.delete_app(name, force).await
    }

    /// af's `delete_app`: the app, then its services when asked to (only `-n --force` deletes
    /// them without asking).
    pub(crate) async fn delete_app(&mut self, name: &str, force: bool) -> CmdResult {
        let app = self.client()?.app_info(name).await?;
        let all_apps = self.client()?.apps().await?;
        let mut to_delete = Vec::new();
        for service in app.get("services").items() {
            let service = service.to_ruby_s();
            let mut delete = force && self.no_prompt();
            if !self.no_prompt() && !force {
                delete = self
                    .ask(
                        Ask::new(format!(
                            "Provisioned service [{service}] detected, would you like to delete it?"
                        ))
                        .yes_no(false),
                    )?
                    .yes();
                if delete {
                    let others: Vec<String> = all_apps
                        .items()
                        .iter()
                        .filter(|a| {
                            a.get("services")
                                .items()
                                .iter()
                                .any(|s| s.to_ruby_s() == service)
                        })
                        .map(|a| a.get("name").to_ruby_s())
                        .filter(|n| n != name)
                        .collect();
                    if !others.is_empty() {
                        let listed: Vec<String> =
                            others.iter().map(|o| crate::json::inspect_str(o)).collect();
                        delete = self
                            .ask(
                                Ask::new(format!(
                                    "Provisioned service [{service}] is also used by {} [{}], are you sure you want to delete it?",
                                    if others.len() == 1 { "app" } else { "apps" },
                                    listed.join(", ")
                                ))
                                .yes_no(false),
                            )?
                            .yes();
                    }
                }
            }
            if delete {
                to_delete.push(service);
            }
        }
        self.out.print(&format!("Deleting application [{name}]: "));
        self.client()?.delete_app(name).await?;
        self.out.ok();
        for service in to_delete {
            self.delete_service_banner(&service).await?;
        }
        Ok(())
    }

    /// `af files APP [PATH]`: any 404, 400 or other error on the way is "No such file or
    /// directory", as af rescues it around the whole command.
    pub(crate) async fn files(&mut self, name: &str, path: &str) -> CmdResult {
        match self.files_inner(name, path).await {
            Err(Caught::Af(AfError::NotFound(_) | AfError::Target(_))) => {
                Err(Failure::err("No such file or directory"))
            }
            Err(Caught::Af(other)) => Err(other.into()),
            Err(Caught::Failure(failure)) => Err(failure),
            Ok(()) => Ok(()),
        }
    }

    async fn files_inner(&mut self, name: &str, path: &str) -> Result<(), Caught> {
        if self.opts.all && self.opts.instance.is_none() {
            return self.all_files(name, path).await;
        }
        let instance = self.opts.instance.clone().unwrap_or_else(|| "0".into());
        let content = self.client()?.app_files(name, path, &instance).await?;
        self.out.say(&content);
        Ok(())
    }

    async fn all_files(&mut self, name: &str, path: &str) -> Result<(), Caught> {
        let envelope = self.client()?.app_instances(name).await?;
        if envelope.as_array().is_some() {
            return Ok(());
        }
        for entry in envelope.get("instances").items() {
            let index = entry.get("index").to_ruby_s();
            match self.client()?.app_files(name, path, &index).await {
                Ok(content) => {
                    let banner = format!(
                        "{}\n",
                        self.out.bold(&format!("====> [{index}: {path}] <===="))
                    );
                    self.display_logfile(path, &content, &index, Some(&banner));
                }
                Err(AfError::NotFound(_) | AfError::Target(_)) => {}
                Err(other) => return Err(Caught::Af(other)),
            }
        }
        Ok(())
    }

    /// af's `display_logfile`.
    fn display_logfile(&self, path: &str, content: &str, instance: &str, banner: Option<&str>) {
        if content.is_empty() {
            return;
        }
        let banner = banner.map_or_else(|| format!("====> {path} <====\n\n"), str::to_owned);
        self.out.say(&banner);
        if self.opts.prefix_logs {
            let prefix = self.out.bold(&format!("[{instance}: {path}] -"));
            for line in ruby_lines(content) {
                self.out.say(&format!("{prefix} {line}"));
            }
        } else {
            self.out.say(content);
        }
        self.out.say("");
    }

    /// `af logs APP [--instance N | --all]`.
    pub(crate) async fn logs(&mut self, name: &str) -> CmdResult {
        self.client()?.app_info(name).await?;
        if self.opts.all && self.opts.instance.is_none() {
            let envelope = self.client()?.app_instances(name).await?;
            if envelope.as_array().is_some() {
                return Ok(());
            }
            for entry in envelope.get("instances").items() {
                self.grab_logs(name, &entry.get("index").to_ruby_s())
                    .await?;
            }
            return Ok(());
        }
        let instance = self.opts.instance.clone().unwrap_or_else(|| "0".into());
        self.grab_logs(name, &instance).await
    }

    async fn grab_logs(&mut self, name: &str, instance: &str) -> CmdResult {
        for path in self.files_under(name, instance, "/logs").await? {
            match self.client()?.app_files(name, &path, instance).await {
                Ok(content) => self.display_logfile(&path, &content, instance, None),
                Err(AfError::NotFound(_) | AfError::Target(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Ok(())
    }

    /// af's `files_under`: the listing's first word on each line, under `path`.
    async fn files_under(
        &mut self,
        name: &str,
        instance: &str,
        path: &str,
    ) -> CmdResult<Vec<String>> {
        match self.client()?.app_files(name, path, instance).await {
            Ok(listing) => Ok(ruby_lines(&listing)
                .iter()
                .map(|line| format!("{path}/{}", line.split_whitespace().next().unwrap_or("")))
                .collect()),
            Err(AfError::NotFound(_) | AfError::Target(_)) => Ok(Vec::new()),
            Err(other) => Err(other.into()),
        }
    }

    /// `af crashes APP`; also af's crash check while starting (`since`, nothing printed).
    /// Always rewrites `~/.af_instances`.
    pub(crate) async fn crashes(
        &mut self,
        name: &str,
        print: bool,
        since: i64,
    ) -> CmdResult<Vec<Json>> {
        let answer = self.client()?.app_crashes(name).await?;
        let mut crashed: Vec<Json> = answer
            .get("crashes")
            .items()
            .iter()
            .filter(|c| c.get("since").as_f64().unwrap_or(0.0) >= since as f64)
            .cloned()
            .collect();
        crashed.sort_by(|a, b| {
            let (a, b) = (a.get("since").as_f64(), b.get("since").as_f64());
            a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut map = Json::object();
        let mut table = Table::new(&["Name", "Instance ID", "Crashed Time"]);
        for (i, crash) in crashed.iter().enumerate() {
            let label = format!("{name}-{}", i + 1);
            map.set(&label, crash.get("instance").clone());
            table.push(&[
                label,
                crash.get("instance").to_ruby_s(),
                self.format_time(crash.get("since")),
            ]);
        }
        self.config
            .store_instances(&map)
            .map_err(|e| Failure::message(e.to_string()))?;
        if self.opts.json {
            self.out.say(&Json::Array(crashed.clone()).pretty());
        } else if print {
            self.out.say("\n");
            if crashed.is_empty() {
                self.out.say(&format!("No crashed instances for [{name}]"));
            } else {
                self.out.say(&table.render());
            }
        }
        Ok(crashed)
    }

    /// `af crashlogs APP`.
    pub(crate) async fn crashlogs(&mut self, name: &str) -> CmdResult {
        let instance = self.opts.instance.clone().unwrap_or_else(|| "0".into());
        self.grab_crash_logs(name, &instance, false).await
    }

    /// af's `grab_crash_logs`: every file under `/logs`, `/app/logs` and `/app/log`.
    async fn grab_crash_logs(&mut self, name: &str, instance: &str, was_staged: bool) -> CmdResult {
        if !was_staged {
            self.crashes(name, false, 0).await?;
        }
        let map = self
            .config
            .instances()
            .map_err(|e| Failure::message(e.to_string()))?
            .unwrap_or_else(Json::object);
        let instance = match map.get(instance) {
            value if value.truthy() => value.to_ruby_s(),
            _ => instance.to_owned(),
        };
        let mut paths = self.files_under(name, &instance, "/logs").await?;
        paths.extend(self.files_under(name, &instance, "/app/logs").await?);
        paths.extend(self.files_under(name, &instance, "/app/log").await?);
        for path in paths {
            let content = self.client()?.app_files(name, &path, &instance).await?;
            self.display_logfile(&path, &content, &instance, None);
        }
        Ok(())
    }

    /// `af instances APP [N|+N|-N]`.
    pub(crate) async fn instances(&mut self, name: &str, number: Option<&str>) -> CmdResult {
        match number {
            Some(number) => self.change_instances(name, number).await,
            None => self.get_instances(name).await,
        }
    }

    async fn get_instances(&mut self, name: &str) -> CmdResult {
        let envelope = self.client()?.app_instances(name).await?;
        let mut instances = if envelope.as_array().is_some() {
            Vec::new()
        } else {
            envelope.get("instances").items().to_vec()
        };
        instances.sort_by_key(|i| i.get("index").as_i64().unwrap_or(0));
        if self.opts.json {
            self.out.say(&Json::Array(instances).pretty());
            return Ok(());
        }
        if instances.is_empty() {
            self.out.say(
                &self
                    .out
                    .yellow(&format!("No running instances for [{name}]")),
            );
            return Ok(());
        }
        let show_debug = instances.iter().any(|e| e.get("debug_port").truthy());
        let mut headings = vec!["Index", "State", "Start Time"];
        if show_debug {
            headings.extend(["Debug IP", "Debug Port"]);
        }
        let mut table = Table::new(&headings);
        for entry in &instances {
            let mut row = vec![
                entry.get("index").to_ruby_s(),
                entry.get("state").to_ruby_s(),
                self.format_time(entry.get("since")),
            ];
            if show_debug {
                row.push(entry.get("debug_ip").to_ruby_s());
                row.push(entry.get("debug_port").to_ruby_s());
            }
            table.push(&row);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    async fn change_instances(&mut self, name: &str, number: &str) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        // af: `number.match(/([+-])?\d+/)`, anywhere in the word, then `to_i` of the word.
        let Some(digits_at) = number.find(|c: char| c.is_ascii_digit()) else {
            return Err(Failure::err(format!(
                "Invalid number of instances '{number}'"
            )));
        };
        let signed = digits_at > 0 && matches!(&number[digits_at - 1..digits_at], "+" | "-");
        let value = crate::prompt::ruby_to_i(number);
        let current = app.get("instances").as_i64().unwrap_or(0);
        let wanted = if signed { current + value } else { value };
        if wanted < 1 {
            return Err(Failure::err("There must be at least 1 instance."));
        }
        if current == wanted {
            let plural = if wanted > 1 { "s" } else { "" };
            self.out.say(&self.out.yellow(&format!(
                "Application [{name}] is already running {wanted} instance{plural}."
            )));
            return Ok(());
        }
        let direction = if wanted > current { "up" } else { "down" };
        self.out.print(&format!(
            "Scaling Application instances {direction} to {wanted}: "
        ));
        app.set("instances", Json::Int(wanted));
        self.client()?.update_app(name, &app).await?;
        self.out.ok();
        Ok(())
    }

    /// `af stats [APP]`: per instance CPU, memory, disk and uptime.
    pub(crate) async fn stats(&mut self, name: Option<&str>) -> CmdResult {
        if let Some(name) = name {
            self.out.print("\n");
            return self.do_stats(name).await;
        }
        for entry in self.each_app(true)? {
            self.enter_app(&entry);
            let name = entry.name.clone().unwrap_or_default();
            self.out.say(&format!("\n{name}:"));
            let result = self.do_stats(&name).await;
            self.leave_app();
            result?;
        }
        Ok(())
    }

    async fn do_stats(&mut self, name: &str) -> CmdResult {
        let stats = self.client()?.app_stats(name).await?;
        if self.opts.json {
            let list: Vec<Json> = stats
                .iter()
                .map(|(index, entry)| {
                    let mut entry = entry.clone();
                    entry.set("instance", Json::Int(*index));
                    entry
                })
                .collect();
            self.out.say(&Json::Array(list).pretty());
            return Ok(());
        }
        if stats.is_empty() {
            self.out.say(
                &self
                    .out
                    .yellow(&format!("No running instances for [{name}]")),
            );
            return Ok(());
        }
        let mut table = Table::new(&[
            "Instance",
            "CPU (Cores)",
            "Memory (limit)",
            "Disk (limit)",
            "Uptime",
        ]);
        for (index, entry) in &stats {
            let stat = entry.get("stats");
            let uptime = uptime_string(stat.get("uptime").as_f64().unwrap_or(0.0) as i64);
            let usage = stat.get("usage");
            let (cpu, mem, disk) = if usage.truthy() {
                let mem = match usage.get("mem") {
                    Json::Int(k) => Json::Int(k.saturating_mul(1024)),
                    Json::Float(k) => Json::Float(k * 1024.0),
                    _ => Json::Null,
                };
                (usage.get("cpu").clone(), mem, usage.get("disk").clone())
            } else {
                (Json::Null, Json::Null, Json::Null)
            };
            let mem = format!(
                "{} ({})",
                pretty_size(&mem, 1),
                pretty_size(stat.get("mem_quota"), 0)
            );
            let disk = format!(
                "{} ({})",
                pretty_size(&disk, 1),
                pretty_size(stat.get("disk_quota"), 0)
            );
            let cpu = if cpu.truthy() {
                cpu.to_ruby_s()
            } else {
                "NA".into()
            };
            let cpu = format!("{cpu}% ({})", stat.get("cores").to_ruby_s());
            table.push(&[index.to_string(), cpu, mem, disk, uptime]);
        }
        self.out.say(&table.render());
        Ok(())
    }

    /// `af env APP`.
    pub(crate) async fn environment(&mut self, name: &str) -> CmdResult {
        let app = self.client()?.app_info(name).await?;
        let env = app.get("env").items().to_vec();
        if self.opts.json {
            self.out.say(&Json::Array(env).pretty());
            return Ok(());
        }
        if env.is_empty() {
            self.out.say("No Environment Variables");
            return Ok(());
        }
        let mut table = Table::new(&["Variable", "Value"]);
        for entry in &env {
            let text = entry.to_ruby_s();
            let (k, v) = match text.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (text.clone(), String::new()),
            };
            table.push(&[k, v]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `af env-add APP K=V` or `af env-add APP K V`: added, then a restart if it runs.
    pub(crate) async fn environment_add(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        let (key, value) = match value {
            Some(v) => (key.to_owned(), v.to_owned()),
            None => match key.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (key.to_owned(), String::new()),
            },
        };
        let mut env = app.get("env").items().to_vec();
        env.push(Json::Str(format!("{key}={value}")));
        self.out
            .print(&format!("Adding Environment Variable [{key}={value}]: "));
        app.set("env", Json::Array(env));
        self.client()?.update_app(name, &app).await?;
        self.out.ok();
        if app.get("state").as_str() == Some("STARTED") {
            self.restart(Some(name)).await?;
        }
        Ok(())
    }

    /// `af env-del APP K`: removed, then a restart if it runs.
    pub(crate) async fn environment_del(&mut self, name: &str, variable: &str) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        let env = app.get("env").items().to_vec();
        let found = env
            .iter()
            .find(|e| ruby_split(&e.to_ruby_s(), '=').first().map(String::as_str) == Some(variable))
            .cloned();
        self.out
            .print(&format!("Deleting Environment Variable [{variable}]: "));
        match found {
            Some(found) => {
                let kept: Vec<Json> = env.into_iter().filter(|e| *e != found).collect();
                app.set("env", Json::Array(kept));
                self.client()?.update_app(name, &app).await?;
                self.out.ok();
                if app.get("state").as_str() == Some("STARTED") {
                    self.restart(Some(name)).await?;
                }
            }
            None => self.out.ok(),
        }
        Ok(())
    }

    /// `af rename OLD NEW`.
    pub(crate) async fn rename(&mut self, old: &str, new: &str) -> CmdResult {
        if self.app_exists(new).await? {
            return Err(Failure::err(format!("Application '{new}' already exists")));
        }
        let mut app = self.client()?.app_info(old).await?;
        app.set("name", Json::str(new));
        self.client()?.update_app(old, &app).await?;
        self.out.say(
            &self
                .out
                .green(&format!("Successfully updated app name to {new}")),
        );
        Ok(())
    }

    /// af's `app_exists?`: only a 404 or 400 means no.
    pub(crate) async fn app_exists(&mut self, name: &str) -> CmdResult<bool> {
        match self.client()?.app_info(name).await {
            Ok(app) => Ok(!app.is_null()),
            Err(AfError::NotFound(_)) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    /// `af start [APP]`: every app of the manifest when no name is given.
    pub(crate) async fn start(&mut self, name: Option<&str>, push: bool) -> CmdResult {
        if let Some(name) = name {
            return self.do_start(name, push).await;
        }
        for entry in self.each_app(true)? {
            self.enter_app(&entry);
            let result = self
                .do_start(&entry.name.clone().unwrap_or_default(), push)
                .await;
            self.leave_app();
            result?;
        }
        Ok(())
    }

    /// `af stop [APP]`: the manifest's apps in reverse order when no name is given.
    pub(crate) async fn stop(&mut self, name: Option<&str>) -> CmdResult {
        if let Some(name) = name {
            return self.do_stop(name).await;
        }
        let mut names: Vec<String> = self
            .each_app(true)?
            .into_iter()
            .map(|e| e.name.unwrap_or_default())
            .collect();
        names.reverse();
        for name in names {
            self.do_stop(&name).await?;
        }
        Ok(())
    }

    /// `af restart [APP]`: stop, then start.
    pub(crate) async fn restart(&mut self, name: Option<&str>) -> CmdResult {
        self.stop(name).await?;
        self.start(name, false).await
    }

    async fn do_stop(&mut self, name: &str) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        if app.get("state").as_str() == Some("STOPPED") {
            self.out.say(
                &self
                    .out
                    .yellow(&format!("Application '{name}' already stopped")),
            );
            return Ok(());
        }
        self.out.print(&format!("Stopping Application '{name}': "));
        app.set("state", Json::str("STOPPED"));
        self.client()?.update_app(name, &app).await?;
        self.out.ok();
        Ok(())
    }

    /// af's `do_start`: the PUT that stages and starts (with a ticker while it runs), then a
    /// look at the app every poll interval until every instance runs, one crashes, or af gives
    /// up.
    pub(crate) async fn do_start(&mut self, name: &str, push: bool) -> CmdResult {
        let mut app = self.client()?.app_info(name).await?;
        if app.is_null() {
            self.out.say(
                &self
                    .out
                    .red(&format!("Application '{name}' could not be found")),
            );
            return Ok(());
        }
        if app.get("state").as_str() == Some("STARTED") {
            self.out.say(
                &self
                    .out
                    .yellow(&format!("Application '{name}' already started")),
            );
            return Ok(());
        }
        if let Some(mode) = self.opts.debug.clone() {
            let runtimes = self.client()?.runtimes_info().await?;
            if !runtimes.truthy() {
                self.out.say("Cannot get runtime information.");
                return Ok(());
            }
            let stack = app.get("staging").get("stack").to_ruby_s();
            let runtime = runtimes.get(&stack);
            if !runtime.truthy() {
                self.out.say("Unknown runtime.");
                return Ok(());
            }
            let modes: Vec<Json> = runtime.get("debug_modes").items().to_vec();
            if !modes.iter().any(|m| m.as_str() == Some(mode.as_str())) {
                self.out.say(&format!(
                    "\nApplication '{name}' cannot start in '{mode}' mode"
                ));
                let list = Json::Array(modes).inspect();
                if push {
                    self.out.say(&format!(
                        "Try 'vmc start' with one of the following modes: {list}"
                    ));
                } else {
                    self.out.say(&format!("Available modes: {list}"));
                }
                return Ok(());
            }
        }

        let banner = format!("Staging Application '{name}': ");
        self.out.print(&banner);
        app.set("state", Json::str("STARTED"));
        app.set("debug", Json::from(self.opts.debug.clone()));
        // af crashes on a framework it does not know; such an app simply has no console.
        let console = app
            .get("staging")
            .get("model")
            .as_str()
            .and_then(Framework::lookup_by_framework)
            .is_some_and(|f| f.console);
        app.set("console", Json::Bool(console));
        let interval = self.ctx.poll_interval;
        let out = self.out.clone();
        {
            let client = self.client()?;
            let put = client.update_app(name, &app);
            tokio::pin!(put);
            // af's ticker thread: a dot at once, then one a second, at most 45, while the PUT
            // (which stages) runs.
            let mut ticks = 0;
            let result = loop {
                if ticks < TAIL_TICKS {
                    tokio::select! {
                        biased;
                        () = async {
                            out.print(".");
                            tokio::time::sleep(interval).await;
                        } => ticks += 1,
                        result = &mut put => break result,
                    }
                } else {
                    break (&mut put).await;
                }
            };
            result?;
        }
        self.out.clear(LINE_LENGTH);
        self.out.say(&format!("{banner}{}", self.out.green("OK")));

        let banner = format!("Starting Application '{name}': ");
        self.out.print(&banner);
        let mut count: u32 = 0;
        let mut log_lines = 0usize;
        let start_time = now_seconds();
        let mut failed = false;
        loop {
            if count <= TICKER_TICKS {
                self.out.print(".");
            }
            tokio::time::sleep(interval).await;
            if self
                .app_started_properly(name, count > HEALTH_TICKS)
                .await?
            {
                break;
            }
            if !self.crashes(name, false, start_time).await?.is_empty() {
                self.out.say(&self.out.red(&format!(
                    "\nError: Application [{name}] failed to start, logs information below.\n"
                )));
                self.grab_crash_logs(name, "0", true).await?;
                if push && !self.no_prompt() {
                    self.out.say("\n");
                    if self
                        .ask(Ask::new("Delete the application?").yes_no(true))?
                        .yes()
                    {
                        self.delete_app(name, false).await?;
                    }
                }
                failed = true;
                break;
            } else if count > TAIL_TICKS {
                log_lines = self.grab_startup_tail(name, log_lines).await?;
            }
            count += 1;
            if count > GIVEUP_TICKS {
                self.out.say(
                    &self
                        .out
                        .yellow("\nApplication is taking too long to start, check your logs"),
                );
                break;
            }
        }
        if failed {
            return Err(Failure::Exit(false));
        }
        self.out.clear(LINE_LENGTH);
        self.out.say(&format!("{banner}{}", self.out.green("OK")));
        Ok(())
    }

    /// af's `app_started_properly`.
    async fn app_started_properly(&mut self, name: &str, error_on_health: bool) -> CmdResult<bool> {
        let app = self.client()?.app_info(name).await?;
        match health(&app).as_str() {
            "N/A" => {
                if error_on_health {
                    return Err(Failure::err(format!(
                        "\nApplication '{name}'s state is undetermined, not enough information available."
                    )));
                }
                Ok(false)
            }
            "RUNNING" => Ok(true),
            _ => {
                if app.get("meta").get("debug").as_str() == Some("suspend") {
                    self.out.say(&format!(
                        "\nApplication [{name}] has started in a mode that is waiting for you to trigger startup."
                    ));
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }

    /// af's `grab_startup_tail`: the new lines of `logs/startup.log`.
    async fn grab_startup_tail(&mut self, name: &str, since: usize) -> CmdResult<usize> {
        match self
            .client()?
            .app_files(name, "logs/startup.log", "0")
            .await
        {
            Ok(content) => {
                let mut shown = 0;
                if !content.is_empty() {
                    if since == 0 {
                        self.out.say("\n==== displaying startup log ====\n\n");
                    }
                    let lines = ruby_lines(&content);
                    let tail: Vec<String> = lines.iter().skip(since).cloned().collect();
                    shown = tail.len();
                    if shown > 0 {
                        self.out.say(&tail.join("\n"));
                    }
                }
                Ok(since + shown)
            }
            Err(AfError::NotFound(_) | AfError::Target(_)) => Ok(0),
            Err(other) => Err(other.into()),
        }
    }
}

/// A failure inside `af files`, where client errors are caught.
enum Caught {
    Af(AfError),
    Failure(Failure),
}

impl From<AfError> for Caught {
    fn from(error: AfError) -> Caught {
        Caught::Af(error)
    }
}

impl From<Failure> for Caught {
    fn from(failure: Failure) -> Caught {
        Caught::Failure(failure)
    }
}

fn join(list: &Json) -> String {
    list.items()
        .iter()
        .map(Json::to_ruby_s)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `url.gsub(/^http(s*):\/\//i, '')`.
pub(crate) fn strip_scheme(url: &str) -> &str {
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("http") {
        let s_count = rest.chars().take_while(|c| *c == 's').count();
        if rest[s_count..].starts_with("://") {
            return &url[4 + s_count + 3..];
        }
    }
    url
}

/// Ruby's `to_i` on a JSON number.
fn number_to_i(value: &Json) -> i64 {
    match value {
        Json::Int(i) => *i,
        Json::Float(f) => f.trunc() as i64,
        Json::Str(s) => crate::prompt::ruby_to_i(s),
        _ => 0,
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_like_af() {
        let app = |s: &str| Json::parse(s).unwrap();
        assert_eq!(health(&app(r#"{"state":"STOPPED"}"#)), "STOPPED");
        assert_eq!(
            health(&app(
                r#"{"state":"STARTED","instances":1,"runningInstances":1}"#
            )),
            "RUNNING"
        );
        assert_eq!(
            health(&app(
                r#"{"state":"STARTED","instances":1,"runningInstances":0}"#
            )),
            "0%"
        );
        assert_eq!(
            health(&app(
                r#"{"state":"STARTED","instances":3,"runningInstances":2}"#
            )),
            "67%"
        );
        assert_eq!(
            health(&app(
                r#"{"state":"STARTED","instances":2,"runningInstances":3}"#
            )),
            "150%"
        );
        assert_eq!(health(&app(r#"{"state":"STARTED","instances":1}"#)), "N/A");
        assert_eq!(health(&app(r#"{"state":"FLAPPING"}"#)), "FLAPPING");
        assert_eq!(health(&app("{}")), "N/A");
    }

    #[test]
    fn memory_choices() {
        assert_eq!(mem_choice_to_quota("128M"), 128);
        assert_eq!(mem_choice_to_quota("1G"), 1024);
        assert_eq!(mem_choice_to_quota("2g"), 2048);
        assert_eq!(mem_quota_to_choice(&Json::Int(64)), "64M");
        assert_eq!(mem_quota_to_choice(&Json::Int(2048)), "2G");
        assert_eq!(normalize_mem("256"), "256M");
        assert_eq!(normalize_mem("1G"), "1G");
    }

    #[test]
    fn schemes_and_splits() {
        assert_eq!(strip_scheme("http://example.com"), "example.com");
        assert_eq!(strip_scheme("HTTPS://Example.com"), "Example.com");
        assert_eq!(strip_scheme("example.com"), "example.com");
        assert_eq!(ruby_split("a\nb\n\n", '\n'), ["a", "b"]);
        assert_eq!(ruby_split("", '\n'), Vec::<String>::new());
    }
}
