//! Services (v1's `services` resource): the catalog v1 offered, provisioning (by the service
//! nodes of [`crate::nodes`]: a real database where its server is installed, a record with
//! made-up credentials otherwise), binding to apps (each binding's own credentials), and the
//! `VCAP_SERVICES` and `VMC_*` variables a bound app is started with.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::clock::random_hex;

use super::Platform;
pub(crate) use super::catalog::{Offering, Service, offering};
use crate::clock::epoch_seconds;
use crate::error::ApiError;

/// Credentials for a new service that is a record: made up (nothing listens there), overridable
/// per vendor.
pub(crate) fn credentials(offering: &Offering, overrides: Option<&Value>) -> Value {
    let user = format!("u{}", &random_hex(6));
    let mut credentials = json!({
        "name": format!("d{}", random_hex(8)),
        "hostname": "127.0.0.1",
        "host": "127.0.0.1",
        "port": offering.port,
        "user": user,
        "username": user,
        "password": random_hex(12),
    });
    if let (Some(Value::Object(overrides)), Value::Object(base)) = (overrides, &mut credentials) {
        for (key, value) in overrides {
            base.insert(key.clone(), value.clone());
        }
    }
    credentials
}

/// The environment a bound app gets: `VCAP_SERVICES`, `VMC_SERVICES`, and `VMC_<VENDOR>`, from
/// each service and the credentials of the app's binding to it.
pub(crate) fn environment(bound: &[(Service, Value)]) -> Vec<(String, String)> {
    let mut vcap: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut vmc = Vec::new();
    let mut env = Vec::new();
    for (service, credentials) in bound {
        vcap.entry(service.label()).or_default().push(json!({
            "name": service.name,
            "label": service.label(),
            "plan": "free",
            "tags": service.offering.tags,
            "plan_option": null,
            "credentials": credentials,
        }));
        vmc.push(json!({
            "name": service.name,
            "type": service.offering.kind,
            "vendor": service.offering.vendor,
            "version": service.offering.version,
            "tier": "free",
            "options": credentials,
        }));
        let host = credentials["host"].as_str().unwrap_or("127.0.0.1");
        let port = &credentials["port"];
        env.push((
            format!("VMC_{}", service.offering.vendor.to_ascii_uppercase()),
            format!("{host}:{port}"),
        ));
    }
    env.push(("VCAP_SERVICES".into(), json!(vcap).to_string()));
    env.push(("VMC_SERVICES".into(), json!(vmc).to_string()));
    env
}

impl Platform {
    /// `GET /services`: the user's provisioned services.
    pub fn list_services(&self, user: &str) -> Vec<Value> {
        self.state()
            .services_of(user)
            .map(Service::document)
            .collect()
    }

    /// `GET /services/:name`.
    pub fn service_document(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        self.state()
            .services_of(user)
            .find(|s| s.name == name)
            .map(Service::document)
            .ok_or(ApiError::ServiceNotFound)
    }

    /// `POST /services {vendor, version, type, tier, name, infra}`: provisions it (a database,
    /// by the vendor's node, or a record) and keeps its credentials.
    pub async fn create_service(&self, user: &str, body: &Value) -> Result<Value, ApiError> {
        let text = |key: &str| -> Result<Option<String>, ApiError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ApiError::BadRequest(format!(
                    "{key} must be a string, not {other}"
                ))),
            }
        };
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the service must be a JSON object".into(),
            ));
        }
        let vendor = text("vendor")?
            .ok_or_else(|| ApiError::BadRequest("a service needs a vendor".into()))?;
        let version = text("version")?;
        let offering = offering(&vendor, version.as_deref()).ok_or(ApiError::ServiceNotFound)?;
        let name = match text("name")? {
            Some(name) => name,
            None => format!("{vendor}-{}", random_hex(2)),
        };
        validate_service_name(&name)?;
        let infra = body
            .get("infra")
            .and_then(|i| i.get("provider"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.check_new_service(user, &name)?;
        let resets = self.state().resets;
        // Provisioning takes a while (a server may start): outside the state's lock.
        let credentials = match self.inner.nodes.provision(offering.vendor).await {
            None => credentials(
                offering,
                self.inner.config.service_credentials.get(offering.vendor),
            ),
            Some(Ok(credentials)) => credentials,
            Some(Err(error)) => {
                tracing::warn!(service = %name, vendor = offering.vendor, %error, "provisioning failed");
                return Err(ApiError::ServiceGateway(error.to_string()));
            }
        };
        let service = Service {
            owner: user.to_owned(),
            name,
            offering,
            credentials,
            created: epoch_seconds(),
            infra,
        };
        let document = service.document();
        let kept = {
            let mut state = self.state();
            // Checked again: another request may have taken the name meanwhile, or a reset
            // taken the user.
            let checked = if state.resets != resets {
                Err(ApiError::System(
                    "the emulator was reset while the service was provisioned".into(),
                ))
            } else {
                self.check_new_service_in(&state, user, &service.name)
            };
            if checked.is_ok() {
                state.services.push(service.clone());
            }
            checked
        };
        if let Err(error) = kept {
            self.unprovision(&service).await;
            return Err(error);
        }
        self.journal().record_event(
            "service",
            json!({"provisioned": service.name, "vendor": offering.vendor, "real": self.inner.nodes.is_real(offering.vendor)}),
        );
        Ok(document)
    }

    fn check_new_service(&self, user: &str, name: &str) -> Result<(), ApiError> {
        let state = self.state();
        self.check_new_service_in(&state, user, name)
    }

    fn check_new_service_in(
        &self,
        state: &super::state::State,
        user: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if state.services_of(user).any(|s| s.name == name) {
            return Err(ApiError::BadRequest(format!(
                "a service named {name:?} already exists"
            )));
        }
        let count = state.services_of(user).count();
        let limit = self.inner.config.limits.services;
        if count >= limit as usize {
            return Err(ApiError::TooManyServices(count + 1, limit));
        }
        Ok(())
    }

    /// `DELETE /services/:name`: unbinds it from the user's apps (they keep running until
    /// restarted, as on v1; their users are dropped), forgets it and drops its database.
    pub async fn delete_service(&self, user: &str, name: &str) -> Result<(), ApiError> {
        let (service, bindings) = {
            let mut state = self.state();
            let index = state
                .services
                .iter()
                .position(|s| s.owner == user && s.name == name)
                .ok_or(ApiError::ServiceNotFound)?;
            let service = state.services.remove(index);
            let mut bindings = Vec::new();
            for app in state.apps.values_mut().filter(|a| a.owner == user) {
                app.services.retain(|s| s != name);
                if let Some(binding) = app.bindings.remove(name) {
                    bindings.push(binding);
                }
            }
            (service, bindings)
        };
        for binding in &bindings {
            self.unbind(&service, binding).await;
        }
        self.unprovision(&service).await;
        Ok(())
    }

    /// Binds a service to an app: the credentials the app gets.
    pub(super) async fn bind(&self, service: &Service) -> Result<Value, ApiError> {
        self.inner
            .nodes
            .bind(service.offering.vendor, &service.credentials)
            .await
            .map_err(|error| {
                tracing::warn!(service = %service.name, %error, "binding failed");
                ApiError::ServiceGateway(error.to_string())
            })
    }

    /// Drops what a binding made (a failure is logged: the binding is gone from the state).
    pub(super) async fn unbind(&self, service: &Service, binding: &Value) {
        if let Err(error) = self
            .inner
            .nodes
            .unbind(service.offering.vendor, &service.credentials, binding)
            .await
        {
            tracing::warn!(service = %service.name, %error, "unbinding failed");
            self.journal().record_event(
                "service",
                json!({"unbind_failed": service.name, "error": error.to_string()}),
            );
        }
    }

    /// Drops a service's database (a failure is logged: the service is gone from the state).
    pub(super) async fn unprovision(&self, service: &Service) {
        match self
            .inner
            .nodes
            .unprovision(service.offering.vendor, &service.credentials)
            .await
        {
            Ok(()) => {
                self.journal()
                    .record_event("service", json!({"unprovisioned": service.name}));
            }
            Err(error) => {
                tracing::warn!(service = %service.name, %error, "unprovisioning failed");
                self.journal().record_event(
                    "service",
                    json!({"unprovision_failed": service.name, "error": error.to_string()}),
                );
            }
        }
    }

    /// The credentials an app's environment gets for a binding: where a real service listens
    /// now (its port may have changed since it was bound, across a restart).
    pub(super) fn live_credentials(&self, service: &Service, binding: &Value) -> Value {
        self.inner
            .nodes
            .live_credentials(service.offering.vendor, &service.credentials, binding)
    }

    /// `GET /_afemu/tunnel/services/:name`: what `af tunnel` needs to reach one of the user's
    /// services from this machine. v1's `GET /services/:name` never carried credentials (the
    /// Caldecott app af pushed read them from its own binding); here the services already listen
    /// on loopback, so the owner gets the service's own credentials, with the port its server
    /// listens on now, and whether anything listens at all (`real`: a record's credentials are
    /// made up).
    pub fn tunnel_info(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let service = self
            .state()
            .services_of(user)
            .find(|s| s.name == name)
            .cloned()
            .ok_or(ApiError::ServiceNotFound)?;
        let vendor = service.offering.vendor;
        let real = self.inner.nodes.is_real(vendor);
        let detail = self
            .inner
            .nodes
            .vendors()
            .iter()
            .find(|v| v.vendor == vendor)
            .map_or_else(
                || "not a vendor afemu runs".to_owned(),
                |v| v.detail.clone(),
            );
        let credentials = self.live_credentials(&service, &service.credentials);
        Ok(json!({
            "name": service.name,
            "vendor": vendor,
            "version": service.offering.version,
            "real": real,
            "detail": detail,
            "credentials": credentials,
        }))
    }

    /// `GET /_afemu/services`: each vendor (real or a record, and why), its servers, and the
    /// services provisioned with the apps bound to each.
    pub fn services_status(&self) -> Value {
        let mut status = self.inner.nodes.status();
        let state = self.state();
        let services: Vec<Value> = state
            .services
            .iter()
            .map(|service| {
                let bound: Vec<&str> = state
                    .apps
                    .values()
                    .filter(|a| a.owner == service.owner && a.services.contains(&service.name))
                    .map(|a| a.name.as_str())
                    .collect();
                json!({
                    "owner": service.owner,
                    "name": service.name,
                    "vendor": service.offering.vendor,
                    "real": self.inner.nodes.is_real(service.offering.vendor),
                    "database": service.credentials.get("name"),
                    "bound_to": bound,
                })
            })
            .collect();
        status["services"] = json!(services);
        status
    }

    /// The log of a service's server (`postgresql`, `mysql`, `redis <name>`, `rabbitmq <name>`,
    /// `rabbitmq epmd`), if there is one.
    pub fn service_server_log(&self, server: &str) -> Option<std::path::PathBuf> {
        self.inner.nodes.server_log(server)
    }
}

pub(super) fn validate_service_name(name: &str) -> Result<(), ApiError> {
    if super::state::is_v1_name(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "service name {name:?} may only contain letters, digits, '_' and '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcap_services_has_v1_shape() {
        let mysql = offering("mysql", None).unwrap();
        let service = Service {
            owner: "me".into(),
            name: "mysql-abc".into(),
            offering: mysql,
            credentials: credentials(mysql, Some(&json!({"password": "fixed"}))),
            created: 0,
            infra: None,
        };
        let binding = service.credentials.clone();
        let env: BTreeMap<_, _> = environment(&[(service, binding)]).into_iter().collect();
        let vcap: Value = serde_json::from_str(&env["VCAP_SERVICES"]).unwrap();
        let bound = &vcap["mysql-5.1"][0];
        assert_eq!(bound["name"], "mysql-abc");
        assert_eq!(bound["label"], "mysql-5.1");
        assert_eq!(bound["plan"], "free");
        assert_eq!(bound["credentials"]["password"], "fixed");
        assert_eq!(bound["credentials"]["port"], 3306);
        assert_eq!(env["VMC_MYSQL"], "127.0.0.1:3306");
        let vmc: Value = serde_json::from_str(&env["VMC_SERVICES"]).unwrap();
        assert_eq!(vmc[0]["vendor"], "mysql");
    }
}
