//! A first deploy an admin can answer: `scripts/configure` asks only what has no safe
//! default, in deploy order, with a sentence each, refuses what the template would
//! refuse, and writes `samconfig.toml`, which every later `sam deploy` reads. Checked
//! with the SAM CLI's own reader of that file and cfn-lint on the template with the
//! values written (cfn-lint checks each value against the parameter's constraints).
//! The shipped `samconfig.toml` holds the rest, each at the template's default.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TEMPLATE: &str = include_str!("../template.yaml");

/// Runs `scripts/configure` on a copy of the shipped samconfig.toml with `answers` (one
/// a line) on its standard input: (exit code, what it printed, the copy's path).
fn configure(dir: &Path, answers: &[&str]) -> (Option<i32>, String, PathBuf) {
    let config = dir.join("samconfig.toml");
    if !config.exists() {
        std::fs::copy(Path::new(ROOT).join("samconfig.toml"), &config).unwrap();
    }
    let mut child = Command::new(Path::new(ROOT).join("scripts/configure"))
        .args(["--config-file", config.to_str().unwrap()])
        .env_remove("AWS_REGION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/configure runs (python3 3.11 or later)");
    let input: String = answers.iter().map(|a| format!("{a}\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, config)
}

/// The python the installed SAM CLI runs with (its shebang), to use SAM's own reader.
fn sam_python() -> PathBuf {
    let sam = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v sam)\""])
        .output()
        .expect("sh runs");
    let sam = String::from_utf8(sam.stdout).unwrap().trim().to_string();
    assert!(!sam.is_empty(), "the SAM CLI is missing: scripts/setup test");
    let text = std::fs::read(&sam).unwrap_or_else(|e| panic!("{sam}: {e}"));
    let first = String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let python = first
        .strip_prefix("#!")
        .unwrap_or_else(|| panic!("{sam} has no #! line"));
    PathBuf::from(python.trim())
}

/// What `sam deploy` reads from `config`: its region and parameter overrides, parsed by
/// the SAM CLI's own code (samconfig reader, the parameter_overrides type).
fn as_sam_reads_it(config: &Path) -> (String, BTreeMap<String, String>) {
    let script = r#"
import json, pathlib, sys
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig
p = pathlib.Path(sys.argv[1])
deploy = SamConfig(str(p.parent), p.name).get_all(["deploy"], "parameters")
print(json.dumps({"region": deploy.get("region") or "",
                  "parameters": CfnParameterOverridesType().convert(deploy["parameter_overrides"], None, None)}))
"#;
    let out = Command::new(sam_python())
        .args(["-c", script, config.to_str().unwrap()])
        .output()
        .expect("the SAM CLI's python runs");
    assert!(
        out.status.success(),
        "SAM can't read {}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parameters = read["parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (read["region"].as_str().unwrap().to_string(), parameters)
}

/// The template's parameters: name → its Default, if any.
fn template_defaults() -> BTreeMap<String, Option<String>> {
    let block = TEMPLATE
        .split_once("\nParameters:\n")
        .unwrap()
        .1
        .split_once("\nRules:\n")
        .unwrap()
        .0;
    let mut all = BTreeMap::new();
    let mut current = None;
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                current = Some(name.to_string());
                all.insert(name.to_string(), None);
            }
        } else if let (Some(name), Some(value)) = (&current, line.strip_prefix("    Default: ")) {
            all.insert(name.clone(), Some(value.trim_matches('"').to_string()));
        }
    }
    all
}

/// template.yaml with `values` as the parameters' defaults: what CloudFormation would
/// be given, for cfn-lint to check against every constraint.
fn template_with(values: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    let (mut inside, mut current) = (false, None::<String>);
    for line in TEMPLATE.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line == "Parameters:";
        }
        if inside && line.starts_with("    Default:") && current.as_ref().is_some_and(|c| values.contains_key(c)) {
            continue; // replaced below, after Type
        }
        out.push(line.to_string());
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if inside && !name.starts_with(' ') {
                current = Some(name.to_string());
            }
        }
        if inside && line.starts_with("    Type:") {
            if let Some(value) = current.as_ref().and_then(|c| values.get(c)) {
                out.push(format!("    Default: {}", serde_json::to_string(value).unwrap()));
            }
        }
    }
    out.join("\n") + "\n"
}

fn cfn_lint(template: &str, dir: &Path) -> (bool, String) {
    let path = dir.join("template.yaml");
    std::fs::write(&path, template).unwrap();
    let out = Command::new("cfn-lint")
        .arg(&path)
        .output()
        .expect("cfn-lint runs (scripts/setup test)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const ANSWERS: [&str; 6] = [
    "eu-west-1",
    "rt.example.com,helpdesk.example.com",
    "bugs@rt.example.com: --queue bugs --action correspond; *@helpdesk.example.com: --action correspond",
    "https://rt-mail.example.com",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rt-mailgate-AbCdEf",
    "rt-alarms@example.com",
];

#[test]
fn the_first_deploy_asks_six_things_in_deploy_order_and_sam_reads_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text, config) = configure(dir.path(), &ANSWERS);
    assert_eq!(code, Some(0), "{text}");
    // Asked in this order, each with its sentence (at least a few words).
    let asked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(". [").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once("] "))
        .inspect(|(_, sentence)| assert!(sentence.split(' ').count() > 8, "a sentence each: {sentence}"))
        .map(|(label, _)| label)
        .collect();
    assert_eq!(
        asked,
        ["region", "MailDomains", "Routes", "RtUrl", "RtSecretArn", "AlarmEmail"],
        "{text}"
    );
    let (region, parameters) = as_sam_reads_it(&config);
    assert_eq!(region, "eu-west-1");
    assert_eq!(parameters["MailDomains"], ANSWERS[1]);
    assert_eq!(
        parameters["Routes"], ANSWERS[2],
        "spaces, ';' and '*' survive SAM's parsing"
    );
    assert_eq!(parameters["RoutesObjectKey"], "");
    assert_eq!(parameters["RtUrl"], ANSWERS[3]);
    assert_eq!(parameters["RtSecretArn"], ANSWERS[4]);
    assert_eq!(parameters["AlarmEmail"], ANSWERS[5]);
    assert_eq!(parameters["AllowPlainHttp"], "false");
    // The settings it did not ask are still there, as shipped.
    assert_eq!(parameters["VirusPolicy"], "drop");
    assert_eq!(parameters["CanarySchedule"], "rate(1 hour)");
    // Every parameter without a Default in the template has its value now.
    for (name, default) in template_defaults() {
        if default.is_none() {
            assert!(
                parameters.contains_key(&name),
                "{name} has no default and was not written"
            );
        }
    }
    // What CloudFormation will be given fits every parameter's constraints.
    let (ok, lint) = cfn_lint(&template_with(&parameters), dir.path());
    assert!(ok, "cfn-lint on the template with the values written: {lint}");
    // Run again, Enter keeps every answer; the file comes out the same.
    let before = std::fs::read_to_string(&config).unwrap();
    let (code, text, _) = configure(dir.path(), &["", "", "", "", "", ""]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
}

#[test]
fn what_the_template_would_refuse_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let routes_file = dir.path().join("routes.txt");
    std::fs::write(&routes_file, "bugs@rt.example.com: --queue bugs\n").unwrap();
    let (code, text, config) = configure(
        dir.path(),
        &[
            "mars-north-1", // no SES receiving there
            "eu-west-1",
            "rt.example.com",
            "no table", // neither a file nor a route
            routes_file.to_str().unwrap(),
            "rt-mail.example.com",                      // no scheme
            "https://admin:secret@rt-mail.example.com", // credentials in the URL
            "https://localhost",                        // in Lambda, the function itself
            "https://rt-mail.example.com",
            "rt-mailgate", // a name, not the secret's ARN
            "",
            "not-an-address",
            "rt-alarms@example.com",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("Not taken:").count(), 7, "{text}");
    assert!(
        text.contains("without user:password@"),
        "the template's own words: {text}"
    );
    // A file is the table in the bucket, uploaded after the deploy creates the bucket.
    let (_, parameters) = as_sam_reads_it(&config);
    assert_eq!(parameters["RoutesObjectKey"], "config/routes.txt");
    assert_eq!(parameters["Routes"], "");
    assert_eq!(parameters["RtSecretArn"], "");
    let deploy = text.find("sam deploy").expect("the next steps");
    let upload = text.find("aws s3 cp").expect("the table's upload");
    let smoke = text.find("scripts/smoke-test before-mx").expect("the smoke test");
    assert!(
        deploy < upload && upload < smoke,
        "deploy, upload, then the smoke test: {text}"
    );
    let (ok, lint) = cfn_lint(&template_with(&parameters), dir.path());
    assert!(ok, "{lint}");
}

#[test]
fn plain_http_is_asked_about_and_no_answer_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(Path::new(ROOT).join("samconfig.toml")).unwrap();
    let (code, text, config) = configure(
        dir.path(),
        &[
            "eu-west-1",
            "rt.example.com",
            "bugs@rt.example.com: --queue bugs",
            "http://10.0.0.5",
            "no",
        ],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("unencrypted"), "{text}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), shipped, "nothing written");
    // Input that ends early writes nothing either.
    let (code, text, _) = configure(dir.path(), &["eu-west-1"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), shipped);
}

#[test]
fn the_shipped_settings_are_the_templates_defaults_and_never_break_an_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("samconfig.toml");
    std::fs::copy(Path::new(ROOT).join("samconfig.toml"), &config).unwrap();
    let (_, shipped) = as_sam_reads_it(&config);
    let defaults = template_defaults();
    assert!(
        shipped.len() > 15,
        "the settings an admin changes later are all there: {shipped:?}"
    );
    for (name, value) in &shipped {
        let default = defaults
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a template parameter"));
        assert_eq!(
            default.as_deref(),
            Some(value.as_str()),
            "{name}: shipped value vs the template's"
        );
    }
    // Architecture=x86_64 breaks every invocation (the build is arm64): never set here,
    // and a deploy refuses it (a template rule).
    assert!(!shipped.contains_key("Architecture"));
    let rules = TEMPLATE.split_once("\nRules:\n").unwrap().1;
    let rule = rules.split_once("  DeployIsArm64:\n").expect("the rule").1;
    assert!(
        rule.lines()
            .take(4)
            .any(|l| l.contains("!Equals [!Ref Architecture, arm64]")),
        "{rule}"
    );
}
