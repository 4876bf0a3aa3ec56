"""Writes the trained model as an HF Qwen3-MoE directory: config.json, model.safetensors (bf16)
and the tokenizer files. The safetensors file is written by hand (the package is not installed):
8-byte little-endian header length, JSON header, then the raw little-endian tensor bytes."""
import json
import os
import struct

import torch


def hf_tensors(model):
    """HF Qwen3-MoE names -> tensors; the stacked expert weights become one tensor per expert.
    No lm_head.weight: the head is tied to the embedding (tie_word_embeddings)."""
    out = {}
    for name, p in model.named_parameters():
        p = p.detach()
        if name.startswith("layers."):
            prefix, _, rest = name.partition(".mlp.")
            if rest in ("w_gate", "w_up", "w_down"):
                kind = {"w_gate": "gate_proj", "w_up": "up_proj", "w_down": "down_proj"}[rest]
                for e in range(p.shape[0]):
                    out[f"model.{prefix}.mlp.experts.{e}.{kind}.weight"] = p[e]
                continue
        out["model." + name] = p
    return out


def write_safetensors(path, tensors, metadata=None):
    """bf16 safetensors; tensors sorted by name, header padded with spaces to 8 bytes."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].to(torch.bfloat16).contiguous()
        raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    return os.path.getsize(path)


def hf_config(c, eot_id):
    """config.json: every key ExpertMesh's loader reads for qwen3_moe, plus the usual HF ones."""
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "num_experts": c.num_experts,
        "num_experts_per_tok": c.num_experts_per_tok,
        "moe_intermediate_size": c.moe_intermediate_size,
        # Dense MLP width: unused, every layer is MoE (decoder_sparse_step 1, no mlp_only_layers).
        "intermediate_size": c.moe_intermediate_size * c.num_experts_per_tok,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": c.norm_topk_prob,
        "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": c.max_position_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": c.num_hidden_layers,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "router_aux_loss_coef": c.router_aux_loss_coef,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }


def export(out_dir, model, tokenizer):
    """Writes the model directory; returns the safetensors size in bytes."""
    os.makedirs(out_dir, exist_ok=True)
    c = model.c

    def dump(name, obj):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")

    dump("config.json", hf_config(c, tokenizer.eot))
    dump("tokenizer.json", tokenizer.to_json())
    dump("tokenizer_config.json", tokenizer.config_json(c.max_position_embeddings))
    return write_safetensors(os.path.join(out_dir, "model.safetensors"), hf_tensors(model),
                             {"format": "pt"})
