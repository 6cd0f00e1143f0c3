#!/usr/bin/env python3
"""ring_accelerate.py - Hugging Face Accelerate offloading a model larger than
its GPU budget: the usual way (device_map="auto", max_memory={0: budget,
"cpu": rest}), timed on the prompt ring_bench.sh gives djinn.

usage: bench/ring_accelerate.py MODEL_DIR --budgets BYTES... [--prompt-len 512]
                                [--new 8] [--runs 2] [--out FILE.json]

For each budget: load the model in float16 with that device map, then
model.generate (greedy, min_new_tokens = new, so EOS never ends a run early)
timed per token as hf_speed.py does: TTFT = call to first token (prefill and
one sample), decode ms/token = (total - TTFT) / (new - 1); medians over --runs
after one short warm-up.  Records where the layers went (GPU or CPU) and the
GPU memory peak.  A budget whose load or run fails is recorded, not fatal.
"""
import argparse
import gc
import os
import sys
import traceback

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


class TokenClock:
    """A generate() streamer noting when each token reaches the host."""

    def __init__(self):
        self.times = []

    def put(self, value):
        torch.cuda.synchronize()
        self.times.append(bc.now())

    def end(self):
        pass


def load_offloaded(model_dir, budget):
    import transformers
    from transformers import AutoModelForCausalLM

    host = max(int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.85), 1 << 30)
    kw = {"device_map": "auto", "max_memory": {0: int(budget), "cpu": host}}
    if bc._version_tuple(transformers.__version__) >= (4, 56):
        kw["dtype"] = torch.float16
    else:
        kw["torch_dtype"] = torch.float16
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    model.eval()
    return model


def placement(model):
    """How many modules the device map put where, and the bytes on the GPU."""
    where = {}
    for _, dev in (getattr(model, "hf_device_map", None) or {}).items():
        key = str(dev)
        where[key] = where.get(key, 0) + 1
    gpu_bytes = 0
    for p in model.parameters():
        if p.device.type == "cuda":
            gpu_bytes += p.numel() * p.element_size()
    return where, gpu_bytes


def time_generate(model, x, new, runs):
    pad = model.config.eos_token_id if model.config.eos_token_id is not None else 0
    kw = dict(attention_mask=torch.ones_like(x), do_sample=False, temperature=None, top_p=None,
              top_k=None, pad_token_id=pad)
    # warm-up: two tokens (allocator, kernels, accelerate's hooks)
    model.generate(x, max_new_tokens=2, min_new_tokens=2, **kw)
    ttft, decode = [], []
    for _ in range(runs):
        clock = TokenClock()
        torch.cuda.synchronize()
        t0 = bc.now()
        out = model.generate(x, streamer=clock, max_new_tokens=new, min_new_tokens=new, **kw)
        torch.cuda.synchronize()
        t1 = bc.now()
        n_gen = out.shape[1] - x.shape[1]
        first = clock.times[1] if len(clock.times) > 1 else t1
        ttft.append((first - t0) * 1e3)
        decode.append((t1 - first) * 1e3 / max(n_gen - 1, 1))
    return {"ttft_ms": bc.median(ttft), "decode_ms_per_token": bc.median(decode),
            "n_generated": new, "runs": {"ttft_ms": ttft, "decode_ms_per_token": decode}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--budgets", type=int, nargs="+", required=True, help="bytes")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args()

    import accelerate
    res = {"device": bc.device_info(), "accelerate": accelerate.__version__,
           "model_dir": os.path.abspath(a.model_dir), "prompt_len": a.prompt_len,
           "new": a.new, "dtype": "float16", "method":
           'from_pretrained(device_map="auto", max_memory={0: budget, "cpu": 85% of RAM}); '
           "model.generate greedy", "budgets": []}
    for budget in a.budgets:
        entry = {"budget_bytes": budget}
        model = None
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            t0 = bc.now()
            model = load_offloaded(a.model_dir, budget)
            entry["load_s"] = bc.now() - t0
            entry["placement"], entry["gpu_param_bytes"] = placement(model)
            ids, _ = bc.seeded_prompt(a.model_dir, model.config, a.prompt_len, a.seed)
            x = torch.tensor([ids], device="cuda")
            with torch.inference_mode():
                entry.update(time_generate(model, x, a.new, a.runs))
            entry["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
        except Exception as e:  # recorded, the next budget still runs
            traceback.print_exc()
            entry["error"] = f"{type(e).__name__}: {e}"
        finally:
            del model
            gc.collect()
            torch.cuda.empty_cache()
        print(f"ring_accelerate: budget {budget / 2**30:.2f} GiB: "
              f"decode {entry.get('decode_ms_per_token')} ms/token, "
              f"TTFT {entry.get('ttft_ms')} ms", file=sys.stderr)
        res["budgets"].append(entry)
    print(bc.write_json(res, a.out))


if __name__ == "__main__":
    main()
