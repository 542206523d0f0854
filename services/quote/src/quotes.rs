//! The built-in quotes, pre-rendered to JSON once per replica so serving one allocates nothing.

use axum::body::Bytes;
use serde::Serialize;

/// (quote, language) pairs. Real quotes, attributed in the text.
pub const QUOTES: &[(&str, &str)] = &[
    (
        "Simplicity is prerequisite for reliability. - Edsger W. Dijkstra",
        "EN",
    ),
    (
        "Premature optimization is the root of all evil. - Donald Knuth",
        "EN",
    ),
    (
        "Any organization that designs a system will produce a design whose structure is a copy of the organization's communication structure. - Melvin E. Conway",
        "EN",
    ),
    (
        "There are only two hard things in Computer Science: cache invalidation and naming things. - Phil Karlton",
        "EN",
    ),
    ("Talk is cheap. Show me the code. - Linus Torvalds", "EN"),
    ("Everything fails, all the time. - Werner Vogels", "EN"),
    ("Der Mensch ist, was er isst. - Ludwig Feuerbach", "DE"),
    ("Cogito, ergo sum. - René Descartes", "LA"),
];

/// The wire form, field order as the seed: `quote`, `ipAddress`, `language`.
#[derive(Serialize)]
struct Wire<'a> {
    quote: &'a str,
    #[serde(rename = "ipAddress")]
    ip_address: &'a str,
    language: &'a str,
}

/// Every quote's JSON body with this replica's address baked in.
#[derive(Debug, Clone)]
pub struct Rendered {
    bodies: Vec<Bytes>,
}

impl Rendered {
    /// Renders [`QUOTES`] for a replica reporting `ip_address`.
    pub fn new(ip_address: &str) -> Self {
        let bodies = QUOTES
            .iter()
            .map(|(quote, language)| {
                let wire = Wire {
                    quote,
                    ip_address,
                    language,
                };
                Bytes::from(serde_json::to_vec(&wire).expect("plain strings serialise"))
            })
            .collect();
        Self { bodies }
    }

    /// The body of quote `n`, wrapping around the set; cloning `Bytes` is a reference count.
    pub fn get(&self, n: u64) -> Bytes {
        let index = (n % self.bodies.len() as u64) as usize;
        self.bodies[index].clone()
    }

    /// How many quotes there are.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// Never true; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }
}
