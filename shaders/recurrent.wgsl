// recurrent.wgsl: Keras LSTM and GRU over whole sequences, one dispatch per layer (both
// directions of a Bidirectional layer included). Prepended with activation.wgsl.
//
// The input projection x_t·K + b for every time step and direction was computed before by
// ONE dense GEMM into `projected`; this kernel runs only the recurrence, looping over time
// inside the kernel with the state in workgroup memory.
//
// Bindings (group 0):
//   0 params     uniform RecurrentParams (below)
//   1 projected  storage read [rows, steps, directions * G]   G = gates · units
//                (gates: LSTM 4 = i, f, c, o; GRU 3 = z, r, h; Keras order)
//   2 recurrent  storage read [directions, units, G] recurrent kernels, then
//                [directions, G] recurrent biases (GRU reset_after; zeros otherwise)
//   3 mask       storage read [rows, steps] u32, 1 where the step is real. A masked step
//                leaves the state unchanged (Keras masking; ragged batches padded at the end)
//   4 output     storage rw   return_sequences: [rows, steps, directions * units], else
//                [rows, directions * units]; directions concatenated (Bidirectional concat)
// Dispatch: one workgroup of 256 invocations per (row, direction): x = row, y = direction.
// The backward direction walks time from the end and writes its outputs at the original
// time index (as Keras' Bidirectional does). A masked step's sequence output repeats the
// previous output.
// Override constants: GATE_ACTIVATION (default sigmoid) for i/f/o and z/r,
// CELL_ACTIVATION (default tanh) for the candidate and the cell output; RESET_AFTER (GRU).
// Limit: units <= MAX_UNITS (the state and gates must fit workgroup memory: 12 KiB).
//
// lstm_step is the one-dispatch-per-time-step variant, kept as the honest baseline the
// benchmark compares against (`siamese bench --recurrent-per-step`): the same math, but the
// state round-trips through global memory between dispatches: `output` holds h
// [rows, directions·units] followed by c (same shape); last state only.

override GATE_ACTIVATION: u32 = 2u;
override CELL_ACTIVATION: u32 = 3u;
override RESET_AFTER: u32 = 1u;

const WORKGROUP: u32 = 256u;
const MAX_UNITS: u32 = 512u;

struct RecurrentParams {
    rows: u32,
    steps: u32,
    units: u32,
    directions: u32,
    return_sequences: u32,
    // lstm_step only: which step this dispatch runs.
    step: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: RecurrentParams;
@group(0) @binding(1) var<storage, read> projected: array<f32>;
@group(0) @binding(2) var<storage, read> recurrent: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

var<workgroup> h: array<f32, MAX_UNITS>;
// LSTM: the cell state. GRU (reset_after = 0): r ⊙ h.
var<workgroup> c: array<f32, MAX_UNITS>;
var<workgroup> gates: array<f32, 2048>; // 4 · MAX_UNITS

// Index of time step `step` in the order a direction visits them.
fn time_index(step: u32, direction: u32) -> u32 {
    return select(step, params.steps - 1u - step, direction == 1u);
}

// Σ_k state[k] · R[k, column] over the direction's recurrent kernel, state in `h` or `c`.
fn recurrent_dot_h(r_base: u32, stride: u32, column: u32) -> f32 {
    var acc = 0.0;
    for (var k = 0u; k < params.units; k++) {
        acc += h[k] * recurrent[r_base + k * stride + column];
    }
    return acc;
}

fn recurrent_dot_c(r_base: u32, stride: u32, column: u32) -> f32 {
    var acc = 0.0;
    for (var k = 0u; k < params.units; k++) {
        acc += c[k] * recurrent[r_base + k * stride + column];
    }
    return acc;
}

fn clear_state(local: u32) {
    for (var i = local; i < params.units; i += WORKGROUP) {
        h[i] = 0.0;
        c[i] = 0.0;
    }
}

fn write_output(row: u32, t: u32, direction: u32, i: u32, value: f32) {
    let width = params.directions * params.units;
    if params.return_sequences != 0u {
        output[(row * params.steps + t) * width + direction * params.units + i] = value;
    }
}

fn write_final(row: u32, direction: u32, local: u32) {
    if params.return_sequences == 0u {
        let width = params.directions * params.units;
        for (var i = local; i < params.units; i += WORKGROUP) {
            output[row * width + direction * params.units + i] = h[i];
        }
    }
}

@compute @workgroup_size(WORKGROUP)
fn lstm_sequence(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = workgroup.x;
    let direction = workgroup.y;
    let units = params.units;
    let g = 4u * units;
    let r_base = direction * units * g;
    let bias_base = params.directions * units * g + direction * g;
    clear_state(local);
    workgroupBarrier();
    for (var step = 0u; step < params.steps; step++) {
        let t = time_index(step, direction);
        let z_base = (row * params.steps + t) * params.directions * g + direction * g;
        for (var j = local; j < g; j += WORKGROUP) {
            gates[j] = projected[z_base + j] + recurrent[bias_base + j] + recurrent_dot_h(r_base, g, j);
        }
        workgroupBarrier();
        let valid = mask[row * params.steps + t] != 0u;
        for (var i = local; i < units; i += WORKGROUP) {
            if valid {
                let input_gate = apply_activation(GATE_ACTIVATION, gates[i]);
                let forget_gate = apply_activation(GATE_ACTIVATION, gates[units + i]);
                let candidate = apply_activation(CELL_ACTIVATION, gates[2u * units + i]);
                let output_gate = apply_activation(GATE_ACTIVATION, gates[3u * units + i]);
                c[i] = forget_gate * c[i] + input_gate * candidate;
                h[i] = output_gate * apply_activation(CELL_ACTIVATION, c[i]);
            }
            write_output(row, t, direction, i, h[i]);
        }
        workgroupBarrier();
    }
    write_final(row, direction, local);
}

@compute @workgroup_size(WORKGROUP)
fn gru_sequence(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = workgroup.x;
    let direction = workgroup.y;
    let units = params.units;
    let g = 3u * units;
    let r_base = direction * units * g;
    let bias_base = params.directions * units * g + direction * g;
    clear_state(local);
    workgroupBarrier();
    for (var step = 0u; step < params.steps; step++) {
        let t = time_index(step, direction);
        let z_base = (row * params.steps + t) * params.directions * g + direction * g;
        if RESET_AFTER != 0u {
            // Keras reset_after=True: hh = act(x_h + r ⊙ (h·R_h + b_rec_h)).
            for (var j = local; j < g; j += WORKGROUP) {
                gates[j] = recurrent[bias_base + j] + recurrent_dot_h(r_base, g, j);
            }
        } else {
            // Keras reset_after=False: hh = act(x_h + (r ⊙ h)·R_h); z and r first.
            for (var j = local; j < 2u * units; j += WORKGROUP) {
                gates[j] = recurrent_dot_h(r_base, g, j);
            }
            workgroupBarrier();
            for (var i = local; i < units; i += WORKGROUP) {
                let reset = apply_activation(GATE_ACTIVATION, projected[z_base + units + i] + gates[units + i]);
                c[i] = reset * h[i];
            }
            workgroupBarrier();
            for (var j = local; j < units; j += WORKGROUP) {
                gates[2u * units + j] = recurrent_dot_c(r_base, g, 2u * units + j);
            }
        }
        workgroupBarrier();
        let valid = mask[row * params.steps + t] != 0u;
        for (var i = local; i < units; i += WORKGROUP) {
            if valid {
                let update = apply_activation(GATE_ACTIVATION, projected[z_base + i] + gates[i]);
                var candidate_input = gates[2u * units + i];
                if RESET_AFTER != 0u {
                    let reset = apply_activation(GATE_ACTIVATION, projected[z_base + units + i] + gates[units + i]);
                    candidate_input = reset * gates[2u * units + i];
                }
                let candidate = apply_activation(CELL_ACTIVATION, projected[z_base + 2u * units + i] + candidate_input);
                h[i] = update * h[i] + (1.0 - update) * candidate;
            }
            write_output(row, t, direction, i, h[i]);
        }
        workgroupBarrier();
    }
    write_final(row, direction, local);
}

@compute @workgroup_size(WORKGROUP)
fn lstm_step(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = workgroup.x;
    let direction = workgroup.y;
    let units = params.units;
    let g = 4u * units;
    let r_base = direction * units * g;
    let bias_base = params.directions * units * g + direction * g;
    let width = params.directions * units;
    let h_base = row * width + direction * units;
    let c_base = params.rows * width + h_base;
    let first = params.step == 0u;
    for (var i = local; i < units; i += WORKGROUP) {
        h[i] = select(output[h_base + i], 0.0, first);
        c[i] = select(output[c_base + i], 0.0, first);
    }
    workgroupBarrier();
    let t = time_index(params.step, direction);
    let z_base = (row * params.steps + t) * params.directions * g + direction * g;
    for (var j = local; j < g; j += WORKGROUP) {
        gates[j] = projected[z_base + j] + recurrent[bias_base + j] + recurrent_dot_h(r_base, g, j);
    }
    workgroupBarrier();
    let valid = mask[row * params.steps + t] != 0u;
    for (var i = local; i < units; i += WORKGROUP) {
        if valid {
            let input_gate = apply_activation(GATE_ACTIVATION, gates[i]);
            let forget_gate = apply_activation(GATE_ACTIVATION, gates[units + i]);
            let candidate = apply_activation(CELL_ACTIVATION, gates[2u * units + i]);
            let output_gate = apply_activation(GATE_ACTIVATION, gates[3u * units + i]);
            c[i] = forget_gate * c[i] + input_gate * candidate;
            h[i] = output_gate * apply_activation(CELL_ACTIVATION, c[i]);
        }
        output[h_base + i] = h[i];
        output[c_base + i] = c[i];
    }
}
