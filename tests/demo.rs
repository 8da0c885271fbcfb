//! The demo tells the whole story from the binary: every modality served without errors, the text
//! leader degrades on schedule, and the router promotes a candidate with its evidence.

use std::process::Command;

#[test]
fn demo_serves_every_modality_and_replaces_the_degraded_leader() {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowroute"))
        .args(["demo", "--duration", "45s", "--rate", "60", "--degrade-at", "5s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.split("== summary ==").nth(1).expect("no summary");
    for kind in ["audio", "embeddings", "image", "speech", "text", "vision"] {
        let line =
            summary.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("no {kind} line:\n{summary}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (sent, ok, errors): (u64, u64, u64) =
            (cols[1].parse().unwrap(), cols[2].parse().unwrap(), cols[3].parse().unwrap());
        assert!(sent > 0 && ok == sent && errors == 0, "{line}");
    }
    assert!(summary.contains("promote chat: gpt -> "), "the degraded leader was not replaced:\n{summary}");
    assert!(summary.contains("why: leader degraded") && summary.contains("evidence: "), "{summary}");
    assert!(summary.contains("routes.yaml says gpt"), "{summary}");
}
