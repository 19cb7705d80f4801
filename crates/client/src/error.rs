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
}

impl Error {
    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, for [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
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
        let e = Error::from_response(502, b"Bad Gateway\n");
        assert_eq!(e.code(), Some("http_502"));
        assert!(e.to_string().ends_with("Bad Gateway"));
    }
}
