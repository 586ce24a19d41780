//! LSTM and GRU kernels against the CPU reference on random weights and ragged batches:
//! hidden 1, 7, 64, 65; input 1 and 100; lengths 1, prime and full, mixed in one batch;
//! one and two directions; last state and full sequences.
//! Tolerance atol 1e-5, rtol 1e-4 (f32 state carried over up to 13 steps).

mod common;

use common::{assert_close, gpu, random_vec, rng};
use rand::Rng;
use siamese_wgpu::ops::{Activation, Cell, DirectionWeights, Recurrent, RecurrentConfig};
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::{reference, Gpu};

fn weights(rng: &mut impl Rng, config: &RecurrentConfig) -> Vec<DirectionWeights> {
    let (f, u, g) = (config.input_size, config.units, config.gate_width());
    let scale = |v: Vec<f32>, n: usize| v.into_iter().map(|x| x / (n as f32).sqrt()).collect::<Vec<_>>();
    (0..config.directions)
        .map(|_| DirectionWeights {
            kernel: scale(random_vec(rng, f * g), f),
            recurrent_kernel: scale(random_vec(rng, u * g), u),
            input_bias: random_vec(rng, g),
            recurrent_bias: match config.cell {
                Cell::Gru { reset_after: true } => random_vec(rng, g),
                _ => vec![0.0; g],
            },
        })
        .collect()
}

fn check(gpu: &Gpu, rng: &mut impl Rng, config: RecurrentConfig, lengths: &[usize], steps: usize) {
    let rows = lengths.len();
    let f = config.input_size;
    let weights = weights(rng, &config);
    let input = random_vec(rng, rows * steps * f);
    let mask: Vec<bool> = (0..rows * steps).map(|i| i % steps < lengths[i / steps]).collect();
    let op = Recurrent::new(gpu, config.clone(), &weights).unwrap();
    let shape = [rows, steps, f];
    let out_shape = op.output_shape(&shape).unwrap();
    let x = Tensor::upload(gpu, &Array::new(shape.to_vec(), input.clone()).unwrap()).unwrap();
    let mask_u32: Vec<u32> = mask.iter().map(|&m| m as u32).collect();
    let mask_buffer = gpu.create_buffer_init("mask", bytemuck::cast_slice(&mask_u32), wgpu::BufferUsages::STORAGE);
    let projected = Tensor::zeros(gpu, &[op.projection_len(&shape)]).unwrap();
    let y = Tensor::zeros(gpu, &out_shape).unwrap();
    let dispatches = op.prepare(gpu, &shape, x.buffer(), &mask_buffer, projected.buffer(), y.buffer()).unwrap();
    run_dispatches(gpu, &[&dispatches[0], &dispatches[1]]).unwrap();
    let want = reference::recurrent(&input, shape, &mask, &config, &weights);
    assert_close(
        &format!("{config:?} lengths {lengths:?} steps {steps}"),
        y.download(gpu).unwrap().data(),
        &want,
        1e-5,
        1e-4,
    );
}

fn config(cell: Cell, input_size: usize, units: usize, directions: usize, return_sequences: bool) -> RecurrentConfig {
    RecurrentConfig {
        cell,
        input_size,
        units,
        directions,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        return_sequences,
    }
}

const CELLS: [Cell; 3] = [Cell::Lstm, Cell::Gru { reset_after: true }, Cell::Gru { reset_after: false }];

#[test]
fn recurrent_last_state_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(11);
    for cell in CELLS {
        check(&gpu, &mut rng, config(cell, 100, 64, 1, false), &[13, 1, 7, 13, 2], 13);
        check(&gpu, &mut rng, config(cell, 1, 65, 1, false), &[5, 3], 5);
        check(&gpu, &mut rng, config(cell, 7, 1, 1, false), &[1], 1);
        check(&gpu, &mut rng, config(cell, 3, 7, 1, false), &[11, 4, 1], 11);
    }
}

#[test]
fn bidirectional_and_sequences_match_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(12);
    for cell in CELLS {
        check(&gpu, &mut rng, config(cell, 5, 16, 2, true), &[7, 3, 1], 7);
        check(&gpu, &mut rng, config(cell, 5, 7, 2, false), &[7, 2, 5, 1], 7);
        check(&gpu, &mut rng, config(cell, 32, 8, 1, true), &[6, 6], 6);
    }
}

#[test]
fn batches_sharing_workgroups_match_reference() {
    // Batches of 16+ sequences (per direction) run the LSTM kernel with several rows per
    // workgroup: ragged lengths, a partial last group, units past one slot of 64 and not a
    // multiple of 4, and both directions with sequence outputs.
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(14);
    let lengths: Vec<usize> = (0..18).map(|i| 1 + (i * 7) % 9).collect();
    for cell in CELLS {
        check(&gpu, &mut rng, config(cell, 6, 130, 1, false), &lengths, 9);
        check(&gpu, &mut rng, config(cell, 3, 5, 2, true), &lengths[..9], 9);
        check(&gpu, &mut rng, config(cell, 100, 64, 1, false), &[50; 17], 50);
    }
}

#[test]
fn other_activations_match_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = rng(13);
    for cell in CELLS {
        for (gate, act) in [(Activation::HardSigmoid, Activation::Tanh), (Activation::Sigmoid, Activation::Relu)] {
            let mut c = config(cell, 4, 9, 1, false);
            c.recurrent_activation = gate;
            c.activation = act;
            check(&gpu, &mut rng, c, &[5, 2, 3], 5);
        }
    }
}

#[test]
fn units_beyond_the_workgroup_state_are_a_typed_error() {
    let Some(gpu) = gpu() else { return };
    let c = config(Cell::Lstm, 2, 600, 1, false);
    let w = weights(&mut rng(1), &c);
    assert!(matches!(Recurrent::new(&gpu, c, &w), Err(siamese_wgpu::Error::LimitExceeded { .. })));
}
