//! Checkers: pure functions from a history to a verdict. Each judges one workload, key by key.
//! `Unknown` (a search that ran out of its step budget) counts as a failure, never a pass.

pub mod counter;
pub mod ingest;
pub mod linearizable;
pub mod list;
pub mod orchestration;
pub mod probe;

use serde::{Deserialize, Serialize};

/// A checker's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// No anomaly.
    Valid,
    /// At least one anomaly.
    Invalid,
    /// The checker could not decide (search budget exhausted): a failure.
    Unknown,
}

/// What a checker found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// The checker.
    pub checker: String,
    /// The verdict.
    pub valid: Validity,
    /// Keys checked.
    pub keys: usize,
    /// Operations looked at.
    pub ops: usize,
    /// One line per anomaly (or undecided key), at most [`MAX_ANOMALIES`] kept.
    pub anomalies: Vec<String>,
    /// Anomalies in all (the list may be cut).
    pub anomaly_count: usize,
    /// What the checker counted or left out (not anomalies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Most anomaly lines kept in a result.
pub const MAX_ANOMALIES: usize = 50;

impl CheckResult {
    /// An empty, valid result.
    pub fn new(checker: &str) -> Self {
        Self {
            checker: checker.into(),
            valid: Validity::Valid,
            keys: 0,
            ops: 0,
            anomalies: Vec::new(),
            anomaly_count: 0,
            notes: Vec::new(),
        }
    }

    /// Records an anomaly (the verdict becomes `Invalid`).
    pub fn anomaly(&mut self, text: String) {
        self.valid = Validity::Invalid;
        self.push(text);
    }

    /// Records an undecided key (the verdict becomes `Unknown` unless already `Invalid`).
    pub fn unknown(&mut self, text: String) {
        if self.valid == Validity::Valid {
            self.valid = Validity::Unknown;
        }
        self.push(text);
    }

    fn push(&mut self, text: String) {
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(text);
        }
    }

    /// Whether the run passes this check.
    pub fn passed(&self) -> bool {
        self.valid == Validity::Valid
    }
}
