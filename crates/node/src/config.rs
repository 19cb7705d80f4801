//! Loading a [`NodeConfig`]: defaults, then a TOML file, then `PERDURE_*` environment variables,
//! then command-line flags; each layer overrides the one before. The result is validated once.
//!
//! Environment variables name a key in upper case with `__` between levels:
//! `PERDURE_DATA_DIR=/var/lib/perdure`, `PERDURE_RAFT__HEARTBEAT_INTERVAL_MS=50`. A value is read
//! as a TOML integer, float or boolean when it parses as one, and as a string otherwise.
//! `PERDURE_LOG`, `PERDURE_LOG_FORMAT`, `PERDURE_URL` and `PERDURE_TOKEN` (the CLI client's
//! server and API token) and every `PERDURE_TEST_*` (test switches such as `PERDURE_TEST_SEED`,
//! inherited by the nodes tests start) are not node settings and are skipped.

use perdure_types::config::{ConfigError, NodeConfig};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file, an environment variable or a flag does not fit the config's shape (unknown key,
    /// wrong type); the message names the key.
    #[error("{origin}: {message}")]
    Parse {
        /// Where the bad value came from.
        origin: String,
        /// toml's description, which names the key.
        message: String,
    },
    /// A value is out of range.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Overrides from command-line flags, as `(dotted key, value)` pairs.
pub type Overrides = Vec<(String, Value)>;

/// Loads the configuration from `file` (if any), the environment `env` (pass
/// `std::env::vars()`), and flag `overrides`, then validates it.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: Overrides,
) -> Result<NodeConfig, Error> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
            text.parse::<Table>().map_err(|e| Error::Parse {
                origin: format!("config file {}", path.display()),
                message: e.to_string(),
            })?
        }
        None => Table::new(),
    };
    let origin = file
        .map(|p| format!("config file {}", p.display()))
        .unwrap_or_else(|| "defaults".into());
    check(&table, &origin)?;
    let mut env_keys = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("PERDURE_") else {
            continue;
        };
        // Not node settings: the log filter, the CLI client's server and token, test switches.
        if rest.is_empty()
            || matches!(rest, "LOG" | "LOG_FORMAT" | "URL" | "TOKEN")
            || rest.starts_with("TEST_")
        {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let value = if default_is_string(&key) {
            Value::String(value)
        } else {
            scalar(&value)
        };
        set(&mut table, &key, value);
        env_keys.push(name);
    }
    if !env_keys.is_empty() {
        check(&table, &format!("environment ({})", env_keys.join(", ")))?;
    }
    for (key, value) in overrides {
        set(&mut table, &key, value);
    }
    let config: NodeConfig = Table::try_into(table).map_err(|e| Error::Parse {
        origin: "command-line flags".into(),
        message: e.to_string(),
    })?;
    config.validate()?;
    Ok(config)
}

/// Deserializes `table` to find shape errors early, blaming `origin`.
fn check(table: &Table, origin: &str) -> Result<(), Error> {
    Table::try_into::<NodeConfig>(table.clone())
        .map(|_| ())
        .map_err(|e| Error::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
}

/// Whether the default config holds a string at dotted `key` (so `PERDURE_CLUSTER__SECRET=1234`
/// stays the string it must be).
fn default_is_string(key: &str) -> bool {
    let Ok(defaults) = Table::try_from(NodeConfig::default()) else {
        return false;
    };
    let mut v: Option<&Value> = None;
    let mut t = Some(&defaults);
    for part in key.split('.') {
        v = t.and_then(|t| t.get(part));
        t = v.and_then(Value::as_table);
    }
    matches!(v, Some(Value::String(_)))
}

/// An environment value as TOML: integer, float, boolean, else string.
fn scalar(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        Value::Integer(i)
    } else if let Ok(f) = s.parse::<f64>() {
        Value::Float(f)
    } else if let Ok(b) = s.parse::<bool>() {
        Value::Boolean(b)
    } else {
        Value::String(s.to_string())
    }
}

/// Sets a dotted key, creating tables on the way.
fn set(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_anything() {
        assert_eq!(load(None, vec![], vec![]).unwrap(), NodeConfig::default());
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        std::fs::write(
            &file,
            "partitions = 8\ndata_dir = \"/from/file\"\n[raft]\nheartbeat_interval_ms = 50\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[
                ("PERDURE_DATA_DIR", "/from/env"),
                ("PERDURE_RAFT__ELECTION_TIMEOUT_MIN_MS", "300"),
                ("HOME", "/root"),
                ("PERDURE_URL", "http://127.0.0.1:9"),
                ("PERDURE_TEST_SEED", "42"),
                ("PERDURE_TEST_REQUIRE_TOOLS", "1"),
            ]),
            vec![("data_dir".into(), Value::String("/from/flag".into()))],
        )
        .unwrap();
        assert_eq!(c.partitions, 8);
        assert_eq!(c.raft.heartbeat_interval_ms, 50);
        assert_eq!(c.raft.election_timeout_min_ms, 300);
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn string_settings_from_the_environment_stay_strings() {
        let c = load(
            None,
            env(&[
                ("PERDURE_DATA_DIR", "2024"),
                ("PERDURE_CLUSTER__SECRET", "1234567890123456"),
                ("PERDURE_PARTITIONS", "8"),
            ]),
            vec![],
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("2024"));
        assert_eq!(c.cluster.secret, "1234567890123456");
        assert_eq!(c.partitions, 8);
    }

    #[test]
    fn the_grpc_section_comes_from_the_environment_and_flags_and_is_checked() {
        let c = load(
            None,
            env(&[
                ("PERDURE_GRPC__ADDR", "127.0.0.1:0"),
                ("PERDURE_GRPC__ENABLED", "false"),
            ]),
            vec![],
        )
        .unwrap();
        assert_eq!(c.grpc.addr, "127.0.0.1:0");
        assert!(!c.grpc.enabled);
        let c = load(
            None,
            env(&[("PERDURE_GRPC__ADDR", "127.0.0.1:0")]),
            vec![("grpc.addr".into(), Value::String("127.0.0.2:4002".into()))],
        )
        .unwrap();
        assert_eq!(c.grpc.addr, "127.0.0.2:4002");
        assert!(c.grpc.enabled);
        let e = load(None, env(&[("PERDURE_GRPC__ADDR", "nowhere")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`grpc.addr`"), "{e}");
        let e = load(
            None,
            env(&[("PERDURE_GRPC__MAX_MESSAGE_BYTES", "10")]),
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`grpc.max_message_bytes`"), "{e}");
    }

    #[test]
    fn errors_name_the_bad_key_and_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        std::fs::write(&file, "partitons = 8\n").unwrap();
        let e = load(Some(&file), vec![], vec![]).unwrap_err().to_string();
        assert!(e.contains("partitons") && e.contains("n.toml"), "{e}");

        let e = load(None, env(&[("PERDURE_PARTITIONS", "many")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PERDURE_PARTITIONS") && e.contains("partitions"),
            "{e}"
        );

        let e = load(None, env(&[("PERDURE_PARTITIONS", "0")]), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`partitions`"), "{e}");
    }

    /// A secret as `deploy/local-cluster.sh` makes one (32 random bytes in hex).
    const GENERATED_SECRET: &str =
        "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b";

    #[test]
    fn example_configs_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let secret = env(&[("PERDURE_CLUSTER__SECRET", GENERATED_SECRET)]);
                load(Some(&path), secret, vec![])
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no example configs in {}", dir.display());
    }

    #[test]
    fn example_cluster_configs_carry_no_usable_secret() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        for n in 1..=4 {
            let path = dir.join(format!("node{n}.toml"));
            let e = load(Some(&path), vec![], vec![]).unwrap_err();
            match e {
                Error::Invalid(e) => assert_eq!(e.key, "cluster.secret", "{}", path.display()),
                other => panic!("{}: {other}", path.display()),
            }
        }
        // the secret the examples carried before is refused however it is given
        let old = env(&[("PERDURE_CLUSTER__SECRET", "local-cluster-secret-change-me")]);
        let e = load(Some(&dir.join("node1.toml")), old, vec![]).unwrap_err();
        assert!(e.to_string().contains("cluster.secret"), "{e}");
    }

    #[test]
    fn a_node_with_peers_off_loopback_refuses_a_weak_secret_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.toml");
        std::fs::write(
            &file,
            "[cluster]\nlisten_addr = \"0.0.0.0:7171\"\nmembers = [\n  \
             { node_id = 1, addr = \"10.0.0.1:7171\", http_addr = \"10.0.0.1:7071\" },\n]\n",
        )
        .unwrap();
        let weak = env(&[("PERDURE_CLUSTER__SECRET", "sixteen-chars-or-more")]);
        let e = load(Some(&file), weak, vec![]).unwrap_err().to_string();
        assert!(
            e.contains("`cluster.secret`") && e.contains("not loopback"),
            "{e}"
        );
        let strong = env(&[("PERDURE_CLUSTER__SECRET", GENERATED_SECRET)]);
        load(Some(&file), strong, vec![]).unwrap();
    }
}
