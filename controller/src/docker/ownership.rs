//! Ownership: the labels by which the operator knows an object as its own (instance, spec
//! hash, source file), and the rolled-back marker.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::desired::DesiredObject;
use crate::shared_text::adopt_if_equal;

use crate::desired::definition::{
    DEFAULT_INSTANCE, DEPENDS_ON_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    ROLLED_BACK_REASON_LABEL, ROLLED_BACK_SPEC_LABEL, SOURCE_FILE_LABEL, SPEC_HASH_LABEL,
    SPEC_VALUE_LABEL_PREFIX,
};

/// The operator's labels on an object it owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Carries `swarm-operator.io/managed-by=swarm-operator`.
    pub managed: bool,
    /// The operator instance that owns it (`None`: written before instances existed, which
    /// counts as the default instance).
    pub instance: Option<Arc<str>>,
    /// The spec hash it was last written from.
    pub spec_hash: Option<Arc<str>>,
    /// The spec file it came from.
    pub source_file: Option<Arc<str>>,
    /// The policy labels ([`SPEC_VALUE_LABEL_PREFIX`]…, [`DEPENDS_ON_LABEL`]) it was last
    /// written with.
    pub policy: BTreeMap<String, String>,
    /// The spec swarm rolled back, if the operator marked one ([`ROLLED_BACK_SPEC_LABEL`]).
    pub rolled_back: Option<Box<RolledBack>>,
    /// The commit it was last written at ([`crate::revision::REVISION_LABEL`]); not compared
    /// by the plan.
    pub revision: Option<String>,
}

/// A spec that swarm rolled back, as marked on the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The hash of the spec that was rolled back.
    pub spec_hash: String,
    /// Swarm's message at the time, e.g. `update rolled back due to failure or early
    /// termination of task …`.
    pub reason: String,
}

impl Ownership {
    /// Reads the operator's labels out of an object's labels.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        Ownership {
            managed: labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE),
            instance: labels.get(INSTANCE_LABEL).map(|v| v.as_str().into()),
            spec_hash: labels.get(SPEC_HASH_LABEL).map(|v| v.as_str().into()),
            source_file: labels.get(SOURCE_FILE_LABEL).map(|v| v.as_str().into()),
            policy: labels
                .iter()
                .filter(|(k, _)| k.starts_with(SPEC_VALUE_LABEL_PREFIX) || *k == DEPENDS_ON_LABEL)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            rolled_back: labels.get(ROLLED_BACK_SPEC_LABEL).map(|hash| {
                Box::new(RolledBack {
                    spec_hash: hash.clone(),
                    reason: labels
                        .get(ROLLED_BACK_REASON_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                })
            }),
            revision: labels.get(crate::revision::REVISION_LABEL).cloned(),
        }
    }

    /// The operator's labels as they are on the object: what [`Ownership::from_labels`] read,
    /// written back unchanged by a write that must not change them.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.policy.clone();
        if self.managed {
            labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
        }
        for (label, value) in [
            (INSTANCE_LABEL, self.instance.as_deref()),
            (SPEC_HASH_LABEL, self.spec_hash.as_deref()),
            (SOURCE_FILE_LABEL, self.source_file.as_deref()),
            (crate::revision::REVISION_LABEL, self.revision.as_deref()),
        ] {
            if let Some(value) = value {
                labels.insert(label.to_owned(), value.to_owned());
            }
        }
        if let Some(mark) = &self.rolled_back {
            labels.insert(ROLLED_BACK_SPEC_LABEL.to_owned(), mark.spec_hash.clone());
            labels.insert(ROLLED_BACK_REASON_LABEL.to_owned(), mark.reason.clone());
        }
        labels
    }

    /// The services it was written to depend on.
    pub fn depends_on(&self) -> Vec<String> {
        self.policy
            .get(DEPENDS_ON_LABEL)
            .map(|v| {
                v.split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Points the texts it shares with `desired` (instance, spec hash, source file) at
    /// `desired`'s: one copy of each in the view, however many services carry them.
    pub fn share_text<T>(&mut self, desired: &DesiredObject<T>) {
        for (mine, theirs) in self
            .label_texts_mut()
            .into_iter()
            .zip(desired.label_texts())
        {
            if let Some(mine) = mine {
                adopt_if_equal(mine, theirs);
            }
        }
    }

    /// Its instance, spec hash and source file labels, in
    /// [`DesiredObject::label_texts_mut`]'s order.
    pub fn label_texts_mut(&mut self) -> [&mut Option<Arc<str>>; 3] {
        [
            &mut self.instance,
            &mut self.spec_hash,
            &mut self.source_file,
        ]
    }

    /// [`Ownership::label_texts_mut`], to read.
    pub fn label_texts(&self) -> [&Option<Arc<str>>; 3] {
        [&self.instance, &self.spec_hash, &self.source_file]
    }

    /// Whether the operator instance `instance` owns the object.
    pub fn is_owned_by(&self, instance: &str) -> bool {
        self.managed && self.instance.as_deref().unwrap_or(DEFAULT_INSTANCE) == instance
    }

    /// The labels to write for an object owned by `instance`.
    pub fn labels(spec_hash: &str, source_file: &str, instance: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), instance.to_owned()),
            (SPEC_HASH_LABEL.to_owned(), spec_hash.to_owned()),
            (SOURCE_FILE_LABEL.to_owned(), source_file.to_owned()),
        ])
    }
}
