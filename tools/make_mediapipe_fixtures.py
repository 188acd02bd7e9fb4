"""Regenerates the MediaPipe parity fixtures in tests/fixtures/mediapipe/ and examples/astronaut.png.

    python3 tools/make_mediapipe_fixtures.py DIR_WITH_TFLITE_FILES

Needs numpy, safetensors, scikit-image (for its bundled astronaut photo, NASA, public domain), pillow and
ai-edge-litert. For each model it writes `<name>.safetensors` holding `input` (1x3xHxW f32 NCHW, the photo resized to
the model's size, values in [0, 1]) and `expected` (1x1xHxW f32, TFLite's probabilities), plus astronaut_mask.png.
"""
import os
import sys

import numpy as np
import skimage.data
from ai_edge_litert.interpreter import Interpreter
from PIL import Image
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from atrous_numpy import resize_bilinear  # noqa: E402
from convert_mediapipe import tflite_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "mediapipe")
MODELS = {"selfie_segmenter": "selfie_segmentation.tflite",
          "selfie_segmenter_landscape": "selfie_segmentation_landscape.tflite"}


def astronaut():
    """The 512x512 RGB photo as 1x3x512x512 float64 in [0, 1]."""
    return (skimage.data.astronaut().astype(np.float64) / 255).transpose(2, 0, 1)[None]


def model_input(h, w):
    """The photo resized to h x w as atrous's preprocess does it: bilinear, half-pixel centres (PyTorch's
    align_corners=False), no antialiasing, computed in float64 then rounded to f32. For 256x256 this is exactly the
    mean of each 2x2 block; the landscape model's 144x256 stretches the square photo (policy "fixed")."""
    return resize_bilinear(astronaut(), (h, w), align_corners=False).astype(np.float32)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(FIXTURES, exist_ok=True)
    # The scikit-image file itself, byte for byte: no re-encoding.
    with open(os.path.join(os.path.dirname(skimage.data.__file__), "astronaut.png"), "rb") as f:
        png = f.read()
    with open(os.path.join(ROOT, "examples", "astronaut.png"), "wb") as f:
        f.write(png)
    for name, tfl in MODELS.items():
        path = os.path.join(src, tfl)
        h, w = (int(v) for v in Interpreter(model_path=path).get_input_details()[0]["shape"][1:3])
        x = model_input(h, w)
        prob = tflite_run(path, x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2).astype(np.float32)
        # One metadata key: safetensors writes the map in hash order, so several keys would change the bytes per run.
        meta = {"about": f"input: astronaut.png bilinear (half-pixel) to {h}x{w}, RGB in [0,1]; "
                         f"expected: ai-edge-litert (XNNPACK) probabilities of {tfl}, NCHW"}
        save_file({"input": np.ascontiguousarray(x), "expected": np.ascontiguousarray(prob)},
                  os.path.join(FIXTURES, f"{name}.safetensors"), metadata=meta)
        print(f"{name}: {h}x{w}, mean probability {prob.mean():.4f}, person pixels {(prob > 0.5).mean():.4f}")
        if name == "selfie_segmenter":
            # The full-size mask: TFLite's 256x256 probabilities resized to 512x512 with the same bilinear,
            # half-pixel-centre rule in float64, then probability > 0.5 -> 255, else 0 (8-bit grey).
            full = resize_bilinear(prob.astype(np.float64), (512, 512), align_corners=False)[0, 0]
            mask = np.where(full > 0.5, 255, 0).astype(np.uint8)
            Image.fromarray(mask, mode="L").save(os.path.join(FIXTURES, "astronaut_mask.png"))
            print(f"astronaut_mask.png: {(mask > 0).mean():.4f} person")


if __name__ == "__main__":
    main()
