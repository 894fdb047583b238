"""World generator speed: scene sampling, rendering and captioning per image, and `generate_world` end to end.

Usage: python benchmarks/world.py [--n 2000] [--image-size 64]
Prints milliseconds per image for each step. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tomcap.world import WorldConfig, generate_world, render_scene, scene_captions, scene_stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="scenes to time")
    ap.add_argument("--image-size", type=int, default=64)
    args = ap.parse_args()
    t0 = time.perf_counter()
    scenes = scene_stream(0, "bench", args.n)
    t1 = time.perf_counter()
    for s in scenes:
        render_scene(s, args.image_size)
    t2 = time.perf_counter()
    for s in scenes:
        scene_captions(s)
    t3 = time.perf_counter()
    per = 1000 / args.n
    print(f"sample  {per * (t1 - t0):.3f} ms/scene")
    print(f"render  {per * (t2 - t1):.3f} ms/image ({args.image_size}x{args.image_size})")
    print(f"caption {per * (t3 - t2):.3f} ms/scene (5 captions)")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = WorldConfig(n_train_scenes=args.n, n_test_images=args.n // 4, image_size=args.image_size)
        t4 = time.perf_counter()
        generate_world(Path(tmp) / "world", cfg)
        print(f"generate_world {time.perf_counter() - t4:.2f} s for {cfg.n_train_scenes} train scenes "
              f"+ {cfg.n_test_images} PNG test images")


if __name__ == "__main__":
    main()
