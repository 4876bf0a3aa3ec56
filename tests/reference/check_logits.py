#!/usr/bin/env python3
"""ctest driver: for one family (and weight type: f32, or the quantized q8, q4, fp8), generates a
tiny model with xmesh, runs xmesh generate
(whole prompt as one batch, then token by token through the KV cache) and compares the logits
with the NumPy reference. Fails when max |difference| > 1e-4."""
import subprocess
import sys
import tempfile

import numpy as np

from numpy_forward import Model

TOLERANCE = 1e-4


def run(*args):
    subprocess.run(args, check=True)


def compare(label, ours, ref):
    diff = float(np.max(np.abs(ours - ref)))
    print(f"{label}: shape {ours.shape}, max |diff| = {diff:.3g}")
    if ours.shape != ref.shape or not diff <= TOLERANCE:
        sys.exit(f"FAIL {label}: max |diff| {diff} > {TOLERANCE} (shapes {ours.shape} vs {ref.shape})")


def main():
    xmesh, family = sys.argv[1], sys.argv[2]
    dtype = sys.argv[3] if len(sys.argv) > 3 else "f32"
    preset = "tiny" if dtype in ("f32", "q8", "q4") else "small"  # fp8 needs 128 x 128 blocks
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = f"{tmp}/model"
        run(xmesh, "gen-model", "--family", family, "--preset", preset, "--seed", "7", "--dtype", dtype,
            "--out", model_dir)
        ref = Model(model_dir)
        prompt = [3, 17, 250, 9, 41, 100, 7, 300, 5, 64, 77, 12]

        run(xmesh, "generate", "--model", model_dir, "--tokens", ",".join(map(str, prompt)),
            "--max-new-tokens", "0", "--logits-out", f"{tmp}/batch.npy")
        compare(f"{family} prompt batch", np.load(f"{tmp}/batch.npy"), ref.forward(np.array(prompt)))

        run(xmesh, "generate", "--model", model_dir, "--tokens", str(prompt[0]), "--max-new-tokens", "12",
            "--ignore-eos", "--logits-out", f"{tmp}/steps.npy", "--json")
        steps = np.load(f"{tmp}/steps.npy")
        fed = [prompt[0]] + [int(t) for t in np.argmax(steps, axis=1)[:-1]]
        compare(f"{family} token by token", steps, ref.forward(np.array(fed)))


if __name__ == "__main__":
    main()
