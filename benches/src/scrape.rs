//! Reads the nodes' Prometheus metrics before and after a scenario, for what the generator
//! cannot see: how many Raft entries and fsyncs the load cost (batching), and the nodes' CPU.

use std::collections::BTreeMap;

/// What one node reported.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    /// `perdure_partition_applied_index` by partition label.
    pub applied: BTreeMap<String, f64>,
    /// `perdure_wal_fsyncs_total`.
    pub fsyncs: f64,
    /// `perdure_wal_records_total`.
    pub wal_records: f64,
    /// `process_cpu_seconds_total`.
    pub cpu: f64,
    /// `perdure_proposed_commands_total`: commands this node's leaderships proposed.
    pub commands: f64,
    /// `perdure_proposals_total`: the Raft entries they went in.
    pub proposals: f64,
}

/// Parses the text exposition format (only what [`NodeSample`] needs).
pub fn parse(text: &str) -> NodeSample {
    let mut s = NodeSample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (head, ""),
        };
        match name {
            "perdure_partition_applied_index" => {
                let p = labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("partition="))
                    .unwrap_or("")
                    .trim_matches('"');
                s.applied.insert(p.to_string(), v);
            }
            "perdure_wal_fsyncs_total" => s.fsyncs += v,
            "perdure_wal_records_total" => s.wal_records += v,
            "process_cpu_seconds_total" => s.cpu += v,
            "perdure_proposed_commands_total" => s.commands += v,
            "perdure_proposals_total" => s.proposals += v,
            _ => {}
        }
    }
    s
}

/// Scrapes every node (a node that does not answer counts as `None`).
pub async fn scrape(http: &reqwest::Client, urls: &[String]) -> Vec<Option<NodeSample>> {
    let mut out = Vec::new();
    for u in urls {
        let text = async {
            http.get(format!("{u}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        };
        out.push(text.await.map(|t| parse(&t)));
    }
    out
}

/// Batching and cost of what ran between two scrapes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Batching {
    /// Raft entries committed (per partition, the most any node applied, summed).
    pub entries: f64,
    /// Entries appended per fsync, over the nodes that answered both scrapes.
    pub entries_per_fsync: f64,
    /// fsyncs, all nodes.
    pub fsyncs: f64,
    /// Node CPU seconds (all nodes).
    pub node_cpu_seconds: f64,
    /// Commands proposed, all nodes.
    pub commands: f64,
    /// Proposals (Raft entries) they went in, all nodes.
    pub proposals: f64,
}

/// What ran between `before` and `after` (same node order).
pub fn batching(before: &[Option<NodeSample>], after: &[Option<NodeSample>]) -> Batching {
    let mut best_before: BTreeMap<&str, f64> = BTreeMap::new();
    let mut best_after: BTreeMap<&str, f64> = BTreeMap::new();
    let (mut appended, mut fsyncs, mut cpu) = (0.0, 0.0, 0.0);
    let (mut commands, mut proposals) = (0.0, 0.0);
    for (b, a) in before.iter().zip(after) {
        for (m, s) in [(&mut best_before, b), (&mut best_after, a)] {
            for (p, v) in s.iter().flat_map(|s| s.applied.iter()) {
                let e = m.entry(p.as_str()).or_insert(0.0);
                *e = e.max(*v);
            }
        }
        if let (Some(b), Some(a)) = (b, a) {
            for (p, v) in &a.applied {
                appended += (v - b.applied.get(p).copied().unwrap_or(*v)).max(0.0);
            }
            fsyncs += (a.fsyncs - b.fsyncs).max(0.0);
            cpu += (a.cpu - b.cpu).max(0.0);
            commands += (a.commands - b.commands).max(0.0);
            proposals += (a.proposals - b.proposals).max(0.0);
        }
    }
    let entries = best_after
        .iter()
        .map(|(p, v)| (v - best_before.get(p).copied().unwrap_or(0.0)).max(0.0))
        .sum();
    Batching {
        entries,
        entries_per_fsync: if fsyncs > 0.0 { appended / fsyncs } else { 0.0 },
        fsyncs,
        node_cpu_seconds: cpu,
        commands,
        proposals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x\nperdure_partition_applied_index{partition=\"0\"} 10\nperdure_partition_applied_index{partition=\"1\"} 5\nperdure_wal_fsyncs_total 100\nprocess_cpu_seconds_total 2\n";
    const AFTER: &str = "perdure_partition_applied_index{partition=\"0\"} 30\nperdure_partition_applied_index{partition=\"1\"} 15\nperdure_wal_fsyncs_total 110\nprocess_cpu_seconds_total 3.5\nperdure_wal_records_total 7\nperdure_proposed_commands_total 28\nperdure_proposals_total 4\n";

    #[test]
    fn parses_what_it_needs() {
        let s = parse(AFTER);
        assert_eq!(s.applied.get("0"), Some(&30.0));
        assert_eq!(s.applied.get("1"), Some(&15.0));
        assert_eq!((s.fsyncs, s.cpu, s.wal_records), (110.0, 3.5, 7.0));
        assert_eq!((s.commands, s.proposals), (28.0, 4.0));
    }

    #[test]
    fn entries_count_once_per_partition_and_fsyncs_per_node() {
        let (b, a) = (Some(parse(BEFORE)), Some(parse(AFTER)));
        // two replicas applied the same 30 entries, each with its own 10 fsyncs
        let r = batching(&[b.clone(), b, None], &[a.clone(), a, None]);
        assert_eq!(r.entries, 30.0);
        assert_eq!(r.fsyncs, 20.0);
        assert_eq!(r.entries_per_fsync, 3.0);
        assert_eq!(r.node_cpu_seconds, 3.0);
        assert_eq!((r.commands, r.proposals), (56.0, 8.0));
    }
}
