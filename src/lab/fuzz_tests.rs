//! Property tests of the two readers that take text from lab masters and
//! participant lists: for any input they never panic, and every error they
//! report names a line of the input.

use super::participants::{CsvError, Participants};
use super::LabError;
use proptest::prelude::*;

const VALID_LAB: &str = r#"id: demo
title: Demo lab
reference: {sql: ref.sql}
deadline: 2026-12-01T18:00:00Z
options:
  pseudonymize: true
submissions:
  formats: [plain, custom]
  max_size: 10MB
  timeout: 5m
tasks:
  - id: one
    title: One
    points: 2
    checks:
      - table: shop.items
        compare: [columns, rows]
  - id: two
    title: Two
    checks:
      - view: shop.v
        ordered: true
      - sql: SELECT true
"#;

const VALID_CSV: &str = "username,name,email,group\nalice,Alice A,alice@example.org,g1\n\
bob,\"Bob, B\",bob@example.org,g1\ncarol,Carol,carol@example.org,\n";

/// A valid text with random edits: tokens inserted, ranges deleted.
fn mutated(base: &'static str, tokens: Vec<&'static str>) -> impl Strategy<Value = String> {
    let edit = (
        0..base.len() + 1,
        prop::sample::select(tokens),
        0usize..8,
        any::<bool>(),
    );
    prop::collection::vec(edit, 0..8).prop_map(move |edits| {
        let mut text = base.to_string();
        for (at, token, cut, insert) in edits {
            let at = at.min(text.len());
            let at = (0..=at)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            if insert {
                text.insert_str(at, token);
            } else {
                let end = (at + cut..=text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                text.replace_range(at..end, "");
            }
        }
        text
    })
}

fn lab_errors(text: &str) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir().join(format!("pglab-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    std::fs::write(dir.join("ref.sql"), "SELECT 1;").ok();
    let lines = text.lines().count().max(1);
    match super::parse("lab.yaml", text, &dir) {
        Ok(_) => {}
        Err(LabError::Invalid(errors)) => {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(
                    e.line >= 1 && e.line <= lines + 1,
                    "{} ({} lines)",
                    e,
                    lines
                );
                let prefix = format!("lab.yaml:{}:", e.line);
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
        }
        Err(e) => prop_assert!(false, "unexpected error kind: {}", e),
    }
    Ok(())
}

fn csv_errors(text: &str) -> Result<(), TestCaseError> {
    // A lone CR ends a line too (as old spreadsheets write them).
    let lines = super::unix_lines(text).lines().count().max(1);
    match Participants::parse("p.csv", text) {
        Ok(_) => {}
        Err(CsvError::Invalid(errors)) => {
            prop_assert!(!errors.is_empty());
            for e in errors {
                let line: usize = e
                    .strip_prefix("p.csv:")
                    .and_then(|r| r.split(':').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                prop_assert!(line >= 1 && line <= lines + 1, "{:?} ({} lines)", e, lines);
            }
        }
        Err(e) => prop_assert!(false, "unexpected error kind: {}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn lab_reader_never_panics_and_names_lines(text in mutated(VALID_LAB, vec![
        ":", "- ", "{", "}", "[", "]", "'", "\"", "\n", "  ", "\t", "tasks:", "checks:", "null",
        "~", "&a ", "*a", "!!int ", "# c", "id: x", "? ", "|\n", ">\n", "\u{feff}", "é", "---\n",
        "- table: a.b\n", "points: -1", "compare: [rows]", "1e999", "\r\n",
    ])) {
        lab_errors(&text)?;
    }

    #[test]
    fn lab_reader_takes_any_text(text in any::<String>()) {
        lab_errors(&text)?;
    }

    #[test]
    fn csv_reader_never_panics_and_names_lines(text in mutated(VALID_CSV, vec![
        ",", "\"", "\n", "\r\n", "\r", ";", ")(uid=*)", "\u{feff}", "é", "  ", "username",
        "\"\"", "a@b", ",,,,", "pglab_x", "\t",
    ])) {
        csv_errors(&text)?;
    }

    #[test]
    fn csv_reader_takes_any_text(text in any::<String>()) {
        csv_errors(&text)?;
    }
}

#[test]
fn the_bases_of_the_mutations_are_valid() {
    let dir = std::env::temp_dir().join(format!("pglab-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("ref.sql"), "SELECT 1;").expect("write");
    if let Err(e) = super::parse("lab.yaml", VALID_LAB, &dir) {
        panic!("{e}");
    }
    assert_eq!(
        Participants::parse("p.csv", VALID_CSV)
            .expect("csv")
            .0
            .len(),
        3
    );
}
