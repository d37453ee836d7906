//! The service commands (af's `commands/services.rb`, `services_helper.rb`) and `af manifest`
//! (`commands/manifest.rb`).

use crate::error::{CmdResult, Failure};
use crate::json::Json;
use crate::manifest;
use crate::prompt::{Ask, AskDefault};
use crate::session::Session;
use crate::table::Table;

impl Session<'_> {
    /// `af services`: what the target offers, then what the user has.
    pub(crate) async fn services(&mut self) -> CmdResult {
        let offered = self.client()?.services_info().await?;
        let provisioned = self.client()?.services().await?;
        let mut provisioned = provisioned.items().to_vec();
        provisioned.sort_by_key(|s| s.get("name").to_ruby_s());
        if self.opts.json {
            let both = crate::json_object! {
                "system" => offered,
                "provisioned" => Json::Array(provisioned),
            };
            self.out.say(&both.pretty());
            return Ok(());
        }
        self.out
            .say("\n============== System Services ==============\n\n");
        let mut rows: Vec<[String; 3]> = Vec::new();
        for (_, vendors) in offered.as_object().into_iter().flatten() {
            for (vendor, versions) in vendors.as_object().into_iter().flatten() {
                for (version, service) in versions.as_object().into_iter().flatten() {
                    rows.push([
                        vendor.clone(),
                        version.clone(),
                        service.get("description").to_ruby_s(),
                    ]);
                }
            }
        }
        if rows.is_empty() {
            self.out.say("No system services available");
        } else {
            rows.sort_by(|a, b| a[0].cmp(&b[0]));
            let mut table = Table::new(&["Service", "Version", "Description"]);
            for row in &rows {
                table.push(row);
            }
            self.out.say(&table.render());
        }
        self.out
            .say("\n=========== Provisioned Services ============\n\n");
        if !provisioned.is_empty() {
            let infra_supported = provisioned.iter().any(|s| s.get("infra").truthy());
            let mut table = Table::new(&["Name", "Service"]);
            if infra_supported {
                table.push_late_heading("In");
            }
            for service in &provisioned {
                let mut row = vec![
                    service.get("name").to_ruby_s(),
                    service.get("vendor").to_ruby_s(),
                ];
                if infra_supported {
                    row.push(if service.get("infra").truthy() {
                        service.get("infra").get("provider").to_ruby_s()
                    } else {
                        "   ".into()
                    });
                }
                table.push(&row);
            }
            self.out.say(&table.render());
        }
        Ok(())
    }

    /// `af create-service [VENDOR] [NAME] [APP]`.
    pub(crate) async fn create_service(
        &mut self,
        vendor: Option<&str>,
        name: Option<&str>,
        app: Option<&str>,
    ) -> CmdResult {
        let mut vendor = vendor.map(str::to_owned);
        if !self.no_prompt() && vendor.is_none() {
            let offered = self.client()?.services_info().await?;
            let choices: Vec<String> = offered
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
            if offered.as_object().is_none_or(Vec::is_empty) {
                return Err(Failure::err("No services available to provision"));
            }
            vendor = self
                .ask(
                    Ask::new("Which service would you like to provision?")
                        .indexed()
                        .choices(choices),
                )?
                .text();
        }
        let vendor = vendor.unwrap_or_default();
        let mut picked = false;
        let name = match name.map(str::to_owned).or_else(|| self.opts.name.clone()) {
            Some(name) => name,
            None => {
                picked = true;
                format!("{vendor}-{}", manifest::random_word())
            }
        };
        if self.client()?.infra_supported().await && !self.no_prompt() && self.opts.infra.is_none()
        {
            let descriptions = self.client()?.infra_descriptions().await;
            let choice = self
                .ask(
                    Ask::new("Select Infrastructure")
                        .indexed()
                        .choices(descriptions),
                )?
                .text()
                .unwrap_or_default();
            self.opts.infra = Some(self.client()?.infra_name_for_description(&choice).await);
        }
        let infra = self.opts.infra.clone();
        self.create_service_banner(&vendor, &name, picked, infra.as_deref())
            .await?;
        let app = app.map(str::to_owned).or_else(|| self.opts.bind.clone());
        if let Some(app) = app {
            self.bind_service_banner(&name, &app, true).await?;
        }
        Ok(())
    }

    /// `af delete-service [NAME]`.
    pub(crate) async fn delete_service(&mut self, service: Option<&str>) -> CmdResult {
        let mut service = service.map(str::to_owned);
        if !self.no_prompt() && service.is_none() {
            let mine = self.client()?.services().await?;
            if mine.items().is_empty() {
                return Err(Failure::err("No services available to delete"));
            }
            let names: Vec<String> = mine
                .items()
                .iter()
                .map(|s| s.get("name").to_ruby_s())
                .collect();
            service = self
                .ask(
                    Ask::new("Which service would you like to delete?")
                        .indexed()
                        .choices(names),
                )?
                .text();
        }
        let Some(service) = service else {
            return Err(Failure::err("Service name required."));
        };
        self.delete_service_banner(&service).await
    }

    /// `Creating Service[ [NAME]]: OK`.
    pub(crate) async fn create_service_banner(
        &mut self,
        vendor: &str,
        name: &str,
        show_name: bool,
        infra: Option<&str>,
    ) -> CmdResult {
        let shown = if show_name {
            format!(" [{name}]")
        } else {
            String::new()
        };
        self.out.print(&format!("Creating Service{shown}: "));
        self.client()?.create_service(infra, vendor, name).await?;
        self.out.ok();
        Ok(())
    }

    /// `Binding Service [S]: OK`, then a restart of the app if it runs.
    pub(crate) async fn bind_service_banner(
        &mut self,
        service: &str,
        app: &str,
        restart: bool,
    ) -> CmdResult {
        self.out.print(&format!("Binding Service [{service}]: "));
        self.client()?.bind_service(service, app).await?;
        self.out.ok();
        if restart {
            self.check_app_for_restart(app).await?;
        }
        Ok(())
    }

    /// `Unbinding Service [S]: OK`, then a restart of the app if it runs.
    pub(crate) async fn unbind_service_banner(
        &mut self,
        service: &str,
        app: &str,
        restart: bool,
    ) -> CmdResult {
        self.out.print(&format!("Unbinding Service [{service}]: "));
        self.client()?.unbind_service(service, app).await?;
        self.out.ok();
        if restart {
            self.check_app_for_restart(app).await?;
        }
        Ok(())
    }

    /// `Deleting service [S]: OK`.
    pub(crate) async fn delete_service_banner(&mut self, service: &str) -> CmdResult {
        self.out.print(&format!("Deleting service [{service}]: "));
        self.client()?.delete_service(service).await?;
        self.out.ok();
        Ok(())
    }

    /// af's `check_app_for_restart`.
    async fn check_app_for_restart(&mut self, app: &str) -> CmdResult {
        let doc = self.client()?.app_info(app).await?;
        if doc.get("state").as_str() == Some("STARTED") {
            self.restart(Some(app)).await?;
        }
        Ok(())
    }

    /// `af clone-services SRC DEST`: DEST bound to every service of SRC.
    pub(crate) async fn clone_services(&mut self, source: &str, dest: &str) -> CmdResult {
        let src = self.client()?.app_info(source).await.ok();
        let dst = match src {
            Some(_) => self.client()?.app_info(dest).await.ok(),
            None => None,
        };
        let Some(src) = src else {
            return Err(Failure::err(format!(
                "Application '{source}' does not exist"
            )));
        };
        if dst.is_none() {
            return Err(Failure::err(format!("Application '{dest}' does not exist")));
        }
        let services = src.get("services").items().to_vec();
        if services.is_empty() {
            return Err(Failure::err("No services to clone"));
        }
        for service in services {
            self.bind_service_banner(&service.to_ruby_s(), dest, false)
                .await?;
        }
        self.check_app_for_restart(dest).await
    }

    /// `af export-service NAME` (AppFog).
    pub(crate) async fn export_service(&mut self, service: &str) -> CmdResult {
        self.out
            .print(&format!("Exporting data from '{service}': "));
        let export = self.client()?.export_service(service).await?;
        if !export.truthy() {
            return Err(Failure::err(format!(
                "Export data from '{service}': failed"
            )));
        }
        self.out.ok();
        self.out.puts_raw(&export.get("uri").to_ruby_s());
        Ok(())
    }

    /// `af import-service NAME URL` (AppFog).
    pub(crate) async fn import_service(&mut self, service: &str, url: &str) -> CmdResult {
        self.out
            .print(&format!("Importing data into '{service}': "));
        let import = self.client()?.import_service(service, url).await?;
        if !import.truthy() {
            return Err(Failure::err(format!("Import data into '{service}' failed")));
        }
        self.out.ok();
        Ok(())
    }

    /// `af manifest`: build a manifest interactively and save it.
    pub(crate) async fn manifest_edit(&mut self) -> CmdResult {
        if self.manifest.is_none() {
            self.manifest = Some(Json::object());
        }
        self.build_manifest().await?;
        self.save_manifest(None)
    }

    /// `af extend-manifest FILE`: a manifest that inherits FILE, with what is asked.
    pub(crate) async fn manifest_extend(&mut self, which: &str) -> CmdResult {
        let file = self.ctx.expand_path(which);
        let mut infra = None;
        let parent =
            manifest::load_structure(&file, &file, &self.ctx.cwd, &self.ctx.home, &mut infra)?;
        self.manifest = Some(parent.clone());
        self.build_manifest().await?;
        let mut tree = self.manifest.take().unwrap_or_default();
        simplify(&mut tree, &parent, &self.out);
        let mut inherit = tree.get("inherit").items().to_vec();
        inherit.push(Json::str(which));
        tree.set("inherit", Json::Array(inherit));
        self.manifest = Some(tree);
        let to = self
            .ask(Ask::new("Save where?"))?
            .text()
            .unwrap_or_default();
        self.save_manifest(Some(&to))
    }

    async fn build_manifest(&mut self) -> CmdResult {
        let application = self
            .ask(
                Ask::new("Configure for which application?").default(AskDefault::Text(".".into())),
            )?
            .text()
            .unwrap_or_else(|| ".".into());
        self.application = Some(application);
        Box::pin(self.configure_many()).await
    }
}

/// af's `simplify`: drops what the child repeats from the parent.
fn simplify(child: &mut Json, parent: &Json, out: &crate::output::Out) {
    let Json::Object(pairs) = child else {
        return;
    };
    if parent.as_object().is_none() {
        return;
    }
    pairs.retain_mut(|(key, value)| {
        if value == parent.get(key) {
            out.puts_raw(&format!("rejecting {key}"));
            false
        } else {
            simplify(value, parent.get(key), out);
            true
        }
    });
}
