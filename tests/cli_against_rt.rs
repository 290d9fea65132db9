//! End to end: our `rt-mailgate` posts to a real RT 5 (started by
//! `scripts/rt-test-server start`), and each test reads the resulting tickets back over
//! RT's REST 1.0 API. These are the things an RT admin relies on from an aliases line.

mod support;

use support::{code, mails, ours, rt, stderr, unique};

/// Pipes `mail` through our client with `args` (plus `--url`) and asserts the exit code.
fn deliver(args: &[&str], extension: Option<&str>, mail: &[u8], expected_exit: i32) -> String {
    let url = rt::url();
    let mut full = vec!["--url", url.as_str()];
    full.extend_from_slice(args);
    let out = ours(&full, extension, mail);
    assert_eq!(code(&out), expected_exit, "stderr: {}", stderr(&out));
    stderr(&out)
}

/// Creates a ticket in `bugs` and returns its id.
fn new_ticket(label: &str) -> (u64, String) {
    let subject = unique(label);
    deliver(
        &["--queue", "bugs", "--action", "correspond"],
        None,
        &mails::plain("dave@example.org", &subject, "first"),
        0,
    );
    (rt::only_ticket_with_subject(&subject), subject)
}

#[test]
fn a_plain_mail_becomes_a_new_ticket() {
    let subject = unique("new-ticket");
    deliver(
        &["--queue", "bugs", "--action", "correspond"],
        None,
        &mails::plain("erin@example.org", &subject, "help"),
        0,
    );
    let id = rt::only_ticket_with_subject(&subject);
    let ticket = rt::ticket(id);
    assert_eq!(ticket["Queue"], "bugs");
    assert_eq!(ticket["Requestors"], "erin@example.org");
    assert_eq!(ticket["Status"], "new");
}

#[test]
fn a_reply_via_extension_ticket_lands_on_that_ticket() {
    let (id, subject) = new_ticket("ext-reply");
    let marker = unique("reply-body");
    let mail = mails::plain("dave@example.org", "no tag in this subject", &marker);
    deliver(
        &["--queue", "bugs", "--action", "correspond", "--extension", "ticket"],
        Some(&id.to_string()),
        &mail,
        0,
    );
    let history = rt::history(id);
    assert!(history.contains(&marker), "reply missing from ticket {id}");
    assert!(history.contains("Type: Correspond"));
    assert_eq!(rt::tickets_with_subject(&subject), [id], "no new ticket was made");
}

#[test]
fn a_reply_with_the_subject_tag_lands_on_that_ticket() {
    let (id, _) = new_ticket("tag-reply");
    let marker = unique("tagged-body");
    // The search below is by this run's own token: other tests' tickets may say "still broken".
    let token = unique("still-broken");
    let subject = format!("Re: [example.test #{id}] still broken {token}");
    deliver(
        &["--action", "correspond"],
        None,
        &mails::plain("dave@example.org", &subject, &marker),
        0,
    );
    assert!(rt::history(id).contains(&marker));
    assert!(
        rt::tickets_with_subject(&token).iter().all(|&t| t == id),
        "a second ticket was made"
    );
}

#[test]
fn a_comment_is_recorded_as_a_comment() {
    let (id, _) = new_ticket("comment");
    let marker = unique("comment-body");
    deliver(
        &["--queue", "bugs", "--action", "comment", "--extension", "ticket"],
        Some(&id.to_string()),
        &mails::plain("dave@example.org", "note", &marker),
        0,
    );
    let history = rt::history(id);
    let comment = history
        .split("\n--\n")
        .find(|t| t.contains(&marker))
        .expect("comment transaction");
    assert!(comment.contains("Type: Comment"), "{comment}");
}

#[test]
fn take_comment_makes_the_sender_the_owner() {
    let (id, _) = new_ticket("take");
    let marker = unique("take-body");
    deliver(
        &["--action", "take-comment", "--extension", "ticket"],
        Some(&id.to_string()),
        &mails::plain("frank@example.org", "mine", &marker),
        0,
    );
    assert_eq!(rt::ticket(id)["Owner"], "frank@example.org");
    assert!(rt::history(id).contains(&marker));
}

#[test]
fn correspond_resolve_resolves_the_ticket() {
    let (id, _) = new_ticket("resolve");
    deliver(
        &["--action", "correspond-resolve", "--extension", "ticket"],
        Some(&id.to_string()),
        &mails::plain("dave@example.org", "fixed", "done"),
        0,
    );
    assert_eq!(rt::ticket(id)["Status"], "resolved");
}

#[test]
fn an_unknown_queue_is_a_temporary_failure() {
    let subject = unique("bad-queue");
    let err = deliver(
        &["--queue", "no-such-queue"],
        None,
        &mails::plain("dave@example.org", &subject, "x"),
        75,
    );
    assert!(err.contains("temporary failure"), "{err}");
    assert!(rt::tickets_with_subject(&subject).is_empty());
}

#[test]
fn rt_down_is_a_temporary_failure() {
    // A loopback port where nothing listens.
    let out = ours(
        &["--url", "http://127.0.0.1:9", "--queue", "bugs"],
        None,
        &mails::plain("a@example.org", "down", "x"),
    );
    assert_eq!(code(&out), 75);
    assert!(stderr(&out).contains("HTTP request failed"), "{}", stderr(&out));
}

#[test]
fn a_mail_rt_refuses_is_consumed_with_exit_zero() {
    // A reply to a ticket that does not exist: RT answers `not ok` (and mails the sender).
    let err = deliver(
        &["--action", "correspond", "--extension", "ticket"],
        Some("987654"),
        &mails::plain("dave@example.org", "ghost", "x"),
        0,
    );
    assert!(err.contains("refused by RT: not ok"), "{err}");
}

#[test]
fn eight_bit_text_and_binary_attachments_arrive_byte_identical() {
    let subject = unique("eight-bit");
    let text = b"Gr\xfc\xdfe aus K\xf6ln, \xa4 5";
    let blob = mails::binary_blob(300_000);
    deliver(
        &["--queue", "support"],
        None,
        &mails::eight_bit_with_attachment(&subject, text, &blob),
        0,
    );
    let id = rt::only_ticket_with_subject(&subject);
    let attachments = rt::attachments(id);
    let blob_id = attachments
        .iter()
        .find(|a| a.1 == "blob.bin")
        .expect("blob.bin stored")
        .0;
    assert!(rt::attachment_content(id, blob_id) == blob, "binary attachment changed");
    let text_id = attachments.iter().find(|a| a.2 == "text/plain").expect("text part").0;
    assert_eq!(rt::attachment_content(id, text_id), text);
}

#[test]
fn a_url_with_a_trailing_slash_still_reaches_rt() {
    // Perl posts to `//REST/1.0/...` here and we to `/REST/1.0/...`; RT takes both.
    let subject = unique("trailing-slash");
    let url = format!("{}/", rt::url());
    let out = ours(
        &["--url", &url, "--queue", "bugs"],
        None,
        &mails::plain("erin@example.org", &subject, "slash"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "bugs");
}

/// `--rt-organization` (ours, off by default): a reply whose subject lost RT's tag but
/// whose `References` carry RT's marker lands on that ticket, checked first with RT's
/// REST 2 API as the `--secret-file`'s RT login (the README's lookup user). Without the
/// option the same mail makes a new ticket, as with the Perl client; with it but no RT
/// login, the CLI says what it needs and the MTA keeps the mail.
#[test]
fn with_rt_organization_a_reply_that_lost_its_tag_lands_on_its_ticket() {
    let (id, subject) = new_ticket("thread-cli");
    let reply = |body: &str| {
        format!(
            "From: dave@example.org\nTo: rt@example.test\nSubject: Re: {subject}\n\
             Message-ID: <{}@test.example>\nReferences: <RT-Ticket-{id}@rt.example.test>\n\n{body}\n",
            unique("reply")
        )
        .into_bytes()
    };
    let args = ["--queue", "bugs", "--action", "correspond"];

    // Off by default: a new ticket, as the Perl client makes.
    let untouched = unique("no option");
    deliver(&args, None, &reply(&untouched), 0);
    assert!(!rt::history(id).contains(&untouched));

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.json");
    let token = rt::Rt::sqlite().lookup_token(rt::LookupUser::Readme);
    std::fs::write(&secret, format!(r#"{{"rt_token": "{token}"}}"#)).unwrap();
    let secret = secret.to_str().unwrap();
    let threaded = unique("threaded by the marker");
    let said = deliver(
        &[
            &args[..],
            &["--rt-organization", "rt.example.test", "--rt-name", "example.test"],
            &["--secret-file", secret, "--debug"],
        ]
        .concat(),
        None,
        &reply(&threaded),
        0,
    );
    assert!(said.contains(&format!("threading: rt_marker:{id}")), "{said}");
    assert!(rt::history(id).contains(&threaded), "the reply is on ticket {id}");
    assert!(!said.contains(&token), "the token is never printed");

    // No RT login: exit 75 (the MTA keeps the mail), saying what is missing.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let said = deliver(
        &[
            &args[..],
            &[
                "--rt-organization",
                "rt.example.test",
                "--secret-file",
                empty.to_str().unwrap(),
            ],
        ]
        .concat(),
        None,
        &reply("never posted"),
        75,
    );
    assert!(
        said.contains("needs an RT login") && said.contains("rt_token"),
        "{said}"
    );
}
