//! A YAML tree that remembers the line of every node.
//!
//! serde stops at the first error and forgets where a value came from; a lab
//! master wants every mistake at once with its line, so lab files are read
//! into this tree first and then walked by `spec.rs`.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Null => "empty",
        }
    }
}

/// A syntax error with its 1-based line.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>)>,
    root: Option<Node>,
    anchors: Vec<(usize, Node)>,
    alias_seen: bool,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((parent, pending_key)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => unreachable!("only collections are pushed"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let plain_null = style == yaml_rust2::scanner::TScalarStyle::Plain
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let value = if plain_null {
                    Value::Null
                } else {
                    Value::Scalar(text)
                };
                let node = Node { value, line };
                if anchor > 0 {
                    self.anchors.push((anchor, node.clone()));
                }
                self.push_value(node);
            }
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    value: Value::Seq(vec![]),
                    line,
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    value: Value::Map(vec![]),
                    line,
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(id) => {
                self.alias_seen = true;
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or(Node {
                        value: Value::Null,
                        line,
                    });
                self.push_value(node);
            }
            _ => {}
        }
    }
}

/// Parses one YAML document into a tree with line numbers.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let text = super::unix_lines(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(&text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        line: 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept() {
        let doc = parse("a: 1\nb:\n  - x\n  - y: 2\n").unwrap();
        let Value::Map(entries) = doc.value else {
            panic!()
        };
        assert_eq!(entries[0].0.line, 1);
        assert_eq!(entries[1].0.line, 2);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 4);
    }

    #[test]
    fn crlf_and_lf_give_the_same_lines() {
        let lf = "a: 1\nb:\n  - x\n  - y: 2\nc: [1, 2\n";
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(parse(lf).unwrap_err().line, parse(&crlf).unwrap_err().line);
        let ok = "a: 1\r\n\r\nb:\r\n  - x\r\n  - y: 2\r\n";
        let Value::Map(entries) = parse(ok).unwrap().value else {
            panic!()
        };
        assert_eq!(entries[1].0.line, 3);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 5);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }
}
