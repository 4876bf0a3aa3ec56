#!/usr/bin/env python3
"""The trained model against the NumPy reference: xmesh's logits on TEXT's first tokens to 1e-4,
and `xmesh eval`'s perplexity of TEXT equal to one the reference computes over the same windows
(written here from their definition) to 1e-5 relative.

    check_trained.py XMESH MODEL_DIR TEXT"""
import json
import math
import subprocess
import sys
import tempfile

import numpy as np

from numpy_forward import Model

CONTEXT, STRIDE = 64, 32


def xmesh_json(*args):
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def reference_nll(ref, ids):
    """Sum of -ln p(ids[t] | up to CONTEXT tokens before it) over t >= 1: the first window scores
    targets 1..CONTEXT, each next one STRIDE more, with the CONTEXT tokens before its last target."""
    total, scored, pos = 0.0, 0, 1
    while pos < len(ids):
        end = min(len(ids), CONTEXT + 1 if pos == 1 else pos + STRIDE)
        start = max(0, end - 1 - CONTEXT)
        logits = ref.forward(np.array(ids[start:end - 1]))
        for t in range(pos, end):
            row = logits[t - 1 - start]
            top = row.max()
            total += top + math.log(np.exp(row - top).sum()) - row[ids[t]]
            scored += 1
        pos = end
    return total, scored


def main():
    xmesh, model, text = sys.argv[1:4]
    ref = Model(model)
    config = json.load(open(f"{model}/config.json"))
    ids = [config["bos_token_id"]] + xmesh_json(xmesh, "tokenize", "--tokenizer", f"{model}/tokenizer.json",
                                                "--file", text, "--json")["ids"]
    with tempfile.TemporaryDirectory() as tmp:
        prompt = ids[:96]
        subprocess.run([xmesh, "generate", "--model", model, "--tokens", ",".join(map(str, prompt)),
                        "--max-new-tokens", "0", "--logits-out", f"{tmp}/l.npy"], check=True, stdout=subprocess.DEVNULL)
        diff = float(np.max(np.abs(np.load(f"{tmp}/l.npy") - ref.forward(np.array(prompt)))))
    print(f"logits over {len(prompt)} positions: max |diff| {diff:.3g}")
    if not diff <= 1e-4:
        sys.exit(f"FAIL: logits differ from the reference by {diff}")
    ours = xmesh_json(xmesh, "eval", "--model", model, "--file", text, "--context", str(CONTEXT), "--stride",
                      str(STRIDE), "--json")
    nll, scored = reference_nll(ref, ids)
    rel = abs(ours["nll_nats"] - nll) / nll
    print(f"perplexity over {scored} tokens: xmesh {ours['perplexity']:.4f}, reference {math.exp(nll / scored):.4f}"
          f" (relative NLL difference {rel:.2g}); {ours['bits_per_byte']:.3f} bits per byte")
    if ours["tokens"] != scored or not rel <= 1e-5:
        sys.exit(f"FAIL: xmesh eval {ours['nll_nats']} over {ours['tokens']} tokens, reference {nll} over {scored}")


if __name__ == "__main__":
    main()
