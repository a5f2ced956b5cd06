//! Identifiers as types: a trial id is not a sweep id is not a worker id.
//! Each wraps its text (serialised as a plain string, so files and the wire
//! are unchanged) and reads as `&str` where text is needed.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

id!(
    /// A trial: one configuration × seed (a digest of its fixed settings,
    /// configuration and seed).
    TrialId
);
id!(
    /// A sweep: its name and a digest of its specification.
    SweepId
);
id!(
    /// A worker registration (or, in a result, the worker's name).
    WorkerId
);

#[cfg(test)]
mod tests {
    use super::{SweepId, TrialId};

    #[test]
    fn ids_serialise_as_plain_strings_and_read_as_text() {
        let id = TrialId::from("abc");
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"abc\"");
        assert_eq!(
            serde_json::from_str::<TrialId>("\"abc\"").expect("json"),
            id
        );
        assert!(id == "abc" && id.starts_with('a'));
        let map: std::collections::HashMap<SweepId, u32> = [(SweepId::from("s"), 1)].into();
        assert_eq!(map.get("s"), Some(&1));
    }
}
