#!/usr/bin/env python3
"""hf_reference.py - transformers' answer for a model directory, to check djinn against.

usage: bench/hf_reference.py MODEL_DIR [--prompt-len 64] [--steps 32] [--seed 0]
                             [--dtype float16] --out FILE.json

Loads MODEL_DIR with transformers on cuda (float16 by default), runs a fixed
seeded prompt (bench_common.seeded_prompt: printable ASCII that a `djinn
mkmodel` tokenizer turns into one token per character, so `djinn generate -p
TEXT` sees the same ids), and writes:

  prompt_ids, prompt_text   the prompt (text null when not byte-level)
  logits                    float32 logits of the last prompt position
  tokens                    `steps` greedy tokens (argmax, no EOS stop)
  margins                   top-1 minus top-2 logit at each step: a djinn
                            token that differs where the margin is below the
                            logit tolerance is a tie, not a bug
  text_bytes_hex            what `djinn generate` would print for the tokens
  generate_tokens           model.generate(do_sample=False) for the same
                            prompt, as a cross-check of the manual loop
  f32                       the same again with the model cast to float32
                            (the weights are exact in it): tokens, margins,
                            rel_err_vs_f16 -- how far transformers' own f16
                            logits are from exact, the yardstick for djinn's

The comparison the CUDA issue asks for: relative logit error
max|l_djinn - l_hf| / max|l_hf| <= 2e-2, and the same greedy tokens.
"""
import argparse
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def greedy(model, x, steps):
    """Logits of the last prompt position (float32, on the host), then
    `steps` greedy tokens through the model's own KV cache, and the top-1
    minus top-2 logit at each."""
    tokens, margins = [], []
    out = model(input_ids=x, use_cache=True)
    logits = out.logits[0, -1].float()
    prompt_logits = logits.cpu()
    past = out.past_key_values
    for step in range(steps):
        top = torch.topk(logits, 2)
        tok = int(top.indices[0])
        tokens.append(tok)
        margins.append(float(top.values[0] - top.values[1]))
        if step + 1 == steps:
            break
        out = model(input_ids=torch.tensor([[tok]], device=x.device),
                    past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    return prompt_logits, tokens, margins


def summary(model_dir, special, logits, tokens, margins):
    # djinn stops at EOS and at BOS: its text covers the tokens before that
    first_stop = next((i for i, t in enumerate(tokens) if t in special), None)
    text_bytes = bc.djinn_text(model_dir, tokens[:first_stop] if first_stop is not None else tokens)
    return {
        "tokens": tokens,
        "margins": margins,
        "min_margin": min(margins) if margins else None,
        "first_special_step": first_stop,
        "text_bytes_hex": text_bytes.hex() if text_bytes is not None else None,
        "logits_stats": {
            "finite": bool(torch.isfinite(logits).all()),
            "max_abs": float(logits.abs().max()),
            "std": float(logits.std()),
            "top5": torch.topk(logits, 5).indices.tolist(),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--no-f32", action="store_true",
                    help="skip the second, float32 pass over the same weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--logits-npy", help="also save the last prompt position's f16-model logits "
                    "(float32) here, for a full-vocabulary comparison with djinn")
    a = ap.parse_args()

    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    model = bc.load_model(a.model_dir, dtype)
    cfg = model.config
    ids, text = bc.seeded_prompt(a.model_dir, cfg, a.prompt_len, a.seed)
    x = torch.tensor([ids], device="cuda")

    with torch.inference_mode():
        prompt_logits, tokens, margins = greedy(model, x, a.steps)
        gen_tokens, gen_error = None, None
        try:
            g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                               max_new_tokens=a.steps, min_new_tokens=a.steps,
                               temperature=None, top_p=None, top_k=None,
                               pad_token_id=cfg.eos_token_id if cfg.eos_token_id is not None else 0)
            gen_tokens = g[0, x.shape[1]:].tolist()
        except Exception as e:  # the manual loop is the reference; this is a cross-check
            gen_error = f"{type(e).__name__}: {e}"

    if a.logits_npy:
        import numpy as np
        np.save(a.logits_npy, prompt_logits.numpy().astype(np.float32))
    special = [t for t in (cfg.bos_token_id, cfg.eos_token_id) if t is not None]
    res = {
        "model": os.path.basename(os.path.normpath(a.model_dir)),  # no machine paths in results
        "model_type": cfg.model_type,
        "dtype": a.dtype,
        "device": bc.device_info(),
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "seed": a.seed,
        "prompt_len": a.prompt_len,
        "prompt_ids": ids,
        "prompt_text": text,
        "steps": a.steps,
    }
    res.update(summary(a.model_dir, special, prompt_logits, tokens, margins))
    res["generate_tokens"] = gen_tokens
    res["generate_agrees"] = gen_tokens == tokens if gen_tokens is not None else None
    res["generate_error"] = gen_error

    if a.dtype != "float32" and not a.no_f32:
        # The same weights (exact in f32) computed in f32: what an engine with
        # f32 activations, as djinn's, should match far more closely than
        # transformers' own f16 run, whose logits come out of an f16 head and
        # tie exactly now and then.
        torch.backends.cuda.matmul.allow_tf32 = False
        model.float()
        with torch.inference_mode():
            l32, t32, m32 = greedy(model, x, a.steps)
        f32 = summary(a.model_dir, special, l32, t32, m32)
        f32["rel_err_vs_f16"] = float((prompt_logits - l32).abs().max() / l32.abs().max())
        f32["tokens_agree_with_f16"] = t32 == tokens
        f32["logits"] = l32.tolist()
        res["f32"] = f32
    res["logits"] = prompt_logits.tolist()
    bc.write_json(res, a.out)
    print(f"{a.out}: {len(tokens)} greedy tokens, first {tokens[:8]}, min margin "
          f"{res['min_margin']:.4g}, logits std {res['logits_stats']['std']:.3g}, "
          f"generate agrees: {res['generate_agrees']}", file=sys.stderr)
    if "f32" in res:
        f = res["f32"]
        print(f"  float32 pass: f16 logits rel err {f['rel_err_vs_f16']:.3g}, greedy tokens agree "
              f"with f16: {f['tokens_agree_with_f16']}, min margin {f['min_margin']:.4g}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
