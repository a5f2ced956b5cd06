//! Multi-host test: etcd, the coordinator, two workers and a CLI client each
//! in its own network namespace ("host"), joined by veth pairs to a Linux
//! bridge in a sixth "switch" namespace, on a private 10.x.y.0/24 subnet
//! that exists only inside those namespaces. Every process is the real
//! binary started with `ip netns exec`; the coordinator serves mutual TLS
//! (certificates made here with rcgen, the server's with an IP SAN for its
//! address) and requires a bearer token to submit. One worker is killed
//! with SIGKILL mid-sweep, after it has completed a trial.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), `ip` (iproute2), and
//! `ip netns add`, bridges and veth pairs that work; otherwise the test
//! prints `multihost: skipped: <reason>` and passes. A missing `etcd` fails
//! it, as in the other etcd tests (`.ci/install-deps.sh` installs it);
//! ports are awaited with bash's `/dev/tcp`.
//!
//! Only namespaces created here are touched; [`Net`] kills what runs in
//! them and deletes them on drop, panics included, and the next run
//! deletes those left by a run that was killed outright.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::proc::{BIN, Proc};

/// Namespace names: `sigsweep-mh<pid>-<role>`.
const PREFIX: &str = "sigsweep-mh";
const ETCD_PORT: u16 = 2379;
const COORD_PORT: u16 = 50051;
const CAP_NET_ADMIN: u32 = 12;

// ------------------------------------------------------------------ probe

/// Why this machine cannot run the test, if it cannot.
fn probe(pid: u32) -> Result<(), String> {
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

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip")
}

/// `ip ARGS`, which must succeed.
fn ip_ok(args: &[&str]) {
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
struct Net {
    base: String,
    switch: String,
    nodes: Vec<String>,
    subnet: String,
}

impl Net {
    fn new(pid: u32) -> Self {
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
    fn host(&mut self, role: &str, host: u8) -> String {
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

    fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    /// Every namespace of this run.
    fn all(&self) -> impl Iterator<Item = &String> {
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
fn delete_namespace(ns: &str) {
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
fn delete_stale_namespaces() {
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

fn namespaces_of(pid: u32) -> Vec<String> {
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
fn in_ns(what: &str, ns: &str, dir: &Path, program: &str, args: &[String]) -> Proc {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]).args(args);
    Proc::start(what, dir, command)
}

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn etcd_binary() -> PathBuf {
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
fn wait_port(ns: &str, addr: &str, port: u16, limit: Duration, procs: &mut [&mut Proc]) {
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

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

/// A CA, a server certificate whose only name is the coordinator's IP
/// address (an IP SAN: the clients verify exactly that), and one client
/// certificate shared by the workers and the CLI.
fn make_pki(dir: &Path, coordinator_ip: &str) -> Pki {
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

const CONFIGS: usize = 2;
const SEEDS: usize = 4;
const TRIALS: usize = CONFIGS * SEEDS;

/// `CONFIGS` × `SEEDS` late-fusion trials on synthetic data, each long
/// enough (about a second on one core) that both workers get trials.
fn sweep_file(dir: &Path) -> PathBuf {
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
fn sigsweep_in(ns: &str, args: &[&str]) -> Output {
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
fn parse_status(line: &str) -> Option<(String, usize, usize, usize)> {
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

#[test]
fn etcd_coordinator_and_workers_on_separate_hosts_finish_a_sweep_exactly_once() {
    let pid = std::process::id();
    if let Err(reason) = probe(pid) {
        eprintln!("multihost: skipped: {reason}");
        return;
    }
    delete_stale_namespaces();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");

    // Hosts: .1 etcd, .2 coordinator, .3 and .4 workers, .5 the CLI.
    let mut net = Net::new(pid);
    let ns_etcd = net.host("etcd", 1);
    let ns_coord = net.host("coord", 2);
    let ns_w1 = net.host("w1", 3);
    let ns_w2 = net.host("w2", 4);
    let ns_cli = net.host("cli", 5);
    let (etcd_ip, coord_ip) = (net.addr(1), net.addr(2));
    eprintln!(
        "multihost: namespaces {:?} on {}.0/24",
        net.all().collect::<Vec<_>>(),
        net.subnet
    );

    let pki = make_pki(dir.path(), &coord_ip);
    let token = dir.path().join("token");
    std::fs::write(&token, "multihost-token\n").expect("token");
    let token = token.to_str().expect("utf8").to_string();

    // etcd on its host's address; peers on its own loopback.
    let client_url = format!("http://{etcd_ip}:{ETCD_PORT}");
    let peer_url = "http://127.0.0.1:2380";
    let etcd_bin = etcd_binary();
    let mut etcd = in_ns(
        "etcd",
        &ns_etcd,
        dir.path(),
        etcd_bin.to_str().expect("utf8"),
        &[
            "--name=multihost".to_string(),
            format!("--data-dir={}", dir.path().join("etcd-data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=multihost={peer_url}"),
        ],
    );
    // Seen from the coordinator's host: the bridge works too.
    wait_port(
        &ns_coord,
        &etcd_ip,
        ETCD_PORT,
        Duration::from_secs(30),
        &mut [&mut etcd],
    );

    let s = |v: &str| v.to_string();
    let mut coord = in_ns(
        "coordinator",
        &ns_coord,
        dir.path(),
        BIN,
        &[
            s("coordinator"),
            s("--listen"),
            format!("{coord_ip}:{COORD_PORT}"),
            s("--store"),
            format!("etcd://{etcd_ip}:{ETCD_PORT}"),
            s("--lease-ttl"),
            s("2s"),
            s("--election-ttl"),
            s("3s"),
            s("--advertise"),
            s("coord"),
            s("--tls-cert"),
            pki.server_cert.clone(),
            s("--tls-key"),
            pki.server_key.clone(),
            s("--tls-ca"),
            pki.ca.clone(),
            s("--token-file"),
            token.clone(),
        ],
    );
    wait_port(
        &ns_cli,
        &coord_ip,
        COORD_PORT,
        Duration::from_secs(30),
        &mut [&mut etcd, &mut coord],
    );

    let url = format!("https://{coord_ip}:{COORD_PORT}");
    let worker = |name: &str, ns: &str| {
        in_ns(
            name,
            ns,
            dir.path(),
            BIN,
            &[
                s("worker"),
                s("--coordinator"),
                url.clone(),
                s("--name"),
                s(name),
                s("--tls-ca"),
                pki.ca.clone(),
                s("--tls-cert"),
                pki.client_cert.clone(),
                s("--tls-key"),
                pki.client_key.clone(),
                s("--orphan-timeout"),
                s("60s"),
            ],
        )
    };
    let mut w1 = worker("w1", &ns_w1);
    let mut w2 = worker("w2", &ns_w2);
    // Both connected (TLS handshake over the bridge, registration) before
    // the sweep exists, so neither can take every trial alone.
    w1.wait_log("registered", Duration::from_secs(30));
    w2.wait_log("registered", Duration::from_secs(30));

    let remote = [
        "--coordinator",
        url.as_str(),
        "--tls-ca",
        pki.ca.as_str(),
        "--tls-cert",
        pki.client_cert.as_str(),
        "--tls-key",
        pki.client_key.as_str(),
    ];
    let with_remote = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(remote.iter())
            .map(|a| a.to_string())
            .collect()
    };
    let cli = |args: &[String]| {
        sigsweep_in(
            &ns_cli,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    let sweep = sweep_file(dir.path());
    let sweep = sweep.to_str().expect("utf8");
    // A client on another host with neither the token nor a client
    // certificate may not submit (nor read).
    let anonymous = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(["--coordinator", url.as_str(), "--tls-ca", pki.ca.as_str()].iter())
            .map(|a| a.to_string())
            .collect()
    };
    for args in [&["submit", sweep][..], &["status"][..]] {
        let out = cli(&anonymous(args));
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("token"),
            "{args:?} without a token or certificate from a non-loopback client must be refused: {}\n{}",
            text(&out),
            logs(&[&coord])
        );
    }
    // With the token and no certificate it may.
    let out = cli(&anonymous(&["submit", sweep, "--token-file", &token]));
    assert!(
        out.status.success(),
        "submit: {}\n{}",
        text(&out),
        logs(&[&etcd, &coord])
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!(
        "multihost: submitted {id} after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Poll from the client host; once w2 has completed a trial and is
    // training the next, SIGKILL it: that trial's lease expires and w1
    // finishes the sweep.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut w2_done_at_kill = None;
    let rows: Vec<serde_json::Value> = loop {
        let out = cli(&with_remote(&["status", &id]));
        let status = parse_status(&String::from_utf8_lossy(&out.stdout));
        let out = cli(&with_remote(&["results", &id]));
        assert!(
            out.status.success(),
            "results: {}\n{}",
            text(&out),
            logs(&[&coord, &w1, &w2])
        );
        let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON result line"))
            .collect();
        if let Some((state, completed, total, failed)) = &status {
            assert_eq!(*total, TRIALS, "{status:?}");
            assert_eq!(*failed, 0, "{status:?}\n{}", logs(&[&coord, &w1, &w2]));
            if state == "finished" {
                assert_eq!(*completed, TRIALS, "{status:?}");
                break rows;
            }
        }
        let by_w2 = rows
            .iter()
            .filter(|r| r["worker"].as_str().is_some_and(|w| w.contains("w2")))
            .count();
        let w2_log = w2.log_text();
        let w2_training =
            w2_log.matches("trial started").count() > w2_log.matches("trial completed").count();
        if w2_done_at_kill.is_none() && by_w2 >= 1 && w2_training {
            w2.kill9();
            w2_done_at_kill = Some(by_w2);
            eprintln!(
                "multihost: killed w2 (SIGKILL) after {:.1}s, {} results in, {by_w2} by w2",
                started.elapsed().as_secs_f64(),
                rows.len()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not finish: {status:?}\n{}",
            logs(&[&etcd, &coord, &w1, &w2])
        );
        std::thread::sleep(Duration::from_millis(300));
    };

    // Exactly one completed result per (configuration, seed); both hosts'
    // workers did some of them.
    assert_eq!(rows.len(), TRIALS, "one result per trial: {rows:#?}");
    let pairs: HashSet<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["config_key"].as_str().expect("config_key").to_string(),
                r["seed"].as_u64().expect("seed"),
            )
        })
        .collect();
    assert_eq!(pairs.len(), TRIALS, "no (configuration, seed) repeats");
    let ids: HashSet<&str> = rows
        .iter()
        .map(|r| r["trial_id"].as_str().expect("trial_id"))
        .collect();
    assert_eq!(ids.len(), TRIALS, "no trial id repeats");
    for r in &rows {
        assert_eq!(r["status"], "completed", "{r}");
    }
    let done_by = |w: &str| {
        rows.iter()
            .filter(|r| r["worker"].as_str().is_some_and(|x| x.contains(w)))
            .count()
    };
    assert!(
        done_by("w1") >= 1 && done_by("w2") >= 1,
        "both workers completed trials (w1 {}, w2 {}): {rows:#?}\n{}",
        done_by("w1"),
        done_by("w2"),
        logs(&[&coord, &w1, &w2])
    );
    let w2_done_at_kill = w2_done_at_kill.unwrap_or_else(|| {
        panic!(
            "w2 was never seen training after a completed trial: {rows:#?}\n{}",
            logs(&[&coord, &w1, &w2])
        )
    });
    // The trial w2 was training when killed was leased again (a second
    // attempt), unless w2 reported it in the instant before the kill.
    let retried = rows
        .iter()
        .filter(|r| r["attempts"].as_u64().unwrap_or(0) > 1)
        .count();
    assert!(
        retried >= 1 || done_by("w2") > w2_done_at_kill,
        "w2's trial in flight at the kill was neither leased again nor reported: {rows:#?}\n{}",
        logs(&[&coord, &w1])
    );
    eprintln!(
        "multihost: finished in {:.1}s: w1 {} trials, w2 {} trials, {retried} trials needed a second attempt (leased again after the kill)",
        started.elapsed().as_secs_f64(),
        done_by("w1"),
        done_by("w2"),
    );

    // Teardown: processes, then namespaces; nothing of this run remains.
    drop((w1, w2, coord, etcd));
    drop(net);
    let left = namespaces_of(pid);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
