//! The commands that drive a running emulator over its admin API (`/_afemu/`): `status`,
//! `routes`, `journal`, `fault`, `reset`, `state` and `wait`. One file per command; this one holds
//! what they share: where the emulator is ([`Target`]), the client ([`Remote`]) and the errors
//! a person is shown ([`RemoteError`]), each naming its cause.
//!
//! They ask no more than `curl` would: the same endpoints, under the same rules (a client on the
//! emulator's machine is let in directly, anyone else with the admin token in `AUTHORIZATION`).

pub(crate) mod fault;
pub(crate) mod journal;
pub(crate) mod state;
pub(crate) mod status;

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Where the emulator is and how to be let in: every command of this module takes these.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// The emulator's API, as `afemu serve` printed it.
    #[arg(
        long,
        env = "AFEMU_TARGET",
        value_name = "URL",
        default_value = "http://127.0.0.1:9022",
        global = true
    )]
    pub(crate) target: String,
    /// The admin token `afemu serve` printed, sent in AUTHORIZATION: needed from another machine
    /// or through the router, not on the emulator's own.
    #[arg(
        long,
        env = "AFEMU_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub(crate) token: Option<String>,
}

/// Why a command could not do what it was asked; each says what to do about it.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// No emulator answered at the target.
    Unreachable { target: String, cause: String },
    /// The admin guard turned the request away (401 or 403).
    Refused { description: Option<String> },
    /// The emulator answered with an error: its v1 `{code, description}`, or its status.
    Said { status: u16, description: String },
    /// Anything else: an answer that is not what afemu sends, a file that cannot be written.
    Other(String),
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Unreachable { target, cause } => write!(
                f,
                "cannot reach afemu at {target}: {cause} — is `afemu serve` running?"
            ),
            RemoteError::Refused { description } => {
                write!(
                    f,
                    "the emulator refuses: run this on its machine or pass --token / AFEMU_ADMIN_TOKEN"
                )?;
                if let Some(description) = description {
                    write!(f, " ({description})")?;
                }
                Ok(())
            }
            RemoteError::Said {
                status,
                description,
            } => write!(f, "{description} ({status})"),
            RemoteError::Other(message) => f.write_str(message),
        }
    }
}

/// A client of one emulator's admin API.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The API's base URL, without a trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    pub(crate) fn new(target: &Target) -> Result<Remote, RemoteError> {
        let mut base = target.target.trim().trim_end_matches('/').to_owned();
        if !base.contains("://") {
            base = format!("http://{base}");
        }
        if reqwest::Url::parse(&base).is_err() {
            return Err(RemoteError::Other(format!(
                "--target {:?} is not a URL (e.g. http://127.0.0.1:9022)",
                target.target
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RemoteError::Other(format!("cannot make an HTTP client: {e}")))?;
        Ok(Remote {
            base,
            token: target.token.clone().filter(|t| !t.trim().is_empty()),
            http,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (under the API, e.g. `/_afemu/faults`), with the token if there is one.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_with_query(method, path, &[])
    }

    /// [`Remote::request`] with a query string made of `query`, each pair encoded.
    pub(crate) fn request_with_query(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let mut url = format!("{}{path}", self.base);
        if let Ok(mut parsed) = reqwest::Url::parse(&url)
            && !query.is_empty()
        {
            parsed.query_pairs_mut().extend_pairs(query);
            url = parsed.into();
        }
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token),
            None => request,
        }
    }

    /// Sends a request and returns the response when it succeeded (2xx), or the error it is.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RemoteError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let description = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["description"].as_str().map(str::to_owned))
            .or_else(|| first_words(&text));
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(RemoteError::Refused { description });
        }
        Err(RemoteError::Said {
            status: status.as_u16(),
            description: description.unwrap_or_else(|| {
                format!(
                    "the emulator answered {status} (is {} afemu's API?)",
                    self.base
                )
            }),
        })
    }

    /// `GET path` as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, RemoteError> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        self.json_of(response, path).await
    }

    /// A response's body as JSON.
    pub(crate) async fn json_of(
        &self,
        response: reqwest::Response,
        path: &str,
    ) -> Result<Value, RemoteError> {
        let text = response.text().await.map_err(|e| self.transport(e))?;
        serde_json::from_str(&text).map_err(|e| {
            RemoteError::Other(format!(
                "{}{path} did not answer JSON ({e}): is it afemu's API?",
                self.base
            ))
        })
    }

    /// A failure to exchange anything, with its cause in words.
    pub(crate) fn transport(&self, error: reqwest::Error) -> RemoteError {
        RemoteError::Unreachable {
            target: self.base.clone(),
            cause: cause_of(&error),
        }
    }
}

/// The start of a body that is not v1's `{code, description}` (a proxy's page, say): its first
/// line, cut short.
fn first_words(text: &str) -> Option<String> {
    let line = text.trim().lines().next()?.trim();
    let mut cut: String = line.chars().take(200).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    (!cut.is_empty()).then_some(cut)
}

/// The innermost cause of a transport error, in words: "connection refused", "timed out", ….
fn cause_of(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        innermost = current.to_string();
        source = current.source();
    }
    innermost
}

/// How a command ended: printed (to stderr) and turned into the exit code.
pub(crate) fn finish(command: &str, result: Result<(), RemoteError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("afemu {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly.
pub(crate) fn out(text: &str) -> Result<(), RemoteError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => Err(RemoteError::Other(format!("cannot write: {error}"))),
    }
}

/// A JSON document for machines, pretty and ending with a newline.
pub(crate) fn out_json(value: &Value) -> Result<(), RemoteError> {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        let unreachable = RemoteError::Unreachable {
            target: "http://127.0.0.1:9".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "cannot reach afemu at http://127.0.0.1:9: connection refused — is `afemu serve` running?"
        );
        let refused = RemoteError::Refused { description: None };
        assert!(
            refused
                .to_string()
                .contains("pass --token / AFEMU_ADMIN_TOKEN")
        );
        assert_eq!(first_words("  <html>\n<body>"), Some("<html>".into()));
        assert_eq!(first_words(&"x".repeat(300)).unwrap().chars().count(), 201);
        assert_eq!(first_words(" \n "), None);
    }

    #[test]
    fn a_target_without_a_scheme_is_http_and_a_bad_one_is_refused() {
        let target = |url: &str| Target {
            target: url.into(),
            token: Some(" ".into()),
        };
        let remote = Remote::new(&target("localhost:9022/")).unwrap();
        assert_eq!(remote.base(), "http://localhost:9022");
        assert_eq!(remote.token, None, "a blank token is no token");
        assert!(Remote::new(&target("http://[::1")).is_err());
    }
}
