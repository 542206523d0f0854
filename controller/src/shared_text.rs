//! One allocation per distinct text where many objects of a view carry the same one.

use std::collections::HashSet;
use std::sync::Arc;

/// Hands out texts shared: equal texts asked for through one pool are one allocation.
///
/// Thousands of tasks carry the same status message and error, thousands of services the same
/// condition message; as a `String` each, every copy is 24 bytes plus a heap chunk of 32–80.
#[derive(Debug, Default)]
pub struct TextPool(HashSet<Arc<str>>);

impl TextPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// `text`, shared with every equal text this pool handed out before.
    pub fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// Points `mine` at `theirs` when the two texts are equal, so that the view holds one copy.
pub fn adopt_if_equal(mine: &mut Arc<str>, theirs: &Arc<str>) {
    if **mine == **theirs {
        *mine = Arc::clone(theirs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_are_one_allocation_and_different_ones_stay_apart() {
        let mut pool = TextPool::new();
        let first = pool.share("pending task scheduling");
        let again = pool.share(&String::from("pending task scheduling"));
        let other = pool.share("started");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(&*other, "started");
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn an_equal_text_is_adopted_and_a_different_one_is_not() {
        let theirs: Arc<str> = Arc::from("a.yaml");
        let mut equal: Arc<str> = Arc::from("a.yaml");
        let mut different: Arc<str> = Arc::from("b.yaml");
        adopt_if_equal(&mut equal, &theirs);
        adopt_if_equal(&mut different, &theirs);
        assert!(Arc::ptr_eq(&equal, &theirs));
        assert_eq!(&*different, "b.yaml");
    }
}
