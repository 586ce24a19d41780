// common.wgsl: helpers prepended (by src/shaders.rs) to every kernel that launches one
// invocation per element. Large element counts do not fit one dispatch dimension
// (65,535 workgroups), so the host spreads workgroups over x and y (see
// `ops::linear_dispatch`) and the kernel folds them back into one index here.

const LINEAR_WORKGROUP: u32 = 256u;

fn linear_index(workgroup: vec3<u32>, num_workgroups: vec3<u32>, local: u32) -> u32 {
    return (workgroup.y * num_workgroups.x + workgroup.x) * LINEAR_WORKGROUP + local;
}

// For kernels with one workgroup per row: the row, with workgroups spread over x and y.
fn workgroup_index(workgroup: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return workgroup.y * num_workgroups.x + workgroup.x;
}
