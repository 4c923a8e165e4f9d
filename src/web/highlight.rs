//! A small SQL highlighter for the statements of failed restores: the text
//! is cut into classed pieces that the template escapes one by one.

const KEYWORDS: &[&str] = &[
    "add",
    "all",
    "alter",
    "and",
    "as",
    "asc",
    "begin",
    "between",
    "by",
    "cascade",
    "case",
    "check",
    "column",
    "comment",
    "commit",
    "constraint",
    "copy",
    "create",
    "database",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "exists",
    "extension",
    "foreign",
    "from",
    "function",
    "grant",
    "group",
    "having",
    "if",
    "in",
    "index",
    "insert",
    "into",
    "is",
    "join",
    "key",
    "language",
    "left",
    "like",
    "limit",
    "not",
    "null",
    "on",
    "or",
    "order",
    "owner",
    "primary",
    "program",
    "references",
    "replace",
    "returns",
    "revoke",
    "role",
    "schema",
    "select",
    "sequence",
    "set",
    "system",
    "table",
    "then",
    "to",
    "trigger",
    "union",
    "unique",
    "update",
    "using",
    "values",
    "view",
    "when",
    "where",
    "with",
];

/// One highlighted piece: a CSS class (empty for plain text) and its text.
pub type Piece = (&'static str, String);

/// Cuts `sql` into pieces; newlines stay inside the pieces' text.
pub fn pieces(sql: &str) -> Vec<Piece> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out: Vec<Piece> = vec![];
    let mut i = 0;
    let push = |out: &mut Vec<Piece>, class: &'static str, text: String| match out.last_mut() {
        Some((c, t)) if *c == class && class.is_empty() => t.push_str(&text),
        _ => out.push((class, text)),
    };
    while i < chars.len() {
        let c = chars[i];
        let take_until = |from: usize, end: &dyn Fn(usize) -> bool| {
            let mut j = from;
            while j < chars.len() && !end(j) {
                j += 1;
            }
            j
        };
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            let j = take_until(i, &|j| chars[j] == '\n');
            push(&mut out, "sql-comment", chars[i..j].iter().collect());
            i = j;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let j = take_until(i + 2, &|j| chars[j] == '/' && chars[j - 1] == '*');
            let j = (j + 1).min(chars.len());
            push(&mut out, "sql-comment", chars[i..j].iter().collect());
            i = j;
        } else if c == '\'' || c == '"' {
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == c {
                    if chars.get(j + 1) == Some(&c) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let j = (j + 1).min(chars.len());
            let class = if c == '\'' { "sql-string" } else { "sql-ident" };
            push(&mut out, class, chars[i..j].iter().collect());
            i = j;
        } else if c.is_ascii_digit() {
            let j = take_until(i, &|j| !(chars[j].is_ascii_digit() || chars[j] == '.'));
            push(&mut out, "sql-number", chars[i..j].iter().collect());
            i = j;
        } else if c.is_alphabetic() || c == '_' {
            let j = take_until(i, &|j| !(chars[j].is_alphanumeric() || chars[j] == '_'));
            let word: String = chars[i..j].iter().collect();
            let class = if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                "sql-keyword"
            } else {
                ""
            };
            push(&mut out, class, word);
            i = j;
        } else {
            push(&mut out, "", c.to_string());
            i += 1;
        }
    }
    out
}

/// The pieces split into lines (for numbered listings).
pub fn lines(sql: &str) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = vec![];
    let mut current: Vec<Piece> = vec![];
    for (class, text) in pieces(sql) {
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                out.push(std::mem::take(&mut current));
            }
            if !part.is_empty() {
                current.push((class, part.to_string()));
            }
        }
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let p = pieces("CREATE TABLE \"t\" (a int DEFAULT 'x''y'); -- note");
        assert_eq!(p[0], ("sql-keyword", "CREATE".to_string()));
        assert!(p.contains(&("sql-ident", "\"t\"".to_string())));
        assert!(p.contains(&("sql-string", "'x''y'".to_string())));
        assert!(p.contains(&("sql-comment", "-- note".to_string())));
        assert_eq!(lines("a\nb\n").len(), 3);
    }
}
