#!/usr/bin/env python3
"""multimodel_torch.py - the PyTorch baselines of issue 12's switching experiment.

usage: bench/multimodel_torch.py DJINN_RESULT.json --mode pinned|pageable|cold
                                 --out FILE.json [--budget-gib G] [--h2d-gbps X]

Replays the trace that lua/exp/multimodel.lua wrote into DJINN_RESULT.json
(the same models, the same order of requests, the same prompt token ids, the
same number of greedy tokens) with transformers on cuda:0, in float16:

  pinned    every model's weights loaded once into pinned host memory; a
            switch is model.to("cuda") (copies from the pinned tensors), and
            leaving the GPU points the parameters back at the pinned host
            tensors (load_state_dict(assign=True): no copy)
  pageable  the same with ordinary (pageable) host tensors
  cold      a switch is from_pretrained(MODEL_DIR) onto the GPU: the
            safetensors read again (from the page cache when it holds them)

The GPU holds whole models only: at most --budget-gib GiB of weights, the
least recently used model leaving first; 0 (the default) keeps one model at a
time.  A request is its switch (when its model is not on the GPU: a "miss";
else a "hit") + the prompt + the greedy tokens through the model's KV cache,
synchronised.  The result has the fields of djinn's (schema
djinn.multimodel/1, system "torch-MODE"), rewritten after every request, so
a run cut short by a timeout still says what it did: requests never run
count as failed.  tokens_equal compares each request's tokens with
djinn's tokens for the same model run alone (f16 GEMMs in a different order
may break near-ties of a random model's logits: informational).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

SCHEMA = "djinn.multimodel/1"


def load_cpu(model_dir, dtype=torch.float16):
    """The model on the host in dtype, eval mode (transformers 4.4x or 5.x)."""
    import transformers
    from transformers import AutoModelForCausalLM

    kw = {}
    if bc._version_tuple(transformers.__version__) >= (4, 56):
        kw["dtype"] = dtype
    else:
        kw["torch_dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    model.eval()
    got = next(model.parameters()).dtype
    if got != dtype:
        raise SystemExit(f"{model_dir}: loaded as {got}, wanted {dtype}")
    return model


class HostModel:
    """A model whose weights live on the host (pinned or pageable) and visit
    the GPU: .to("cuda") to come, load_state_dict(assign=True) of the host
    tensors to go."""

    def __init__(self, path, pinned):
        self.path = path
        self.model = load_cpu(path)
        sd = self.model.state_dict()
        if pinned:
            same = {}  # a tied tensor is pinned once
            for k, v in sd.items():
                key = (v.data_ptr(), v.numel())
                if key not in same:
                    same[key] = v.pin_memory()
                sd[k] = same[key]
            self.model.load_state_dict(sd, assign=True)
        self.host = sd
        self.bytes = bc.weight_bytes(self.model)[0]
        self.on_gpu = False

    def to_gpu(self):
        self.model.to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        self.on_gpu = True

    def leave_gpu(self):
        self.model.load_state_dict(self.host, assign=True)
        self.on_gpu = False


class ColdModel:
    """A model read from its directory at every switch."""

    def __init__(self, path):
        self.path = path
        self.model = None
        self.bytes = None
        self.on_gpu = False

    def to_gpu(self):
        self.model = bc.load_model(self.path)
        torch.cuda.synchronize()
        self.bytes = bc.weight_bytes(self.model)[0]
        self.on_gpu = True

    def leave_gpu(self):
        self.model = None
        self.on_gpu = False
        gc.collect()
        torch.cuda.empty_cache()


@torch.inference_mode()
def greedy(model, ids, n):
    """n greedy tokens after the prompt ids, through the model's KV cache."""
    x = torch.tensor([ids], device="cuda")
    out = model(input_ids=x, use_cache=True)
    tokens = []
    for step in range(n):
        tok = int(torch.argmax(out.logits[0, -1]))
        tokens.append(tok)
        if step + 1 == n:
            break
        out = model(input_ids=torch.tensor([[tok]], device="cuda"),
                    past_key_values=out.past_key_values, use_cache=True)
    torch.cuda.synchronize()
    return tokens


def pct(xs, p):
    """numpy's default percentile (linear), as lua/lib/stats.lua computes it."""
    s = sorted(xs)
    if not s:
        return None
    r = p / 100 * (len(s) - 1)
    lo = int(r)
    if lo + 1 >= len(s):
        return s[-1]
    return s[lo] + (r - lo) * (s[lo + 1] - s[lo])


def summary_of(xs):
    if not xs:
        return None
    return {"n": len(xs), "mean": statistics.mean(xs),
            "stdev": statistics.stdev(xs) if len(xs) > 1 else None,
            "min": min(xs), "max": max(xs),
            "p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99)}


def cdf(xs):
    s, out = sorted(xs), []
    for i, x in enumerate(s):
        if i + 1 == len(s) or s[i + 1] != x:
            out.append([x, (i + 1) / len(s)])
    return out


def summarize(rows, n_requests, h2d_gbps):
    ok = [r for r in rows if r["ok"]]
    total = [r["total_ms"] for r in ok]
    copied = [r for r in ok if r["switch_bytes"] > 0]
    cb = sum(r["switch_bytes"] for r in copied)
    cm = sum(r["switch_ms"] for r in copied)
    miss_gbps = cb / (cm * 1e6) if cm > 0 else None
    kinds = {k: sum(1 for r in rows if r["kind"] == k) for k in ("hit", "partial", "miss")}
    n_equal = sum(1 for r in rows if r.get("tokens_equal"))
    return {
        "completed": len(ok), "failed": n_requests - len(ok), "not_run": n_requests - len(rows),
        "tokens_identical": n_equal, "tokens_identical_all": n_equal == n_requests,
        "total_ms": summary_of(total),
        "p50_ms": pct(total, 50), "p99_ms": pct(total, 99),
        "mean_ms": statistics.mean(total) if total else None,
        "switch_ms": summary_of([r["switch_ms"] for r in ok]),
        "switch_ms_copied": summary_of([r["switch_ms"] for r in copied]),
        "run_ms": summary_of([r["run_ms"] for r in ok]),
        "hit": kinds["hit"], "partial": kinds["partial"], "miss": kinds["miss"],
        "copied_bytes": cb, "miss_gbps": miss_gbps,
        "miss_gbps_p50": pct([r["switch_gbps"] for r in copied], 50),
        "h2d_gbps": h2d_gbps,
        "miss_bw_frac": miss_gbps / h2d_gbps if (miss_gbps and h2d_gbps) else None,
        "cdf_ms": cdf(total),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("djinn_result", help="the JSON lua/exp/multimodel.lua wrote")
    ap.add_argument("--mode", required=True, choices=("pinned", "pageable", "cold"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-gib", type=float, default=0.0,
                    help="GiB of whole models the GPU may hold (0: one model at a time)")
    ap.add_argument("--h2d-gbps", type=float, default=None)
    a = ap.parse_args()

    try:
        with open(a.djinn_result) as f:
            dj = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"multimodel_torch: {a.djinn_result}: {e}")
    if dj.get("schema") != SCHEMA or not isinstance(dj.get("trace"), list) or not dj["trace"]:
        raise SystemExit(f"multimodel_torch: {a.djinn_result}: not a {SCHEMA} result with a trace")
    if a.budget_gib < 0:
        raise SystemExit("multimodel_torch: --budget-gib must be >= 0")
    if not torch.cuda.is_available():
        raise SystemExit("multimodel_torch: no CUDA device")
    paths = dj["config"]["models"]
    n = int(dj["config"]["n"])
    trace = dj["trace"]
    ref = {(e["model"], e["prompt"]): e["tokens"] for e in dj.get("reference", [])}
    budget = int(a.budget_gib * 2**30)

    # CUDA context, cuBLAS and the allocator up before anything is timed
    w = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    (w @ w).sum().item()
    del w

    t0 = time.perf_counter()
    models = []
    for p in paths:
        t1 = time.perf_counter()
        m = ColdModel(p) if a.mode == "cold" else HostModel(p, a.mode == "pinned")
        models.append(m)
        print(f"multimodel_torch: {a.mode}: {p} ready in {time.perf_counter() - t1:.1f} s",
              file=sys.stderr)
    setup_s = time.perf_counter() - t0

    result = {
        "schema": SCHEMA, "system": f"torch-{a.mode}",
        "config": {"models": paths, "budget_gib": a.budget_gib, "requests": len(trace), "n": n,
                   "seed": dj["config"].get("seed"), "zipf_s": dj["config"].get("zipf_s"),
                   "device": "cuda", "from": os.path.basename(a.djinn_result),
                   "mode": a.mode},
        "env": {"device": bc.device_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "models": [{"path": m.path, "weight_bytes": m.bytes} for m in models],
        "setup_s": setup_s,
        "trace": trace,
        "requests": [],
        "summary": None,
    }

    lru = []  # model indices on the GPU, least recent first
    rows = result["requests"]
    for rq in trace:
        mi = int(rq["model"])
        m = models[mi - 1]
        row = {"id": rq["id"], "model": mi, "model_name": os.path.basename(m.path.rstrip("/")),
               "prompt": rq["prompt"], "kind": "hit" if m.on_gpu else "miss",
               "switch_bytes": 0, "switch_ms": 0.0, "switch_gbps": 0.0}
        t0 = time.perf_counter()
        try:
            if not m.on_gpu:
                # room first: whole models leave, least recent first
                need = m.bytes or 0
                while lru and (budget == 0 or
                               sum(models[j - 1].bytes for j in lru) + need > budget):
                    models[lru.pop(0) - 1].leave_gpu()
                t1 = time.perf_counter()
                m.to_gpu()
                row["switch_ms"] = (time.perf_counter() - t1) * 1e3
                row["switch_bytes"] = m.bytes
                row["switch_gbps"] = m.bytes / (row["switch_ms"] * 1e6)
            if mi in lru:
                lru.remove(mi)
            lru.append(mi)
            t1 = time.perf_counter()
            row["tokens"] = greedy(m.model, rq["prompt_ids"], n)
            row["run_ms"] = (time.perf_counter() - t1) * 1e3
            row["ok"] = True
            row["n_generated"] = len(row["tokens"])
            r = ref.get((mi, rq["prompt"]))
            row["tokens_equal"] = r is not None and r == row["tokens"]
        except (RuntimeError, OSError, ValueError) as e:  # CUDA OOM is a RuntimeError
            row["ok"] = False
            row["error"] = f"{type(e).__name__}: {e}"[:500]
            row["tokens_equal"] = False
            if m.on_gpu:
                m.leave_gpu()
            if mi in lru:
                lru.remove(mi)
            torch.cuda.empty_cache()
        row["total_ms"] = (time.perf_counter() - t0) * 1e3
        rows.append(row)
        result["summary"] = summarize(rows, len(trace), a.h2d_gbps)
        bc.write_json(result, a.out)

    s = result["summary"]
    f = lambda x, fmt: "-" if x is None else fmt % x  # noqa: E731
    print(f"multimodel_torch: {result['system']}: {s['completed']}/{len(trace)} completed, "
          f"{s['tokens_identical']} equal to djinn alone, hit/miss {s['hit']}/{s['miss']}, "
          f"P50 {f(s['p50_ms'], '%.1f')} ms, P99 {f(s['p99_ms'], '%.1f')} ms, "
          f"mean {f(s['mean_ms'], '%.1f')} ms, switches at {f(s['miss_gbps'], '%.2f')} GB/s "
          f"-> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
