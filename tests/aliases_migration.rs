//! Migrating an `/etc/aliases` file: `rt-mailgate-routes import-aliases` turns each
//! rt-mailgate pipe into a Lambda route, the function's own parser accepts the result,
//! and every address posts exactly what its alias posted, to the RT it posted to: the RT
//! most aliases share becomes the template's `RtUrl`, every other one stays in its
//! routes as `--url`. Every alias left behind is reported with its reason, and no
//! password from a `--url` is ever printed or copied (it belongs in a Secrets Manager
//! secret). What the admin sets is named as the template's parameters. A URL the
//! function would refuse at cold start (plain http to another machine without
//! `AllowPlainHttp`, loopback) is refused by the import and by `explain` alike.
//! `rt-mailgate-routes explain` then answers "where would this address go?", and
//! `explain --recipients` what the template's lists must hold, within what a parameter
//! takes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rt_mailgate::core::request::GatewayRequest;
use rt_mailgate::core::route::RoutingTable;

const ROUTES_BIN: &str = env!("CARGO_BIN_EXE_rt-mailgate-routes");
const PASSWORD: &str = "s3cret-pw";
/// The password of the second RT with credentials in its URL.
const OPS_PASSWORD: &str = "0ps-pw";

/// An aliases file as an RT host has them: every form the import must read.
const ALIASES: &str = r##"# /etc/aliases on the old RT host
postmaster: root
root: ops@example.com

# Queue names with spaces, quotes, `#` and `;`, in both pipe forms.
sales: "|/usr/bin/rt-mailgate --queue 'Sales Team' --action correspond --url https://rt:s3cret-pw@rt.example.com/"
sales-comment: |"/usr/bin/rt-mailgate --queue \"Sales Team\" --action comment --extension ticket --url=https://rt:s3cret-pw@rt.example.com/ --no-verify-ssl"
number-one: "|/opt/rt5/bin/rt-mailgate --queue \"It's #1; really\" --url https://rt:s3cret-pw@rt.example.com"
# A folded alias (continuation lines start with whitespace), with a comment inside.
night: "|/usr/bin/rt-mailgate --queue 'Ops #2; night'
	--action correspond --extension=ticket
  # the timeout was raised in 2019
	--timeout 30 --url https://rt:s3cret-pw@rt.example.com/"
# Several targets: the rt-mailgate pipe is migrated, the others are reported.
help: archive@example.com, "|/usr/bin/rt-mailgate --queue Help --url https://rt:s3cret-pw@rt.example.com", /var/log/help.mbox
staff: :include:/etc/mail/staff.list
procmail: "|/usr/bin/procmail -m /etc/procmailrc"
# Two more RTs: an old one without credentials, the ops team's with its own.
legacy: "|/usr/bin/rt-mailgate --queue Legacy --url https://rt-old.example.com"
ops: "|/usr/bin/rt-mailgate --queue Ops --action comment --url https://mailgate:0ps-pw@rt-ops.example.com/rt/"
"##;

/// Runs `rt-mailgate-routes` with `args` and `env`, killed after 30 s; gives (exit
/// code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut command = Command::new(ROUTES_BIN);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for var in [
        "ROUTES",
        "ROUTES_FILE",
        "SUBADDRESS_SEPARATOR",
        "RT_URL",
        "RT_SECRET_ID",
        "MAIL_DOMAINS",
        "ROUTES_S3_KEY",
        "RT_ALLOW_HTTP",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("rt-mailgate-routes starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("rt-mailgate-routes {args:?} ran for more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    (status.code().expect("exited"), read(&out), read(&err))
}

/// Imports [`ALIASES`]: (routes on stdout, report on stderr).
fn import(dir: &Path) -> (String, String) {
    let aliases = dir.join("aliases");
    std::fs::write(&aliases, ALIASES).unwrap();
    let (code, routes, report) = run(
        &["import-aliases", aliases.to_str().unwrap(), "--domain", "example.com"],
        &[],
    );
    assert_eq!(code, 0, "{report}");
    (routes, report)
}

/// The form fields a request posts, as text.
fn posted(request: &GatewayRequest) -> Vec<(&'static str, String)> {
    [
        ("queue", &request.queue),
        ("action", &request.action),
        ("ticket", &request.ticket),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let value = value.as_ref()?;
        Some((name, String::from_utf8_lossy(AsRef::<[u8]>::as_ref(value)).into_owned()))
    })
    .collect()
}

#[test]
fn every_rt_mailgate_alias_becomes_a_route_that_posts_what_the_alias_posted() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, _) = import(dir.path());
    let table = RoutingTable::parse(&routes, Some('+')).expect("the function accepts the import");

    // address -> what rt-mailgate posted for it (with EXTENSION from the sub-address).
    let expected: &[(&str, &[(&str, &str)])] = &[
        (
            "sales@example.com",
            &[("queue", "Sales Team"), ("action", "correspond")],
        ),
        (
            "sales+12@example.com",
            &[("queue", "Sales Team"), ("action", "correspond")],
        ),
        (
            "sales-comment+12@example.com",
            &[("queue", "Sales Team"), ("action", "comment"), ("ticket", "12")],
        ),
        ("number-one@example.com", &[("queue", "It's #1; really")]),
        (
            "night+7@example.com",
            &[("queue", "Ops #2; night"), ("action", "correspond"), ("ticket", "7")],
        ),
        ("help@example.com", &[("queue", "Help")]),
        ("legacy@example.com", &[("queue", "Legacy")]),
        ("ops+3@example.com", &[("queue", "Ops"), ("action", "comment")]),
    ];
    for (address, fields) in expected {
        let route = table
            .route(address)
            .unwrap_or_else(|| panic!("{address} is not routed"));
        let want: Vec<(&str, String)> = fields.iter().map(|(n, v)| (*n, v.to_string())).collect();
        assert_eq!(posted(&route.request), want, "{address}");
    }
    // The sub-address is the alias's $EXTENSION: it also becomes the header.
    let sales = table.route("sales+12@example.com").unwrap();
    assert_eq!(sales.request.message_prefix(), b"X-RT-Mail-Extension: 12\n");

    for unrouted in [
        "postmaster@example.com",
        "root@example.com",
        "staff@example.com",
        "procmail@example.com",
    ] {
        assert!(table.route(unrouted).is_none(), "{unrouted} must not be routed");
    }
    // Exactly one route per migrated alias, quoted so the shell words survive. The RT
    // most aliases use is left to RT_URL; the others are named, without credentials.
    let lines: Vec<&str> = routes.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "sales@example.com: --queue 'Sales Team' --action correspond",
            "sales-comment@example.com: --queue 'Sales Team' --action comment --extension ticket",
            "number-one@example.com: --queue \"It's #1; really\"",
            "night@example.com: --queue 'Ops #2; night' --action correspond --extension ticket",
            "help@example.com: --queue Help",
            "legacy@example.com: --queue Legacy --url https://rt-old.example.com",
            "ops@example.com: --queue Ops --action comment --url https://rt-ops.example.com/rt",
        ]
    );
}

#[test]
fn each_address_goes_to_the_rt_its_alias_posted_to() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, _) = import(dir.path());
    let table = RoutingTable::parse(&routes, Some('+')).unwrap();
    let rt = |address: &str| table.route(address).unwrap().request.rt.map(|t| (t.url, t.secret));
    // The function's own RT (RtUrl): the routes name none.
    for address in ["sales@example.com", "night+7@example.com", "help@example.com"] {
        assert_eq!(rt(address), None, "{address}");
    }
    assert_eq!(
        rt("legacy@example.com"),
        Some(("https://rt-old.example.com".into(), None))
    );
    // The URL without its credentials, and no secret yet: the admin adds `--secret`.
    assert_eq!(
        rt("ops@example.com"),
        Some(("https://rt-ops.example.com/rt".into(), None))
    );
    // The function builds one client for each RT a route names.
    let urls: Vec<String> = table.targets().into_iter().map(|t| t.url).collect();
    assert_eq!(urls, ["https://rt-old.example.com", "https://rt-ops.example.com/rt"]);
}

#[test]
fn every_skip_and_every_dropped_target_is_reported_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, report) = import(dir.path());
    for expected in [
        "line 2: `postmaster` skipped: no pipe to rt-mailgate: it delivers to `root`",
        "line 3: `root` skipped: no pipe to rt-mailgate: it delivers to `ops@example.com`",
        "line 16: `staff` skipped: no pipe to rt-mailgate: it includes `/etc/mail/staff.list` (not followed",
        "line 17: `procmail` skipped: no pipe to rt-mailgate: it pipes to `/usr/bin/procmail`",
        "line 15: `help` migrated, but also delivers to `archive@example.com`: not migrated",
        "line 15: `help` migrated, but also appends to the file `/var/log/help.mbox`: not migrated",
        // Credentials are never copied: the admin is told where they go instead.
        "line 20: `ops` migrated, but its --url held credentials (https://***@rt-ops.example.com/rt): \
         the route leaves them out; put them in a Secrets Manager secret and add `--secret ID` to the route",
        "warning: the aliases' URL for RtUrl held credentials (https://***@rt.example.com): they are not copied; \
         put them in a Secrets Manager secret and give its ARN as RtSecretArn",
        "7 routes made, 4 aliases or lines skipped",
    ] {
        assert!(report.contains(expected), "`{expected}` missing from:\n{report}");
    }
    // Several RTs are no conflict any more: only function-wide settings can be.
    assert!(!report.contains("differ on RtUrl"), "{report}");
    // What the admin sets is named as the template's parameters, never as the
    // function's variables.
    for variable in ["RT_URL", "RT_SECRET_ID", "RT_TIMEOUT", "RT_VERIFY_TLS"] {
        assert!(
            !routes.contains(variable) && !report.contains(variable),
            "{variable} in:\n{routes}\n{report}"
        );
    }
    // The RTs and the function-wide settings head the routes, for the admin to set once.
    for expected in [
        "# The RTs the aliases post to (credentials are never copied into routes):",
        "#   RtUrl=https://rt.example.com  (5 of 7 aliases; their routes leave --url out)",
        "#     its aliases' URL held credentials: put them in a Secrets Manager secret and give its ARN as RtSecretArn",
        "#   --url https://rt-old.example.com  (1 of 7 aliases, in their routes: legacy)",
        "#   --url https://rt-ops.example.com/rt  (1 of 7 aliases, in their routes: ops)",
        "#     its aliases' URL held credentials: put them in a Secrets Manager secret and add `--secret ID` to these routes",
        "#   --no-verify-ssl: keep TLS checks on; put the RT's certificate (or CA) in its secret as `ca_pem`  (1 of 7 aliases)",
        "#   RtTimeout=30  (1 of 7 aliases)",
    ] {
        assert!(routes.contains(expected), "`{expected}` missing from:\n{routes}");
    }
    for password in [PASSWORD, OPS_PASSWORD] {
        assert!(
            !routes.contains(password) && !report.contains(password),
            "{password} shown"
        );
    }
}

#[test]
fn a_file_with_no_rt_mailgate_alias_fails_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    std::fs::write(&aliases, "postmaster: root\n").unwrap();
    let path = aliases.to_str().unwrap();
    let (code, _, report) = run(&["import-aliases", path, "--domain", "example.com"], &[]);
    assert_eq!(code, 1);
    assert!(
        report.contains("no alias in") && report.contains("`postmaster` skipped"),
        "{report}"
    );

    let (code, _, report) = run(&["import-aliases", "/nonexistent/aliases", "--domain", "x.test"], &[]);
    assert_eq!(code, 2);
    assert!(report.contains("/nonexistent/aliases"), "{report}");
}

#[test]
fn explain_says_where_an_address_goes_from_the_functions_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, _) = import(dir.path());
    let routes_file = dir.path().join("routes.txt");
    std::fs::write(&routes_file, routes).unwrap();
    let env = [
        ("ROUTES_FILE", routes_file.to_str().unwrap()),
        ("RT_URL", "https://rt:s3cret-pw@rt.example.com/"),
    ];

    let (code, out, err) = run(&["explain", "Sales-Comment+12@example.com"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Sales-Comment+12@example.com: routed\n\
         \x20 route:     sales-comment@example.com\n\
         \x20 queue:     Sales Team\n\
         \x20 action:    comment\n\
         \x20 ticket:    12\n\
         \x20 extension: 12\n\
         \x20 header:    X-RT-Mail-Extension: 12\n\
         \x20 posts to:  https://***@rt.example.com/REST/1.0/NoAuth/mail-gateway (RT_URL)\n"
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));

    // A route that names its own RT posts there; the function's secret, when set, is
    // shown for the others.
    let (code, out, err) = run(
        &["explain", "legacy@example.com", "--rt-secret-id", "rt/mailgate"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("  posts to:  https://rt-old.example.com/REST/1.0/NoAuth/mail-gateway (the route's --url)\n"),
        "{out}"
    );
    let (code, out, _) = run(&["explain", "help@example.com", "--rt-secret-id", "rt/mailgate"], &env);
    assert_eq!(code, 0);
    assert!(
        out.ends_with("(RT_URL)\n  secret:    rt/mailgate (RT_SECRET_ID)\n"),
        "{out}"
    );

    let (code, out, _) = run(&["explain", "postmaster@example.com"], &env);
    assert_eq!(code, 1);
    assert!(out.starts_with("postmaster@example.com: not routed"), "{out}");

    // Flags stand in for the variables: here sub-addressing is off, so `+12` is no
    // extension and the whole local part must match.
    let (code, out, _) = run(&["explain", "sales+12@example.com", "--separator", "none"], &env);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = run(
        &[
            "explain",
            "desk@x.test",
            "--routes",
            "desk@x.test: --queue 'Front Desk'",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("  queue:     Front Desk\n") && out.contains("RT_URL is not set"),
        "{out}"
    );

    // A configuration the function would refuse is refused here too, naming it.
    let (code, _, err) = run(&["explain", "a@x.test"], &[("ROUTES", "a@x.test: --queue 'open")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("ROUTES: route 1") && err.contains("quote is not closed"),
        "{err}"
    );
}

#[test]
fn the_imported_table_is_checked_from_its_file_before_it_is_uploaded() {
    // The deploy page's order: import the aliases into routes.txt, then ask `explain
    // --routes-file routes.txt` about an address and about the template's recipients.
    let dir = tempfile::tempdir().unwrap();
    let (routes, _) = import(dir.path());
    let routes_file = dir.path().join("routes.txt");
    std::fs::write(&routes_file, routes).unwrap();
    let file = routes_file.to_str().unwrap();

    let (code, out, err) = run(&["explain", "--routes-file", file, "sales-comment+12@example.com"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("queue:     Sales Team\n") && out.contains("ticket:    12\n"),
        "{out}"
    );
    let (code, out, _) = run(&["explain", "--routes-file", file, "nobody@example.com"], &[]);
    assert_eq!(code, 1, "{out}");

    let (code, out, err) = run(&["explain", "--recipients", "--routes-file", file], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("MailDomains=example.com\nReceiptRecipients=") && out.contains("sales-comment@example.com"),
        "{out}"
    );
}

#[test]
fn the_admin_adds_the_secret_the_import_asked_for_and_explain_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, _) = import(dir.path());
    // What the note asks for: the ops credentials now live in a secret the route names.
    let ops_route = "ops@example.com: --queue Ops --action comment --url https://rt-ops.example.com/rt";
    let routes = routes.replace(ops_route, &format!("{ops_route} --secret rt-ops/mailgate"));
    let routes_file = dir.path().join("routes.txt");
    std::fs::write(&routes_file, routes).unwrap();
    let env = [
        ("ROUTES_FILE", routes_file.to_str().unwrap()),
        ("RT_URL", "https://rt.example.com"),
    ];

    let (code, out, err) = run(&["explain", "OPS+9@example.com"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "OPS+9@example.com: routed\n\
         \x20 route:     ops@example.com\n\
         \x20 queue:     Ops\n\
         \x20 action:    comment\n\
         \x20 ticket:    (not sent: RT goes by the subject's ticket tag, or makes a new ticket)\n\
         \x20 extension: 9\n\
         \x20 header:    X-RT-Mail-Extension: 9\n\
         \x20 posts to:  https://rt-ops.example.com/rt/REST/1.0/NoAuth/mail-gateway (the route's --url)\n\
         \x20 secret:    rt-ops/mailgate (the route's --secret)\n"
    );

    // Pasting the credentials back into the URL is refused, and the password not shown.
    let routes = format!("ops@example.com: --queue Ops --url https://mailgate:{OPS_PASSWORD}@rt-ops.example.com/rt");
    let (code, out, err) = run(&["explain", "ops@example.com"], &[("ROUTES", &routes)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("ROUTES: route 1") && err.contains("--url holds credentials") && err.contains("--secret ID"),
        "{err}"
    );
    assert!(!err.contains(OPS_PASSWORD) && !out.contains(OPS_PASSWORD), "{err}");
}

#[test]
fn tls_turned_off_in_one_alias_is_advice_for_that_rt_not_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, report) = import(dir.path());
    // sales-comment's --no-verify-ssl: the advice is the RT's own trust (ca_pem in its
    // secret), never RtVerifyTls=false for every route.
    assert!(
        report.contains("warning: sales-comment turned TLS checks off (--no-verify-ssl)")
            && report.contains("in that RT's secret as `ca_pem`"),
        "{report}"
    );
    assert!(!routes.contains("RT_VERIFY_TLS=false"), "{routes}");
    // The lists the template wants, from the same routes.
    assert!(
        report.contains("for the template: MailDomains=example.com\n"),
        "{report}"
    );
    assert!(
        report.contains("ReceiptRecipients=help@example.com,legacy@example.com,night@example.com,"),
        "{report}"
    );
}

/// An aliases file from an RT host whose MTA posted to RT on the same machine, and to
/// other RTs over plain http.
const LOCAL_ALIASES: &str = "\
general: \"|/usr/bin/rt-mailgate --queue General --action correspond --url http://localhost/\"
general-comment: \"|/usr/bin/rt-mailgate --queue General --action comment --url http://localhost/\"
lab: \"|/usr/bin/rt-mailgate --queue Lab --url http://rt/\"
ops: \"|/usr/bin/rt-mailgate --queue Ops --url http://10.0.0.5/rt\"
link: \"|/usr/bin/rt-mailgate --queue Link --url http://169.254.1.1/\"
second: \"|/usr/bin/rt-mailgate --queue Second --url https://127.0.0.1:8443/rt2\"
web: \"|/usr/bin/rt-mailgate --queue Web --url https://rt.example.com/\"
";

#[test]
fn what_the_function_would_refuse_the_import_refuses_naming_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    std::fs::write(&aliases, LOCAL_ALIASES).unwrap();
    let path = aliases.to_str().unwrap();
    let (code, routes, report) = run(&["import-aliases", path, "--domain", "example.com"], &[]);
    assert_eq!(code, 0, "{report}");
    for expected in [
        // The shared URL is this machine: never offered as RtUrl.
        "error: RtUrl can't be the aliases' http://localhost: the function would refuse it at cold start: \
         RT URL http://localhost/ is this machine (localhost/loopback): in Lambda that is the function itself",
        // A route's own URL that the function would refuse: the alias is skipped.
        "line 3: `lab` skipped: the Lambda would refuse its route's --url http://rt: RT URL http://rt/ is plain \
         http:// to another machine",
        "line 4: `ops` skipped: the Lambda would refuse its route's --url http://10.0.0.5/rt",
        "line 5: `link` skipped: the Lambda would refuse its route's --url http://169.254.1.1",
        "line 6: `second` skipped: the Lambda would refuse its route's --url https://127.0.0.1:8443/rt2: RT URL \
         https://127.0.0.1:8443/rt2 is this machine",
        "with AllowPlainHttp=true in the stack, import with --allow-plain-http",
        "write its route by hand with the URL Lambda reaches that RT at",
    ] {
        assert!(report.contains(expected), "`{expected}` missing from:\n{report}");
    }
    assert!(
        routes.contains(
            "#   RtUrl: not http://localhost, the URL of 2 of 3 aliases (their routes leave --url out): \
             the function would refuse it\n"
        ) && !routes.contains("RtUrl=")
            && !routes.contains("--url http:"),
        "{routes}"
    );
    // What is printed, explain (as the deployed function) takes.
    let routes_file = dir.path().join("routes.txt");
    std::fs::write(&routes_file, &routes).unwrap();
    let file = routes_file.to_str().unwrap();
    let (code, out, err) = run(&["explain", "web@example.com", "--routes-file", file], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("https://rt.example.com/REST/1.0/NoAuth/mail-gateway (the route's --url)"),
        "{out}"
    );

    // The stack's one exception for plain http (AllowPlainHttp=true) is the import's
    // too; loopback stays refused, and what Lambda can't reach is still warned about.
    let (code, routes, report) = run(
        &["import-aliases", path, "--domain", "example.com", "--allow-plain-http"],
        &[],
    );
    assert_eq!(code, 0, "{report}");
    for expected in [
        "warning: --url http://rt (lab) is a single-label host name",
        "warning: --url http://169.254.1.1 (link) is a link-local address",
        "warning: --url http://10.0.0.5/rt (ops) is a private address: reachable only with the function \
         in your VPC (SubnetIds, SecurityGroupIds",
        "error: RtUrl can't be the aliases' http://localhost",
        "line 6: `second` skipped: the Lambda would refuse its route's --url https://127.0.0.1:8443/rt2",
    ] {
        assert!(report.contains(expected), "`{expected}` missing from:\n{report}");
    }
    assert!(!report.contains("rt.example.com ("), "a public name is fine: {report}");
    assert!(
        routes.contains("ops@example.com: --queue Ops --url http://10.0.0.5/rt\n"),
        "{routes}"
    );
    // The warnings also head the routes file, under the RT they are about.
    assert!(
        routes.contains("#   --url http://rt  (1 of 6 aliases, in their routes: lab)\n#     WARNING: a single-label"),
        "{routes}"
    );
}

#[test]
fn explain_refuses_a_url_the_function_would_refuse() {
    let plain = "ops@example.com: --queue Ops --url http://rt-ops.example.com/rt";
    let (code, out, err) = run(&["explain", "ops@example.com", "--routes", plain], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("a route's --url is refused, as RT_URL would be")
            && err.contains("http://rt-ops.example.com/rt is plain http://")
            && err.contains("RT_ALLOW_HTTP=true (the template's AllowPlainHttp)"),
        "{err}"
    );
    // The same exception as the function's: RT_ALLOW_HTTP, or the flag.
    for (args, env) in [
        (&["--allow-plain-http"][..], &[][..]),
        (&[][..], &[("RT_ALLOW_HTTP", "true")][..]),
    ] {
        let mut all = vec!["explain", "ops@example.com", "--routes", plain];
        all.extend_from_slice(args);
        let (code, out, err) = run(&all, env);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("http://rt-ops.example.com/rt/REST/1.0/NoAuth/mail-gateway"),
            "{out}"
        );
    }
    // Loopback is the function itself in Lambda: refused, whatever the scheme, and
    // whether the route or RT_URL names it; explain --recipients refuses the table too.
    let local = "ops@example.com: --queue Ops --url https://localhost:8443";
    for args in [
        &["explain", "ops@example.com", "--routes", local][..],
        &["explain", "--recipients", "--routes", local][..],
    ] {
        let (code, _, err) = run(args, &[("RT_ALLOW_HTTP", "true")]);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains("https://localhost:8443/ is this machine"), "{err}");
    }
    let (code, _, err) = run(
        &["explain", "ops@example.com", "--routes", "ops@example.com: --queue Ops"],
        &[("RT_URL", "http://127.0.0.1:8089")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("RT_URL: RT URL http://127.0.0.1:8089/ is this machine"),
        "{err}"
    );
}

#[test]
fn explain_lists_the_recipients_and_knows_the_rules_domains() {
    let routes = "bugs@example.com: --queue bugs; bugs-comment@example.com: --queue bugs --action comment; \
                  *@helpdesk.example.com: --action correspond; ops@example.org: --queue Ops";
    let (code, out, err) = run(&["explain", "--recipients", "--routes", routes], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "MailDomains=example.com,example.org,helpdesk.example.com\n\
         ReceiptRecipients=bugs-comment@example.com,bugs@example.com,helpdesk.example.com,ops@example.org\n"
    );
    // The function's MAIL_DOMAINS (the template's MailDomains): an address of a domain
    // the rule does not take is "not received", whatever the routes say.
    let env = [("ROUTES", routes), ("MAIL_DOMAINS", "example.com,helpdesk.example.com")];
    let (code, out, _) = run(&["explain", "ops@example.org"], &env);
    assert_eq!(code, 1);
    assert!(
        out.contains("ops@example.org: not received") && out.contains("add example.org to MailDomains"),
        "{out}"
    );
    let (code, out, _) = run(&["explain", "anyone@helpdesk.example.com"], &env);
    assert_eq!(code, 0, "{out}");
    // With a separator SES's rule can't match, the explicit list would refuse sub-addresses.
    let (code, out, _) = run(
        &["explain", "--recipients", "--routes", routes, "--separator", "-"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("SES matches an address with a +label only"), "{out}");
}

#[test]
fn explain_recipients_holds_each_list_to_what_a_parameter_takes() {
    // 100 addresses: within SES's 100 recipients a rule, but 4,299 bytes as one value,
    // past CloudFormation's 4,096 for a parameter.
    let table: Vec<String> = (0..100)
        .map(|n| format!("support-desk-{n:03}@helpdesk.mail.example.com: --queue General"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.txt");
    std::fs::write(&file, table.join("\n")).unwrap();
    let (code, out, err) = run(
        &["explain", "--recipients", "--routes-file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let recipients = out
        .lines()
        .find_map(|l| l.strip_prefix("ReceiptRecipients="))
        .expect("the list is printed");
    assert_eq!(recipients.split(',').count(), 100);
    assert!(recipients.len() > 4096, "{}", recipients.len());
    assert!(
        out.contains(&format!(
            "# ReceiptRecipients is {} bytes; a CloudFormation parameter value takes at most 4096: \
             leave ReceiptRecipients empty",
            recipients.len()
        )) && out.contains("or route whole domains with *@domain"),
        "{out}"
    );
    // The table itself is far past what Routes takes: put it in the bucket.
    assert!(
        out.contains(
            "as one Routes value; Routes takes at most 1000: put the table in the bucket instead \
             (aws s3 cp routes.txt s3://BUCKET/config/routes.txt) and set RoutesObjectKey=config/routes.txt"
        ),
        "{out}"
    );
    // A small table fits both, and says nothing more.
    let (code, out, _) = run(
        &["explain", "--recipients", "--routes", "bugs@example.com: --queue bugs"],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "MailDomains=example.com\nReceiptRecipients=bugs@example.com\n");
}
