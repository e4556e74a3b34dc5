"""`mosaic synth` of 200 identities x 20 images against JPEG-encoding as many blank images.

The baseline (the floor any generator pays: encode and write every file) is measured in the
same run, so the ratio says how much the drawing itself costs on this machine.

    .venv/bin/python -m benchmarks.bench_synth
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mosaic.synth import WorldConfig, synthesize


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200)
    parser.add_argument("--images-per-id", type=int, default=20)
    args = parser.parse_args(argv)
    config = WorldConfig(n_ids=args.ids, images_per_id=args.images_per_id, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        world = synthesize(Path(tmp) / "world", config)
        t_synth = time.perf_counter() - t0
        n_images = sum(1 for _ in world.rglob("*.jpg"))
        blank = np.full((config.height, config.width, 3), 128, np.uint8)
        out = Path(tmp) / "blank"
        out.mkdir()
        t0 = time.perf_counter()
        for i in range(n_images):
            Image.fromarray(blank).save(out / f"{i:06d}.jpg", format="JPEG", quality=config.jpeg_quality)
        t_blank = time.perf_counter() - t0
        shutil.rmtree(out)
    print(f"{args.ids} ids x {args.images_per_id} images: {n_images} JPEG files ({config.height}x{config.width})")
    print(f"{'step':34s} {'seconds':>8s} {'ms/image':>9s} {'ratio':>7s}")
    print(f"{'JPEG-encode blank images (floor)':34s} {t_blank:8.2f} {1e3 * t_blank / n_images:9.2f} {1.0:6.1f}x")
    print(f"{'mosaic synth':34s} {t_synth:8.2f} {1e3 * t_synth / n_images:9.2f} {t_synth / t_blank:6.1f}x")
    print(f"budget: 60 s -> {'ok' if t_synth <= 60 else 'OVER'}")


if __name__ == "__main__":
    main()
