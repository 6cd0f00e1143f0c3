#!/usr/bin/env python3
"""Makes tests/fixtures/smollm2/reference.json: SmolLM2's tokens and logits as llama.cpp computes them.

usage: make-smollm2-fixtures.py [--llama-cpp-commit SHA] [GGUF] [-o OUT]

GGUF defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/models.sh fetches it), OUT to
tests/fixtures/smollm2/reference.json, both relative to the repository root. Needs
llama-cpp-python, which builds llama.cpp from source (a CPU build is enough; ~20 min on 2 cores),
in a venv outside the repository; the result depends on its version, which is recorded:

  python3 -m venv "$VENV"    # any folder outside the repository
  CMAKE_ARGS=-DGGML_NATIVE=OFF "$VENV"/bin/pip install llama-cpp-python==0.3.36
  "$VENV"/bin/python scripts/make-smollm2-fixtures.py \
      --llama-cpp-commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f

What it records, and how the C side should read it:

  generator          "scripts/make-smollm2-fixtures.py"
  llama_cpp_python   llama_cpp.__version__
  llama_cpp_commit   the llama.cpp commit llama-cpp-python vendors, as given by
                     --llama-cpp-commit (the sdist carries vendor/llama.cpp/.git), else "unknown"
  gguf               {file, sha256, bytes}
  settings           {n_ctx, n_threads, seed, n_gen, top_k}: how llama.cpp was run
  vocab              {n_vocab, bos_id, eos_id, add_bos_token}: from the GGUF, as llama.cpp reads it
  chat_template      the GGUF's tokenizer.chat_template, which rendered the chat prompts
  prompts            [{text, kind, add_bos, bos_added, ids}]
                     ids = llm.tokenize(text.encode(), add_bos=add_bos, special=True).
                     add_bos is True: that is llama-cpp-python's default, which completion uses;
                     llama.cpp adds BOS only when the vocab asks for it (tokenizer.ggml.add_bos_token),
                     and bos_added says whether it did. `special=True` parses <|im_start|> and
                     friends as single control tokens. kind: plain, chat, unicode or digits.
  runs               [{prompt_index, generated_ids, generated_text, stopped_at_eos,
                       sampler_agrees, argmax_matches_generated, positions}]
                     generated_ids: greedy decoding, one token at a time: the argmax of llama.cpp's
                     logits (ties to the lowest id), up to n_gen tokens or up to and including an
                     end-of-generation token. sampler_agrees: llama-cpp-python's own sampler
                     (temperature 0, top_k 1) produced the same ids.
                     positions: teacher-forced. The prompt and the generated ids are evaluated in
                     one batch; for each generated token j, pos is the index (0-based, in
                     prompt ids + generated ids) of the token whose logits predict it, i.e.
                     len(prompt ids) - 1 + j. At that position: argmax, max and mean over the whole
                     vocabulary, and top: the 64 largest (id, logit) pairs, largest first.
                     Logits are rounded to 5 significant digits.

How exact llama.cpp is. Its CPU matmuls quantize activations to 8 bits (q8_1 against Q4_1, q8_0
against the Q8_0 embedding/head) and its KV cache is f16, so its logits are not those of the dequantized weights in exact arithmetic. Measured with
0.3.36 on these two runs: teacher-forced (one batch) against one-token-at-a-time logits differ by
0.15 mean-abs and 1.2 max-abs; an fp64 numpy forward of the dequantized weights differs from the
teacher-forced logits by 0.15-0.16 mean-abs and 0.7-1.0 max-abs over each position's top 64,
and its argmax agrees at 62/64 and 61/64 positions. Every disagreement was at a position whose
top-1/top-2 margin here is under 0.25. argmax_matches_generated in each run counts the positions
where llama.cpp's own teacher-forced argmax equals the greedy token (60/64 and 62/64).
"""

import argparse
import hashlib
import json
import math
import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2", "reference.json")

N_CTX = 512
N_THREADS = 2
SEED = 0
N_GEN = 64
TOP_K = 64

# (kind, text or chat message). Chat messages go through the GGUF's own template.
PROMPTS = [
    ("plain", "The capital of France is"),
    ("plain", "Once upon a time,"),
    ("chat", "What is the capital of France?"),
    ("chat", "Write a short story about a robot who learns to paint."),
    ("unicode", "Café déjà vu — naïve façade"),
    ("unicode", "日本語のテキスト"),
    ("unicode", "Привет, мир! 🙂"),
    ("digits", "1234567 + 89 = "),
]
# Prompts that get a greedy run and teacher-forced logits: one plain, one chat.
RUN_PROMPTS = [1, 3]


def sig5(x):
    """x rounded to 5 significant digits, as a float JSON writes compactly."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.5g}")


def to_json(ref):
    """Indented JSON, but each id list and each position on one line: small, and a diff of two
    fixtures shows which positions changed."""
    compact = {}

    def mark(v):
        key = f"@@{len(compact)}@@"
        compact[key] = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        return key

    ref = json.loads(json.dumps(ref))
    for p in ref["prompts"]:
        p["ids"] = mark(p["ids"])
    for r in ref["runs"]:
        r["generated_ids"] = mark(r["generated_ids"])
        r["positions"] = [mark(p) for p in r["positions"]]
    text = json.dumps(ref, ensure_ascii=False, indent=1)
    for key, v in compact.items():
        text = text.replace(f'"{key}"', v, 1)
    return text + "\n"


def meta_bool(v):
    """llama-cpp-python hands GGUF metadata over as strings."""
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def render_chat(template, message, bos, eos):
    import jinja2

    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=False, lstrip_blocks=False)
    return env.from_string(template).render(
        messages=[{"role": "user", "content": message}],
        add_generation_prompt=True,
        bos_token=bos,
        eos_token=eos,
    )


def is_eog(llm, tok):
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def greedy(llm, np, prompt_ids, n_gen):
    """Argmax decoding, one token per eval; stops after an end-of-generation token."""
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n_gen):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(logits))
        out.append(tok)
        if is_eog(llm, tok):
            return out, True
        llm.eval([tok])
    return out, False


def sampler_ids(llm, prompt_ids, n):
    """What llama-cpp-python's own sampler picks at temperature 0, top_k 1."""
    llm.reset()
    out = []
    for tok in llm.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                            repeat_penalty=1.0, reset=True):
        out.append(int(tok))
        if len(out) == n or is_eog(llm, tok):
            break
    return out


def teacher_forced(llm, np, prompt_ids, gen_ids):
    llm.reset()
    llm.eval(prompt_ids + gen_ids)
    positions = []
    for j, want in enumerate(gen_ids):
        pos = len(prompt_ids) - 1 + j
        logits = np.asarray(llm.scores[pos], dtype=np.float32)
        order = np.argsort(-logits, kind="stable")[:TOP_K]
        positions.append({
            "pos": pos,
            "argmax": int(order[0]),
            "max": sig5(logits.max()),
            "mean": sig5(logits.astype(np.float64).mean()),
            "top": [[int(i), sig5(logits[i])] for i in order],
        })
    return positions


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=DEFAULT_GGUF)
    ap.add_argument("-o", "--out", default=DEFAULT_OUT)
    ap.add_argument("--llama-cpp-commit", default="unknown")
    args = ap.parse_args()

    try:
        import numpy as np
        import llama_cpp
    except ImportError as e:
        sys.exit(f"make-smollm2-fixtures.py: {e}; run it with a python that has llama-cpp-python")

    if not os.path.isfile(args.gguf):
        sys.exit(f"make-smollm2-fixtures.py: '{args.gguf}' not found; run scripts/models.sh first")

    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=N_CTX, logits_all=True, seed=SEED,
                          n_threads=N_THREADS, verbose=False)
    meta = llm.metadata
    template = meta.get("tokenizer.chat_template")
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    bos_text = llm.detokenize([bos_id], special=True).decode("utf-8", "replace")
    eos_text = llm.detokenize([eos_id], special=True).decode("utf-8", "replace")

    prompts = []
    for kind, text in PROMPTS:
        if kind == "chat":
            if not template:
                sys.exit("make-smollm2-fixtures.py: the GGUF has no tokenizer.chat_template")
            text = render_chat(template, text, bos_text, eos_text)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        prompts.append({
            "text": text,
            "kind": kind,
            "add_bos": True,
            "bos_added": bool(ids) and ids[0] == bos_id and not text.startswith(bos_text),
            "ids": [int(i) for i in ids],
        })

    runs = []
    for pi in RUN_PROMPTS:
        prompt_ids = prompts[pi]["ids"]
        gen_ids, stopped = greedy(llm, np, prompt_ids, N_GEN)
        sampled = sampler_ids(llm, prompt_ids, len(gen_ids))
        positions = teacher_forced(llm, np, prompt_ids, gen_ids)
        runs.append({
            "prompt_index": pi,
            "generated_ids": gen_ids,
            "generated_text": llm.detokenize(gen_ids).decode("utf-8", "replace"),
            "stopped_at_eos": stopped,
            "sampler_agrees": sampled == gen_ids,
            "argmax_matches_generated": sum(p["argmax"] == t for p, t in zip(positions, gen_ids)),
            "positions": positions,
        })

    ref = {
        "generator": "scripts/make-smollm2-fixtures.py",
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": args.llama_cpp_commit,
        "gguf": {
            "file": os.path.basename(args.gguf),
            "sha256": sha256_of(args.gguf),
            "bytes": os.path.getsize(args.gguf),
        },
        "settings": {"n_ctx": N_CTX, "n_threads": N_THREADS, "seed": SEED, "n_gen": N_GEN,
                     "top_k": TOP_K},
        "vocab": {
            "n_vocab": llm.n_vocab(),
            "bos_id": bos_id,
            "eos_id": eos_id,
            "add_bos_token": meta_bool(meta.get("tokenizer.ggml.add_bos_token")),
        },
        "chat_template": template,
        "prompts": prompts,
        "runs": runs,
    }

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(to_json(ref))
    os.replace(tmp, args.out)

    for r in runs:
        print(f"prompt {r['prompt_index']}: {len(r['generated_ids'])} tokens, "
              f"teacher-forced argmax = generated at {r['argmax_matches_generated']}, "
              f"sampler agrees: {r['sampler_agrees']}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
