//! The one table of request kinds: every service a node offers its peers, with its number on the
//! wire.
//!
//! A request names its service by a `u16` (see the wire format in [`super`]). The numbers are
//! pinned here, and by a test: a number, once used, never changes meaning. A new workload adds
//! one line to `kinds!` below (a variant, its number and its name), then implements
//! [`super::Rpc`] for its request type and [`super::Service`] for its handler.

use std::fmt;

/// Declares [`Kind`]: each line is `Variant = number, "name";` with the variant's doc above it.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $name:literal; )*) => {
        /// A kind of request between nodes: names the service that answers it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Kind {
            $( $(#[$doc])* $variant = $number, )*
        }

        impl Kind {
            /// Every kind, in the order declared.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// Its short name, for logs and errors.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// A Raft RPC of one partition's group (`crate::raft_net`).
    Raft = 1, "raft";
    /// "What do you hold?": a node's metadata, membership and group views (`crate::info`).
    ClusterInfo = 2, "cluster-info";
    /// An entity request forwarded to the partition's leader (`perdure_runtime::entities`).
    Forward = 3, "forward";
    /// A membership change for the metadata group's leader (`crate::membership`).
    Meta = 4, "meta";
    /// "Call an election for group G": a leader leaving a group hands leadership over.
    Elect = 5, "elect";
    /// A command proposed to a partition on its leader: outbox delivery to a partition led by
    /// another node (`perdure_runtime::host`).
    Propose = 6, "propose";
    /// "Hand group G over to me": the preferred leader of a group asks its leader for it
    /// (`crate::transfer`).
    Transfer = 7, "transfer";
    /// An orchestration-instance request forwarded to the partition's leader
    /// (`perdure_runtime::orchestrations`).
    Orchestration = 8, "orchestration";
    /// A stream-ingestion request for the leaders of home partitions: consumers' status, dead
    /// letters (`perdure_ingest`).
    Ingest = 9, "ingest";
}

impl Kind {
    /// Its number on the wire.
    pub const fn number(self) -> u16 {
        self as u16
    }
}

impl From<Kind> for u16 {
    fn from(kind: Kind) -> u16 {
        kind.number()
    }
}

/// A request kind number that names no [`Kind`] (a peer running a newer version, or a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown request kind {0}")]
pub struct UnknownKind(pub u16);

impl TryFrom<u16> for Kind {
    type Error = UnknownKind;

    fn try_from(number: u16) -> Result<Self, UnknownKind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.number() == number)
            .ok_or(UnknownKind(number))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_wire_number() {
        let pinned = [
            (Kind::Raft, 1),
            (Kind::ClusterInfo, 2),
            (Kind::Forward, 3),
            (Kind::Meta, 4),
            (Kind::Elect, 5),
            (Kind::Propose, 6),
            (Kind::Transfer, 7),
            (Kind::Orchestration, 8),
            (Kind::Ingest, 9),
        ];
        assert_eq!(
            Kind::ALL.len(),
            pinned.len(),
            "a kind without a pinned number"
        );
        for (kind, number) in pinned {
            assert_eq!(u16::from(kind), number, "{kind:?}");
            assert_eq!(Kind::try_from(number), Ok(kind));
        }
    }

    #[test]
    fn numbers_and_names_are_unique() {
        for (i, a) in Kind::ALL.iter().enumerate() {
            for b in &Kind::ALL[i + 1..] {
                assert_ne!(a.number(), b.number());
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn unknown_numbers_are_refused_by_number() {
        for n in [0, 10, 999, u16::MAX] {
            let e = Kind::try_from(n).unwrap_err();
            assert_eq!(e, UnknownKind(n));
            assert!(e.to_string().contains(&n.to_string()), "{e}");
        }
    }
}
