//! Streams: per-caller run state for frames in flight. A [`Stream`] owns, for each kind of frame it has seen, a run
//! state of the shared compiled plan (activation buffers, bind groups, readback buffers), made on the first frame
//! and reused by every later one: a frame allocates nothing on the GPU. Two streams never wait for each other; one
//! stream runs its frames in submission order.

use super::graph::{Compiled, Key, Source, BANDS, PIXELS};
use super::request::{
    check_target, delivery, texel_encoding, texture_region, Frame, Output, Readback, Request,
    Target,
};
use super::{Segmentation, Shared};
use crate::error::{Error, Result};
use crate::gpu::{Created, Gpu, Precision};
use crate::plan::RunState;
use crate::tensor::{Shape, Tensor};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

/// How long a finished frame's readback waits for map callbacks that another thread's poll is running.
#[cfg(not(target_arch = "wasm32"))]
const CALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Texture views a stream keeps, one per frame texture, most recently used first.
const VIEWS: usize = 4;

/// A sequence of frames run in order with state of its own; see [`super::Segmenter::stream`].
pub struct Stream {
    shared: Arc<Shared>,
    plans: HashMap<Key, StreamPlan>,
    views: Vec<(wgpu::Texture, wgpu::TextureView)>,
}

/// A stream's state for one compiled plan.
struct StreamPlan {
    compiled: Arc<Compiled>,
    state: RunState,
    /// MAP_READ buffers of the class map and the probabilities, made on the first readback.
    staging: Option<Staging>,
    /// The last readback started from `staging`, until it is read or reclaimed.
    last: Option<Arc<ReadSlot>>,
}

struct Staging {
    classes: wgpu::Buffer,
    probabilities: Option<wgpu::Buffer>,
}

/// A frame submitted by [`Stream::submit`]: its readback, when the request asked for one.
#[derive(Debug)]
pub struct Submitted {
    pub readback: Option<FrameReadback>,
}

/// A frame recorded into the application's encoder by [`Stream::record`]. Once the application has submitted
/// that encoder, [`Recorded::submitted`] starts the readback, if one was asked for.
#[must_use = "call `submitted` after submitting the encoder, to start the readback"]
#[derive(Debug)]
pub struct Recorded {
    readback: Option<FrameReadback>,
}

impl Recorded {
    /// Starts the readback (maps the staging buffers). Call it after the queue submission holding the encoder
    /// the frame was recorded into.
    pub fn submitted(self) -> Option<FrameReadback> {
        self.readback.map(|r| r.start())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Recorded; the application has not said it submitted.
    Recorded,
    /// Mapping requested: `pending` callbacks outstanding.
    Mapping,
    /// Read by its future.
    Read,
    /// Taken back by the stream for a later frame before it was read.
    Reclaimed,
}

/// A readback's state and the signal that its last map callback has run.
#[derive(Debug)]
struct ReadSlot {
    state: Mutex<ReadState>,
    done: Condvar,
}

#[derive(Debug)]
struct ReadState {
    phase: Phase,
    pending: usize,
    error: Option<String>,
    waker: Option<Waker>,
}

/// The readback of one frame: a future that resolves once the GPU has finished the frame and the device has been
/// polled (an application's loop polls every frame; [`Gpu::poll`] does it once without blocking). Dropping it
/// unawaited is fine: the stream takes its buffers back on its next frame.
#[derive(Debug)]
pub struct FrameReadback {
    gpu: Arc<Gpu>,
    slot: Arc<ReadSlot>,
    classes: wgpu::Buffer,
    probabilities: Option<wgpu::Buffer>,
    size: (usize, usize),
    class_count: usize,
    precision: Precision,
}

fn lock(slot: &ReadSlot) -> std::sync::MutexGuard<'_, ReadState> {
    // A panic while holding the lock leaves a consistent state: the fields are set one at a time.
    slot.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FrameReadback {
    fn buffers(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        std::iter::once(&self.classes).chain(&self.probabilities)
    }

    fn start(self) -> Self {
        let count = self.buffers().count();
        {
            let mut s = lock(&self.slot);
            s.phase = Phase::Mapping;
            s.pending = count;
        }
        for buffer in self.buffers() {
            let slot = self.slot.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |result| {
                let mut s = lock(&slot);
                s.pending -= 1;
                if let Err(e) = result {
                    s.error.get_or_insert(e.to_string());
                }
                if s.pending == 0 {
                    slot.done.notify_all();
                    if let Some(waker) = s.waker.take() {
                        waker.wake();
                    }
                }
            });
        }
        self
    }

    /// The segmentation if the GPU is done and the device was polled since; `None` while it is in flight.
    pub fn try_take(&mut self) -> Option<Result<Segmentation>> {
        let mut s = lock(&self.slot);
        match s.phase {
            Phase::Recorded => {
                return Some(Err(Error::Frame(
                    "the readback of a recorded frame starts with Recorded::submitted".into(),
                )))
            }
            Phase::Read => return Some(Err(Error::Frame("this readback was read already".into()))),
            Phase::Reclaimed => {
                return Some(Err(Error::Busy(
                    "the stream ran a later frame of the same kind before this readback was read"
                        .into(),
                )))
            }
            Phase::Mapping if s.pending > 0 => return None,
            Phase::Mapping => {}
        }
        s.phase = Phase::Read;
        if let Some(e) = s.error.take() {
            return Some(Err(Error::Device(format!("mapping a readback: {e}"))));
        }
        drop(s);
        Some(self.read())
    }

    fn read(&self) -> Result<Segmentation> {
        let bytes = |buffer: &wgpu::Buffer| -> Result<Vec<u8>> {
            let data = buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("reading a readback: {e}")))?
                .to_vec();
            buffer.unmap();
            Ok(data)
        };
        let (width, height) = self.size;
        let pixels = width * height;
        let classes = bytemuck::pod_collect_to_vec(&bytes(&self.classes)?[..4 * pixels]);
        let probabilities = match &self.probabilities {
            None => None,
            Some(buffer) => {
                let shape = Shape::new(1, self.class_count, height, width);
                let data = self.precision.decode(&bytes(buffer)?, shape.numel());
                Some(Tensor { shape, data })
            }
        };
        Ok(Segmentation {
            width,
            height,
            classes,
            probabilities,
        })
    }

    /// Blocks until the GPU has finished the frame and returns the segmentation: the convenience for callers that
    /// may block (not a render loop, and not a browser).
    pub fn wait(mut self) -> Result<Segmentation> {
        self.gpu.wait()?;
        self.take_finished().unwrap_or_else(|| {
            Err(Error::Device(
                "the readback did not complete after the device went idle".into(),
            ))
        })
    }

    /// [`Self::try_take`] for a frame whose submission the device has reported finished. Its map callbacks have
    /// then run, or are about to run on another thread whose poll collected them (wgpu runs callbacks after its
    /// poll returns from the device): wait for those, for at most [`CALLBACK_WAIT`].
    pub(crate) fn take_finished(&mut self) -> Option<Result<Segmentation>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let deadline = std::time::Instant::now() + CALLBACK_WAIT;
            let mut s = lock(&self.slot);
            while s.phase == Phase::Mapping && s.pending > 0 {
                let left = deadline.checked_duration_since(std::time::Instant::now())?;
                s = match self.slot.done.wait_timeout(s, left) {
                    Ok((s, _)) => s,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        self.try_take()
    }
}

impl Future for FrameReadback {
    type Output = Result<Segmentation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.try_take() {
            return Poll::Ready(result);
        }
        let mut s = lock(&self.slot);
        s.waker = Some(cx.waker().clone());
        // The last callback may have run between try_take and taking the lock.
        if s.pending == 0 {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Stream {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Stream {
            shared,
            plans: HashMap::new(),
            views: Vec::new(),
        }
    }

    /// Runs `frame` in a submission of the stream's own and returns at once; outputs go where `request` says, and
    /// its readback (if any) arrives through the returned future.
    pub fn submit(&mut self, frame: Frame<'_>, request: &Request<'_>) -> Result<Submitted> {
        let gpu = self.shared.engine.gpu().clone();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let readback = self.record_into(&mut encoder, frame, request)?;
        gpu.scoped(
            || "submitting a frame".to_string(),
            || gpu.queue.submit([encoder.finish()]),
        )?;
        Ok(Submitted {
            readback: readback.map(FrameReadback::start),
        })
    }

    /// Records `frame` into the application's `encoder`, so that segmentation runs in the same submission as the
    /// work that uses it. Uploads (a host image, the region's origin) are queued for the next submission of the
    /// queue; after submitting, call [`Recorded::submitted`] to start the readback.
    pub fn record(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        frame: Frame<'_>,
        request: &Request<'_>,
    ) -> Result<Recorded> {
        let readback = self.record_into(encoder, frame, request)?;
        Ok(Recorded { readback })
    }

    fn view(&mut self, texture: &wgpu::Texture) -> wgpu::TextureView {
        let at = match self.views.iter().position(|(t, _)| t == texture) {
            Some(at) => at,
            None => {
                self.shared.engine.gpu().count(Created::TextureView);
                let view = texture.create_view(&wgpu::TextureViewDescriptor {
                    label: Some("atrous frame"),
                    base_mip_level: 0,
                    mip_level_count: Some(1),
                    ..Default::default()
                });
                self.views.truncate(VIEWS - 1);
                self.views.insert(0, (texture.clone(), view));
                0
            }
        };
        let entry = self.views.remove(at);
        self.views.insert(0, entry);
        self.views[0].1.clone()
    }

    fn record_into(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        frame: Frame<'_>,
        request: &Request<'_>,
    ) -> Result<Option<FrameReadback>> {
        let shared = self.shared.clone();
        let gpu = shared.engine.gpu().clone();
        let targets: Vec<(Output, Target<'_>)> = [
            request.classes.map(|t| (Output::Classes, t)),
            request.colours.map(|t| (Output::Colours, t)),
            request.mask.map(|m| (Output::Mask(m.class), m.target)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let deliveries = targets
            .iter()
            .map(|(output, target)| delivery(*output, target, &shared.palette))
            .collect::<Result<Vec<_>>>()?;
        let (source, size, texture) = match frame {
            Frame::Image(image) => {
                let (w, h) = image.dimensions();
                if w == 0 || h == 0 {
                    return Err(Error::Frame(format!("an empty {w}x{h} image")));
                }
                (Source::Pixels, (w as usize, h as usize), None)
            }
            Frame::Texture { texture, region } => {
                let texels = texel_encoding(texture)?;
                let r = texture_region(texture, region)?;
                let view = self.view(texture);
                let size = (r.width as usize, r.height as usize);
                (Source::Texture(texels), size, Some((view, [r.x, r.y])))
            }
            Frame::Bands {
                data,
                channels,
                width,
                height,
            } => {
                super::request::check_bands(data, channels, width, height)?;
                (Source::Bands(channels), (width, height), None)
            }
        };
        let key = Key {
            source,
            size,
            resolution: request.resolution,
            readback: request.readback,
            deliveries,
        };
        let sp = match self.plans.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let compiled = shared.compiled(v.key())?;
                let state = compiled.plan.take_state()?;
                v.insert(StreamPlan {
                    compiled,
                    state,
                    staging: None,
                    last: None,
                })
            }
        };
        sp.reclaim(&gpu)?;
        let compiled = sp.compiled.clone();
        let plan = &compiled.plan;
        let (out_w, out_h) = compiled.out_size;
        for ((_, target), name) in targets.iter().zip(&compiled.delivered) {
            let info = plan.output_info(name).expect("a delivered output");
            check_target(target, (out_w, out_h), 4 * info.shape.numel() as u64)?;
        }

        match (frame, &texture) {
            (Frame::Image(image), _) => sp.state.write_input(plan, PIXELS, image.as_raw())?,
            (Frame::Bands { data, .. }, _) => {
                sp.state
                    .write_input(plan, BANDS, bytemuck::cast_slice(data))?
            }
            (_, Some((_, origin))) => sp.state.set_origin(plan, *origin)?,
            _ => {}
        }
        sp.state
            .record(plan, encoder, texture.as_ref().map(|(view, _)| view))?;
        for ((_, target), name) in targets.iter().zip(&compiled.delivered) {
            let (buffer, offset, bytes) = plan.region(&sp.state, name).expect("a graph output");
            match target {
                Target::Buffer {
                    buffer: dest,
                    offset: at,
                } => encoder.copy_buffer_to_buffer(buffer, offset, dest, *at, bytes),
                Target::Texture(dest) => {
                    let row_words = plan.output_info(name).expect("an output").shape.w;
                    encoder.copy_buffer_to_texture(
                        wgpu::TexelCopyBufferInfo {
                            buffer,
                            layout: wgpu::TexelCopyBufferLayout {
                                offset,
                                bytes_per_row: Some(4 * row_words as u32),
                                rows_per_image: Some(out_h as u32),
                            },
                        },
                        dest.as_image_copy(),
                        wgpu::Extent3d {
                            width: out_w as u32,
                            height: out_h as u32,
                            depth_or_array_layers: 1,
                        },
                    );
                }
            }
        }
        let Some(readback) = request.readback else {
            return Ok(None);
        };
        if sp.staging.is_none() {
            let staging = |name: &str| -> Result<wgpu::Buffer> {
                let (_, _, bytes) = plan.region(&sp.state, name).expect("a graph output");
                gpu.staging_buffer(name, bytes)
            };
            let classes = staging(&compiled.classes)?;
            let probabilities = match &compiled.probabilities {
                Some(name) => Some(staging(name)?),
                None => None,
            };
            sp.staging = Some(Staging {
                classes,
                probabilities,
            });
        }
        let staging = sp.staging.as_ref().expect("made above");
        let copies = std::iter::once((&compiled.classes, &staging.classes)).chain(
            compiled
                .probabilities
                .iter()
                .zip(staging.probabilities.iter()),
        );
        for (name, dest) in copies {
            let (buffer, offset, bytes) = plan.region(&sp.state, name).expect("a graph output");
            encoder.copy_buffer_to_buffer(buffer, offset, dest, 0, bytes);
        }
        let slot = Arc::new(ReadSlot {
            state: Mutex::new(ReadState {
                phase: Phase::Recorded,
                pending: 0,
                error: None,
                waker: None,
            }),
            done: Condvar::new(),
        });
        sp.last = Some(slot.clone());
        Ok(Some(FrameReadback {
            gpu,
            slot,
            classes: staging.classes.clone(),
            probabilities: match readback {
                Readback::Classes => None,
                Readback::ClassesAndProbabilities => staging.probabilities.clone(),
            },
            size: compiled.out_size,
            class_count: shared.class_count,
            precision: plan.precision(),
        }))
    }
}

impl StreamPlan {
    /// Takes the staging buffers back from the last readback before a new frame copies into them: one still in
    /// flight makes the stream busy; one finished but never read is unmapped.
    fn reclaim(&mut self, gpu: &Gpu) -> Result<()> {
        let Some(last) = self.last.take() else {
            return Ok(());
        };
        let in_flight = {
            let s = lock(&last);
            s.phase == Phase::Mapping && s.pending > 0
        };
        if in_flight {
            gpu.poll()?;
        }
        let mut s = lock(&last);
        if s.phase == Phase::Mapping {
            if s.pending > 0 {
                drop(s);
                self.last = Some(last);
                return Err(Error::Busy(
                    "the stream's previous frame of this kind is still being read back: poll the device or \
                     await that readback, or run this frame on another stream"
                        .into(),
                ));
            }
            if s.error.is_none() {
                if let Some(staging) = &self.staging {
                    staging.classes.unmap();
                    if let Some(p) = &staging.probabilities {
                        p.unmap();
                    }
                }
            }
            s.phase = Phase::Reclaimed;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("plans", &self.plans.len())
            .finish()
    }
}
