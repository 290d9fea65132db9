//! Migrating an `/etc/aliases` file: `scripts/aliases-to-routes` turns each rt-mailgate
//! line into a Lambda route, and the function's own parser accepts the result and
//! routes exactly as the aliases did.

use rt_mailgate::core::route::RoutingTable;

#[test]
fn an_aliases_file_becomes_a_routing_table_the_function_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    std::fs::write(
        &aliases,
        "postmaster: root\n\
         bugs: \"|/usr/bin/rt-mailgate --queue bugs --action correspond --url https://rt.example.com/\"\n\
         bugs-comment: \"|/usr/bin/rt-mailgate --queue bugs --action comment --extension=ticket --url=https://rt.example.com/ --no-verify-ssl\"\n\
         # a folded line, as aliases(5) allows\n\
         help: \"|/opt/rt5/bin/rt-mailgate --queue Help --timeout 30\n\t--url https://rt.example.com --debug\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/aliases-to-routes"))
        .arg(&aliases)
        .arg("example.com")
        .output()
        .expect("python3 runs the script");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let routes = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        routes,
        "bugs@example.com: --queue bugs --action correspond\n\
         bugs-comment@example.com: --queue bugs --action comment --extension=ticket\n\
         help@example.com: --queue Help\n"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("`postmaster` does not pipe to rt-mailgate"));

    let table = RoutingTable::parse(&routes, Some('+')).expect("the function accepts the translation");
    let comment = table.route("bugs-comment+12@example.com").unwrap();
    assert_eq!(
        comment.request.form_fields_text(),
        [
            ("queue", "bugs".into()),
            ("action", "comment".into()),
            ("ticket", "12".into())
        ]
    );
    assert_eq!(
        table.route("help@example.com").unwrap().request.form_fields_text(),
        [("queue", "Help".to_string())]
    );
    assert!(table.route("postmaster@example.com").is_none());
}
