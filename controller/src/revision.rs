//! The commit a desired state was loaded from (`run --source git`): written on every object
//! the operator writes, named in events, shown by `get` and the page.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Label on each object the operator writes: the commit it was written at. It is not part of
/// the spec hash, so a commit that leaves an object's spec alone does not write it.
pub const REVISION_LABEL: &str = "swarm-operator.io/revision";

/// A commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Revision(String);

/// Not a commit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a commit id: expected 40 (or 64) hex digits")]
pub struct NotARevision;

impl Revision {
    /// `text` if it is a full commit id (upper case is accepted and lowered).
    pub fn parse(text: &str) -> Result<Self, NotARevision> {
        let full = matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
        if full {
            Ok(Revision(text.to_ascii_lowercase()))
        } else {
            Err(NotARevision)
        }
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 digits, as `git log --oneline` shows them.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Revision {
    type Error = NotARevision;
    fn try_from(text: String) -> Result<Self, NotARevision> {
        Revision::parse(&text)
    }
}

impl From<Revision> for String {
    fn from(revision: Revision) -> String {
        revision.0
    }
}

impl std::str::FromStr for Revision {
    type Err = NotARevision;
    fn from_str(text: &str) -> Result<Self, NotARevision> {
        Revision::parse(text)
    }
}

/// The git source's commit id, as the desired state, labels and events carry it.
impl From<crate::git::Revision> for Revision {
    fn from(revision: crate::git::Revision) -> Revision {
        Revision(revision.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_hex_ids_are_revisions() {
        let id = "3F2A9C1".to_owned() + &"0".repeat(33);
        let revision = Revision::parse(&id).unwrap();
        assert_eq!(revision.short(), "3f2a9c1");
        assert_eq!(revision.as_str().len(), 40);
        assert!(Revision::parse(&"a".repeat(64)).is_ok());
        for bad in ["3f2a9c1", "", &"g".repeat(40), &"a".repeat(41)] {
            assert_eq!(Revision::parse(bad), Err(NotARevision), "{bad}");
        }
    }
}
