//! This process's default identity.

/// Longest hardware description a worker sends and a coordinator stores.
pub const MAX_HARDWARE_LEN: usize = 512;

/// This machine's processors as a report states them:
/// `"CPU: AMD EPYC 7B13 (2 logical CPUs); GPU: 8× NVIDIA H100 80GB HBM3"`.
/// Read from `/proc/cpuinfo` and `/proc/driver/nvidia/gpus/*/information`
/// (no driver library needed); what cannot be read is left out.
pub fn hardware() -> String {
    let mut parts = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.split_whitespace().collect::<Vec<_>>().join(" "));
    let logical = std::thread::available_parallelism().map_or(0, |n| n.get());
    parts.push(format!(
        "CPU: {} ({logical} logical CPUs)",
        model.unwrap_or_else(|| std::env::consts::ARCH.to_string())
    ));
    let mut gpus: Vec<String> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/driver/nvidia/gpus") {
        for entry in dir.flatten() {
            let info =
                std::fs::read_to_string(entry.path().join("information")).unwrap_or_default();
            if let Some(m) = info
                .lines()
                .find_map(|l| l.strip_prefix("Model:"))
                .map(|m| m.trim().to_string())
            {
                gpus.push(m);
            }
        }
    }
    gpus.sort();
    let mut counted: Vec<(String, usize)> = Vec::new();
    for g in gpus {
        match counted.last_mut() {
            Some((m, n)) if *m == g => *n += 1,
            _ => counted.push((g, 1)),
        }
    }
    if !counted.is_empty() {
        let list: Vec<String> = counted.iter().map(|(m, n)| format!("{n}× {m}")).collect();
        parts.push(format!("GPU: {}", list.join(", ")));
    }
    bounded_hardware(&parts.join("; "))
}

/// `text` as a hardware description may be: control characters dropped,
/// cut to [`MAX_HARDWARE_LEN`] bytes at a character boundary.
pub fn bounded_hardware(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).collect();
    while out.len() > MAX_HARDWARE_LEN {
        out.pop();
    }
    out
}

/// `host-pid`: the default worker name and election candidate id.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sigsweep".into());
    format!("{host}-{}", std::process::id())
}
