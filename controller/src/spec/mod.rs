//! Spec files: the types users write, loading them from a directory with located errors,
//! validating them, keeping the last good state per file, and their JSON Schemas.

pub mod located;
pub mod quantity;
pub mod types;

pub use located::{FieldLocations, Located, SpecError};
pub use quantity::{DurationStr, MemoryQuantity, QuantityError};
pub use types::*;
