//! A subscription's definition as a client writes it (source, mapping, start) and its checks:
//! every error names the field.

use crate::ids::EntityId;
use serde::{Deserialize, Serialize};

/// Most subscriptions a cluster holds.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// Longest subscription name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most bytes of one subscription's definition (as JSON).
pub const MAX_SPEC_BYTES: usize = 16 * 1024;

/// A subscription's definition, as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Where the records come from.
    pub source: SourceSpec,
    /// How a record becomes an operation.
    pub mapping: Mapping,
    /// Where a new subscription starts reading: every record the source holds, or only records
    /// written after it was created.
    #[serde(default)]
    pub start: StartAt,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The first record the source still holds.
    #[default]
    Earliest,
    /// After the last record the source held when the consumer first ran.
    Latest,
}

/// A source of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// A NATS JetStream stream (one source partition: the stream's sequence).
    Nats(NatsSource),
    /// A Kafka-protocol topic (Apache Kafka, Redpanda, Azure Event Hubs' Kafka endpoint): one
    /// source partition per topic partition.
    Kafka(KafkaSource),
}

/// A NATS JetStream source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// The server, `nats://host:port` (or `tls://host:port`).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// Only records whose subject matches this filter (`*` and `>` wildcards); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A token to authenticate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A user name (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A Kafka-protocol source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// SASL authentication (Event Hubs: `PLAIN` with user `$ConnectionString`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
    /// Connect over TLS (with the system's root certificates unless `tls_ca_file` is given).
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of CA certificates to trust instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
}

/// SASL credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// How a record becomes an entity operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The entity type.
    pub entity: String,
    /// The entity key: a JSON pointer into the record's value (`/user`), `$key` (the record's
    /// key, as UTF-8 text) or `$header:NAME` (a header's value).
    pub key: String,
    /// The operation.
    pub operation: String,
    /// The operation's input: a JSON pointer into the value (`""` or `$value` for the whole
    /// value), `$position` (the record's position in its source partition, a number); no input
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// Where a record's entity key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFrom {
    /// A JSON pointer into the value.
    Pointer(String),
    /// The record's key.
    RecordKey,
    /// A header.
    Header(String),
}

/// Where a record's input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFrom {
    /// No input.
    None,
    /// A JSON pointer into the value (`""`: the whole value).
    Pointer(String),
    /// The record's position.
    Position,
}

impl Mapping {
    /// Where the key comes from (the mapping was validated).
    pub fn key_from(&self) -> KeyFrom {
        if self.key == "$key" {
            KeyFrom::RecordKey
        } else if let Some(h) = self.key.strip_prefix("$header:") {
            KeyFrom::Header(h.to_string())
        } else {
            KeyFrom::Pointer(self.key.clone())
        }
    }

    /// Where the input comes from (the mapping was validated).
    pub fn input_from(&self) -> InputFrom {
        match self.input.as_deref() {
            None => InputFrom::None,
            Some("$value") => InputFrom::Pointer(String::new()),
            Some("$position") => InputFrom::Position,
            Some(p) => InputFrom::Pointer(p.to_string()),
        }
    }

    /// Whether a record's value must be JSON to map.
    pub fn needs_json(&self) -> bool {
        matches!(self.key_from(), KeyFrom::Pointer(_))
            || matches!(self.input_from(), InputFrom::Pointer(_))
    }
}

/// Why a subscription or a change of it was refused. Each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// A field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as a path (`mapping.key`).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No such subscription.
    #[error("no subscription named {0:?}")]
    NotFound(String),
    /// The cluster holds its maximum of subscriptions.
    #[error("the cluster holds {MAX_SUBSCRIPTIONS} subscriptions, its maximum; delete one first")]
    TooMany,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SubscriptionError {
    SubscriptionError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks a subscription's name: 1 to 64 ASCII letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), SubscriptionError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} bytes long"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "name",
            format!("{name:?} may hold only ASCII letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// A JSON pointer (RFC 6901): empty, or `/` followed by tokens with `~0`/`~1` escapes only.
fn check_pointer(field: &'static str, p: &str) -> Result<(), SubscriptionError> {
    if p.is_empty() {
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err(invalid(
            field,
            format!("{p:?} is not a JSON pointer (it must start with '/'), \"$key\", \"$header:NAME\", \"$value\" or \"$position\""),
        ));
    }
    let b = p.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')) {
            return Err(invalid(
                field,
                format!("{p:?}: '~' must be followed by 0 or 1"),
            ));
        }
    }
    Ok(())
}

impl SubscriptionSpec {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SubscriptionError> {
        match &self.source {
            SourceSpec::Nats(n) => {
                let url = n.url.trim();
                if !(url.starts_with("nats://") || url.starts_with("tls://"))
                    || url.len() <= "nats://".len()
                {
                    return Err(invalid(
                        "source.nats.url",
                        format!(
                            "{:?} is not a nats://host:port or tls://host:port URL",
                            n.url
                        ),
                    ));
                }
                if n.stream.is_empty()
                    || n.stream.len() > 255
                    || n.stream
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "*>./\\".contains(c))
                {
                    return Err(invalid(
                        "source.nats.stream",
                        format!("{:?} is not a JetStream stream name", n.stream),
                    ));
                }
                if let Some(s) = &n.subject {
                    if s.is_empty() || s.len() > 1024 || s.chars().any(char::is_whitespace) {
                        return Err(invalid(
                            "source.nats.subject",
                            format!("{s:?} is not a subject filter"),
                        ));
                    }
                }
                if n.user.is_some() != n.password.is_some() {
                    return Err(invalid(
                        "source.nats.password",
                        "user and password go together",
                    ));
                }
            }
            SourceSpec::Kafka(k) => {
                if k.brokers.is_empty() || k.brokers.len() > 64 {
                    return Err(invalid("source.kafka.brokers", "name 1 to 64 brokers"));
                }
                for b in &k.brokers {
                    let ok = b
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !ok {
                        return Err(invalid(
                            "source.kafka.brokers",
                            format!("{b:?} is not host:port"),
                        ));
                    }
                }
                if k.topic.is_empty()
                    || k.topic.len() > 249
                    || !k
                        .topic
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return Err(invalid(
                        "source.kafka.topic",
                        format!("{:?} is not a Kafka topic name", k.topic),
                    ));
                }
                if let Some(s) = &k.sasl {
                    let m = s.mechanism.to_ascii_uppercase();
                    if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                        return Err(invalid(
                            "source.kafka.sasl.mechanism",
                            format!("{:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.mechanism),
                        ));
                    }
                }
                if k.tls_ca_file.is_some() && !k.tls {
                    return Err(invalid(
                        "source.kafka.tls_ca_file",
                        "given without \"tls\": true",
                    ));
                }
            }
        }
        let m = &self.mapping;
        EntityId::new(&m.entity, "k").map_err(|e| invalid("mapping.entity", e.to_string()))?;
        match m.key.as_str() {
            "$key" => {
                if matches!(self.source, SourceSpec::Nats(_)) {
                    return Err(invalid(
                        "mapping.key",
                        "NATS messages have no key: use a JSON pointer, \"$header:NAME\" or the subject through a header",
                    ));
                }
            }
            k if k.starts_with("$header:") => {
                if k.len() == "$header:".len() {
                    return Err(invalid("mapping.key", "\"$header:\" names no header"));
                }
            }
            "" => {
                return Err(invalid(
                    "mapping.key",
                    "an empty pointer would take the whole value as the key; point into it",
                ))
            }
            k => check_pointer("mapping.key", k)?,
        }
        if m.operation.is_empty() || m.operation.len() > 256 {
            return Err(invalid("mapping.operation", "must be 1 to 256 bytes long"));
        }
        match m.input.as_deref() {
            None | Some("$value") | Some("$position") => {}
            Some(p) => check_pointer("mapping.input", p)?,
        }
        let bytes = serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0);
        if bytes > MAX_SPEC_BYTES {
            return Err(invalid(
                "source",
                format!("the definition is {bytes} bytes, over {MAX_SPEC_BYTES}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<SubscriptionSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_examples_parse_and_validate() {
        let s = spec(r#"{"source": {"nats": {"url": "nats://127.0.0.1:4222", "stream": "events", "subject": "events.>"}},
            "mapping": {"entity": "counter", "key": "/user", "operation": "add", "input": "/amount"}}"#).unwrap();
        s.validate().unwrap();
        assert_eq!(s.start, StartAt::Earliest);
        assert_eq!(s.mapping.key_from(), KeyFrom::Pointer("/user".into()));
        assert_eq!(s.mapping.input_from(), InputFrom::Pointer("/amount".into()));
        let k = spec(r#"{"source": {"kafka": {"brokers": ["127.0.0.1:9092"], "topic": "clicks"}},
            "mapping": {"entity": "counter", "key": "$key", "operation": "add"}, "start": "latest"}"#).unwrap();
        k.validate().unwrap();
        assert_eq!(k.mapping.key_from(), KeyFrom::RecordKey);
        assert_eq!(k.mapping.input_from(), InputFrom::None);
        assert!(!k.mapping.needs_json());
    }

    #[test]
    fn bad_definitions_name_their_field() {
        let field = |json: &str| match spec(json) {
            Err(e) => format!("parse: {e}"),
            Ok(s) => match s.validate() {
                Err(SubscriptionError::Invalid { field, .. }) => field.to_string(),
                other => format!("{other:?}"),
            },
        };
        let nats = r#""source": {"nats": {"url": "nats://h:1", "stream": "s"}}"#;
        assert_eq!(
            field(&format!(
                r#"{{{nats}, "mapping": {{"entity": "counter", "key": "user", "operation": "add"}}}}"#
            )),
            "mapping.key"
        );
        assert_eq!(
            field(&format!(
                r#"{{{nats}, "mapping": {{"entity": "counter", "key": "$key", "operation": "add"}}}}"#
            )),
            "mapping.key"
        );
        assert_eq!(
            field(&format!(
                r#"{{{nats}, "mapping": {{"entity": "bad name", "key": "/u", "operation": "add"}}}}"#
            )),
            "mapping.entity"
        );
        assert_eq!(
            field(&format!(
                r#"{{{nats}, "mapping": {{"entity": "c", "key": "/u", "operation": "", "input": "/a"}}}}"#
            )),
            "mapping.operation"
        );
        assert_eq!(
            field(&format!(
                r#"{{{nats}, "mapping": {{"entity": "c", "key": "/u", "operation": "a", "input": "/a~2"}}}}"#
            )),
            "mapping.input"
        );
        assert_eq!(
            field(
                r#"{"source": {"kafka": {"brokers": ["nohost"], "topic": "t"}}, "mapping": {"entity": "c", "key": "$key", "operation": "a"}}"#
            ),
            "source.kafka.brokers"
        );
        assert_eq!(
            field(
                r#"{"source": {"kafka": {"brokers": ["h:1"], "topic": "a b"}}, "mapping": {"entity": "c", "key": "$key", "operation": "a"}}"#
            ),
            "source.kafka.topic"
        );
        assert_eq!(
            field(
                r#"{"source": {"nats": {"url": "http://h:1", "stream": "s"}}, "mapping": {"entity": "c", "key": "/k", "operation": "a"}}"#
            ),
            "source.nats.url"
        );
        assert!(field(r#"{"source": {"nats": {"url": "nats://h:1", "stream": "s", "extra": 1}}, "mapping": {"entity": "c", "key": "/k", "operation": "a"}}"#).starts_with("parse:"));
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        check_name("orders.v2-x_1").unwrap();
    }
}
