//! YAML in and out.
//!
//! Reading ([`documents`], [`from_str`]) is as strict as the API server and reads scalars as
//! kubectl's YAML 1.1 parser does: a duplicate key is an error naming the key, the document and
//! the line; an unquoted `0755` is octal (493); `yes`/`no`/`on`/`off` are booleans.
//!
//! Writing ([`to_string_of`]) is serde-saphyr's: block YAML that YAML 1.1 readers (kubectl,
//! PyYAML) and YAML 1.2 readers read back to exactly the JSON value, every string a reader would
//! take for something else quoted.

use serde_json::Value;

/// One document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// 1-based, counting the documents that hold something (comment-only documents, such as an
    /// empty `helm template` output, are not counted).
    pub index: usize,
    /// The 1-based line where the document starts (its `---` line, if any).
    pub line: usize,
    pub value: Value,
}

/// A document that does not read: what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {document} ({}): {message}", at(*line, *column))]
pub struct ReadError {
    pub document: usize,
    pub line: usize,
    /// 1-based, when known.
    pub column: Option<usize>,
    pub message: String,
}

/// `line L` or `line L, column C`.
fn at(line: usize, column: Option<usize>) -> String {
    match column {
        Some(c) => format!("line {line}, column {c}"),
        None => format!("line {line}"),
    }
}

/// The reader options: kubectl's YAML 1.1 scalars, duplicate keys refused.
fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.legacy_octal_numbers = true;
    o.strict_booleans = false;
    o.with_snippet = false;
    o
}

/// Is this line a document marker (`---` alone or followed by a space or tab)?
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Splits a stream at its `---` lines: (first line, text) per document. A `%` directive belongs
/// to the document after it.
fn split(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    let mut directives = String::new();
    let mut directives_start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if line.starts_with('%') {
            if directives.is_empty() {
                directives_start = n;
            }
            directives.push_str(line);
            continue;
        }
        if is_marker(line) {
            out.push((start, std::mem::take(&mut cur)));
            start = if directives.is_empty() {
                n
            } else {
                directives_start
            };
            cur.push_str(&std::mem::take(&mut directives));
        }
        cur.push_str(line);
    }
    cur.push_str(&directives);
    out.push((start, cur));
    out
}

/// Removes serde_json's own ` at line L column C` from a message.
fn strip_json_location(message: String) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    }
}

/// Removes the reader's own ` at line L, column C` (relative to one document) from a message.
fn strip_location(message: String, at: Option<(u64, u64)>) -> String {
    match at {
        Some((l, c)) => {
            let suffix = format!(" at line {l}, column {c}");
            match message.strip_suffix(&suffix) {
                Some(m) => m.to_string(),
                None => message,
            }
        }
        None => message,
    }
}

fn read_error(e: &serde_saphyr::Error, document: usize, first_line: usize) -> ReadError {
    let at = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()));
    let line = at.map_or(first_line, |(l, _)| first_line + l as usize - 1);
    let message = match e.without_snippet() {
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => format!(
            "duplicate key \"{k}\": the API server refuses it under strict field validation (kubectl's default); remove one"
        ),
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            "duplicate key: the API server refuses it under strict field validation (kubectl's default); remove one".to_string()
        }
        other => strip_location(other.to_string(), at),
    };
    ReadError {
        document,
        line,
        column: at.map(|(_, c)| c as usize),
        message,
    }
}

/// Parses a YAML stream (or JSON) into its documents, read as kubectl reads them. Documents that
/// hold nothing (comments only, or `null`) are left out.
pub fn documents(text: &str) -> Result<Vec<Document>, ReadError> {
    let mut out = Vec::new();
    let mut index = 0;
    for (line, chunk) in split(text) {
        if chunk.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_saphyr::from_str_with_options(&chunk, options()) {
            Ok(v) => v,
            // JSON that is not YAML (a raw DEL or C1 control inside a string, which JSON allows):
            // read as JSON, as kubectl does with JSON input.
            Err(e) if chunk.trim_start().starts_with(['{', '[']) => {
                strict_json(&chunk).map_err(|je| {
                    if je.line() > 0 {
                        ReadError {
                            document: index + 1,
                            line: line + je.line() - 1,
                            column: Some(je.column()),
                            message: strip_json_location(je.to_string()),
                        }
                    } else {
                        read_error(&e, index + 1, line)
                    }
                })?
            }
            Err(e) => return Err(read_error(&e, index + 1, line)),
        };
        if value.is_null() {
            continue;
        }
        index += 1;
        out.push(Document { index, line, value });
    }
    Ok(out)
}

/// Reads JSON text, refusing duplicate keys as the API server does.
fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    use serde::de::{Deserializer as _, Error as _, MapAccess, SeqAccess, Visitor};
    struct Strict;
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Seed)? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = map.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(A::Error::custom(format!(
                        "duplicate key \"{k}\": the API server refuses it; remove one"
                    )));
                }
                let v = map.next_value_seed(Seed)?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
    }
    struct Seed;
    impl<'de> serde::de::DeserializeSeed<'de> for Seed {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Strict)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = (&mut de).deserialize_any(Strict)?;
    de.end()?;
    Ok(v)
}

/// A YAML document that does not read as the type asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message} ({})", if path.is_empty() { String::new() } else { format!("{path}: ") }, at(*line, *column))]
pub struct TypeError {
    /// The field path (`mutation.antiAffinity.mode`); empty at the top level.
    pub path: String,
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// Reads one YAML document into `T`, with the field path of a type error
/// (`mutation.antiAffinity.mode: unknown variant …`).
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TypeError> {
    let mut path = String::new();
    let r = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    r.map_err(|e| {
        let e = read_error(&e, 1, 1);
        // A map key read by a type of its own (an enum) is not seen by the path tracker, which
        // then writes `?`: the key whose text or value the message quotes is named instead.
        if path.split('.').any(|p| p == "?") {
            if let Ok(v) = serde_saphyr::from_str_with_options::<Value>(text, options()) {
                path = name_unknown_keys(&path, &v, &e.message);
            }
        }
        TypeError {
            path: if path == "." { String::new() } else { path },
            line: e.line,
            column: e.column,
            message: e.message,
        }
    })
}

/// Replaces each `?` of a field path (a map key the path tracker did not see) by the key of that
/// map, in `v`, whose text or scalar value `message` quotes (`` `maybe` `` or `"maybe"`).
fn name_unknown_keys(path: &str, v: &Value, message: &str) -> String {
    let quoted =
        |t: &str| message.contains(&format!("`{t}`")) || message.contains(&format!("\"{t}\""));
    let mut at = Some(v);
    let mut out = Vec::new();
    for seg in path.split('.') {
        let seg = if seg == "?" {
            at.and_then(Value::as_object)
                .and_then(|m| {
                    m.iter().find(|(k, x)| {
                        quoted(k)
                            || x.as_str().is_some_and(quoted)
                            || (x.is_number() || x.is_boolean()) && quoted(&x.to_string())
                    })
                })
                .map_or("?", |(k, _)| k.as_str())
        } else {
            seg
        };
        at = at.and_then(|x| x.get(seg));
        out.push(seg.to_string());
    }
    out.join(".")
}

/// One YAML document (without a `---` line) of anything serde serialises, written by
/// serde-saphyr from its JSON value (so keys come in JSON's order), which quotes every string a
/// YAML 1.1 or 1.2 reader would take for something else: booleans such as `yes`, nulls, numbers,
/// dates, sexagesimals, `<<`… (`tests/yaml_round_trip.rs` reads the output back with PyYAML and a
/// YAML 1.2 reader).
pub fn to_string_of<T: serde::Serialize>(t: &T) -> Result<String, serde_json::Error> {
    serde_saphyr::to_string(&serde_json::to_value(t)?).map_err(serde::ser::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_strings_read_back_as_strings() -> Result<(), ReadError> {
        for s in [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "Y",
            "~",
            "null",
            "NULL",
            "0x1F",
            "012",
            "0o17",
            "1e3",
            ".inf",
            "-.inf",
            ".NaN",
            "nan",
            "2024-01-01",
            "1_000",
            "1:20",
            "=",
            "<<",
            "",
            " a",
            "a ",
            "a: b",
            "a #b",
            "-",
            "- a",
            "? a",
            "@a",
            "`a",
            "!a",
            "&a",
            "*a",
            "|",
            ">",
            "'",
            "\"",
            "%a",
            "[a]",
            "{a}",
            "#a",
            "true",
            "False",
            "+1",
            "-1",
            "0",
            "1.5",
        ] {
            let v = serde_json::json!({ "k": s, "list": [s] });
            let text = to_string_of(&v).unwrap();
            assert_eq!(documents(&text)?[0].value, v, "{s:?} as {text}");
        }
        Ok(())
    }

    #[test]
    fn writes_blocks_and_reads_them_back() -> Result<(), ReadError> {
        let v = serde_json::json!({
            "a": {"b": [1, {"c": "yes", "d": []}, [true, null]], "e": {}},
            "s": "line one\n  two\n\nthree\n\n",
            "f": 1.5e300,
            "g": -2.5e-7,
            "q": "tab\there \u{85} \u{2028}",
            "<<": "=",
        });
        let mut v = v;
        v["k".repeat(2000).as_str()] = serde_json::json!({"long": ["key"]});
        let text = to_string_of(&v).unwrap();
        let back = documents(&text)?;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].value, v, "{text}");
        Ok(())
    }

    #[test]
    fn duplicate_keys_name_the_key_document_and_line() {
        let e = documents("a: 1\n---\n# c\nb: 2\nb: 3\n").err();
        let e = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(e.contains("document 2"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("duplicate key \"b\""), "{e}");
    }

    #[test]
    fn reads_as_kubectl_does() -> Result<(), ReadError> {
        let d = documents("---\n# only a comment\n---\nmode: 0755\nb: yes\nc: '0755'\n---\n")?;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].index, 1);
        assert_eq!(d[0].line, 3);
        assert_eq!(
            d[0].value,
            serde_json::json!({"mode": 493, "b": true, "c": "0755"})
        );
        Ok(())
    }
}
