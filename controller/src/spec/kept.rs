//! A spec file's objects as the spec store keeps them between reloads: services as JSON.
//!
//! The store keeps the last good objects of every file for as long as the file is there, and
//! a typed `SwarmService` is about 1.2 kB a service on the heap (864 bytes inline, plus a
//! dozen small allocations for its strings, lists and maps) where its JSON is one allocation
//! of 300–400 bytes. A reload that finds nothing new decodes nothing (the store compares the
//! kept lists by pointer); one that does decodes every service of the directory once, about
//! 3 µs each, next to the 170 µs it takes to parse one from its file.

use std::fmt;
use std::sync::Arc;

use super::located::Located;
use super::types::{Object, SwarmService};

/// One object as kept: a service as its JSON, any other kind as it is (networks are small, and
/// configs and secrets carry content the loader read from other files, which JSON would not
/// hold).
#[derive(Clone, PartialEq)]
pub enum KeptObject {
    /// A `SwarmService`, serialized; decodes to exactly the service it was made from (checked
    /// when it is made).
    Service(Box<[u8]>),
    /// Any other object, or a service whose JSON would not decode to itself.
    Typed(Object),
}

impl fmt::Debug for KeptObject {
    // The JSON holds env values: only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptObject::Service(json) => {
                write!(f, "<SwarmService as {} bytes of JSON>", json.len())
            }
            KeptObject::Typed(object) => object.fmt(f),
        }
    }
}

impl KeptObject {
    /// How `object` is kept.
    pub fn keep(object: &Object) -> Self {
        if let Object::Service(service) = object
            && let Ok(json) = serde_json::to_vec(&**service)
            // What is kept must come back as it was; a field that JSON does not carry would
            // change the service silently, so such a service stays typed.
            && serde_json::from_slice::<SwarmService>(&json).is_ok_and(|back| back == **service)
        {
            return KeptObject::Service(json.into_boxed_slice());
        }
        KeptObject::Typed(object.clone())
    }

    /// The object again.
    pub fn object(&self) -> Object {
        match self {
            KeptObject::Service(json) => Object::Service(Arc::new(
                serde_json::from_slice(json)
                    // The same bytes decoded to an equal service when they were kept. No
                    // detail: the error could quote a value.
                    .unwrap_or_else(|_| unreachable!("a kept service decodes as it did when kept")),
            )),
            KeptObject::Typed(object) => object.clone(),
        }
    }
}

/// A file's objects as kept, shared between the load cache and the store's last good objects
/// (a reload that reads nothing new hands back the very same list).
pub type KeptObjects = Arc<[Located<KeptObject>]>;

/// How `objects` are kept.
pub fn keep(objects: &[Located<Object>]) -> KeptObjects {
    objects
        .iter()
        .map(|located| located.with_value(KeptObject::keep(&located.value)))
        .collect()
}

/// The objects of `kept`, in their order.
pub fn objects(kept: &[Located<KeptObject>]) -> impl Iterator<Item = Located<Object>> + Clone + '_ {
    kept.iter()
        .map(|located| located.with_value(located.value.object()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FileLoad, load_str};
    use std::path::Path;

    fn loaded(text: &str) -> Vec<Located<Object>> {
        match load_str(Path::new("a.yaml"), text) {
            FileLoad::Ok(objects) => objects.to_vec(),
            FileLoad::Failed(errors) => panic!("{errors:#?}"),
        }
    }

    /// Every kind comes back equal, with its place in the file; a service is kept as JSON,
    /// the rest typed.
    #[test]
    fn kept_objects_come_back_as_they_were_loaded() {
        let objects = loaded(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: web, labels: {tier: front}}\nspec:\n  image: nginx:1.27\n  replicas: 2\n  env: {TOKEN: hunter2}\n  ports: [{target: 80, published: 8080}]\n  stopGracePeriod: 1m30s\n  resources: {limits: {memory: 512M, cpus: 0.5}}\n  healthcheck: {test: [CMD, true], interval: 5s}\n  placement: {constraints: [node.role==manager]}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {name: back}\nspec: {driver: overlay}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {name: conf}\nspec: {data: hello}\n",
        );
        let kept = keep(&objects);
        assert!(matches!(kept[0].value, KeptObject::Service(_)));
        assert!(matches!(
            kept[1].value,
            KeptObject::Typed(Object::Network(_))
        ));
        assert!(matches!(
            kept[2].value,
            KeptObject::Typed(Object::Config(_))
        ));
        let again: Vec<_> = super::objects(&kept).collect();
        assert_eq!(again, objects);
        assert_eq!(
            (again[0].line, again[0].column, &*again[0].file),
            (objects[0].line, objects[0].column, Path::new("a.yaml"))
        );
    }

    /// The JSON holds env values: a kept service's `Debug` shows none of it.
    #[test]
    fn a_kept_service_shows_no_value() {
        let kept = keep(&loaded(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: web}\nspec: {image: nginx, env: {TOKEN: hunter2}}\n",
        ));
        let shown = format!("{kept:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("TOKEN"),
            "{shown}"
        );
    }
}
