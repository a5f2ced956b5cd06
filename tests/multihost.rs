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
use std::time::{Duration, Instant};

mod common;
use common::netns::*;
use common::proc::BIN;

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
