//! Replays the inputs the fuzzers found (`fuzz/regressions/<target>/`) through the same
//! entry points the fuzz targets call, so a fixed crash stays fixed on stable Rust and
//! without a GPU. See `fuzz/README.md` for running the fuzzers themselves.
//!
//! Also here, because the measuring allocator is: a PNG that declares more pixels than it
//! holds must be refused from its header, before its pixels are allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[path = "../fuzz/src/lib.rs"]
mod targets;

/// The largest single allocation a kept input may cause. They are all small files: more
/// means a size declared in a header is trusted again (the fuzzers cap allocations at
/// 2 GiB; here a huge `calloc` may well succeed, so it is measured instead).
const ALLOCATION_LIMIT: usize = 256 << 20;

/// The longest a kept input may take (debug build): some were hangs.
const TIME_LIMIT_SECONDS: f64 = 10.0;

/// The system allocator, remembering the largest request since the last reset.
struct Measured;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Held by a test while it measures [`LARGEST`], which is one counter for all threads.
static MEASURING: Mutex<()> = Mutex::new(());

// SAFETY: forwards every call unchanged to `System`; it only records sizes.
unsafe impl GlobalAlloc for Measured {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Measured = Measured;

#[test]
fn every_kept_fuzz_input_returns_without_panic_hang_or_huge_allocation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    let mut failures = Vec::new();
    // Each input's largest allocation is its own: the seed test reads small seeds only.
    let _measuring = MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (target, entry) in targets::TARGETS {
        let Ok(files) = std::fs::read_dir(root.join(target)) else { continue };
        let mut files: Vec<_> = files.filter_map(|f| f.ok()).map(|f| f.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            replayed += 1;
            LARGEST.store(0, Ordering::Relaxed);
            let start = Instant::now();
            if std::panic::catch_unwind(|| entry(&bytes)).is_err() {
                failures.push(format!("{target}: {} panics", file.display()));
            }
            let seconds = start.elapsed().as_secs_f64();
            if seconds > TIME_LIMIT_SECONDS {
                failures.push(format!("{target}: {} takes {seconds:.1} s", file.display()));
            }
            let largest = LARGEST.load(Ordering::Relaxed);
            if largest > ALLOCATION_LIMIT {
                failures.push(format!("{target}: {} allocates {largest} bytes at once", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {replayed} kept fuzz inputs fail:\n{}", failures.len(), failures.join("\n"));
    // Every target directory that exists must be one the fuzz crate knows (a typo would
    // silently replay nothing).
    for dir in std::fs::read_dir(&root).into_iter().flatten().filter_map(|d| d.ok()) {
        let name = dir.file_name().to_string_lossy().into_owned();
        assert!(targets::TARGETS.iter().any(|(t, _)| *t == name), "fuzz/regressions/{name} is no fuzz target");
    }
}

#[test]
fn every_fixture_seed_parses_through_its_target() {
    // The entry points themselves must not panic on the well-formed fixtures they are
    // seeded with (a broken fixture list would make every fuzz run start from nothing).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: &[(&str, &str)] = &[
        ("model_json", "tests/fixtures/chain_a/model.json"),
        ("safetensors_weights", "tests/fixtures/chain_a/model.safetensors"),
        ("npy", "tests/fixtures/chain_a/left.npy"),
        ("pairs_tsv", "tests/fixtures/minilm/pairs.tsv"),
        ("pairs_csv", "models/digits/heldout/pairs.csv"),
        ("labels_csv", "models/digits/heldout/labels.csv"),
        ("keras_file", "tests/fixtures/keras_files/cnn_encoder.keras"),
        ("onnx_file", "tests/fixtures/onnx/tiny_cnn.dynamo.onnx"),
        ("onnx_file", "tests/fixtures/onnx/mbv3_block.ts.onnx"),
    ];
    for (target, seed) in seeds {
        let entry = targets::TARGETS.iter().find(|(t, _)| t == target).unwrap().1;
        entry(&std::fs::read(root.join(seed)).unwrap());
    }
}

/// CRC-32 (ISO-HDLC, as PNG chunks use), bit by bit: fast enough for a few chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid PNG header declaring an 8-bit grayscale `width`×`height` image, followed by an
/// IDAT chunk holding a few bytes only: a few hundred bytes that a decoder trusting the
/// header would allocate `width * height` bytes for.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| -> Vec<u8> {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(&body);
        chunk.extend_from_slice(&crc32(&body).to_be_bytes());
        chunk
    };
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit, grayscale, deflate, adaptive filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    // A zlib stream header and one stored block of zeros: the start of row 0.
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x00, 0x10, 0x00, 0xef, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn a_png_declaring_a_huge_image_is_refused_from_its_header() {
    use siamese_wgpu::io::{read_batch, read_png, read_png_for, read_samples};
    use siamese_wgpu::Error;
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_declaring(20_000, 20_000)).unwrap();
    let name = huge.display().to_string();
    let _measuring = MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());

    // Whatever the caller expects: the absolute cap (64 megapixels), from the header.
    let refused = |err: Error| {
        let message = err.to_string();
        assert!(matches!(err, Error::Decode { .. }), "{message}");
        assert!(
            message.starts_with(&name) && message.contains("20000×20000") && message.contains("at most 67108864"),
            "{message}"
        );
    };
    LARGEST.store(0, Ordering::Relaxed);
    refused(read_png(&huge, Some(1)).unwrap_err());
    refused(read_png(&huge, None).unwrap_err());
    refused(read_batch(&[&huge], Some(1)).unwrap_err());
    refused(read_samples(&[&huge, &huge], Some(3)).unwrap_err());
    // With the model's input shape: the expected size is named too.
    let err = read_png_for(&huge, &[28, 28, 1]).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { op, expected, got } if *op == name && expected.contains("28×28") && got.contains("20000×20000")),
        "{err}"
    );
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < ALLOCATION_LIMIT, "refusing a 20000×20000 PNG allocated {largest} bytes at once");
}
