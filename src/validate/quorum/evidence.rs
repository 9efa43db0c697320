//! Reading a container for evidence: its image's repository name, its command, args and env
//! values cut into tokens once, and the look-ups the signal table's rows ask of them.

use k8s_openapi::api::core::v1::Container;

use super::signals::Key::*;
use super::signals::{Ev, Key, Test};
use crate::text::cut;

/// The repository name of an image reference: `quay.io/coreos/etcd:v3.5` → `etcd`,
/// `registry:5000/x/kafka@sha256:…` → `kafka`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Src {
    /// The command or args.
    Arg,
    /// An env variable's value.
    Env,
}

/// A word of a command line, script or configuration text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tok<'a> {
    pub(super) text: &'a str,
    /// The rest of the line after the word.
    after: &'a str,
    src: Src,
    /// In command position: the first word of a line, after `;`, `&`, `|`, `(` or after
    /// `exec`/`then`/`do`/`else`.
    pub(super) command: bool,
}

fn is_sep(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'`()[]{};|&<>\\".contains(&b)
}

/// Cuts `s` into words, line by line. Separators are ASCII, so every cut is a char boundary.
pub(super) fn lex<'a>(s: &'a str, src: Src, first_is_command: bool, out: &mut Vec<Tok<'a>>) {
    // A one-word element is an argv entry; an element with spaces is a script or a config file.
    let script = s.bytes().any(|b| b.is_ascii_whitespace());
    for (n, line) in s.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut command = script || (n == 0 && first_is_command);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if is_sep(b) {
                if b";|&(".contains(&b) {
                    command = true;
                }
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !is_sep(bytes[i]) {
                i += 1;
            }
            let text = &line[start..i];
            out.push(Tok {
                text,
                after: &line[i..],
                src,
                command,
            });
            command = matches!(text, "exec" | "then" | "do" | "else");
        }
    }
}

/// The value after `=`, `:` or a space: a `[…]` list, a quoted string, or up to a comment or the
/// end of the line.
fn value_extent(rest: &str) -> &str {
    let r = bounded(rest).trim_start();
    if let Some(list) = r.strip_prefix('[') {
        return list.split(']').next().unwrap_or(list);
    }
    for q in ['"', '\''] {
        if let Some(quoted) = r.strip_prefix(q) {
            return quoted.split(q).next().unwrap_or(quoted);
        }
    }
    let end = r.find(['#', '}', ';']).unwrap_or(r.len());
    r[..end].trim_end().trim_end_matches(',')
}

fn first_word(v: &str) -> &str {
    let v = v.trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let end = v
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | '"' | '\'' | '}' | ']'))
        .unwrap_or(v.len());
    &v[..end]
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `name` with a trailing `#` matches `prefix` + digits.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('#') {
        Some(prefix) => name
            .strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        None => name == pattern,
    }
}

impl Test {
    fn holds(self, value: Option<&str>) -> bool {
        match self {
            Test::Present => true,
            Test::Contains(ns) => value.is_some_and(|v| ns.iter().any(|n| contains_ci(v, n))),
            Test::Lacks(ns) => value.is_some_and(|v| !ns.iter().any(|n| contains_ci(v, n))),
            Test::Is(x) => value.is_some_and(|v| first_word(v).eq_ignore_ascii_case(x)),
        }
    }
}

/// One container, cut into words once.
pub(super) struct Facts<'f> {
    pub(super) c: &'f Container,
    pub(super) toks: &'f [Tok<'f>],
}

/// Values longer than this are judged on their start: a role list or a flag value is short, and
/// the bound keeps repeated keys on one long line linear.
const MAX_VALUE: usize = 512;

fn bounded(s: &str) -> &str {
    if s.len() <= MAX_VALUE {
        return s;
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A setting's name and where its value starts, if the word is `name=v`, `name:` or is
/// followed by `=`/`:` (`name = v`, `"name": v`).
fn setting_parts<'f>(t: &Tok<'f>) -> Option<(&'f str, SettingValue<'f>)> {
    let text = t.text.strip_prefix("-E").unwrap_or(t.text);
    if text.starts_with('-') {
        return None;
    }
    if let Some((n, v)) = text.split_once('=') {
        // `name="a,b"`: the quote cut the word; the value follows.
        return Some((
            n,
            if v.is_empty() {
                SettingValue::Rest(t.after)
            } else {
                SettingValue::Word(v)
            },
        ));
    }
    if let Some(n) = text.strip_suffix(':') {
        return Some((n, SettingValue::Rest(t.after)));
    }
    let rest = t.after.trim_start_matches([' ', '\t', '"', '\'']);
    rest.strip_prefix(['=', ':'])
        .map(|v| (text, SettingValue::Rest(v)))
}

#[derive(Clone, Copy)]
enum SettingValue<'f> {
    /// The value is the rest of the word.
    Word(&'f str),
    /// The value starts the rest of the line.
    Rest(&'f str),
}

impl<'f> SettingValue<'f> {
    fn get(self) -> &'f str {
        match self {
            SettingValue::Word(w) => w,
            SettingValue::Rest(r) => value_extent(bounded(r)),
        }
    }
}

impl<'f> Facts<'f> {
    fn env(&self) -> impl Iterator<Item = (&'f str, Option<&'f str>)> + use<'f> {
        self.c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
    }

    /// The first value of `key` in this container that satisfies `test` (inner None: present
    /// without a readable value, e.g. `valueFrom`); None when there is none.
    pub(super) fn find(&self, key: Key, test: Test) -> Option<Option<&'f str>> {
        let ok = |v: Option<&'f str>| test.holds(v).then_some(v);
        match key {
            Identity => None,
            Env(name) => self
                .env()
                .filter(|(n, _)| *n == name)
                .find_map(|(_, v)| ok(v))
                .or_else(|| {
                    // `export NAME=value` in a script.
                    self.toks
                        .iter()
                        .filter(|t| t.src == Src::Arg)
                        .filter_map(|t| t.text.split_once('='))
                        .filter(|(n, _)| *n == name)
                        .find_map(|(_, v)| ok(Some(v)))
                }),
            Flag(flag) => {
                let want = flag.trim_start_matches('-');
                self.toks.iter().enumerate().find_map(|(i, t)| {
                    if t.src != Src::Arg || !t.text.starts_with('-') {
                        return None;
                    }
                    let body = t.text.strip_prefix("--").unwrap_or(&t.text[1..]);
                    let (name, value) = match body.split_once('=') {
                        Some((n, v)) => (n, Some(v)),
                        None => (
                            body,
                            self.toks
                                .get(i + 1)
                                .filter(|n| n.src == Src::Arg && !n.text.starts_with('-'))
                                .map(|n| n.text),
                        ),
                    };
                    if name == want { ok(value) } else { None }
                })
            }
            Word(w) => self
                .toks
                .iter()
                .filter(|t| t.src == Src::Arg && t.text == w)
                .find_map(|_| ok(None)),
            Pair(a, b) => self.toks.iter().enumerate().find_map(|(i, t)| {
                if t.text != a {
                    return None;
                }
                let next = self.toks[i + 1..]
                    .iter()
                    .take(2)
                    .find(|n| !matches!(n.text, ":" | "="));
                if next.is_some_and(|n| n.text == b && n.src == t.src) {
                    ok(None)
                } else {
                    None
                }
            }),
            Setting(name) => self
                .env()
                .filter(|(n, _)| name_matches(name, n))
                .find_map(|(_, v)| ok(v))
                .or_else(|| {
                    self.toks.iter().find_map(|t| {
                        let (n, v) = setting_parts(t)?;
                        if name_matches(name, n) {
                            ok(Some(v.get()))
                        } else {
                            None
                        }
                    })
                }),
        }
    }
}

/// How a piece of evidence reads in a message: the key, and the value that made it count.
pub(super) fn label(ev: Ev, value: Option<&str>) -> String {
    let key = match ev.key {
        Identity => return String::new(),
        Setting(k) => k.replace('#', "N"),
        Flag(k) | Env(k) | Word(k) => k.to_string(),
        Pair(a, b) => return format!("{a} \"{b}\""),
    };
    let Some(v) = value.map(str::trim) else {
        return key;
    };
    match ev.test {
        Test::Present | Test::Lacks(_) => key,
        Test::Is(x) => format!("{key}={x}"),
        // A short list as written; else the word that holds the role.
        Test::Contains(_)
            if v.len() <= 40 && !v.contains(|c: char| c.is_whitespace() || "\"'".contains(c)) =>
        {
            format!("{key}={v}")
        }
        Test::Contains(ns) => {
            let w = first_word(v);
            match ns.iter().find(|n| contains_ci(v, n)) {
                Some(_) if ns.iter().any(|n| contains_ci(w, n)) => format!("{key}={}", cut(w, 40)),
                Some(n) => format!("{key}=…{n}…"),
                None => key,
            }
        }
    }
}
