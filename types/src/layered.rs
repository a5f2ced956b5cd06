//! Layered settings: flags and environment over a configuration file over
//! the defaults. A settings struct has one `Option` per setting; a layer
//! fills what the one above left unset.

/// Fills unset fields from a lower layer.
pub trait Layered: Sized {
    fn layer(self, lower: Self) -> Self;
}

/// Implements [`Layered`] for a struct of `Option` fields:
/// `layered!(Settings { a, b, c });`.
#[macro_export]
macro_rules! layered {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        impl $crate::layered::Layered for $ty {
            fn layer(self, lower: Self) -> Self {
                Self { $($field: self.$field.or(lower.$field),)* }
            }
        }
    };
}

/// `given`, then `file` (when there is one), then `defaults`.
pub fn resolve<T: Layered>(given: T, file: Option<T>, defaults: T) -> T {
    match file {
        Some(file) => given.layer(file).layer(defaults),
        None => given.layer(defaults),
    }
}
