//! Criterion benches per kernel on the default adapter (set SIAMESE_BACKEND /
//! SIAMESE_ADAPTER to choose). Each iteration records one dispatch, submits and waits, so
//! on a software adapter it includes ~20-40 µs of submit overhead; `siamese bench` times
//! whole batched models.
//!
//! cargo bench --bench kernels

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use siamese_wgpu::ops::{
    Activation, Conv2d, Conv2dConfig, Dense, Distance, Padding, PairDistance, Pool2d, Pool2dConfig, PoolKind,
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
