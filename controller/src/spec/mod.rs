//! Spec files: the types users write, loading them from a directory with located errors,
//! validating them, keeping the last good state per file, and their JSON Schemas.

pub mod encrypted;
pub mod engine_api;
pub mod files;
mod header;
pub mod in_swarm;
pub mod kept;
pub mod load;
pub mod located;
pub mod quantity;
pub mod reference;
pub mod schema;
pub mod stack;
pub mod store;
pub mod types;
pub mod validate;

pub use encrypted::AgeIdentities;
pub use engine_api::EngineApiVersion;
pub use load::{FileLoad, LoadDirError, LoadedDir, load_dir, load_file, load_str};
pub use located::{DocumentFields, FieldLocations, Located, SpecError, field_path};
pub use quantity::{DurationStr, MemoryQuantity, QuantityError};
pub use schema::{crds, write_crds};
pub use stack::{StackKind, StackSpec, SwarmStack};
pub use store::{BURST_FILES, Desired, FIRST_OF_BURST, ReadScope, SpecStore};
pub use types::*;
pub use validate::{validate, validate_object};
