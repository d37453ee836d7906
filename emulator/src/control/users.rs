//! Users and tokens (v1's `users` and `user_tokens` resources): the first login of an email
//! registers it, tokens are random, admins may act for others with `PROXY-USER`.

use serde_json::{Value, json};

use super::Platform;
use super::state::{State, User};
use crate::clock::{epoch_seconds, random_hex};
use crate::error::ApiError;

impl Platform {
    /// `POST /users/:email/tokens`: the first login of an email registers it with that password.
    pub fn login(&self, email: &str, password: &str) -> Result<String, ApiError> {
        let email = normalise_email(email)?;
        let mut state = self.state();
        match state.users.get(&email) {
            Some(user) if user.password != password => return Err(ApiError::Forbidden),
            Some(_) => {}
            None => {
                let admin = self.inner.config.admins.contains(&email);
                state.users.insert(
                    email.clone(),
                    User {
                        password: password.to_owned(),
                        admin,
                        created: epoch_seconds(),
                    },
                );
                tracing::debug!(%email, "registered a user at first login");
            }
        }
        let token = random_hex(32);
        state.tokens.insert(token.clone(), email);
        Ok(token)
    }

    /// The user a request acts as: the token's, or with `PROXY-USER` (admins only) that user.
    pub fn authenticate(&self, token: &str, proxy_user: Option<&str>) -> Result<String, ApiError> {
        let state = self.state();
        let email = state
            .tokens
            .get(token.trim())
            .ok_or(ApiError::Forbidden)?
            .clone();
        match proxy_user.map(str::trim).filter(|p| !p.is_empty()) {
            None => Ok(email),
            Some(proxied) => {
                let is_admin = state.users.get(&email).is_some_and(|u| u.admin);
                if !is_admin {
                    return Err(ApiError::Forbidden);
                }
                let proxied = proxied.to_ascii_lowercase();
                if !state.users.contains_key(&proxied) {
                    return Err(ApiError::UserNotFound);
                }
                Ok(proxied)
            }
        }
    }

    /// `GET /users/:email`: only yourself, unless you are an admin.
    pub fn user_document(&self, asking: &str, email: &str) -> Result<Value, ApiError> {
        let email = normalise_email(email)?;
        let state = self.state();
        let asking_admin = state.users.get(asking).is_some_and(|u| u.admin);
        if asking != email && !asking_admin {
            return Err(ApiError::Forbidden);
        }
        let user = state.users.get(&email).ok_or(ApiError::UserNotFound)?;
        let apps: Vec<Value> = state
            .apps_of(&email)
            .map(|app| json!({"name": app.name, "state": app.state.as_str()}))
            .collect();
        Ok(json!({
            "email": email,
            "admin": user.admin,
            "apps": apps,
            "meta": {"version": 1, "created": user.created},
        }))
    }

    fn is_admin(state: &State, email: &str) -> bool {
        state.users.get(email).is_some_and(|u| u.admin)
    }

    /// `POST /users {email, password}`: registration, open to anyone as v1's default
    /// (`allow_registration`) had it.
    pub fn register(&self, body: &Value) -> Result<(), ApiError> {
        let email = body
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("an email is required".into()))?;
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("a password is required".into()))?;
        let email = normalise_email(email)?;
        let mut state = self.state();
        if state.users.contains_key(&email) {
            return Err(ApiError::BadRequest(format!(
                "{email} is already registered"
            )));
        }
        let admin = self.inner.config.admins.contains(&email);
        state.users.insert(
            email,
            User {
                password: password.to_owned(),
                admin,
                created: epoch_seconds(),
            },
        );
        Ok(())
    }

    /// `GET /users` (admins): every user with their apps.
    pub fn list_users(&self, asking: &str) -> Result<Vec<Value>, ApiError> {
        let emails: Vec<String> = {
            let state = self.state();
            if !Self::is_admin(&state, asking) {
                return Err(ApiError::Forbidden);
            }
            state.users.keys().cloned().collect()
        };
        emails
            .iter()
            .map(|email| self.user_document(asking, email))
            .collect()
    }

    /// `PUT /users/:email` (yourself, or an admin): af's `passwd` sends the user document with a
    /// new `password`.
    pub fn update_user(&self, asking: &str, email: &str, body: &Value) -> Result<(), ApiError> {
        let email = normalise_email(email)?;
        let password = match body.get("password") {
            Some(Value::String(password)) => Some(password.clone()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(ApiError::BadRequest("password must be a string".into())),
        };
        let mut state = self.state();
        if asking != email && !Self::is_admin(&state, asking) {
            return Err(ApiError::Forbidden);
        }
        let user = state.users.get_mut(&email).ok_or(ApiError::UserNotFound)?;
        if let Some(password) = password {
            user.password = password;
        }
        Ok(())
    }

    /// `DELETE /users/:email` (admins): the user goes with their apps, services and tokens.
    pub async fn delete_user(&self, asking: &str, email: &str) -> Result<(), ApiError> {
        let email = normalise_email(email)?;
        let apps: Vec<u64> = {
            let state = self.state();
            if !Self::is_admin(&state, asking) {
                return Err(ApiError::Forbidden);
            }
            if !state.users.contains_key(&email) {
                return Err(ApiError::UserNotFound);
            }
            state.apps_of(&email).map(|app| app.id).collect()
        };
        for app_id in apps {
            let _guard = self.lock_app(app_id).await;
            self.remove_app(app_id).await;
        }
        let mut state = self.state();
        state.users.remove(&email);
        state.tokens.retain(|_, owner| owner != &email);
        state.services.retain(|s| s.owner != email);
        Ok(())
    }
}

pub(super) fn normalise_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c == '/')
    {
        return Err(ApiError::BadRequest(format!(
            "{email:?} is not an email address"
        )));
    }
    Ok(email)
}
