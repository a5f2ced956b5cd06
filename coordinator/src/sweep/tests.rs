use super::*;

const QUICKSTART: &str = include_str!("../../../configs/quickstart.toml");

fn parse(src: &str) -> Result<SweepSpec, SweepError> {
    SweepSpec::parse(src, "test.toml")
}

fn minimal(extra_grid: &str) -> String {
    format!(
        r#"name = "t"
baseline = {{ a = 1 }}
[model]
name = "late-fusion"
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 2
batch_size = 8
lr = 0.01
[grid]
a = [1, 2]
{extra_grid}
[metrics]
select = "accuracy"
report = {{ accuracy = "max" }}
"#
    )
}

#[test]
fn quickstart_parses_and_expands() {
    let spec = parse(QUICKSTART).expect("quickstart parses");
    assert_eq!(spec.name, "quickstart");
    assert_eq!(spec.seeds, (0..10).collect::<Vec<_>>());
    let trials = spec.trials();
    assert_eq!(trials.len(), 4 * 10);
    let ids: std::collections::HashSet<_> = trials.iter().map(|t| &t.trial_id).collect();
    assert_eq!(ids.len(), trials.len(), "trial ids are unique");
    assert_eq!(spec.baseline_key(), "modality_hidden=16,dropout=0.0");
    assert_eq!(trials[0].config.key, "modality_hidden=2,dropout=0.0");
    assert_eq!(trials[0].params["epochs"], ParamValue::Int(12));
    assert_eq!(trials[0].params["hidden"], ParamValue::Int(32));
}

#[test]
fn ids_are_deterministic_and_stable_under_grid_extension() {
    let a = parse(&minimal("")).expect("parse");
    let b = parse(&minimal("")).expect("parse");
    assert_eq!(a.sweep_id(), b.sweep_id());
    let ta = a.trials();
    assert_eq!(ta, b.trials());
    let extended = minimal("").replace("a = [1, 2]", "a = [1, 2, 3]");
    let c = parse(&extended).expect("parse");
    assert_ne!(a.sweep_id(), c.sweep_id());
    let tc = c.trials();
    for t in &ta {
        assert!(
            tc.iter().any(|u| u.trial_id == t.trial_id),
            "kept {}",
            t.trial_id
        );
    }
    // Changing a fixed setting changes every id.
    let d = parse(&minimal("").replace("epochs = 2", "epochs = 3")).expect("parse");
    assert!(
        d.trials()
            .iter()
            .all(|t| ta.iter().all(|u| u.trial_id != t.trial_id))
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let src = minimal("").replace("lr = 0.01", "lr = 0.01\nlearning_rate = 0.1");
    let err = parse(&src).expect_err("unknown key");
    assert_eq!(err.line, 12, "{err}");
    assert_eq!(err.key.as_deref(), Some("training.learning_rate"), "{err}");
    assert!(err.to_string().starts_with("test.toml:12:"), "{err}");
    assert!(err.message.contains("unknown field"), "{err}");
}

#[test]
fn wrong_type_names_line_and_key() {
    let src = minimal("").replace("epochs = 2", "epochs = \"two\"");
    let err = parse(&src).expect_err("wrong type");
    assert_eq!(err.line, 9, "{err}");
    assert_eq!(err.key.as_deref(), Some("training.epochs"), "{err}");
}

#[test]
fn an_integer_past_64_bits_says_so_with_line_and_key() {
    for (from, to, line, key) in [
        (
            "epochs = 2",
            "epochs = 18446744073709551616",
            9,
            "training.epochs",
        ),
        ("lr = 0.01", "lr = -9223372036854775809", 11, "training.lr"),
        ("a = [1, 2]", "a = [1, 99999999999999999999]", 13, "grid.a"),
    ] {
        let err = parse(&minimal("").replace(from, to)).expect_err("out of range");
        assert_eq!((err.line, err.key.as_deref()), (line, Some(key)), "{err}");
        assert!(
            err.message
                .contains("out of range: TOML integers are 64-bit"),
            "{err}"
        );
    }
}

#[test]
fn empty_grid_list_duplicates_and_bad_baseline_are_errors() {
    let err = parse(&minimal("b = []")).expect_err("empty");
    assert_eq!(err.key.as_deref(), Some("grid.b"));
    assert!(err.message.contains("empty"), "{err}");

    let err = parse(&minimal("b = [0.1, 0.1]")).expect_err("dup");
    assert!(err.message.contains("duplicate"), "{err}");
    assert_eq!(err.line, 14);

    let err = parse(&minimal("").replace("baseline = { a = 1 }", "baseline = { a = 5 }"))
        .expect_err("outside grid");
    assert_eq!(err.key.as_deref(), Some("baseline.a"));
    assert_eq!(err.line, 2);

    let err = parse(&minimal("b = [1, 2]")).expect_err("missing baseline key");
    assert!(err.message.contains("`b`"), "{err}");

    let err = parse(&minimal("").replace("baseline = { a = 1 }", "baseline = { z = 1 }"))
        .expect_err("not a grid key");
    assert_eq!(err.key.as_deref(), Some("baseline.z"));
}

#[test]
fn model_params_are_checked_against_the_model() {
    let spec = parse(QUICKSTART).expect("parse");
    spec.check_model_params(&["modality_hidden", "hidden", "dropout"])
        .expect("known");
    let err = spec
        .check_model_params(&["modality_hidden", "dropout"])
        .expect_err("hidden unknown");
    assert_eq!(err.key.as_deref(), Some("model.hidden"));
    assert!(err.line > 1);
}

#[test]
fn seeds_list_and_errors() {
    let src = minimal("").replace("name = \"t\"", "name = \"t\"\nseeds = [5, 9]");
    let spec = parse(&src).expect("parse");
    assert_eq!(spec.seeds, vec![5, 9]);
    assert_eq!(spec.trials().len(), 4);
    let src = minimal("").replace("name = \"t\"", "name = \"t\"\nseeds = [5, 5]");
    assert!(
        parse(&src)
            .expect_err("dup seeds")
            .message
            .contains("duplicate")
    );
}

#[test]
fn too_many_trials_is_an_error() {
    let big: Vec<String> = (0..400).map(|i| i.to_string()).collect();
    let src = minimal(&format!("b = [{}]\nc = [{}]", big.join(","), big.join(",")));
    let err = parse(&src).expect_err("too many");
    assert!(err.message.contains("limit"), "{err}");
}

#[test]
fn data_parallel_for_a_model_without_it_names_the_key() {
    let text = "name = \"x\"\nseeds = 2\nbaseline = { a = 1 }\n[model]\nname = \"mmic\"\n[dataset]\nkind = \"synthetic\"\ngenerator = \"erc\"\n[training]\nepochs = 1\nbatch_size = 2\nlr = 0.1\n[grid]\na = [1, 2]\n[metrics]\nselect = \"accuracy\"\nreport = { accuracy = \"max\" }\n[resources]\ngpus_per_trial = 2\n";
    let spec = SweepSpec::parse(text, "dp.toml").expect("parses");
    let err = spec
        .check_data_parallel(|_| false)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("dp.toml:19"), "{err}");
    assert!(err.contains("gpus_per_trial"), "{err}");
    spec.check_data_parallel(|_| true).expect("supported");
}

#[test]
fn sweep_names_are_safe_directory_names() {
    for bad in [
        "../../tmp/x",
        "a/b",
        "..",
        ".hidden",
        "a..b",
        "with space",
        "tab\tname",
        "ünï",
        "",
    ] {
        let src = minimal("").replacen("name = \"t\"", &format!("name = {bad:?}"), 1);
        let e = parse(&src).expect_err(bad);
        assert_eq!((e.line, e.key.as_deref()), (1, Some("name")), "{bad}: {e}");
    }
    let long = "n".repeat(101);
    let e = parse(&minimal("").replacen("name = \"t\"", &format!("name = \"{long}\""), 1))
        .expect_err("long");
    assert!(e.message.contains("limit of 100"), "{e}");
    for good in ["mmic-iemocap", "a.b_c-1", &"n".repeat(100)] {
        let src = minimal("").replacen("name = \"t\"", &format!("name = \"{good}\""), 1);
        assert!(parse(&src).is_ok(), "{good}");
    }
}

/// A `[grid]` or `[model]` inside a comment is not the table: a declared
/// range error points at the key's own line.
#[test]
fn range_errors_point_at_the_key_not_at_a_table_named_in_a_comment() {
    // `minimal`'s layout, with a comment naming both tables before them.
    let file = |model: &str, grid: &str| {
        minimal(grid)
            .replacen(
                "baseline = { a = 1 }",
                "# any key of [model] may be swept in [grid] instead\nbaseline = { a = 1 }",
                1,
            )
            .replacen(
                "[model]\nname = \"late-fusion\"",
                &format!("[model]  # the network\nname = \"late-fusion\"\n{model}"),
                1,
            )
            .replace("a = [1, 2]", "dropout = [0.0, 0.3]")
            .replace("{ a = 1 }", "{ dropout = 0.0 }")
    };
    let err = |src: String| {
        parse(&src)
            .expect("parses")
            .check_declared(&[])
            .expect_err("out of range")
    };
    let e = err(file("hidden = 0", ""));
    assert_eq!((e.key.as_deref(), e.line), (Some("model.hidden"), 6), "{e}");
    let e = err(file("", "hidden = [16, 100000]").replacen(
        "{ dropout = 0.0 }",
        "{ dropout = 0.0, hidden = 16 }",
        1,
    ));
    assert_eq!((e.key.as_deref(), e.line), (Some("grid.hidden"), 16), "{e}");
}

#[test]
fn seeds_that_are_neither_a_count_nor_a_list_say_what_is_expected() {
    for bad in ["-1", "[1.5]", "\"ten\"", "[-2, 3]"] {
        let src = minimal("").replacen("baseline", &format!("seeds = {bad}\nbaseline"), 1);
        let e = parse(&src).expect_err("bad seeds");
        assert_eq!((e.key.as_deref(), e.line), (Some("seeds"), 2), "{e}");
        assert!(e.message.contains("a count of seeds"), "{e}");
    }
}

#[test]
fn a_huge_seed_count_is_refused_before_anything_is_allocated() {
    // 2 configurations × 10^18 seeds would need exabytes if expanded first.
    let src = minimal("").replacen("baseline", "seeds = 1000000000000000000\nbaseline", 1);
    let e = parse(&src).expect_err("too many");
    assert_eq!(e.key.as_deref(), Some("seeds"), "{e}");
    assert!(e.message.contains("more than the limit of 100000"), "{e}");
}

#[test]
fn a_grid_too_large_by_itself_names_its_longest_list() {
    let many = |n: usize| {
        (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let grid = format!("b = [{}]\nc = [{}]", many(400), many(500));
    for seeds in ["seeds = 3", "seeds = [1, 2]"] {
        let src = minimal(&grid).replacen(
            "baseline = { a = 1 }",
            &format!("{seeds}\nbaseline = {{ a = 1, b = 1, c = 1 }}"),
            1,
        );
        let e = parse(&src).expect_err("too many");
        assert_eq!(e.key.as_deref(), Some("grid.c"), "{e}");
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("400000 configurations"), "{e}");
    }
}

#[test]
fn dataset_parameters_are_checked_with_their_line_and_key() {
    let with = |params: &str| {
        minimal("").replacen(
            "generator = \"fusion\"",
            &format!("generator = \"fusion\"\nparams = {{ {params} }}"),
            1,
        )
    };
    for (params, key) in [
        ("clases = 4", "dataset.params.clases"),
        ("n_train = \"many\"", "dataset.params.n_train"),
        ("n_train = 0", "dataset.params.n_train"),
        ("classes = 1", "dataset.params.classes"),
        ("n_train = 100000000000", "dataset.params.n_train"),
        ("noise = -1.0", "dataset.params.noise"),
    ] {
        let e = parse(&with(params)).expect_err(params);
        assert_eq!(e.line, 8, "{params}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{params}: {e}");
        assert_eq!(e.file, "test.toml");
    }
    assert!(parse(&with("n_train = 50, classes = 4")).is_ok());
    let bad_gen = minimal("").replacen("generator = \"fusion\"", "generator = \"fusoin\"", 1);
    let e = parse(&bad_gen).expect_err("generator");
    assert_eq!(e.key.as_deref(), Some("dataset.generator"), "{e}");
}

/// An ERC sweep selecting on an empty validation split is refused at parse
/// time naming the setting that empties it; selecting on test is allowed.
#[test]
fn an_empty_selection_split_is_an_error_naming_the_keys() {
    let erc = |dataset: &str, training: &str, metrics: &str| {
        format!(
            r#"name = "t"
[model]
name = "mmic"
[dataset]
{dataset}
[training]
epochs = 2
batch_size = 8
lr = 0.01
{training}
[metrics]
select = "accuracy"
{metrics}
report = {{ accuracy = "max" }}
"#
        )
    };
    let synthetic = "kind = \"synthetic\"\ngenerator = \"erc\"\nparams = { preset = \"small\", valid_rate = 0.0 }";
    let err = parse(&erc(synthetic, "", "")).expect_err("no validation split");
    assert_eq!(err.key.as_deref(), Some("dataset.params.valid_rate"));
    assert_eq!(err.line, 7, "{err}");
    assert!(err.message.contains("select_split"), "{}", err.message);
    parse(&erc(synthetic, "", "select_split = \"test\"")).expect("selection on test");
    // The synthetic preset's own rate is not zero.
    parse(&erc(
        "kind = \"synthetic\"\ngenerator = \"erc\"\nparams = { preset = \"small\" }",
        "",
        "",
    ))
    .expect("preset valid_rate");

    // An IEMOCAP file without valid_rate takes [training] valid_fraction.
    let file = "kind = \"iemocap\"\npath = \"features.pkl\"";
    let err = parse(&erc(file, "valid_fraction = 0.0", "")).expect_err("no carve");
    assert_eq!(err.key.as_deref(), Some("training.valid_fraction"));
    assert_eq!(err.line, 11, "{err}");
    let err = parse(&erc(
        "kind = \"iemocap\"\npath = \"features.pkl\"\nparams = { valid_rate = 0.0 }",
        "",
        "",
    ))
    .expect_err("valid_rate 0");
    assert_eq!(err.key.as_deref(), Some("dataset.params.valid_rate"));
    parse(&erc(file, "", "")).expect("the default carve");
    parse(&erc(
        file,
        "valid_fraction = 0.0",
        "select_split = \"test\"",
    ))
    .expect("on test");
}

/// `model` as a grid key: one sweep trains several models paired by seed;
/// a parameter applies to the models that declare it, so a model without a
/// swept parameter is one configuration, and the baseline may name a model.
#[test]
fn the_model_is_a_grid_key_and_parameters_follow_their_model() {
    let src = r#"name = "t"
seeds = 3
baseline = { model = "mmdfn", layers = 4 }
[model]
text_encoder = "gru"
scl_temperature = 0.2
[model.mmdfn]
batch_size = 32
focal_gamma = 1.0
[dataset]
kind = "synthetic"
generator = "erc"
[training]
epochs = 2
batch_size = 8
lr = 0.01
[grid]
model = ["mmic", "mmdfn"]
alpha = [0.0, 1.0]
layers = [4, 8]
[metrics]
select = "accuracy"
report = { accuracy = "max" }
"#;
    let spec = parse(src).expect("parses");
    spec.check_declared(&[])
        .expect("declared by one of the models");
    assert_eq!(spec.models(), vec!["mmic", "mmdfn"]);
    let keys: Vec<String> = spec.configurations().into_iter().map(|c| c.key).collect();
    assert_eq!(
        keys,
        [
            "model=mmic,alpha=0.0,layers=4",
            "model=mmic,alpha=0.0,layers=8",
            "model=mmic,alpha=1.0,layers=4",
            "model=mmic,alpha=1.0,layers=8",
            "model=mmdfn,layers=4",
            "model=mmdfn,layers=8",
        ]
    );
    assert_eq!(spec.baseline_key(), "model=mmdfn,layers=4");
    let trials = spec.trials();
    assert_eq!(trials.len(), 6 * 3);
    let mmdfn = trials.iter().find(|t| t.model == "mmdfn").expect("mmdfn");
    assert!(!mmdfn.params.contains_key("alpha"));
    assert!(!mmdfn.params.contains_key("scl_temperature"));
    assert!(!mmdfn.params.contains_key("model"));
    assert_eq!(mmdfn.params["text_encoder"], ParamValue::Text("gru".into()));
    // `[model.mmdfn]` sets MM-DFN's own batch size and focal γ.
    assert_eq!(mmdfn.params["batch_size"], ParamValue::Int(32));
    assert_eq!(mmdfn.params["focal_gamma"], ParamValue::Float(1.0));
    let mmic = trials.iter().find(|t| t.model == "mmic").expect("mmic");
    assert_eq!(mmic.params["scl_temperature"], ParamValue::Float(0.2));
    assert_eq!(mmic.params["alpha"], ParamValue::Float(0.0));
    assert_eq!(mmic.params["batch_size"], ParamValue::Int(8));
    assert!(!mmic.params.contains_key("focal_gamma"));
    // A table for a model the sweep does not train, or a key its model
    // does not declare, is refused.
    let err = parse(&src.replace("[model.mmdfn]", "[model.late-fusion]")).expect_err("not swept");
    assert_eq!(err.key.as_deref(), Some("model.late-fusion"), "{err}");
    let err = parse(&src.replace("focal_gamma = 1.0", "alpha = 1.0"))
        .expect("parses")
        .check_declared(&[])
        .expect_err("mmdfn has no alpha");
    assert_eq!(err.key.as_deref(), Some("model.mmdfn.alpha"), "{err}");
    // The seeds pair across models: the same seeds for every configuration.
    let seeds: Vec<u64> = trials
        .iter()
        .filter(|t| t.model == "mmdfn")
        .map(|t| t.seed)
        .collect();
    assert_eq!(seeds, [0, 1, 2, 0, 1, 2]);

    // `[model] name` and a swept model do not mix; unknown models are named.
    let both = src.replace("[model]\n", "[model]\nname = \"mmic\"\n");
    let err = parse(&both).expect_err("name and grid");
    assert_eq!(err.key.as_deref(), Some("model.name"), "{err}");
    let unknown = parse(&src.replace("\"mmdfn\"]", "\"mmdfn\", \"mmdnf\"]"))
        .expect("parses")
        .check_declared(&[])
        .expect_err("unknown model");
    assert_eq!(unknown.key.as_deref(), Some("grid.model"), "{unknown}");
    // A parameter no model declares is refused.
    let err = parse(&src.replace("layers = [4, 8]", "layers = [4, 8]\nlayerz = [1]"))
        .expect("parses")
        .check_declared(&[])
        .expect_err("unknown parameter");
    assert_eq!(err.key.as_deref(), Some("grid.layerz"), "{err}");
    // A baseline that omits a key its model takes is refused.
    let err = parse(&src.replace(
        "baseline = { model = \"mmdfn\", layers = 4 }",
        "baseline = { model = \"mmic\", layers = 4 }",
    ))
    .expect_err("alpha missing");
    assert_eq!(err.key.as_deref(), Some("baseline"), "{err}");
}

#[test]
fn folds_expand_trials_and_keep_ids_without_folds() {
    let plain = parse(&minimal("")).expect("parses");
    let src = minimal("").replace(
        "generator = \"fusion\"",
        "generator = \"fusion\"\nfolds = 4",
    );
    let cv = parse(&src).expect("parses");
    let folds = cv
        .dataset
        .as_ref()
        .and_then(|d| d.folds.as_ref())
        .expect("folds");
    assert_eq!(
        (folds.folds, folds.by, folds.seed),
        (4, sigsweep_data::folds::FoldBy::Example, 0)
    );
    let trials = cv.trials();
    assert_eq!(trials.len(), plain.trials().len() * 4);
    let ids: std::collections::HashSet<_> = trials.iter().map(|t| t.trial_id.clone()).collect();
    assert_eq!(ids.len(), trials.len());
    assert!(trials.iter().all(|t| t.fold.is_some_and(|f| f < 4)));
    // A sweep without folds keeps the trial ids it always had.
    assert!(plain.trials().iter().all(|t| t.fold.is_none()));
    assert_eq!(
        plain.fingerprint(),
        parse(&minimal("")).expect("parses").fingerprint()
    );
}

#[test]
fn bad_folds_name_line_and_key() {
    let fold = |extra: &str| {
        minimal("").replace(
            "generator = \"fusion\"",
            &format!("generator = \"fusion\"\n{extra}"),
        )
    };
    for (extra, key, needle) in [
        ("folds = 1", "dataset.folds", "between 2 and 20"),
        (
            "folds = 3\nfold_by = \"session\"",
            "dataset.fold_by",
            "cannot fold by session",
        ),
        (
            "folds = 3\nfold_by = \"rows\"",
            "dataset.fold_by",
            "must be \"session\"",
        ),
        ("fold_by = \"example\"", "dataset.fold_by", "needs `folds`"),
        (
            "folds = 3\nfold_seed = -1",
            "dataset.fold_seed",
            "non-negative",
        ),
    ] {
        let err = parse(&fold(extra)).expect_err(extra);
        assert_eq!(err.key.as_deref(), Some(key), "{extra}: {err}");
        assert!(err.line >= 7 && err.line <= 9, "{extra}: {err}");
        assert!(err.message.contains(needle), "{extra}: {err}");
    }
}

fn program(model: &str, rest: &str) -> String {
    format!(
        r#"name = "p"
baseline = {{ lr = 0.1 }}
[model]
name = "command"
{model}
{rest}
[grid]
lr = [0.1, 0.2]
[metrics]
select = "acc"
report = {{ acc = "max" }}
"#
    )
}

#[test]
fn a_training_program_needs_no_dataset_or_training_table() {
    let spec = parse(&program(
        r#"argv = ["python3", "train.py", "--lr", "{lr}", "--seed", "{seed}", "--out", "{output_dir}"]
env = { PYTHONUNBUFFERED = "1", RUN = "{trial_id}" }
workdir = "/tmp"
depth = 3"#,
        "",
    ))
    .expect("parses");
    assert!(spec.runs_program() && spec.dataset.is_none() && spec.training.is_none());
    let c = spec.model.command.as_ref().expect("command");
    assert_eq!(c.argv[3], "{lr}");
    assert_eq!(c.env["RUN"], "{trial_id}");
    assert_eq!(spec.model.params["depth"], ParamValue::Int(3));
    assert_eq!(spec.trials().len(), 20);
    // `depth` is in no template: a warning, not an error.
    let w = spec.warnings();
    assert!(w.len() == 1 && w[0].contains("`depth`"), "{w:?}");
    spec.check_declared(&[])
        .expect("no declarations for programs");
    // Built-in sweeps still need both tables.
    let err =
        parse(&minimal("").replace("[training]\nepochs = 2\nbatch_size = 8\nlr = 0.01\n", ""))
            .expect_err("no training");
    assert!(
        err.to_string().contains("missing table [training]"),
        "{err}"
    );
}

#[test]
fn program_templates_and_keys_are_checked_with_line_and_key() {
    let cases = [
        (
            r#"argv = ["t.py", "{lrr}"]"#,
            "",
            "model.argv",
            "`{lrr}` names no parameter",
        ),
        (
            r#"argv = ["t.py", "{epochs}"]"#,
            "",
            "model.argv",
            "[training] table",
        ),
        (
            r#"argv = ["t.py", "{dataset_path}"]"#,
            "",
            "model.argv",
            "[dataset] table",
        ),
        (
            r#"argv = ["t.py", "{lr"]"#,
            "",
            "model.argv",
            "never closed",
        ),
        (r#"argv = []"#, "", "model.argv", "non-empty list"),
        (
            r#"argv = ["t.py", 3]"#,
            "",
            "model.argv",
            "every argument is a string",
        ),
        ("depth = 1", "", "model.name", "needs `argv"),
        (
            r#"argv = ["t.py"]
env = { SIGSWEEP_SEED = "1" }"#,
            "",
            "model.env",
            "set by sigsweep",
        ),
        (
            r#"argv = ["t.py"]
env = { X = "{nope}" }"#,
            "",
            "model.env",
            "`{nope}`",
        ),
        (
            r#"argv = ["t.py"]
launcher = "mpirun""#,
            "",
            "model.launcher",
            "torchrun",
        ),
        (
            r#"argv = ["t.py"]
processes = 2"#,
            "",
            "model.processes",
            "launcher",
        ),
        (
            r#"argv = ["t.py"]
metrics_regex = "epoch (\\d+)""#,
            "",
            "model.metrics_regex",
            "named group `epoch`",
        ),
        (
            r#"argv = ["t.py"]
metrics_regex = "(?P<epoch>\\d+) (?P<acc>\\S+)""#,
            "",
            "model.metrics_regex",
            "`acc`",
        ),
        (
            r#"argv = ["t.py"]
metrics_regex = "(?P<epoch>""#,
            "",
            "model.metrics_regex",
            "not a regular expression",
        ),
        (
            r#"argv = ["t.py"]"#,
            "[training]\nepochs = 2\nbatch_size = 1\nlr = 0.1\nsave = [\"weights\"]",
            "training.save",
            "cannot save `weights`",
        ),
        (
            r#"argv = ["t.py"]"#,
            "[resources]\nfuse_seeds = true",
            "resources.fuse_seeds",
            "seed fusion",
        ),
    ];
    for (model, rest, key, needle) in cases {
        let err = parse(&program(model, rest)).expect_err(model);
        let text = err.to_string();
        assert_eq!(err.key.as_deref(), Some(key), "{model}: {text}");
        assert!(text.contains(needle), "{model}: {text}");
        assert!(text.starts_with("test.toml:"), "{text}");
    }
    // With [training] and [dataset], their keys are placeholders.
    parse(&program(
        r#"argv = ["t.py", "{epochs}", "{batch_size}", "{dataset_path}", "{seed}"]"#,
        "[dataset]\nkind = \"iemocap\"\npath = \"x.pkl\"\n[training]\nepochs = 2\nbatch_size = 1\nlr = 0.1",
    ))
    .expect("training and dataset placeholders");
    // A program is not swept together with built-in models.
    let mixed = minimal("").replace("name = \"late-fusion\"\n", "").replace(
        "a = [1, 2]",
        "a = [1, 2]\nmodel = [\"late-fusion\", \"command\"]",
    );
    let err = parse(&mixed).expect_err("mixed");
    assert!(
        err.to_string().contains("cannot be swept together"),
        "{err}"
    );
}

#[test]
fn a_local_run_refuses_a_program_that_is_not_there() {
    let missing = parse(&program(
        r#"argv = ["no-such-program-sigsweep-test", "{lr}"]"#,
        "",
    ))
    .expect("parses");
    let err = missing.check_local_files().expect_err("missing");
    assert_eq!(err.key.as_deref(), Some("model.argv"), "{err}");
    assert!(err.to_string().contains("on no directory of PATH"), "{err}");
    let path = parse(&program(
        r#"argv = ["./nope.py", "{lr}"]
workdir = "/tmp""#,
        "",
    ))
    .expect("parses");
    let err = path.check_local_files().expect_err("missing path");
    assert!(err.to_string().contains("/tmp/./nope.py"), "{err}");
    let sh = parse(&program(r#"argv = ["sh", "-c", "echo {lr}"]"#, "")).expect("parses");
    sh.check_local_files().expect("sh is on PATH");
    let templated = parse(&program(
        r#"argv = ["{prog}", "{lr}"]
prog = "x""#,
        "",
    ))
    .expect("parses");
    templated
        .check_local_files()
        .expect("a templated program is checked where it runs");
}

#[test]
fn a_missing_field_is_named_with_its_table_not_the_key_where_the_table_starts() {
    let src = minimal("");
    // A missing top-level table: the document starts with `name = …`, which
    // is not the key at fault.
    let without_metrics = &src[..src.find("[metrics]").expect("metrics")];
    let err = parse(without_metrics).expect_err("no [metrics]");
    assert_eq!(err.key.as_deref(), Some("metrics"), "{err}");
    assert!(err.to_string().contains("missing field `metrics`"), "{err}");
    // A missing key of a table: the table's header line, the dotted key.
    let err = parse(&src.replace("select = \"accuracy\"\n", "")).expect_err("no select");
    assert_eq!(err.key.as_deref(), Some("metrics.select"), "{err}");
    let header = src.lines().position(|l| l == "[metrics]").expect("header") + 1;
    assert_eq!(err.line, header, "{err}");
}

#[test]
fn an_empty_synthetic_split_names_its_own_key() {
    for key in ["n_train", "n_valid", "n_test"] {
        let at = QUICKSTART.find(&format!("{key} = ")).expect(key) + key.len() + 3;
        let digits = QUICKSTART[at..]
            .find(|c: char| !c.is_ascii_digit())
            .expect("value");
        let src = format!("{}0{}", &QUICKSTART[..at], &QUICKSTART[at + digits..]);
        let err = parse(&src).expect_err(key);
        assert_eq!(
            err.key.as_deref(),
            Some(format!("dataset.params.{key}").as_str()),
            "{err}"
        );
        assert!(err.message.contains("at least one sample"), "{err}");
    }
}

/// `[resources] trial_timeout` is a duration longer than 0, checked with
/// the file's line and key; unset, a sweep's id is what it was before the
/// key existed.
#[test]
fn a_trial_timeout_is_a_positive_duration() {
    let with = |value: &str| format!("{}[resources]\ntrial_timeout = {value}\n", minimal(""));
    let spec = parse(&with("\"1h30m\"")).expect("valid");
    assert_eq!(
        spec.resources.trial_timeout,
        Some(std::time::Duration::from_secs(5400))
    );
    for bad in ["\"0s\"", "\"soon\"", "-5"] {
        let err = parse(&with(bad)).expect_err(bad);
        let text = err.to_string();
        assert_eq!(err.line, 19, "{bad}: {text}");
        assert!(text.contains("trial_timeout"), "{bad}: {text}");
    }
    let plain = parse(&minimal("")).expect("plain");
    let explicit = parse(&format!(
        "{}[resources]\nmax_lost_workers = 3\n",
        minimal("")
    ))
    .expect("defaults spelled out");
    assert_eq!(plain.sweep_id(), explicit.sweep_id());
    assert_eq!(
        plain.sweep_id(),
        "t-ad2fc592",
        "ids of existing sweeps must not move (a01874a gave this id)"
    );
}

/// `[metrics]` names only what sigsweep's models report on the dataset: a
/// misspelt metric, a regression metric on emotion classes or a class the
/// dataset does not have is an error naming its line before anything runs;
/// a training program's metrics are its own.
#[test]
fn metrics_are_checked_against_what_the_models_report_on_the_dataset() {
    let check = |src: &str| parse(src).expect("parses").check_declared(&[]);
    check(QUICKSTART).expect("the quickstart's metrics");
    for (from, to, key, says) in [
        (
            "select = \"f1_weighted\"",
            "select = \"f1_weigthed\"\nselect_goal = \"max\"",
            "metrics.select",
            "`f1_weigthed` is not a metric sigsweep's models report on the `fusion` generator; \
             they report, for 3 classes: accuracy, f1_weighted, f1_macro and f1_class_0 … f1_class_2",
        ),
        (
            "f1_macro = \"max\" }",
            "f1_macro = \"max\", mae = \"min\" }",
            "metrics.report",
            "`mae` is not a metric",
        ),
        (
            "f1_macro = \"max\" }",
            "f1_macro = \"max\", f1_class_3 = \"max\" }",
            "metrics.report",
            "`f1_class_3` is not",
        ),
        (
            "f1_macro = \"max\" }",
            "f1_macro = \"max\", f1_class_02 = \"max\" }",
            "metrics.report",
            "`f1_class_02` is not",
        ),
    ] {
        assert!(QUICKSTART.contains(from), "{from}");
        let err = check(&QUICKSTART.replace(from, to)).expect_err(key);
        assert_eq!(err.key.as_deref(), Some(key), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.line > 0, "{err}");
    }
    // More classes, more per-class metrics.
    let five = QUICKSTART.replace("classes = 3", "classes = 5").replace(
        "f1_macro = \"max\" }",
        "f1_macro = \"max\", f1_class_4 = \"max\" }",
    );
    check(&five).expect("five classes");

    // Files: IEMOCAP has six classes; MMSA files have sentiment scores.
    let file = |kind: &str, metric: &str| {
        format!(
            "name = \"f\"\nbaseline = {{ hidden = 8 }}\n[model]\nname = \"late-fusion\"\n[dataset]\n\
             kind = \"{kind}\"\npath = \"x.pkl\"\n[training]\nepochs = 1\nbatch_size = 8\nlr = 0.01\n[grid]\nhidden = [8, 16]\n\
             [metrics]\nselect = \"{metric}\"\nreport = {{ {metric} = \"max\" }}\n"
        )
    };
    check(&file("iemocap", "f1_class_5")).expect("six classes");
    let err = check(&file("iemocap", "f1_class_6")).expect_err("no seventh class");
    assert!(err.to_string().contains("for 6 classes"), "{err}");
    check(&file("mmsa", "non0_acc2")).expect("a regression metric");
    let err = check(&file("mmsa", "accuracy")).expect_err("no classes");
    assert!(
        err.to_string()
            .contains("for sentiment scores: mae, corr, acc7"),
        "{err}"
    );

    // A training program reports what it reports.
    let program = r#"name = "p"
seeds = 2
baseline = { hidden = 8 }
[model]
name = "command"
argv = ["python3", "train.py"]
[dataset]
kind = "synthetic"
generator = "fusion"
[training]
epochs = 1
batch_size = 8
lr = 0.01
[grid]
hidden = [8, 16]
[metrics]
select = "my_own_score"
report = { my_own_score = "max" }
"#;
    check(program).expect("a program's own metric");
}

/// `check_settings` names the line the offending value came from: the grid
/// (with the configuration), a model's own section, `[training]` or
/// `[model]`.
#[test]
fn settings_errors_name_the_key_where_the_configuration_took_it() {
    let src = r#"name = "s"
seeds = 2
baseline = { model = "mmdfn", hidden = 16 }
[model]
layers = 3
[model.mmic]
text_layers = 5
[dataset]
kind = "synthetic"
generator = "erc"
[training]
epochs = 1
batch_size = 4
lr = 0.01
[grid]
model = ["mmdfn", "mmic"]
hidden = [16, 15]
[metrics]
select = "accuracy"
report = { accuracy = "max" }
"#;
    let spec = parse(src).expect("parses");
    // A stand-in for a model's reading of its parameters: refuses `key`
    // when it has `bad`, for model `only`.
    let refuse = |key: &'static str, bad: ParamValue, only: &'static str| {
        move |model: &str, params: &IndexMap<String, ParamValue>| {
            if model == only && params.get(key) == Some(&bad) {
                Err((key.to_string(), "no".to_string()))
            } else {
                Ok(())
            }
        }
    };
    let at = |e: SweepError| (e.line, e.key.unwrap_or_default(), e.message);
    let (line, key, message) = at(spec
        .check_settings(refuse("hidden", ParamValue::Int(15), "mmic"))
        .expect_err("grid"));
    assert_eq!((line, key.as_str()), (17, "grid.hidden"));
    assert!(
        message.contains("configuration `model=mmic,hidden=15`"),
        "{message}"
    );
    let (line, key, message) = at(spec
        .check_settings(refuse("text_layers", ParamValue::Int(5), "mmic"))
        .expect_err("per model"));
    assert_eq!(
        (line, key.as_str()),
        (7, "model.mmic.text_layers"),
        "{message}"
    );
    let (line, key, message) = at(spec
        .check_settings(refuse("layers", ParamValue::Int(3), "mmdfn"))
        .expect_err("model"));
    assert_eq!((line, key.as_str()), (5, "model.layers"));
    assert!(message.contains("(model `mmdfn`)"), "{message}");
    let (line, key, _) = at(spec
        .check_settings(refuse("lr", ParamValue::Float(0.01), "mmic"))
        .expect_err("training"));
    assert_eq!((line, key.as_str()), (14, "training.lr"));
    spec.check_settings(|_, _| Ok(())).expect("nothing refused");
}
