//! Every sweep file in `configs/` parses, names only parameters its model
//! accepts, and expands into trials; the process configuration files
//! (`configs/coordinator.toml`, `configs/worker.toml`) parse and state the
//! defaults; settings layer flags over file over defaults.

use std::path::Path;
use std::time::Duration;

use sigsweep::config::{CoordinatorSettings, FileConfig, WorkerSettings, resolve};
use sigsweep_coordinator::node::NodeConfig;
use sigsweep_worker::agent::AgentConfig;

#[test]
fn every_config_file_parses_and_expands() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // The two process configuration files are not sweeps.
        if !name.ends_with(".toml") || ["coordinator.toml", "worker.toml"].contains(&name) {
            continue;
        }
        let (_, spec) = sigsweep::steps::load_sweep(&path)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let trials = spec.trials();
        assert!(!trials.is_empty(), "{}", path.display());
        assert_eq!(trials.len(), spec.configurations().len() * spec.seeds.len());
        assert!(
            spec.configurations()
                .iter()
                .any(|c| c.key == spec.baseline_key()),
            "{}: the baseline is a grid point",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 10, "expected the shipped configs, found {seen}");
}

#[test]
fn the_reference_process_configs_state_the_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let file = FileConfig::load(&dir.join("coordinator.toml")).expect("coordinator.toml");
    let node = resolve(
        CoordinatorSettings::default(),
        Some(file.coordinator),
        CoordinatorSettings::default(),
    )
    .resolve();
    let defaults = NodeConfig::default();
    // `advertise` defaults to host-pid, which no file can state.
    assert_eq!(
        NodeConfig {
            advertise: defaults.advertise.clone(),
            ..node
        },
        defaults
    );
    let file = FileConfig::load(&dir.join("worker.toml")).expect("worker.toml");
    let mut worker = file.worker;
    worker.coordinator = Some("http://127.0.0.1:1".into());
    let (agent, slots) = worker.resolve().expect("resolves");
    let defaults = AgentConfig::default();
    assert_eq!(slots, 1);
    assert_eq!(
        AgentConfig {
            coordinator: String::new(),
            name: defaults.name.clone(),
            ..agent
        },
        defaults
    );
}
#[test]
fn layers_flags_over_file_over_defaults() {
    let file = FileConfig::parse(
        "[coordinator]\nlisten = \"0.0.0.0:1\"\nlease_ttl = \"5m\"\nstore = \"embedded:/x\"\n",
        Path::new("c.toml"),
    )
    .expect("parses");
    let given = CoordinatorSettings {
        listen: Some("127.0.0.1:2".into()),
        ..Default::default()
    };
    let eff = resolve(
        given,
        Some(file.coordinator),
        CoordinatorSettings::defaults(),
    );
    assert_eq!(eff.listen.as_deref(), Some("127.0.0.1:2"));
    assert_eq!(eff.lease_ttl, Some(Duration::from_secs(300)));
    assert_eq!(eff.store.as_deref(), Some("embedded:/x"));
    assert_eq!(eff.election_ttl, Some(Duration::from_secs(10)));
    let printed = toml::to_string(&FileConfig {
        coordinator: eff,
        worker: WorkerSettings::default(),
    })
    .expect("prints");
    assert!(printed.contains("lease_ttl = \"5m\""), "{printed}");
    FileConfig::parse(&printed, Path::new("printed.toml")).expect("printed config parses back");
}

#[test]
fn errors_name_file_line_and_key() {
    let e = FileConfig::parse(
        "[coordinator]\n\nlisten_addr = \"x\"\n",
        Path::new("bad.toml"),
    )
    .expect_err("unknown key");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("bad.toml") && msg.contains("line 3") && msg.contains("listen_addr"),
        "{msg}"
    );
    let e = FileConfig::parse(
        "[worker]\ndrain_timeout = \"10 parsecs\"\n",
        Path::new("w.toml"),
    )
    .expect_err("bad duration");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("w.toml") && msg.contains("line 2") && msg.contains("drain_timeout"),
        "{msg}"
    );
}
