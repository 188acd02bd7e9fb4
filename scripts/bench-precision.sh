#!/bin/bash
# Interleaved f32 / f16 rounds of atrous bench (default adapter: Vulkan, lavapipe here): within a round each model runs f32 then f16.
# Run from the repository root after `cargo build --release`; prints one JSON line per run (atrous bench --json).
set -e
B=${ATROUS_BIN:-target/release/atrous}
export ATROUS_ADAPTER=${ATROUS_ADAPTER:-vulkan}
date -u; uptime
for round in 1 2 3 4 5 6; do
  for p in f32 f16; do
    echo "round $round selfie $p $($B bench --iters 10 --warmup 2 --precision $p --json)"
  done
  for p in f32 f16; do
    echo "round $round deeplab $p $($B bench --model tests/fixtures/zoo/deeplabv3_resnet50.safetensors --size 161x199 --iters 10 --warmup 2 --precision $p --json)"
  done
  for p in f32 f16; do
    echo "round $round conv64 $p $($B bench --op conv2d --in-channels 64 --out-channels 64 --size 256x256 --iters 3 --warmup 1 --precision $p --json)"
  done
done
uptime; date -u
