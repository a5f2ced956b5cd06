//! The bearer token on every request.

use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// Adds `authorization: Bearer <token>` to every request, when a token is
/// set. The value is marked sensitive and never printed.
#[derive(Clone, Default)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerAuth(<redacted>)"
        } else {
            "BearerAuth(none)"
        })
    }
}

impl BearerAuth {
    /// `token` is trimmed; fails if it is empty or not valid in an HTTP
    /// header.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        match token.map(str::trim) {
            None => Ok(Self(None)),
            Some("") => Err("the token file is empty".into()),
            Some(t) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {t}").parse().map_err(|_| {
                        "the token contains characters not allowed in a header".to_string()
                    })?;
                value.set_sensitive(true);
                Ok(Self(Some(value)))
            }
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::BearerAuth;

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert!(BearerAuth::new(Some("  ")).is_err());
        assert!(BearerAuth::new(Some("a\nb")).is_err());
        let auth = BearerAuth::new(Some("secret\n")).expect("valid token");
        assert!(!format!("{auth:?}").contains("secret"));
    }
}
