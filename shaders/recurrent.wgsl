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
// Dispatch: lstm_sequence and gru_sequence_rows (GRU reset_after = True) run ROWS rows per
// workgroup (see there). gru_sequence (reset_after = False) and lstm_step: one workgroup of
// 64 invocations per (row, direction): x = row, y = direction.
// Invocation k owns units k, k+64, ...: it computes all gates of its units in one pass over
// the state (one load of h[j] feeds 3-4 multiply-adds), so a step needs two barriers.
// The backward direction walks time from the end and writes its outputs at the original
// time index (as Keras' Bidirectional does). A masked step's sequence output repeats the
// previous output.
// Override constants: GATE_ACTIVATION (default sigmoid) for i/f/o and z/r,
// CELL_ACTIVATION (default tanh) for the candidate and the cell output; RESET_AFTER (GRU).
// Limit: units <= MAX_UNITS (state and gates in workgroup memory: 12 KiB).
//
// lstm_step is the one-dispatch-per-time-step variant, kept as the honest baseline the
// benchmark compares against (`siamese bench --recurrent-per-step`): the same math, but the
// state round-trips through global memory between dispatches: `output` holds h
// [rows, directions·units] followed by c (same shape); last state only.

override GATE_ACTIVATION: u32 = 2u;
override CELL_ACTIVATION: u32 = 3u;
override RESET_AFTER: u32 = 1u;

const WORKGROUP: u32 = 64u;
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
// Pre-activation gates of each unit (LSTM i, f, c, o; GRU z, r, h recurrent parts).
var<workgroup> gates: array<vec4<f32>, MAX_UNITS>;

// Where one (row, direction) finds its weights and inputs.
struct Layout {
    row: u32,
    direction: u32,
    g: u32,         // gates · units
    r_base: u32,    // the direction's recurrent kernel [units, g]
    bias_base: u32, // the direction's recurrent bias [g]
}

fn locate(workgroup: vec3<u32>, gate_count: u32) -> Layout {
    let g = gate_count * params.units;
    return Layout(workgroup.x, workgroup.y, g, workgroup.y * params.units * g, params.directions * params.units * g + workgroup.y * g);
}

// Index of time step `step` in the order a direction visits them.
fn time_index(step: u32, direction: u32) -> u32 {
    return select(step, params.steps - 1u - step, direction == 1u);
}

// Offset of the projected gates of (row, t) for the layout's direction.
fn projected_base(l: Layout, t: u32) -> u32 {
    return (l.row * params.steps + t) * params.directions * l.g + l.direction * l.g;
}

fn step_is_real(l: Layout, t: u32) -> bool {
    return mask[l.row * params.steps + t] != 0u;
}

fn clear_state(local: u32) {
    for (var i = local; i < params.units; i += WORKGROUP) {
        h[i] = 0.0;
        c[i] = 0.0;
    }
}

// Recurrent pre-activations of unit i: Σ_k h[k] · R[k, gate·units + i] for up to four gates
// (columns i, u+i, 2u+i, 3u+i), plus the recurrent bias.
fn recurrent_gates(l: Layout, i: u32, gate_count: u32) -> vec4<f32> {
    let u = params.units;
    let last = (gate_count - 1u) * u;
    // Columns past the layer's gates are clamped (in bounds) and their sums ignored.
    let cols = vec4<u32>(i, u + i, min(2u * u, last) + i, min(3u * u, last) + i);
    var acc = vec4<f32>(
        recurrent[l.bias_base + cols.x],
        recurrent[l.bias_base + cols.y],
        recurrent[l.bias_base + cols.z],
        recurrent[l.bias_base + cols.w],
    );
    for (var k = 0u; k < u; k++) {
        let row = l.r_base + k * l.g;
        acc += h[k] * vec4<f32>(recurrent[row + cols.x], recurrent[row + cols.y], recurrent[row + cols.z], recurrent[row + cols.w]);
    }
    return acc;
}

// One LSTM step for the invocation's units, reading the old h (already gated in `gates`).
fn lstm_update(l: Layout, t: u32, local: u32) {
    let u = params.units;
    let base = projected_base(l, t);
    let real = step_is_real(l, t);
    for (var i = local; i < u; i += WORKGROUP) {
        if real {
            let z = gates[i] + vec4<f32>(projected[base + i], projected[base + u + i], projected[base + 2u * u + i], projected[base + 3u * u + i]);
            let input_gate = apply_activation(GATE_ACTIVATION, z.x);
            let forget_gate = apply_activation(GATE_ACTIVATION, z.y);
            let candidate = apply_activation(CELL_ACTIVATION, z.z);
            let output_gate = apply_activation(GATE_ACTIVATION, z.w);
            c[i] = forget_gate * c[i] + input_gate * candidate;
            h[i] = output_gate * apply_activation(CELL_ACTIVATION, c[i]);
        }
    }
}

fn write_sequence_output(l: Layout, t: u32, local: u32) {
    if params.return_sequences != 0u {
        let width = params.directions * params.units;
        for (var i = local; i < params.units; i += WORKGROUP) {
            output[(l.row * params.steps + t) * width + l.direction * params.units + i] = h[i];
        }
    }
}

fn write_final(l: Layout, local: u32) {
    if params.return_sequences == 0u {
        let width = params.directions * params.units;
        for (var i = local; i < params.units; i += WORKGROUP) {
            output[l.row * width + l.direction * params.units + i] = h[i];
        }
    }
}

// LSTM (lstm_sequence) and GRU with reset_after = True (gru_sequence_rows, the Keras 3
// default) over whole sequences, ROWS sequences (of one direction) per workgroup: x = row
// group, y = direction. Invocation `local` owns units local, local+64, ... of every row
// in the group. The group's h lives in workgroup memory twice (read at parity step % 2,
// written at the other), so a step needs one barrier; the cell state stays in registers.
// Per four units of h read, an invocation loads each recurrent weight once and uses it for
// all ROWS rows: on lavapipe, where a load costs about six multiply-adds, this cut the
// seed LSTM's recurrence from 5 loads per 4 multiply-adds to 20 per 64 (see BENCHMARKS.md).
// The host picks ROWS = 1 for tiny batches, so that every CPU thread still gets a group.
override ROWS: u32 = 4u;
const MAX_ROWS: u32 = 4u;
// [parity][row in group][unit / 4]: h of the group, zero past `units`.
var<workgroup> h_rows: array<vec4<f32>, 2u * MAX_ROWS * MAX_UNITS / 4u>;

fn h_index(parity: u32, r: u32, unit4: u32) -> u32 {
    return (parity * MAX_ROWS + r) * (MAX_UNITS / 4u) + unit4;
}

@compute @workgroup_size(WORKGROUP)
fn lstm_sequence(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    sequence_rows(workgroup, local, 4u);
}

@compute @workgroup_size(WORKGROUP)
fn gru_sequence_rows(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    sequence_rows(workgroup, local, 3u);
}

// The recurrence of lstm_sequence (gate_count 4: i, f, c, o) and gru_sequence_rows
// (gate_count 3: z, r, h with reset_after).
fn sequence_rows(workgroup: vec3<u32>, local: u32, gate_count: u32) {
    let u = params.units;
    let g = gate_count * u;
    let direction = workgroup.y;
    let row0 = workgroup.x * ROWS;
    let r_base = direction * u * g;
    let bias_base = params.directions * u * g + direction * g;
    let width = params.directions * u;
    let units4 = (u + 3u) / 4u;
    for (var i = local; i < 2u * MAX_ROWS * MAX_UNITS / 4u; i += WORKGROUP) {
        h_rows[i] = vec4<f32>(0.0);
    }
    // Cell state: [unit slot][row in group] (a slot per 64 units, MAX_UNITS / 64 of them).
    var cell: array<vec4<f32>, MAX_UNITS / WORKGROUP>;
    workgroupBarrier();
    for (var step = 0u; step < params.steps; step++) {
        let t = time_index(step, direction);
        let now = step % 2u;
        let next = 1u - now;
        var slot = 0u;
        for (var i = local; i < u; i += WORKGROUP) {
            // GRU: the fourth column is clamped onto the third (in bounds) and ignored.
            let cols = vec4<u32>(i, u + i, 2u * u + i, min(3u, gate_count - 1u) * u + i);
            let bias = vec4<f32>(
                recurrent[bias_base + cols.x],
                recurrent[bias_base + cols.y],
                recurrent[bias_base + cols.z],
                recurrent[bias_base + cols.w],
            );
            // Pre-activations i, f, c, o of unit i for each row of the group.
            var z: array<vec4<f32>, MAX_ROWS>;
            for (var r = 0u; r < ROWS; r++) {
                z[r] = bias;
            }
            for (var k4 = 0u; k4 < units4; k4++) {
                // Weights of h[4·k4 .. 4·k4+3] (clamped past `units`, where h is 0).
                var w: array<vec4<f32>, 4>;
                for (var q = 0u; q < 4u; q++) {
                    let at = r_base + min(4u * k4 + q, u - 1u) * g;
                    w[q] = vec4<f32>(recurrent[at + cols.x], recurrent[at + cols.y], recurrent[at + cols.z], recurrent[at + cols.w]);
                }
                for (var r = 0u; r < ROWS; r++) {
                    let hv = h_rows[h_index(now, r, k4)];
                    z[r] += hv.x * w[0] + hv.y * w[1] + hv.z * w[2] + hv.w * w[3];
                }
            }
            for (var r = 0u; r < ROWS; r++) {
                let row = min(row0 + r, params.rows - 1u);
                let h_old = h_rows[h_index(now, r, i / 4u)][i % 4u];
                var h_new = h_old;
                if row0 + r < params.rows && mask[row * params.steps + t] != 0u {
                    let base = (row * params.steps + t) * params.directions * g + direction * g;
                    let x = vec4<f32>(projected[base + cols.x], projected[base + cols.y], projected[base + cols.z], projected[base + cols.w]);
                    if gate_count == 4u {
                        let pre = z[r] + x;
                        let input_gate = apply_activation(GATE_ACTIVATION, pre.x);
                        let forget_gate = apply_activation(GATE_ACTIVATION, pre.y);
                        let candidate = apply_activation(CELL_ACTIVATION, pre.z);
                        let output_gate = apply_activation(GATE_ACTIVATION, pre.w);
                        let c_new = forget_gate * cell[slot][r] + input_gate * candidate;
                        cell[slot][r] = c_new;
                        h_new = output_gate * apply_activation(CELL_ACTIVATION, c_new);
                    } else {
                        // Keras GRU, reset_after: hh = act(x_h + r ⊙ (h·R_h + b_rec_h)).
                        let update = apply_activation(GATE_ACTIVATION, x.x + z[r].x);
                        let reset = apply_activation(GATE_ACTIVATION, x.y + z[r].y);
                        let candidate = apply_activation(CELL_ACTIVATION, x.z + reset * z[r].z);
                        h_new = update * h_old + (1.0 - update) * candidate;
                    }
                }
                h_rows[h_index(next, r, i / 4u)][i % 4u] = h_new;
                if params.return_sequences != 0u && row0 + r < params.rows {
                    output[(row * params.steps + t) * width + direction * u + i] = h_new;
                }
            }
            slot++;
        }
        workgroupBarrier();
    }
    if params.return_sequences == 0u {
        let last = params.steps % 2u;
        for (var r = 0u; r < ROWS; r++) {
            if row0 + r < params.rows {
                for (var i = local; i < u; i += WORKGROUP) {
                    output[(row0 + r) * width + direction * u + i] = h_rows[h_index(last, r, i / 4u)][i % 4u];
                }
            }
        }
    }
}

@compute @workgroup_size(WORKGROUP)
fn gru_sequence(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let l = locate(workgroup, 3u);
    let u = params.units;
    clear_state(local);
    workgroupBarrier();
    for (var step = 0u; step < params.steps; step++) {
        let t = time_index(step, l.direction);
        let base = projected_base(l, t);
        // Keras reset_after=True: hh = act(x_h + r ⊙ (h·R_h + b_rec_h)): all three recurrent
        // parts from h. reset_after=False: hh = act(x_h + (r ⊙ h)·R_h): z and r from h
        // first, then the candidate's part from r ⊙ h.
        for (var i = local; i < u; i += WORKGROUP) {
            gates[i] = recurrent_gates(l, i, 3u);
        }
        if RESET_AFTER == 0u {
            workgroupBarrier();
            for (var i = local; i < u; i += WORKGROUP) {
                c[i] = apply_activation(GATE_ACTIVATION, projected[base + u + i] + gates[i].y) * h[i];
            }
            workgroupBarrier();
            for (var i = local; i < u; i += WORKGROUP) {
                var acc = 0.0;
                for (var k = 0u; k < u; k++) {
                    acc += c[k] * recurrent[l.r_base + k * l.g + 2u * u + i];
                }
                gates[i].z = acc;
            }
        }
        workgroupBarrier();
        if step_is_real(l, t) {
            for (var i = local; i < u; i += WORKGROUP) {
                let update = apply_activation(GATE_ACTIVATION, projected[base + i] + gates[i].x);
                var candidate_input = gates[i].z;
                if RESET_AFTER != 0u {
                    candidate_input *= apply_activation(GATE_ACTIVATION, projected[base + u + i] + gates[i].y);
                }
                let candidate = apply_activation(CELL_ACTIVATION, projected[base + 2u * u + i] + candidate_input);
                h[i] = update * h[i] + (1.0 - update) * candidate;
            }
        }
        write_sequence_output(l, t, local);
        workgroupBarrier();
    }
    write_final(l, local);
}

@compute @workgroup_size(WORKGROUP)
fn lstm_step(@builtin(workgroup_id) workgroup: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let l = locate(workgroup, 4u);
    let width = params.directions * params.units;
    let h_base = l.row * width + l.direction * params.units;
    let c_base = params.rows * width + h_base;
    let first = params.step == 0u;
    for (var i = local; i < params.units; i += WORKGROUP) {
        h[i] = select(output[h_base + i], 0.0, first);
        c[i] = select(output[c_base + i], 0.0, first);
    }
    workgroupBarrier();
    let t = time_index(params.step, l.direction);
    for (var i = local; i < params.units; i += WORKGROUP) {
        gates[i] = recurrent_gates(l, i, 4u);
    }
    workgroupBarrier();
    lstm_update(l, t, local);
    for (var i = local; i < params.units; i += WORKGROUP) {
        output[h_base + i] = h[i];
        output[c_base + i] = c[i];
    }
}
