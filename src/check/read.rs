//! Reading `stsguard check`'s input: files of YAML (multi-document) or JSON, `-` for stdin,
//! `List` kinds flattened; each object keeps where it came from.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::{BadInput, Source};
use crate::bounds::{MAX_DOCUMENTS, MAX_INPUT_BYTES};

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

/// Reads every file's documents, within [`MAX_INPUT_BYTES`] in all and [`MAX_DOCUMENTS`]
/// objects (a `List`'s items counted).
pub fn read_documents(files: &[String]) -> Result<Vec<Input>, BadInput> {
    let mut out = Vec::new();
    let mut read = 0usize;
    for f in files {
        let name = if f == "-" { "stdin" } else { f.as_str() };
        let text = if f == "-" {
            read_capped(std::io::stdin().lock(), name, &mut read)?
        } else {
            let file =
                std::fs::File::open(Path::new(f)).map_err(|e| BadInput(format!("{f}: {e}")))?;
            read_capped(file, name, &mut read)?
        };
        let name = if f == "-" { "-".to_string() } else { f.clone() };
        // Counted before parsing: a line starting `---` starts a document.
        let separators = text.split('\n').filter(|l| l.starts_with("---")).count();
        if out.len() + separators > MAX_DOCUMENTS {
            return Err(too_many(&name));
        }
        let docs = crate::yaml::documents(&text).map_err(|e| BadInput(format!("{name}: {e}")))?;
        for d in docs {
            let source = Source::File {
                file: name.clone(),
                document: d.index,
                item: None,
                line: Some(d.line),
            };
            flatten(d.value, source, &mut out);
            if out.len() > MAX_DOCUMENTS {
                return Err(too_many(&name));
            }
        }
    }
    Ok(out)
}

fn too_many(name: &str) -> BadInput {
    BadInput(format!(
        "{name}: over {MAX_DOCUMENTS} objects (stsguard's bound, docs/bounds.md); split the input"
    ))
}

/// Reads `r` as UTF-8 text; `read` counts the bytes of every input so far, which may total at
/// most [`MAX_INPUT_BYTES`]: one byte more and the read stops with an error naming `name`.
fn read_capped(r: impl Read, name: &str, read: &mut usize) -> Result<String, BadInput> {
    let left = MAX_INPUT_BYTES.saturating_sub(*read);
    let mut buf = Vec::new();
    r.take(left as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| BadInput(format!("{name}: {e}")))?;
    if buf.len() > left {
        return Err(BadInput(format!(
            "{name}: input over {} MiB (stsguard's bound, docs/bounds.md); split the file",
            MAX_INPUT_BYTES / (1024 * 1024)
        )));
    }
    *read += buf.len();
    String::from_utf8(buf).map_err(|e| BadInput(format!("{name}: not UTF-8 text: {e}")))
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
                if out.len() > MAX_DOCUMENTS {
                    return;
                }
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
