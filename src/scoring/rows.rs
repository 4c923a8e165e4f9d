//! Result sets as multisets (or sequences) of rows in their Postgres text
//! form, and what tells two apart without giving the answer away.

use tokio_postgres::{GenericClient, SimpleQueryMessage};

/// The rows of a result, each in its Postgres text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    pub columns: usize,
    /// Sorted unless `ordered`.
    pub rows: Vec<String>,
    pub ordered: bool,
}

/// Why fetching rows stopped short.
#[derive(Debug)]
pub enum FetchError {
    TooMany(usize),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for FetchError {
    fn from(e: tokio_postgres::Error) -> Self {
        FetchError::Db(e)
    }
}

/// Removes what would break wrapping a query in a subquery.
pub fn strip_sql(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// Characters of a row's text kept; a longer row is cut there and the md5
/// of its whole text appended, so that rows still compare exactly while a
/// student's row of a gigabyte costs pglab less than a kilobyte.
pub const ROW_TEXT_LIMIT: usize = 512;

/// Runs `inner` (a SELECT) and returns its rows as text; at most `max_rows`.
/// One round trip of the simple query protocol with two statements: the
/// first (`LIMIT 0`) tells the number of columns, the second returns each
/// row as the text of the whole record (`(1,"a b",)`: NULL differs from
/// every text), cut at `ROW_TEXT_LIMIT` on the server.
pub async fn fetch<C: GenericClient>(
    client: &C,
    inner: &str,
    ordered: bool,
    max_rows: usize,
) -> Result<RowSet, FetchError> {
    let sql = format!(
        "SELECT * FROM ({inner}) AS t LIMIT 0;\n\
         SELECT CASE WHEN pg_catalog.length(t::text) > {ROW_TEXT_LIMIT}\n\
                     THEN pg_catalog.left(t::text, {ROW_TEXT_LIMIT}) OPERATOR(pg_catalog.||) ' md5:'\n\
                          OPERATOR(pg_catalog.||) pg_catalog.md5(t::text)\n\
                     ELSE t::text END\n\
         FROM ({inner}) AS t LIMIT {}",
        max_rows + 1
    );
    let mut columns = None;
    let mut rows = Vec::new();
    for message in client.simple_query(&sql).await? {
        match message {
            SimpleQueryMessage::RowDescription(c) if columns.is_none() => columns = Some(c.len()),
            SimpleQueryMessage::Row(r) => rows.push(r.get(0).unwrap_or("").to_string()),
            _ => {}
        }
    }
    if rows.len() > max_rows {
        return Err(FetchError::TooMany(max_rows));
    }
    if !ordered {
        rows.sort_unstable();
    }
    Ok(RowSet {
        columns: columns.unwrap_or(0),
        rows,
        ordered,
    })
}

/// `None` when equal, else a reason a student may read: counts and, with
/// `show_rows`, a few of the participant's own unexpected rows (never a row
/// of the reference).
pub fn compare(got: &RowSet, want: &RowSet, show_rows: bool) -> Option<String> {
    if got.columns != want.columns {
        return Some(format!(
            "the result has {} columns, {} expected",
            got.columns, want.columns
        ));
    }
    if want.ordered {
        if got.rows == want.rows {
            return None;
        }
        let mut sorted_got = got.rows.clone();
        let mut sorted_want = want.rows.clone();
        sorted_got.sort_unstable();
        sorted_want.sort_unstable();
        if sorted_got == sorted_want {
            return Some("the right rows in the wrong order (look at ORDER BY)".into());
        }
        return Some(difference(&sorted_got, &sorted_want, show_rows));
    }
    (got.rows != want.rows).then(|| difference(&got.rows, &want.rows, show_rows))
}

/// Unexpected rows quoted in a reason, and characters of each.
const SHOWN_ROWS: usize = 3;
const SHOWN_ROW_CHARS: usize = 80;

/// Counts rows missing and unexpected between two sorted lists.
fn difference(got: &[String], want: &[String], show_rows: bool) -> String {
    let (mut i, mut j, mut missing, mut unexpected) = (0, 0, 0usize, 0usize);
    let mut extra: Vec<&str> = vec![];
    while i < got.len() || j < want.len() {
        match (got.get(i), want.get(j)) {
            (Some(g), Some(w)) if g == w => {
                i += 1;
                j += 1;
            }
            (Some(g), Some(w)) if g < w => {
                unexpected += 1;
                extra.push(g);
                i += 1;
            }
            (Some(g), None) => {
                unexpected += 1;
                extra.push(g);
                i += 1;
            }
            _ => {
                missing += 1;
                j += 1;
            }
        }
    }
    let rows = |n: usize| {
        if n == 1 {
            "1 row".to_string()
        } else {
            format!("{n} rows")
        }
    };
    // A row matches only when all its values do: a changed value shows as
    // one row missing and one unexpected.
    let counts = match (missing, unexpected) {
        (0, u) => format!(
            "{} too many (rows the expected result does not have)",
            rows(u)
        ),
        (m, 0) => format!(
            "{} missing (rows of the expected result not found)",
            rows(m)
        ),
        (m, u) => format!(
            "{} missing, {u} unexpected (a row matches only when all its values do)",
            rows(m)
        ),
    };
    if !show_rows || extra.is_empty() {
        return counts;
    }
    let shown: Vec<String> = extra
        .iter()
        .take(SHOWN_ROWS)
        .map(|r| match r.char_indices().nth(SHOWN_ROW_CHARS) {
            Some((at, _)) => format!("{}…", &r[..at]),
            None => r.to_string(),
        })
        .collect();
    format!("{counts}; unexpected: {}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rows: &[&str], ordered: bool) -> RowSet {
        // Rows as fetch() makes them; the exact text does not matter here.
        let mut rows: Vec<String> = rows.iter().map(|s| s.to_string()).collect();
        if !ordered {
            rows.sort();
        }
        RowSet {
            columns: 2,
            rows,
            ordered,
        }
    }

    #[test]
    fn multisets_and_reasons() {
        let want = set(&["(1,a)", "(2,b)", "(2,b)", "(3,c)"], false);
        assert_eq!(
            compare(
                &set(&["(2,b)", "(1,a)", "(3,c)", "(2,b)"], false),
                &want,
                false
            ),
            None
        );
        assert_eq!(
            compare(&set(&["(1,a)", "(2,b)", "(9,z)"], false), &want, false).as_deref(),
            Some("2 rows missing, 1 unexpected (a row matches only when all its values do)")
        );
        assert_eq!(
            compare(&set(&["(1,a)", "(2,b)", "(2,b)"], false), &want, false).as_deref(),
            Some("1 row missing (rows of the expected result not found)")
        );
        let mut narrow = set(&["(1)"], false);
        narrow.columns = 1;
        assert_eq!(
            compare(&narrow, &want, false).as_deref(),
            Some("the result has 1 columns, 2 expected")
        );
        let want = set(&["(1,a)", "(2,b)"], true);
        assert_eq!(
            compare(&set(&["(2,b)", "(1,a)"], true), &want, false).as_deref(),
            Some("the right rows in the wrong order (look at ORDER BY)")
        );
        // With `feedback: rows`: the participant's own unexpected rows, never
        // the reference's missing ones.
        let want = set(&["(1,a)", "(2,b)", "(3,secret)"], false);
        let got = set(&["(1,a)", "(2,b)", "(3,mine)", "(4,also mine)"], false);
        let shown = compare(&got, &want, true).expect("differs");
        assert!(
            shown.contains("(3,mine)") && shown.contains("(4,also mine)"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!compare(&got, &want, false)
            .expect("differs")
            .contains("mine"));
    }
}
