//! The fault schedule of a run: derived from the seed alone, so a run can be replayed. Which node
//! a fault hits is also chosen from the seed (`pick`), except where the choice depends on the
//! cluster at that moment (the leader of the most partitions).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// `kill -9` then restart: a random node, the leader of the most partitions, or a minority.
    Kill,
    /// `kill -9` and start again at once, before the others elect anyone: a restarted leader
    /// resumes its leadership in the same term (openraft 0.9) with the commit index it saved.
    Restart,
    /// SIGSTOP longer than the election timeout, then SIGCONT.
    Pause,
    /// Network partitions between the nodes (iptables).
    Partition,
    /// Packet loss on node-to-node traffic (iptables `statistic`; `tc netem` has no kernel
    /// support on these machines).
    Loss,
    /// One node restarted with its wall clock skewed (libfaketime), then restarted without.
    Skew,
    /// A node added to the running cluster, then removed (the membership interface).
    Membership,
    /// Power loss: `kill -9` and every write the node had not fsynced is dropped (its data
    /// directory is a powerfs mount, `src/powerfs/`); restarted on what survived.
    Powerloss,
}

impl Nemesis {
    /// Every nemesis.
    pub const ALL: [Nemesis; 8] = [
        Nemesis::Kill,
        Nemesis::Restart,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::Loss,
        Nemesis::Skew,
        Nemesis::Membership,
        Nemesis::Powerloss,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Restart => "restart",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::Loss => "loss",
            Nemesis::Skew => "skew",
            Nemesis::Membership => "membership",
            Nemesis::Powerloss => "powerloss",
        }
    }

    /// The variants it chooses among, for a cluster of `nodes`.
    pub fn variants(self, nodes: usize) -> Vec<&'static str> {
        match self {
            Nemesis::Kill => vec!["random", "leader", "minority"],
            Nemesis::Restart => vec!["leader", "random"],
            Nemesis::Pause => vec!["random", "leader"],
            Nemesis::Partition if nodes >= 5 => {
                vec!["isolate-one", "isolate-leader", "halves", "ring", "bridge"]
            }
            Nemesis::Partition => vec!["isolate-one", "isolate-leader", "halves", "bridge"],
            Nemesis::Loss => vec!["loss-10", "loss-30"],
            Nemesis::Skew => vec!["ahead", "behind"],
            Nemesis::Membership => vec!["add-remove"],
            Nemesis::Powerloss => vec!["random", "leader", "minority"],
        }
    }
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown nemesis name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown nemesis {0:?} (known: kill, restart, pause, partition, loss, netem, skew, clock, membership, powerloss)"
)]
pub struct UnknownNemesis(String);

impl FromStr for Nemesis {
    type Err = UnknownNemesis;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "kill" => Nemesis::Kill,
            "restart" => Nemesis::Restart,
            "pause" => Nemesis::Pause,
            "partition" => Nemesis::Partition,
            "loss" | "netem" => Nemesis::Loss,
            "skew" | "clock" => Nemesis::Skew,
            "membership" => Nemesis::Membership,
            "powerloss" | "power" => Nemesis::Powerloss,
            _ => return Err(UnknownNemesis(s.into())),
        })
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// When it starts, ms after the workload started.
    pub at_ms: u64,
    /// How long it lasts before its heal.
    pub duration_ms: u64,
    /// The nemesis.
    pub nemesis: Nemesis,
    /// Which form (see [`Nemesis::variants`]).
    pub variant: String,
    /// A seeded random number for choosing nodes.
    pub pick: u64,
}

/// The schedule for `nemeses` over a run of `duration_ms`: a quiet warm-up, then faults one at a
/// time (each requested nemesis in a seeded order, cycling), each followed by a quiet stretch, and
/// a quiet end.
pub fn schedule(seed: u64, nemeses: &[Nemesis], nodes: usize, duration_ms: u64) -> Vec<Fault> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut out = Vec::new();
    if nemeses.is_empty() {
        return out;
    }
    let warmup = 3_000.min(duration_ms / 5);
    let end = duration_ms.saturating_sub(3_000);
    let mut t = warmup;
    let mut order: Vec<Nemesis> = Vec::new();
    loop {
        if order.is_empty() {
            order = nemeses.to_vec();
            order.shuffle(&mut rng);
            order.reverse(); // popped from the back
        }
        let nemesis = order.pop().expect("refilled above");
        let duration_ms = match nemesis {
            Nemesis::Pause => rng.gen_range(2_000..4_000),
            // over once applied: only the quiet stretch after it matters
            Nemesis::Restart => rng.gen_range(1_000..2_000),
            Nemesis::Membership => rng.gen_range(8_000..12_000),
            // down for a moment, then back on what survived
            Nemesis::Powerloss => rng.gen_range(1_000..4_000),
            _ => rng.gen_range(4_000..8_000),
        };
        if t + duration_ms > end {
            break;
        }
        let variants = nemesis.variants(nodes);
        let variant = variants[rng.gen_range(0..variants.len())].to_string();
        out.push(Fault {
            at_ms: t,
            duration_ms,
            nemesis,
            variant,
            pick: rng.gen(),
        });
        t += duration_ms + rng.gen_range(3_000..5_000);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let n = [Nemesis::Kill, Nemesis::Pause, Nemesis::Partition];
        let a = schedule(42, &n, 3, 60_000);
        assert_eq!(a, schedule(42, &n, 3, 60_000));
        assert_ne!(a, schedule(43, &n, 3, 60_000));
        for nem in n {
            assert!(a.iter().any(|f| f.nemesis == nem), "{nem} scheduled");
        }
        for w in a.windows(2) {
            assert!(
                w[0].at_ms + w[0].duration_ms < w[1].at_ms,
                "one fault at a time"
            );
        }
        assert!(a.last().unwrap().at_ms + a.last().unwrap().duration_ms <= 57_000);
    }

    #[test]
    fn names_parse() {
        for n in Nemesis::ALL {
            assert_eq!(n.name().parse::<Nemesis>().unwrap(), n);
        }
        assert!("meteor".parse::<Nemesis>().is_err());
    }
}
