#!/usr/bin/python3
"""Trains a small Qwen3-MoE language model on English documentation shipped by Debian packages
and writes an HF model directory that ExpertMesh runs.

  /usr/bin/python3 tools/train/train.py --out /tmp/train-full --threads 2 --seed 0

Steps: corpus (corpus.py, sources.py) -> byte-level BPE (bpe.py) -> training (model.py; AdamW,
warm-up then cosine decay, Switch load-balancing loss) -> held-out metrics (evaluate.py) ->
export (export.py) -> checks against build/tools/xmesh (check_xmesh.py) -> train_report.json.
Everything random comes from --seed; the same seed and --threads give the same model.
"""
import argparse
import json
import math
import os
import random
import sys
import time

# Waiting OpenMP threads sleep instead of spinning: on cores shared with other work, spinning
# threads made a held-out pass 10-20x slower here. Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import check_xmesh  # noqa: E402
import corpus  # noqa: E402
import evaluate  # noqa: E402
import export  # noqa: E402
from model import Config, MoEModel, round_to_bf16_  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1100,
                   help="optimizer steps (1100: about 12 minutes on 2 shared cores)")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--experts", type=int, default=16)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--expert-width", type=int, default=128, help="moe_intermediate_size")
    p.add_argument("--aux-coef", type=float, default=0.01)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--xmesh", default=os.path.join(check_xmesh.REPO, "build/tools/xmesh"),
                   help="xmesh binary for the checks ('' skips them)")
    p.add_argument("--prompt", default="The system")
    return p.parse_args()


class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8")
        self.t0 = time.time()

    def __call__(self, msg):
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def token_stream(tok, docs):
    """EOT before every document: the model learns where text starts."""
    out = []
    for d in docs:
        out.append(tok.eot)
        out.extend(tok.encode(d))
    return np.array(out, dtype=np.int64)


def batches(stream, seq_len, batch, gen):
    """Endless batches of (seq_len + 1)-token windows: each pass over the data takes the windows
    at a random offset in a random order."""
    while True:
        offset = int(torch.randint(0, seq_len, (1,), generator=gen))
        n = (len(stream) - offset - 1) // seq_len
        starts = offset + torch.randperm(n, generator=gen) * seq_len
        for i in range(0, n - batch + 1, batch):
            idx = starts[i:i + batch, None] + torch.arange(seq_len + 1)[None, :]
            yield torch.from_numpy(stream)[idx]


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model, args):
    decay = [p for n, p in model.named_parameters() if not n.endswith("norm.weight")]
    keep = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": keep, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)


def train(model, stream, args, log, heldout_ids):
    gen = torch.Generator().manual_seed(args.seed + 1)
    opt = make_optimizer(model, args)
    data = batches(stream, args.seq_len, args.batch, gen)
    V = model.c.vocab_size
    t0, tokens, history = time.time(), 0, []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        x = next(data)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, aux, _ = model(x[:, :-1])
        ce = torch.nn.functional.cross_entropy(logits.view(-1, V), x[:, 1:].reshape(-1))
        loss = ce + args.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += x[:, 1:].numel()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            dt = time.time() - t0
            model.eval()
            nll, n, _ = evaluate.sequence_nll(model, heldout_ids, args.seq_len, args.batch,
                                              limit=16)
            model.train()
            row = {"step": step + 1, "lr": lr_at(step, args), "train_ce": float(ce),
                   "aux": float(aux), "heldout_ce_sample": nll / n, "tokens": tokens,
                   "seconds": dt}
            history.append(row)
            log(f"step {step + 1}/{args.steps} ce {float(ce):.3f} aux {float(aux):.3f} "
                f"heldout(sample) {nll / n:.3f} lr {row['lr']:.2e} {tokens / dt:.0f} tok/s")
    return tokens, time.time() - t0, history


def main():
    args = parse_args()
    wall0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train.log"))
    log(f"args {vars(args)}")

    train_docs, heldout_docs, stats = corpus.build()
    heldout_text = "\n\n".join(heldout_docs)
    with open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(heldout_text)
    heldout_bytes = len(heldout_text.encode("utf-8"))
    log(f"corpus: {len(stats['files'])} files, train {stats['train_bytes']} bytes, "
        f"held-out {heldout_bytes} bytes")

    tok = bpe.Tokenizer(bpe.train(bpe.count_words(train_docs), args.vocab, log=None))
    stream = token_stream(tok, train_docs)
    heldout_ids = [tok.eot] + tok.encode(heldout_text)  # EOT: context for the first token
    stats.update({"train_tokens": int(len(stream)), "heldout_tokens": len(heldout_ids) - 1,
                  "train_bytes_per_token": stats["train_bytes"] / len(stream),
                  "vocab_size": tok.vocab_size})
    with open(os.path.join(args.out, "corpus_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log(f"tokenizer: vocab {tok.vocab_size}, train {len(stream)} tokens "
        f"({stats['train_bytes_per_token']:.2f} bytes/token), held-out {len(heldout_ids) - 1}")

    c = Config(vocab_size=tok.vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers,
               num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
               head_dim=args.hidden // args.heads, num_experts=args.experts,
               num_experts_per_tok=args.top_k, moe_intermediate_size=args.expert_width,
               max_position_embeddings=max(1024, args.seq_len),
               router_aux_loss_coef=args.aux_coef)
    model = MoEModel(c)
    model.init_weights(torch.Generator().manual_seed(args.seed))
    params = sum(p.numel() for p in model.parameters())
    per_expert = 3 * c.hidden_size * c.moe_intermediate_size
    active = params - c.num_hidden_layers * (c.num_experts - c.num_experts_per_tok) * per_expert
    log(f"model: {params} parameters ({2 * params} bytes as bf16), {active} active per token")

    model.eval()
    init_nll, n, _ = evaluate.sequence_nll(model, heldout_ids, args.seq_len, args.batch)
    init = evaluate.summary(init_nll, n, heldout_bytes)
    log(f"random init: held-out {init['bits_per_byte']:.3f} bits/byte")
    model.train()

    tokens, train_seconds, history = train(model, stream, args, log, heldout_ids)
    log(f"trained {tokens} tokens in {train_seconds:.0f}s ({tokens / train_seconds:.0f} tok/s)")

    round_to_bf16_(model)  # evaluate exactly the weights that are exported
    model.eval()
    nll, n, counts = evaluate.sequence_nll(model, heldout_ids, args.seq_len, args.batch)
    final = evaluate.summary(nll, n, heldout_bytes)
    # The held-out pass runs its products in bf16; this measures what that costs against f32.
    k = 4
    nll16, n16, _ = evaluate.sequence_nll(model, heldout_ids, args.seq_len, args.batch, limit=k)
    nll32, _, _ = evaluate.sequence_nll(model, heldout_ids, args.seq_len, args.batch,
                                        bf16=False, limit=k)
    uni = evaluate.summary(evaluate.unigram_nll(stream, heldout_ids[1:], tok.vocab_size), n,
                           heldout_bytes)
    usage = evaluate.expert_usage(counts)
    log(f"held-out: {final['bits_per_byte']:.3f} bits/byte, perplexity "
        f"{final['perplexity_per_token']:.1f}/token; unigram {uni['bits_per_byte']:.3f}; "
        f"init {init['bits_per_byte']:.3f}")
    for u in usage:
        log(f"layer {u['layer']} expert shares min {u['min_share']:.3f} max {u['max_share']:.3f}"
            f" entropy {u['normalised_entropy']:.3f}")

    st_bytes = export.export(args.out, model, tok)
    log(f"exported {args.out}: model.safetensors {st_bytes} bytes")

    report = {"seed": args.seed, "threads": args.threads, "args": vars(args),
              "config": c.to_dict(), "parameters": params, "active_parameters": active,
              "safetensors_bytes": st_bytes, "tokens_trained": tokens,
              "train_seconds": train_seconds, "train_tokens_per_s": tokens / train_seconds,
              "epochs": tokens / len(stream),
              "corpus": {"files": [{"package": f["package"], "path": f["path"],
                                    "raw_bytes": f["raw_bytes"], "train_bytes": f["train_bytes"],
                                    "heldout_bytes": f["heldout_bytes"]} for f in stats["files"]],
                         "train_bytes": stats["train_bytes"], "heldout_bytes": heldout_bytes,
                         "train_tokens": stats["train_tokens"],
                         "heldout_rule": stats["heldout_rule"]},
              "heldout": final, "heldout_unigram": uni, "heldout_random_init": init,
              "heldout_eval_note": "products in bf16 (autocast) on the exported bf16 weights; "
                                   "bf16_vs_f32 gives the cost of that on the first windows",
              "bf16_vs_f32": {"tokens": n16, "nll_per_token_bf16": nll16 / n16,
                              "nll_per_token_f32": nll32 / n16},
              "expert_usage_heldout": usage, "history": history}
    if args.xmesh and os.path.exists(args.xmesh):
        report["xmesh_tokenizer"] = check_xmesh.check_tokenizer(args.xmesh, args.out, tok,
                                                                heldout_text)
        report["xmesh_model"] = check_xmesh.check_model(args.xmesh, args.out, model, tok,
                                                        heldout_ids[1:], args.threads,
                                                        args.prompt)
        g = report["xmesh_model"]["greedy_generation"]
        log(f"xmesh tokenizer: {json.dumps(report['xmesh_tokenizer'])}")
        log(f"xmesh logits: {json.dumps(report['xmesh_model']['prompt_logits'])}")
        log(f"xmesh greedy == torch greedy: {g['ids_equal']}; {args.prompt!r} -> "
            f"{g['xmesh_text']!r}")
    report["wall_seconds"] = time.time() - wall0
    with open(os.path.join(args.out, "train_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"wall time {report['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
