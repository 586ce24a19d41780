//! Replays the inputs the fuzzers found (`fuzz/regressions/<target>/`) through the same
//! entry points the fuzz targets call, so a fixed crash stays fixed on stable Rust and
//! without a GPU. See `fuzz/README.md` for running the fuzzers themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // Each input's largest allocation is its own: the other test only reads small seeds.
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
    ];
    for (target, seed) in seeds {
        let entry = targets::TARGETS.iter().find(|(t, _)| t == target).unwrap().1;
        entry(&std::fs::read(root.join(seed)).unwrap());
    }
}
