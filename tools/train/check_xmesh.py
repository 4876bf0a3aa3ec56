"""Checks the exported model against ExpertMesh: `xmesh tokenize` gives the Python tokenizer's ids
and decodes them back to the text; `xmesh generate` logits agree with the PyTorch forward (f32
from the bf16 weights) and with the repository's NumPy reference (tests/reference, float64);
greedy generations agree token by token."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Text that exercises the pre-tokenizer's corners: contractions, digits, runs of spaces and
# tabs before words, CRLF, non-ASCII letters and numbers, NBSP, emoji, the special token.
TRICKY = ("It's 2024; they'll say \"don't\" -- or won't?  Tabs\tand  double  spaces,\r\n"
          "café naïve Ωmega ½ ٣ x\u00a0y \u2028 end 🙂 <|endoftext|>Next  \n\n  indented\n")


def xmesh_json(xmesh, *args):
    out = subprocess.run([xmesh, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check_tokenizer(xmesh, model_dir, tokenizer, heldout_text):
    tok_json = os.path.join(model_dir, "tokenizer.json")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, text in (("heldout", heldout_text), ("tricky", TRICKY)):
            path = os.path.join(tmp, label + ".txt")
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            ours = xmesh_json(xmesh, "tokenize", "--tokenizer", tok_json, "--file", path)["ids"]
            py = tokenizer.encode(text)
            # argv limits one argument to 128 KiB, so decode checks a prefix of the ids
            head = py[:4000]
            back = xmesh_json(xmesh, "tokenize", "--tokenizer", tok_json,
                              "--decode", ",".join(map(str, head)))["text"]
            result[label] = {"tokens": len(py), "ids_equal": ours == py,
                             "xmesh_decode_roundtrip": back == tokenizer.decode(head)
                             and text.startswith(back),
                             "python_decode_roundtrip": tokenizer.decode(py) == text}
    return result


def greedy(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def check_model(xmesh, model_dir, model, tokenizer, heldout_ids, threads, prompt_text):
    """`model` holds the bf16-rounded weights and runs in f32 here (no autocast)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    from numpy_forward import Model as NumpyModel

    ref = NumpyModel(model_dir)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids = list(heldout_ids[:64])
        npy = os.path.join(tmp, "batch.npy")
        xmesh_json(xmesh, "generate", "--model", model_dir, "--tokens", ",".join(map(str, ids)),
                   "--max-new-tokens", "0", "--threads", str(threads), "--logits-out", npy)
        ours = np.load(npy).astype(np.float64)
        with torch.no_grad():
            pt = model(torch.tensor([ids]))[0][0].double().numpy()
        np_ref = ref.forward(np.array(ids))
        result["prompt_logits"] = {
            "tokens": len(ids),
            "max_abs_diff_torch_f32_vs_numpy": float(np.abs(pt - np_ref).max()),
            "max_abs_diff_xmesh_vs_numpy": float(np.abs(ours - np_ref).max()),
            "max_abs_diff_xmesh_vs_torch_f32": float(np.abs(ours - pt).max()),
            "logit_range": [float(np_ref.min()), float(np_ref.max())]}

        prompt = tokenizer.encode(prompt_text)
        npy = os.path.join(tmp, "gen.npy")
        gen = xmesh_json(xmesh, "generate", "--model", model_dir, "--prompt", prompt_text,
                         "--max-new-tokens", "30", "--temperature", "0", "--ignore-eos",
                         "--threads", str(threads), "--logits-out", npy)
        steps = np.load(npy).astype(np.float64)
        fed = (prompt + gen["tokens"])[:-1]  # one logits row per position fed to the model
        assert steps.shape[0] == len(fed), (steps.shape, len(fed))
        ref_steps = ref.forward(np.array(fed))
        pt_tokens = greedy(model, prompt, 30)
        result["greedy_generation"] = {
            "prompt": prompt_text, "prompt_ids": prompt, "xmesh_ids": gen["tokens"],
            "torch_f32_ids": pt_tokens, "ids_equal": gen["tokens"] == pt_tokens,
            "xmesh_text": gen.get("text"), "torch_text": tokenizer.decode(pt_tokens),
            "max_abs_diff_xmesh_vs_numpy_steps": float(np.abs(steps - ref_steps).max()),
            "decode_tokens_per_s": gen["decode_tokens_per_s"]}
    return result
