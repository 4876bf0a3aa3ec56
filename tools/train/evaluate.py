"""Held-out metrics: total NLL of a token sequence, bits per byte, a unigram baseline, and how
the routers spread tokens over experts."""
import math
from contextlib import nullcontext

import numpy as np
import torch


def windows(n, seq_len, stride):
    """(start, first, end) triples over a sequence of n tokens: targets first..end-1 are scored
    once each, predicted from the inputs start..end-2 (at most seq_len of them, so each target
    after the first window sees at least seq_len - stride tokens of context)."""
    out, pos = [], 1
    while pos < n:
        end = min(n, seq_len + 1 if pos == 1 else pos + stride)
        out.append((max(0, end - 1 - seq_len), pos, end))
        pos = end
    return out


@torch.no_grad()
def sequence_nll(model, ids, seq_len, batch, bf16=True, limit=None):
    """Sum of -ln p over ids[1:] (ids[0] is context only), strided windows of half a sequence.
    Returns (nll in nats, tokens scored, routed tokens per expert [L, E])."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    wins = windows(len(ids), seq_len, seq_len // 2)[:limit]
    total, scored = 0.0, 0
    counts = torch.zeros(model.c.num_hidden_layers, model.c.num_experts, dtype=torch.long)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    # Windows shorter than seq_len (only in a sequence shorter than that) go one at a time.
    groups, cur = [], []
    for w in wins:
        if cur and (len(cur) == batch or w[2] - 1 - w[0] != cur[0][2] - 1 - cur[0][0]):
            groups.append(cur)
            cur = []
        cur.append(w)
    groups += [cur] if cur else []
    for g in groups:
        x = torch.stack([ids[s:e - 1] for s, _, e in g])
        with ctx:
            logits, _, n = model(x)
        counts += n
        logp = torch.log_softmax(logits.float(), -1)
        for row, (s, first, e) in enumerate(g):
            tgt = ids[first:e]
            lp = logp[row, first - 1 - s:e - 1 - s].gather(-1, tgt[:, None])
            total -= float(lp.sum())
            scored += len(tgt)
    return total, scored, counts


def summary(nll, tokens, n_bytes):
    return {"tokens": tokens, "nll_nats": nll, "perplexity_per_token": math.exp(nll / tokens),
            "bits_per_token": nll / tokens / math.log(2),
            "bits_per_byte": nll / math.log(2) / n_bytes}


def unigram_nll(train_ids, heldout_ids, vocab_size):
    """Add-one smoothed unigram model fitted on the training tokens."""
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(heldout_ids)].sum())


def expert_usage(counts):
    """Per layer: each expert's share of the routed slots, and how even that is."""
    out = []
    for layer, row in enumerate(counts.tolist()):
        total = sum(row)
        share = [c / total for c in row]
        entropy = -sum(p * math.log(p) for p in share if p > 0)
        out.append({"layer": layer, "share": [round(s, 4) for s in share],
                    "min_share": round(min(share), 4), "max_share": round(max(share), 4),
                    "normalised_entropy": round(entropy / math.log(len(row)), 4)})
    return out
