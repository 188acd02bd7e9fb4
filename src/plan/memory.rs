//! Activation memory planning from tensor lifetimes.
//!
//! WebGPU forbids binding one buffer both as a dispatch's output (read-write storage) and as its input (read-only
//! storage), whatever the ranges. So tensors that meet in a dispatch, one written and one read (a *conflict*), must
//! live in different buffers; any others may share a buffer, at different offsets while both are live. Two plans
//! are made and the smaller kept:
//! - whole buffers: every tensor gets a buffer to itself for its lifetime, reused by tensors that are never live
//!   together (so conflicts never share one);
//! - arenas: tensors are coloured into a few arenas so that no conflict shares one, then packed at offsets inside
//!   each arena by their lifetimes.
//!
//! A node's scratch buffers (split-K's partial sums, Winograd's transformed input and products) are planned the same
//! way, as tensors live for the node's step only, in conflict with what a dispatch binds beside them where one of the
//! two is written there.

use std::cmp::Reverse;

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

/// Where a tensor lives: a buffer and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub buffer: usize,
    pub offset: u64,
}

/// Where each tensor lives, and how large each buffer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Placement per tensor, in the order of the lifetimes given.
    pub placement: Vec<Placement>,
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

/// The smaller of the whole-buffer and the arena plan. `conflicts` are pairs of tensor indices that must not share
/// a buffer; `align` is the offset alignment of a storage binding (a power of two).
pub fn plan(lifetimes: &[Lifetime], conflicts: &[(usize, usize)], align: u64) -> MemoryPlan {
    if lifetimes.len() > LARGE_GRAPH {
        return buffers_by_time(lifetimes);
    }
    let whole = whole_buffers(lifetimes);
    let packed = arenas(lifetimes, conflicts, align.max(4));
    match packed.planned_bytes() < whole.planned_bytes() {
        true => packed,
        false => whole,
    }
}

/// Above this many tensors the planners that compare every pair of tensors in a buffer (quadratic) give way to
/// [`buffers_by_time`], linear in the tensors times the buffers.
pub const LARGE_GRAPH: usize = 4096;

/// Tensor indices sorted by `key`, ties by index, so that plans are deterministic.
fn order_by<K: Ord>(lifetimes: &[Lifetime], key: impl Fn(&Lifetime) -> K) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lifetimes.len()).collect();
    order.sort_by_key(|&i| (key(&lifetimes[i]), i));
    order
}

/// First used first, the larger first among those.
fn first_use(l: &Lifetime) -> (usize, Reverse<u64>) {
    (l.first, Reverse(l.bytes))
}

/// Largest first, the first used first among those.
fn largest_first(l: &Lifetime) -> (Reverse<u64>, usize) {
    (Reverse(l.bytes), l.first)
}

/// Whole buffers in order of first use: each tensor takes the smallest buffer free for its lifetime that fits it,
/// else the largest free one grown, else a new one. A buffer is free once its last tenant's lifetime has ended,
/// which one number per buffer tells because tensors arrive in order of first use.
pub fn buffers_by_time(lifetimes: &[Lifetime]) -> MemoryPlan {
    let order = order_by(lifetimes, first_use);
    let mut busy_until: Vec<usize> = Vec::new();
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut placement = vec![UNPLACED; lifetimes.len()];
    for i in order {
        let l = &lifetimes[i];
        let free = (0..busy_until.len()).filter(|&b| busy_until[b] < l.first);
        let fitting = free
            .clone()
            .filter(|&b| buffer_bytes[b] >= l.bytes)
            .min_by_key(|&b| buffer_bytes[b]);
        let b = match fitting.or_else(|| free.max_by_key(|&b| buffer_bytes[b])) {
            Some(b) => b,
            None => {
                busy_until.push(0);
                buffer_bytes.push(0);
                busy_until.len() - 1
            }
        };
        busy_until[b] = l.last;
        buffer_bytes[b] = buffer_bytes[b].max(l.bytes);
        placement[i] = Placement {
            buffer: b,
            offset: 0,
        };
    }
    MemoryPlan {
        placement,
        buffer_bytes,
    }
}

/// The smallest of several greedy whole-buffer plans: tensors taken largest first or in order of first use, each
/// placed into a free buffer (none of whose tenants it overlaps) that already fits it, the smallest such; or, where
/// growth is allowed and none fits, into the largest free buffer, grown; else into a new buffer of its own size.
pub fn whole_buffers(lifetimes: &[Lifetime]) -> MemoryPlan {
    let by_size = order_by(lifetimes, largest_first);
    let by_time = order_by(lifetimes, first_use);
    [(&by_size, false), (&by_time, false), (&by_time, true)]
        .into_iter()
        .map(|(order, grow)| greedy_buffers(lifetimes, order, grow))
        .min_by_key(MemoryPlan::planned_bytes)
        .expect("three candidate plans")
}

fn greedy_buffers(lifetimes: &[Lifetime], order: &[usize], grow: bool) -> MemoryPlan {
    let mut tenants: Vec<Vec<usize>> = Vec::new();
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut placement = vec![
        Placement {
            buffer: usize::MAX,
            offset: 0
        };
        lifetimes.len()
    ];
    for &i in order {
        let l = &lifetimes[i];
        let free: Vec<usize> = (0..tenants.len())
            .filter(|&b| tenants[b].iter().all(|&t| !lifetimes[t].overlaps(l)))
            .collect();
        let fitting = free
            .iter()
            .copied()
            .filter(|&b| buffer_bytes[b] >= l.bytes)
            .min_by_key(|&b| buffer_bytes[b]);
        let growable = || {
            free.iter()
                .copied()
                .filter(|_| grow)
                .max_by_key(|&b| buffer_bytes[b])
        };
        let b = match fitting.or_else(growable) {
            Some(b) => {
                buffer_bytes[b] = buffer_bytes[b].max(l.bytes);
                b
            }
            None => {
                tenants.push(Vec::new());
                buffer_bytes.push(l.bytes);
                tenants.len() - 1
            }
        };
        tenants[b].push(i);
        placement[i].buffer = b;
    }
    MemoryPlan {
        placement,
        buffer_bytes,
    }
}

/// The smallest of twelve arena plans, [`colour_then_pack`], [`colour_by_peak_then_pack`] and [`first_fit`] taking
/// tensors in order of first use, largest first, largest bytes x steps live first, or longest lived first; none puts
/// a conflicting pair in one arena. (Largest first lets a late, large tensor, such as full-size logits, claim an
/// arena that the early tensors then share; the last two place the tensors that stay live across many others, skips
/// and residuals, before what must fit around them: they took smp Unet-ResNet34 at 512 x 512 from 78.5 to 73.0 MiB.)
pub fn arenas(lifetimes: &[Lifetime], conflicts: &[(usize, usize)], align: u64) -> MemoryPlan {
    let mut neighbours = vec![Vec::new(); lifetimes.len()];
    for &(a, b) in conflicts {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let steps = |l: &Lifetime| l.last.saturating_sub(l.first) + 1;
    let by_time = order_by(lifetimes, first_use);
    let by_size = order_by(lifetimes, largest_first);
    let by_area = order_by(lifetimes, |l| {
        (Reverse(l.bytes.saturating_mul(steps(l) as u64)), l.first)
    });
    let by_span = order_by(lifetimes, |l| (Reverse(steps(l)), Reverse(l.bytes)));
    let round = |b: u64| b.div_ceil(align) * align;
    [&by_time, &by_size, &by_area, &by_span]
        .into_iter()
        .flat_map(|order| {
            [
                colour_then_pack(lifetimes, &neighbours, order, round),
                colour_by_peak_then_pack(lifetimes, &neighbours, order, round),
                first_fit(lifetimes, &neighbours, order, round),
            ]
        })
        .min_by_key(MemoryPlan::planned_bytes)
        .expect("twelve candidate plans")
}

const UNPLACED: Placement = Placement {
    buffer: usize::MAX,
    offset: 0,
};

/// The lowest offset at which `size` bytes are free, given the `(start, end)` byte ranges already taken.
fn lowest_free(mut taken: Vec<(u64, u64)>, size: u64) -> u64 {
    taken.sort_unstable();
    let mut offset = 0;
    for (start, end) in taken {
        if start >= offset + size {
            break;
        }
        offset = offset.max(end);
    }
    offset
}

/// The byte ranges of `arena` taken by tensors live with `i`.
fn taken_during(
    lifetimes: &[Lifetime],
    placement: &[Placement],
    tenants: &[usize],
    i: usize,
    round: impl Fn(u64) -> u64,
) -> Vec<(u64, u64)> {
    tenants
        .iter()
        .filter(|&&t| lifetimes[t].overlaps(&lifetimes[i]))
        .map(|&t| {
            (
                placement[t].offset,
                placement[t].offset + round(lifetimes[t].bytes),
            )
        })
        .collect()
}

/// Colours each tensor into the allowed arena with the fewest bytes live during its lifetime, then packs every
/// arena largest tensors first, each at the lowest offset free for its whole lifetime.
fn colour_then_pack(
    lifetimes: &[Lifetime],
    neighbours: &[Vec<usize>],
    order: &[usize],
    round: impl Fn(u64) -> u64 + Copy,
) -> MemoryPlan {
    let mut arena_of = vec![usize::MAX; lifetimes.len()];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for &i in order {
        let live_in = |a: usize| -> u64 {
            members[a]
                .iter()
                .filter(|&&t| lifetimes[t].overlaps(&lifetimes[i]))
                .map(|&t| lifetimes[t].bytes)
                .sum()
        };
        let allowed = (0..members.len())
            .filter(|a| !neighbours[i].iter().any(|&j| arena_of[j] == *a))
            .min_by_key(|&a| live_in(a));
        let a = allowed.unwrap_or_else(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        arena_of[i] = a;
        members[a].push(i);
    }
    pack(lifetimes, members, round)
}

/// Colours each tensor into the allowed arena whose peak (the most bytes live in it at one step) it raises least,
/// opening a new arena only where every allowed one would grow by the whole tensor, then packs every arena as
/// [`colour_then_pack`] does. Where the other plans spread tensors evenly over arenas, this one fills the arenas
/// it has: a Winograd conv's scratch goes beside a tensor no dispatch binds with it rather than into an arena of
/// its own (milesial's UNet at 256 x 256: 76.0 -> 68.0 MiB).
fn colour_by_peak_then_pack(
    lifetimes: &[Lifetime],
    neighbours: &[Vec<usize>],
    order: &[usize],
    round: impl Fn(u64) -> u64 + Copy,
) -> MemoryPlan {
    let steps = lifetimes.iter().map(|l| l.last + 1).max().unwrap_or(0);
    let mut arena_of = vec![usize::MAX; lifetimes.len()];
    let mut members: Vec<Vec<usize>> = Vec::new();
    // Per arena: bytes live at each step, and their most.
    let mut live: Vec<Vec<u64>> = Vec::new();
    let mut peak: Vec<u64> = Vec::new();
    for &i in order {
        let l = &lifetimes[i];
        let size = round(l.bytes);
        let growth = |a: usize| {
            let most = live[a][l.first..=l.last].iter().max().copied().unwrap_or(0);
            (most + size).saturating_sub(peak[a])
        };
        let best = (0..members.len())
            .filter(|a| !neighbours[i].iter().any(|&j| arena_of[j] == *a))
            .map(|a| (growth(a), a))
            .min();
        let a = match best {
            Some((g, a)) if g < size => a,
            _ => {
                members.push(Vec::new());
                live.push(vec![0; steps]);
                peak.push(0);
                members.len() - 1
            }
        };
        for b in &mut live[a][l.first..=l.last] {
            *b += size;
            peak[a] = peak[a].max(*b);
        }
        arena_of[i] = a;
        members[a].push(i);
    }
    pack(lifetimes, members, round)
}

/// Packs every arena's tenants largest first, each at the lowest offset free for its whole lifetime.
fn pack(
    lifetimes: &[Lifetime],
    mut members: Vec<Vec<usize>>,
    round: impl Fn(u64) -> u64 + Copy,
) -> MemoryPlan {
    let mut placement = vec![UNPLACED; lifetimes.len()];
    let mut buffer_bytes = vec![0u64; members.len()];
    for (a, tenants) in members.iter_mut().enumerate() {
        tenants.sort_by_key(|&i| (largest_first(&lifetimes[i]), i));
        for (k, &i) in tenants.iter().enumerate() {
            let taken = taken_during(lifetimes, &placement, &tenants[..k], i, round);
            let offset = lowest_free(taken, round(lifetimes[i].bytes));
            placement[i] = Placement { buffer: a, offset };
            buffer_bytes[a] = buffer_bytes[a].max(offset + round(lifetimes[i].bytes));
        }
    }
    MemoryPlan {
        placement,
        buffer_bytes,
    }
}

/// Places each tensor at once where the arenas grow least: the lowest free offset of each allowed arena, or a new
/// arena (which grows by the whole tensor); ties go to the lower offset.
fn first_fit(
    lifetimes: &[Lifetime],
    neighbours: &[Vec<usize>],
    order: &[usize],
    round: impl Fn(u64) -> u64 + Copy,
) -> MemoryPlan {
    let mut placement = vec![UNPLACED; lifetimes.len()];
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut buffer_bytes: Vec<u64> = Vec::new();
    for &i in order {
        let size = round(lifetimes[i].bytes);
        let best = (0..members.len())
            .filter(|&a| !neighbours[i].iter().any(|&j| placement[j].buffer == a))
            .map(|a| {
                let taken = taken_during(lifetimes, &placement, &members[a], i, round);
                let offset = lowest_free(taken, size);
                ((offset + size).saturating_sub(buffer_bytes[a]), offset, a)
            })
            .min();
        let (a, offset) = match best {
            Some((growth, offset, a)) if growth < size => (a, offset),
            _ => {
                members.push(Vec::new());
                buffer_bytes.push(0);
                (members.len() - 1, 0)
            }
        };
        placement[i] = Placement { buffer: a, offset };
        buffer_bytes[a] = buffer_bytes[a].max(offset + size);
        members[a].push(i);
    }
    MemoryPlan {
        placement,
        buffer_bytes,
    }
}
