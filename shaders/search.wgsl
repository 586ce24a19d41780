// search.wgsl: nearest-neighbour search over a resident gallery of embeddings, in two
// kernels recorded back to back (the [queries, rows] matrix never leaves the GPU):
// distance_matrix fills the matrix, top_k picks each query's k nearest from its row.
// Prepended with common.wgsl (LINEAR_WORKGROUP, workgroup_index) and metric.wgsl (METRIC,
// finish_metric, shared with distance.wgsl). The two entry points
// declare different variables at the same group 0 bindings; each pipeline's layout has
// only the ones its entry point uses.
//
// ---- distance_matrix ----
// distances[q, r] = dist(queries[q], gallery row gallery_offset + r) for q < queries,
// r < rows, every vector `dim` values. The gallery is resident TRANSPOSED, [dim, stride]
// (value c of row r at c · gallery_stride + r), so that neighbouring invocations, which
// own neighbouring rows, read neighbouring addresses (coalesced on GPUs, contiguous
// vector loads on CPU drivers such as lavapipe).
// Bindings (group 0):
//   0 matrix_params  uniform MatrixParams { queries, rows, dim, gallery_offset,
//                    gallery_stride, _pad × 3 }
//   1 queries        storage read [queries, dim] (row-major)
//   2 gallery        storage read [dim, gallery_stride], gallery_offset + rows <= stride
//   3 distances      storage rw   [queries, rows]
// Dispatch: workgroups (ceil(rows / 256), ceil(queries / 8)); one workgroup of 64
// invocations owns a tile of 8 queries × 256 gallery rows, each invocation 8 queries ×
// 4 rows (lane, lane + 64, lane + 128, lane + 192: one vec4 of sums per query, kept in
// registers). Each gallery value is read once per workgroup by the one invocation that
// uses it; the 8 queries are staged in workgroup memory, 64 columns at a time (2 KiB),
// and shared by all 64 invocations. Query slots past the last query skip their
// arithmetic (a uniform branch); rows past the last read the last row, unwritten.
// METRIC (override, as distance.wgsl and Distance::constants): 0 euclidean sqrt(Σ(a-b)²),
// 1 squared euclidean Σ(a-b)², 2 cosine 1 - a·b / (|a| |b|), 3 manhattan Σ|a-b|.
// Numeric guards, the same as distance.wgsl: identical rows give exactly 0 for every
// metric (differences are summed directly, never expanded as |a|² + |b|² - 2a·b, and
// Σ|a-b| = 0 short-cuts cosine); cosine uses |x| = sqrt(max(Σx², 1e-12)) and is clamped
// at 0 from below. Each output sums its columns in the same order whatever the tile or
// chunk it falls in, so chunking the gallery never changes a distance's bits.
//
// ---- top_k ----
// For each matrix row: the k smallest (distance, column) in ascending lexicographic
// order (equal distances: smaller column first).
// Bindings (group 0):
//   0 top_k_params   uniform TopKParams { rows, cols, k, index_offset, out_offset, _pad × 3 }
//   1 matrix         storage read u32 [rows, cols]: the distance matrix's f32 bit patterns
//   2 top_indices    storage rw u32 [out_offset + rows · k (at least)]
//   3 top_distances  storage rw u32 [out_offset + rows · k (at least)]: f32 bit patterns
// Dispatch: one workgroup of LINEAR_WORKGROUP invocations per row (spread over x and y).
// Row `row` writes slots out_offset + row·k + 0..k: column + index_offset (the gallery
// row's global index) and the distance's bits exactly as in the matrix. When k > cols,
// slots cols..k get index 0xffffffff and a quiet NaN (0x7fc00000).
// Order: distances compare through an order-preserving u32 key (integer compares only,
// so no compiler assumption about NaN or infinities can break it): -0 equals +0, and NaN
// ranks after +inf (every NaN alike, ties by column).
// Algorithm: invocation i owns columns i, i + 256, ...; it keeps the smallest of its
// columns after the last pick. Each of the min(k, cols) rounds reduces those candidates
// in workgroup memory to the winner; only the invocation that owned the winner rescans
// its columns. Cost: one pass over the row plus k · (cols / 256 + 8 barrier steps).


// ---- distance_matrix ----

const MATRIX_LANES: u32 = 64u;
const MATRIX_ROW_TILE: u32 = 256u;
const MATRIX_QUERY_TILE: u32 = 8u;
// Query columns staged per step.
const MATRIX_DEPTH: u32 = 64u;

struct MatrixParams {
    queries: u32,
    rows: u32,
    dim: u32,
    gallery_offset: u32,
    gallery_stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> matrix_params: MatrixParams;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> gallery: array<f32>;
@group(0) @binding(3) var<storage, read_write> distances: array<f32>;

// [query][depth]: the tile's queries at MATRIX_DEPTH columns, shared by every lane.
var<workgroup> query_tile: array<f32, 512>;

@compute @workgroup_size(MATRIX_LANES)
fn distance_matrix(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let dim = matrix_params.dim;
    let rows = matrix_params.rows;
    let row0 = workgroup.x * MATRIX_ROW_TILE + lane;
    let query0 = workgroup.y * MATRIX_QUERY_TILE;
    // Uniform across the workgroup: slots beyond the last query skip their arithmetic.
    let query_count = min(MATRIX_QUERY_TILE, matrix_params.queries - min(query0, matrix_params.queries));
    // Gallery columns are contiguous (transposed layout), so neighbouring lanes read
    // neighbouring values. Rows past the end read the last row (always in bounds) and
    // are never written.
    let stride = matrix_params.gallery_stride;
    let last = rows - 1u;
    let base = matrix_params.gallery_offset
        + vec4<u32>(min(row0, last), min(row0 + MATRIX_LANES, last), min(row0 + 2u * MATRIX_LANES, last), min(row0 + 3u * MATRIX_LANES, last));

    var norm_row = vec4<f32>(0.0);
    // One accumulator per query slot, in named variables (no dynamically indexed
    // arrays: those end up in memory on some compilers, llvmpipe among them).
    var acc0: Sums;
    var acc1: Sums;
    var acc2: Sums;
    var acc3: Sums;
    var acc4: Sums;
    var acc5: Sums;
    var acc6: Sums;
    var acc7: Sums;

    for (var col0 = 0u; col0 < dim; col0 += MATRIX_DEPTH) {
        for (var slot = lane; slot < MATRIX_QUERY_TILE * MATRIX_DEPTH; slot += MATRIX_LANES) {
            let query = query0 + slot / MATRIX_DEPTH;
            let col = col0 + slot % MATRIX_DEPTH;
            var value = 0.0;
            if query < matrix_params.queries && col < dim {
                value = queries[query * dim + col];
            }
            query_tile[slot] = value;
        }
        workgroupBarrier();

        let depth_end = min(MATRIX_DEPTH, dim - col0);
        for (var depth = 0u; depth < depth_end; depth++) {
            // Each gallery value is used by this lane only: read straight from the buffer.
            let column = (col0 + depth) * stride;
            let g = vec4<f32>(
                gallery[column + base.x],
                gallery[column + base.y],
                gallery[column + base.z],
                gallery[column + base.w],
            );
            if METRIC == 2u {
                norm_row += g * g;
            }
            accumulate(&acc0, query_tile[depth], g);
            if query_count > 1u { accumulate(&acc1, query_tile[MATRIX_DEPTH + depth], g); }
            if query_count > 2u { accumulate(&acc2, query_tile[2u * MATRIX_DEPTH + depth], g); }
            if query_count > 3u { accumulate(&acc3, query_tile[3u * MATRIX_DEPTH + depth], g); }
            if query_count > 4u { accumulate(&acc4, query_tile[4u * MATRIX_DEPTH + depth], g); }
            if query_count > 5u { accumulate(&acc5, query_tile[5u * MATRIX_DEPTH + depth], g); }
            if query_count > 6u { accumulate(&acc6, query_tile[6u * MATRIX_DEPTH + depth], g); }
            if query_count > 7u { accumulate(&acc7, query_tile[7u * MATRIX_DEPTH + depth], g); }
        }
        workgroupBarrier();
    }

    store(acc0, query0, row0, norm_row);
    if query_count > 1u { store(acc1, query0 + 1u, row0, norm_row); }
    if query_count > 2u { store(acc2, query0 + 2u, row0, norm_row); }
    if query_count > 3u { store(acc3, query0 + 3u, row0, norm_row); }
    if query_count > 4u { store(acc4, query0 + 4u, row0, norm_row); }
    if query_count > 5u { store(acc5, query0 + 5u, row0, norm_row); }
    if query_count > 6u { store(acc6, query0 + 6u, row0, norm_row); }
    if query_count > 7u { store(acc7, query0 + 7u, row0, norm_row); }
}

// One query against a lane's 4 gallery rows: diff is Σ(a-b)² (euclidean, squared) or
// Σ|a-b| (cosine, manhattan); cosine also needs dot Σab and the query's Σa².
struct Sums {
    diff: vec4<f32>,
    dot: vec4<f32>,
    norm_query: f32,
}

fn accumulate(sums: ptr<function, Sums>, a: f32, g: vec4<f32>) {
    let d = vec4<f32>(a) - g;
    switch METRIC {
        case 0u, 1u: { (*sums).diff += d * d; }
        case 2u: {
            (*sums).diff += abs(d);
            (*sums).dot += a * g;
            (*sums).norm_query += a * a;
        }
        default: { (*sums).diff += abs(d); }
    }
}

// Writes one query's distances to the lane's rows (lane, lane + 64, ...) that exist.
fn store(sums: Sums, query: u32, row0: u32, norm_row: vec4<f32>) {
    let rows = matrix_params.rows;
    let out = query * rows;
    for (var c = 0u; c < 4u; c++) {
        let row = row0 + c * MATRIX_LANES;
        if row < rows {
            distances[out + row] = finish_metric(sums.diff[c], sums.dot[c], sums.norm_query, norm_row[c]);
        }
    }
}

// ---- top_k ----

struct TopKParams {
    rows: u32,
    cols: u32,
    k: u32,
    index_offset: u32,
    out_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> top_k_params: TopKParams;
@group(0) @binding(1) var<storage, read> matrix: array<u32>;
@group(0) @binding(2) var<storage, read_write> top_indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> top_distances: array<u32>;

var<workgroup> candidate_key: array<u32, LINEAR_WORKGROUP>;
var<workgroup> candidate_column: array<u32, LINEAR_WORKGROUP>;

// An f32 bit pattern as a u32 whose unsigned order is the float order: non-negative
// floats get the sign bit set, negative ones are inverted. -0 maps onto +0, and every
// NaN onto 0xffffffff, after +inf (0xff800000). No float gives key 0.
fn order_key(bits: u32) -> u32 {
    if (bits & 0x7fffffffu) > 0x7f800000u {
        return 0xffffffffu;
    }
    if bits == 0x80000000u {
        return 0x80000000u;
    }
    if (bits & 0x80000000u) != 0u {
        return ~bits;
    }
    return bits | 0x80000000u;
}

// The smallest (key, column) of this invocation's columns that comes strictly after
// (after_key, after_column); (0xffffffff, 0xffffffff) when none does.
fn next_candidate(row_start: u32, local: u32, after_key: u32, after_column: u32) -> vec2<u32> {
    var best = vec2<u32>(0xffffffffu, 0xffffffffu);
    for (var col = local; col < top_k_params.cols; col += LINEAR_WORKGROUP) {
        let key = order_key(matrix[row_start + col]);
        let after = key > after_key || (key == after_key && col > after_column);
        // NaN's key equals the "none" key, so the column decides against "none"; columns
        // ascend, so among equal keys the first one found stays.
        if after && (key < best.x || (key == best.x && col < best.y)) {
            best = vec2<u32>(key, col);
        }
    }
    return best;
}

@compute @workgroup_size(LINEAR_WORKGROUP)
fn top_k(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = workgroup_index(workgroup, num_workgroups);
    // `row` is uniform across the workgroup, so this early exit keeps barriers uniform.
    if row >= top_k_params.rows {
        return;
    }
    let cols = top_k_params.cols;
    let k = top_k_params.k;
    let row_start = row * cols;
    let out_start = top_k_params.out_offset + row * k;
    // (0, 0) comes before every entry: no float has key 0.
    var mine = next_candidate(row_start, local, 0u, 0u);
    let picks = min(k, cols);
    for (var rank = 0u; rank < picks; rank++) {
        candidate_key[local] = mine.x;
        candidate_column[local] = mine.y;
        workgroupBarrier();
        for (var stride = LINEAR_WORKGROUP / 2u; stride > 0u; stride /= 2u) {
            if local < stride {
                let key = candidate_key[local + stride];
                let column = candidate_column[local + stride];
                if key < candidate_key[local] || (key == candidate_key[local] && column < candidate_column[local]) {
                    candidate_key[local] = key;
                    candidate_column[local] = column;
                }
            }
            workgroupBarrier();
        }
        let winner = vec2<u32>(candidate_key[0], candidate_column[0]);
        // Every invocation has read the winner before the next round overwrites slot 0.
        workgroupBarrier();
        if local == 0u {
            top_indices[out_start + rank] = winner.y + top_k_params.index_offset;
            top_distances[out_start + rank] = matrix[row_start + winner.y];
        }
        // The other invocations' candidates all come after the winner: still valid.
        if local == winner.y % LINEAR_WORKGROUP {
            mine = next_candidate(row_start, local, winner.x, winner.y);
        }
    }
    for (var rank = picks + local; rank < k; rank += LINEAR_WORKGROUP) {
        top_indices[out_start + rank] = 0xffffffffu;
        top_distances[out_start + rank] = 0x7fc00000u;
    }
}
