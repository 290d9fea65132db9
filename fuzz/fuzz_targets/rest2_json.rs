//! RT's REST 2 JSON as the lookup reads it (`rt::lookup::read_rest2_answer`) and the rule
//! that judges the hits (`core::lookup`): any answer (RT's, a proxy's error page, a
//! truncated or hostile body) is read or refused, never a panic; and whatever hits it
//! gives, a route found names a hit that is really there, and the merge checks asked
//! for stay few, sorted and distinct. Threading's ticket check is read from the same bodies.
//!
//! Input: a first line `queue ticket action` (`-` for absent) for the route, then the body.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::lookup::{subject_tags, Expectation, Hit, QueueInfo, TransactionType, Verdict};
use rt_mailgate::core::request::GatewayRequest;
use rt_mailgate::rt::lookup::{read_rest2_answer, Rest2Answer};

fn field(word: Option<&str>) -> Option<Vec<u8>> {
    word.filter(|w| *w != "-").map(|w| w.as_bytes().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (route, body) = (
        String::from_utf8_lossy(&data[..split]),
        data.get(split + 1..).unwrap_or_default(),
    );
    let answers = read_rest2_answer(body);
    // Anything that is not one JSON value (a proxy's HTML page) is refused. (Invalid
    // UTF-8 may sit in a string the lookup skips, so the check reads it replaced.)
    if serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(body)).is_err() {
        assert!(answers.is_empty(), "read what is not JSON");
    }

    let mut words = route.split(' ');
    let request = GatewayRequest {
        queue: field(words.next()),
        ticket: field(words.next()),
        action: field(words.next()),
        ..GatewayRequest::default()
    };
    let Ok(expectation) = Expectation::of(&request) else {
        return;
    };

    // The hits, as the adapter would assemble them from these answers.
    let mut kind = TransactionType::Create;
    let mut ticket = 1;
    let mut queue = QueueInfo { id: 1, name: None };
    let mut attachments = Vec::new();
    for answer in answers {
        match answer {
            Rest2Answer::Search { hits, .. } => attachments = hits,
            Rest2Answer::Transaction { kind: k, object } => {
                kind = TransactionType::from_rt(&k);
                ticket = object.1;
            }
            Rest2Answer::Ticket { queue: q, .. } => queue.id = q,
            Rest2Answer::Queue(name) => queue.name = Some(name),
            // Threading's reads (issue 22): a date RT didn't set is none, never 0.
            Rest2Answer::TicketStatus { resolved_secs, .. } => {
                assert!(resolved_secs.is_none_or(|s| s > 0), "a Resolved date at or before 1970");
            }
        }
    }
    let hits: Vec<Hit> = attachments
        .into_iter()
        .enumerate()
        .map(|(i, (transaction, subject, _))| Hit {
            transaction,
            // Alternate kinds so every step kind is met.
            kind: if i % 2 == 0 {
                kind.clone()
            } else {
                TransactionType::Correspond
            },
            ticket: ticket.wrapping_add(i as u64 % 3),
            queue: Some(queue.clone()),
            subject: subject.unwrap_or_default(),
        })
        .collect();
    for hit in &hits {
        for tag in subject_tags(&hit.subject) {
            assert!(hit.subject.contains(&tag.to_string()), "a tag not in the subject");
        }
    }
    let wanted = expectation.tickets_to_resolve(&hits, 4);
    assert!(wanted.len() <= 4);
    assert!(
        wanted.windows(2).all(|w| w[0] < w[1]),
        "not sorted and distinct: {wanted:?}"
    );
    let merged: BTreeMap<u64, u64> = wanted.iter().map(|&t| (t, ticket)).collect();
    for merges in [BTreeMap::new(), merged] {
        if let Verdict::Found { ticket, transaction } = expectation.find(&hits, &merges) {
            assert!(
                hits.iter().any(|h| h.transaction == transaction && h.ticket == ticket),
                "found a transaction that is not among the hits"
            );
        }
    }
});
