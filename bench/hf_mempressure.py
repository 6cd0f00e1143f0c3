#!/usr/bin/env python3
"""hf_mempressure.py - transformers' generate at rising batch sizes until it
runs out of device memory: the peer of lua/exp/mempressure.lua.

usage: bench/hf_mempressure.py MODEL_DIR [--batches 64,128,256,384,512]
                               [--prompt-len 512] [--new 64] [--out FILE.json]

float16, greedy, on cuda:0, model.generate with its default (dynamic) cache:
what a user of transformers runs.  For each batch size B, B seeded prompts of
the same length (random ids in [3, vocab), seed = row), all B rows at once;
tokens/s = B * new over the wall time (prefill included).  The batches rise
until one fails with torch.cuda.OutOfMemoryError (recorded, then the rest are
skipped); "largest_ok" is the largest batch that completed.  Peak memory:
torch.cuda.max_memory_allocated and max_memory_reserved of each batch (the
weights included).  Prints the JSON; --out also writes it.
"""
import argparse
import os
import sys
import traceback

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def prompts(vocab, batch, n):
    rows = []
    for i in range(batch):
        g = torch.Generator().manual_seed(i)
        rows.append(torch.randint(3, vocab, (n,), generator=g))
    return torch.stack(rows).to("cuda")


def run_batch(model, x, new):
    torch.cuda.synchronize()
    t0 = bc.now()
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new,
                         min_new_tokens=new, do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    wall = bc.now() - t0
    n = (out.shape[1] - x.shape[1]) * x.shape[0]
    return {"wall_s": wall, "tokens": int(n), "tokens_per_s": n / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--batches", default="64,128,256,384,512")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--out")
    a = ap.parse_args()
    res = {"bench": "hf_mempressure", "device": bc.device_info(),
           "model": os.path.basename(os.path.normpath(a.model_dir)),
           "prompt_len": a.prompt_len, "new": a.new, "dtype": "float16",
           "mode": "generate, greedy, dynamic cache", "batches": [], "largest_ok": 0}
    model = bc.load_model(a.model_dir, torch.float16)
    vocab = model.config.vocab_size
    with torch.no_grad():  # warm-up: kernels picked, allocator primed
        run_batch(model, prompts(vocab, 1, a.prompt_len), 2)
    oom = False
    for b in [int(v) for v in a.batches.split(",") if v]:
        entry = {"batch": b}
        if oom:
            entry["error"] = "skipped: a smaller batch ran out of memory"
            res["batches"].append(entry)
            continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            with torch.no_grad():
                entry.update(run_batch(model, prompts(vocab, b, a.prompt_len), a.new))
            res["largest_ok"] = max(res["largest_ok"], b)
        except torch.cuda.OutOfMemoryError as e:
            entry["error"] = f"oom: {e}"[:300]
            oom = True
        except Exception as e:  # recorded, not fatal
            traceback.print_exc()
            entry["error"] = f"{type(e).__name__}: {e}"[:300]
        entry["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        entry["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        res["batches"].append(entry)
        print(f"hf_mempressure: batch {b}: {entry.get('tokens_per_s', entry.get('error'))}",
              file=sys.stderr)
    print(bc.write_json(res, a.out))


if __name__ == "__main__":
    main()
