//! Reading `stsguard check`'s input: files of YAML (multi-document) or JSON, `-` for stdin,
//! `List` kinds flattened; each object keeps where it came from.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::{BadInput, Source};

/// One object of the input and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub source: Source,
    pub value: Value,
}

impl From<(String, Value)> for Input {
    /// An object of `file` whose document is not known (numbered in order by [`super::run`]).
    fn from((file, value): (String, Value)) -> Self {
        Input {
            source: Source::File {
                file,
                document: 0,
                item: None,
                line: None,
            },
            value,
        }
    }
}

/// Reads every file's documents.
pub fn read_documents(files: &[String]) -> Result<Vec<Input>, BadInput> {
    let mut out = Vec::new();
    for f in files {
        let (name, text) = if f == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| BadInput(format!("stdin: {e}")))?;
            ("-".to_string(), s)
        } else {
            let text =
                std::fs::read_to_string(Path::new(f)).map_err(|e| BadInput(format!("{f}: {e}")))?;
            (f.clone(), text)
        };
        let docs = crate::yaml::documents(&text).map_err(|e| BadInput(format!("{name}: {e}")))?;
        for d in docs {
            let source = Source::File {
                file: name.clone(),
                document: d.index,
                item: None,
                line: Some(d.line),
            };
            flatten(d.value, source, &mut out);
        }
    }
    Ok(out)
}

/// The documents of a YAML stream (or JSON text), as [`read_documents`] reads them.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    crate::yaml::documents(text)
        .map(|d| d.into_iter().map(|d| d.value).collect())
        .map_err(|e| e.to_string())
}

/// A `…List` with `items` becomes its items (numbered from 1 in the source).
fn flatten(v: Value, source: Source, out: &mut Vec<Input>) {
    if v.is_null() {
        return;
    }
    let is_list = v
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    if is_list {
        if let Some(Value::Array(items)) = v.get("items") {
            for (i, item) in items.iter().enumerate() {
                let source = match &source {
                    Source::File {
                        file,
                        document,
                        line,
                        ..
                    } => Source::File {
                        file: file.clone(),
                        document: *document,
                        item: Some(i + 1),
                        line: *line,
                    },
                    other => other.clone(),
                };
                flatten(item.clone(), source, out);
            }
            return;
        }
    }
    out.push(Input { source, value: v });
}
