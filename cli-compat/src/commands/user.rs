//! `user`, `login`, `logout`, `passwd` (af's `commands/user.rb`) and the admin commands
//! `users`, `add-user`, `delete-user` (`commands/admin.rb`).

use crate::error::{AfError, CmdResult, Failure};
use crate::json::Json;
use crate::prompt::Ask;
use crate::session::Session;
use crate::table::Table;

impl Session<'_> {
    /// `af user`: who the token belongs to.
    pub(crate) async fn user_info(&mut self) -> CmdResult {
        let info = self.client_info().await?;
        let user = if info.get("user").truthy() {
            info.get("user").to_ruby_s()
        } else {
            "N/A".to_owned()
        };
        if self.opts.json {
            self.out
                .say(&Json::Array(vec![Json::str(user.as_str())]).pretty());
            return Ok(());
        }
        self.out.say(&format!("\n[{user}]"));
        Ok(())
    }

    /// `af login [EMAIL] [--email E] [--passwd P]`: `POST /users/E/tokens`, token stored.
    pub(crate) async fn login(&mut self, email: Option<&str>) -> CmdResult {
        let target = self.target_url();
        self.out.say(&format!("Attempting login to [{target}]"));
        let mut email = email.map(str::to_owned).or_else(|| self.opts.email.clone());
        let mut password = self.opts.password.clone();
        let mut tries = 0;
        loop {
            if !self.no_prompt() {
                if email.is_none() {
                    email = self.ask(Ask::new("Email"))?.text();
                }
                if password.is_none() {
                    password = self.ask(Ask::new("Password").echo('*'))?.text();
                }
            }
            let Some(address) = email.clone() else {
                return Err(Failure::err("Need a valid email"));
            };
            let Some(secret) = password.clone() else {
                return Err(Failure::err("Need a password"));
            };
            if self.login_and_save_token(&address, &secret).await? {
                self.out.say(
                    &self
                        .out
                        .green(&format!("Successfully logged into [{target}]")),
                );
                return Ok(());
            }
            let message = format!(
                "Problem with login, invalid account or password when attempting to login to '{target}'"
            );
            tries += 1;
            if tries < 3 && !self.no_prompt() && self.opts.password.is_none() {
                self.out.say(&self.out.red(&message));
                // af keeps the email it has and asks for the password again.
                password = None;
                continue;
            }
            return Err(Failure::Message(message));
        }
    }

    /// Logs in and stores the token; `false` when the target refused (af's rescued
    /// `TargetError`: any status but 400 and 404).
    async fn login_and_save_token(&mut self, email: &str, password: &str) -> CmdResult<bool> {
        let target = self.target_url();
        let token_file = self.token_file();
        let result = self.client()?.login(email, password).await;
        let token = match result {
            Ok(token) => token,
            // Only a TargetError (any status but 400/404) means "wrong password" to af.
            Err(AfError::Target(_)) => return Ok(false),
            Err(other) => return Err(other.into()),
        };
        self.config
            .store_token(&target, token.as_deref(), token_file.as_deref())
            .map_err(|e| Failure::message(e.to_string()))?;
        Ok(true)
    }

    /// `af logout`: the token file goes.
    pub(crate) fn logout(&mut self) -> CmdResult {
        self.config
            .remove_token_file()
            .map_err(|e| Failure::message(e.to_string()))?;
        let target = self.target_url();
        self.out.say(
            &self
                .out
                .green(&format!("Successfully logged out of [{target}]")),
        );
        Ok(())
    }

    /// `af passwd`.
    pub(crate) async fn change_password(&mut self, password: Option<&str>) -> CmdResult {
        let info = self.client_info().await?;
        let email = info.get("user");
        if !email.truthy() {
            return Err(Failure::err("Need to be logged in to change password."));
        }
        self.out
            .say(&format!("Changing password for '{}'\n", email.to_ruby_s()));
        let mut password = password.map(str::to_owned);
        if !self.no_prompt() {
            password = self.ask(Ask::new("New Password").echo('*'))?.text();
            let again = self.ask(Ask::new("Verify Password").echo('*'))?.text();
            if password != again {
                return Err(Failure::err("Passwords did not match, try again"));
            }
        }
        let Some(password) = password else {
            return Err(Failure::err("Password required"));
        };
        if password.contains(['{', '}']) {
            return Err(Failure::err("Passwords may not contain braces"));
        }
        self.client()?.change_password(&password).await?;
        self.out
            .say(&self.out.green("\nSuccessfully changed password"));
        Ok(())
    }

    /// `af users` (admin).
    pub(crate) async fn users(&mut self) -> CmdResult {
        let users = self.client()?.users().await?;
        let mut users = users.items().to_vec();
        users.sort_by_key(|u| u.get("email").to_ruby_s());
        if self.opts.json {
            self.out.say(&Json::Array(users).pretty());
            return Ok(());
        }
        self.out.say("\n");
        if users.is_empty() {
            self.out.say("No Users");
            return Ok(());
        }
        let mut table = Table::new(&["Email", "Admin", "Apps"]);
        for user in &users {
            let apps: Vec<String> = user
                .get("apps")
                .items()
                .iter()
                .map(|a| a.get("name").to_ruby_s())
                .collect();
            table.push(&[
                user.get("email").to_ruby_s(),
                user.get("admin").to_ruby_s(),
                apps.join(", "),
            ]);
        }
        self.out.say(&table.render());
        Ok(())
    }

    /// `af add-user [EMAIL] --passwd P` (admin; the first user of a fresh target logs in).
    pub(crate) async fn add_user(&mut self, email: Option<&str>) -> CmdResult {
        let mut email = email.map(str::to_owned).or_else(|| self.opts.email.clone());
        if email.is_none() && !self.no_prompt() {
            email = self.ask(Ask::new("Email"))?.text();
        }
        let mut password = self.opts.password.clone();
        if !self.no_prompt() && password.is_none() {
            password = self.ask(Ask::new("Password").echo('*'))?.text();
            let again = self.ask(Ask::new("Verify Password").echo('*'))?.text();
            if password != again {
                return Err(Failure::err("Passwords did not match, try again"));
            }
        }
        let Some(email) = email else {
            return Err(Failure::err("Need a valid email"));
        };
        let Some(password) = password else {
            return Err(Failure::err("Need a password"));
        };
        if password.contains(['{', '}']) {
            return Err(Failure::err("Passwords may not contain braces"));
        }
        self.out.print("Creating New User: ");
        self.client()?.add_user(&email, &password).await?;
        self.out.ok();
        if self.stored_token().is_none() {
            self.opts.password = Some(password);
            self.login(Some(&email)).await?;
        }
        Ok(())
    }

    /// `af delete-user EMAIL` (admin): the user's apps and services first.
    pub(crate) async fn delete_user(&mut self, email: &str) -> CmdResult {
        self.client()?.proxy = Some(email.to_owned());
        self.opts.proxy = Some(email.to_owned());
        let apps = self.client()?.apps().await?;
        if !apps.items().is_empty() {
            if !self.no_prompt() {
                let proceed = self.ask(
                    Ask::new("\nDeployed applications and associated services will be DELETED, continue?")
                        .yes_no(false),
                )?;
                if !proceed.yes() {
                    return Err(Failure::err("Aborted"));
                }
            }
            let force = self.opts.force;
            self.opts.force = true;
            for app in apps.items() {
                let name = app.get("name").to_ruby_s();
                self.delete_app(&name, true).await?;
            }
            self.opts.force = force;
        }
        let services = self.client()?.services().await?;
        for service in services.items() {
            let name = service.get("name").to_ruby_s();
            self.delete_service(Some(&name)).await?;
        }
        self.out.print("Deleting User: ");
        self.client()?.proxy = None;
        self.client()?.delete_user(email).await?;
        self.out.ok();
        Ok(())
    }
}
