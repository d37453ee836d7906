//! The control plane's errors, as the v1 cloud controller reported them: a `{code, description}`
//! JSON body with the status its `CloudError` table gives each code
//! (`cloud_controller/lib/cloud_error.rb`, spec/af-api.md §11). This is the one place they are
//! mapped to responses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error the API can answer with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// 100/400: a body that is not JSON, or JSON of the wrong shape.
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// 100/413: a body over the configured limit (v1's nginx answered 413 before the CC saw it).
    #[error("Bad request: {0}")]
    TooLarge(String),
    /// 102/400: `meta.version` does not match: someone else changed the app since it was read.
    #[error("Optimistic locking failure")]
    LockingFailure,
    /// 111/500: something broke on our side; the description says what.
    #[error("System Exception Encountered: {0}")]
    System(String),
    /// 200/403: no token, a bad token, a wrong password, or another user's resource.
    #[error("Operation not permitted")]
    Forbidden,
    /// 201/403
    #[error("User not found")]
    UserNotFound,
    /// 300/400: the app document is invalid (bad name, name taken, bad numbers).
    #[error("Invalid application description: {0}")]
    InvalidApp(String),
    /// 301/404
    #[error("Application not found")]
    AppNotFound,
    /// 303/404
    #[error("Could not find : '{0}'")]
    FileNotFound(String),
    /// 304/400
    #[error("Could not find instance: '{0}'")]
    InstanceNotFound(String),
    /// 305/400
    #[error("Operation not permitted on a stopped app")]
    AppStopped,
    /// 306/500
    #[error("Error retrieving file '{0}'")]
    FileError(String),
    /// 308/400
    #[error("Invalid framework description: '{0}'")]
    InvalidFramework(String),
    /// 309/400
    #[error("Cloud controller has disallowed debugging.")]
    DebugDisallowed,
    /// 310/500
    #[error("Staging failed: '{0}'")]
    StagingFailed(String),
    /// 401/400: the upload names a resource the server does not have.
    #[error("Could not find the requested resource")]
    MissingResource,
    /// 402/500: the upload is not a usable package (not a zip, an entry escaping the app dir...).
    #[error("App packaging failed: '{0}'")]
    PackagingFailed(String),
    /// 500/404
    #[error("Service not found")]
    ServiceNotFound,
    /// 504/403
    #[error("Too many Services provisioned: {0}, you're allowed: {1}")]
    TooManyServices(usize, u32),
    /// 600/403
    #[error("Not enough memory capacity, you're allowed: {0}")]
    NotEnoughMemory(String),
    /// 601/403
    #[error("Too many applications: {0}, you're allowed: {1}")]
    TooManyApps(usize, u32),
    /// 602/403
    #[error("Too many URIs: {0}, you're allowed: {1}")]
    TooManyUris(usize, u32),
    /// 700/400
    #[error("Invalid URI: \"{0}\"")]
    InvalidUri(String),
    /// 503/502: a service node failed (v1's gateway error, with what went wrong).
    #[error("Unexpected response from service gateway: {0}")]
    ServiceGateway(String),
    /// 701/400: the URI is mapped to another user's app.
    #[error("The URI: \"{0}\" has already been taken or reserved")]
    UriTaken(String),
}

impl ApiError {
    /// v1's error code.
    pub fn code(&self) -> u32 {
        match self {
            ApiError::BadRequest(_) | ApiError::TooLarge(_) => 100,
            ApiError::LockingFailure => 102,
            ApiError::System(_) => 111,
            ApiError::Forbidden => 200,
            ApiError::UserNotFound => 201,
            ApiError::InvalidApp(_) => 300,
            ApiError::AppNotFound => 301,
            ApiError::FileNotFound(_) => 303,
            ApiError::InstanceNotFound(_) => 304,
            ApiError::AppStopped => 305,
            ApiError::FileError(_) => 306,
            ApiError::InvalidFramework(_) => 308,
            ApiError::DebugDisallowed => 309,
            ApiError::StagingFailed(_) => 310,
            ApiError::MissingResource => 401,
            ApiError::PackagingFailed(_) => 402,
            ApiError::ServiceNotFound => 500,
            ApiError::ServiceGateway(_) => 503,
            ApiError::TooManyServices(..) => 504,
            ApiError::NotEnoughMemory(_) => 600,
            ApiError::TooManyApps(..) => 601,
            ApiError::TooManyUris(..) => 602,
            ApiError::InvalidUri(_) => 700,
            ApiError::UriTaken(_) => 701,
        }
    }

    /// The HTTP status v1 sent with the code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden
            | ApiError::UserNotFound
            | ApiError::NotEnoughMemory(_)
            | ApiError::TooManyServices(..)
            | ApiError::TooManyApps(..)
            | ApiError::TooManyUris(..) => StatusCode::FORBIDDEN,
            ApiError::AppNotFound | ApiError::FileNotFound(_) | ApiError::ServiceNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::ServiceGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::System(_)
            | ApiError::FileError(_)
            | ApiError::StagingFailed(_)
            | ApiError::PackagingFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadRequest(_)
            | ApiError::LockingFailure
            | ApiError::InvalidApp(_)
            | ApiError::InstanceNotFound(_)
            | ApiError::AppStopped
            | ApiError::InvalidFramework(_)
            | ApiError::DebugDisallowed
            | ApiError::MissingResource
            | ApiError::InvalidUri(_)
            | ApiError::UriTaken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `{code, description}` body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            description: self.to_string(),
        }
    }
}

/// The v1 error document.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: u32,
    pub description: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "API error");
        } else {
            tracing::debug!(code = self.code(), error = %self, "API error");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping is v1's table: one row per error, code, status and description together.
    #[test]
    fn v1_error_mapping() {
        let table = [
            (ApiError::BadRequest("x".into()), 100, 400, "Bad request: x"),
            (
                ApiError::LockingFailure,
                102,
                400,
                "Optimistic locking failure",
            ),
            (ApiError::Forbidden, 200, 403, "Operation not permitted"),
            (
                ApiError::InvalidApp("name".into()),
                300,
                400,
                "Invalid application description: name",
            ),
            (ApiError::AppNotFound, 301, 404, "Application not found"),
            (
                ApiError::InstanceNotFound("7".into()),
                304,
                400,
                "Could not find instance: '7'",
            ),
            (
                ApiError::StagingFailed("no index.html".into()),
                310,
                500,
                "Staging failed: 'no index.html'",
            ),
            (
                ApiError::PackagingFailed("bad zip".into()),
                402,
                500,
                "App packaging failed: 'bad zip'",
            ),
            (
                ApiError::TooManyApps(51, 50),
                601,
                403,
                "Too many applications: 51, you're allowed: 50",
            ),
            (
                ApiError::TooManyUris(5, 4),
                602,
                403,
                "Too many URIs: 5, you're allowed: 4",
            ),
            (
                ApiError::InvalidUri("a b".into()),
                700,
                400,
                "Invalid URI: \"a b\"",
            ),
            (
                ApiError::UriTaken("example.com".into()),
                701,
                400,
                "The URI: \"example.com\" has already been taken or reserved",
            ),
        ];
        for (error, code, status, description) in table {
            assert_eq!(
                (
                    error.code(),
                    error.status().as_u16(),
                    error.to_string().as_str()
                ),
                (code, status, description),
                "{error:?}"
            );
        }
    }

    #[test]
    fn body_is_code_and_description() {
        let body = serde_json::to_value(ApiError::AppNotFound.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": 301, "description": "Application not found"})
        );
    }
}
