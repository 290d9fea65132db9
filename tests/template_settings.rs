//! The template and the function agree on their settings:
//!
//! - every environment variable the function reads (`src/lambda/config.rs`,
//!   `src/lambda/wiring.rs`, and the storm settings of `src/core/storm.rs`) is set by `template.yaml` from a parameter, or the
//!   configuration table of `docs/deploy.md` says why it is not a parameter; every row
//!   names the parameter next to the variable;
//! - the function's environment, at the longest value every parameter allows, stays
//!   within Lambda's 4 KB for all variables together (so a stack that deploys also
//!   starts), which needs a `MaxLength` (or `AllowedValues`, `MaxValue`) on each;
//! - each value a parameter's `AllowedValues` lets through, the function accepts, and
//!   the template's `Rules` refuse what the function refuses at cold start;
//! - the receipt rule takes the domains the function is told (`MailDomains` →
//!   `MAIL_DOMAINS`), or the explicit `ReceiptRecipients`.

use std::collections::BTreeMap;

use rt_mailgate::lambda::config::LambdaConfig;

const TEMPLATE: &str = include_str!("../template.yaml");
const DEPLOY_DOC: &str = include_str!("../docs/deploy.md");
const FUNCTION_READS: [&str; 3] = [
    include_str!("../src/lambda/config.rs"),
    include_str!("../src/lambda/wiring.rs"),
    include_str!("../src/core/storm.rs"),
];

/// Lambda's limit for all of a function's environment variables together.
const LAMBDA_ENV_LIMIT: usize = 4096;

#[derive(Debug, Default)]
struct Parameter {
    kind: String,
    default: Option<String>,
    max_length: Option<usize>,
    max_value: Option<u64>,
    allowed_values: Vec<String>,
}

/// `Parameters:` of the template, read line by line (two-space names, four-space keys).
fn parameters() -> BTreeMap<String, Parameter> {
    let mut all = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut inside = false;
    for line in TEMPLATE.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line == "Parameters:";
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            if let Some(name) = name.strip_suffix(':') {
                current = Some(name.to_string());
                all.insert(name.to_string(), Parameter::default());
            }
            continue;
        }
        let (Some(name), Some((key, value))) = (&current, line.trim().split_once(": ")) else {
            continue;
        };
        if !line.starts_with("    ") || line.starts_with("     ") {
            continue;
        }
        let parameter = all.get_mut(name).unwrap();
        let value = value.trim().trim_matches('"').to_string();
        match key {
            "Type" => parameter.kind = value,
            "Default" => parameter.default = Some(value),
            "MaxLength" => parameter.max_length = Some(value.parse().unwrap()),
            "MaxValue" => parameter.max_value = Some(value.parse().unwrap()),
            "AllowedValues" => {
                parameter.allowed_values = value
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|v| v.trim().trim_matches('"').to_string())
                    .collect()
            }
            _ => {}
        }
    }
    all
}

/// The function's `Environment: Variables:` block: variable → expression as written.
fn environment() -> Vec<(String, String)> {
    let block = TEMPLATE
        .split_once("      Environment:\n        Variables:\n")
        .expect("the function has an Environment block")
        .1;
    block
        .lines()
        .take_while(|l| l.starts_with("          "))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The parameter an expression takes its value from, if any.
fn parameter_of(expression: &str) -> Option<String> {
    let params = parameters();
    expression
        .split(|c: char| !c.is_ascii_alphanumeric() && c != ':')
        .find(|word| params.contains_key(*word))
        .map(str::to_string)
}

/// Every variable name the function reads: `get("X")`, `var("X")`, `required("X")`,
/// `choice("X"` in its configuration code.
fn variables_read() -> Vec<String> {
    let mut names = Vec::new();
    for source in FUNCTION_READS {
        for call in ["get(\"", "var(\"", "required(\"", "choice(\""] {
            for piece in source.split(call).skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > 2 && piece[name.len()..].starts_with('"') && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names.sort();
    names
}

/// The configuration table of `docs/deploy.md`: variable → its row.
fn documented_rows() -> BTreeMap<String, String> {
    let table = DEPLOY_DOC
        .split_once("## Configuration (environment)")
        .expect("docs/deploy.md has a Configuration (environment) section")
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let first = row.split('|').nth(1)?.trim();
            let name = first.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), row.to_string()))
        })
        .collect()
}

#[test]
fn every_setting_the_function_reads_is_a_parameter_or_said_not_to_be() {
    let read = variables_read();
    assert!(read.len() > 20, "the scan found the function's variables: {read:?}");
    let env: BTreeMap<String, String> = environment().into_iter().collect();
    let rows = documented_rows();
    let mut problems = Vec::new();
    for name in &read {
        let Some(row) = rows.get(name) else {
            problems.push(format!("{name}: no row in the configuration table of docs/deploy.md"));
            continue;
        };
        let second = row.split('|').nth(2).unwrap_or_default();
        match env.get(name).and_then(|e| parameter_of(e)) {
            Some(param) => {
                if !second.contains(&format!("`{param}`")) {
                    problems.push(format!(
                        "{name}: its docs/deploy.md row does not name the parameter `{param}`"
                    ));
                }
            }
            None if env.contains_key(name) => {
                if !second.contains("set by the template") {
                    problems.push(format!(
                        "{name}: set by the template, and its docs/deploy.md row should say so"
                    ));
                }
            }
            None => {
                if !second.contains("not a parameter") {
                    problems.push(format!(
                        "{name}: the template doesn't set it; its docs/deploy.md row must say why it is not a parameter"
                    ));
                }
            }
        }
    }
    for name in env.keys() {
        // RUST_LOG is tracing's; AWS_ENDPOINT_URL the AWS SDK's (declared for sam local).
        if !read.contains(name) && name != "RUST_LOG" && name != "AWS_ENDPOINT_URL" {
            problems.push(format!("{name}: the template sets it, the function never reads it"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_environment_fits_lambdas_4_kb_at_every_parameters_longest_value() {
    let params = parameters();
    let mut total = 0;
    let mut sizes = Vec::new();
    for (name, expression) in environment() {
        let value = if let Some(param) = parameter_of(&expression) {
            let p = &params[&param];
            if let Some(max) = p.max_length {
                max
            } else if !p.allowed_values.is_empty() {
                p.allowed_values.iter().map(String::len).max().unwrap()
            } else if let Some(max) = p.max_value {
                max.to_string().len()
            } else {
                panic!("{name} takes {param}, which has no MaxLength, AllowedValues or MaxValue");
            }
        } else if expression.contains("MailBucket") {
            63 // an S3 bucket name
        } else if expression.contains("StormCounterTable") {
            70 // its TableName: the bucket's name and `-storms`
        } else {
            assert!(
                !expression.starts_with('!'),
                "{name}: {expression} is not understood here"
            );
            expression.trim_matches('"').len()
        };
        sizes.push((name.clone(), value));
        total += name.len() + value;
    }
    assert!(
        total <= LAMBDA_ENV_LIMIT,
        "the environment may reach {total} bytes, Lambda allows {LAMBDA_ENV_LIMIT}: {sizes:?}"
    );
}

#[test]
fn every_allowed_value_is_one_the_function_takes() {
    let params = parameters();
    for (var, expression) in environment() {
        let Some(param) = parameter_of(&expression) else {
            continue;
        };
        for value in &params[&param].allowed_values {
            let vars = [
                ("RT_URL", "https://rt.example.com"),
                ("MAIL_BUCKET", "mail"),
                ("ROUTES", "bugs@example.com: --queue bugs"),
                ("NOTICE_FROM", "rt@example.com"),
                (var.as_str(), value.as_str()),
            ];
            let lookup = |k: &str| vars.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
            if let Err(e) = LambdaConfig::from_vars(lookup) {
                panic!("{param}={value} ({var}) is refused by the function: {e}");
            }
        }
    }
}

#[test]
fn the_rules_refuse_what_the_cold_start_refuses() {
    // Each cold-start refusal of a whole configuration has its deploy-time rule.
    let base = [
        ("RT_URL", "https://rt.example.com"),
        ("MAIL_BUCKET", "mail"),
        ("ROUTES", "bugs@example.com: --queue bugs"),
    ];
    let refused = |extra: &[(&str, &str)]| {
        let vars: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        LambdaConfig::from_vars(|k| vars.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).is_err()
    };
    assert!(refused(&[("OPERATOR_EMAIL", "ops@example.com")]));
    assert!(refused(&[("SENDER_NOTICES", "true")]));
    assert!(refused(&[("ROUTES", "")]));
    let rules = TEMPLATE
        .split_once("\nRules:\n")
        .unwrap()
        .1
        .split_once("\nConditions:")
        .unwrap()
        .0;
    for (rule, needs) in [
        (
            "NoticesNeedNoticeFrom:",
            ["OperatorEmail", "SenderNotices", "NoticeFrom"].as_slice(),
        ),
        ("NeedsRoutes:", &["Routes", "RoutesObjectKey"]),
        ("NeedsMailDomains:", &["MailDomains"]),
        ("RoutesObjectNeedsPrefix:", &["RoutesObjectKey", "MailPrefix"]),
        // Not a cold-start refusal: the alarms must reach someone.
        ("AlarmsReachSomeone:", &["AlarmEmail", "OperatorEmail"]),
    ] {
        let body = rules
            .split_once(&format!("  {rule}\n"))
            .unwrap_or_else(|| panic!("no rule {rule}"))
            .1;
        let body: String = body
            .lines()
            .take_while(|l| l.starts_with("    "))
            .collect::<Vec<_>>()
            .join("\n");
        for param in needs {
            assert!(body.contains(param), "{rule} checks {param}: {body}");
        }
    }
    // RT_TIMEOUT: the template's bound leaves time to post (src/lambda/config.rs tests
    // it against the function's Timeout); the function refuses 0, the template too.
    let timeout = &parameters()["RtTimeout"];
    assert!(timeout.max_value.is_some());
    assert!(TEMPLATE.contains("  RtTimeout:\n    Type: Number\n    Default: 600\n    MinValue: 1\n"));
}

#[test]
fn the_rule_receives_the_domains_the_function_is_told() {
    let rule = TEMPLATE.split_once("  ReceiptRule:\n").unwrap().1;
    assert!(
        rule.contains("Recipients: !If [HasReceiptRecipients, !Ref ReceiptRecipients, !Ref MailDomains]"),
        "{rule}"
    );
    let env: BTreeMap<String, String> = environment().into_iter().collect();
    assert_eq!(env["MAIL_DOMAINS"], "!Join [\",\", !Ref MailDomains]");
    assert_eq!(parameters()["MailDomains"].kind, "CommaDelimitedList");
    assert!(TEMPLATE.contains("TlsPolicy: !Ref TlsPolicy"));
}

/// A resource's block in the template: its two-space name line and what follows.
fn resource(name: &str) -> String {
    let body = TEMPLATE
        .split_once(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name}"))
        .1;
    body.lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mail_outlives_the_dead_letter_queues_and_the_tools_get_the_functions_name() {
    // A dead letter waits at most the queue's retention; its mail must still be there.
    let dlq_seconds: u64 = resource("DeadLetterQueue")
        .lines()
        .find_map(|l| l.trim().strip_prefix("MessageRetentionPeriod: "))
        .unwrap()
        .parse()
        .unwrap();
    let retention = resource("RetentionDays");
    let min_days: u64 = retention
        .lines()
        .find_map(|l| l.trim().strip_prefix("MinValue: "))
        .expect("RetentionDays has a MinValue")
        .parse()
        .unwrap();
    assert!(
        min_days * 86_400 >= dlq_seconds,
        "RetentionDays may go below the DLQ's {dlq_seconds} s"
    );
    let outputs = TEMPLATE.split_once("\nOutputs:\n").unwrap().1;
    let name = outputs
        .split_once("  FunctionName:\n")
        .expect("a FunctionName output")
        .1;
    assert!(
        name.lines().take(5).any(|l| l.trim() == "Value: !Ref MailgateFunction"),
        "{name}"
    );
}

#[test]
fn switching_back_to_direct_never_deletes_a_queue_that_holds_mail() {
    for queue in ["MailQueue", "BufferDeadLetterQueue", "DeadLetterQueue"] {
        let block = resource(queue);
        assert!(
            !block.contains("Condition:"),
            "{queue} exists in both delivery modes: {block}"
        );
        assert!(block.contains("DeletionPolicy: Retain") && block.contains("UpdateReplacePolicy: Retain"));
    }
    // Still drained in direct mode, so mail left in it is delivered.
    let mapping = resource("MailQueueMapping");
    assert!(!mapping.contains("Condition:"), "{mapping}");
    assert!(
        TEMPLATE.contains("              - Sid: DrainMailQueue\n"),
        "the drain's rights in both modes"
    );
}

#[test]
fn alarms_mean_action() {
    // GivenUp pages; PolicyDropped (virus, spam, DMARC) never does.
    assert!(resource("GivenUpAlarm").contains("MetricName: GivenUp"));
    assert!(
        !TEMPLATE.contains("MetricName: PolicyDropped"),
        "no alarm on routine policy drops"
    );
    // Every count alarm takes no data as no trouble: nothing fires before the first mail.
    for alarm in [
        "GivenUpAlarm",
        "UnroutedAlarm",
        "DeadLetterAlarm",
        "FunctionErrorsAlarm",
    ] {
        assert!(resource(alarm).contains("TreatMissingData: notBreaching"), "{alarm}");
    }
    // Silence pages only once the stack has delivered a mail this week: a composite of
    // the silent hours and a delivery within 7 days, neither part mailing by itself.
    let nothing = resource("NothingDeliveredAlarm");
    assert!(nothing.contains("Type: AWS::CloudWatch::CompositeAlarm"), "{nothing}");
    assert!(
        nothing.contains(r#"AlarmRule: !Sub 'ALARM("${NoDeliveryHours}") AND ALARM("${DeliveredThisWeek}")'"#),
        "{nothing}"
    );
    let week = resource("DeliveredThisWeek");
    assert!(
        week.contains("TreatMissingData: notBreaching") && week.contains("ComparisonOperator: GreaterThanThreshold")
    );
    for part in ["NoDeliveryHours", "DeliveredThisWeek"] {
        assert!(!resource(part).contains("Actions:"), "{part} mails no one itself");
    }
}
