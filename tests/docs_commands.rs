//! The admin's pages (`README.md`, `docs/*.md`) show only commands that are run, or say
//! why they can't be run here:
//!
//! - every command in a fenced ```` ```sh ```` block stands under a marker comment of its
//!   block: `# runs in: FILE` (a test, a script or `scripts/demo` that runs it: the file
//!   must exist and hold the command's program and its first argument), or
//!   `# needs AWS: REASON` / `# needs your hosts: REASON` (a real AWS account, or the
//!   admin's own RT or MTA host; the reason is printed on the page itself). A marker holds
//!   for the commands after it, up to the next marker of the block;
//! - every link between the pages leads to a page that exists and a heading it has;
//! - the admin's pages (all but `docs/design.md`) tell no test narrative: no `tests/`
//!   path outside a marker, no issue numbers.
//!
//! A new command on a page fails here until it is marked: run it somewhere, or say why not.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Markers whose commands are not run here: the reason must be written out.
const NOT_RUN_HERE: [&str; 2] = ["# needs AWS:", "# needs your hosts:"];
const RUNS_IN: &str = "# runs in:";

/// The pages: `README.md` and every `docs/*.md`, as (path relative to the root, text).
fn pages() -> Vec<(String, String)> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| Path::new("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(Path::new(ROOT).join(&p)).unwrap();
            (p.to_string_lossy().into_owned(), text)
        })
        .collect()
}

/// One command of a page, with the marker it stands under.
#[derive(Debug)]
struct Command {
    page: String,
    line: usize,
    text: String,
    marker: Option<String>,
}

/// Every command of the page's ```` ```sh ```` blocks: continuation lines joined, trailing
/// comments and here-document bodies left out.
fn commands(page: &str, text: &str) -> Vec<Command> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut marker: Option<String> = None;
        let mut heredoc_end: Option<String> = None;
        let mut pending: Option<(usize, String)> = None;
        for (n, line) in lines.by_ref() {
            let line = line.trim();
            if line == "```" {
                break;
            }
            if let Some(end) = &heredoc_end {
                if line == end {
                    heredoc_end = None;
                }
                continue;
            }
            if pending.is_none() && line.starts_with('#') {
                if line.starts_with(RUNS_IN) || NOT_RUN_HERE.iter().any(|m| line.starts_with(m)) {
                    marker = Some(line.to_string());
                }
                continue;
            }
            let code = strip_comment(line);
            let (start, mut joined) = pending.take().unwrap_or((n + 1, String::new()));
            if let Some(continued) = code.strip_suffix('\\') {
                joined.push_str(continued);
                joined.push(' ');
                pending = Some((start, joined));
                continue;
            }
            joined.push_str(code);
            let joined = joined.trim().to_string();
            if joined.is_empty() {
                continue;
            }
            heredoc_end = heredoc_delimiter(&joined);
            found.push(Command {
                page: page.to_string(),
                line: start,
                text: joined,
                marker: marker.clone(),
            });
        }
    }
    found
}

/// The line without a trailing `# comment` (a `#` after a blank, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        previous = c;
    }
    line
}

/// The word that ends a here-document this command starts (`<<'JSON'`, `<<EOF`).
fn heredoc_delimiter(command: &str) -> Option<String> {
    let rest = command.split_once("<<")?.1.trim_start_matches('-');
    let word: String = rest
        .trim_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The words of a shell command line, quotes removed, split into its simple commands
/// (at `&&`, `||`, `;`, `|` and `&` outside quotes).
fn simple_commands(command: &str) -> Vec<Vec<String>> {
    let mut all = vec![Vec::new()];
    let mut word = String::new();
    let (mut single, mut double, mut quoted) = (false, false, false);
    let mut chars = command.chars().peekable();
    let end_word = |word: &mut String, quoted: &mut bool, all: &mut Vec<Vec<String>>| {
        if !word.is_empty() || *quoted {
            all.last_mut().unwrap().push(std::mem::take(word));
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => {
                single = !single;
                quoted = true;
            }
            '"' if !single => {
                double = !double;
                quoted = true;
            }
            '$' if !single && chars.peek() == Some(&'(') => {
                // A command substitution is one word, blanks and all.
                let mut depth = 0;
                word.push(c);
                for c in chars.by_ref() {
                    word.push(c);
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    if depth == 0 {
                        break;
                    }
                }
            }
            c if single || double => word.push(c),
            c if c.is_whitespace() => end_word(&mut word, &mut quoted, &mut all),
            '&' | '|' | ';' => {
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                end_word(&mut word, &mut quoted, &mut all);
                all.push(Vec::new());
            }
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut quoted, &mut all);
    all.into_iter().filter(|words| !words.is_empty()).collect()
}

/// What a file that runs this simple command must hold: its program (the file name of
/// the first word), its first argument and every `--option` it names; for a line of
/// assignments only (`export X=$(...)`), the names assigned.
fn needles(words: &[String]) -> Vec<String> {
    let mut rest: Vec<&str> = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
        } else if matches!(word.as_str(), "<" | ">" | ">>" | "2>") {
            skip_next = true;
        } else {
            rest.push(word);
        }
    }
    if rest.first() == Some(&"export") {
        rest.remove(0);
    }
    let mut assigned = Vec::new();
    while let Some((name, _)) = rest.first().and_then(|w| w.split_once('=')) {
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            || name.is_empty()
        {
            break;
        }
        assigned.push(name.to_string());
        rest.remove(0);
    }
    let Some(program) = rest.first() else {
        return assigned;
    };
    let mut found = vec![program.rsplit('/').next().unwrap().to_string()];
    if let Some(first) = rest.get(1).filter(|w| !(w.starts_with('<') && w.ends_with('>'))) {
        let first = match first.split_once('=') {
            Some((option, _)) if option.starts_with('-') => option,
            _ => first,
        };
        found.push(first.to_string());
    }
    for word in &rest[1..] {
        let option = word.split_once('=').map_or(*word, |(option, _)| option);
        if option.starts_with("--") && option.len() > 2 && !found.iter().any(|f| f == option) {
            found.push(option.to_string());
        }
    }
    found
}

/// What is wrong with this command's marker, if anything.
fn check(command: &Command) -> Option<String> {
    let place = format!("{}:{}: `{}`", command.page, command.line, command.text);
    let Some(marker) = &command.marker else {
        return Some(format!(
            "{place}: no marker: put `{RUNS_IN} FILE` (a test or script that runs it) or \
             `# needs AWS: REASON` / `# needs your hosts: REASON` above it in its block"
        ));
    };
    if let Some(reason) = NOT_RUN_HERE.iter().find_map(|m| marker.strip_prefix(m)) {
        return (reason.split_whitespace().count() < 3)
            .then(|| format!("{place}: `{marker}` must say why it can't run here, in a few words"));
    }
    let files: Vec<&str> = marker[RUNS_IN.len()..]
        .split([',', ' '])
        .filter(|f| !f.is_empty())
        .collect();
    if files.is_empty() {
        return Some(format!("{place}: `{marker}` names no file"));
    }
    let mut texts = Vec::new();
    for file in &files {
        match fs::read_to_string(Path::new(ROOT).join(file)) {
            Ok(text) => texts.push(text),
            Err(e) => return Some(format!("{place}: `{marker}`: {file}: {e}")),
        }
    }
    for words in simple_commands(&command.text) {
        let needed = needles(&words);
        let missing: Vec<&String> = needed
            .iter()
            .filter(|n| !texts.iter().any(|t| t.contains(n.as_str())))
            .collect();
        if !missing.is_empty() {
            return Some(format!("{place}: {files:?} never name {missing:?}"));
        }
    }
    None
}

#[test]
fn every_command_on_a_page_is_run_or_says_why_not() {
    let pages = pages();
    assert!(
        pages.len() >= 5,
        "README.md and the docs/ pages: {:?}",
        pages.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let all: Vec<Command> = pages.iter().flat_map(|(page, text)| commands(page, text)).collect();
    assert!(all.len() >= 40, "the pages' commands were found: {all:#?}");
    for (page, _) in pages.iter().filter(|(p, _)| p != "docs/design.md") {
        assert!(all.iter().any(|c| &c.page == page), "{page} shows a command");
    }
    let problems: Vec<String> = all.iter().filter_map(check).collect();
    assert!(
        problems.is_empty(),
        "commands neither run nor justified:\n{}",
        problems.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, blanks as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside fenced blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_link_between_the_pages_leads_to_a_heading() {
    let pages = pages();
    let mut problems = Vec::new();
    let mut links = 0;
    for (page, text) in &pages {
        let dir = Path::new(page).parent().unwrap();
        for (_, rest) in text.match_indices("](").map(|(i, _)| text.split_at(i + 2)) {
            let target = &rest[..rest.find(')').unwrap_or(0)];
            if target.contains("://") || target.is_empty() {
                continue;
            }
            links += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                PathBuf::from(page)
            } else {
                dir.join(file)
            };
            let Ok(linked) = fs::read_to_string(Path::new(ROOT).join(&path)) else {
                problems.push(format!("{page}: link to {target}: no file {}", path.display()));
                continue;
            };
            if !fragment.is_empty() && !anchors(&linked).iter().any(|a| a == fragment) {
                problems.push(format!(
                    "{page}: link to {target}: {} has no such heading",
                    path.display()
                ));
            }
        }
    }
    assert!(links >= 30, "the pages link to each other ({links} links found)");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_admins_pages_tell_no_test_narrative() {
    let mut problems = Vec::new();
    for (page, text) in pages().iter().filter(|(p, _)| p != "docs/design.md") {
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with(RUNS_IN) {
                continue;
            }
            let lower = line.to_lowercase();
            let issue = lower
                .match_indices("issue ")
                .any(|(i, _)| lower[i + 6..].starts_with(|c: char| c.is_ascii_digit()));
            if line.contains("tests/") || issue {
                problems.push(format!("{page}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "test narrative belongs in docs/design.md at most:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_marker_reader_reads_what_the_pages_write() {
    let page = "```sh\n# runs in: scripts/demo\nA=1 target/release/rt-mailgate --queue bugs < mail  # a comment\n\
                # needs AWS: a real account is needed\ncat > s.json <<'JSON'\n{\"a\": \"# not a comment\"}\nJSON\n\
                aws s3 cp x \\\n  s3://b/x\n```\n```\nnot a command\n```\n";
    let found = commands("p", page);
    let texts: Vec<&str> = found.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "A=1 target/release/rt-mailgate --queue bugs < mail",
            "cat > s.json <<'JSON'",
            "aws s3 cp x  s3://b/x"
        ]
    );
    assert_eq!(found[0].marker.as_deref(), Some("# runs in: scripts/demo"));
    assert_eq!(
        found[2].marker.as_deref(),
        Some("# needs AWS: a real account is needed")
    );
    assert_eq!(found[2].line, 8);
    let words = simple_commands(&found[0].text);
    assert_eq!(needles(&words[0]), ["rt-mailgate", "--queue"]);
    assert_eq!(
        needles(&simple_commands("export DOCKER_HOST=$(x host)")[0]),
        ["DOCKER_HOST"]
    );
    assert_eq!(
        simple_commands("nginx -t && systemctl reload 'nginx'")
            .iter()
            .map(|w| needles(w))
            .collect::<Vec<_>>(),
        [vec!["nginx", "-t"], vec!["systemctl", "reload"]]
    );
    assert_eq!(
        needles(&simple_commands("rt-mailgate-trace --function-name <fn>")[0]),
        ["rt-mailgate-trace", "--function-name"]
    );
    assert_eq!(
        needles(&simple_commands("sam deploy --guided=yes")[0]),
        ["sam", "deploy", "--guided"]
    );
    assert_eq!(
        needles(&simple_commands("rt-mailgate-replay --function-name <fn> --dlq-url <url>")[0]),
        ["rt-mailgate-replay", "--function-name", "--dlq-url"]
    );
    assert!(check(&Command {
        page: "p".into(),
        line: 1,
        text: "ls".into(),
        marker: None
    })
    .is_some());
    let unreasoned = Command {
        page: "p".into(),
        line: 1,
        text: "ls".into(),
        marker: Some("# needs AWS: yes".into()),
    };
    assert!(check(&unreasoned).is_some(), "a marker without a reason");
    let wrong_file = Command {
        page: "p".into(),
        line: 1,
        text: "rt-mailgate-trace --sender x".into(),
        marker: Some("# runs in: scripts/demo".into()),
    };
    assert!(check(&wrong_file).is_some(), "scripts/demo never runs the trace");
}
