//! Cutting text that comes from a request before it goes into a message, a log line or a label.

use std::borrow::Cow;

/// `s` cut to at most `max` bytes on a character boundary, with `…` and the number of bytes cut
/// appended when it was longer (so a reader knows it was cut, and by how much).
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[{} bytes cut]", &s[..end], s.len() - end))
}

/// A part of a user's value quoted in a message: 80 bytes at most.
pub fn quote(s: &str) -> Cow<'_, str> {
    cut(s, 80)
}

/// A warning line cut to the API server's limit (it drops warnings past 256 characters): 250
/// bytes at most, on a character boundary, ending in `...` when cut.
pub fn warning(s: &str) -> String {
    const MAX: usize = 250;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// An object as kubectl names it in messages: `StatefulSet ns/name` (`Namespace name` for a
/// cluster-scoped one; `StatefulSet in ns` when the name is not known yet). Each part is quoted
/// short ([`quote`]).
pub fn object(kind: &str, namespace: &str, name: &str) -> String {
    // The API server sends a Namespace's own name as the review's namespace.
    let namespace = if kind == "Namespace" { "" } else { namespace };
    match (namespace.is_empty(), name.is_empty()) {
        (false, false) => format!("{kind} {}/{}", quote(namespace), quote(name)),
        (true, false) => format!("{kind} {}", quote(name)),
        (false, true) => format!("{kind} in {}", quote(namespace)),
        (true, true) => kind.to_string(),
    }
}

/// A warning line about `object` (see [`object`]): `StatefulSet ns/name: [id] message`, cut to
/// the API server's limit. kubectl prints identical warnings once, so the findings of two
/// objects must never read alike.
pub fn warning_about(object: &str, line: &str) -> String {
    warning(&format!("{object}: {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        let s = "é".repeat(100); // 200 bytes
        let c = cut(&s, 11);
        assert!(c.starts_with(&"é".repeat(5)), "{c}");
        assert!(c.ends_with("…[190 bytes cut]"), "{c}");
        assert!(quote(&"x".repeat(10_000)).len() < 110);
        assert_eq!(warning("short"), "short");
        let w = warning(&"é".repeat(200));
        assert!(w.len() <= 250 && w.ends_with("..."), "{w}");
    }

    #[test]
    fn objects_are_named_as_kubectl_names_them() {
        assert_eq!(object("StatefulSet", "cap", "db"), "StatefulSet cap/db");
        assert_eq!(object("Namespace", "", "cap"), "Namespace cap");
        assert_eq!(object("Namespace", "cap", "cap"), "Namespace cap");
        assert_eq!(object("StatefulSet", "cap", ""), "StatefulSet in cap");
        assert_eq!(
            warning_about("StatefulSet cap/db", "[env-kept] x"),
            "StatefulSet cap/db: [env-kept] x"
        );
        assert!(object("Pod", "n", &"x".repeat(1000)).len() < 120);
    }
}
