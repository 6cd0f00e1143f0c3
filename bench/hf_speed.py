#!/usr/bin/env python3
"""hf_speed.py - transformers' decode speed on a model directory, and the HBM roofline.

usage: bench/hf_speed.py MODEL_DIR [--prompt-len 512] [--new 128] [--runs 3]
                         [--skip-compiled] [--out FILE.json]

Batch 1, float16, greedy, on cuda:0.  Measures, in one process:

  bandwidth   device-to-device copy (bytes read + written) / time
  roofline    weight bytes / bandwidth: the least time a decode step can take
  eager       model.generate with the default dynamic cache
  compiled    model.generate(cache_implementation="static"): transformers then
              runs the decode steps through torch.compile(mode="reduce-overhead"),
              i.e. CUDA graphs
  compiled_loop  a hand-written decode loop over a StaticCache, one
              torch.compile(mode="reduce-overhead", fullgraph=True) step per
              token, argmax on the device: the gpt-fast recipe, usually the
              fastest PyTorch path

For each: TTFT = time from the call to the first generated token (prefill and
one sample), decode ms/token = (total - TTFT) / (new - 1), medians over --runs
after warm-up runs (which also absorb compilation).  EOS never stops a run
(min_new_tokens = new).  Prints the JSON; --out also writes it.
"""
import argparse
import inspect
import os
import sys
import traceback

import torch
import torch._dynamo

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


class TokenClock:
    """A generate() streamer that notes when each token is known on the host.
    generate hands it the prompt first, then every new token (after .cpu(),
    which waits for the GPU)."""

    def __init__(self):
        self.times = []

    def put(self, value):
        torch.cuda.synchronize()
        self.times.append(bc.now())

    def end(self):
        pass


def time_generate(model, x, new, runs, warmup, **gen_kw):
    pad = model.config.eos_token_id if model.config.eos_token_id is not None else 0
    kw = dict(attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=new,
              min_new_tokens=new, temperature=None, top_p=None, top_k=None,
              pad_token_id=pad, **gen_kw)
    ttft, decode, total, n_gen = [], [], [], None
    for r in range(warmup + runs):
        clock = TokenClock()
        torch.cuda.synchronize()
        t0 = bc.now()
        out = model.generate(x, streamer=clock, **kw)
        torch.cuda.synchronize()
        t1 = bc.now()
        n_gen = out.shape[1] - x.shape[1]
        if r < warmup:
            continue
        # clock.times[0] is the prompt, [1] the first new token
        first = clock.times[1] if len(clock.times) > 1 else t1
        ttft.append((first - t0) * 1e3)
        total.append((t1 - t0) * 1e3)
        decode.append((t1 - first) * 1e3 / max(n_gen - 1, 1))
    return {
        "ttft_ms": bc.median(ttft),
        "decode_ms_per_token": bc.median(decode),
        "total_ms": bc.median(total),
        "n_generated": n_gen,
        "runs": {"ttft_ms": ttft, "decode_ms_per_token": decode, "total_ms": total},
    }


def make_static_cache(model, max_len):
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kw = {}
    for name, val in (("config", model.config), ("max_cache_len", max_len),
                      ("max_batch_size", 1), ("batch_size", 1),
                      ("device", model.device), ("dtype", model.dtype)):
        if name in params:
            kw[name] = val
    return StaticCache(**kw)


def time_compiled_loop(model, x, new, runs, warmup):
    """Prefill eagerly into a StaticCache, then new-1 compiled decode steps.
    Tokens stay on the device; the host only waits at the end."""
    P = x.shape[1]
    cache = make_static_cache(model, P + new)
    pos = torch.zeros(1, dtype=torch.long, device="cuda")

    def forward(tok, cache_pos):
        out = model(input_ids=tok, past_key_values=cache, cache_position=cache_pos,
                    position_ids=cache_pos.unsqueeze(0), use_cache=True)
        return out.logits[:, -1, :].argmax(-1, keepdim=True)

    step = torch.compile(forward, mode="reduce-overhead", fullgraph=True)
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    ttft, decode, total, toks = [], [], [], None
    for r in range(warmup + runs):
        cache.reset()
        torch.cuda.synchronize()
        t0 = bc.now()
        tok = forward(x, torch.arange(P, device="cuda"))
        torch.cuda.synchronize()
        t1 = bc.now()
        pos.fill_(P)
        toks = [tok]
        for _ in range(new - 1):
            if mark:
                mark()
            tok = step(tok, pos).clone()  # graph outputs are overwritten by the next replay
            toks.append(tok)
            pos += 1
        torch.cuda.synchronize()
        t2 = bc.now()
        if r < warmup:
            continue
        ttft.append((t1 - t0) * 1e3)
        total.append((t2 - t0) * 1e3)
        decode.append((t2 - t1) * 1e3 / max(new - 1, 1))
    return {
        "ttft_ms": bc.median(ttft),
        "decode_ms_per_token": bc.median(decode),
        "total_ms": bc.median(total),
        "n_generated": len(toks),
        "tokens": torch.cat(toks, 1)[0].tolist(),
        "runs": {"ttft_ms": ttft, "decode_ms_per_token": decode, "total_ms": total},
    }


def guarded(name, fn):
    """Run one measurement; a failure is recorded, not fatal."""
    try:
        t0 = bc.now()
        res = fn()
        res["wall_s"] = bc.now() - t0
        return res
    except Exception as e:
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        torch.cuda.synchronize()
        print(f"hf_speed: {name} done", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile-warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-compiled", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()

    # compiled generate and the compiled loop each trace the model: leave
    # room, or dynamo falls back to eager without saying so in the numbers
    for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, max(getattr(torch._dynamo.config, knob), 64))
    res = {"device": bc.device_info(), "model": os.path.basename(os.path.normpath(a.model_dir)),
           "prompt_len": a.prompt_len, "new": a.new, "dtype": "float16", "batch": 1}
    # bandwidth first, while the GPU holds nothing else
    res["bandwidth"] = bw = bc.measure_bandwidth()
    torch.cuda.reset_peak_memory_stats()
    model = bc.load_model(a.model_dir, torch.float16)
    res["model_type"] = model.config.model_type
    res["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    wb, n_params = bc.weight_bytes(model)
    res["weight_bytes"] = wb
    res["n_params"] = n_params
    res["roofline_ms_per_token"] = wb / bw["bytes_per_s"] * 1e3
    ids, text = bc.seeded_prompt(a.model_dir, model.config, a.prompt_len, a.seed)
    res["prompt_text"] = text
    x = torch.tensor([ids], device="cuda")

    with torch.inference_mode():
        res["eager"] = guarded("eager", lambda: time_generate(
            model, x, a.new, a.runs, a.warmup))
    if not a.skip_compiled:
        # torch.compile does not trace under inference_mode tensors created
        # outside it; no_grad is enough
        with torch.no_grad():
            res["compiled"] = guarded("compiled", lambda: time_generate(
                model, x, a.new, a.runs, a.compile_warmup, cache_implementation="static"))
            res["compiled"]["mode"] = 'generate(cache_implementation="static"), auto torch.compile'
            res["compiled_loop"] = guarded("compiled_loop", lambda: time_compiled_loop(
                model, x, a.new, a.runs, a.compile_warmup))
            res["compiled_loop"]["mode"] = 'StaticCache + torch.compile(mode="reduce-overhead", fullgraph=True)'
    roof = res["roofline_ms_per_token"]
    for k in ("eager", "compiled", "compiled_loop"):
        d = res.get(k, {}).get("decode_ms_per_token")
        if d:
            res[k]["pct_of_roofline"] = 100.0 * roof / d
    res["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(bc.write_json(res, a.out))


if __name__ == "__main__":
    main()
