//! Identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of a perdure cluster. Also the Raft node id of every group the node is in.
pub type NodeId = u64;

/// A partition number, `0..partition_count`.
pub type PartitionId = u32;

/// Longest entity name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest entity key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a name or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The entity name is empty.
    #[error("entity name is empty")]
    EmptyName,
    /// The entity key is empty.
    #[error("entity key is empty")]
    EmptyKey,
    /// The entity name is longer than [`MAX_NAME_LEN`].
    #[error("entity name is {0} bytes long; the limit is {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// The entity key is longer than [`MAX_KEY_LEN`].
    #[error("entity key is {0} bytes long; the limit is {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    /// The name holds a character other than ASCII letters, digits, `-`, `_` and `.`.
    #[error("entity name {0:?} may hold only ASCII letters, digits, '-', '_' and '.'")]
    BadNameChar(String),
    /// The key holds a control character (NUL, newline, ...), which storage keys reserve.
    #[error("entity key may not hold control characters")]
    ControlCharInKey,
}

/// An entity's id: `(name, key)`. Names are case-insensitive (stored lower-cased), keys are
/// case-sensitive, as in Durable Functions. Written as `@name@key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityId {
    name: String,
    key: String,
}

impl EntityId {
    /// Validates and builds an id; the name is lower-cased.
    pub fn new(name: &str, key: &str) -> Result<Self, IdError> {
        if name.is_empty() {
            return Err(IdError::EmptyName);
        }
        if key.is_empty() {
            return Err(IdError::EmptyKey);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(IdError::NameTooLong(name.len()));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(IdError::KeyTooLong(key.len()));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(IdError::BadNameChar(name.to_string()));
        }
        if key.chars().any(char::is_control) {
            return Err(IdError::ControlCharInKey);
        }
        Ok(Self {
            name: name.to_ascii_lowercase(),
            key: key.to_string(),
        })
    }

    /// Parses the canonical form `@name@key` (validating it like [`EntityId::new`]).
    pub fn from_canonical(s: &str) -> Result<Self, IdError> {
        let rest = s.strip_prefix('@').ok_or(IdError::EmptyName)?;
        let (name, key) = rest.split_once('@').ok_or(IdError::EmptyKey)?;
        Self::new(name, key)
    }

    /// The lower-cased entity name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entity key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The canonical bytes `@name@key`: the input of the partition function and the storage key.
    /// A name never holds `@`, so the encoding is unambiguous.
    pub fn canonical(&self) -> String {
        format!("@{}@{}", self.name, self.key)
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}@{}", self.name, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_keys_are_not() {
        let a = EntityId::new("Counter", "Key").unwrap();
        assert_eq!(a.name(), "counter");
        assert_eq!(a.key(), "Key");
        assert_eq!(a.canonical(), "@counter@Key");
        assert_ne!(a, EntityId::new("counter", "key").unwrap());
        assert_eq!(a, EntityId::new("COUNTER", "Key").unwrap());
        assert_eq!(
            EntityId::from_canonical("@counter@Key@x").unwrap().key(),
            "Key@x"
        );
        assert!(EntityId::from_canonical("counter@k").is_err());
        assert!(EntityId::from_canonical("@counter").is_err());
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(EntityId::new("", "k"), Err(IdError::EmptyName));
        assert_eq!(EntityId::new("c", ""), Err(IdError::EmptyKey));
        assert!(matches!(
            EntityId::new("a@b", "k"),
            Err(IdError::BadNameChar(_))
        ));
        assert!(matches!(
            EntityId::new("a/b", "k"),
            Err(IdError::BadNameChar(_))
        ));
        assert_eq!(EntityId::new("c", "a\0b"), Err(IdError::ControlCharInKey));
        assert!(matches!(
            EntityId::new(&"n".repeat(MAX_NAME_LEN + 1), "k"),
            Err(IdError::NameTooLong(_))
        ));
        assert!(matches!(
            EntityId::new("c", &"k".repeat(MAX_KEY_LEN + 1)),
            Err(IdError::KeyTooLong(_))
        ));
        // keys may hold '@', '/', spaces and non-ASCII text
        assert!(EntityId::new("c", "a@b/c d é").is_ok());
    }
}
