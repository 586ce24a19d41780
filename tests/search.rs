//! Nearest-neighbour search: the distance-matrix kernel against `reference::distance`,
//! the top-k kernel against an exact CPU selection on the same matrix, and whole searches
//! against a brute-force CPU search (every metric, k 1/5/17, galleries of 1, k−1, k and
//! 1000 rows and one larger than a storage binding), ties, exact matches, chunking and
//! bad input. Gallery files and the model they record: tests/gallery.rs.
//!
//! Tolerance for distances: atol 1e-5, rtol 1e-4 (f32 sums against f64 sums, only the
//! summation order differs). Index orders are compared exactly where both sides rank the
//! same f32 values (top-k kernel, chunked vs unchunked); against the f64 brute force, a
//! different index is accepted only at a near tie (its reference distance within the
//! tolerance of the brute-force distance at that rank).

mod common;

use std::sync::Arc;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::ops::search::{order_key, NO_INDEX};
use siamese_wgpu::ops::{DistanceMatrix, MatrixShape, TopK, TopKShape};
use siamese_wgpu::search::{brute_force_top_k, Gallery, GpuSearch};
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::{reference, Distance, Error, Gpu, GpuOptions};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= ATOL + RTOL * b.abs()
}

fn upload(gpu: &Gpu, data: &[f32]) -> Tensor {
    Tensor::upload(gpu, &Array::new(vec![data.len()], data.to_vec()).unwrap()).unwrap()
}

fn random_gallery(rng: &mut impl Rng, rows: usize, dim: usize) -> Gallery {
    let ids = (0..rows).map(|i| format!("item-{i}")).collect();
    Gallery::new(ids, Array::new(vec![rows, dim], random_vec(rng, rows * dim)).unwrap()).unwrap()
}

/// Queries: `random` random rows, then copies of the gallery rows `copies`.
fn queries(rng: &mut impl Rng, gallery: &Gallery, random: usize, copies: &[usize]) -> Array {
    let dim = gallery.dim();
    let mut data = random_vec(rng, random * dim);
    for &row in copies {
        data.extend_from_slice(gallery.embeddings.row(row));
    }
    Array::new(vec![random + copies.len(), dim], data).unwrap()
}

/// Checks one query's GPU result against the brute-force CPU top-k (see the module docs
/// for the tolerance and the near-tie rule).
#[track_caller]
fn check_result(what: &str, gallery: &Gallery, query: &[f32], k: usize, metric: Distance, got: &[(usize, f32)]) {
    let want = brute_force_top_k(&gallery.embeddings, query, k, metric);
    assert_eq!(got.len(), want.len(), "{what}: result count");
    for (rank, (&(index, distance), &(want_index, want_distance))) in got.iter().zip(&want).enumerate() {
        let own = reference::distance(query, gallery.embeddings.row(index), metric);
        assert!(close(distance, own), "{what}: rank {rank}: index {index} distance {distance}, reference {own}");
        assert!(
            index == want_index || close(own, want_distance),
            "{what}: rank {rank}: got index {index} (reference distance {own}), brute force index {want_index} \
             (distance {want_distance})"
        );
        if rank > 0 {
            let (previous_index, previous) = got[rank - 1];
            assert!(
                (order_key(previous), previous_index) < (order_key(distance), index),
                "{what}: rank {rank} not after rank {}: ({previous_index}, {previous}) then ({index}, {distance})",
                rank - 1
            );
        }
    }
}

#[test]
fn distance_matrix_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(71);
    for dim in [1, 7, 130] {
        for (count, rows, offset) in [(1, 1, 0), (9, 300, 0), (3, 257, 5), (17, 5, 2)] {
            let mut gallery = random_vec(&mut rng, (offset + rows) * dim);
            let mut queries = random_vec(&mut rng, count * dim);
            // Query 0 is gallery row offset + rows - 1 (identical: exactly 0); with two or
            // more rows, gallery row offset is all zeros (cosine's norm guard).
            let copy = (offset + rows - 1) * dim;
            queries[..dim].copy_from_slice(&gallery[copy..copy + dim]);
            if rows > 1 {
                gallery[offset * dim..(offset + 1) * dim].fill(0.0);
            }
            // The kernel reads the gallery transposed, [dim, rows].
            let stride = offset + rows;
            let transposed: Vec<f32> =
                (0..dim).flat_map(|c| (0..stride).map(move |r| (r, c))).map(|(r, c)| gallery[r * dim + c]).collect();
            let (query_buffer, gallery_buffer) = (upload(&gpu, &queries), upload(&gpu, &transposed));
            let out = Tensor::zeros(&gpu, &[count * rows]).unwrap();
            for metric in Distance::ALL {
                let op = DistanceMatrix::new(&gpu, metric).unwrap();
                let shape = MatrixShape { queries: count, rows, dim, gallery_offset: offset, gallery_stride: stride };
                let d = op.prepare(&gpu, shape, query_buffer.buffer(), gallery_buffer.buffer(), out.buffer()).unwrap();
                run_dispatches(&gpu, &[&d]).unwrap();
                let got = out.download(&gpu).unwrap().into_data();
                let mut want = Vec::new();
                for q in 0..count {
                    for r in 0..rows {
                        let row = (offset + r) * dim;
                        want.push(reference::distance(
                            &queries[q * dim..(q + 1) * dim],
                            &gallery[row..row + dim],
                            metric,
                        ));
                    }
                }
                assert_close(&format!("{metric} matrix {count}x{rows}x{dim} offset {offset}"), &got, &want, ATOL, RTOL);
                assert_eq!(got[rows - 1], 0.0, "{metric}: identical rows must give exactly 0");
                assert!(got.iter().all(|v| v.is_finite()), "{metric}: non-finite distance");
            }
        }
    }
}

#[test]
fn top_k_matches_exact_selection() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(72);
    let op = TopK::new(&gpu).unwrap();
    // Many exact ties, signed zeros, infinities and NaNs among ordinary values.
    let specials = [0.0, -0.0, 0.5, 1.0, 0.25, f32::INFINITY, f32::NAN, f32::from_bits(0x7fc0_0001)];
    for rows in [1, 3] {
        for cols in [1, 4, 5, 17, 300, 1000] {
            let matrix: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    if rng.random_bool(0.5) {
                        specials[rng.random_range(0..specials.len())]
                    } else {
                        rng.random_range(0.0f32..2.0)
                    }
                })
                .collect();
            let matrix_buffer = upload(&gpu, &matrix);
            for k in [1, 5, 17] {
                let index_offset = 1000;
                // Two output halves: the kernel must write only its own (out_offset).
                let out_offset = rows * k;
                let indices = upload(&gpu, &vec![-1.0; 2 * rows * k]);
                let distances = upload(&gpu, &vec![-1.0; 2 * rows * k]);
                let shape = TopKShape { rows, cols, k, index_offset, out_offset };
                let d = op.prepare(&gpu, shape, matrix_buffer.buffer(), indices.buffer(), distances.buffer()).unwrap();
                run_dispatches(&gpu, &[&d]).unwrap();
                let got_indices: Vec<u32> =
                    indices.download(&gpu).unwrap().data().iter().map(|v| v.to_bits()).collect();
                let got_bits: Vec<u32> = distances.download(&gpu).unwrap().data().iter().map(|v| v.to_bits()).collect();
                assert!(got_indices[..out_offset].iter().all(|&i| i == (-1.0f32).to_bits()), "wrote before out_offset");
                for row in 0..rows {
                    let values = &matrix[row * cols..(row + 1) * cols];
                    let mut order: Vec<usize> = (0..cols).collect();
                    order.sort_by_key(|&c| (order_key(values[c]), c));
                    for rank in 0..k {
                        let slot = out_offset + row * k + rank;
                        let what = format!("{rows}x{cols} k {k}: row {row} rank {rank}");
                        if let Some(&col) = order.get(rank) {
                            assert_eq!(got_indices[slot], (col + index_offset) as u32, "{what}: index");
                            assert_eq!(got_bits[slot], values[col].to_bits(), "{what}: distance bits");
                        } else {
                            assert_eq!(got_indices[slot], NO_INDEX, "{what}: slot beyond the row");
                            assert_eq!(got_bits[slot], 0x7fc0_0000, "{what}: slot beyond the row");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn search_matches_brute_force() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(73);
    let dim = 7;
    for k in [1, 5, 17] {
        for rows in [1, k - 1, k, 1000] {
            if rows == 0 {
                continue;
            }
            let gallery = random_gallery(&mut rng, rows, dim);
            let exact = rows / 2;
            let queries = queries(&mut rng, &gallery, 3, &[exact]);
            let search = GpuSearch::new(gpu.clone(), &gallery).unwrap();
            for metric in Distance::ALL {
                let results = search.search(&queries, k, metric).unwrap();
                assert_eq!(results.len(), queries.batch());
                for (q, got) in results.iter().enumerate() {
                    let what = format!("{metric} k {k} gallery {rows} query {q}");
                    check_result(&what, &gallery, queries.row(q), k, metric, got);
                }
                // The copied gallery row is its own nearest neighbour at exactly 0.
                assert_eq!(results[3][0], (exact, 0.0), "{metric} k {k} gallery {rows}: exact match");
            }
        }
    }
}

#[test]
fn ties_put_the_smaller_index_first() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(74);
    let (rows, dim) = (40, 5);
    let mut gallery = random_gallery(&mut rng, rows, dim);
    let mut data = gallery.embeddings.data().to_vec();
    let (v, w) = (data[..dim].to_vec(), data[dim..2 * dim].to_vec());
    // Rows 29, 17, 3 (and 0) equal v; rows 11, 10 (and 1) equal w.
    for (row, value) in [(29, &v), (17, &v), (3, &v), (11, &w), (10, &w)] {
        data[row * dim..(row + 1) * dim].copy_from_slice(value);
    }
    gallery.embeddings = Array::new(vec![rows, dim], data).unwrap();
    let queries = queries(&mut rng, &gallery, 2, &[29, 10]);
    let mut search = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    for metric in Distance::ALL {
        let full = search.search(&queries, rows, metric).unwrap();
        let order: Vec<Vec<usize>> = full.iter().map(|r| r.iter().map(|&(i, _)| i).collect()).collect();
        assert_eq!(&order[2][..4], &[0, 3, 17, 29], "{metric}: copies of v in index order");
        assert_eq!(&order[3][..3], &[1, 10, 11], "{metric}: copies of w in index order");
        assert!(full[2][..4].iter().all(|&(_, d)| d == 0.0), "{metric}: exact matches give 0");
        for (q, ranks) in order.iter().enumerate() {
            let at = |i: usize| ranks.iter().position(|&r| r == i).unwrap();
            let (a, b, c, d) = (at(0), at(3), at(17), at(29));
            assert!(b == a + 1 && c == b + 1 && d == c + 1, "{metric} query {q}: tied rows not adjacent and ascending");
        }
        // Chunk boundaries cut through the tied rows: same order, same bits.
        for cap in [1, 4, 7] {
            search.set_max_gallery_chunk(Some(cap));
            let chunked = search.search(&queries, rows, metric).unwrap();
            assert_eq!(bits(&chunked), bits(&full), "{metric}: chunks of {cap} rows");
            search.set_max_gallery_chunk(None);
        }
    }
}

fn bits(results: &[Vec<(usize, f32)>]) -> Vec<Vec<(usize, u32)>> {
    results.iter().map(|r| r.iter().map(|&(i, d)| (i, d.to_bits())).collect()).collect()
}

#[test]
fn chunked_search_gives_identical_results() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(75);
    let gallery = random_gallery(&mut rng, 1000, 33);
    let queries = queries(&mut rng, &gallery, 19, &[999]);
    let mut search = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    assert_eq!(search.gallery_buffers(), 1);
    for metric in Distance::ALL {
        let whole = search.search(&queries, 17, metric).unwrap();
        for cap in [7, 256, 999] {
            search.set_max_gallery_chunk(Some(cap));
            assert_eq!(search.max_gallery_chunk(), cap);
            let chunked = search.search(&queries, 17, metric).unwrap();
            assert_eq!(bits(&chunked), bits(&whole), "{metric}: chunks of {cap} rows");
        }
        search.set_max_gallery_chunk(None);
    }
}

#[test]
fn gallery_larger_than_one_storage_binding() {
    let Some(gpu) = gpu() else { return };
    // wgpu accepts limits below the adapter's: a 1 MiB binding makes a 2500 × 130 gallery
    // (1.3 MB) take two storage buffers, and 300 queries take three query steps (the
    // [queries, 2016] matrix must fit 1 MiB too).
    let mut options = GpuOptions::from_env().unwrap();
    options.limits = Some(wgpu::Limits { max_storage_buffer_binding_size: 1 << 20, ..gpu.limits() });
    let small = Arc::new(Gpu::with_options(&options).unwrap());
    assert_eq!(small.limits().max_storage_buffer_binding_size, 1 << 20);
    let mut rng = rng(76);
    let gallery = random_gallery(&mut rng, 2500, 130);
    let search = GpuSearch::new(small.clone(), &gallery).unwrap();
    assert_eq!(search.gallery_buffers(), 2);
    assert!(search.max_gallery_chunk() < gallery.len());
    let few = queries(&mut rng, &gallery, 4, &[2400, 3]);
    for metric in Distance::ALL {
        let results = search.search(&few, 17, metric).unwrap();
        for (q, got) in results.iter().enumerate() {
            check_result(&format!("{metric} 1 MiB bindings query {q}"), &gallery, few.row(q), 17, metric, got);
        }
        assert_eq!(results[4][0], (2400, 0.0), "{metric}: exact match in the second buffer");
        assert_eq!(results[5][0], (3, 0.0), "{metric}: exact match in the first buffer");
    }
    let many = queries(&mut rng, &gallery, 299, &[1234]);
    let submits = small.submit_count();
    let results = search.search(&many, 5, Distance::Euclidean).unwrap();
    // Chunks of 2016 rows (1 MiB / 520 B): 262144 / 2016 = 130 queries per step, 3 steps,
    // each one submit for both gallery chunks.
    assert_eq!(small.submit_count(), submits + 3);
    for (q, got) in results.iter().enumerate() {
        check_result(&format!("300 queries, query {q}"), &gallery, many.row(q), 5, Distance::Euclidean, got);
    }
    assert_eq!(results[299][0], (1234, 0.0));
    // The same search on the default device: the same bits.
    let default = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    assert_eq!(bits(&default.search(&many, 5, Distance::Euclidean).unwrap()), bits(&results));
}

#[test]
fn search_runs_with_downlevel_default_limits() {
    let Some(gpu) = gpu() else { return };
    // 4 storage buffers per stage, 16 KiB of workgroup memory, 256 invocations.
    let mut options = GpuOptions::from_env().unwrap();
    options.limits = Some(wgpu::Limits::downlevel_defaults());
    let downlevel = Arc::new(Gpu::with_options(&options).unwrap());
    let mut rng = rng(78);
    let gallery = random_gallery(&mut rng, 300, 20);
    let queries = queries(&mut rng, &gallery, 9, &[123]);
    let search = GpuSearch::new(downlevel.clone(), &gallery).unwrap();
    let default = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    for metric in Distance::ALL {
        // This device is this test's own, so its submit counter is exact: one per search.
        let submits = downlevel.submit_count();
        let results = search.search(&queries, 5, metric).unwrap();
        assert_eq!(downlevel.submit_count(), submits + 1, "{metric}: one submit per search");
        assert_eq!(bits(&results), bits(&default.search(&queries, 5, metric).unwrap()), "{metric}");
        assert_eq!(results[9][0], (123, 0.0), "{metric}: exact match");
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(77);
    let gallery = random_gallery(&mut rng, 10, 4);
    let search = GpuSearch::new(gpu.clone(), &gallery).unwrap();
    let query = Array::new(vec![1, 4], vec![0.5; 4]).unwrap();
    let invalid = |result: Result<Vec<Vec<(usize, f32)>>, Error>| match result {
        Err(Error::InvalidInput { what, .. }) => what,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(invalid(search.search(&query, 0, Distance::Euclidean)), "k");
    assert_eq!(invalid(search.search(&query, 1, Distance::Learned)), "metric");
    let nan = Array::new(vec![1, 4], vec![0.5, f32::NAN, 0.0, 0.0]).unwrap();
    assert_eq!(invalid(search.search(&nan, 1, Distance::Euclidean)), "queries");
    let empty = Array::new(vec![0, 4], vec![]).unwrap();
    assert_eq!(invalid(search.search(&empty, 1, Distance::Euclidean)), "queries");
    for wrong in [Array::new(vec![1, 5], vec![0.0; 5]).unwrap(), Array::new(vec![4], vec![0.0; 4]).unwrap()] {
        match search.search(&wrong, 1, Distance::Euclidean) {
            Err(Error::ShapeMismatch { op, .. }) => assert_eq!(op, "queries"),
            other => panic!("expected a shape error for {:?}, got {other:?}", wrong.shape()),
        }
    }
    // k beyond the gallery: all rows, no padding.
    assert_eq!(search.search(&query, 50, Distance::Cosine).unwrap()[0].len(), 10);

    let empty_gallery = Gallery::new(vec![], Array::new(vec![0, 4], vec![]).unwrap()).unwrap();
    match GpuSearch::new(gpu.clone(), &empty_gallery) {
        Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "gallery"),
        other => panic!("expected InvalidInput for an empty gallery, got {other:?}"),
    }
    match Gallery::new(vec!["a".into()], Array::new(vec![2, 2], vec![0.0; 4]).unwrap()) {
        Err(Error::ShapeMismatch { op, .. }) => assert_eq!(op, "gallery ids"),
        other => panic!("expected a shape error for 1 id and 2 rows, got {other:?}"),
    }
    match Gallery::new(vec!["a".into()], Array::new(vec![1, 2], vec![f32::INFINITY, 0.0]).unwrap()) {
        Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "gallery embeddings"),
        other => panic!("expected InvalidInput for an infinite embedding, got {other:?}"),
    }
    assert!(matches!(DistanceMatrix::new(&gpu, Distance::Learned), Err(Error::InvalidInput { .. })));
    let buffer = upload(&gpu, &[0.0; 4]);
    let shape = TopKShape { rows: 1, cols: 4, k: 0, index_offset: 0, out_offset: 0 };
    assert!(matches!(
        TopK::new(&gpu).unwrap().prepare(&gpu, shape, buffer.buffer(), buffer.buffer(), buffer.buffer()),
        Err(Error::InvalidInput { .. })
    ));
    // A too-small output buffer is a shape error, not a GPU validation error.
    let shape = TopKShape { rows: 1, cols: 4, k: 5, index_offset: 0, out_offset: 0 };
    assert!(matches!(
        TopK::new(&gpu).unwrap().prepare(&gpu, shape, buffer.buffer(), buffer.buffer(), buffer.buffer()),
        Err(Error::ShapeMismatch { .. })
    ));
}
