//! Listing entities page by page: continuation tokens are `PARTITION:HEX(KEY)`, visible ASCII
//! whatever the key holds.

use crate::Error;
use perdure_types::PartitionId;

/// Most entities one list page holds.
pub const MAX_PAGE: usize = 1000;

/// The token that continues after `key` of partition `p`.
pub(crate) fn continuation(p: PartitionId, key: &str) -> String {
    format!("{p}:{}", hex(key))
}

/// Where a page starts: the partition and the key after which to continue.
pub(crate) fn parse_continuation(
    entity_type: &str,
    continuation: Option<&str>,
) -> Result<(PartitionId, Option<String>), Error> {
    match continuation {
        None | Some("") => Ok((0, None)),
        Some(c) => {
            let bad = || Error::BadInput {
                entity_type: entity_type.to_string(),
                operation: "list".into(),
                reason: format!("invalid continuation token {c:?}"),
            };
            let (p, key) = c.split_once(':').ok_or_else(bad)?;
            Ok((
                p.parse().map_err(|_| bad())?,
                Some(unhex(key).ok_or_else(bad)?),
            ))
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn continuation_keys_are_ascii_and_round_trip() {
        for key in ["a", "é/ü x", "k@1", ""] {
            let h = super::hex(key);
            assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
            assert_eq!(super::unhex(&h).as_deref(), Some(key));
        }
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("abc"), None);
        let (p, after) =
            super::parse_continuation("t", Some(&super::continuation(3, "k"))).unwrap();
        assert_eq!((p, after.as_deref()), (3, Some("k")));
    }
}
