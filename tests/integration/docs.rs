//! The documentation a newcomer walks (`README.md` and `docs/`): every relative link and
//! anchor resolves, and every block the tour marks as runnable is one that `make
//! dev-check` pastes or runs (and every block it pastes is marked where it looks).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README.md and every page of docs/, by their path from the repository's root.
fn pages() -> Vec<(PathBuf, String)> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| PathBuf::from("docs").join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(&p)).expect("a page");
            (p, text)
        })
        .collect()
}

/// The lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// A heading's anchor as GitHub makes it: lower case, spaces to hyphens, and every
/// character but letters, digits, `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a page's headings make (a repeated heading gets `-1`, `-2`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes + 1..]);
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

/// The targets of a page's Markdown links (`[text](target)`), outside code.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_and_anchor_in_the_readme_and_docs_resolves() {
    let pages = pages();
    let anchors_of: HashMap<PathBuf, BTreeSet<String>> =
        pages.iter().map(|(p, text)| (p.clone(), anchors(text))).collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (page, text) in &pages {
        for target in links(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                let joined = page.parent().unwrap_or(Path::new("")).join(path);
                // Normalise `docs/../README.md` to `README.md`.
                let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
                for c in joined.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::Normal(p) => parts.push(p),
                        _ => {}
                    }
                }
                parts.iter().collect()
            };
            if !Path::new(ROOT).join(&file).exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty() {
                match anchors_of.get(&file) {
                    Some(known) if known.contains(anchor) => {}
                    Some(_) => broken.push(format!("{}: {target} (no such heading)", page.display())),
                    None => broken.push(format!(
                        "{}: {target} (an anchor into a page not checked)",
                        page.display()
                    )),
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} links found: the parser is broken");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_headings_make_the_anchors_github_makes() {
    assert_eq!(slug("`make dev`"), "make-dev");
    assert_eq!(slug("2. AWS"), "2-aws");
    assert_eq!(
        slug("Google's quota and the job's capacity"),
        "googles-quota-and-the-jobs-capacity"
    );
    let text = "# Events\n\n```sh\n# not a heading\n```\n## Events\n### `GrantExpiring` — once\n";
    let made: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(made, ["events", "events-1", "grantexpiring--once"]);
}

/// Every `<!-- dev-check: ... -->` marker in a page is one `make dev-check` (or the Rust
/// client's build script) reads, and each marker or heading it reads is in the page it
/// reads it from: a runnable block that nothing runs, or a check that finds nothing,
/// fails here.
#[test]
fn every_runnable_block_the_docs_mark_is_one_dev_check_runs() {
    let check_dev = std::fs::read_to_string(Path::new(ROOT).join("infra/local/check-dev")).expect("check-dev");
    let build_rs = std::fs::read_to_string(Path::new(ROOT).join("infra/local/readme-rust/build.rs")).expect("build.rs");
    let markers_in = |text: &str| -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("<!-- dev-check:") {
            let after = &rest[at..];
            let end = after.find("-->").expect("a closed marker") + 3;
            found.insert(after[..end].to_owned());
            rest = &after[end..];
        }
        found
    };
    let mut in_pages = BTreeSet::new();
    let pages = pages();
    for (_, text) in &pages {
        in_pages.extend(markers_in(text));
    }
    let mut read = markers_in(&check_dev);
    read.extend(markers_in(&build_rs));
    assert_eq!(in_pages, read, "markers in the docs vs. markers make dev-check reads");
    assert!(read.len() >= 5, "{read:?}");

    // Each `readme_block("<marker>", "<fence>"[, "<page>"])` call names text its page has.
    let page_text: HashMap<String, &str> = pages
        .iter()
        .map(|(p, text)| (p.display().to_string(), text.as_str()))
        .collect();
    let mut calls = 0;
    for call in check_dev.split("readme_block(").skip(2) {
        let args = &call[..call.find(")\n").unwrap_or(call.len())];
        let literals: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
        let Some(first) = args.trim_start().strip_prefix('"').map(|_| literals[0]) else {
            continue; // a marker held in a variable: checked as a marker above
        };
        let page = literals.get(2).copied().unwrap_or("README.md");
        let text = page_text
            .get(page)
            .unwrap_or_else(|| panic!("check-dev reads {page}, not a page"));
        assert!(text.contains(first), "{page} has no `{first}` for make dev-check");
        calls += 1;
    }
    assert!(calls >= 4, "{calls} readme_block calls with a literal marker");
}
