//! The clubdata dataset as a lab master prepares it (shared by the tests and
//! the benchmarks).

/// What a lab master does to the published file: drop the lines that create
/// the authors' own database and user, switch database, or grant to them.
pub fn cleaned_clubdata() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/datasets/clubdata/clubdata.sql"
    ))
    .expect("../shared/datasets/clubdata/clubdata.sql is beside the repository");
    let start = text
        .find("\\c exercises")
        .expect("the file switches database")
        + "\\c exercises".len();
    text[start..]
        .lines()
        .filter(|l| {
            !l.contains("pgexercises") && !l.to_ascii_lowercase().starts_with("alter database")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
