//! Helpers of the multi-host test (`tests/multihost.rs`): network
//! namespaces joined by veth pairs on a bridge (one "host" per process
//! group), processes started inside them, a PKI for the coordinator's
//! address, the sweep the test runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::proc::{BIN, Proc};

/// Namespace names: `sigsweep-mh<pid>-<role>`.
pub const PREFIX: &str = "sigsweep-mh";
pub const ETCD_PORT: u16 = 2379;
pub const COORD_PORT: u16 = 50051;
pub const CAP_NET_ADMIN: u32 = 12;

// ------------------------------------------------------------------ probe

/// Why this machine cannot run the test, if it cannot.
pub fn probe(pid: u32) -> Result<(), String> {
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("`ip -V` failed: {}", text(&o))),
        Err(e) => return Err(format!("`ip` (iproute2) cannot run: {e}")),
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if cap_eff & (1 << CAP_NET_ADMIN) == 0 {
        return Err(format!(
            "no CAP_NET_ADMIN (CapEff {cap_eff:#x}): network namespaces need root or that capability"
        ));
    }
    let name = format!("{PREFIX}{pid}-probe");
    let out = ip(&["netns", "add", &name]);
    if !out.status.success() {
        return Err(format!(
            "`ip netns add` does not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The devices of the topology: a bridge and a veth pair.
    let devices: [&[&str]; 2] = [
        &["link", "add", "br0", "type", "bridge"],
        &["link", "add", "va", "type", "veth", "peer", "name", "vb"],
    ];
    let devices = devices.iter().try_for_each(|args| {
        let out = ip(&[&["-n", name.as_str()], *args].concat());
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` does not work here: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    });
    let out = ip(&["netns", "del", &name]);
    devices?;
    if !out.status.success() {
        return Err(format!(
            "`ip netns del` does not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

// ------------------------------------------------------------- topology

pub fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip")
}

/// `ip ARGS`, which must succeed.
pub fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out)
    );
}

/// The namespaces of one run: a switch holding bridge `br0`, and one node
/// per host with `lo` up and `eth0`, a veth whose peer is a bridge port.
/// Drop kills every process left in them, then deletes them (the bridge
/// and the veth pairs go with them).
pub struct Net {
    pub base: String,
    pub switch: String,
    pub nodes: Vec<String>,
    pub subnet: String,
}

impl Net {
    pub fn new(pid: u32) -> Self {
        // Private to these namespaces, so it cannot collide with the host;
        // derived from the pid all the same, so concurrent runs differ.
        let subnet = format!("10.{}.{}", 100 + (pid >> 8) % 100, pid & 0xff);
        let base = format!("{PREFIX}{pid}");
        let net = Self {
            switch: format!("{base}-sw"),
            base,
            nodes: Vec::new(),
            subnet,
        };
        ip_ok(&["netns", "add", &net.switch]);
        ip_ok(&["-n", &net.switch, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            &net.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        ip_ok(&["-n", &net.switch, "link", "set", "br0", "up"]);
        net
    }

    /// Adds host `role` at `10.x.y.host`; returns the namespace name.
    pub fn host(&mut self, role: &str, host: u8) -> String {
        let ns = format!("{}-{role}", self.base);
        ip_ok(&["netns", "add", &ns]);
        self.nodes.push(ns.clone());
        let port = format!("p-{role}");
        // Both ends are created inside namespaces of this run: nothing is
        // ever added to the machine's own network namespace.
        ip_ok(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        ip_ok(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip_ok(&["-n", &self.switch, "link", "set", &port, "up"]);
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.addr(host)),
            "dev",
            "eth0",
        ]);
        ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    pub fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    /// Every namespace of this run.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.nodes.iter().chain(std::iter::once(&self.switch))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let names: Vec<String> = self.all().cloned().collect();
        for ns in &names {
            delete_namespace(ns);
        }
    }
}

/// SIGKILLs whatever runs in `ns` (only processes this test started run
/// there), then deletes it.
pub fn delete_namespace(ns: &str) {
    let out = ip(&["netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    if !out.stdout.is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ip(&["netns", "del", ns]);
    if !out.status.success() {
        eprintln!("multihost: could not delete namespace {ns}: {}", text(&out));
    }
}

/// Namespaces of this test whose run no longer exists (it was killed
/// before its guard could run): deleted.
pub fn delete_stale_namespaces() {
    let out = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("multihost: deleting {name}, left by a run that was killed");
            delete_namespace(name);
        }
    }
}

pub fn namespaces_of(pid: u32) -> Vec<String> {
    let out = ip(&["netns", "list"]);
    let mine = format!("{PREFIX}{pid}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&mine))
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------ processes

/// Starts `program ARGS` inside network namespace `ns` (`ip netns exec`
/// execs it: the child is the process itself).
pub fn in_ns(what: &str, ns: &str, dir: &Path, program: &str, args: &[String]) -> Proc {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]).args(args);
    Proc::start(what, dir, command)
}

pub fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn etcd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIGSWEEP_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
        .expect(
            "etcd is not installed (no `etcd` on PATH, no /usr/bin/etcd, SIGSWEEP_ETCD_BIN unset): \
             run `.ci/install-deps.sh` (installs the `etcd-server` package)",
        )
}

/// Waits until a TCP connection from namespace `ns` to `addr:port`
/// succeeds (bash's /dev/tcp: no tool beyond bash needed).
pub fn wait_port(ns: &str, addr: &str, port: u16, limit: Duration, procs: &mut [&mut Proc]) {
    let deadline = Instant::now() + limit;
    let script = format!("exec 3<>/dev/tcp/{addr}/{port}");
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                panic!("{} exited with {status}\n{}", p.what, p.log());
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr}:{port} (seen from {ns}) after {limit:?}\n{}",
            logs(&procs.iter().map(|p| &**p).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------- PKI

pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// A CA, a server certificate whose only name is the coordinator's IP
/// address (an IP SAN: the clients verify exactly that), and one client
/// certificate shared by the workers and the CLI.
pub fn make_pki(dir: &Path, coordinator_ip: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sigsweep multihost test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec![SanType::IpAddress(
            coordinator_ip.parse().expect("coordinator ip"),
        )],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec![SanType::DnsName("worker".try_into().expect("dns name"))],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path.to_str().expect("utf8 path").to_string()
    };
    Pki {
        ca: write("ca.crt", &ca.pem()),
        server_cert: write("server.crt", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

// ------------------------------------------------------------------ sweep

pub const CONFIGS: usize = 2;
pub const SEEDS: usize = 4;
pub const TRIALS: usize = CONFIGS * SEEDS;

/// `CONFIGS` × `SEEDS` late-fusion trials on synthetic data, each long
/// enough (about a second on one core) that both workers get trials.
pub fn sweep_file(dir: &Path) -> PathBuf {
    let path = dir.join("multihost.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "multihost"
seeds = {SEEDS}
baseline = {{ modality_hidden = 8 }}

[model]
name = "late-fusion"
hidden = 16

[dataset]
kind = "synthetic"
generator = "fusion"
params = {{ n_train = 6000, n_valid = 64, n_test = 64, classes = 3, noise = 1.0 }}

[training]
epochs = 6
batch_size = 32
lr = 0.005

[grid]
modality_hidden = [2, 8]

[metrics]
select = "accuracy"
report = {{ accuracy = "max" }}
"#
        ),
    )
    .expect("write sweep");
    path
}

/// `sigsweep ARGS` run in namespace `ns`.
pub fn sigsweep_in(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, BIN])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run sigsweep")
}

/// `(completed, total, failed)` from a `sigsweep status SWEEP` line:
/// `ID  STATE  C/T done, F failed, R running, Q queued`.
pub fn parse_status(line: &str) -> Option<(String, usize, usize, usize)> {
    let mut words = line.split_whitespace();
    let _id = words.next()?;
    let state = words.next()?.to_string();
    let (completed, total) = words.next()?.split_once('/')?;
    let _done = words.next()?;
    let failed = words.next()?;
    Some((
        state,
        completed.parse().ok()?,
        total.parse().ok()?,
        failed.parse().ok()?,
    ))
}
