//! Mutants of known SQL, checked by hand.

use super::*;

fn changes(sql: &str) -> Vec<(Class, String, String)> {
    mutants(sql)
        .expect("mutants")
        .into_iter()
        .map(|m| (m.class, m.change, m.sql))
        .collect()
}

#[test]
fn comparisons_conditions_and_constants() {
    let all = changes("SELECT memid FROM cd.members WHERE joindate >= '2012-09-01' AND memid > 10");
    let has = |class: Class, sql: &str| all.iter().any(|(c, _, s)| *c == class && s == sql);
    assert!(has(
        Class::Comparison,
        "SELECT memid FROM cd.members WHERE joindate > '2012-09-01' AND memid > 10"
    ));
    assert!(has(
        Class::AndOr,
        "SELECT memid FROM cd.members WHERE joindate >= '2012-09-01' OR memid > 10"
    ));
    assert!(has(
        Class::DroppedCondition,
        "SELECT memid FROM cd.members WHERE memid > 10"
    ));
    assert!(has(
        Class::Constant,
        "SELECT memid FROM cd.members WHERE joindate >= '2012-09-01' AND memid > 11"
    ));
    assert!(has(
        Class::Distinct,
        "SELECT DISTINCT memid FROM cd.members WHERE joindate >= '2012-09-01' AND memid > 10"
    ));
    // 5 + 5 comparisons, AND/OR, 2 conjuncts dropped, 2 constants, DISTINCT.
    assert_eq!(all.len(), 16, "{all:#?}");
    let (_, said, _) = all
        .iter()
        .find(|(c, _, _)| *c == Class::Comparison)
        .expect("one");
    assert_eq!(said, "`<` instead of `>=`");
    assert_eq!(mutants("SELECT 1").expect("ok").len(), 3, "DISTINCT, 2, 0");
}

#[test]
fn joins_counts_aggregates_and_null_tests() {
    let all = changes(
        "SELECT m.surname, count(b.bookid), sum(b.slots) FROM cd.members m LEFT JOIN cd.bookings b ON b.memid = m.memid WHERE m.recommendedby IS NULL GROUP BY m.surname",
    );
    let said: Vec<&str> = all.iter().map(|(_, s, _)| s.as_str()).collect();
    for expected in [
        "`JOIN` instead of `LEFT JOIN`",
        "`FULL JOIN` instead of `LEFT JOIN`",
        "the join condition `b.memid = m.memid` left out",
        "`COUNT(*)` instead of `COUNT(column)`",
        "`COUNT(DISTINCT ...)` instead of `COUNT(column)`",
        "`AVG` instead of `SUM`",
        "`IS NOT NULL` instead of `IS NULL`",
    ] {
        assert!(said.contains(&expected), "{expected} in {said:#?}");
    }
    let inner = all
        .iter()
        .find(|(_, s, _)| s == "`JOIN` instead of `LEFT JOIN`")
        .expect("inner");
    assert!(
        inner
            .2
            .contains("FROM cd.members m JOIN cd.bookings b ON b.memid = m.memid"),
        "{}",
        inner.2
    );
}

#[test]
fn unions_groups_orders_and_limits() {
    let all = changes(
        "SELECT facid, count(*) FROM cd.bookings GROUP BY facid, memid UNION ALL SELECT 0, 0 ORDER BY 2 DESC, 1 LIMIT 5",
    );
    let said: Vec<&str> = all.iter().map(|(_, s, _)| s.as_str()).collect();
    for expected in [
        "`UNION` instead of `UNION ALL`",
        "`2 ASC` instead of `2 DESC`",
        "`1 DESC` instead of `1 ASC`",
        "`1` left out of ORDER BY",
        "`memid` left out of GROUP BY",
        "`6` instead of `5`",
    ] {
        assert!(said.contains(&expected), "{expected} in {said:#?}");
    }
    let union = all
        .iter()
        .find(|(c, _, _)| *c == Class::Union)
        .expect("union");
    assert_eq!(
        union.2,
        "SELECT facid, count(*) FROM cd.bookings GROUP BY facid, memid UNION SELECT 0, 0 ORDER BY 2 DESC, 1 LIMIT 5"
    );
}

#[test]
fn the_same_sql_gives_the_same_mutants_and_bad_sql_an_error() {
    let sql = "SELECT facid, count(*) FROM cd.bookings WHERE slots BETWEEN 1 AND 3 GROUP BY facid";
    assert_eq!(mutants(sql), mutants(sql));
    assert!(mutants("SELEC nothing").is_err());
    assert!(mutants("DELETE FROM cd.members").is_err());
    assert!(mutants("SELECT 1; SELECT 2").is_err());
}

#[test]
fn a_diff_shows_whole_words_and_a_sentence_names_the_boundary() {
    let reference = "SELECT memid FROM cd.members WHERE joindate >= '2012-09-01'";
    let all = mutants(reference).expect("mutants");
    let gt = all
        .iter()
        .find(|m| m.change == "`>` instead of `>=`")
        .expect("mutant");
    let d = explain::Diff::of(reference, &gt.sql);
    assert_eq!((d.removed.as_str(), d.added.as_str()), (">=", ">"));
    assert_eq!(
        d.line(),
        "…memid FROM cd.members WHERE joindate [->=-]{+>+} '2012-09-01'"
    );
    let distinct = all
        .iter()
        .find(|m| m.class == Class::Distinct)
        .expect("mutant");
    assert_eq!(
        explain::Diff::of(reference, &distinct.sql).line(),
        "SELECT {+DISTINCT+} memid FROM cd.members WHERE joindate >=…"
    );
    let probe = gt.probe.as_ref().expect("a column against a constant");
    assert_eq!(probe.telling, vec!["="]);
    assert_eq!(
        explain::probe_queries(probe).expect("the table is known"),
        vec!["SELECT EXISTS (SELECT 1 FROM cd.members WHERE joindate = '2012-09-01')"]
    );
    assert_eq!(
        explain::sentence(gt, Some(&[false])),
        "no row of `cd.members` has `joindate` exactly '2012-09-01', so `>` instead of `>=` gives the same rows: add one"
    );
    // A constant on the left: `<>` for `<` differs where the column is below it.
    let left = mutants(
        "SELECT 1 FROM cd.members m JOIN cd.bookings b ON b.memid = m.memid WHERE 5 < m.memid",
    )
    .expect("mutants");
    let ne = left
        .iter()
        .find(|m| m.change == "`<>` instead of `<`")
        .expect("mutant");
    let probe = ne.probe.as_ref().expect("probe");
    assert_eq!(probe.telling, vec!["<"]);
    assert_eq!(
        probe.table,
        Some(("cd.members".to_string(), "cd.members AS m".to_string()))
    );
}
