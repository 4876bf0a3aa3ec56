"""A small Qwen3-MoE (HF `Qwen3MoeForCausalLM` maths) in PyTorch.

Per layer: h += o(attn(rope(qnorm(q)), rope(knorm(k)), v)) on RMSNorm(h); h += MoE(RMSNorm(h)).
Attention: GQA, per-head RMSNorm on q and k before RoPE (rotate-half). MoE router: softmax over
all experts in f32, top-k, renormalised (norm_topk_prob); expert = down(silu(gate x) * up x).
Final RMSNorm, LM head tied to the embedding. The residual stream, norms, softmaxes and RoPE are
f32; the matrix products run in bf16 under autocast when training (the CPU's BLAS is slow in f32).
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Config:
    vocab_size: int = 4096
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    num_experts: int = 16
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 128
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 1024
    norm_topk_prob: bool = True
    router_aux_loss_coef: float = 0.01

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        x = x.float()
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(head_dim, length, theta):
    """cos/sin [length, head_dim], angles as HF computes them (inv_freq repeated for both halves)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        c, (B, T, _) = self.c, x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, c.num_attention_heads, c.head_dim))
        k = self.k_norm(self.k_proj(x).view(B, T, c.num_key_value_heads, c.head_dim))
        v = self.v_proj(x).view(B, T, c.num_key_value_heads, c.head_dim)
        cs, sn = cos[:T, None, :], sin[:T, None, :]
        q = q * cs + rotate_half(q) * sn
        k = k * cs + rotate_half(k) * sn
        group = c.num_attention_heads // c.num_key_value_heads
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() / math.sqrt(c.head_dim) + mask[:T, :T]
        out = torch.matmul(scores.softmax(-1).to(v.dtype), v)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1)).float()


class MoE(nn.Module):
    """Routed experts, stored stacked ([E, out, in]) and exported one tensor per expert."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        E, H, I = c.num_experts, c.hidden_size, c.moe_intermediate_size
        self.gate = nn.Linear(H, E, bias=False)
        self.w_gate = nn.Parameter(torch.empty(E, I, H))
        self.w_up = nn.Parameter(torch.empty(E, I, H))
        self.w_down = nn.Parameter(torch.empty(E, H, I))

    def forward(self, x):
        """x [N, H] -> (out [N, H] f32, Switch aux loss, tokens per expert [E])."""
        c, N = self.c, x.shape[0]
        probs = self.gate(x).float().softmax(-1)
        top_w, top_i = probs.topk(c.num_experts_per_tok, dim=-1)
        if c.norm_topk_prob:
            top_w = top_w / top_w.sum(-1, keepdim=True)
        flat = top_i.reshape(-1)
        counts = torch.bincount(flat, minlength=c.num_experts)
        # Switch/Mixtral balance: E * sum_i f_i * P_i, f_i = share of the N*k routed slots.
        aux = c.num_experts * (counts.float() / flat.numel() * probs.mean(0)).sum()
        order = torch.sort(flat, stable=True).indices
        token = order // c.num_experts_per_tok
        # One cast per stacked weight: autocast would cast every expert's slice separately.
        dtype = torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else x.dtype
        wg, wu, wd = (w.to(dtype) for w in (self.w_gate, self.w_up, self.w_down))
        xs = x[token].to(dtype)
        outs = []
        for e, chunk in enumerate(torch.split(xs, counts.tolist())):
            if chunk.shape[0]:
                h = F.silu(F.linear(chunk, wg[e])) * F.linear(chunk, wu[e])
                outs.append(F.linear(h, wd[e]).float())
        ys = torch.cat(outs) * top_w.reshape(-1)[order][:, None]
        out = torch.zeros(N, x.shape[1], dtype=ys.dtype).index_add_(0, token, ys)
        return out, aux, counts


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MoE(c)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        B, T, H = h.shape
        out, aux, counts = self.mlp(self.post_attention_layernorm(h).reshape(B * T, H))
        return h + out.view(B, T, H), aux, counts


class MoEModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        cos, sin = rope_tables(c.head_dim, c.max_position_embeddings, c.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.full((c.max_position_embeddings,) * 2, float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def init_weights(self, generator):
        """N(0, 0.02) (HF initializer_range); the projections that write into the residual
        stream (o_proj, expert down) scaled by 1/sqrt(2 * layers), as in GPT-2."""
        small = 0.02 / math.sqrt(2 * self.c.num_hidden_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                std = small if name.endswith(("o_proj.weight", "w_down")) else 0.02
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, ids):
        """ids [B, T] -> (logits [B, T, V] f32, mean aux loss, tokens per expert [L, E])."""
        h = self.embed_tokens(ids)
        aux, counts = [], []
        for layer in self.layers:
            h, a, n = layer(h, self.cos, self.sin, self.mask)
            aux.append(a)
            counts.append(n)
        logits = F.linear(self.norm(h), self.embed_tokens.weight).float()
        return logits, torch.stack(aux).mean(), torch.stack(counts)


def round_to_bf16_(model):
    """Rounds every parameter to bf16 in place: the model then is exactly what is exported."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
