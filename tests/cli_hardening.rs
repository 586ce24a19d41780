//! Issue #17 at the command line: closed and full standard output, sizes beyond memory,
//! bench on token models, verify's numbers, paths named once; and a property test that
//! feeds generated bad inputs (shapes, dtypes, sizes, values) to `pairs`, `embed`,
//! `search` and `verify` and asserts that each run either fails with exit code 1 and one
//! line on stderr, or succeeds printing only finite numbers: never a panic, an abort or a
//! hang. `SIAMESE_CLI_PROPTEST_CASES` sets the number of generated cases (default 24 in
//! CI; `SIAMESE_CLI_PROPTEST_CASES=500 cargo test --release --test cli_hardening` is the
//! longer local run).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{gpu, rng};
use npyz::WriterBuilder;
use rand::Rng;
use siamese_wgpu::io::{write_npy, write_png_gray};
use siamese_wgpu::Array;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_siamese"));
    command.args(args).current_dir(root());
    command
}

fn siamese(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// Asserts a clean failure: exit code 1, one line on stderr starting `error:` that
/// contains every one of `needles`; returns that line.
#[track_caller]
fn one_line_error(output: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {stderr}", output.status);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

/// The arguments of one short `bench --json` run: one timed call, no warm-up, no naive pass.
fn quick_bench<'a>(model: &'a str, batch: &'a str, seq_len: &'a str) -> Vec<&'a str> {
    let mut args = vec!["bench", "--model", model, "--batch", batch, "--seq-len", seq_len];
    args.extend(["--iters", "1", "--warmup-ms", "0", "--no-naive", "--json"]);
    args
}

/// `info` into a closed pipe ends quietly (it panicked in `println!`); into a full disk it
/// is a one-line error (it panicked too).
#[test]
fn closed_or_full_stdout_never_panics() {
    let Some(_) = gpu() else { return };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command(&["info"]).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", output.status);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command(&quick_bench("models/cnn", "1", "50")).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", output.status);
    let full = std::fs::File::create("/dev/full").unwrap();
    let output = command(&["info"]).stdout(full).output().unwrap();
    one_line_error(&output, &["writing to standard output", "No space left"]);
}

/// Batches and sequence lengths whose inputs cannot be made are refused before anything
/// is allocated (they overflowed, aborted allocating 313 GB, or wrapped to 0).
#[test]
fn bench_refuses_sizes_beyond_memory() {
    let Some(_) = gpu() else { return };
    for (model, flag, value) in [
        ("models/cnn", "--batch", "18446744073709551615"),
        ("models/cnn", "--batch", "100000000"),
        ("models/cnn", "--batch", "1152921504606846976"),
        ("tests/fixtures/lstm_seed", "--seq-len", "1000000000"),
    ] {
        let output = siamese(&["bench", "--model", model, flag, value, "--iters", "1", "--no-naive"]);
        one_line_error(&output, &["MiB per twin"]);
    }
}

/// `bench` feeds an Embedding model token ids (it fed random floats: "token id 0.509 ...
/// is not an integer").
#[test]
fn bench_runs_token_models() {
    let Some(_) = gpu() else { return };
    let output = siamese(&quick_bench("tests/fixtures/token_encoder", "2", "9"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["batch_pairs"], 2);
    assert!(line["pairs_per_s"].as_f64().unwrap() > 0.0);
}

fn heldout() -> PathBuf {
    root().join("models/digits/heldout/pairs.csv")
}

/// NaN margins and thresholds are refused (they printed loss 0 and 50 % accuracy).
#[test]
fn verify_refuses_nan_margins_and_thresholds() {
    let Some(_) = gpu() else { return };
    let csv = heldout().display().to_string();
    for (flag, value) in [("--margin", "nan"), ("--threshold", "NaN"), ("--threshold", "inf"), ("--margin", "-1")] {
        // `--margin=-1`: a separate "-1" would read as a flag.
        let flag_value = format!("{flag}={value}");
        let output = siamese(&["verify", "--model", "models/digits", "--pairs", &csv, &flag_value]);
        one_line_error(&output, &[flag]);
    }
}

/// A bad `distance` in siamese.json names the file, and `--distance` gets past it.
#[test]
fn bad_decision_file_is_named_and_overridable() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.json", "model.safetensors"] {
        std::fs::copy(root().join("models/digits").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("siamese.json"), r#"{"distance": "euclidian", "threshold": 0.5}"#).unwrap();
    let model = dir.path().display().to_string();
    let csv = heldout().display().to_string();
    let output = siamese(&["verify", "--model", &model, "--pairs", &csv]);
    one_line_error(&output, &["siamese.json", "distance", "euclidian"]);
    let output = siamese(&["verify", "--model", &model, "--pairs", &csv, "--distance", "euclidean"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ROC AUC"));
}

/// A model error names the model's path once (it said "loading model D: D/model.json...").
#[test]
fn model_errors_name_the_path_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), "{").unwrap();
    let model = dir.path().display().to_string();
    for args in
        [vec!["pairs", "--model", &model, "--left", "a.npy", "--right", "b.npy"], vec!["inspect", "--model", &model]]
    {
        let output = siamese(&args);
        let line = one_line_error(&output, &[&model]);
        assert_eq!(line.matches(&model).count(), 1, "{line}");
    }
}

/// One generated input file: an array of some shape, dtype and values, or a PNG.
fn random_input(rng: &mut impl Rng, dir: &Path, name: &str) -> PathBuf {
    let shapes: [&[usize]; 9] = [
        &[3, 28, 28, 1],
        &[1, 28, 28, 1],
        &[3, 28, 28],
        &[0, 28, 28, 1],
        &[3, 28, 28, 3],
        &[3, 27, 28, 1],
        &[784],
        &[2, 784],
        &[],
    ];
    // Half the files have the model's own shape, so that some runs get past the checks.
    let shape = if rng.random_bool(0.5) { shapes[0] } else { shapes[rng.random_range(0..shapes.len())] }.to_vec();
    let len: usize = shape.iter().product();
    if rng.random_bool(0.15) {
        let path = dir.join(format!("{name}.png"));
        let (h, w) = [(28, 28), (1, 1), (28, 27), (64, 64)][rng.random_range(0..4)];
        let values: Vec<f32> = (0..h * w).map(|_| rng.random()).collect();
        write_png_gray(&path, h, w, &values).unwrap();
        return path;
    }
    let path = dir.join(format!("{name}.npy"));
    let special = [f32::NAN, f32::INFINITY, -f32::INFINITY, 3e38, -3e38, 1e-40, 0.0];
    let mut values: Vec<f32> = (0..len).map(|_| rng.random()).collect();
    if len > 0 && rng.random_bool(0.3) {
        let at = rng.random_range(0..len);
        values[at] = special[rng.random_range(0..special.len())];
    }
    match rng.random_range(0..14) {
        0 => {
            // Integers of another dtype, some beyond f32's exact range.
            let ints: Vec<i64> = (0..len).map(|_| [0, 1, 255, 1 << 25, i64::MIN, -7][rng.random_range(0..6)]).collect();
            let mut bytes = Vec::new();
            let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut writer =
                npyz::WriteOptions::<i64>::new().default_dtype().shape(&shape64).writer(&mut bytes).begin_nd().unwrap();
            writer.extend(ints).unwrap();
            writer.finish().unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        1 => {
            // A truncated file.
            write_npy(&path, &Array::new(shape, values).unwrap()).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let cut = rng.random_range(0..bytes.len());
            std::fs::write(&path, &bytes[..cut]).unwrap();
        }
        2 => std::fs::write(&path, b"not an npy file").unwrap(),
        _ => write_npy(&path, &Array::new(shape, values).unwrap()).unwrap(),
    }
    path
}

/// Runs with a deadline: a hang is a failure.
fn run_bounded(args: &[String], limit: Duration) -> Output {
    let mut child = command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("siamese {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn generated_bad_inputs_fail_cleanly_or_give_finite_numbers() {
    let Some(_) = gpu() else { return };
    let cases: usize = std::env::var("SIAMESE_CLI_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let mut rng = rng(1717);
    let dir = tempfile::tempdir().unwrap();
    let (mut failed, mut succeeded) = (0, 0);
    for case in 0..cases {
        let work = dir.path().join(format!("case{case}"));
        std::fs::create_dir_all(&work).unwrap();
        let left = random_input(&mut rng, &work, "left").display().to_string();
        let right = random_input(&mut rng, &work, "right").display().to_string();
        let metric = ["euclidean", "cosine", "sqeuclidean", "manhattan", "learned"][rng.random_range(0..5)].to_string();
        let model = "models/digits".to_string();
        let args: Vec<String> = match case % 4 {
            0 => ["pairs", "--model", &model, "--left", &left, "--right", &right, "--distance", &metric]
                .map(String::from)
                .to_vec(),
            1 => ["embed", "--model", &model, "--input", &left, "--out", &work.join("e.npy").display().to_string()]
                .map(String::from)
                .to_vec(),
            2 => {
                let k = rng.random_range(0..6).to_string();
                ["search", "--model", &model, "--gallery", &left, "--query", &right, "-k", &k]
                    .map(String::from)
                    .to_vec()
            }
            _ => {
                let labels = work.join("labels.npy");
                let count = [3usize, 1, 0][rng.random_range(0..3)];
                let values: Vec<f32> = (0..count).map(|i| [0.0, 1.0, 0.5][(i + case) % 3]).collect();
                write_npy(&labels, &Array::new(vec![count], values).unwrap()).unwrap();
                let labels = labels.display().to_string();
                ["verify", "--model", &model, "--left", &left, "--right", &right, "--labels", &labels]
                    .map(String::from)
                    .to_vec()
            }
        };
        let output = run_bounded(&args, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "siamese {args:?} panicked: {stderr}");
        match output.status.code() {
            Some(0) => {
                succeeded += 1;
                // Every number printed is finite.
                for word in stdout.split(|c: char| c.is_whitespace() || c == '%' || c == '(' || c == ')') {
                    if let Ok(value) = word.parse::<f64>() {
                        assert!(value.is_finite(), "siamese {args:?} printed {value}: {stdout}");
                    }
                    assert!(!word.eq_ignore_ascii_case("nan") && !word.eq_ignore_ascii_case("inf"), "{stdout}");
                }
            }
            Some(1) => {
                failed += 1;
                eprintln!("{}: {}", args[0], stderr.trim());
                let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
                assert_eq!(errors, 1, "siamese {args:?}: one error line expected: {stderr}");
            }
            other => panic!("siamese {args:?} ended with {other:?} (a signal or a panic): {stderr}"),
        }
    }
    eprintln!("{cases} generated cases: {succeeded} ran, {failed} refused cleanly");
    assert!(failed > 0 && (cases < 8 || succeeded > 0), "the generator should produce both outcomes");
}

/// The library names the setting (`setting \`allow_nonfinite\``); the CLI names the flag
/// that sets it (issue #14: the library speaks its own vocabulary, the CLI maps it).
#[test]
fn errors_name_settings_in_the_library_and_flags_at_the_command_line() {
    let Some(gpu) = gpu() else { return };
    let model = siamese_wgpu::SiameseModel::load_on(gpu, root().join("models/cnn")).unwrap();
    let mut values = vec![0.5f32; 2 * 28 * 28];
    values[3] = f32::NAN;
    let nan = Array::new(vec![2, 28, 28, 1], values).unwrap();
    let error = model.distances(&nan, &nan, siamese_wgpu::Distance::Euclidean).unwrap_err().to_string();
    assert!(error.contains("setting `allow_nonfinite`") && !error.contains("--"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.npy");
    write_npy(&path, &nan).unwrap();
    let path = path.to_str().unwrap();
    let output = siamese(&["pairs", "--model", "models/cnn", "--left", path, "--right", path]);
    let line = one_line_error(&output, &["--allow-nonfinite"]);
    assert!(!line.contains("setting `"), "{line}");
}
