//! Activation memory planning from tensor lifetimes.
//!
//! Every tensor gets a whole buffer to itself for its lifetime and buffers are reused by tensors whose lifetimes do
//! not overlap. Tensors never share a buffer at different offsets: WebGPU forbids binding one buffer as a
//! dispatch's output and as its input, and a node's inputs and outputs are live at the same step, so giving each
//! live tensor its own buffer satisfies that rule by construction.
//!
//! A node's scratch buffers (split-K's partial sums) are planned the same way, as tensors live for the node's step
//! only: they get buffers of their own during it and reuse other tensors' buffers outside it.

/// When a tensor is live: from the step that first writes it to the last step that reads it, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub bytes: u64,
    pub first: usize,
    pub last: usize,
}

impl Lifetime {
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Which buffer each tensor lives in, and how large each buffer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Buffer index per tensor, in the order of the lifetimes given.
    pub assignment: Vec<usize>,
    pub buffer_bytes: Vec<u64>,
}

impl MemoryPlan {
    /// Bytes of all buffers together.
    pub fn planned_bytes(&self) -> u64 {
        self.buffer_bytes.iter().sum()
    }
}

/// The largest total of simultaneously live tensors: no plan can use less.
pub fn lower_bound(lifetimes: &[Lifetime]) -> u64 {
    let steps = lifetimes.iter().map(|l| l.last + 1).max().unwrap_or(0);
    let mut delta = vec![0i128; steps + 1];
    for l in lifetimes {
        delta[l.first] += l.bytes as i128;
        delta[l.last + 1] -= l.bytes as i128;
    }
    let mut live = 0i128;
    let mut peak = 0i128;
    for d in delta {
        live += d;
        peak = peak.max(live);
    }
    peak as u64
}

/// Greedy by size: the largest tensors are placed first, each into the smallest existing buffer none of whose
/// tenants it overlaps, or into a new buffer of its own size.
pub fn plan(lifetimes: &[Lifetime]) -> MemoryPlan {
    let mut order: Vec<usize> = (0..lifetimes.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lifetimes[i].bytes), lifetimes[i].first, i));
    let mut tenants: Vec<Vec<usize>> = Vec::new();
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut assignment = vec![usize::MAX; lifetimes.len()];
    for i in order {
        let l = &lifetimes[i];
        let free = (0..tenants.len())
            .filter(|&b| tenants[b].iter().all(|&t| !lifetimes[t].overlaps(l)))
            .min_by_key(|&b| buffer_bytes[b]);
        let b = free.unwrap_or_else(|| {
            tenants.push(Vec::new());
            buffer_bytes.push(l.bytes);
            tenants.len() - 1
        });
        tenants[b].push(i);
        assignment[i] = b;
    }
    MemoryPlan {
        assignment,
        buffer_bytes,
    }
}
