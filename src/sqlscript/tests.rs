use super::*;
use proptest::prelude::*;

fn statements(text: &str) -> Vec<String> {
    split(text)
        .into_iter()
        .filter(|p| p.kind == Kind::Statement)
        .map(|p| p.code().to_string())
        .collect()
}

/// The first refusal of a text restored into database `db`: line, message.
fn refused(text: &str) -> Option<(usize, String)> {
    split(text)
        .iter()
        .find_map(|p| refusal(p, "db").map(|m| (p.line, m)))
}

#[test]
fn pg_dump_output_passes_and_splits() {
    let dump = "\\restrict abc123\n--\n-- PostgreSQL database dump\n--\nSET standard_conforming_strings = on;\n\
        CREATE TABLE t (a text);\nCOPY public.t (a) FROM stdin;\nback\\\\slash \\! not a command\n\\N\n\\.\n\
        CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$ SELECT '\\!' $_$;\n\
        COMMENT ON TABLE t IS 'it''s \\ fine';\n/* nested /* \\! */ still comment */ SELECT 1;\n\
        SELECT E'\\'' AS q; -- \\! in a comment\n\\unrestrict abc123\n";
    assert_eq!(refused(dump), None);
    let pieces = split(dump);
    let copy: Vec<&Piece> = pieces.iter().filter(|p| p.copy_in).collect();
    assert_eq!(copy.len(), 1);
    assert_eq!(copy[0].line, 7);
    let data: Vec<&str> = pieces
        .iter()
        .filter(|p| p.kind == Kind::CopyData)
        .map(|p| p.text.as_str())
        .collect();
    assert_eq!(data, vec!["back\\\\slash \\! not a command\n\\N\n"]);
    assert_eq!(
        statements(dump),
        vec![
            "SET standard_conforming_strings = on;",
            "CREATE TABLE t (a text);",
            "COPY public.t (a) FROM stdin;",
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$ SELECT '\\!' $_$;",
            "COMMENT ON TABLE t IS 'it''s \\ fine';",
            "/* nested /* \\! */ still comment */ SELECT 1;",
            "SELECT E'\\'' AS q;",
        ]
    );
}

#[test]
fn owner_and_privilege_statements_are_marked() {
    let text = "ALTER TABLE cd.bookings OWNER TO pglab_admin;\n\
        ALTER TABLE cd.bookings ADD PRIMARY KEY (bookid);\n\
        GRANT SELECT ON cd.members TO PUBLIC;\n\
        CREATE TABLE x (a int); REVOKE ALL ON x FROM y;\n\
        COMMENT ON TABLE x IS 'GRANT';\n\
        ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x;\n\
        ALTER TABLE \"owner\" RENAME TO y;\n";
    let marked: Vec<String> = split(text)
        .into_iter()
        .filter(|p| p.owner_or_privileges)
        .map(|p| p.code().to_string())
        .collect();
    assert_eq!(
        marked,
        vec![
            "ALTER TABLE cd.bookings OWNER TO pglab_admin;",
            "GRANT SELECT ON cd.members TO PUBLIC;",
            "REVOKE ALL ON x FROM y;",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x;",
        ]
    );
}

const META: [&str; 8] = [
    "\\! id >&2",
    "\\o /tmp/x",
    "\\copy t to '/tmp/x'",
    "\\i /etc/passwd",
    "\\setenv PAGER id",
    "\\gexec",
    "\\lo_export 1 /tmp/x",
    "\\set x 1",
];

#[test]
fn every_psql_command_is_refused_in_every_position() {
    for meta in META {
        let word = meta.split_whitespace().next().unwrap();
        let cases = [
            (format!("{meta}\nSELECT 1;\n"), 1),
            (format!("SELECT 1;\n{meta}\n"), 2),
            (format!("SELECT 1; {meta}\n"), 1),
            (format!("SELECT 1 {meta}\n"), 1),
            (format!("SELECT\n  1 {meta}\n;"), 2),
            (format!("-- comment\r{meta}\n"), 1),
            (format!("-- comment\r\n{meta}\n"), 2),
            (format!("SELECT a$b$ {meta} $b$;\n"), 1),
            (format!("SELECT 1 AS x$ {meta}\n"), 1),
            (format!("SELECT $1 {meta}\n"), 1),
            (format!("SELECT 'x\\' {meta} -- '\n"), 1),
            (format!("SELECT \"a\"\"b\" {meta}\n"), 1),
            (format!("/* a /* b */ c */ {meta}\n"), 1),
            (format!("COPY t FROM stdin;\nrow\n\\.\n{meta}\n"), 4),
            (format!("COPY t FROM stdin; {meta}\nrow\n"), 1),
            (format!("\\restrict k\n{meta}\n\\unrestrict k\n"), 2),
            (
                format!("CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; {meta}\nEND;\n"),
                1,
            ),
            (format!("SELECT (1;\n{meta}\n"), 2),
        ];
        for (text, line) in cases {
            let got = refused(&text);
            assert_eq!(
                got.as_ref().map(|r| r.0),
                Some(line),
                "{text:?} must be refused at line {line}: {got:?}"
            );
            assert!(got.unwrap().1.contains(word.trim_start_matches('\\')));
        }
    }
}

#[test]
fn backslashes_inside_strings_comments_and_data_are_sql() {
    for text in [
        "SELECT '\\! id';\n",
        "SELECT E'\\' \\! id';\n",
        "SELECT $$ \\! id $$;\n",
        "SELECT $tag$ $$ \\! id $tag$;\n",
        "SELECT \"\\!\" FROM t;\n",
        "/* \\! /* nested */ \\! id */ SELECT 1;\n",
        "SELECT 1; -- \\! id\n",
        "COPY t FROM stdin;\n\\! id\n \\.\n\\.x\n\\\\.\n\\.\n",
        "COPY t FROM stdin;\r\n\\! id\r\n\\.\r\n",
    ] {
        assert_eq!(refused(text), None, "{text:?}");
    }
}

#[test]
fn connect_is_allowed_to_the_target_database_only() {
    assert_eq!(refused("\\connect db\nSELECT 1;\n"), None);
    assert_eq!(
        refused("\\connect -reuse-previous=on \"dbname='db'\"\nSELECT 1;\n"),
        None
    );
    for other in [
        "\\connect postgres\n",
        "\\c other\n",
        "\\connect -reuse-previous=on \"dbname='postgres'\"\n",
        "\\connect db user\n",
        "\\connect \"host=/tmp dbname=db\"\n",
    ] {
        let (line, message) = refused(other).expect(other);
        assert_eq!(line, 1);
        assert!(message.contains("--create"), "{message}");
    }
}

#[test]
fn statements_split_like_the_server_reads_them() {
    assert_eq!(
        statements("SELECT 'a;b'; SELECT \"c;d\"; SELECT $$e;f$$;\nSELECT $x$ $$; $x$;"),
        vec![
            "SELECT 'a;b';",
            "SELECT \"c;d\";",
            "SELECT $$e;f$$;",
            "SELECT $x$ $$; $x$;"
        ]
    );
    // `$` inside an identifier is no dollar quote.
    assert_eq!(
        statements("SELECT a$b; SELECT 2 AS c$;"),
        vec!["SELECT a$b;", "SELECT 2 AS c$;"]
    );
    // E-strings escape quotes; plain strings do not.
    assert_eq!(
        statements("SELECT E'a\\';b'; SELECT 'c\\'; SELECT 1;"),
        vec!["SELECT E'a\\';b';", "SELECT 'c\\';", "SELECT 1;"]
    );
    assert_eq!(
        statements("SELECT (1; 2); SELECT 3;"),
        vec!["SELECT (1; 2);", "SELECT 3;"]
    );
    assert_eq!(
        statements("SELECT 1 /* a /* b; */ c; */ ; SELECT 2"),
        vec!["SELECT 1 /* a /* b; */ c; */ ;", "SELECT 2"]
    );
    let atomic = "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n\
        BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;";
    assert_eq!(statements(atomic).len(), 2, "{:?}", statements(atomic));
    // BEGIN as a transaction is not a routine body.
    assert_eq!(statements("BEGIN; SELECT 1; END;").len(), 3);
    // A comment ends at CR, as in the server's lexer.
    assert_eq!(
        statements("SELECT 1 -- x\r; SELECT 2;"),
        vec!["SELECT 1 -- x\r;", "SELECT 2;"]
    );
}

#[test]
fn lines_are_those_of_the_statement_code() {
    let text =
        "-- header\n\nCREATE TABLE a (i int);\r\n\r\n/* c */\nCRATE TABLE b\n  (i int);\nSELECT 1;";
    let lines: Vec<(usize, String)> = split(text)
        .into_iter()
        .filter(|p| p.kind == Kind::Statement)
        .map(|p| (p.line, p.code().to_string()))
        .collect();
    assert_eq!(lines[0].0, 3);
    assert_eq!(lines[1], (6, "/* c */\nCRATE TABLE b\n  (i int);".into()));
    assert_eq!(lines[2].0, 8);
}

#[test]
fn copy_data_is_handed_on_in_bounded_pieces() {
    let mut text = String::from("COPY t (a) FROM stdin;\n");
    let row = "x".repeat(999) + "\n";
    for _ in 0..3000 {
        text.push_str(&row);
    }
    text.push_str("\\.\nSELECT 1;\n");
    let pieces = split(&text);
    let data: Vec<&Piece> = pieces.iter().filter(|p| p.kind == Kind::CopyData).collect();
    assert_eq!(data.len(), 3);
    assert!(data.iter().all(|p| p.text.len() <= COPY_CHUNK + 1000));
    assert_eq!(data[1].line, 2 + 1049);
    assert_eq!(statements(&text).last().unwrap(), "SELECT 1;");
}

/// Text made of the tokens where lexers disagree, in any order.
fn tricky() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "'",
        "\"",
        "$",
        "$$",
        "$a$",
        "$1",
        "a$",
        "E'",
        "e",
        "\\",
        "\\!",
        "\\.",
        "--",
        "/*",
        "*/",
        "\n",
        "\r",
        "\r\n",
        ";",
        "(",
        ")",
        " ",
        "x",
        "é",
        "COPY t FROM stdin;",
        "copy",
        "from",
        "stdin",
        "begin",
        "end",
        "case",
        "create",
        "function",
        "or",
        "replace",
        "atomic",
        "\\restrict k",
        "\\connect db",
        "GRANT",
        "OWNER TO",
    ]);
    prop::collection::vec(tokens, 0..60).prop_map(|v| v.concat())
}

fn check_cover(text: &str) -> Result<(), TestCaseError> {
    let pieces = split(text);
    let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
    prop_assert_eq!(&joined, text);
    prop_assert!(pieces.iter().all(|p| !p.text.is_empty()));
    let lines = text.split_inclusive('\n').count().max(1);
    prop_assert!(pieces.iter().all(|p| p.line >= 1 && p.line <= lines + 1));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn pieces_cover_tricky_input_exactly(text in tricky()) {
        check_cover(&text)?;
    }

    #[test]
    fn pieces_cover_any_input_exactly(text in any::<String>()) {
        check_cover(&text)?;
    }

    /// A psql command put anywhere outside a string, comment or COPY data
    /// never runs: it is refused or it is inside what the server receives.
    #[test]
    fn a_backslash_in_code_is_never_silently_dropped(text in tricky()) {
        for p in split(&text) {
            if p.kind == Kind::Meta {
                let word = meta_word(&p.text);
                let allowed = matches!(word.as_str(), "restrict" | "unrestrict")
                    || matches!(word.as_str(), "connect" | "c") && refusal(&p, "db").is_none();
                prop_assert!(allowed || refusal(&p, "db").is_some(), "{:?}", p);
            }
        }
    }
}
