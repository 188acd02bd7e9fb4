//! Kernel choice by measurement ([`PlanOptions::tune`](super::PlanOptions::tune)): where several kernels can run
//! a conv ([`conv2d::candidates`]: register tiles, row tiles, split-K, Winograd, ...), a tuned plan times each on
//! the adapter it compiles for and keeps the fastest. The shape heuristics ([`conv2d::choose`]) are a model of a
//! GPU; a measurement is the GPU itself, and the only way to choose well on adapters nobody here has timed.
//!
//! Choices are cached in a JSON file per adapter (name, PCI ids, backend, driver and driver version) and conv shape
//! (parameters, input shape, storage precision and math), so the next run, in any process, starts tuned without
//! timing anything: `ATROUS_TUNE_CACHE` names the file, else `$XDG_CACHE_HOME/atrous/tune.json`, else
//! `~/.cache/atrous/tune.json`. The cache is read as untrusted input: a file that does not parse is ignored (and
//! replaced on the next save), and a cached kernel is used only if it is still a candidate for its conv.
//!
//! Timing goes through a [`Clock`], so a test can prove with a fake one that the tuner keeps what it measured
//! fastest; [`WallClock`] times real runs.

use super::lower::Context;
use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Gpu, Precision};
use crate::kernels::conv2d::{self, Path};
use crate::ops::Conv2d;
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path as FilePath, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Measures how long one candidate takes.
pub trait Clock: Send {
    /// Seconds one run of the conv `node` on `path` takes; `run` records it, submits and waits for it once. Past
    /// `give_up` seconds a run shows the candidate out of the running (infinite while nothing has been timed): a
    /// clock may stop timing it there and return what it has.
    fn time(
        &mut self,
        node: &str,
        path: Path,
        give_up: f64,
        run: &mut dyn FnMut() -> Result<()>,
    ) -> Result<f64>;
}

/// Times real runs on the wall clock: the fastest of up to [`WallClock::rounds`] runs, fewer where runs take long
/// ([`WallClock::budget_seconds`]), one where the first is past `give_up`. The pipeline is built before the first
/// run, so no warm-up run is spent; the fastest, not the mean, since noise on a shared machine only ever adds time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    pub rounds: usize,
    /// Stop timing a candidate once its runs have taken this long in all.
    pub budget_seconds: f64,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock {
            rounds: 5,
            budget_seconds: 0.5,
        }
    }
}

impl Clock for WallClock {
    fn time(
        &mut self,
        _node: &str,
        _path: Path,
        give_up: f64,
        run: &mut dyn FnMut() -> Result<()>,
    ) -> Result<f64> {
        let (mut best, mut spent) = (f64::INFINITY, 0.0);
        for _ in 0..self.rounds.max(1) {
            let start = Instant::now();
            run()?;
            let seconds = start.elapsed().as_secs_f64();
            best = best.min(seconds);
            spent += seconds;
            if spent >= self.budget_seconds || best > give_up {
                break;
            }
        }
        Ok(best)
    }
}

/// How a conv's kernel was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum ChoiceSource {
    /// By the shape heuristics ([`conv2d::choose`]): the plan was not tuned, or the conv has one candidate.
    Heuristic,
    /// From the tuning cache, measured by an earlier run.
    Cached,
    /// Measured now: every candidate that built, with its fastest seconds per run, in candidate order (the
    /// finalists timed again).
    Measured(Vec<(Path, f64)>),
}

/// The kernel a plan runs a conv node on, and why ([`super::Plan::conv_choices`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvChoice {
    /// The node's name.
    pub node: String,
    /// What the tuning cache keys the choice by: the conv's shape, precision and math.
    pub key: String,
    pub path: Path,
    pub source: ChoiceSource,
}

/// A candidate's kernels bound to buffers of their own, built once for every time it is timed.
struct Prepared {
    bound: Vec<BoundKernel>,
    /// The buffers the kernels are bound to, kept as long as they are.
    _buffers: Vec<wgpu::Buffer>,
}

/// One cached choice.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    path: Path,
    /// Seconds per run when it was measured.
    seconds: f64,
}

/// The cache file: choices by adapter, then by conv key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    adapters: BTreeMap<String, BTreeMap<String, Entry>>,
}

const CACHE_VERSION: u32 = 1;

/// Candidates timed again, fastest first, after every candidate has been timed once (with the heuristic's choice).
const FINALISTS: usize = 3;

/// How many times slower than the fastest so far a candidate's first run shows it out of the running.
const GIVE_UP: f64 = 2.0;

/// Interleaved rounds the finalists are timed again in.
const RECHECK_ROUNDS: usize = 2;

/// How much faster than the heuristic's choice another candidate must measure to be taken instead.
const MARGIN: f64 = 0.05;

/// A cache file larger than this is not ours: it is ignored rather than read into memory.
const MAX_CACHE_BYTES: u64 = 64 << 20;

/// Chooses conv kernels by timing them ([`Clock`]) and remembers the choices on disk. One tuner may serve many
/// plans and threads; plans compiled with [`PlanOptions::tune`](super::PlanOptions::tune) make one from the
/// environment ([`Tuner::from_env`]) and save it when they are compiled.
pub struct Tuner {
    clock: Mutex<Box<dyn Clock>>,
    cache_path: Option<PathBuf>,
    cache: Mutex<CacheFile>,
    /// Candidates timed so far.
    measured: Mutex<usize>,
}

impl Tuner {
    /// A tuner timing with `clock`, its cache read from (and saved to) `cache_path` if given.
    pub fn new(cache_path: Option<PathBuf>, clock: Box<dyn Clock>) -> Tuner {
        let cache = cache_path.as_deref().map(read_cache).unwrap_or_default();
        Tuner {
            clock: Mutex::new(clock),
            cache_path,
            cache: Mutex::new(cache),
            measured: Mutex::new(0),
        }
    }

    /// A tuner on the wall clock with the cache at [`Tuner::default_cache_path`].
    pub fn from_env() -> Tuner {
        Tuner::new(Self::default_cache_path(), Box::new(WallClock::default()))
    }

    /// `ATROUS_TUNE_CACHE`, else `$XDG_CACHE_HOME/atrous/tune.json`, else `$HOME/.cache/atrous/tune.json`; `None`
    /// where none is set (choices then last as long as the tuner).
    pub fn default_cache_path() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(path) = var("ATROUS_TUNE_CACHE") {
            return Some(PathBuf::from(path));
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("atrous").join("tune.json"))
    }

    pub fn cache_path(&self) -> Option<&FilePath> {
        self.cache_path.as_deref()
    }

    /// How many candidates this tuner has timed: 0 for plans whose every choice came from the cache.
    pub fn measured(&self) -> usize {
        *self.measured.lock().expect("tuner poisoned")
    }

    /// The kernel for conv `node` (`p` on `input`) in the plan being lowered (its storage precision and math):
    /// from the cache for this adapter, else the fastest candidate as timed now (remembered for [`Tuner::save`]):
    /// every candidate once, then the [`FINALISTS`] fastest and the heuristic's choice again in
    /// [`RECHECK_ROUNDS`] interleaved rounds, the heuristic's choice kept unless another measured more than
    /// [`MARGIN`] faster. A candidate that does not build on this device (a limit) is skipped; the heuristic's
    /// choice is the first candidate, so with one candidate nothing is timed.
    pub(crate) fn choose(
        &self,
        cx: &Context<'_>,
        node: &str,
        p: &Conv2d,
        input: Shape,
    ) -> Result<ConvChoice> {
        let (gpu, precision, f16_math) = (cx.gpu, cx.precision, cx.f16_math);
        let candidates: Vec<Path> = conv2d::candidates(p, input, cx.parallelism)
            .into_iter()
            .map(|path| path.with_f16_math(f16_math))
            .collect();
        let key = conv_key(p, input, precision, f16_math);
        let choice = |path, source| ConvChoice {
            node: node.to_string(),
            key: key.clone(),
            path,
            source,
        };
        if candidates.len() == 1 {
            return Ok(choice(candidates[0], ChoiceSource::Heuristic));
        }
        let adapter = adapter_key(gpu);
        let cached = self
            .cache
            .lock()
            .expect("tuner poisoned")
            .adapters
            .get(&adapter)
            .and_then(|a| a.get(&key))
            .map(|e| e.path);
        if let Some(path) = cached.filter(|path| candidates.contains(path)) {
            return Ok(choice(path, ChoiceSource::Cached));
        }
        let mut times: Vec<(Path, f64)> = Vec::new();
        for &path in &candidates {
            let fastest = times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
            if let Some(prepared) = self.prepare(cx, node, p, input, path)? {
                times.push((
                    path,
                    self.time(cx, node, path, &prepared, fastest * GIVE_UP)?,
                ));
            }
        }
        if times.is_empty() {
            return Err(Error::Gpu {
                context: format!("{node} (conv2d)"),
                message: "no candidate kernel builds on this device".into(),
            });
        }
        // A burst of load elsewhere during one candidate's runs makes it look slow, or another fast: the finalists
        // (the fastest few and the heuristic's choice) are timed again in interleaved rounds, each keeping its
        // fastest time.
        let mut ranked: Vec<usize> = (0..times.len()).collect();
        ranked.sort_by(|&a, &b| times[a].1.total_cmp(&times[b].1));
        let mut finalists: Vec<usize> = ranked.into_iter().take(FINALISTS).collect();
        let heuristic = times.iter().position(|t| t.0 == candidates[0]);
        if let Some(h) = heuristic.filter(|h| !finalists.contains(h)) {
            finalists.push(h);
        }
        // Each finalist's kernels and buffers are built once for all rounds (they built in the first pass).
        let mut prepared = Vec::with_capacity(finalists.len());
        for &i in &finalists {
            if let Some(bound) = self.prepare(cx, node, p, input, times[i].0)? {
                prepared.push((i, bound));
            }
        }
        for _ in 0..RECHECK_ROUNDS {
            for (i, bound) in &prepared {
                let seconds = self.time(cx, node, times[*i].0, bound, f64::INFINITY)?;
                times[*i].1 = times[*i].1.min(seconds);
            }
        }
        let fastest = finalists
            .iter()
            .copied()
            .min_by(|&a, &b| times[a].1.total_cmp(&times[b].1))
            .expect("at least one finalist");
        // The heuristic's choice stands unless another is clearly faster: within the noise, a measured win is luck.
        let chosen = match heuristic {
            Some(h) if times[h].1 <= times[fastest].1 * (1.0 + MARGIN) => h,
            _ => fastest,
        };
        let (best, seconds) = times[chosen];
        self.cache
            .lock()
            .expect("tuner poisoned")
            .adapters
            .entry(adapter)
            .or_default()
            .insert(
                key.clone(),
                Entry {
                    path: best,
                    seconds,
                },
            );
        Ok(choice(best, ChoiceSource::Measured(times)))
    }

    /// The kernels of `path` for `p` on `input`, bound to buffers of their own (their contents do not change the
    /// time); `None` if they do not build here.
    fn prepare(
        &self,
        cx: &Context<'_>,
        node: &str,
        p: &Conv2d,
        input: Shape,
        path: Path,
    ) -> Result<Option<Prepared>> {
        let gpu = cx.gpu;
        let Ok(kernels) = conv2d::conv2d_on(gpu, node, p, input, path, cx.precision) else {
            return Ok(None);
        };
        let label = format!("{node} (tuning)");
        let buffers = kernels
            .binding_bytes()
            .iter()
            .map(|&bytes| gpu.storage_buffer(&label, bytes))
            .collect::<Result<Vec<_>>>()?;
        let scratch_buffers = kernels
            .scratch_bytes()
            .iter()
            .map(|&bytes| gpu.storage_buffer(&label, bytes.max(4)))
            .collect::<Result<Vec<_>>>()?;
        let binding = |i: usize| buffers[i].as_entire_buffer_binding();
        let scratch: Vec<_> = scratch_buffers
            .iter()
            .map(|b| b.as_entire_buffer_binding())
            .collect();
        let bound = kernels.bind(
            gpu,
            binding(0),
            [binding(1), binding(2), binding(3), binding(4)],
            &scratch,
        )?;
        Ok(Some(Prepared {
            bound,
            _buffers: buffers.into_iter().chain(scratch_buffers).collect(),
        }))
    }

    /// Seconds per run of the prepared kernels of `path` ([`Tuner::prepare`]), by the clock.
    fn time(
        &self,
        cx: &Context<'_>,
        node: &str,
        path: Path,
        prepared: &Prepared,
        give_up: f64,
    ) -> Result<f64> {
        let refs: Vec<_> = prepared.bound.iter().collect();
        *self.measured.lock().expect("tuner poisoned") += 1;
        let mut run = || cx.gpu.run(&refs);
        self.clock
            .lock()
            .expect("tuner poisoned")
            .time(node, path, give_up, &mut run)
    }

    /// Writes the cache: the file as it is now on disk (another process may have added to it) with this tuner's
    /// choices over it, through a temporary file renamed into place, so a reader never sees half a file.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.cache_path else {
            return Ok(());
        };
        let io = |e: std::io::Error| Error::File {
            path: path.clone(),
            message: format!("writing the tuning cache: {e}"),
        };
        let mut merged = read_cache(path);
        for (adapter, entries) in &self.cache.lock().expect("tuner poisoned").adapters {
            let ours = merged.adapters.entry(adapter.clone()).or_default();
            ours.extend(entries.iter().map(|(k, e)| (k.clone(), e.clone())));
        }
        merged.version = CACHE_VERSION;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&merged).map_err(|e| Error::File {
            path: path.clone(),
            message: format!("writing the tuning cache: {e}"),
        })?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temp, text).map_err(io)?;
        std::fs::rename(&temp, path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io(e)
        })
    }
}

/// The cache at `path`, or an empty one where there is none or it is not a cache of this version.
fn read_cache(path: &FilePath) -> CacheFile {
    let too_big = std::fs::metadata(path).map_or(true, |m| m.len() > MAX_CACHE_BYTES);
    let parsed = match too_big {
        true => None,
        false => std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok()),
    };
    match parsed {
        Some(cache) if cache.version == CACHE_VERSION => cache,
        _ => {
            if path.exists() {
                log::warn!(
                    "ignoring tuning cache {}: not a version {CACHE_VERSION} cache",
                    path.display()
                );
            }
            CacheFile::default()
        }
    }
}

/// What tells adapters apart in the cache: a driver update may change which kernel is fastest, and so may a change
/// to the conv kernels themselves (another atrous build), so the key ends with a fingerprint of their sources.
fn adapter_key(gpu: &Gpu) -> String {
    let info = gpu.info();
    format!(
        "{} [{:04x}:{:04x}] {:?}, driver {} {}, kernels {:016x}",
        info.name,
        info.vendor,
        info.device,
        info.backend,
        info.driver,
        info.driver_info,
        conv_kernels_fingerprint()
    )
}

/// FNV-1a over the sources of the conv shader programs (shaders/conv2d*.wgsl).
fn conv_kernels_fingerprint() -> u64 {
    crate::kernels::SHADERS
        .iter()
        .filter(|s| s.name.starts_with("conv2d"))
        .flat_map(|s| s.source.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// What a conv's time depends on: its parameters but the epilogue (bias, activation, residual and channel offset
/// cost the same on every path), the input shape, the storage precision and the math.
fn conv_key(p: &Conv2d, input: Shape, precision: Precision, f16_math: bool) -> String {
    let pad = p.padding;
    format!(
        "conv {}x{}x{}x{} -> {} k{}x{} s{}x{} d{}x{} p{},{},{},{} g{} {precision}{}",
        input.n,
        input.c,
        input.h,
        input.w,
        p.out_channels,
        p.kernel[0],
        p.kernel[1],
        p.stride[0],
        p.stride[1],
        p.dilation[0],
        p.dilation[1],
        pad.top,
        pad.left,
        pad.bottom,
        pad.right,
        p.groups,
        if f16_math { " f16 math" } else { "" }
    )
}
