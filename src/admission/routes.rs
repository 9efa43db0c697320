//! The route table: what each endpoint handles, as (API group, resource[/subresource],
//! operations). The webhook configurations (`crate::webhooks`) are built from these tables and
//! the server dispatches by them, so the two cannot drift apart.

use super::Endpoint;

/// One route: (API group, resource[/subresource], operations).
pub type Route = (&'static str, &'static str, &'static [&'static str]);

pub const MUTATE: &[Route] = &[
    ("apps", "statefulsets", &["CREATE", "UPDATE"]),
    ("", "pods", &["CREATE"]),
];
pub const VALIDATE: &[Route] = &[
    ("apps", "statefulsets", &["CREATE", "UPDATE", "DELETE"]),
    ("apps", "statefulsets/scale", &["UPDATE"]),
];
/// Deletes of what a protected StatefulSet keeps: its namespace and its claims. Served at
/// `/validate` too, registered as a webhook of its own (`crate::webhooks::PROTECT_WEBHOOK`)
/// with its own failure policy.
pub const PROTECT: &[Route] = &[
    ("", "namespaces", &["DELETE"]),
    ("", "persistentvolumeclaims", &["DELETE"]),
];

/// Does `endpoint` handle this request? Anything else is allowed unexamined.
pub fn handles(
    endpoint: Endpoint,
    group: &str,
    resource: &str,
    sub_resource: Option<&str>,
    operation: &str,
) -> bool {
    let tables: &[&[Route]] = match endpoint {
        Endpoint::Mutate => &[MUTATE],
        Endpoint::Validate => &[VALIDATE, PROTECT],
    };
    tables.iter().copied().flatten().any(|(g, r, ops)| {
        *g == group
            && match (r.split_once('/'), sub_resource) {
                (Some((res, sub)), Some(s)) => res == resource && sub == s,
                (None, None) => *r == resource,
                _ => false,
            }
            && ops.contains(&operation)
    })
}
