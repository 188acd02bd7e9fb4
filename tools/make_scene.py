#!/usr/bin/env python3
"""Writes a synthetic georeferenced multi-band GeoTIFF scene with rasterio (GDAL), for atrous's raster tests and
for trying the remote-sensing path on scenes of any size.

Pixel values ("--pattern formula", the default) follow a formula that tests/raster.rs mirrors exactly, so a test
can check every value it reads without a sidecar file:

    h(x, y)       = (x * 73856093) ^ (y * 19349663)                      (an integer hash: the "noise")
    raw(b, y, x)  = (1000 * b + 3 * x + 5 * y + (h(x, y) ^ (b * 83492791)) % 61) % 65536
    value         = u8: raw % 251          i8: raw % 251 - 125     u16: raw          i16: raw - 32768
                    u32: raw * 65537       i32: (raw - 32768) * 65536
                    f32: (raw - 30000) / 4 f64: (raw - 30000) / 8   complex64: raw (only to test refusal)

With --nodata V, every band of pixel (x, y) holds V where x < 2 or h(x, y) % 13 == 0 (a scene border and
scattered holes). "--pattern fields" writes smooth random fields plus noise instead (not reproducible by formula;
for looking at, and for large scenes).

"--pattern parcels" (u16 only) is land cover that a segmentation network can tell apart, also reproducible by
formula (tests/tiles.rs mirrors it): slanted parcels about 80 pixels across, each one of five covers (water,
forest, crop, bare soil, built-up) with its own per-band reflectance (x 10,000, as Sentinel-2 stores it), a
per-parcel brightness shift and per-pixel noise:

    parcel(x, y)  = ((x + y // 3) // 83, (y + x // 5) // 71)   = (px, py)
    cover         = (h(px, py) >> 7) % 5        shift = (h(px, py) >> 11) % 400
    value(b)      = LEVELS[cover][b] + shift + (h(x, y) ^ (b * 83492791)) % 301

Rows are written in blocks, so a scene of any size needs little memory.

The CRS is EPSG:32633 (WGS 84 / UTM 33N) by default, the geotransform a north-up grid of --res metres whose top
left corner is (--origin-x, --origin-y).

Examples:
    python3 tools/make_scene.py --size 70x50 --bands 4 --dtype uint16 --layout tiled --block 16 \
        --compress deflate out.tif
    python3 tools/make_scene.py --size 12000 --bands 4 --dtype uint16 --pattern fields big.tif
"""

import argparse

import numpy as np
import rasterio
from rasterio.transform import from_origin

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "complex64"]


def hash_xy(x, y):
    return (x * 73856093) ^ (y * 19349663)


def formula(b, ys, xs, dtype):
    """Values of band b (0-based) for the pixel grid given by the int64 arrays ys, xs."""
    raw = (1000 * b + 3 * xs + 5 * ys + (hash_xy(xs, ys) ^ (b * 83492791)) % 61) % 65536
    if dtype == "uint8":
        return raw % 251
    if dtype == "int8":
        return raw % 251 - 125
    if dtype == "uint16":
        return raw
    if dtype == "int16":
        return raw - 32768
    if dtype == "uint32":
        return raw * 65537
    if dtype == "int32":
        return (raw - 32768) * 65536
    if dtype == "float32":
        return (raw - 30000) / 4.0
    if dtype == "float64":
        return (raw - 30000) / 8.0
    return raw.astype(np.complex64)


# Per-band reflectance x 10,000 (blue, green, red, near infrared; further bands repeat them) of the parcels' covers.
LEVELS = [[600, 500, 300, 150], [300, 500, 300, 3000], [500, 800, 600, 4000], [1200, 1400, 1700, 2200],
          [1500, 1500, 1600, 1800]]


def parcel_hash(ys, xs):
    """The hash of each pixel's parcel, for the int64 pixel grids ys, xs."""
    return hash_xy((xs + ys // 3) // 83, (ys + xs // 5) // 71)


def parcel_cover(ys, xs):
    """The "parcels" pattern's land cover (0..4, an index into LEVELS) of each pixel: its ground truth."""
    return (parcel_hash(ys, xs) >> 7) % 5


def parcels(b, ys, xs):
    """The "parcels" pattern's values of band b (0-based) for the int64 pixel grids ys, xs."""
    h = parcel_hash(ys, xs)
    level = np.array([row[b % 4] for row in LEVELS], dtype=np.int64)[(h >> 7) % 5]
    return level + (h >> 11) % 400 + (hash_xy(xs, ys) ^ (b * 83492791)) % 301


def fields(b, ys, xs, dtype, rng):
    """Smooth fields (a few sines per band) plus noise, scaled into the type's range."""
    v = np.zeros(xs.shape, dtype=np.float64)
    for k in range(3):
        fx, fy, phase = 0.002 * (k + 1) * (b + 1), 0.003 * (k + 2), 0.7 * b + k
        v += np.sin(xs * fx + phase) * np.cos(ys * fy - phase)
    v = 0.5 + v / 6.0 + rng.normal(0.0, 0.02, xs.shape)
    v = np.clip(v, 0.0, 1.0)
    if dtype in ("float32", "float64"):
        return v
    if dtype == "complex64":
        return v.astype(np.complex64)
    info = np.iinfo(dtype)
    return info.min + v * min(float(info.max) - info.min, 10000.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output")
    p.add_argument("--size", default="70x50", help="WIDTHxHEIGHT, or one number for a square (default 70x50)")
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--dtype", default="uint16", choices=DTYPES)
    p.add_argument("--layout", default="tiled", choices=["tiled", "stripped"])
    p.add_argument("--block", type=int, default=16, help="tile size, or rows per strip (default 16)")
    p.add_argument("--compress", default="deflate", choices=["none", "deflate", "lzw", "packbits"])
    p.add_argument("--predictor", type=int, default=1, choices=[1, 2, 3])
    p.add_argument("--interleave", default="pixel", choices=["pixel", "band"])
    p.add_argument("--bigtiff", action="store_true")
    p.add_argument("--endian", default="little", choices=["little", "big"])
    p.add_argument("--nodata", type=float, default=None)
    p.add_argument("--nbits", type=int, default=None, help="GDAL NBITS (e.g. 1 for a 1-bit file)")
    p.add_argument("--palette", action="store_true", help="a palette (colour map) file: one u8 band")
    p.add_argument("--pattern", default="formula", choices=["formula", "fields", "parcels"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crs", default="EPSG:32633")
    p.add_argument("--res", type=float, default=10.0)
    p.add_argument("--origin-x", type=float, default=500000.0)
    p.add_argument("--origin-y", type=float, default=5000000.0)
    a = p.parse_args()

    if a.pattern == "parcels" and a.dtype != "uint16":
        p.error("--pattern parcels writes uint16 reflectances")
    if "x" in a.size:
        width, height = (int(v) for v in a.size.split("x"))
    else:
        width = height = int(a.size)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=a.bands,
        dtype=a.dtype,
        crs=a.crs,
        transform=from_origin(a.origin_x, a.origin_y, a.res, a.res),
        interleave=a.interleave,
        BIGTIFF="YES" if a.bigtiff else "NO",
        ENDIANNESS=a.endian.upper(),
    )
    if a.compress != "none":
        profile["compress"] = a.compress
        profile["predictor"] = a.predictor
    if a.layout == "tiled":
        profile.update(tiled=True, blockxsize=a.block, blockysize=a.block)
    else:
        profile.update(tiled=False, blockysize=a.block)
    if a.nodata is not None:
        profile["nodata"] = a.nodata
    if a.nbits is not None:
        profile["nbits"] = a.nbits
    if a.palette:
        profile["photometric"] = "palette"

    rng = np.random.default_rng(a.seed)
    rows = 256
    with rasterio.open(a.output, "w", **profile) as dst:
        if a.palette:
            dst.write_colormap(1, {i: (i, 255 - i, (7 * i) % 256, 255) for i in range(256)})
        for y0 in range(0, height, rows):
            n = min(rows, height - y0)
            ys, xs = np.meshgrid(np.arange(y0, y0 + n, dtype=np.int64), np.arange(width, dtype=np.int64),
                                 indexing="ij")
            block = np.empty((a.bands, n, width), dtype=a.dtype)
            for b in range(a.bands):
                if a.pattern == "formula":
                    v = formula(b, ys, xs, a.dtype)
                elif a.pattern == "parcels":
                    v = parcels(b, ys, xs)
                else:
                    v = fields(b, ys, xs, a.dtype, rng)
                if a.nbits is not None and a.dtype not in ("float32", "float64", "complex64"):
                    v = v % (1 << a.nbits)
                block[b] = v
            if a.nodata is not None:
                holes = (xs < 2) | (hash_xy(xs, ys) % 13 == 0)
                block[:, holes] = a.nodata
            dst.write(block, window=rasterio.windows.Window(0, y0, width, n))


if __name__ == "__main__":
    main()
