//! The v1 API as the af commands call it: af's `VMC::Client` (`lib/vmc/client.rb`), call for
//! call. Every authenticated call first checks the login with `GET /info` (once per client),
//! answers ≥ 400 become af's error texts (`Error 301: Application not found`,
//! `Error (JSON 404): Not Found`, …), JSON answers keep their key order, and `-t` prints each
//! exchange.

use std::time::Duration;

use reqwest::Method;

use crate::error::AfError;
use crate::json::Json;
use crate::output::Out;

/// A client for one target, as one af command holds it.
pub(crate) struct Api {
    http: reqwest::Client,
    /// The target URL, normalised (`https://` added, no trailing `/`).
    pub(crate) target: String,
    /// Sent raw in `AUTHORIZATION` on every request (no `Bearer`).
    pub(crate) auth_token: Option<String>,
    /// `-u EMAIL`: sent as `PROXY-USER`.
    pub(crate) proxy: Option<String>,
    /// `-t [KEY]`: `X-VCAP-Trace: KEY`, and every exchange printed.
    pub(crate) trace: Option<String>,
    /// The infra the manifest or `--infra` chose (AppFog), for the default URL.
    pub(crate) infra: Option<String>,
    /// Set by the first successful login check; af checks once per client.
    user: Option<String>,
    suggest_url: Option<String>,
    out: Out,
}

/// A request body.
enum Body {
    None,
    Json(String),
    Upload {
        zip: Vec<u8>,
        file_name: String,
        resources: String,
    },
}

/// What came back.
pub(crate) struct Response {
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    pub(crate) fn new(
        target: &str,
        auth_token: Option<String>,
        timeout: Duration,
        out: Out,
    ) -> Api {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("af/0.3.22 afemu-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a plain HTTP client always builds");
        Api {
            http,
            target: crate::config::normalize_target(target),
            auth_token,
            proxy: None,
            trace: None,
            infra: None,
            user: None,
            suggest_url: None,
            out,
        }
    }

    // ---------------------------------------------------------------- transport

    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
        extra_headers: &[(&str, String)],
    ) -> Result<Response, AfError> {
        let url = format!("{}/{}", self.target, path);
        let mut request = self.http.request(method.clone(), &url);
        for (name, value) in extra_headers {
            request = request.header(*name, value.as_str());
        }
        if let Some(token) = &self.auth_token {
            request = request.header("AUTHORIZATION", token.as_str());
        }
        if let Some(proxy) = &self.proxy {
            request = request.header("PROXY-USER", proxy.as_str());
        }
        if let Some(content_type) = content_type {
            request = request
                .header("Content-Type", content_type)
                .header("Accept", content_type);
        }
        if let Some(key) = &self.trace {
            request = request.header("X-VCAP-Trace", key.as_str());
        }
        let traced_payload = match &body {
            Body::None => None,
            Body::Json(text) => Some(text.clone()),
            Body::Upload {
                file_name,
                resources,
                ..
            } => Some(format!(
                "{{:_method=>\"put\", :application=>#<File:{file_name}>, :resources=>{}}}",
                crate::json::inspect_str(resources)
            )),
        };
        request = match body {
            Body::None => request,
            Body::Json(text) => request.body(text),
            Body::Upload {
                zip,
                file_name,
                resources,
            } => {
                let part = reqwest::multipart::Part::bytes(zip)
                    .file_name(file_name)
                    .mime_str("application/zip")
                    .expect("a valid mime type");
                let form = reqwest::multipart::Form::new()
                    .text("_method", "put")
                    .part("application", part)
                    .text("resources", resources);
                request.multipart(form)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&url, &e))?
            .to_vec();
        if self.trace.is_some() {
            self.print_trace(
                &method,
                &url,
                &headers,
                traced_payload.as_deref(),
                status,
                &body,
            );
        }
        let response = Response { body };
        if status >= 400 {
            let message = self.error_message(status, &response.text());
            return Err(if status == 404 || status == 400 {
                AfError::NotFound(message)
            } else {
                AfError::Target(message)
            });
        }
        Ok(response)
    }

    /// What af prints with `-t` (client.rb `perform_http_request`).
    fn print_trace(
        &self,
        method: &Method,
        url: &str,
        headers: &reqwest::header::HeaderMap,
        payload: Option<&str>,
        status: u16,
        body: &[u8],
    ) {
        let out = &self.out;
        out.puts_raw(">>>");
        out.puts_raw(&format!(
            "REQUEST: {} {url}",
            method.as_str().to_ascii_lowercase()
        ));
        out.puts_raw("RESPONSE_HEADERS:");
        for (name, value) in headers {
            // rest-client's header names: lower case, `_` for `-`.
            let key = name.as_str().replace('-', "_");
            out.puts_raw(&format!("    {key} : {}", value.to_str().unwrap_or("")));
        }
        if let Some(payload) = payload {
            out.puts_raw(&format!("REQUEST_BODY: {payload}"));
        }
        out.puts_raw(&format!("RESPONSE: [{status}]"));
        let text = String::from_utf8_lossy(body);
        match Json::parse(&text) {
            Ok(json) => out.puts_raw(&json.pretty()),
            Err(_) => out.puts_raw(&text),
        }
        out.puts_raw("<<<");
    }

    /// af's `parse_error_message`.
    fn error_message(&self, status: u16, body: &str) -> String {
        match Json::parse(body) {
            Ok(parsed) => {
                let code = parsed.get("code");
                let description = parsed.get("description");
                if code.truthy() && description.truthy() {
                    format!(
                        "Error {}: {}",
                        code.to_ruby_s(),
                        description.to_ruby_s().replace('"', "'")
                    )
                } else {
                    format!("Error (HTTP {status}): {body}")
                }
            }
            Err(_) if body.is_empty() => format!("Error ({status}): No Response Received"),
            Err(_) => {
                let shown = if self.trace.is_some() {
                    body.to_owned()
                } else {
                    truncate(body, 30)
                };
                format!("Error (JSON {status}): {shown}")
            }
        }
    }

    /// A failure to get any answer, in af's words (Ruby's exception class and message).
    fn transport_error(&self, url: &str, error: &reqwest::Error) -> AfError {
        let (host, port) = host_and_port(url);
        let chain = error_chain(error);
        let lowered = chain.to_ascii_lowercase();
        if lowered.contains("dns error") || lowered.contains("failed to lookup address") {
            return AfError::BadTarget {
                target: self.target.clone(),
                message: format!(
                    "Cannot access target (Failed to open TCP connection to {host}:{port} (getaddrinfo: Name or service not known))"
                ),
            };
        }
        if let Some(io) = io_error(error) {
            let address = resolved_address(&host, port);
            let message = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => format!(
                    "HTTP exception: Errno::ECONNREFUSED:Failed to open TCP connection to {host}:{port} (Connection refused - connect(2) for {address})"
                ),
                std::io::ErrorKind::ConnectionReset => {
                    "HTTP exception: Errno::ECONNRESET:Connection reset by peer".to_owned()
                }
                _ => format!("HTTP exception: {}:{io}", io.kind()),
            };
            return AfError::Http(message);
        }
        if error.is_timeout() {
            return AfError::Http(format!(
                "HTTP exception: RestClient::Exceptions::ReadTimeout:Timed out reading data from server ({host}:{port})"
            ));
        }
        if url.starts_with("https://") {
            return AfError::Http(format!(
                "HTTP exception: this af does not speak HTTPS ({host}:{port}); target an http:// URL"
            ));
        }
        AfError::Http(format!(
            "HTTP exception: RestClient::ServerBrokeConnection:Server broke connection ({chain})"
        ))
    }

    fn path(segments: &[&str]) -> String {
        segments
            .iter()
            .map(|s| escape_segment(s))
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn http_get(&self, path: &str, content_type: Option<&str>) -> Result<Response, AfError> {
        self.request(Method::GET, path, content_type, Body::None, &[])
            .await
    }

    async fn json_get(&self, path: &str) -> Result<Json, AfError> {
        let response = self.http_get(path, Some("application/json")).await?;
        Json::parse(&response.text()).map_err(|_| AfError::BadResponse)
    }

    async fn json_post(&self, path: &str, payload: &Json) -> Result<Response, AfError> {
        self.request(
            Method::POST,
            path,
            Some("application/json"),
            Body::Json(payload.compact()),
            &[],
        )
        .await
    }

    async fn json_put(&self, path: &str, payload: &Json) -> Result<Response, AfError> {
        self.request(
            Method::PUT,
            path,
            Some("application/json"),
            Body::Json(payload.compact()),
            &[],
        )
        .await
    }

    async fn http_delete(&self, path: &str) -> Result<Response, AfError> {
        self.request(Method::DELETE, path, None, Body::None, &[])
            .await
    }

    // ---------------------------------------------------------------- login state

    /// af's `check_login_status`: `GET /info` (once) must show `user` and `usage`.
    pub(crate) async fn check_login_status(&mut self) -> Result<(), AfError> {
        if self.user.is_some() || self.logged_in().await? {
            Ok(())
        } else {
            Err(AfError::Auth)
        }
    }

    /// af's `logged_in?`.
    pub(crate) async fn logged_in(&mut self) -> Result<bool, AfError> {
        let info = self.info().await?;
        if info.get("user").truthy() && info.get("usage").truthy() {
            self.user = Some(info.get("user").to_ruby_s());
            return Ok(true);
        }
        Ok(false)
    }

    /// af's `target_valid?`: `/info` answers with `name`, `build`, `version` and `support`.
    pub(crate) async fn target_valid(&self) -> bool {
        match self.info().await {
            Ok(info) => ["name", "build", "version", "support"]
                .iter()
                .all(|k| info.get(k).truthy()),
            Err(_) => false,
        }
    }

    // ---------------------------------------------------------------- info

    pub(crate) async fn info(&self) -> Result<Json, AfError> {
        self.json_get("info").await
    }

    /// `GET /info` as text (`af target` shows it on request).
    pub(crate) async fn raw_info(&self) -> Result<String, AfError> {
        Ok(self.http_get("info", None).await?.text())
    }

    pub(crate) async fn services_info(&mut self) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["info", "services"])).await
    }

    pub(crate) async fn runtimes_info(&self) -> Result<Json, AfError> {
        self.json_get(&Self::path(&["info", "runtimes"])).await
    }

    // ---------------------------------------------------------------- apps

    pub(crate) async fn apps(&mut self) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get("apps").await
    }

    pub(crate) async fn create_app(&mut self, name: &str, manifest: &Json) -> Result<(), AfError> {
        self.check_login_status().await?;
        let mut app = manifest.clone();
        app.set("name", Json::str(name));
        if !app.get("instances").truthy() {
            app.set("instances", Json::Int(1));
        }
        self.json_post("apps", &app).await.map(drop)
    }

    pub(crate) async fn update_app(&mut self, name: &str, app: &Json) -> Result<(), AfError> {
        self.check_login_status().await?;
        self.json_put(&Self::path(&["apps", name]), app)
            .await
            .map(drop)
    }

    /// The multipart upload: `_method=put`, `application` (`<name>.zip`), `resources`, with af's
    /// `Hash` and `Label` headers.
    pub(crate) async fn upload_app(
        &mut self,
        name: &str,
        zip: Vec<u8>,
        hash: &str,
        label: &str,
        resources: &Json,
    ) -> Result<(), AfError> {
        self.check_login_status().await?;
        let body = Body::Upload {
            zip,
            file_name: format!("{name}.zip"),
            resources: resources.compact(),
        };
        let headers = [("Hash", hash.to_owned()), ("Label", label.to_owned())];
        self.request(
            Method::POST,
            &Self::path(&["apps", name, "application"]),
            None,
            body,
            &headers,
        )
        .await
        .map(drop)
    }

    pub(crate) async fn delete_app(&mut self, name: &str) -> Result<(), AfError> {
        self.check_login_status().await?;
        self.http_delete(&Self::path(&["apps", name]))
            .await
            .map(drop)
    }

    pub(crate) async fn app_info(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["apps", name])).await
    }

    /// `GET /apps/:name/stats`, as af reshapes it: entries with `stats`, each with its
    /// `instance` number, sorted by it.
    pub(crate) async fn app_stats(&mut self, name: &str) -> Result<Vec<(i64, Json)>, AfError> {
        self.check_login_status().await?;
        let raw = self.json_get(&Self::path(&["apps", name, "stats"])).await?;
        let mut stats: Vec<(i64, Json)> = raw
            .as_object()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter(|(_, entry)| entry.get("stats").truthy())
                    .map(|(k, entry)| (crate::prompt::ruby_to_i(k), entry.clone()))
                    .collect()
            })
            .unwrap_or_default();
        stats.sort_by_key(|(index, _)| *index);
        Ok(stats)
    }

    pub(crate) async fn app_instances(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["apps", name, "instances"]))
            .await
    }

    pub(crate) async fn app_crashes(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["apps", name, "crashes"])).await
    }

    /// `GET /apps/:name/history` (AppFog, 2014).
    pub(crate) async fn app_history(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["apps", name, "history"])).await
    }

    /// `GET /apps/:name/diff` (AppFog, 2014).
    pub(crate) async fn app_diff(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&Self::path(&["apps", name, "diff"])).await
    }

    /// A directory listing or a file of an instance (`/` inside the path escaped as `%2F`).
    pub(crate) async fn app_files(
        &mut self,
        name: &str,
        path: &str,
        instance: &str,
    ) -> Result<String, AfError> {
        self.check_login_status().await?;
        let path = path.replace("//", "/");
        let url = Self::path(&["apps", name, "instances", instance, "files", &path]);
        Ok(self.http_get(&url, None).await?.text())
    }

    /// The last upload, as a zip.
    pub(crate) async fn app_download(&mut self, name: &str) -> Result<Vec<u8>, AfError> {
        self.check_login_status().await?;
        let url = Self::path(&["apps", name, "application"]);
        Ok(self
            .http_get(&url, Some("application/octet-stream"))
            .await?
            .body)
    }

    // ---------------------------------------------------------------- services

    pub(crate) async fn services(&mut self) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get("services").await
    }

    /// af's `create_service`: the vendor must be offered in `/info/services`.
    pub(crate) async fn create_service(
        &mut self,
        infra: Option<&str>,
        vendor: &str,
        name: &str,
    ) -> Result<(), AfError> {
        self.check_login_status().await?;
        let offered = self.services_info().await?;
        let mut service: Option<Json> = None;
        'search: for (_, vendors) in offered.as_object().into_iter().flatten() {
            for (_, versions) in vendors.as_object().into_iter().flatten() {
                for (version, description) in versions.as_object().into_iter().flatten() {
                    if description.get("vendor").as_str() == Some(vendor) {
                        let mut doc = crate::json_object! {
                            "type" => description.get("type").clone(),
                            "tier" => "free",
                            "vendor" => vendor,
                            "version" => version.as_str(),
                        };
                        if let Some(infra) = infra {
                            doc.set("infra", crate::json_object! {"provider" => infra});
                        }
                        service = Some(doc);
                        break 'search;
                    }
                }
            }
        }
        let Some(mut service) = service else {
            return Err(AfError::Target(format!(
                "Service [{vendor}] is not a valid service choice"
            )));
        };
        service.set("name", Json::str(name));
        self.json_post("services", &service).await.map(drop)
    }

    pub(crate) async fn delete_service(&mut self, name: &str) -> Result<(), AfError> {
        self.check_login_status().await?;
        let services = self.services().await?;
        if !services
            .items()
            .iter()
            .any(|s| s.get("name").as_str() == Some(name))
        {
            return Err(AfError::Target(format!(
                "Service [{name}] not a valid service"
            )));
        }
        self.http_delete(&Self::path(&["services", name]))
            .await
            .map(drop)
    }

    pub(crate) async fn bind_service(
        &mut self,
        service: &str,
        app_name: &str,
    ) -> Result<(), AfError> {
        self.check_login_status().await?;
        let services = self.services().await?;
        let provisioned = services
            .items()
            .iter()
            .find(|s| s.get("name").as_str() == Some(service))
            .cloned();
        let mut app = self.app_info(app_name).await?;
        if self.infra_supported().await {
            let same_infra = provisioned
                .as_ref()
                .is_some_and(|s| s.get("infra") == app.get("infra"));
            if !same_infra {
                return Err(AfError::Target(format!(
                    "Service {service} and App {app_name} are not on the same infra"
                )));
            }
        }
        let mut bound = app.get("services").items().to_vec();
        bound.push(Json::str(service));
        app.set("services", Json::Array(bound));
        self.update_app(app_name, &app).await
    }

    pub(crate) async fn unbind_service(
        &mut self,
        service: &str,
        app_name: &str,
    ) -> Result<(), AfError> {
        self.check_login_status().await?;
        let mut app = self.app_info(app_name).await?;
        let bound: Vec<Json> = app
            .get("services")
            .items()
            .iter()
            .filter(|s| s.as_str() != Some(service))
            .cloned()
            .collect();
        app.set("services", Json::Array(bound));
        self.update_app(app_name, &app).await
    }

    /// afemu's `GET /_afemu/tunnel/services/NAME`: the service's credentials as this machine
    /// reaches it (`credentials`), its `vendor`, and whether it is `real` (a record's
    /// credentials are made up; `detail` says why it is one). Not v1's: what `af tunnel` reads
    /// instead of pushing Caldecott.
    pub(crate) async fn tunnel_service(&mut self, name: &str) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get(&format!(
            "_afemu/tunnel/{}",
            Self::path(&["services", name])
        ))
        .await
    }

    pub(crate) async fn export_service(&self, service: &str) -> Result<Json, AfError> {
        self.json_get(&Self::path(&["services", "export", service]))
            .await
    }

    pub(crate) async fn import_service(&self, service: &str, uri: &str) -> Result<Json, AfError> {
        let response = self
            .json_post(
                &Self::path(&["services", "import", service]),
                &crate::json_object! {"uri" => uri},
            )
            .await?;
        Json::parse(&response.text()).map_err(|_| AfError::BadResponse)
    }

    // ---------------------------------------------------------------- resources

    /// `POST /resources[?infra=X]`: which of these files the server already has.
    pub(crate) async fn check_resources(
        &mut self,
        resources: &Json,
        infra: Option<&str>,
    ) -> Result<Json, AfError> {
        self.check_login_status().await?;
        let mut url = String::from("resources");
        if let Some(infra) = infra {
            url.push_str("?infra=");
            url.push_str(infra);
        }
        let response = self.json_post(&url, resources).await?;
        Json::parse(&response.text()).map_err(|_| AfError::BadResponse)
    }

    // ---------------------------------------------------------------- users

    /// `POST /users/:email/tokens`; keeps and returns the token (`None` when the answer has
    /// none, which af stores as `null`).
    pub(crate) async fn login(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<Option<String>, AfError> {
        let response = self
            .json_post(
                &Self::path(&["users", email, "tokens"]),
                &crate::json_object! {"password" => password},
            )
            .await?;
        let answer = Json::parse(&response.text()).map_err(|_| AfError::BadResponse)?;
        self.user = Some(email.to_owned());
        let token = answer.get("token").as_str().map(str::to_owned);
        self.auth_token = token.clone();
        Ok(token)
    }

    pub(crate) async fn change_password(&mut self, password: &str) -> Result<(), AfError> {
        self.check_login_status().await?;
        let user = self.user.clone().unwrap_or_default();
        let mut info = self.json_get(&Self::path(&["users", &user])).await?;
        if info.truthy() {
            info.set("password", Json::str(password));
            self.json_put(&Self::path(&["users", &user]), &info).await?;
        }
        Ok(())
    }

    pub(crate) async fn users(&mut self) -> Result<Json, AfError> {
        self.check_login_status().await?;
        self.json_get("users").await
    }

    pub(crate) async fn add_user(&self, email: &str, password: &str) -> Result<(), AfError> {
        self.json_post(
            "users",
            &crate::json_object! {"email" => email, "password" => password},
        )
        .await
        .map(drop)
    }

    pub(crate) async fn delete_user(&mut self, email: &str) -> Result<(), AfError> {
        self.check_login_status().await?;
        self.http_delete(&Self::path(&["users", email]))
            .await
            .map(drop)
    }

    // ---------------------------------------------------------------- infras (AppFog)

    /// `GET /info/infras`; any failure means "no infras" (`[]`).
    pub(crate) async fn infras(&self) -> Vec<Json> {
        match self.json_get(&Self::path(&["info", "infras"])).await {
            Ok(Json::Array(list)) => list,
            _ => Vec::new(),
        }
    }

    pub(crate) async fn infra_supported(&self) -> bool {
        !self.infras().await.is_empty()
    }

    pub(crate) async fn infra_valid(&self, name: &str) -> bool {
        self.infras()
            .await
            .iter()
            .any(|i| i.get("infra").as_str() == Some(name))
    }

    /// The descriptions of the available infras, for the menu.
    pub(crate) async fn infra_descriptions(&self) -> Vec<String> {
        self.infras()
            .await
            .iter()
            .filter(|i| !i.contains_key("available") || i.get("available") == &Json::Bool(true))
            .map(|i| i.get("description").to_ruby_s())
            .collect()
    }

    pub(crate) async fn infra_name_for_description(&self, description: &str) -> String {
        self.infras()
            .await
            .iter()
            .find(|i| i.get("description").to_ruby_s() == description)
            .map(|i| i.get("infra").to_ruby_s())
            .unwrap_or_default()
    }

    async fn base_for_infra(&self, name: Option<&str>) -> String {
        let infras = self.infras().await;
        match infras
            .iter()
            .find(|i| i.get("infra").as_str() == name && name.is_some())
        {
            Some(info) => info.get("base").to_ruby_s(),
            None => self.default_base(),
        }
    }

    /// af's `default_base`: the target without its scheme and first label; `aws.af.cm` when
    /// it has no dot (so `http://localhost:9022` suggests `NAME.aws.af.cm`).
    pub(crate) fn default_base(&self) -> String {
        default_base(&self.target)
    }

    /// The base of the default URL (`NAME.<base>`), computed once per client as af does.
    pub(crate) async fn suggest_url(&mut self, infra: Option<&str>) -> String {
        if let Some(url) = &self.suggest_url {
            return url.clone();
        }
        let infra = infra.map(str::to_owned).or_else(|| self.infra.clone());
        let url = self.base_for_infra(infra.as_deref()).await;
        self.suggest_url = Some(url.clone());
        url
    }
}

/// `target.sub(/https?:\/\/[^.]+\./, '')`, or `aws.af.cm` when nothing matches.
pub(crate) fn default_base(target: &str) -> String {
    let bytes = target.as_bytes();
    for start in 0..bytes.len() {
        let rest = &target[start..];
        let after_scheme = if let Some(r) = rest.strip_prefix("https://") {
            r
        } else if let Some(r) = rest.strip_prefix("http://") {
            r
        } else {
            continue;
        };
        if let Some(dot) = after_scheme.find('.')
            && dot > 0
        {
            let end = target.len() - after_scheme.len() + dot + 1;
            return format!("{}{}", &target[..start], &target[end..]);
        }
    }
    "aws.af.cm".to_owned()
}

/// af's private `truncate`: the first 31 characters of the stripped text, `...` when longer.
fn truncate(text: &str, limit: usize) -> String {
    let stripped: String = text.trim().chars().take(limit + 1).collect();
    if stripped.chars().count() > limit {
        format!("{stripped}...")
    } else {
        stripped
    }
}

/// af's `URI.encode(segment, /[^unreserved]/)`: everything but `-_.!~*'()`, letters and digits.
pub(crate) fn escape_segment(segment: &str) -> String {
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

fn host_and_port(url: &str) -> (String, u16) {
    match reqwest::Url::parse(url) {
        Ok(parsed) => (
            parsed.host_str().unwrap_or("").to_owned(),
            parsed.port_or_known_default().unwrap_or(80),
        ),
        Err(_) => (String::new(), 80),
    }
}

/// The address Ruby reports a refused connection for: the name resolved, IPv4 first.
fn resolved_address(host: &str, port: u16) -> String {
    use std::net::ToSocketAddrs;
    let addresses: Vec<std::net::SocketAddr> = (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    let chosen = addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first());
    match chosen {
        Some(address) => format!("{}:{}", address.ip(), port),
        None => format!("{host}:{port}"),
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn io_error(error: &reqwest::Error) -> Option<&std::io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_base_like_af() {
        assert_eq!(default_base("http://api.example.com"), "example.com");
        assert_eq!(
            default_base("http://api.example.com:8080"),
            "example.com:8080"
        );
        assert_eq!(default_base("http://localhost:9022"), "aws.af.cm");
        assert_eq!(default_base("http://127.0.0.1:9022"), "0.0.1:9022");
        assert_eq!(default_base("https://api.localhost:9022"), "localhost:9022");
    }

    #[test]
    fn truncation_and_escaping() {
        assert_eq!(truncate("  Not Found  ", 30), "Not Found");
        assert_eq!(
            truncate(&"x".repeat(40), 30),
            format!("{}...", "x".repeat(31))
        );
        assert_eq!(escape_segment("a@b.c"), "a%40b.c");
        assert_eq!(escape_segment("/logs/x.log"), "%2Flogs%2Fx.log");
    }

    #[test]
    fn error_texts_like_af() {
        let api = Api::new(
            "http://localhost:1",
            None,
            Duration::from_secs(1),
            Out::new(Box::new(std::io::sink())),
        );
        assert_eq!(
            api.error_message(404, r#"{"code":301,"description":"Application not found"}"#),
            "Error 301: Application not found"
        );
        assert_eq!(
            api.error_message(400, r#"{"code":700,"description":"Invalid URI: \"x\""}"#),
            "Error 700: Invalid URI: 'x'"
        );
        assert_eq!(
            api.error_message(500, r#"{"error":"boom"}"#),
            r#"Error (HTTP 500): {"error":"boom"}"#
        );
        assert_eq!(
            api.error_message(502, ""),
            "Error (502): No Response Received"
        );
        assert_eq!(
            api.error_message(404, "Not Found"),
            "Error (JSON 404): Not Found"
        );
    }
}
