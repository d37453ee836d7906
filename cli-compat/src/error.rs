//! How a command stops early, and what af prints for it. af raises Ruby exceptions that its
//! runner rescues by class (`runner.rb`); each becomes one [`Failure`] here, and every failure
//! exits with status 1 except an `exit(true)`.

/// What the client layer can fail with (af's `VMC::Client` exceptions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfError {
    /// A 404 or 400 answer (af's `NotFound`), with af's message.
    NotFound(String),
    /// Any other answer ≥ 400, or a client-side refusal (af's `TargetError`).
    Target(String),
    /// Not logged in: `GET /info` has no `user` and `usage` (af's `AuthError`).
    Auth,
    /// A JSON call answered with something that is not JSON (af's `BadResponse`).
    BadResponse,
    /// No answer: connection refused, reset, timed out (af's `HTTPException`).
    Http(String),
    /// The target's name does not resolve (af's `BadTarget`).
    BadTarget { target: String, message: String },
}

/// Why a command stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A message printed in red, then exit 1 (af's `crash_log`).
    Message(String),
    /// The login check failed: `Login Required` or `Not Authorized`, by whether a token is stored.
    Auth,
    /// `exit(status)` with nothing more to print.
    Exit(bool),
}

impl Failure {
    pub(crate) fn message(text: impl Into<String>) -> Failure {
        Failure::Message(text.into())
    }

    /// af's `err "text"`: `Error: text`.
    pub(crate) fn err(text: impl AsRef<str>) -> Failure {
        Failure::Message(format!("Error: {}", text.as_ref()))
    }
}

impl From<AfError> for Failure {
    /// A client error as af's runner reports it.
    fn from(error: AfError) -> Failure {
        match error {
            AfError::NotFound(m) | AfError::Target(m) => Failure::Message(m),
            AfError::Auth => Failure::Auth,
            AfError::BadResponse => Failure::message("Can't parse response into JSON"),
            AfError::Http(m) => Failure::Message(format!(
                "There was a problem connecting to the target. Please try again in a few moments. ({m})"
            )),
            AfError::BadTarget { target, message } => Failure::Message(format!(
                "Problem with login to '{target}', try again or register for an account. ({message})"
            )),
        }
    }
}

/// The result of a command.
pub(crate) type CmdResult<T = ()> = Result<T, Failure>;
