//! The suite end to end, quick: limits, one node and a 3-node cluster (with the failover kill)
//! from the real `perdure` binary, every scenario verified, results, table and plots written.
//! The numbers of a quick debug run mean nothing; that every part runs and checks does.

use std::path::PathBuf;
use std::process::Command;

fn perdure_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_perdure-bench"));
    let bin = bench.with_file_name("perdure");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p perdure-cli; `cargo nextest run --workspace` does)",
        bin.display()
    );
    bin
}

#[test]
fn a_quick_suite_runs_every_scenario_verified_and_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_perdure-bench"))
        .args([
            "suite",
            "--quick",
            "--systems",
            "single,cluster",
            "--partitions",
            "4",
        ])
        .arg("--bin")
        .arg(perdure_bin())
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "the suite failed: {status}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let limits = v["limits"].as_array().unwrap();
    for l in ["fdatasync", "actor", "HTTP"] {
        assert!(
            limits
                .iter()
                .any(|x| x["name"].as_str().unwrap().contains(l)
                    && x["per_sec"].as_f64().unwrap() > 0.0),
            "no {l} limit: {limits:?}"
        );
    }
    let scenarios = v["scenarios"].as_array().unwrap();
    for system in ["single", "cluster"] {
        let mine: Vec<_> = scenarios.iter().filter(|s| s["system"] == system).collect();
        for name in [
            "hot key",
            "uniform",
            "zipf",
            "100 signals per request",
            "latency floor",
        ] {
            assert!(
                mine.iter()
                    .any(|s| s["scenario"].as_str().unwrap().contains(name)),
                "{system}: no {name} scenario"
            );
        }
        for s in &mine {
            assert_eq!(s["verified"], true, "{s}");
            assert!(s["acknowledged"].as_u64().unwrap() > 0, "{s}");
            assert!(s["batching"]["entries"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["adds_per_entry"].as_f64().unwrap() >= 0.9, "{s}");
        }
    }
    let f = &v["failover"];
    assert_eq!(f["lost"], 0, "{f}");
    assert!(f["partitions_led"].as_u64().unwrap() >= 1, "{f}");
    for svg in [
        "sweep-hot-key.svg",
        "sweep-many-keys.svg",
        "failover.svg",
        "timeline-single.svg",
        "timeline-cluster.svg",
    ] {
        let text = std::fs::read_to_string(out.path().join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("<polyline"),
            "{svg}"
        );
    }
    // the orchestration scenarios, on both systems: every instance completed with its output
    let orch = v["orchestrations"].as_array().unwrap();
    for system in ["single", "cluster"] {
        let mine: Vec<_> = orch.iter().filter(|s| s["system"] == system).collect();
        for name in ["HelloSequence5, ", "one at a time", "fan-out/fan-in"] {
            let s = mine
                .iter()
                .find(|s| s["scenario"].as_str().unwrap().contains(name))
                .unwrap_or_else(|| panic!("{system}: no {name} scenario: {mine:?}"));
            assert!(s["completed"].as_u64().unwrap() > 0, "{s}");
            assert!(s["instances_per_sec"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["commands_per_entry"].as_f64().unwrap() >= 1.0, "{s}");
        }
    }
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| perdure 3 nodes | hot key (1 counter) |"),
        "{md}"
    );
    assert!(md.contains("## Orchestrations"), "{md}");
}

#[test]
fn the_orchestration_scenarios_run_alone() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_perdure-bench"))
        .args([
            "suite",
            "--quick",
            "--systems",
            "single-orch",
            "--partitions",
            "4",
        ])
        .arg("--bin")
        .arg(perdure_bin())
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "the suite failed: {status}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert!(v["scenarios"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["orchestrations"].as_array().unwrap().len(), 3, "{v}");
}
