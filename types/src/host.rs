//! This process's default identity.

/// `host-pid`: the default worker name and election candidate id.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sigsweep".into());
    format!("{host}-{}", std::process::id())
}
