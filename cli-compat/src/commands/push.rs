//! Creating and updating apps (af's `push`, `update`, `clone` and the upload they share,
//! `commands/apps.rb` and `manifest_helper.rb`), and the commands about uploaded bits:
//! `download`, `pull`, `history`, `hash`, `diff`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{AfError, CmdResult, Failure};
use crate::frameworks::{self, Framework};
use crate::json::Json;
use crate::manifest;
use crate::package::{self, Bundle, PackError};
use crate::prompt::{Answer, Ask, AskDefault};
use crate::session::Session;
use crate::table::Table;

use super::apps::{mem_choice_to_quota, normalize_mem};

/// Answers af takes for "yes" where it asked for a URL.
const YES_SET: [&str; 4] = ["y", "Y", "yes", "YES"];

impl Session<'_> {
    /// `af push [APP]`: create, upload and start; every app of the manifest when it has any.
    pub(crate) async fn push(&mut self, name: Option<&str>) -> CmdResult {
        let label = self.opts.label.clone().unwrap_or_default();
        if !self.no_prompt() && self.opts.path.is_none() {
            let proceed = self.ask(
                Ask::new("Would you like to deploy from the current directory?").yes_no(true),
            )?;
            if !proceed.yes() {
                self.path = self
                    .ask(Ask::new("Deployment path"))?
                    .text()
                    .unwrap_or_default();
            }
        }
        let mut pushed = false;
        for entry in self.each_app(false)? {
            self.enter_app(&entry);
            if let Some(app) = &entry.name {
                self.out.say(&format!("Pushing application '{app}'..."));
            }
            let result = self.do_push(&label, entry.name.clone()).await;
            self.leave_app();
            result?;
            pushed = true;
        }
        if !pushed {
            self.application = Some(self.path.clone());
            self.do_push(&label, name.map(str::to_owned)).await?;
        }
        Ok(())
    }

    /// af's `do_push`.
    async fn do_push(&mut self, label: &str, name: Option<String>) -> CmdResult {
        if self.app_info.is_none() && !self.no_prompt() {
            self.interactive_configuration(name.as_deref()).await?;
        }
        let instances = match self.info_value("instances") {
            Json::Null => Json::Int(1),
            other => other,
        };
        let instance_count = number(&instances);
        let no_start = self.opts.no_start;
        let mut name = name.or_else(|| string(&self.info_value("name")));
        let mut url = match self.info_value("url") {
            Json::Null => self.info_value("urls"),
            other => other,
        };
        let memswitch = string(&self.info_value("mem")).map(|m| normalize_mem(&m));
        let mut command = string(&self.info_value("command"));
        let mut runtime = string(&self.info_value("runtime"));
        let infra = string(&self.info_value("infra"));

        if self.client()?.infra_supported().await
            && let Some(infra) = &infra
            && !self.client()?.infra_valid(infra).await
        {
            return Err(Failure::err(format!("Infra '{infra}' is not valid")));
        }
        let mut app_checked = false;
        if let Some(name) = &name {
            if self.app_exists(name).await? {
                return Err(Failure::err(format!(
                    "Application '{name}' already exists, use update"
                )));
            }
            app_checked = true;
        } else if !self.client()?.logged_in().await? {
            return Err(AfError::Auth.into());
        }
        self.check_app_limit().await?;
        if let Some(mem) = &memswitch
            && !no_start
        {
            self.check_has_capacity_for(mem_choice_to_quota(mem) * instance_count)
                .await?;
        }
        if name.is_none() && !self.no_prompt() {
            name = self.ask(Ask::new("Application Name"))?.text();
        }
        let name = match name {
            Some(n) if !n.is_empty() => n,
            _ => return Err(Failure::err("Application Name required.")),
        };
        let application = self
            .application
            .clone()
            .unwrap_or_else(|| self.path.clone());
        let app_path = self.check_deploy_directory(&application)?;
        if !app_checked && self.app_exists(&name).await? {
            return Err(Failure::err(format!(
                "Application '{name}' already exists, use update or delete."
            )));
        }

        let framework = if self.opts.no_framework {
            Some(Framework::unknown())
        } else {
            match self.info_value("framework") {
                Json::Null => self.detect_framework(&app_path, !self.no_prompt()).await?,
                declared => Some(framework_from_manifest(&declared)),
            }
        };
        let Some(framework) = framework else {
            return Err(Failure::err(format!(
                "Application Type undetermined for path '{application}'"
            )));
        };
        if runtime.is_none() && framework.prompt_for_runtime() {
            let default = framework.default_runtime(&app_path);
            runtime = self.detect_runtime(default, !self.no_prompt()).await?;
        }
        if command.is_none()
            && framework.require_start_command()
            && !(self.no_prompt() && is_static_site(&app_path))
        {
            // af asks even with -n; at the end of input this fails rather than ask forever. A
            // static site pushed with -n needs no command: afemu serves its index.html itself
            // (af 0.3.22 asked for one forever; COMPATIBILITY.md).
            command = self.ask(Ask::new("Start Command"))?.text();
        }
        let mut default_url = None;
        if framework.require_url() {
            let base = self.client()?.suggest_url(infra.as_deref()).await;
            default_url = Some(format!("{name}.{base}"));
        }
        if !self.no_prompt() && !url.truthy() && framework.require_url() {
            let answer = self
                .ask(
                    Ask::new("Application Deployed URL").default(AskDefault::Text(
                        default_url.clone().unwrap_or_else(|| "None".into()),
                    )),
                )?
                .text()
                .unwrap_or_default();
            url = if YES_SET.contains(&answer.as_str()) {
                Json::Null
            } else {
                Json::Str(answer)
            };
        }
        if url.as_str() == Some("None") {
            url = Json::Null;
        }
        if !url.truthy() {
            url = default_url.map_or(Json::Null, Json::Str);
        }

        let mem = match memswitch {
            Some(mem) => mem,
            None if !self.no_prompt() => {
                let choices = self.mem_choices().await?;
                self.ask(
                    Ask::new("Memory Reservation")
                        .default(AskDefault::Text(framework.memory(runtime.as_deref())))
                        .choices(choices),
                )?
                .text()
                .unwrap_or_default()
            }
            None => framework.memory(runtime.as_deref()),
        };
        let mem_quota = mem_choice_to_quota(&mem);
        if !no_start {
            self.check_has_capacity_for(mem_quota * instance_count)
                .await?;
        }

        self.out.print("Creating Application: ");
        let uris = match url {
            Json::Null => Json::Array(Vec::new()),
            Json::Array(list) => Json::Array(list),
            other => Json::Array(vec![other]),
        };
        let mut staging = crate::json_object! {
            "framework" => framework.name.as_str(),
            "runtime" => runtime.clone(),
        };
        if let Some(command) = &command {
            staging.set("command", Json::str(command.as_str()));
        }
        let mut document = crate::json_object! {
            "name" => name.as_str(),
            "staging" => staging,
            "uris" => uris,
            "instances" => instances,
            "resources" => crate::json_object! {"memory" => mem_quota},
        };
        if let Some(infra) = &infra {
            document.set("infra", crate::json_object! {"provider" => infra.as_str()});
        }
        self.client()?.create_app(&name, &document).await?;
        self.out.ok();

        let existing: BTreeSet<String> = self
            .client()?
            .services()
            .await?
            .items()
            .iter()
            .map(|s| s.get("name").to_ruby_s())
            .collect();
        let services = self
            .app_info
            .as_ref()
            .map(|info| info.get("services").clone())
            .unwrap_or_default();
        for (service, info) in services.as_object().cloned().unwrap_or_default() {
            if !existing.contains(&service) {
                let vendor = info.get("type").to_ruby_s();
                self.create_service_banner(&vendor, &service, true, infra.as_deref())
                    .await?;
            }
            self.bind_service_banner(&service, &name, true).await?;
        }

        self.upload_app_bits(&name, &app_path, infra.as_deref(), label)
            .await?;
        if !no_start {
            self.start(Some(&name), true).await?;
        }
        Ok(())
    }

    /// af's `check_deploy_directory`, on the path resolved from the working directory (af
    /// resolved it twice after changing into it, so a relative `--path` failed mid-push).
    fn check_deploy_directory(&self, path: &str) -> CmdResult<PathBuf> {
        let resolved = self.ctx.expand_path(path);
        if !resolved.exists() {
            return Err(Failure::err("Deployment path does not exist"));
        }
        let tmp = crate::context::normalize(&std::env::temp_dir());
        if resolved == tmp {
            return Err(Failure::err(format!(
                "Can't deploy applications from staging directory: [{}]",
                tmp.display()
            )));
        }
        Ok(resolved)
    }

    /// af's `detect_framework(prompt_ok)`.
    async fn detect_framework(
        &mut self,
        path: &Path,
        prompt: bool,
    ) -> CmdResult<Option<Framework>> {
        let available = self.frameworks_info().await?;
        let mut framework = frameworks::detect(path, &available);
        if prompt {
            let mut correct = true;
            if let Some(found) = &framework {
                correct = self
                    .ask(Ask::new(format!("Detected a {found}, is this correct?")).yes_no(true))?
                    .yes();
            }
            if framework.is_none() || !correct {
                if framework.is_none() {
                    self.out.say(&format!(
                        "{} Can't determine the Application Type.",
                        self.out.yellow("[WARNING]")
                    ));
                }
                let default = if correct {
                    framework.as_ref().map(ToString::to_string)
                } else {
                    None
                };
                let choice = self.ask(
                    Ask::new("Select Application Type")
                        .indexed()
                        .default(default.map_or(AskDefault::Nil, AskDefault::Text))
                        .choices(Framework::known(&available)),
                )?;
                framework = choice.text().and_then(|key| Framework::lookup(&key));
                self.out.say(&format!(
                    "Selected {}",
                    framework
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ));
            }
        }
        Ok(framework)
    }

    /// af's `detect_runtime(default, prompt_ok)`: the runtime menu, or nothing with `-n`.
    async fn detect_runtime(
        &mut self,
        default: Option<String>,
        prompt: bool,
    ) -> CmdResult<Option<String>> {
        if !prompt {
            return Ok(None);
        }
        let mut keys: Vec<String> = self
            .runtimes_info()
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let runtime = self
            .ask(
                Ask::new("Select Runtime")
                    .indexed()
                    .default(default.map_or(AskDefault::Nil, AskDefault::Text))
                    .choices(keys),
            )?
            .text();
        self.out
            .say(&format!("Selected {}", runtime.clone().unwrap_or_default()));
        Ok(runtime)
    }

    /// af's interactive push (`interact` → `configure_app`), then the offer to save it as a
    /// manifest; leaves the answers as the app's manifest entry.
    async fn interactive_configuration(&mut self, name: Option<&str>) -> CmdResult {
        let key = self.path.clone();
        let mut entry = Json::object();
        entry.set("name", Json::from(name.map(str::to_owned)));
        let mut applications = Json::object();
        applications.set(&key, entry);
        let mut tree = Json::object();
        tree.set("applications", applications);
        self.manifest = Some(tree);
        self.application = Some(key.clone());
        self.configure_app().await?;
        if self
            .ask(Ask::new("Would you like to save this configuration?").yes_no(false))?
            .yes()
        {
            self.save_manifest(None)?;
        }
        let mut tree = self.manifest.take().unwrap_or_default();
        self.resolve_manifest(&mut tree).await?;
        self.app_info = Some(tree.get("applications").get(&key).clone());
        self.manifest = Some(tree);
        Ok(())
    }

    /// af's `manifest(*where)` on the manifest being built.
    fn manifest_value(&self, path: &[&str]) -> Json {
        match &self.manifest {
            Some(m) => manifest::lookup(m, self.application.as_deref(), path).clone(),
            None => Json::Null,
        }
    }

    /// af's `set(what, *where)`: under `applications.<@application>`.
    fn manifest_set(&mut self, value: Json, path: &[&str]) {
        let app = self.application.clone().unwrap_or_default();
        let tree = self.manifest.get_or_insert_with(Json::object);
        let mut node = tree;
        let full: Vec<&str> = ["applications", app.as_str()]
            .into_iter()
            .chain(path.iter().copied())
            .collect();
        for (i, key) in full.iter().enumerate() {
            if i + 1 == full.len() {
                node.set(key, value);
                return;
            }
            if node.get(key).as_object().is_none() {
                node.set(key, Json::object());
            }
            node = node.get_mut(key).expect("just set");
        }
    }

    /// af's `configure_app(true)` (`af manifest`): one app, and more while the user wants.
    pub(crate) async fn configure_many(&mut self) -> CmdResult {
        self.configure_app().await?;
        if self
            .ask(Ask::new("Configure for another application?").yes_no(false))?
            .yes()
        {
            self.application = self.ask(Ask::new("Application path?"))?.text();
            self.configure_app().await?;
        }
        Ok(())
    }

    /// af's `configure_app`: the interactive questions of `af push`.
    async fn configure_app(&mut self) -> CmdResult {
        let application = self.application.clone().unwrap_or_default();
        let app_path = self.ctx.expand_path(&application);
        let mut name = self.manifest_value(&["name"]);
        if !name.truthy() {
            let answer = self.ask(Ask::new("Application Name").default(AskDefault::Nil))?;
            name = Json::from(answer.text());
            self.manifest_set(name.clone(), &["name"]);
        }
        let framework = if self.manifest_value(&["framework"]).truthy() {
            let declared = self.manifest_value(&["framework", "name"]).to_ruby_s();
            Framework::lookup_by_framework(&declared).unwrap_or_else(Framework::unknown)
        } else {
            let framework = self
                .detect_framework(&app_path, true)
                .await?
                .unwrap_or_else(Framework::unknown);
            self.manifest_set(Json::str(framework.name.as_str()), &["framework", "name"]);
            self.manifest_set(
                crate::json_object! {
                    "mem" => framework.mem(),
                    "description" => framework.description.as_str(),
                    "exec" => framework.exec.clone(),
                },
                &["framework", "info"],
            );
            framework
        };
        if !self.manifest_value(&["runtime"]).truthy() && framework.prompt_for_runtime() {
            let default = framework.default_runtime(&app_path);
            let runtime = self.detect_runtime(default, true).await?;
            self.manifest_set(Json::from(runtime), &["runtime"]);
        }
        if framework.require_start_command() {
            let default = string(&self.manifest_value(&["command"]));
            let command = self.ask(
                Ask::new("Start Command")
                    .default(default.map_or(AskDefault::Nil, AskDefault::Text)),
            )?;
            self.manifest_set(Json::from(command.text()), &["command"]);
        }
        if self.client()?.infra_supported().await {
            let mut infra = self
                .opts
                .infra
                .clone()
                .or_else(|| string(&self.manifest_value(&["infra"])));
            if infra.is_none() {
                let descriptions = self.client()?.infra_descriptions().await;
                let choice = self
                    .ask(
                        Ask::new("Select Infrastructure")
                            .indexed()
                            .choices(descriptions),
                    )?
                    .text()
                    .unwrap_or_default();
                infra = Some(self.client()?.infra_name_for_description(&choice).await);
            }
            self.manifest_set(Json::from(infra.clone()), &["infra"]);
            self.client()?.infra = infra;
        }
        let template = string(&self.manifest_value(&["url"]))
            .unwrap_or_else(|| "${name}.${target-base}".into());
        let mut resolved = self.resolve_in_manifest(&template).await?;
        if !framework.require_url() {
            resolved = "None".into();
        }
        let mut url = self
            .ask(Ask::new("Application Deployed URL").default(AskDefault::Text(resolved.clone())))?
            .text()
            .unwrap_or_default();
        if url == resolved && url != "None" {
            url = template;
        }
        if YES_SET.contains(&url.as_str()) {
            url = resolved;
        }
        let url = (url != "None").then_some(url);
        self.manifest_set(Json::from(url), &["url"]);
        let mut default_mem = string(&self.manifest_value(&["mem"]));
        if default_mem.is_none() {
            let runtime = string(&self.manifest_value(&["runtime"]));
            default_mem = Some(framework.memory(runtime.as_deref()));
        }
        let mem = self.ask(
            Ask::new("Memory reservation")
                .default(AskDefault::Text(
                    default_mem.unwrap_or_else(|| "128M".into()),
                ))
                .choices(
                    ["128M", "256M", "512M", "1G", "2G"]
                        .map(String::from)
                        .to_vec(),
                ),
        )?;
        self.manifest_set(Json::from(mem.text()), &["mem"]);
        let default_instances = match self.manifest_value(&["instances"]) {
            Json::Int(i) => AskDefault::Int(i),
            Json::Null => AskDefault::Int(1),
            other => AskDefault::Text(other.to_ruby_s()),
        };
        let instances =
            match self.ask(Ask::new("How many instances?").default(default_instances))? {
                Answer::Int(i) => Json::Int(i),
                other => Json::from(other.text()),
            };
        self.manifest_set(instances, &["instances"]);
        if !self.manifest_value(&["services"]).truthy() {
            self.offer_services(&name.to_ruby_s()).await?;
        }
        Ok(())
    }

    /// The "bind existing / create services" questions of the interactive push.
    async fn offer_services(&mut self, name: &str) -> CmdResult {
        let infra = string(&self.manifest_value(&["infra"]));
        let all = self.client()?.services().await?.items().to_vec();
        let mut user_services: Vec<Json> = if self.client()?.infra_supported().await {
            all.into_iter()
                .filter(|s| {
                    s.get("infra").truthy() && string(s.get("infra").get("provider")) == infra
                })
                .collect()
        } else {
            all
        };
        user_services.sort_by_key(|s| s.get("name").to_ruby_s());
        if !user_services.is_empty()
            && self
                .ask(Ask::new(format!("Bind existing services to '{name}'?")).yes_no(false))?
                .yes()
        {
            let mut chosen = 0;
            loop {
                let names: Vec<String> = user_services
                    .iter()
                    .map(|s| s.get("name").to_ruby_s())
                    .collect();
                let picked = self
                    .ask(Ask::new("Which one?").indexed().choices(names))?
                    .text()
                    .unwrap_or_default();
                let vendor = user_services
                    .iter()
                    .find(|s| s.get("name").to_ruby_s() == picked)
                    .map(|s| s.get("vendor").clone())
                    .unwrap_or_default();
                self.manifest_set(vendor, &["services", &picked, "type"]);
                if chosen + 1 < user_services.len()
                    && self.ask(Ask::new("Bind another?").yes_no(false))?.yes()
                {
                    chosen += 1;
                    continue;
                }
                break;
            }
        }
        let offered = self.client()?.services_info().await?;
        let mut vendors: Vec<String> = offered
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(_, v)| {
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        if !offered.as_object().is_none_or(Vec::is_empty)
            && self
                .ask(Ask::new(format!("Create services to bind to '{name}'?")).yes_no(false))?
                .yes()
        {
            vendors.sort();
            loop {
                let vendor = self
                    .ask(
                        Ask::new("What kind of service?")
                            .indexed()
                            .choices(vendors.clone()),
                    )?
                    .text()
                    .unwrap_or_default();
                let default = format!("{vendor}-{}", manifest::random_word());
                let service = self
                    .ask(
                        Ask::new("Specify the name of the service")
                            .default(AskDefault::Text(default)),
                    )?
                    .text()
                    .unwrap_or_default();
                self.manifest_set(Json::str(vendor.as_str()), &["services", &service, "type"]);
                if !self.ask(Ask::new("Create another?").yes_no(false))?.yes() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Resolves `${…}` in `text` against the manifest being built.
    async fn resolve_in_manifest(&mut self, text: &str) -> CmdResult<String> {
        let mut tree = self.manifest.take().unwrap_or_else(Json::object);
        let suggest = if text.contains("${target-base}") {
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
        let result = manifest::resolve_string(&mut tree, text, &symbols);
        self.manifest = Some(tree);
        result
    }

    /// af's `save_manifest`: the manifest as YAML, to `-m FILE` or `manifest.yml`.
    pub(crate) fn save_manifest(&mut self, to: Option<&str>) -> CmdResult {
        let target = to
            .map(str::to_owned)
            .or_else(|| self.opts.manifest.clone())
            .unwrap_or_else(|| manifest::MANIFEST.into());
        let text = crate::yaml_out::to_yaml(self.manifest.as_ref().unwrap_or(&Json::object()));
        std::fs::write(self.ctx.expand_path(&target), text)
            .map_err(|e| Failure::message(e.to_string()))?;
        self.out.say(&format!("Manifest written to {target}."));
        Ok(())
    }

    /// `af update [APP]`: new bits, then a restart if the app was started.
    pub(crate) async fn update(&mut self, name: Option<&str>) -> CmdResult {
        let label = self.opts.label.clone().unwrap_or_default();
        if let Some(name) = name {
            let app = self.client()?.app_info(name).await?;
            if self.opts.canary {
                self.out.say(
                    &self
                        .out
                        .yellow("[--canary] is deprecated and will be removed in a future version"),
                );
            }
            let infra = string(app.get("infra").get("provider"));
            let path = self.ctx.expand_path(&self.path.clone());
            self.upload_app_bits(name, &path, infra.as_deref(), &label)
                .await?;
            if app.get("state").as_str() == Some("STARTED") {
                self.restart(Some(name)).await?;
            }
            return Ok(());
        }
        for entry in self.each_app(true)? {
            self.enter_app(&entry);
            let result = self.update_entry(&entry, &label).await;
            self.leave_app();
            result?;
        }
        Ok(())
    }

    async fn update_entry(&mut self, entry: &manifest::AppEntry, label: &str) -> CmdResult {
        let name = entry.name.clone().unwrap_or_default();
        self.out.say(&format!("Updating application '{name}'..."));
        let app = self.client()?.app_info(&name).await?;
        let infra = string(app.get("infra").get("provider"));
        let path = self.ctx.expand_path(&entry.application);
        self.upload_app_bits(&name, &path, infra.as_deref(), label)
            .await?;
        if app.get("state").as_str() == Some("STARTED") {
            self.restart(Some(&name)).await?;
        }
        Ok(())
    }

    /// af's `upload_app_bits`: gather, fingerprint (and ask the server which files it has when
    /// there is more than 64 KiB), pack and upload.
    pub(crate) async fn upload_app_bits(
        &mut self,
        name: &str,
        path: &Path,
        infra: Option<&str>,
        label: &str,
    ) -> CmdResult {
        self.out.say("Uploading Application:");
        let mut bundle = Bundle::gather(path).map_err(|e| match e {
            PackError::LinksOutside(_) => Failure::err(e.to_string()),
            other => Failure::message(other.to_string()),
        })?;
        let hash = bundle.hash();
        let mut resources = Json::Array(Vec::new());
        if !self.opts.no_resources {
            self.out.print("  Checking for available resources: ");
            let explode = package::explode_dir(name).to_string_lossy().into_owned();
            let (prints, total) = bundle.fingerprints(&explode);
            let mut matched = None;
            if total > 64 * 1024 {
                let list = Json::Array(
                    prints
                        .iter()
                        .map(|(size, sha1, file)| {
                            crate::json_object! {
                                "size" => *size as i64,
                                "sha1" => sha1.as_str(),
                                "fn" => file.as_str(),
                            }
                        })
                        .collect(),
                );
                matched = Some(self.client()?.check_resources(&list, infra).await?);
            }
            self.out.ok();
            if let Some(matched) = matched {
                self.out.print("  Processing resources: ");
                let mut kept = Vec::new();
                for mut resource in matched.items().iter().cloned() {
                    let file = resource.get("fn").to_ruby_s();
                    let relative = file
                        .strip_prefix(&format!("{explode}/"))
                        .unwrap_or(&file)
                        .to_owned();
                    bundle.remove(&relative);
                    resource.set("fn", Json::Str(relative));
                    kept.push(resource);
                }
                resources = Json::Array(kept);
                self.out.ok();
            }
        }
        if bundle.nothing_to_pack() {
            bundle.add_empty_marker();
        }
        self.out.print("  Packing application: ");
        let zip = bundle.zip().map_err(|e| Failure::message(e.to_string()))?;
        self.out.ok();
        let shown = format!("  Uploading ({}): ", package::upload_size(zip.len()));
        self.out.print(&shown);
        self.client()?
            .upload_app(name, zip, &hash, label, &resources)
            .await?;
        if self.out.colorize {
            // af's progress on a terminal ends with the banner again and OK on its own line.
            self.out.clear(shown.len() + 5);
            self.out.print(&format!("{shown} 100%"));
            self.out.clear(shown.len() + 5);
            self.out.print(&shown);
            self.out.ok();
        }
        self.out.print("Push Status: ");
        self.out.ok();
        Ok(())
    }

    /// `af clone SRC DEST [INFRA]`: a new app from another's last upload, with copies of its
    /// services.
    pub(crate) async fn clone_app(
        &mut self,
        source: &str,
        dest: &str,
        dest_infra: Option<&str>,
    ) -> CmdResult {
        let label = self.opts.label.clone().unwrap_or_default();
        if self.app_exists(dest).await? {
            return Err(Failure::err(format!("Application '{dest}' already exists")));
        }
        let app = self.client()?.app_info(source).await?;
        let mut dest_infra = dest_infra.map(str::to_owned);
        if self.client()?.infra_supported().await {
            dest_infra = match self.opts.infra.clone() {
                Some(infra) => Some(infra),
                None => {
                    let descriptions = self.client()?.infra_descriptions().await;
                    let choice = self
                        .ask(
                            Ask::new("Select Infrastructure")
                                .indexed()
                                .choices(descriptions),
                        )?
                        .text()
                        .unwrap_or_default();
                    Some(self.client()?.infra_name_for_description(&choice).await)
                }
            };
            self.client()?.infra = dest_infra.clone();
        }
        let resolved = self
            .resolve_in_manifest(&format!("{dest}.${{target-base}}"))
            .await?;
        let url = match self.opts.url.clone() {
            Some(url) => url,
            None => self
                .ask(Ask::new("Application Deployed URL").default(AskDefault::Text(resolved)))?
                .text()
                .unwrap_or_default(),
        };
        let temp = std::env::temp_dir().join(format!(
            "af-clone-{}-{}",
            std::process::id(),
            manifest::random_word()
        ));
        let zip_dir = temp.join(source);
        self.pull(source, Some(&zip_dir.to_string_lossy())).await?;
        self.out.say(&format!("Cloning '{source}' to '{dest}': "));
        let mut staging = app.get("staging").clone();
        if app.get("staging").get("command").truthy() {
            staging.set("command", app.get("staging").get("command").clone());
        }
        let mut document = crate::json_object! {
            "name" => dest,
            "staging" => staging,
            "uris" => Json::Array(vec![Json::str(url.as_str())]),
            "instances" => app.get("instances").clone(),
            "resources" => app.get("resources").clone(),
        };
        if let Some(infra) = &dest_infra {
            document.set("infra", crate::json_object! {"provider" => infra.as_str()});
        }
        let result = async {
            self.client()?.create_app(dest, &document).await?;
            self.upload_app_bits(dest, &zip_dir, dest_infra.as_deref(), &label)
                .await?;
            let bound: Vec<String> = app
                .get("services")
                .items()
                .iter()
                .map(Json::to_ruby_s)
                .collect();
            let services = self.client()?.services().await?;
            for service in services
                .items()
                .iter()
                .filter(|s| bound.contains(&s.get("name").to_ruby_s()))
            {
                let service_name = service.get("name").to_ruby_s();
                self.out
                    .print(&format!("Exporting data from {service_name}: "));
                let export = self.client()?.export_service(&service_name).await?;
                if !export.truthy() {
                    return Err(Failure::err(format!(
                        "Export data from '{}': failed",
                        service.inspect()
                    )));
                }
                self.out.ok();
                let cloned =
                    cloned_service_name(source, dest, &service_name, dest_infra.as_deref());
                self.out.print(&format!("Creating service {cloned}: "));
                let vendor = service.get("vendor").to_ruby_s();
                self.client()?
                    .create_service(dest_infra.as_deref(), &vendor, &cloned)
                    .await?;
                self.out.ok();
                self.out.print(&format!("Binding service {cloned}: "));
                self.client()?.bind_service(&cloned, dest).await?;
                self.out.ok();
                self.out.print(&format!("Importing data to {cloned}: "));
                let uri = export.get("uri").to_ruby_s();
                let imported = self.client()?.import_service(&cloned, &uri).await?;
                if !imported.truthy() {
                    return Err(Failure::err(format!(
                        "Import data into '{}' failed",
                        service.inspect()
                    )));
                }
                self.out.ok();
            }
            if !self.opts.no_start {
                self.start(Some(dest), true).await?;
            }
            Ok(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&temp);
        result
    }

    /// `af download APP [FILE]`: the last upload, as a zip.
    pub(crate) async fn download(&mut self, name: &str, path: Option<&str>) -> CmdResult {
        let default = format!("{name}.zip");
        let path = self.ctx.expand_path(path.unwrap_or(&default));
        self.out.print(&format!(
            "Downloading last pushed source code to {}: ",
            path.display()
        ));
        let bytes = self.client()?.app_download(name).await?;
        std::fs::write(&path, bytes).map_err(|e| Failure::message(e.to_string()))?;
        self.out.ok();
        Ok(())
    }

    /// `af pull APP [DIR]`: the last upload, unpacked.
    pub(crate) async fn pull(&mut self, name: &str, path: Option<&str>) -> CmdResult {
        let path = self.ctx.expand_path(path.unwrap_or(name));
        self.out.print("Pulling last pushed source code: ");
        let bytes = self.client()?.app_download(name).await?;
        unpack(&bytes, &path).map_err(|e| Failure::message(e.to_string()))?;
        self.out.ok();
        Ok(())
    }

    /// `af history APP` (AppFog, 2014).
    pub(crate) async fn history(&mut self, name: &str) -> CmdResult {
        if !self.app_exists(name).await? {
            self.out
                .say(&format!("No application named '{name}' found"));
            return Ok(());
        }
        self.client()?.check_login_status().await?;
        let history = self.client()?.app_history(name).await?;
        if history.items().is_empty() {
            self.out.say("No history available");
            return Ok(());
        }
        let mut table = Table::new(&[
            "Label",
            "Release ",
            "By User",
            "Release Date",
            "Hash",
            "Changed",
        ]);
        for entry in history.items() {
            let hash: String = entry
                .get("update_hash")
                .to_ruby_s()
                .chars()
                .take(10)
                .collect();
            table.push(&[
                entry.get("label").to_ruby_s(),
                format!("v{}", entry.get("release").to_ruby_s()),
                entry.get("updated_by").to_ruby_s(),
                self.format_release_date(entry.get("updated_at")),
                hash,
                if entry.get("is_changed") == &Json::Bool(true) {
                    "Yes"
                } else {
                    "No"
                }
                .into(),
            ]);
        }
        self.out.say("\n");
        self.out.say(&table.render());
        Ok(())
    }

    /// `Time.parse(text).to_time.to_s`: `2014-06-01 12:00:00 +0000` in the local zone.
    fn format_release_date(&self, value: &Json) -> String {
        let text = value.to_ruby_s();
        let parsed = text.parse::<jiff::Timestamp>().ok().or_else(|| {
            jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &text)
                .ok()
                .and_then(|dt| dt.to_zoned(self.ctx.time_zone.clone()).ok())
                .map(|z| z.timestamp())
        });
        match parsed {
            Some(ts) => ts
                .to_zoned(self.ctx.time_zone.clone())
                .strftime("%Y-%m-%d %H:%M:%S %z")
                .to_string(),
            None => text,
        }
    }

    /// `af hash [PATH] [--full]`: af's version hash of a directory.
    pub(crate) fn hash_cmd(&mut self, path: Option<&str>) -> CmdResult {
        let shown = path.map(str::to_owned);
        let dir = self.ctx.expand_path(path.unwrap_or(&self.path.clone()));
        let hash = Bundle::gather(&dir)
            .map_err(|e| Failure::message(e.to_string()))?
            .hash();
        if self.opts.full {
            self.out.say(&hash);
        } else {
            let short: String = hash.chars().take(10).collect();
            match shown {
                None => self
                    .out
                    .say(&format!("The hash for the current directory is: {short}")),
                Some(path) => self.out.say(&format!("The hash for {path} is: {short}")),
            }
        }
        Ok(())
    }

    /// `af diff APP`: whether the deployed bits are the working directory's.
    pub(crate) async fn diff(&mut self, name: &str) -> CmdResult {
        if !self.app_exists(name).await? {
            self.out
                .say(&format!("No application named '{name}' found"));
            return Ok(());
        }
        let diff = self.client()?.app_diff(name).await?;
        let first = diff.items().first().cloned().unwrap_or_default();
        if !first.truthy() || first.as_object().is_some_and(Vec::is_empty) {
            self.out.say("No diff available");
            return Ok(());
        }
        let dir = self.ctx.expand_path(&self.path.clone());
        let hash = Bundle::gather(&dir)
            .map_err(|e| Failure::message(e.to_string()))?
            .hash();
        if first.get("update_hash").as_str() == Some(hash.as_str()) {
            self.out.say(&format!(
                "Deployed app '{name}' matches app in current directory"
            ));
        } else {
            self.out.say(&format!(
                "Deployed app '{name}' does not match app in current directory"
            ));
        }
        Ok(())
    }
}

/// A framework as a manifest declares it (`framework: {name: node, info: {mem: 64M, …}}`, or
/// just the name).
fn framework_from_manifest(declared: &Json) -> Framework {
    if let Some(name) = declared.as_str() {
        return Framework::lookup_by_framework(name)
            .unwrap_or_else(|| Framework::create(name, None, None, None, false));
    }
    let info = declared.get("info");
    let text = |key: &str| string(info.get(key));
    Framework::create(
        &declared.get("name").to_ruby_s(),
        text("mem"),
        text("description"),
        text("exec"),
        info.get("console").truthy(),
    )
}

/// af's `generate_cloned_service_name`.
fn cloned_service_name(source: &str, dest: &str, service: &str, infra: Option<&str>) -> String {
    let word = manifest::random_word();
    let mut name = service.replacen(source, dest, 1);
    // `sub(/-[0-9A-Fa-f]{4,5}/, "-#{r}")`: the first dash and 4-5 hex digits.
    let bytes = name.as_bytes();
    let mut replaced = None;
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'-' {
            continue;
        }
        let hex = bytes[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if hex >= 4 {
            let len = hex.min(5);
            replaced = Some(format!("{}-{word}{}", &name[..i], &name[i + 1 + len..]));
            break;
        }
    }
    if let Some(r) = replaced {
        name = r;
    }
    if name == service {
        name = match infra {
            Some(infra) => format!("{name}-{infra}"),
            None => format!("{name}-{word}"),
        };
    }
    name
}

/// Unpacks a zip into `dir` (made when missing), refusing paths that leave it.
fn unpack(bytes: &[u8], dir: &Path) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::create_dir_all(dir)?;
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(std::io::Error::other)?;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(std::io::Error::other)?;
        let Some(relative) = file.enclosed_name() else {
            continue;
        };
        let target = dir.join(relative);
        if file.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if file.is_symlink() {
            let mut link = String::new();
            file.read_to_string(&mut link)?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
            continue;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        std::fs::write(&target, content)?;
        if let Some(mode) = file.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777));
        }
    }
    Ok(())
}

/// A manifest or option value as text (`None` for `nil` and `false`).
fn string(value: &Json) -> Option<String> {
    value.truthy().then(|| value.to_ruby_s())
}

/// A Ruby number, for the capacity checks.
fn number(value: &Json) -> i64 {
    match value {
        Json::Int(i) => *i,
        Json::Float(f) => *f as i64,
        Json::Str(s) => crate::prompt::ruby_to_i(s),
        _ => 0,
    }
}

/// A directory whose app is a static site: an `index.html` at its top, and nothing a runtime
/// would start (a standalone app with no start command, which afemu serves as files).
fn is_static_site(path: &std::path::Path) -> bool {
    path.is_dir() && path.join("index.html").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloned_service_names() {
        assert!(
            cloned_service_name("web", "web2", "mysql-web-1a2b", None).starts_with("mysql-web2-")
        );
        let plain = cloned_service_name("a", "b", "db", Some("aws"));
        assert_eq!(plain, "db-aws");
    }

    #[test]
    fn frameworks_from_manifests() {
        let declared = Json::parse(r#"{"name":"node","info":{"mem":"64M","description":"Node.js Application","exec":null}}"#).unwrap();
        let framework = framework_from_manifest(&declared);
        assert_eq!(framework.name, "node");
        assert_eq!(framework.memory(None), "64M");
        assert_eq!(
            framework_from_manifest(&Json::str("php")).memory(None),
            "128M"
        );
    }
}
