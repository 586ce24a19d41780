//! Criterion benches per kernel on the default adapter (set SIAMESE_BACKEND /
//! SIAMESE_ADAPTER to choose). Each iteration records one dispatch, submits and waits, so
//! on a software adapter it includes ~20-40 µs of submit overhead; `siamese bench` times
//! whole batched models.
//!
//! cargo bench --bench kernels

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use siamese_wgpu::ops::{
    Activation, Cell, Conv2d, Conv2dConfig, Dense, DirectionWeights, Distance, Padding, PairDistance, Pool2d,
    Pool2dConfig, PoolKind, Recurrent, RecurrentConfig, SelfAttention,
};
use siamese_wgpu::tensor::{run_dispatches, Array, Tensor};
use siamese_wgpu::Gpu;

fn values(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 % 1000) as f32 / 1000.0) - 0.5).collect()
}

fn tensor(gpu: &Gpu, shape: &[usize]) -> Tensor {
    Tensor::upload(gpu, &Array::new(shape.to_vec(), values(shape.iter().product())).unwrap()).unwrap()
}

fn kernels(c: &mut Criterion) {
    let gpu = Gpu::new().expect("benchmarks need a GPU adapter (or lavapipe: apt-get install mesa-vulkan-drivers)");
    let mut group = c.benchmark_group(format!("kernels on {}", gpu.adapter_info().name));
    group.sample_size(20);

    // The seed CNN's Dense 1600 -> 128 at 2×64 rows.
    let (rows, inf, outf) = (128, 1600, 128);
    let dense = Dense::new(&gpu, inf, outf, &values(inf * outf), Some(&values(outf)), Activation::Relu).unwrap();
    let x = tensor(&gpu, &[rows, inf]);
    let y = Tensor::zeros(&gpu, &[rows, outf]).unwrap();
    let dispatch = dense.prepare(&gpu, x.shape(), x.buffer(), y.buffer()).unwrap();
    group.throughput(Throughput::Elements((2 * rows * inf * outf) as u64));
    group.bench_function("dense 128x1600x128 relu (elements = FLOP)", |b| {
        b.iter(|| run_dispatches(&gpu, &[&dispatch]).unwrap())
    });

    // The seed CNN's second Conv2D (13×13×32 -> 11×11×64, 3×3) at batch 128.
    let config = Conv2dConfig {
        in_channels: 32,
        filters: 64,
        kernel: (3, 3),
        strides: (1, 1),
        dilation: (1, 1),
        padding: Padding::Valid,
        activation: Activation::Relu,
    };
    let conv = Conv2d::new(&gpu, config.clone(), &values(config.kernel_len()), Some(&values(64))).unwrap();
    let shape = [128, 13, 13, 32];
    let x = tensor(&gpu, &shape);
    let out_shape = conv.output_shape(&shape).unwrap();
    let y = Tensor::zeros(&gpu, &out_shape).unwrap();
    let dispatch = conv.prepare(&gpu, &shape, x.buffer(), y.buffer()).unwrap();
    group.throughput(Throughput::Elements(conv.flops(&shape)));
    group.bench_function("conv2d 128x13x13x32 -> 64 3x3 (elements = FLOP)", |b| {
        b.iter(|| run_dispatches(&gpu, &[&dispatch]).unwrap())
    });

    let pool =
        Pool2d::new(&gpu, Pool2dConfig { kind: PoolKind::Max, pool: (2, 2), strides: (2, 2), padding: Padding::Valid })
            .unwrap();
    let shape = [128, 26, 26, 32];
    let x = tensor(&gpu, &shape);
    let y = Tensor::zeros(&gpu, &pool.output_shape(&shape).unwrap()).unwrap();
    let dispatch = pool.prepare(&gpu, &shape, x.buffer(), y.buffer()).unwrap();
    group.throughput(Throughput::Bytes((shape.iter().product::<usize>() * 4) as u64));
    group.bench_function("max_pool2d 128x26x26x32", |b| b.iter(|| run_dispatches(&gpu, &[&dispatch]).unwrap()));

    // The seed LSTM twin at 64 pairs, T = 50: its input projection and its recurrence.
    let (rows, steps, features, units) = (128, 50, 100, 64);
    let config = RecurrentConfig {
        cell: Cell::Lstm,
        input_size: features,
        units,
        directions: 1,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        return_sequences: false,
    };
    let g = 4 * units;
    let weights = DirectionWeights {
        kernel: values(features * g).iter().map(|v| v * 0.1).collect(),
        recurrent_kernel: values(units * g).iter().map(|v| v * 0.1).collect(),
        input_bias: values(g),
        recurrent_bias: vec![0.0; g],
    };
    let lstm = Recurrent::new(&gpu, config, &[weights]).unwrap();
    let shape = [rows, steps, features];
    let x = tensor(&gpu, &shape);
    let ones = |len: usize| {
        gpu.create_buffer_init("ones", bytemuck::cast_slice(&vec![1u32; len]), wgpu::BufferUsages::STORAGE)
    };
    let mask = ones(rows * steps);
    let projected = Tensor::zeros(&gpu, &[lstm.projection_len(&shape)]).unwrap();
    let y = Tensor::zeros(&gpu, &[rows, units]).unwrap();
    let [projection, recurrence] =
        lstm.prepare(&gpu, &shape, x.buffer(), &mask, projected.buffer(), y.buffer()).unwrap();
    group.throughput(Throughput::Elements((2 * rows * steps * features * g) as u64));
    group.bench_function("lstm input projection 6400x100x256 (elements = FLOP)", |b| {
        b.iter(|| run_dispatches(&gpu, &[&projection]).unwrap())
    });
    group.throughput(Throughput::Elements((2 * rows * steps * units * g) as u64));
    group.bench_function("lstm recurrence 128 rows x 50 steps x 64 units (elements = FLOP)", |b| {
        b.iter(|| run_dispatches(&gpu, &[&recurrence]).unwrap())
    });

    // The seed MHA twin's attention at 64 pairs: 128 samples × 10 tokens, 4 heads of 64.
    let (batch, tokens, heads, head_dim) = (128, 10, 4, 64);
    let attention = SelfAttention::new(&gpu, heads, head_dim, 1.0 / (head_dim as f32).sqrt()).unwrap();
    let width = heads * head_dim;
    let qkv = tensor(&gpu, &[batch * tokens, 3 * width]);
    let mask = ones(batch * tokens);
    let context = Tensor::zeros(&gpu, &[batch * tokens, width]).unwrap();
    let dispatch = attention.prepare(&gpu, batch, tokens, qkv.buffer(), &mask, context.buffer()).unwrap();
    group.throughput(Throughput::Elements((2 * 2 * batch * heads * tokens * tokens * head_dim) as u64));
    group.bench_function("attention 128 x 10 tokens x 4 heads x 64 (elements = FLOP)", |b| {
        b.iter(|| run_dispatches(&gpu, &[&dispatch]).unwrap())
    });

    let (pairs, dim) = (512, 128);
    let distance = PairDistance::new(&gpu, Distance::Euclidean).unwrap();
    let x = tensor(&gpu, &[2 * pairs, dim]);
    let y = Tensor::zeros(&gpu, &[pairs]).unwrap();
    let dispatch = distance.prepare(&gpu, pairs, dim, x.buffer(), y.buffer()).unwrap();
    group.throughput(Throughput::Bytes((2 * pairs * dim * 4) as u64));
    group.bench_function("distance 512 pairs x 128", |b| b.iter(|| run_dispatches(&gpu, &[&dispatch]).unwrap()));
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
