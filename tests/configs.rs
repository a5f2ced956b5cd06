//! Every sweep file in `configs/` parses, names only parameters its model
//! accepts, and expands into trials.

#[test]
fn every_config_file_parses_and_expands() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let (_, spec) = sigsweep::commands::run::load_sweep(&path)
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
