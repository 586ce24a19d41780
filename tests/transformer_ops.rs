//! Transformer kernels against the CPU reference on random data: embeddings + LayerNorm,
//! residual LayerNorm, fused masked self-attention, masked mean pooling + normalisation.
//! Odd sizes (hidden 7, 65, 384), batch 1, padded rows. Tolerance atol 1e-5, rtol 1e-4.

mod common;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::ops::{EmbeddingLookup, EmbeddingTables, LayerNorm, SelfAttention, SequencePool, TokenEmbedding};
use siamese_wgpu::reference;
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::Gpu;

fn upload(gpu: &Gpu, data: Vec<f32>) -> Tensor {
    Tensor::upload(gpu, &Array::new(vec![data.len()], data).unwrap()).unwrap()
}

fn u32_buffer(gpu: &Gpu, data: &[u32]) -> wgpu::Buffer {
    gpu.create_buffer_init("u32", bytemuck::cast_slice(data), wgpu::BufferUsages::STORAGE)
}

fn ragged_mask(rng: &mut impl Rng, batch: usize, steps: usize) -> Vec<bool> {
    let lengths: Vec<usize> = (0..batch).map(|b| if b == 0 { steps } else { rng.random_range(1..=steps) }).collect();
    (0..batch * steps).map(|i| i % steps < lengths[i / steps]).collect()
}

#[test]
fn layer_norm_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(21);
    for (rows, hidden) in [(1, 1), (3, 7), (10, 384), (5, 65)] {
        let x = random_vec(&mut rng, rows * hidden);
        let residual = random_vec(&mut rng, rows * hidden);
        let (gamma, beta) = (random_vec(&mut rng, hidden), random_vec(&mut rng, hidden));
        let op = LayerNorm::new(&gpu, &gamma, &beta, 1e-12).unwrap();
        for with_residual in [false, true] {
            let (xb, rb) = (upload(&gpu, x.clone()), upload(&gpu, residual.clone()));
            let out = Tensor::zeros(&gpu, &[rows * hidden]).unwrap();
            let d = op.prepare(&gpu, rows, xb.buffer(), with_residual.then(|| rb.buffer()), out.buffer()).unwrap();
            run_dispatches(&gpu, &[&d]).unwrap();
            let want = reference::layer_norm(&x, with_residual.then_some(&residual[..]), &gamma, &beta, 1e-12);
            if hidden == 1 {
                // One value: normalised to 0, output = beta.
                assert_close("layer norm hidden 1", out.download(&gpu).unwrap().data(), &want, 1e-5, 1e-4);
            } else {
                assert_close(
                    &format!("layer norm {rows}x{hidden}"),
                    out.download(&gpu).unwrap().data(),
                    &want,
                    1e-5,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn token_embedding_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(22);
    let (vocab, positions, types, hidden) = (50, 12, 2, 65);
    let word = random_vec(&mut rng, vocab * hidden);
    let position = random_vec(&mut rng, positions * hidden);
    let token_type = random_vec(&mut rng, types * hidden);
    let (gamma, beta) = (random_vec(&mut rng, hidden), random_vec(&mut rng, hidden));
    let tables =
        EmbeddingTables { word: &word, position: &position, token_type: &token_type, gamma: &gamma, beta: &beta };
    let op = TokenEmbedding::new(&gpu, hidden, &tables, 1e-12).unwrap();
    let (batch, steps) = (3, 7);
    let ids: Vec<u32> = (0..batch * steps).map(|_| rng.random_range(0..vocab as u32)).collect();
    let kinds: Vec<u32> = (0..batch * steps).map(|_| rng.random_range(0..types as u32)).collect();
    let pairs: Vec<f32> = ids.iter().zip(&kinds).flat_map(|(&id, &kind)| [id as f32, kind as f32]).collect();
    let ids_tensor = upload(&gpu, pairs);
    let ids_buffer = ids_tensor.buffer();
    let out = Tensor::zeros(&gpu, &[batch * steps * hidden]).unwrap();
    let d = op.prepare(&gpu, batch, steps, ids_buffer, out.buffer()).unwrap();
    run_dispatches(&gpu, &[&d]).unwrap();
    let want = reference::token_embedding(&ids, &kinds, steps, &tables, 1e-12);
    assert_close("token embedding", out.download(&gpu).unwrap().data(), &want, 1e-5, 1e-4);
    // Sequences longer than the position table are a typed error.
    assert!(op.prepare(&gpu, 1, positions + 1, ids_buffer, out.buffer()).is_err());
}

#[test]
fn embedding_lookup_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(23);
    for (vocab, dim, tokens) in [(1, 1, 1), (50, 7, 33), (300, 65, 129)] {
        let table = random_vec(&mut rng, vocab * dim);
        let ids: Vec<f32> = (0..tokens).map(|_| rng.random_range(0..vocab) as f32).collect();
        let op = EmbeddingLookup::new(&gpu, vocab, dim, &table).unwrap();
        let input = upload(&gpu, ids.clone());
        let out = Tensor::zeros(&gpu, &[tokens * dim]).unwrap();
        let d = op.prepare(&gpu, tokens, input.buffer(), out.buffer()).unwrap();
        run_dispatches(&gpu, &[&d]).unwrap();
        let want = reference::gather_rows(&ids, &table, vocab, dim);
        // A lookup copies: exact.
        assert_eq!(out.download(&gpu).unwrap().data(), &want[..], "embedding lookup {vocab}x{dim}, {tokens} ids");
    }
    assert!(EmbeddingLookup::new(&gpu, 4, 3, &[0.0; 11]).is_err());
}

#[test]
fn self_attention_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(23);
    for (batch, steps, heads, head_dim) in
        [(1, 1, 1, 1), (2, 5, 3, 4), (2, 6, 2, 7), (3, 13, 12, 32), (2, 9, 4, 64), (1, 4, 1, 128)]
    {
        let hidden = heads * head_dim;
        let qkv = random_vec(&mut rng, batch * steps * 3 * hidden);
        let mask = ragged_mask(&mut rng, batch, steps);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let op = SelfAttention::new(&gpu, heads, head_dim, scale).unwrap();
        let q = upload(&gpu, qkv.clone());
        let mask_u32: Vec<u32> = mask.iter().map(|&m| m as u32).collect();
        let m = u32_buffer(&gpu, &mask_u32);
        let out = Tensor::zeros(&gpu, &[batch * steps * hidden]).unwrap();
        let d = op.prepare(&gpu, batch, steps, q.buffer(), &m, out.buffer()).unwrap();
        run_dispatches(&gpu, &[&d]).unwrap();
        let want = reference::self_attention(&qkv, batch, steps, heads, head_dim, scale, &mask);
        assert_close(
            &format!("attention b{batch} t{steps} h{heads}x{head_dim}"),
            out.download(&gpu).unwrap().data(),
            &want,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn masked_mean_pool_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(24);
    for (batch, steps, hidden) in [(1, 1, 1), (4, 7, 65), (2, 13, 384)] {
        let x = random_vec(&mut rng, batch * steps * hidden);
        let mask = ragged_mask(&mut rng, batch, steps);
        let mask_u32: Vec<u32> = mask.iter().map(|&m| m as u32).collect();
        for normalize in [false, true] {
            let op = SequencePool::new(&gpu, normalize).unwrap();
            let (xb, m) = (upload(&gpu, x.clone()), u32_buffer(&gpu, &mask_u32));
            let out = Tensor::zeros(&gpu, &[batch * hidden]).unwrap();
            let d = op.prepare(&gpu, batch, steps, hidden, xb.buffer(), &m, out.buffer()).unwrap();
            run_dispatches(&gpu, &[&d]).unwrap();
            let want = reference::masked_mean_pool(&x, batch, steps, hidden, &mask, normalize);
            assert_close(
                &format!("pool b{batch} t{steps} h{hidden} norm {normalize}"),
                out.download(&gpu).unwrap().data(),
                &want,
                1e-5,
                1e-4,
            );
        }
    }
}
