//! What stsguard added to a pod template, kept on the template itself (annotation
//! `stsguard.io/added`, JSON), so that removing an annotation removes exactly what it added and
//! nothing the user wrote.
//!
//! Only what cannot be told apart from the user's by its name is listed: the identity variables
//! of each container (a user's own `POD_NAME` looks like stsguard's), the anti-affinity term
//! (so does a user's term), the image pull secrets added for the role image, and whether the
//! roles were applied (a template may carry `stsguard.io/managed` of the user's). stsguard's own
//! names need no list: the `stsguard-role` init container, the `stsguard-role` and
//! `stsguard-role-config` volumes and their mounts, the `stsguard.io/` template label and
//! annotations.
//!
//! The record travels with the template: a rollback (`kubectl rollout undo`) brings back the
//! record of the template it restores. A record that does not read (edited by hand) lists
//! nothing: stsguard then removes only what its own names identify.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::{Deserialize, Serialize};

use crate::k8s::keys;

/// The anti-affinity term stsguard added: with the StatefulSet's selector, it is the term.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Term {
    /// `preferred` or `required`.
    pub mode: String,
    pub topology_key: String,
    /// The weight of a preferred term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// The record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    /// Per container (and init container) name, the variables stsguard injected there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<Term>,
    /// The pod's `imagePullSecrets`, added for the role image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// The roles were applied (init container, volumes, mounts, the markers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub roles: bool,
}

impl Added {
    /// The record on `sts`'s pod template; empty when there is none or it does not read.
    pub fn of(sts: &StatefulSet) -> Added {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(keys::ADDED))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self == &Added::default()
    }

    /// The variables recorded for container `name`.
    pub fn env_of(&self, name: &str) -> Option<&BTreeSet<String>> {
        self.env.get(name)
    }

    /// Writes the record onto `sts`'s pod template (removes it when empty). Deterministic: the
    /// same record is the same text, so a mutation of a mutated object changes nothing.
    pub fn write(&self, sts: &mut StatefulSet) {
        let Some(spec) = sts.spec.as_mut() else {
            return;
        };
        if self.is_empty() {
            if let Some(a) = spec
                .template
                .metadata
                .as_mut()
                .and_then(|m| m.annotations.as_mut())
            {
                a.remove(keys::ADDED);
            }
            return;
        }
        let Ok(text) = serde_json::to_string(self) else {
            return;
        };
        let anns = spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default);
        if anns.get(keys::ADDED) != Some(&text) {
            anns.insert(keys::ADDED.to_string(), text);
        }
    }
}
