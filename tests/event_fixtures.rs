//! The sample events in `events/` are what SES really sends: each parses as an SES
//! receipt event with all five verdicts, agrees with the stored mail it names, and
//! together they cover several recipients, a sub-address and a recipient with no route.

use std::path::Path;

use aws_lambda_events::event::ses::SimpleEmailEvent;
use rt_mailgate::core::headers::MailSummary;
use rt_mailgate::core::route::RoutingTable;

const ROUTES: &str = "bugs@example.test: --queue bugs --action correspond --extension ticket; \
     bugs-comment@example.test: --queue bugs --action comment --extension ticket; \
     support@example.test: --queue support --action correspond";

fn fixtures() -> Vec<(String, SimpleEmailEvent)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut all: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // Every SES event fixture (env.json beside them is sam local invoke's variables).
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ses-")))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), event)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        all.len() >= 8,
        "fixtures missing: {:?}",
        all.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    all
}

#[test]
fn every_fixture_is_an_ses_event_whose_mail_agrees_with_it() {
    for (name, event) in fixtures() {
        assert_eq!(event.records.len(), 1, "{name}");
        let ses = &event.records[0].ses;
        let id = ses.mail.message_id.clone().unwrap();
        assert!(!ses.receipt.recipients.is_empty(), "{name}");
        let eml = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("events/mail/{id}.eml"));
        if name == "ses-missing-object.json" {
            assert!(!eml.exists(), "{name} must have no stored mail");
            continue;
        }
        let raw = std::fs::read(&eml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
        assert!(raw.windows(2).any(|w| w == b"\r\n"), "{name}: SES stores CRLF");
        let summary = MailSummary::from_header_block(&raw);
        assert_eq!(summary.subject, ses.mail.common_headers.subject, "{name}");
        assert_eq!(
            summary.message_id.map(|m| format!("<{m}>")),
            ses.mail.common_headers.message_id,
            "{name}"
        );
    }
}

#[test]
fn together_they_cover_the_routing_cases() {
    let table = RoutingTable::parse(ROUTES, Some('+')).unwrap();
    let all = fixtures();
    let recipients: Vec<String> = all
        .iter()
        .flat_map(|(_, e)| e.records[0].ses.receipt.recipients.clone())
        .collect();
    assert!(
        all.iter().any(|(_, e)| e.records[0].ses.receipt.recipients.len() >= 3),
        "several recipients"
    );
    assert!(
        recipients.iter().any(|r| table.route(r).is_none()),
        "a recipient with no route"
    );
    assert!(
        recipients
            .iter()
            .any(|r| table.route(r).is_some_and(|route| route.request.ticket.is_some())),
        "a sub-addressed recipient naming a ticket"
    );
    let verdicts = |e: &SimpleEmailEvent| {
        let r = &e.records[0].ses.receipt;
        [&r.virus_verdict, &r.spam_verdict].map(|v| v.status.clone().unwrap_or_default())
    };
    assert!(all.iter().any(|(_, e)| verdicts(e)[0] == "FAIL"), "a virus FAIL");
    assert!(all.iter().any(|(_, e)| verdicts(e)[1] == "FAIL"), "a spam FAIL");
}
