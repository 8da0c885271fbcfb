//! deploy/ stays true: manifests lint and parse, the Helm chart renders to the committed output
//! (rendered here without helm), alerts pass promtool, and every metric, port, path and flag
//! they name exists in the binary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

/// A tool from Debian's packages, installed on the spot when the tests run as root; one install
/// at a time (two at once fight over dpkg's lock, and one fails).
fn tool(bin: &str, package: &str) -> String {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let found = Command::new("sh").arg("-c").arg(format!("command -v {bin}")).output().unwrap();
    if !found.status.success() {
        let install = format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {package}");
        let ok = Command::new("sh").arg("-c").arg(install).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "{bin} is needed: install the Debian package {package}");
    }
    bin.to_string()
}

// === the Helm chart, rendered without helm ===

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(values, |v, k| v.get(k).unwrap_or_else(|| panic!("no value .Values.{path}")))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Block YAML of a map of maps and scalars, the way `toYaml` writes it.
fn to_yaml(v: &Value, indent: usize, out: &mut Vec<String>) {
    for (k, val) in v.as_object().expect("toYaml takes a map") {
        match val {
            Value::Object(_) => {
                out.push(format!("{}{k}:", " ".repeat(indent)));
                to_yaml(val, indent + 2, out);
            }
            _ => out.push(format!("{}{k}: {}", " ".repeat(indent), scalar(val))),
        }
    }
}

/// The template forms the chart is allowed to use (see deploy/helm/shadowroute/templates).
fn render(template: &str, values: &Value, app_version: &str) -> Option<String> {
    let mut lines: Vec<&str> = template.lines().collect();
    if let Some(cond) =
        lines.first().and_then(|l| l.strip_prefix("{{- if .Values.")).and_then(|l| l.strip_suffix(" }}"))
    {
        assert_eq!(lines.last().copied(), Some("{{- end }}"));
        if lookup(values, cond) != &Value::Bool(true) {
            return None;
        }
        lines = lines[1..lines.len() - 1].to_vec();
    }
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("{{- toYaml .Values.") {
            let (path, n) = rest.trim_end_matches(" }}").split_once(" | nindent ").expect("toYaml needs nindent");
            to_yaml(lookup(values, path), n.parse().unwrap(), &mut out);
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("{{- .Values.") {
            let (path, n) = rest.trim_end_matches(" }}").split_once(" | nindent ").expect("a block needs nindent");
            let pad = " ".repeat(n.parse().unwrap());
            for l in scalar(lookup(values, path)).lines() {
                out.push(if l.is_empty() { String::new() } else { format!("{pad}{l}") });
            }
            continue;
        }
        let mut s = line.to_string();
        while let Some(start) = s.find("{{ ") {
            let end = s[start..].find(" }}").expect("unclosed action") + start;
            let action = &s[start + 3..end];
            let value = match action {
                ".Release.Name" => "shadowroute".to_string(),
                ".Chart.AppVersion" => app_version.to_string(),
                a => {
                    let a = a.strip_prefix(".Values.").unwrap_or_else(|| panic!("unsupported template action {a}"));
                    match a.strip_suffix(" | quote") {
                        Some(p) => format!("\"{}\"", scalar(lookup(values, p))),
                        None => scalar(lookup(values, a)),
                    }
                }
            };
            s.replace_range(start..end + 3, &value);
        }
        out.push(s);
    }
    Some(out.join("\n").trim().to_string())
}

fn rendered_chart() -> String {
    let values = yaml(&read("deploy/helm/shadowroute/values.yaml"));
    let chart = yaml(&read("deploy/helm/shadowroute/Chart.yaml"));
    let dir = root().join("deploy/helm/shadowroute/templates");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        if let Some(body) = render(&text, &values, chart["appVersion"].as_str().unwrap()) {
            out.push_str(&format!("---\n# Source: shadowroute/templates/{f}\n{body}\n"));
        }
    }
    out
}

#[test]
fn the_helm_chart_renders_to_the_committed_output_and_the_plain_manifests() {
    let rendered = rendered_chart();
    if std::env::var_os("UPDATE_RENDERED").is_some() {
        std::fs::write(root().join("deploy/helm/rendered.yaml"), &rendered).unwrap();
    }
    assert_eq!(
        rendered,
        read("deploy/helm/rendered.yaml"),
        "re-render with UPDATE_RENDERED=1 cargo test --test deploy"
    );
    // Each plain manifest is the same object as its rendered document.
    for doc in rendered.split("---\n").filter(|d| !d.trim().is_empty()) {
        let source = doc.lines().next().unwrap().trim_start_matches("# Source: shadowroute/templates/");
        let plain = read(&format!("deploy/kubernetes/{source}"));
        assert_eq!(yaml(&plain), yaml(doc), "deploy/kubernetes/{source} differs from the chart");
    }
    let kustomization = yaml(&read("deploy/kubernetes/kustomization.yaml"));
    let listed: BTreeSet<String> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let files: BTreeSet<String> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization.yaml must list every manifest");
}

#[test]
fn manifests_pass_yamllint() {
    let bin = tool("yamllint", "yamllint");
    let out = Command::new(bin)
        .current_dir(root())
        .args([
            "-s",
            "-c",
            "deploy/.yamllint",
            "deploy/kubernetes",
            "deploy/prometheus",
            "deploy/helm/rendered.yaml",
            "deploy/helm/shadowroute/values.yaml",
            "deploy/helm/shadowroute/Chart.yaml",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yamllint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerts_pass_promtool_and_match_the_prometheus_rule() {
    let bin = tool("promtool", "prometheus");
    let dir = root().join("deploy/prometheus");
    for args in [vec!["check", "rules", "rules.yaml"], vec!["test", "rules", "rules.test.yaml"]] {
        let out = Command::new(&bin).current_dir(&dir).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = yaml(&read("deploy/prometheus/rules.yaml"));
    let crd = yaml(&read("deploy/prometheus/alerts.yaml"));
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(crd["spec"], rules, "alerts.yaml spec must equal rules.yaml");
    // Every alert has its severity, summary, description and a runbook section.
    let runbook = read("docs/runbook.md");
    let tests = read("deploy/prometheus/rules.test.yaml");
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(rule["labels"]["severity"].is_string(), "{name}");
            for key in ["summary", "description", "runbook_url"] {
                assert!(rule["annotations"][key].is_string(), "{name} lacks {key}");
            }
            let anchor = rule["annotations"]["runbook_url"].as_str().unwrap().rsplit('#').next().unwrap().to_string();
            assert_eq!(anchor, name.to_lowercase());
            assert!(
                runbook.lines().any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == name),
                "docs/runbook.md has no section {name}"
            );
            assert!(tests.contains(&format!("alertname: {name}")), "no promtool test for {name}");
        }
    }
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("shadowroute_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_' || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

#[tokio::test]
async fn dashboards_and_alerts_only_name_metrics_the_router_exports() {
    let sims = common::sims("servers:\n  - { name: a }\n  - { name: b }\n").await;
    let routes = "server: { listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\", state: \"/dev/null/x.db\" }\nmodels:\n  a: { url: \"{a}\", model: m }\n  b: { url: \"{b}\", model: m }\nroutes:\n  - { name: chat, modality: text, leader: a, fallbacks: [b], candidates: [{ model: b, sample: 1.0 }] }\n";
    let router = common::router(&common::with_urls(routes, &sims), None).await;
    let c = common::client();
    let page = common::metrics(&c, router.admin_addr).await;
    let exported: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/shadowroute.json")).unwrap();
    assert_eq!(dashboard["uid"], "shadowroute-overview");
    let mut exprs = String::new();
    fn collect(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" || k == "query" {
                        out.push_str(&v.to_string());
                        out.push('\n');
                    }
                    collect(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    for (what, text) in [
        ("deploy/grafana/shadowroute.json", exprs),
        ("deploy/prometheus/rules.yaml", read("deploy/prometheus/rules.yaml")),
    ] {
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{what} names no metric");
        for name in names {
            assert!(exported.contains(&name), "{what} uses {name}, which /metrics does not export");
        }
    }
    router.shutdown().await;
}

#[test]
fn manifests_only_name_ports_paths_and_flags_the_binary_has() {
    let deployment = yaml(&read("deploy/kubernetes/deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> =
        container["args"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert_eq!(args, ["serve", "--config", "/etc/shadowroute/routes.yaml"], "{container}");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports: BTreeSet<u64> =
        container["ports"].as_array().unwrap().iter().map(|p| p["containerPort"].as_u64().unwrap()).collect();
    assert_eq!(ports, BTreeSet::from([8080, 9090]));
    let sc = &container["securityContext"];
    assert_eq!((sc["readOnlyRootFilesystem"].as_bool(), sc["runAsNonRoot"].as_bool()), (Some(true), Some(true)));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().all(|m| m.get("subPath").is_none()),
        "subPath mounts never update: the ConfigMap must be a directory"
    );

    // The shipped routes.yaml validates once its secret files exist (stand-ins here).
    let cm = yaml(&read("deploy/kubernetes/configmap.yaml"));
    let text = cm["data"]["routes.yaml"].as_str().unwrap();
    let dir = common::scratch("deploy-config");
    let text = text.replace("/var/run/secrets/shadowroute/", &format!("{}/", dir.display()));
    for key in ["openai", "gemini", "admin-token"] {
        std::fs::write(dir.join(key), "stand-in").unwrap();
    }
    let config = shadowroute::config::parse(&text, "configmap routes.yaml", &dir, &shadowroute::config::ProcessEnv)
        .unwrap_or_else(|e| panic!("the ConfigMap's routes.yaml is invalid:\n{e}"));
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.server.admin_listen.port(), 9090);
    assert_eq!(config.server.state, Path::new("/var/lib/shadowroute/state.db"));
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > config.server.drain_timeout.as_secs() + config.server.shutdown_delay.as_secs(),
        "the grace period must outlast the drain"
    );

    let docker = read("deploy/Dockerfile");
    assert!(
        docker.contains("--locked") && docker.contains("ENTRYPOINT [\"/usr/local/bin/shadowroute\"]"),
        "exec-form entrypoint, locked build"
    );
    assert!(
        docker.contains("bookworm") && docker.contains("distroless/cc-debian12"),
        "build and runtime must share glibc (Debian 12)"
    );
    assert!(root().join(".dockerignore").exists());
}
