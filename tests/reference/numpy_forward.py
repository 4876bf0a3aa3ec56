#!/usr/bin/env python3
"""Independent NumPy forward pass of the supported MoE families, in float64, reading an HF model
directory (config.json + *.safetensors). Written from the reference implementations' maths, sharing
no code with the engine: the engine's logits are checked against it."""
import json
import os
import struct

import numpy as np


def fp8_e4m3(codes):
    """Values of FP8 e4m3 (fn) codes: sign, 4 exponent bits (bias 7), 3 mantissa bits."""
    c = codes.astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    exp, man = (c >> 3) & 0xF, c & 0x7
    value = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7))
    return np.where((c & 0x7F) == 0x7F, np.nan, sign * value)


def dequantize(tensors, shapes):
    """Replaces quantized tensors by their values: q8 (I8 codes, F16 `_scale` per 32 columns),
    q4 (U8, a group of 32 in 16 bytes: byte j = code j low nibble, code j+16 high, each + 8) and
    FP8 e4m3 (`_scale_inv` per 128 x 128 block)."""
    for name in [n for n in tensors if n + "_scale" in tensors or n + "_scale_inv" in tensors]:
        codes = tensors.pop(name)
        if name + "_scale_inv" in tensors:
            s = tensors.pop(name + "_scale_inv")
            full = np.kron(s, np.ones((128, 128)))
            tensors[name] = fp8_e4m3(codes) * full
            continue
        s = np.repeat(tensors.pop(name + "_scale"), 32, axis=1)
        if shapes[name][0] == "I8":
            tensors[name] = codes * s
        else:  # U8 pairs of nibbles
            rows = codes.shape[0]
            groups = codes.astype(np.int64).reshape(rows, -1, 16)
            q = np.concatenate([groups & 0xF, groups >> 4], axis=2).reshape(rows, -1) - 8
            tensors[name] = q * s
    return tensors


def load_safetensors(model_dir):
    tensors, shapes = {}, {}
    for name in sorted(os.listdir(model_dir)):
        if not name.endswith(".safetensors"):
            continue
        raw = open(os.path.join(model_dir, name), "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            buf = raw[base + begin:base + end]
            if info["dtype"] == "F32":
                a = np.frombuffer(buf, "<f4")
            elif info["dtype"] == "F16":
                a = np.frombuffer(buf, "<f2")
            elif info["dtype"] == "BF16":
                a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
            elif info["dtype"] in ("I8", "U8", "F8_E4M3"):
                a = np.frombuffer(buf, {"I8": "i1", "U8": "u1", "F8_E4M3": "u1"}[info["dtype"]])
            else:
                raise ValueError(f"unsupported dtype {info['dtype']}")
            shapes[key] = (info["dtype"], info["shape"])
            a = a.reshape(info["shape"])
            tensors[key] = a if info["dtype"] in ("U8", "F8_E4M3") else a.astype(np.float64)
    return dequantize(tensors, shapes)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rope(x, positions, theta):  # x: [T, heads, head_dim]
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    angles = positions[:, None] * inv_freq[None, :]
    emb = np.concatenate([angles, angles], axis=-1)[:, None, :]
    return x * np.cos(emb) + rotate_half(x) * np.sin(emb)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def silu(x):
    return x / (1.0 + np.exp(-x))


class Model:
    def __init__(self, model_dir):
        self.c = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = load_safetensors(model_dir)
        c = self.c
        self.arch = c["architectures"][0]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 1e6 if self.arch == "MixtralForCausalLM" else 10000.0)

    def ffn(self, x, prefix):
        if self.arch == "MixtralForCausalLM":
            g, u, d = (self.w[prefix + n + ".weight"] for n in ("w1", "w3", "w2"))
        else:
            g, u, d = (self.w[prefix + n + "_proj.weight"] for n in ("gate", "up", "down"))
        return (silu(x @ g.T) * (x @ u.T)) @ d.T

    def is_moe(self, layer):
        c = self.c
        if self.arch in ("MixtralForCausalLM", "OlmoeForCausalLM"):
            return True
        return layer not in c.get("mlp_only_layers", []) and (layer + 1) % c.get("decoder_sparse_step", 1) == 0

    def moe(self, x, layer):
        c, p = self.c, f"model.layers.{layer}."
        mixtral = self.arch == "MixtralForCausalLM"
        moe_prefix = p + ("block_sparse_moe." if mixtral else "mlp.")
        k = c["num_experts_per_tok"]
        renorm = True if mixtral else c.get("norm_topk_prob", False)
        probs = softmax(x @ self.w[moe_prefix + "gate.weight"].T)
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            chosen = np.argsort(-probs[t], kind="stable")[:k]
            weights = probs[t, chosen]
            if renorm:
                weights = weights / weights.sum()
            for e, wt in sorted(zip(chosen, weights)):
                out[t] += wt * self.ffn(x[t:t + 1], f"{moe_prefix}experts.{e}.")[0]
        if self.arch == "Qwen2MoeForCausalLM" and c.get("shared_expert_intermediate_size", 0) > 0:
            gate = 1.0 / (1.0 + np.exp(-(x @ self.w[p + "mlp.shared_expert_gate.weight"].T)))
            out += gate * self.ffn(x, p + "mlp.shared_expert.")
        return out

    def attention(self, x, layer, positions):
        c, p, hd = self.c, f"model.layers.{layer}.self_attn.", self.head_dim
        q, k, v = (x @ self.w[p + n + "_proj.weight"].T for n in "qkv")
        if self.arch == "Qwen2MoeForCausalLM" or c.get("attention_bias", False):
            q, k, v = (a + self.w[p + n + "_proj.bias"] for a, n in zip((q, k, v), "qkv"))
        if self.arch == "OlmoeForCausalLM":  # q/k norm over the whole projection
            q = rms_norm(q, self.w[p + "q_norm.weight"], self.eps)
            k = rms_norm(k, self.w[p + "k_norm.weight"], self.eps)
            if c.get("clip_qkv") is not None:
                q, k, v = (np.clip(a, -c["clip_qkv"], c["clip_qkv"]) for a in (q, k, v))
        T = x.shape[0]
        q = q.reshape(T, self.heads, hd)
        k = k.reshape(T, self.kv_heads, hd)
        v = v.reshape(T, self.kv_heads, hd)
        if self.arch == "Qwen3MoeForCausalLM":  # q/k norm per head
            q = rms_norm(q, self.w[p + "q_norm.weight"], self.eps)
            k = rms_norm(k, self.w[p + "k_norm.weight"], self.eps)
        q, k = rope(q, positions, self.theta), rope(k, positions, self.theta)
        group = self.heads // self.kv_heads
        out = np.zeros((T, self.heads, hd))
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for h in range(self.heads):
            kv = h // group
            scores = q[:, h, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            out[:, h, :] = softmax(scores) @ v[:, kv, :]
        return out.reshape(T, -1) @ self.w[p + "o_proj.weight"].T

    def forward(self, tokens):
        positions = np.arange(len(tokens), dtype=np.float64)
        h = self.w["model.embed_tokens.weight"][tokens]
        for layer in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            h = h + self.attention(rms_norm(h, self.w[p + "input_layernorm.weight"], self.eps), layer, positions)
            x = rms_norm(h, self.w[p + "post_attention_layernorm.weight"], self.eps)
            h = h + (self.moe(x, layer) if self.is_moe(layer) else self.ffn(x, p + "mlp."))
        h = rms_norm(h, self.w["model.norm.weight"], self.eps)
        head = self.w["model.embed_tokens.weight"] if self.c.get("tie_word_embeddings", False) else self.w["lm_head.weight"]
        return h @ head.T
