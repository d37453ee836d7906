//! Reading an app document sent by a client (`POST /apps`, `PUT /apps/:name`). `af` sends back the
//! whole document it last read, with a few fields changed, so unknown fields are ignored; but every
//! field the platform acts on is checked for its type and range before anything changes.

use serde_json::{Map, Value};

use super::state::AppState;
use crate::error::ApiError;

/// The fields of an app document the platform acts on; `None` means "not sent, leave it".
#[derive(Debug, Default, PartialEq)]
pub(crate) struct AppUpdate {
    pub(crate) name: Option<String>,
    pub(crate) state: Option<AppState>,
    pub(crate) uris: Option<Vec<String>>,
    pub(crate) instances: Option<u32>,
    pub(crate) memory_mb: Option<u64>,
    pub(crate) env: Option<Vec<String>>,
    pub(crate) framework: Option<String>,
    pub(crate) runtime: Option<Option<String>>,
    pub(crate) command: Option<String>,
    pub(crate) services: Option<Vec<String>>,
    /// `meta.version`: the lock version the client read.
    pub(crate) lock_version: Option<u64>,
    pub(crate) debug: Option<Value>,
    pub(crate) console: Option<Value>,
    /// AppFog's `infra.provider`.
    pub(crate) infra: Option<String>,
}

pub const MAX_INSTANCES: u64 = 100;
/// A terabyte per instance: more than any account allows, small enough never to overflow.
pub(crate) const MAX_MEMORY_MB: u64 = 1 << 20;

impl AppUpdate {
    pub(crate) fn parse(body: &Value) -> Result<AppUpdate, ApiError> {
        let Value::Object(doc) = body else {
            return Err(bad("the app document must be a JSON object"));
        };
        let mut update = AppUpdate {
            name: optional_string(doc, "name")?,
            ..AppUpdate::default()
        };
        if let Some(state) = optional_string(doc, "state")? {
            update.state = Some(match state.to_ascii_uppercase().as_str() {
                "STARTED" => AppState::Started,
                "STOPPED" => AppState::Stopped,
                _ => {
                    return Err(bad(&format!(
                        "state must be STARTED or STOPPED, not {state:?}"
                    )));
                }
            });
        }
        update.uris = optional_strings(doc, "uris")?;
        update.env = optional_strings(doc, "env")?;
        update.services = optional_strings(doc, "services")?;
        if let Some(instances) = optional_number(doc, "instances")? {
            if !(1..=MAX_INSTANCES).contains(&instances) {
                return Err(ApiError::InvalidApp(format!(
                    "instances must be between 1 and {MAX_INSTANCES}, not {instances}"
                )));
            }
            update.instances = Some(instances as u32);
        }
        if let Some(resources) = nested(doc, "resources")?
            && let Some(memory) = optional_number(resources, "memory")?
        {
            if !(1..=MAX_MEMORY_MB).contains(&memory) {
                return Err(ApiError::InvalidApp(format!(
                    "memory must be between 1 and {MAX_MEMORY_MB} MB, not {memory}"
                )));
            }
            update.memory_mb = Some(memory);
        }
        if let Some(meta) = nested(doc, "meta")? {
            update.lock_version = optional_number(meta, "version")?;
        }
        if let Some(staging) = nested(doc, "staging")? {
            // v1's CC reads the legacy `model`/`stack` first, then `framework`/`runtime`.
            let (framework_key, runtime_key) = if staging.contains_key("model") {
                ("model", "stack")
            } else {
                ("framework", "runtime")
            };
            update.framework = optional_string(staging, framework_key)?;
            if staging.contains_key(runtime_key) {
                update.runtime = Some(optional_string(staging, runtime_key)?);
            }
            update.command = optional_string(staging, "command")?;
        }
        update.debug = doc.get("debug").cloned();
        update.console = doc.get("console").cloned();
        if let Some(infra) = nested(doc, "infra")? {
            update.infra = optional_string(infra, "provider")?;
        }
        Ok(update)
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

fn nested<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(bad(&format!("{key} must be an object, not {other}"))),
    }
}

fn optional_string(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(&format!("{key} must be a string, not {other}"))),
    }
}

fn optional_strings(doc: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad(&format!(
                    "{key} must be a list of strings, and {other} is not one"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(bad(&format!(
            "{key} must be a list of strings, not {other}"
        ))),
    }
}

/// A whole number, also accepted as a string of digits (v1's CC called `to_i` on it).
fn optional_number(doc: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(&format!("{key} must be a whole number, not {n}"))),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(&format!("{key} is too large: {s}"))),
        Some(other) => Err(bad(&format!("{key} must be a whole number, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn af_create_body() {
        let update = AppUpdate::parse(&json!({
            "name": "example",
            "staging": {"framework": "node", "runtime": null},
            "uris": ["example.com"],
            "instances": 1,
            "resources": {"memory": 64}
        }))
        .unwrap();
        assert_eq!(update.name.as_deref(), Some("example"));
        assert_eq!(update.framework.as_deref(), Some("node"));
        assert_eq!(update.runtime, Some(None));
        assert_eq!(update.uris, Some(vec!["example.com".to_owned()]));
        assert_eq!(update.instances, Some(1));
        assert_eq!(update.memory_mb, Some(64));
    }

    #[test]
    fn af_put_body_is_the_whole_document() {
        let update = AppUpdate::parse(&json!({
            "name": "foo", "staging": {"model": "node", "stack": "node"}, "uris": ["foo.aws.af.cm"],
            "instances": 2, "runningInstances": 1, "resources": {"memory": 64, "disk": 2048, "fds": 256},
            "state": "STARTED", "services": [], "version": "abc-1", "env": ["A=b"],
            "meta": {"version": 3, "created": 1299207348}, "debug": null, "console": false
        }))
        .unwrap();
        assert_eq!(update.state, Some(AppState::Started));
        assert_eq!(update.lock_version, Some(3));
        assert_eq!(update.framework.as_deref(), Some("node"));
        assert_eq!(update.runtime, Some(Some("node".into())));
        assert_eq!(update.env, Some(vec!["A=b".to_owned()]));
        assert_eq!(update.console, Some(json!(false)));
    }

    #[test]
    fn wrong_types_are_clear_errors() {
        let table = [
            (json!([]), "must be a JSON object"),
            (
                json!({"instances": "many"}),
                "instances must be a whole number",
            ),
            (json!({"instances": -1}), "instances must be a whole number"),
            (
                json!({"instances": 1.5}),
                "instances must be a whole number",
            ),
            (json!({"instances": 0}), "between 1 and 100"),
            (json!({"instances": 101}), "between 1 and 100"),
            (
                json!({"uris": "example.com"}),
                "uris must be a list of strings",
            ),
            (json!({"uris": [1]}), "uris must be a list of strings"),
            (
                json!({"state": "RUNNING"}),
                "state must be STARTED or STOPPED",
            ),
            (json!({"state": 1}), "state must be a string"),
            (json!({"resources": 64}), "resources must be an object"),
            (
                json!({"resources": {"memory": "lots"}}),
                "memory must be a whole number",
            ),
            (
                json!({"meta": {"version": "x"}}),
                "version must be a whole number",
            ),
            (
                json!({"env": [["A", "b"]]}),
                "env must be a list of strings",
            ),
        ];
        for (body, expected) in table {
            let error = AppUpdate::parse(&body).unwrap_err();
            assert!(error.to_string().contains(expected), "{body} → {error}");
        }
    }

    #[test]
    fn numbers_as_strings_are_accepted_as_v1_did() {
        let update =
            AppUpdate::parse(&json!({"instances": "3", "resources": {"memory": "128"}})).unwrap();
        assert_eq!((update.instances, update.memory_mb), (Some(3), Some(128)));
    }
}
