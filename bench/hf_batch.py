#!/usr/bin/env python3
"""hf_batch.py - transformers' batched decode on a model directory: the peer of
bench/batch_bench.c.

usage: bench/hf_batch.py MODEL_DIR [--batches 1,8,32,64,128] [--prompt-len 128]
                         [--new 64] [--runs 2] [--out FILE.json]

float16, greedy, on cuda:0.  For each batch size B: B seeded prompts of the
same length, a StaticCache of B rows, the prefill eagerly, then new-1 decode
steps, each one torch.compile(mode="reduce-overhead", fullgraph=True) step
(CUDA graphs; the gpt-fast recipe), argmax on the device.  Decode ms a step
and tokens/s = B / step time, medians over --runs after a warm-up run (which
absorbs compilation).  A batch that runs out of device memory is recorded as
"oom", not fatal.  Prints the JSON; --out also writes it.
"""
import argparse
import inspect
import os
import sys
import traceback

import torch
import torch._dynamo

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def static_cache(model, batch, max_len):
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kw = {}
    for name, val in (("config", model.config), ("max_cache_len", max_len),
                      ("max_batch_size", batch), ("batch_size", batch),
                      ("device", model.device), ("dtype", model.dtype)):
        if name in params:
            kw[name] = val
    return StaticCache(**kw)


def prompts(model_dir, config, batch, n):
    rows = []
    for i in range(batch):
        ids, _ = bc.seeded_prompt(model_dir, config, n, seed=i)
        rows.append(ids[:n])
    return torch.tensor(rows, device="cuda")


def time_batch(model, x, new, runs):
    B, P = x.shape
    cache = static_cache(model, B, P + new)
    pos = torch.zeros(1, dtype=torch.long, device="cuda")

    def forward(tok, cache_pos):
        out = model(input_ids=tok, past_key_values=cache, cache_position=cache_pos,
                    position_ids=cache_pos.unsqueeze(0).expand(tok.shape[0], -1),
                    use_cache=True)
        return out.logits[:, -1, :].argmax(-1, keepdim=True)

    step = torch.compile(forward, mode="reduce-overhead", fullgraph=True)
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    decode = []
    for r in range(1 + runs):
        cache.reset()
        tok = forward(x, torch.arange(P, device="cuda"))
        torch.cuda.synchronize()
        t1 = bc.now()
        pos.fill_(P)
        for _ in range(new - 1):
            if mark:
                mark()
            tok = step(tok, pos).clone()
            pos += 1
        torch.cuda.synchronize()
        t2 = bc.now()
        if r >= 1:
            decode.append((t2 - t1) * 1e3 / max(new - 1, 1))
    ms = bc.median(decode)
    return {"decode_ms_per_step": ms, "tokens_per_s": B * 1e3 / ms, "runs": decode}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--batches", default="1,8,32,64,128")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, max(getattr(torch._dynamo.config, knob), 64))
    res = {"bench": "hf_batch_decode", "device": bc.device_info(),
           "model": os.path.basename(os.path.normpath(a.model_dir)),
           "prompt_len": a.prompt_len, "new": a.new, "dtype": "float16",
           "mode": 'StaticCache + torch.compile(mode="reduce-overhead", fullgraph=True)',
           "batches": []}
    model = bc.load_model(a.model_dir, torch.float16)
    for b in [int(v) for v in a.batches.split(",") if v]:
        torch.cuda.reset_peak_memory_stats()
        entry = {"batch": b}
        try:
            with torch.no_grad():
                entry.update(time_batch(model, prompts(a.model_dir, model.config, b,
                                                       a.prompt_len), a.new, a.runs))
        except torch.cuda.OutOfMemoryError as e:
            entry["error"] = f"oom: {e}"[:300]
        except Exception as e:  # recorded, not fatal: the next batch may still run
            traceback.print_exc()
            entry["error"] = f"{type(e).__name__}: {e}"[:300]
        entry["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        res["batches"].append(entry)
        torch._dynamo.reset()
        torch.cuda.empty_cache()
        print(f"hf_batch: batch {b}: {entry.get('tokens_per_s', entry.get('error'))}",
              file=sys.stderr)
    print(bc.write_json(res, a.out))


if __name__ == "__main__":
    main()
