//! The router's own answers: the platform's "default error page". Every such response carries
//! `X-Afemu-Router-Error`, so any client can tell it from an app's own 404 or 502.
//!
//! The AppFog page itself is not in any public source (spec/v1-runtime.md §9), so the default
//! `appfog` profile is our own page in its spirit. The other profiles copy what v1's routers sent:
//! `vcap` is router v1's 404 text and router v2's nginx pages, `gorouter` the 2013 gorouter's
//! plain-text bodies. A file can replace them all.

use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;
use serde::Serialize;

/// The header that marks a response as the router's own.
pub const ROUTER_ERROR_HEADER: &str = "x-afemu-router-error";

/// Why the router answered itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterError {
    /// No backend is registered for the host: 404.
    NoRoute,
    /// The chosen backend refused the connection or failed mid-request: 502.
    BadGateway,
    /// The chosen backend did not answer in time: 504.
    Timeout,
    /// The request could not be routed at all (no `Host`): 400. Not an app's fault and not the
    /// default error page.
    BadRequest,
}

impl RouterError {
    pub const ALL: [RouterError; 4] = [
        RouterError::NoRoute,
        RouterError::BadGateway,
        RouterError::Timeout,
        RouterError::BadRequest,
    ];

    pub fn status(self) -> u16 {
        match self {
            RouterError::NoRoute => 404,
            RouterError::BadGateway => 502,
            RouterError::Timeout => 504,
            RouterError::BadRequest => 400,
        }
    }

    /// The value of [`ROUTER_ERROR_HEADER`].
    pub fn as_str(self) -> &'static str {
        match self {
            RouterError::NoRoute => "no-route",
            RouterError::BadGateway => "bad-gateway",
            RouterError::Timeout => "timeout",
            RouterError::BadRequest => "bad-request",
        }
    }

    /// The status line words that clients and scripts match on.
    pub fn reason(self) -> &'static str {
        match self {
            RouterError::NoRoute => "Not Found",
            RouterError::BadGateway => "Bad Gateway",
            RouterError::Timeout => "Gateway Timeout",
            RouterError::BadRequest => "Bad Request",
        }
    }

    /// Whether a visitor would see this as the platform's default error page.
    pub fn is_default_error_page(self) -> bool {
        !matches!(self, RouterError::BadRequest)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One rendered page: its content type and body, ready to send.
#[derive(Clone, Debug)]
pub struct ErrorPage {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// The set of pages the router answers with, rendered once at start.
#[derive(Clone, Debug)]
pub struct ErrorPages {
    profile: String,
    pages: [ErrorPage; 4],
}

impl Default for ErrorPages {
    fn default() -> Self {
        ErrorPages::appfog()
    }
}

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

impl ErrorPages {
    /// The default: a page in AppFog's spirit, with the status words in title and heading.
    pub fn appfog() -> ErrorPages {
        let pages = RouterError::ALL.map(|error| ErrorPage {
            content_type: HTML,
            body: Bytes::from(render_template(APPFOG_TEMPLATE, error)),
        });
        ErrorPages {
            profile: "appfog".into(),
            pages,
        }
    }

    /// Router v1's 404 text; router v2's nginx pages for the gateway errors.
    pub fn vcap() -> ErrorPages {
        let pages = RouterError::ALL.map(|error| match error {
            RouterError::NoRoute => ErrorPage {
                content_type: TEXT,
                body: Bytes::from_static(b"VCAP ROUTER: 404 - DESTINATION NOT FOUND\r\n"),
            },
            other => ErrorPage {
                content_type: HTML,
                body: Bytes::from(format!(
                    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body bgcolor=\"white\">\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                    code = other.status(),
                    reason = nginx_reason(other),
                )),
            },
        });
        ErrorPages {
            profile: "vcap".into(),
            pages,
        }
    }

    /// The 2013 gorouter: `404 Not Found\n` and friends, as plain text.
    pub fn gorouter() -> ErrorPages {
        let pages = RouterError::ALL.map(|error| ErrorPage {
            content_type: TEXT,
            body: Bytes::from(format!("{} {}\n", error.status(), error.reason())),
        });
        ErrorPages {
            profile: "gorouter".into(),
            pages,
        }
    }

    /// A user's own page for every error. `{{status}}` and `{{reason}}` in it are replaced.
    pub fn from_template(template: &str, profile: impl Into<String>) -> ErrorPages {
        let content_type = if template.trim_start().starts_with('<') {
            HTML
        } else {
            TEXT
        };
        let pages = RouterError::ALL.map(|error| ErrorPage {
            content_type,
            body: Bytes::from(render_template(template, error)),
        });
        ErrorPages {
            profile: profile.into(),
            pages,
        }
    }

    /// Reads a page template from a file.
    pub fn from_file(path: &Path) -> std::io::Result<ErrorPages> {
        let template = std::fs::read_to_string(path)?;
        Ok(ErrorPages::from_template(
            &template,
            path.display().to_string(),
        ))
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    pub fn page(&self, error: RouterError) -> &ErrorPage {
        &self.pages[error.index()]
    }
}

/// `appfog`, `vcap`, `gorouter`, or the path of a template file.
impl FromStr for ErrorPages {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "appfog" => Ok(ErrorPages::appfog()),
            "vcap" => Ok(ErrorPages::vcap()),
            "gorouter" => Ok(ErrorPages::gorouter()),
            path => ErrorPages::from_file(Path::new(path)).map_err(|e| {
                format!(
                    "error pages {path:?}: not a profile (appfog, vcap, gorouter) and not a readable file: {e}"
                )
            }),
        }
    }
}

fn nginx_reason(error: RouterError) -> &'static str {
    match error {
        // nginx spells it with a hyphen.
        RouterError::Timeout => "Gateway Time-out",
        other => other.reason(),
    }
}

fn render_template(template: &str, error: RouterError) -> String {
    template
        .replace("{{status}}", &error.status().to_string())
        .replace("{{reason}}", error.reason())
        .replace("{{explanation}}", explanation(error))
}

fn explanation(error: RouterError) -> &'static str {
    match error {
        RouterError::NoRoute => {
            "No application is running at this address right now. If this is your app, it may be stopped, starting or updating."
        }
        RouterError::BadGateway => {
            "The application at this address did not answer properly. It may have crashed or be restarting."
        }
        RouterError::Timeout => "The application at this address took too long to answer.",
        RouterError::BadRequest => "The request could not be routed: it names no host.",
    }
}

const APPFOG_TEMPLATE: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{{status}} {{reason}} - AppFog</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; background: #f4f6f8; color: #333; margin: 0; }
.box { max-width: 560px; margin: 12% auto; background: #fff; border-top: 6px solid #2a8bd0; padding: 2em 2.5em; box-shadow: 0 1px 3px rgba(0,0,0,.15); }
h1 { font-size: 1.6em; margin: 0 0 .6em; }
p { line-height: 1.5; }
.small { color: #888; font-size: .85em; }
</style>
</head>
<body>
<div class="box">
<h1>{{status}} {{reason}}</h1>
<p>{{explanation}}</p>
<p class="small">AppFog default error page (afemu)</p>
</div>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pages: &ErrorPages, error: RouterError) -> String {
        String::from_utf8(pages.page(error).body.to_vec()).unwrap()
    }

    #[test]
    fn pages_carry_the_words_clients_match_on() {
        for pages in [ErrorPages::appfog(), ErrorPages::gorouter()] {
            assert!(body(&pages, RouterError::NoRoute).contains("404 Not Found"));
            assert!(body(&pages, RouterError::BadGateway).contains("502 Bad Gateway"));
            assert!(body(&pages, RouterError::Timeout).contains("504 Gateway Timeout"));
        }
        let vcap = ErrorPages::vcap();
        assert_eq!(
            body(&vcap, RouterError::NoRoute),
            "VCAP ROUTER: 404 - DESTINATION NOT FOUND\r\n"
        );
        assert!(body(&vcap, RouterError::BadGateway).contains("<title>502 Bad Gateway</title>"));
        assert!(body(&vcap, RouterError::Timeout).contains("504 Gateway Time-out"));
    }

    #[test]
    fn templates_are_filled_in() {
        let pages = ErrorPages::from_template("<p>{{status}}: {{reason}}</p>", "mine");
        assert_eq!(
            body(&pages, RouterError::BadGateway),
            "<p>502: Bad Gateway</p>"
        );
        assert_eq!(pages.page(RouterError::NoRoute).content_type, HTML);
    }

    #[test]
    fn profiles_parse_and_missing_files_are_clear_errors() {
        assert_eq!("vcap".parse::<ErrorPages>().unwrap().profile(), "vcap");
        let err = "/no/such/page.html".parse::<ErrorPages>().unwrap_err();
        assert!(err.contains("not a readable file"), "{err}");
    }

    #[test]
    fn statuses_and_header_values() {
        let table: Vec<_> = RouterError::ALL
            .iter()
            .map(|e| (e.status(), e.as_str(), e.is_default_error_page()))
            .collect();
        assert_eq!(
            table,
            vec![
                (404, "no-route", true),
                (502, "bad-gateway", true),
                (504, "timeout", true),
                (400, "bad-request", false),
            ]
        );
    }
}
