//! The demo runs end to end from the binary: every modality served, no errors.

use std::process::Command;

#[test]
fn demo_serves_every_modality_without_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowroute"))
        .args(["demo", "--duration", "4s", "--rate", "40"])
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
}
