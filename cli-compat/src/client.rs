//! The v1 cloud-controller API over HTTP, as `af` 0.3.22 speaks it (spec/af-api.md §2–§7): the raw
//! token in `AUTHORIZATION`, `Content-Type` and `Accept: application/json` on JSON calls, the whole
//! app document read and `PUT` back for every change, the multipart upload with `_method=put`.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What can go wrong talking to a v1 target.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target answered with a v1 error body (`{code, description}`).
    #[error("Error {code}: {description}")]
    Api {
        status: u16,
        code: i64,
        description: String,
    },
    /// The target answered with an error that is not a v1 error body.
    #[error("Error (HTTP {status}): {body}")]
    Http { status: u16, body: String },
    /// No answer at all.
    #[error("There was a problem connecting to the target: {0}")]
    Connect(String),
    /// An answer that is not the JSON expected.
    #[error("Can't parse response into JSON: {0}")]
    Json(String),
    /// The app did not reach the state asked for in time.
    #[error("{0}")]
    Timeout(String),
    /// Something local (reading the app directory, say).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The v1 error code, when the target sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one target, optionally logged in.
#[derive(Clone, Debug)]
pub struct V1Client {
    http: reqwest::Client,
    target: String,
    token: Option<String>,
    /// How often `start` polls the app while it starts (af: every second).
    poll_interval: Duration,
}

impl V1Client {
    /// A client for `target` (`http://` is assumed when no scheme is given, as af's `https://`
    /// default would not reach a local emulator).
    pub fn new(target: &str) -> V1Client {
        let target = target.trim().trim_end_matches('/');
        let target = if target.contains("://") {
            target.to_owned()
        } else {
            format!("http://{target}")
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(600))
            .build()
            .expect("a plain HTTP client always builds");
        V1Client {
            http,
            target,
            token: None,
            poll_interval: Duration::from_secs(1),
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> V1Client {
        self.token = Some(token.into());
        self
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> V1Client {
        self.poll_interval = interval;
        self
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `/a/b` with each segment escaped as af escapes it (`@` → `%40`, `/` → `%2F`).
    fn url(&self, segments: &[&str]) -> String {
        let mut url = self.target.clone();
        for segment in segments {
            url.push('/');
            url.push_str(&escape_segment(segment));
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method.clone(), self.url(segments));
        if let Some(token) = &self.token {
            request = request.header("AUTHORIZATION", token);
        }
        if method != Method::DELETE {
            request = request
                .header("Content-Type", "application/json")
                .header("Accept", "application/json");
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        check(response).await
    }

    async fn json(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let response = self.call(method, segments, body).await?;
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        serde_json::from_str(&text).map_err(|_| ClientError::Json(text.chars().take(60).collect()))
    }

    /// `POST /users/:email/tokens`; keeps the token.
    pub async fn login(&mut self, email: &str, password: &str) -> Result<String, ClientError> {
        let answer = self
            .json(
                Method::POST,
                &["users", email, "tokens"],
                Some(&json!({"password": password})),
            )
            .await?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| ClientError::Json(answer.to_string()))?
            .to_owned();
        self.token = Some(token.clone());
        Ok(token)
    }

    pub async fn info(&self) -> Result<Value, ClientError> {
        self.json(Method::GET, &["info"], None).await
    }

    pub async fn apps(&self) -> Result<Vec<Value>, ClientError> {
        match self.json(Method::GET, &["apps"], None).await? {
            Value::Array(apps) => Ok(apps),
            other => Err(ClientError::Json(other.to_string())),
        }
    }

    pub async fn app(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &["apps", name], None).await
    }

    /// `POST /apps` with a creation document (`name`, `staging`, `uris`, `instances`, `resources`).
    pub async fn create_app(&self, document: &Value) -> Result<(), ClientError> {
        self.call(Method::POST, &["apps"], Some(document))
            .await
            .map(drop)
    }

    /// `PUT /apps/:name` with the whole document.
    pub async fn update_app(&self, name: &str, document: &Value) -> Result<(), ClientError> {
        self.call(Method::PUT, &["apps", name], Some(document))
            .await
            .map(drop)
    }

    pub async fn delete_app(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &["apps", name], None)
            .await
            .map(drop)
    }

    pub async fn instances(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &["apps", name, "instances"], None)
            .await
    }

    pub async fn stats(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &["apps", name, "stats"], None).await
    }

    pub async fn crashes(&self, name: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, &["apps", name, "crashes"], None)
            .await
    }

    /// The multipart upload, as af sends it: `_method=put`, `application` (`<name>.zip`),
    /// `resources` (JSON).
    pub async fn upload_zip(
        &self,
        name: &str,
        zip: Vec<u8>,
        resources: &Value,
    ) -> Result<(), ClientError> {
        let form = reqwest::multipart::Form::new()
            .text("_method", "put")
            .part(
                "application",
                reqwest::multipart::Part::bytes(zip)
                    .file_name(format!("{name}.zip"))
                    .mime_str("application/zip")
                    .expect("a valid mime type"),
            )
            .text("resources", resources.to_string());
        let mut request = self
            .http
            .post(self.url(&["apps", name, "application"]))
            .multipart(form);
        if let Some(token) = &self.token {
            request = request.header("AUTHORIZATION", token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        check(response).await.map(drop)
    }

    /// Zips an app directory as af does and uploads it.
    pub async fn upload_dir(&self, name: &str, dir: &Path) -> Result<(), ClientError> {
        let dir = dir.to_owned();
        let zip = tokio::task::spawn_blocking(move || crate::package::zip_dir(&dir))
            .await
            .map_err(|e| ClientError::Local(e.to_string()))?
            .map_err(|e| ClientError::Local(format!("cannot pack the app: {e}")))?;
        self.upload_zip(name, zip, &json!([])).await
    }

    /// Reads the app, applies `change` to its document, and PUTs the whole document back: how
    /// every af command that changes an app works.
    pub async fn modify(
        &self,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<(), ClientError> {
        let mut document = self.app(name).await?;
        change(&mut document);
        self.update_app(name, &document).await
    }

    /// `af stop`: `PUT` with `state: STOPPED`.
    pub async fn stop(&self, name: &str) -> Result<(), ClientError> {
        self.modify(name, |doc| doc["state"] = json!("STOPPED"))
            .await
    }

    /// `af start`: `PUT` with `state: STARTED` (the server stages inside it), then poll until every
    /// instance runs, failing on a crash as af does.
    pub async fn start(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let started_at = now_seconds();
        self.modify(name, |doc| {
            doc["state"] = json!("STARTED");
            doc["debug"] = Value::Null;
            doc["console"] = json!(false);
        })
        .await?;
        self.wait_running(name, started_at, timeout).await
    }

    /// Polls until `runningInstances == instances`, or a crash since `since`, or `timeout`.
    pub async fn wait_running(
        &self,
        name: &str,
        since: u64,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let app = self.app(name).await?;
            let running = app["runningInstances"].as_u64();
            let wanted = app["instances"].as_u64();
            if running.is_some() && running == wanted {
                return Ok(());
            }
            let crashes = self.crashes(name).await?;
            let crashed = crashes["crashes"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|c| c["since"].as_u64().is_some_and(|s| s >= since))
            });
            if crashed {
                return Err(ClientError::Timeout(format!(
                    "Application [{name}] failed to start, logs information below."
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(format!(
                    "Application [{name}] did not start within {timeout:?}"
                )));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// `af restart`: stop, then start.
    pub async fn restart(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        self.stop(name).await?;
        self.start(name, timeout).await
    }

    /// `af update`: upload new bits; if the app was started, restart it (a full stop-stage-start).
    pub async fn update(
        &self,
        name: &str,
        dir: &Path,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let app = self.app(name).await?;
        self.upload_dir(name, dir).await?;
        if app["state"] == "STARTED" {
            self.restart(name, timeout).await?;
        }
        Ok(())
    }

    /// `af map`: append the URL to `uris` as typed and PUT.
    pub async fn map(&self, name: &str, url: &str) -> Result<(), ClientError> {
        self.modify(name, |doc| {
            let mut uris = doc["uris"].as_array().cloned().unwrap_or_default();
            uris.push(json!(url));
            doc["uris"] = Value::Array(uris);
        })
        .await
    }

    /// `af unmap`: the URL (without `http(s)://`) must be mapped; remove it and PUT.
    pub async fn unmap(&self, name: &str, url: &str) -> Result<(), ClientError> {
        let url = url
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let mut document = self.app(name).await?;
        let uris = document["uris"].as_array().cloned().unwrap_or_default();
        if !uris.iter().any(|u| u == url) {
            return Err(ClientError::Local("Invalid url".into()));
        }
        document["uris"] = Value::Array(uris.into_iter().filter(|u| u != url).collect());
        self.update_app(name, &document).await
    }

    /// `af instances NAME N`: PUT the new count; no restart.
    pub async fn scale(&self, name: &str, instances: u32) -> Result<(), ClientError> {
        self.modify(name, |doc| doc["instances"] = json!(instances))
            .await
    }

    /// `af push NAME --path DIR --url URL… -n`: create, upload, start and wait until it runs.
    pub async fn push(
        &self,
        name: &str,
        dir: &Path,
        uris: &[&str],
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let framework = detect_framework(dir);
        self.create_app(&json!({
            "name": name,
            "staging": {"framework": framework, "runtime": null},
            "uris": uris,
            "instances": 1,
            "resources": {"memory": 64},
        }))
        .await?;
        self.upload_dir(name, dir).await?;
        self.start(name, timeout).await
    }
}

/// af's detection, reduced to what afemu runs: node entry points, else standalone.
fn detect_framework(dir: &Path) -> &'static str {
    let node = ["server.js", "app.js", "index.js", "main.js"]
        .iter()
        .any(|file| dir.join(file).is_file());
    if node { "node" } else { "standalone" }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.as_u16() < 400 {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(error_from(status, &body))
}

fn error_from(status: StatusCode, body: &str) -> ClientError {
    if let Ok(Value::Object(error)) = serde_json::from_str::<Value>(body)
        && let (Some(code), Some(description)) = (
            error.get("code").and_then(Value::as_i64),
            error.get("description").and_then(Value::as_str),
        )
    {
        return ClientError::Api {
            status: status.as_u16(),
            code,
            description: description.to_owned(),
        };
    }
    ClientError::Http {
        status: status.as_u16(),
        body: body.chars().take(200).collect(),
    }
}

/// af's `URI.encode(segment, /[^-_.!~*'()a-zA-Z\d]/)`: everything but the unreserved characters.
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped_like_af() {
        assert_eq!(escape_segment("a@b.com"), "a%40b.com");
        assert_eq!(escape_segment("/logs/x.log"), "%2Flogs%2Fx.log");
        assert_eq!(escape_segment("my-app_1"), "my-app_1");
    }

    #[test]
    fn v1_error_bodies_become_api_errors() {
        let error = error_from(
            StatusCode::NOT_FOUND,
            r#"{"code":301,"description":"Application not found"}"#,
        );
        assert_eq!(error.to_string(), "Error 301: Application not found");
        assert_eq!(error.code(), Some(301));
        let other = error_from(StatusCode::BAD_GATEWAY, "<html>");
        assert_eq!(other.status(), Some(502));
    }

    #[test]
    fn targets_get_a_scheme() {
        assert_eq!(
            V1Client::new("localhost:9022/").target(),
            "http://localhost:9022"
        );
        assert_eq!(
            V1Client::new("https://api.x.com").target(),
            "https://api.x.com"
        );
    }
}
