//! The client's error type.

use serde::{Deserialize, Serialize};

/// An error the server answered: its machine-readable code and a message for people. Also the
/// error of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// A short code: `bad_entity_id`, `unknown_operation`, `bad_input`, `unavailable`, ...
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// A request could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused or failed the request (after any retries).
    #[error("HTTP {status}: {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code from the body (`http_STATUS` when the body has none).
        code: String,
        /// The message from the body (or the body itself).
        message: String,
    },
    /// The server could not be reached, or the exchange failed (after any retries).
    #[error("transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server's answer is not what the API says.
    #[error("cannot decode the response: {0}")]
    Decode(String),
    /// The base URL is not an `http://` or `https://` URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entity name or key is not valid; nothing was sent.
    #[error("invalid entity id: {0}")]
    InvalidEntityId(#[from] perdure_types::IdError),
    /// Another argument is not valid (an empty operation name, ...); nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The orchestration instance id is not valid; nothing was sent.
    #[error("invalid instance id: {0}")]
    InvalidInstanceId(#[from] perdure_types::target::InstanceIdError),
    /// No orchestration instance has this id (HTTP 404 `instance_not_found`).
    #[error("no orchestration instance {instance_id:?}")]
    InstanceNotFound {
        /// The id asked for.
        instance_id: String,
    },
    /// A start named an instance id that exists in a status its reuse policy does not replace
    /// (HTTP 409 `instance_exists`).
    #[error("orchestration instance {instance_id:?} already exists{}: {message}", if *retried { " (perhaps started by an earlier attempt of this start)" } else { "" })]
    AlreadyStarted {
        /// The instance id.
        instance_id: String,
        /// The start was retried after an attempt that may have been served: the instance is
        /// likely the one this start created.
        retried: bool,
        /// The server's message.
        message: String,
    },
    /// The orchestration instance finished: it takes no more events, terminate, suspend or
    /// resume (HTTP 410 `instance_finished`).
    #[error("orchestration instance {instance_id:?} has finished: {message}")]
    InstanceFinished {
        /// The instance id.
        instance_id: String,
        /// The server's message.
        message: String,
    },
}

impl Error {
    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::InstanceNotFound { .. } => Some(404),
            Error::AlreadyStarted { .. } => Some(409),
            Error::InstanceFinished { .. } => Some(410),
            _ => None,
        }
    }

    /// The server's error code, for [`Error::Api`] and the orchestration errors the server
    /// answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::InstanceNotFound { .. } => Some("instance_not_found"),
            Error::AlreadyStarted { .. } => Some("instance_exists"),
            Error::InstanceFinished { .. } => Some("instance_finished"),
            _ => None,
        }
    }

    /// [`Error::Api`] answered for orchestration instance `id` as its typed error:
    /// `instance_not_found`, `instance_exists`, `instance_finished`; others unchanged.
    pub(crate) fn for_instance(self, id: &str, retried: bool) -> Self {
        match self {
            Error::Api { code, .. } if code == "instance_not_found" => Error::InstanceNotFound {
                instance_id: id.to_string(),
            },
            Error::Api { code, message, .. } if code == "instance_exists" => {
                Error::AlreadyStarted {
                    instance_id: id.to_string(),
                    retried,
                    message,
                }
            }
            Error::Api { code, message, .. } if code == "instance_finished" => {
                Error::InstanceFinished {
                    instance_id: id.to_string(),
                    message,
                }
            }
            e => e,
        }
    }

    /// Builds an [`Error::Api`] from a status and a response body, JSON
    /// `{"error":{"code":..,"message":..}}` or anything else.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: ApiError,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => Error::Api {
                status,
                code: error.code,
                message: error.message,
            },
            Err(_) => Error::Api {
                status,
                code: format!("http_{status}"),
                message: String::from_utf8_lossy(body).trim().to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_parsed_and_others_kept() {
        let e = Error::from_response(
            400,
            br#"{"error":{"code":"bad_entity_id","message":"invalid entity id: x"}}"#,
        );
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.code(), Some("bad_entity_id"));
        assert_eq!(
            e.to_string(),
            "HTTP 400: bad_entity_id: invalid entity id: x"
        );
        let e = Error::from_response(
            410,
            br#"{"error":{"code":"instance_finished","message":"it is Completed"}}"#,
        )
        .for_instance("i-1", false);
        assert!(
            matches!(&e, Error::InstanceFinished { instance_id, .. } if instance_id == "i-1"),
            "{e}"
        );
        assert_eq!(
            (e.status(), e.code()),
            (Some(410), Some("instance_finished"))
        );
        let e = Error::from_response(502, b"Bad Gateway\n");
        assert_eq!(e.code(), Some("http_502"));
        assert!(e.to_string().ends_with("Bad Gateway"));
    }
}
