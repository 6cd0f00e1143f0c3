#!/usr/bin/env python3
"""compare_logits.py - djinn's logits and greedy tokens against transformers'
on the same model directory and prompt.

usage: bench/compare_logits.py HF_REF.json HF_LOGITS.npy DJINN_LOGITS.npy [--out FILE.json]

HF_REF.json and HF_LOGITS.npy come from bench/hf_reference.py (--logits-npy);
DJINN_LOGITS.npy from `djinn generate --logits-out` (row i: the logits token i
was chosen from; row 0 is the prompt's last position).  Prints and writes the
relative logit error ||d - h|| / ||h|| at the prompt's last position and how
many of the greedy tokens agree with transformers' f16 and f32 passes.
"""
import argparse
import json

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("hf_logits")
    ap.add_argument("djinn_logits")
    ap.add_argument("--out")
    a = ap.parse_args()
    ref = json.load(open(a.ref))
    h = np.load(a.hf_logits).astype(np.float64).reshape(-1)
    d = np.load(a.djinn_logits).astype(np.float64)
    rel = float(np.linalg.norm(d[0] - h) / np.linalg.norm(h))
    dj_tokens = [int(t) for t in d.argmax(axis=1)]

    def find_tokens(obj, key):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k == key and isinstance(v, dict) and "tokens" in v:
                    return v["tokens"]
                r = find_tokens(v, key)
                if r is not None:
                    return r
        return None

    res = {"rel_logit_err_prompt_last": rel, "djinn_tokens": dj_tokens}
    if isinstance(ref.get("f32"), dict) and ref["f32"].get("logits"):
        h32 = np.asarray(ref["f32"]["logits"], dtype=np.float64)
        res["rel_logit_err_vs_hf_f32"] = float(np.linalg.norm(d[0] - h32) / np.linalg.norm(h32))
        res["rel_logit_err_hf_f16_vs_f32"] = float(np.linalg.norm(h - h32) / np.linalg.norm(h32))
    for name in ("f16", "f32", "float16", "float32", "reference"):
        t = find_tokens(ref, name)
        if t:
            n = min(len(t), len(dj_tokens))
            res[f"tokens_{name}"] = t
            res[f"agree_{name}"] = sum(1 for i in range(n) if t[i] == dj_tokens[i])
            res[f"prefix_{name}"] = next((i for i in range(n) if t[i] != dj_tokens[i]), n)
    if "tokens" in ref:
        t = ref["tokens"]
        n = min(len(t), len(dj_tokens))
        res["agree_top"] = sum(1 for i in range(n) if t[i] == dj_tokens[i])
        res["prefix_top"] = next((i for i in range(n) if t[i] != dj_tokens[i]), n)
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("tokens") and k != "djinn_tokens"}))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
