//! The `siamese` binary end to end: output format, files written, PNG input, errors
//! without panics, and the benchmark's accounting.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{assert_close, gpu};
use siamese_wgpu::io::{read_npy, read_png, write_npy, write_png_gray};
use siamese_wgpu::Array;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn siamese(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siamese")).args(args).current_dir(root()).output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(output.status.success(), "siamese failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn parse_lines(text: &str) -> Vec<f32> {
    text.lines().map(|l| l.trim().parse::<f32>().unwrap()).collect()
}

#[test]
fn pairs_prints_keras_distances_and_writes_files() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.npy");
    let prefix = dir.path().join("emb").display().to_string();
    let output = siamese(&[
        "pairs",
        "--model",
        "models/cnn",
        "--left",
        "models/cnn/pairs/left.npy",
        "--right",
        "models/cnn/pairs/right.npy",
        "--distance",
        "cosine",
        "--out",
        out.to_str().unwrap(),
        "--embeddings-out",
        &prefix,
    ]);
    let printed = parse_lines(&stdout_of(&output));
    let keras = read_npy(root().join("models/cnn/pairs/keras_cosine.npy")).unwrap();
    assert_close("CLI cosine vs Keras", &printed, keras.data(), 1e-5, 1e-4);
    // Printed values are shortest round-trip f32: parsing them back gives the file's values.
    assert_eq!(read_npy(&out).unwrap().data(), &printed[..]);
    let left = read_npy(format!("{prefix}_left.npy")).unwrap();
    let right = read_npy(format!("{prefix}_right.npy")).unwrap();
    assert_eq!(left.shape(), &[8, 128]);
    let keras_embeddings = read_npy(root().join("models/cnn/pairs/keras_embeddings.npy")).unwrap();
    assert_close("CLI embeddings", &[left.data(), right.data()].concat(), keras_embeddings.data(), 1e-5, 1e-4);
}

#[test]
fn embed_writes_embeddings_and_float64_is_accepted() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.npy");
    stdout_of(&siamese(&[
        "embed",
        "--model",
        "tests/fixtures/chain_b",
        "--input",
        "tests/fixtures/chain_b/left.npy",
        "--out",
        out.to_str().unwrap(),
    ]));
    let keras = read_npy(root().join("tests/fixtures/chain_b/keras_embeddings.npy")).unwrap();
    assert_close("embed", read_npy(&out).unwrap().data(), &keras.data()[..9], 1e-5, 1e-4);

    // The same input saved as float64 gives the same result.
    let left = read_npy(root().join("tests/fixtures/chain_b/left.npy")).unwrap();
    let f64_path = dir.path().join("left64.npy");
    {
        use npyz::WriterBuilder;
        let mut bytes = Vec::new();
        let shape: Vec<u64> = left.shape().iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut bytes).begin_nd().unwrap();
        w.extend(left.data().iter().map(|&v| v as f64)).unwrap();
        w.finish().unwrap();
        std::fs::write(&f64_path, bytes).unwrap();
    }
    let out64 = dir.path().join("e64.npy");
    stdout_of(&siamese(&[
        "embed",
        "--model",
        "tests/fixtures/chain_b",
        "--input",
        f64_path.to_str().unwrap(),
        "--out",
        out64.to_str().unwrap(),
    ]));
    assert_eq!(read_npy(&out64).unwrap(), read_npy(&out).unwrap());
}

#[test]
fn png_inputs_work_like_the_same_pixels_in_npy() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let left = read_npy(root().join("models/cnn/pairs/left.npy")).unwrap();
    let right = read_npy(root().join("models/cnn/pairs/right.npy")).unwrap();
    let mut pngs = (Vec::new(), Vec::new());
    for i in 0..3 {
        let l = dir.path().join(format!("l{i}.png"));
        let r = dir.path().join(format!("r{i}.png"));
        write_png_gray(&l, 28, 28, left.row(i)).unwrap();
        write_png_gray(&r, 28, 28, right.row(i)).unwrap();
        pngs.0.push(l.display().to_string());
        pngs.1.push(r.display().to_string());
    }
    // The PNGs hold 8-bit pixels: the reference is those pixels scaled to [0, 1] in .npy form.
    let stack = |paths: &[String]| {
        let data: Vec<f32> = paths.iter().flat_map(|p| read_png(p, Some(1)).unwrap().into_data()).collect();
        Array::new(vec![paths.len(), 28, 28, 1], data).unwrap()
    };
    let (l_npy, r_npy) = (dir.path().join("l.npy"), dir.path().join("r.npy"));
    write_npy(&l_npy, &stack(&pngs.0)).unwrap();
    write_npy(&r_npy, &stack(&pngs.1)).unwrap();
    assert!(stack(&pngs.0).data().iter().all(|v| (0.0..=1.0).contains(v)));

    let mut args = vec!["pairs", "--model", "models/cnn", "--left"];
    args.extend(pngs.0.iter().map(String::as_str));
    args.push("--right");
    args.extend(pngs.1.iter().map(String::as_str));
    let from_png = parse_lines(&stdout_of(&siamese(&args)));
    let from_npy = parse_lines(&stdout_of(&siamese(&[
        "pairs",
        "--model",
        "models/cnn",
        "--left",
        l_npy.to_str().unwrap(),
        "--right",
        r_npy.to_str().unwrap(),
    ])));
    assert_eq!(from_png.len(), 3);
    assert_eq!(from_png, from_npy);
    assert_eq!(from_png[0], 0.0, "pair 0 is identical");
}

#[test]
fn errors_exit_nonzero_without_panicking() {
    let Some(_) = gpu() else { return };
    let cases: [&[&str]; 4] = [
        &[
            "pairs",
            "--model",
            "models/cnn",
            "--left",
            "models/cnn/pairs/left.npy",
            "--right",
            "tests/fixtures/chain_b/left.npy",
        ],
        &["pairs", "--model", "no/such/dir", "--left", "a.npy", "--right", "b.npy"],
        &["pairs", "--model", "models/cnn", "--left", "models/cnn/model.json", "--right", "models/cnn/pairs/right.npy"],
        &[
            "pairs",
            "--model",
            "models/cnn",
            "--left",
            "models/cnn/pairs/left.npy",
            "--right",
            "models/cnn/pairs/right.npy",
            "--distance",
            "hamming",
        ],
    ];
    for args in cases {
        let output = siamese(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: no error message: {stderr}");
    }
}

#[test]
fn info_names_the_chosen_adapter() {
    let Some(_) = gpu() else { return };
    let text = stdout_of(&siamese(&["info"]));
    assert!(text.contains("chosen:") && text.contains("max storage buffer binding"), "{text}");
}

#[test]
fn bench_reports_one_submit_and_no_buffers_per_call() {
    let Some(_) = gpu() else { return };
    let text = stdout_of(&siamese(&[
        "bench",
        "--model",
        "tests/fixtures/chain_b",
        "--batch",
        "1,3",
        "--iters",
        "3",
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for line in lines {
        assert_eq!(line["submits_per_call"], 1.0, "{line}");
        assert_eq!(line["buffers_created_per_call"], 0.0, "{line}");
        assert!(line["pairs_per_s"].as_f64().unwrap() > 0.0);
        assert!(line["naive_pairs_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn pairs_takes_sequence_lengths() {
    let Some(_) = gpu() else { return };
    let d = "tests/fixtures/gru_after";
    let args = |lengths: bool| {
        let mut a: Vec<String> =
            ["pairs", "--model", d, "--left", &format!("{d}/left.npy"), "--right", &format!("{d}/right.npy")]
                .iter()
                .map(|s| s.to_string())
                .collect();
        if lengths {
            a.extend([
                "--left-lengths".into(),
                format!("{d}/left_lengths.npy"),
                "--right-lengths".into(),
                format!("{d}/right_lengths.npy"),
            ]);
        }
        a
    };
    let keras = read_npy(root().join(d).join("keras_euclidean.npy")).unwrap();
    let with_lengths = args(true);
    let printed = parse_lines(&stdout_of(&siamese(&with_lengths.iter().map(String::as_str).collect::<Vec<_>>())));
    assert_close("CLI GRU with lengths vs Keras", &printed, keras.data(), 1e-5, 1e-4);

    // Lengths that cut every right sequence to one step change the answer.
    let dir = tempfile::tempdir().unwrap();
    let ones = dir.path().join("ones.npy");
    {
        use npyz::WriterBuilder;
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[keras.data().len() as u64])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        w.extend(std::iter::repeat_n(1i64, keras.data().len())).unwrap();
        w.finish().unwrap();
        std::fs::write(&ones, bytes).unwrap();
    }
    let mut cut = args(false);
    cut.extend(["--right-lengths".into(), ones.display().to_string()]);
    let printed_cut = parse_lines(&stdout_of(&siamese(&cut.iter().map(String::as_str).collect::<Vec<_>>())));
    assert_ne!(printed_cut, printed);
}

#[test]
fn similarity_prints_sentence_transformers_scores() {
    let Some(_) = gpu() else { return };
    // The first four pairs of the MiniLM fixture (short sentences: a fast batch).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("tests/fixtures/minilm/pairs.tsv")).unwrap();
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, text.lines().take(4).collect::<Vec<_>>().join("\n")).unwrap();
    let model = siamese_wgpu::sentence::find_installed_minilm().unwrap_or_else(|e| panic!("{e}"));
    let model = model.to_str().unwrap();
    let printed =
        parse_lines(&stdout_of(&siamese(&["similarity", "--model", model, "--pairs", pairs.to_str().unwrap()])));
    let want = read_npy(root().join("tests/fixtures/minilm/similarity.npy")).unwrap();
    assert_close("CLI similarity vs sentence-transformers", &printed, &want.data()[..4], 1e-5, 1e-4);

    let (a, b) = text.lines().next().unwrap().split_once('\t').unwrap();
    let one = parse_lines(&stdout_of(&siamese(&["similarity", "--model", model, a, b])));
    assert_eq!(one, vec![1.0]);
    // One sentence, or a malformed file: an error, no panic.
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "no tab here\n").unwrap();
    for args in [
        vec!["similarity", "--model", model, "only one"],
        vec!["similarity", "--model", model, "--pairs", bad.to_str().unwrap()],
    ] {
        let output = siamese(&args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error") && !stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn verify_reports_the_shipped_models_accuracy_and_plots() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("roc.png");
    let text = stdout_of(&siamese(&[
        "verify",
        "--model",
        "models/digits",
        "--pairs",
        "models/digits/heldout/pairs.csv",
        "--threshold",
        "0.0",
        "--plot",
        plot.to_str().unwrap(),
    ]));
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("models/digits/siamese.json")).unwrap()).unwrap();
    let accuracy = 100.0 * recorded["heldout"]["accuracy"].as_f64().unwrap();
    assert!(text.contains("200 pairs (100 same, 100 different)"), "{text}");
    assert!(text.contains(&format!("accuracy {accuracy:.2}%  (siamese.json)")), "{text}");
    // Threshold 0 calls every pair different: half right.
    assert!(text.contains("fixed threshold   0.000000  accuracy 50.00%"), "{text}");
    assert!(text.contains("ROC AUC") && text.contains("equal error rate") && text.contains("contrastive loss"));
    let image = read_png(&plot, Some(3)).unwrap();
    assert_eq!(&image.shape()[1..], &[480, 1100, 3]);

    // npy inputs with a label array give the same report; learned-head probabilities too.
    let pairs = siamese_wgpu::verify::read_pairs_csv(root().join("models/digits/heldout/pairs.csv")).unwrap();
    let left = siamese_wgpu::io::read_samples(&pairs.left, Some(1)).unwrap();
    let right = siamese_wgpu::io::read_samples(&pairs.right, Some(1)).unwrap();
    let labels: Vec<f32> = pairs.labels.iter().map(|&l| f32::from(u8::from(l))).collect();
    let (l, r, y) = (dir.path().join("l.npy"), dir.path().join("r.npy"), dir.path().join("y.npy"));
    write_npy(&l, &left).unwrap();
    write_npy(&r, &right).unwrap();
    write_npy(&y, &Array::new(vec![labels.len()], labels).unwrap()).unwrap();
    let args = ["verify", "--model", "models/digits", "--left", l.to_str().unwrap(), "--right", r.to_str().unwrap()];
    let from_npy = stdout_of(&siamese(&[&args[..], &["--labels", y.to_str().unwrap()]].concat()));
    assert!(from_npy.contains(&format!("accuracy {accuracy:.2}%  (siamese.json)")), "{from_npy}");
    let learned =
        stdout_of(&siamese(&[&args[..], &["--labels", y.to_str().unwrap(), "--distance", "learned"]].concat()));
    assert!(learned.contains("match probability; same when score >= threshold"), "{learned}");

    // Labels that are not 0/1 are an error naming the file.
    write_npy(&y, &Array::new(vec![200], vec![2.0; 200]).unwrap()).unwrap();
    let output = siamese(&[&args[..], &["--labels", y.to_str().unwrap()]].concat());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not 0 or 1"));
}

#[test]
fn pairs_from_writes_balanced_pairs_that_verify_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pairs.csv");
    let labels = "models/digits/heldout/labels.csv";
    let output = siamese(&["pairs-from", "--labels", labels, "--seed", "5", "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pairs = siamese_wgpu::verify::read_pairs_csv(&out).unwrap();
    let same = pairs.labels.iter().filter(|&&l| l).count();
    assert_eq!(2 * same, pairs.labels.len());
    // Written elsewhere than the labels: absolute paths that exist.
    assert!(pairs.left.iter().chain(&pairs.right).all(|p| p.is_absolute() && p.is_file()));
    // The same seed prints the same pairs (relative to the labels' folder) to stdout.
    let printed = stdout_of(&siamese(&["pairs-from", "--labels", labels, "--seed", "5"]));
    assert_eq!(printed.lines().count(), pairs.labels.len() + 1);
    assert!(printed.lines().nth(1).unwrap().starts_with("images/"));

    // A user's folder of class subfolders works too, and verify reads what it writes.
    let folder = tempfile::tempdir().unwrap();
    for (i, name) in ["0024_d4.png", "0087_d4.png", "0037_d9.png", "1152_d9.png", "0028_d8.png"].iter().enumerate() {
        let class = folder.path().join(format!("class{}", &name[6..7]));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::copy(root().join("models/digits/heldout/images").join(name), class.join(format!("{i}.png"))).unwrap();
    }
    let csv = folder.path().join("pairs.csv");
    let output = siamese(&["pairs-from", "--labels", folder.path().to_str().unwrap(), "--out", csv.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pairs = siamese_wgpu::verify::read_pairs_csv(&csv).unwrap();
    assert_eq!(pairs.labels.iter().filter(|&&l| l).count(), 2, "4-4 and 9-9");
    assert_eq!(pairs.labels.len(), 4);
    if gpu().is_some() {
        let text = stdout_of(&siamese(&["verify", "--model", "models/digits", "--pairs", csv.to_str().unwrap()]));
        assert!(text.contains("4 pairs (2 same, 2 different)"), "{text}");
    }
}

#[test]
fn search_finds_each_query_in_a_png_gallery_and_saved_galleries_agree() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("gallery.safetensors");
    let images = "models/digits/heldout/images";
    let queries = [format!("{images}/0024_d4.png"), format!("{images}/0037_d9.png")];
    let mut args = vec!["search", "--model", "models/digits", "--gallery", images, "-k", "3"];
    args.extend(["--save", saved.to_str().unwrap(), "--query"]);
    args.extend(queries.iter().map(String::as_str));
    let text = stdout_of(&siamese(&args));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * 4, "{text}");
    for (q, query) in queries.iter().enumerate() {
        assert_eq!(lines[4 * q], query);
        let first: Vec<&str> = lines[4 * q + 1].split_whitespace().collect();
        assert_eq!(first[1], query.rsplit('/').next().unwrap(), "a gallery image is its own nearest match");
        assert_eq!(first[2].parse::<f32>().unwrap(), 0.0);
        let d: Vec<f32> =
            (1..4).map(|r| lines[4 * q + r].split_whitespace().nth(2).unwrap().parse().unwrap()).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "ascending: {d:?}");
    }
    // The saved gallery answers the same.
    let again = stdout_of(&siamese(&[
        "search",
        "--model",
        "models/digits",
        "--gallery",
        saved.to_str().unwrap(),
        "-k",
        "3",
        "--query",
        &queries[0],
        &queries[1],
    ]));
    assert_eq!(again, text);
    let empty = tempfile::tempdir().unwrap();
    let output = siamese(&[
        "search",
        "--model",
        "models/digits",
        "--gallery",
        empty.path().to_str().unwrap(),
        "--query",
        &queries[0],
    ]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("no .png files"));
}

#[test]
fn keras_files_run_directly_and_inspect_names_encoder_and_head() {
    let Some(_) = gpu() else { return };
    let f = "tests/fixtures/keras_files";
    // `siamese pairs` on fixture `stem` saved as `file`, checked against what Keras gave;
    // returns stderr.
    let pairs_match_keras = |stem: &str, file: &str| -> String {
        let output = siamese(&[
            "pairs",
            "--model",
            &format!("{f}/{file}"),
            "--left",
            &format!("{f}/{stem}.left.npy"),
            "--right",
            &format!("{f}/{stem}.right.npy"),
        ]);
        let printed = parse_lines(&stdout_of(&output));
        let want = read_npy(root().join(f).join(format!("{stem}.keras_out.npy"))).unwrap();
        assert_close(&format!("{file} via the CLI"), &printed, want.data(), 1e-4, 1e-3);
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    // The learned head (Subtract → Multiply → Dense(1, sigmoid)) runs as it is, by default.
    assert!(pairs_match_keras("cnn_head", "cnn_head.keras").contains("shared encoder \"encoder\"; head: learned"));
    // A Lambda head is replaced by --distance and the output says so.
    assert!(pairs_match_keras("cnn_twin", "cnn_twin.h5").contains("replaced by the run-time --distance"));

    let text = stdout_of(&siamese(&["inspect", "--model", &format!("{f}/mha_twin.keras")]));
    assert!(
        text.contains("shared encoder") && text.contains("MultiHeadAttention") && text.contains("Lambda"),
        "{text}"
    );
    let text = stdout_of(&siamese(&["inspect", "--model", "models/digits"]));
    assert!(text.contains("223744 parameters"), "{text}");
}

// Issue #17 (nothing silently wrong, nothing unbounded): pairs-from and saved galleries.

#[test]
fn pairs_from_caps_the_same_pairs_and_refuses_bad_label_files() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    // 40,000 items in 2 classes: 399,980,000 same pairs, once listed in 6.4 GB.
    let rows: String = (0..40_000).map(|i| format!("img{i}.png,class{}\n", i % 2)).collect();
    std::fs::write(&labels, format!("path,label\n{rows}")).unwrap();
    let out = dir.path().join("pairs.csv");
    let output = siamese(&["pairs-from", "--labels", labels.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("40000 items have 399980000 same pairs; wrote 50000 of them at random (--max-pairs)"),
        "{stderr}"
    );
    let pairs = siamese_wgpu::verify::read_pairs_csv(&out).unwrap();
    assert_eq!(pairs.labels.len(), 100_000);
    assert_eq!(pairs.labels.iter().filter(|&&l| l).count(), 50_000);
    let output = siamese(&["pairs-from", "--labels", labels.to_str().unwrap(), "--max-pairs", "10"]);
    assert_eq!(stdout_of(&output).lines().count(), 1 + 20);
    assert!(String::from_utf8_lossy(&output.stderr).contains("wrote 10 of them"));
    assert!(!siamese(&["pairs-from", "--labels", labels.to_str().unwrap(), "--max-pairs", "0"]).status.success());

    // An empty label is not a class, a path listed twice not a pair.
    for (text, wanted) in [
        ("path,label\na.png,x\nb.png,\nc.png,x\nd.png,y\n", ["line 3", "empty label"]),
        ("a.png,x\nb.png,y\nc.png,x\n./a.png,y\n", ["line 4", "line 1"]),
    ] {
        std::fs::write(&labels, text).unwrap();
        let output = siamese(&["pairs-from", "--labels", labels.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?} was accepted");
        assert!(wanted.iter().all(|w| stderr.contains(w)) && !stderr.contains("panicked"), "{stderr}");
    }

    // A file named `#1.png` is a pair like any other, not a comment.
    let folder = tempfile::tempdir().unwrap();
    for name in ["#1.png", "2.png", "#3.png", "4.png"] {
        std::fs::copy(root().join("models/digits/heldout/images/0024_d4.png"), folder.path().join(name)).unwrap();
    }
    std::fs::write(&labels, "#1.png,a\n2.png,a\n#3.png,b\n4.png,b\n").unwrap();
    std::fs::copy(&labels, folder.path().join("labels.csv")).unwrap();
    let labels = folder.path().join("labels.csv");
    let csv = folder.path().join("pairs.csv");
    let output = siamese(&["pairs-from", "--labels", labels.to_str().unwrap(), "--out", csv.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(std::fs::read_to_string(&csv).unwrap().lines().any(|l| l.starts_with("#1.png,")), "the case is tested");
    let pairs = siamese_wgpu::verify::read_pairs_csv(&csv).unwrap();
    assert_eq!(pairs.labels.len(), 4, "2 same, 2 different");
    assert!(pairs.left.iter().chain(&pairs.right).all(|p| p.is_file()));
}

#[test]
fn a_saved_gallery_is_searched_only_with_the_model_that_embedded_it() {
    let Some(_) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("gallery.safetensors");
    let images = "models/digits/heldout/images";
    let query = format!("{images}/0024_d4.png");
    let search = |model: &str, extra: &[&str]| {
        let mut args = vec!["search", "--model", model, "--gallery", saved.to_str().unwrap(), "-k", "2"];
        args.extend(extra);
        args.extend(["--query", &query]);
        siamese(&args)
    };
    let output = siamese(&[
        "search",
        "--model",
        "models/digits",
        "--gallery",
        images,
        "--distance",
        "cosine",
        "--save",
        saved.to_str().unwrap(),
        "--query",
        &query,
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let fingerprint =
        |dir: &str| siamese_wgpu::search::model_fingerprint(&siamese_wgpu::model::load(root().join(dir)).unwrap());
    // Another model: refused, naming both fingerprints and the way out.
    let output = search("models/cnn", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "searched the digits gallery with models/cnn: {stderr}");
    for part in [fingerprint("models/digits"), fingerprint("models/cnn"), "--allow-model-mismatch".into()] {
        assert!(stderr.contains(&part), "{stderr} does not name {part}");
    }
    let output = search("models/cnn", &["--allow-model-mismatch"]);
    stdout_of(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("warning"));
    // Its own model: no warning, and the saved metric is the default.
    let output = search("models/digits", &[]);
    let text = stdout_of(&output);
    assert!(text.lines().nth(1).unwrap().contains("0024_d4.png"), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning") && stderr.contains("cosine"), "{stderr}");
    // Another metric: searched, with a warning.
    let output = search("models/digits", &["--distance", "euclidean"]);
    stdout_of(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("saved for cosine") && stderr.contains("euclidean"), "{stderr}");
    // A gallery saved before models were recorded: searched, with a warning.
    let mut old = siamese_wgpu::Gallery::load(&saved).unwrap();
    (old.model, old.model_fingerprint, old.metric) = (None, None, None);
    old.save(&saved).unwrap();
    let output = search("models/cnn", &[]);
    stdout_of(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("saved by an older version: model not recorded"));
}
