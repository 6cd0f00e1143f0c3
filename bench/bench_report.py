#!/usr/bin/env python3
"""bench_report.py - gpu_bench.sh's helper: the prompt text, and the merged results with a table.

usage: bench/bench_report.py prompt MODEL_DIR N [--seed 0]
           print the N-token seeded prompt as text (the one hf_reference.py and
           hf_speed.py use), for `djinn generate -p`
       bench/bench_report.py merge --work DIR --model MODEL_DIR --out FILE.json
           read DIR/{hf_reference.json, djinn_ref.*, djinn_speed.N.*, hf_speed.json},
           write the merged results to FILE.json and print the table
"""
import argparse
import glob
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def cmd_prompt(a):
    import bench_common as bc

    class Cfg:  # only read when the tokenizer is not byte-level
        def __init__(self, d):
            self.__dict__.update(d)

    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = Cfg(json.load(f))
    _, text = bc.seeded_prompt(a.model_dir, cfg, a.n, a.seed)
    if text is None:
        sys.exit(f"{a.model_dir}: tokenizer is not byte-level; no prompt text for djinn")
    sys.stdout.write(text)


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def djinn_timing(err_text):
    """The last JSON line on stderr with decode_ms_per_token (DJINN_TIMING=1)."""
    for line in reversed((err_text or "").splitlines()):
        line = line.strip()
        if line.startswith("{") and "decode_ms_per_token" in line:
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def djinn_run(work, stem):
    rc = read(os.path.join(work, stem + ".rc"))
    err = read(os.path.join(work, stem + ".err"))
    return {
        "rc": int(rc) if rc and rc.strip().lstrip("-").isdigit() else None,
        "timing": djinn_timing(err),
        "stderr_tail": (err or "")[-600:],
    }


def fmt(x, spec):
    """format(x, spec), or a dash as wide as the spec asks for when x is missing."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    width = spec.split(".")[0]
    return "-".rjust(int(width)) if width.isdigit() else "-"


def cmd_merge(a):
    work = a.work
    out = {"model": os.path.basename(os.path.normpath(a.model))}  # no machine paths in results
    cfg = read(os.path.join(a.model, "config.json"))
    out["config"] = json.loads(cfg) if cfg else None

    # --- correctness: greedy tokens against transformers
    ref = read(os.path.join(work, "hf_reference.json"))
    ref = json.loads(ref) if ref else None
    corr = djinn_run(work, "djinn_ref")
    if ref:
        corr["hf_tokens"] = ref["tokens"]
        corr["hf_min_margin"] = ref["min_margin"]
        corr["hf_generate_agrees"] = ref["generate_agrees"]
        corr["hf_logits_stats"] = ref["logits_stats"]
        stdout = read(os.path.join(work, "djinn_ref.out"), "rb")
        prompt = (ref.get("prompt_text") or "").encode()
        f32 = ref.get("f32") or {}
        if f32:
            corr["hf_f32_tokens"] = f32["tokens"]
            corr["hf_f32_min_margin"] = f32["min_margin"]
            corr["hf_f16_vs_f32_logit_rel_err"] = f32["rel_err_vs_f16"]
        if stdout is not None and ref.get("text_bytes_hex") is not None and corr["rc"] == 0:
            got = stdout[len(prompt):] if stdout.startswith(prompt) else None
            if got is not None and got.endswith(b"\n"):
                got = got[:-1]
            corr["greedy_text_match"] = got == bytes.fromhex(ref["text_bytes_hex"])
            if f32.get("text_bytes_hex") is not None:
                corr["greedy_text_match_f32"] = got == bytes.fromhex(f32["text_bytes_hex"])
            corr["djinn_text_hex"] = got.hex() if got is not None else None
        corr["note"] = ("tokens compared through the text djinn prints (lone unprintable bytes "
                        "dropped, stop at EOS/BOS); logits are compared once djinn can dump them")
    out["correctness"] = corr

    # --- speed
    runs = []
    for err in sorted(glob.glob(os.path.join(work, "djinn_speed.*.err"))):
        runs.append(djinn_run(work, os.path.basename(err)[:-4]))
    timings = [r["timing"] for r in runs if r["timing"]]
    djinn = {"runs": runs}
    if timings:
        djinn["decode_ms_per_token"] = statistics.median(t["decode_ms_per_token"] for t in timings)
        djinn["ttft_ms"] = statistics.median(t["prefill_ms"] for t in timings)
        djinn["n_new"] = timings[-1].get("n_new")
        djinn["n_prompt"] = timings[-1].get("n_prompt")
    hf = read(os.path.join(work, "hf_speed.json"))
    hf = json.loads(hf) if hf else {}
    out["device"] = hf.get("device")
    out["bandwidth"] = hf.get("bandwidth")
    out["weight_bytes"] = hf.get("weight_bytes")
    out["roofline_ms_per_token"] = roof = hf.get("roofline_ms_per_token")
    out["djinn"] = djinn
    for k in ("eager", "compiled", "compiled_loop"):
        out["transformers_" + k] = hf.get(k)
    if roof and djinn.get("decode_ms_per_token"):
        djinn["pct_of_roofline"] = 100.0 * roof / djinn["decode_ms_per_token"]

    rows = [("djinn", djinn)] + [("transformers " + k.replace("_", " "), hf.get(k) or {})
                                 for k in ("eager", "compiled", "compiled_loop")]
    lines = [f"{'':28} {'decode ms/tok':>14} {'% roofline':>11} {'TTFT ms':>9}  notes"]
    for name, r in rows:
        d = r.get("decode_ms_per_token")
        pct = 100.0 * roof / d if roof and d else None
        note = r.get("error", "")[:60] if r.get("error") else ""
        if name == "djinn" and not r.get("decode_ms_per_token"):
            note = "no DJINN_TIMING line (rc %s)" % ([x["rc"] for x in runs] or "-")
        lines.append(f"{name:28} {fmt(d, '14.2f')} {fmt(pct, '10.1f')}% {fmt(r.get('ttft_ms'), '9.1f')}  {note}")
    bw = (out["bandwidth"] or {}).get("bytes_per_s")
    wb = out["weight_bytes"]
    lines.append(f"{'roofline':28} {fmt(roof, '14.2f')}   = {fmt(wb and wb / 1e9, '.2f')} GB / "
                 f"{fmt(bw and bw / 1e12, '.2f')} TB/s (d2d copy, read + written)")
    if "greedy_text_match" in corr:
        lines.append(f"32 greedy tokens after a 64-token prompt, same as transformers f16: "
                     f"{corr['greedy_text_match']}, f32: {corr.get('greedy_text_match_f32', '-')}")
    if "hf_f16_vs_f32_logit_rel_err" in corr:
        lines.append(f"transformers' own f16 logits vs f32: rel err "
                     f"{corr['hf_f16_vs_f32_logit_rel_err']:.2e}; smallest top-2 margin "
                     f"f16 {fmt(corr.get('hf_min_margin'), '.3g')}, f32 {fmt(corr.get('hf_f32_min_margin'), '.3g')}")
    out["table"] = lines
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("\n".join(lines))
    print(f"results: {a.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prompt")
    p.add_argument("model_dir")
    p.add_argument("n", type=int)
    p.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("merge")
    m.add_argument("--work", required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True)
    a = ap.parse_args()
    cmd_prompt(a) if a.cmd == "prompt" else cmd_merge(a)


if __name__ == "__main__":
    main()
