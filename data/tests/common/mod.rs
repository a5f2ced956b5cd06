//! Shared test helpers: fixture generation with Python + numpy.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value as Json, json};
use sigsweep_data::pickle::{ArrayData, NdArray, Value};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/make_pickles.py"
);

/// Runs `tests/fixtures/make_pickles.py` once per test binary and returns the
/// output directory. Missing python3 or numpy is a test failure, not a skip:
/// these fixtures are the only check against files numpy really writes.
pub fn fixtures(binary: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures-{binary}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("python3")
            .arg(SCRIPT)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python3 to build pickle fixtures ({e}); install python3 and numpy"
                )
            });
        assert!(
            out.status.success(),
            "{SCRIPT} failed ({}); python3 with numpy is required for these tests \
             (pip install numpy):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn array_json(a: &NdArray) -> Json {
    let a = a.to_c_order();
    let data: Vec<Json> = match &a.data {
        ArrayData::F32(v) => v.iter().map(|&x| json!(f64::from(x))).collect(),
        ArrayData::F64(v) => v.iter().map(|&x| json!(x)).collect(),
        ArrayData::I64(v) => v.iter().map(|&x| json!(x)).collect(),
        ArrayData::I32(v) => v.iter().map(|&x| json!(x)).collect(),
        ArrayData::U8(v) => v.iter().map(|&x| json!(x)).collect(),
        ArrayData::Bool(v) => v.iter().map(|&x| json!(x)).collect(),
        ArrayData::Str(v) => v.iter().map(|x| json!(x)).collect(),
        ArrayData::Object(v) => v.iter().map(to_json).collect(),
    };
    json!({"ndarray": {"dtype": a.dtype.to_string(), "shape": a.shape, "data": data}})
}

/// The canonical JSON form written by `make_pickles.py`'s `enc`.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) => json!(s),
        Value::Bytes(b) => json!({ "bytes": b }),
        Value::List(v) => Json::Array(v.iter().map(to_json).collect()),
        Value::Tuple(v) => json!({ "tuple": v.iter().map(to_json).collect::<Vec<_>>() }),
        Value::Set(v) => json!({ "set": v.iter().map(to_json).collect::<Vec<_>>() }),
        Value::Dict(v) => json!({
            "dict": v.iter().map(|(k, x)| json!([to_json(k), to_json(x)])).collect::<Vec<_>>()
        }),
        Value::NdArray(a) => array_json(a),
        other => json!({ "unexpected": other.type_name() }),
    }
}
