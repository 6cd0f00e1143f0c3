#!/usr/bin/env python3
"""Makes tests/fixtures/hf/: tiny Hugging Face model directories with transformers' own logits.

usage: make-hf-fixtures.py [-o OUT]

OUT defaults to tests/fixtures/hf relative to the repository root. Needs torch and transformers
(4.40 or later, 5.x included); runs on the CPU in float32 (never TF32), so any machine gives the
same numbers. Randomly initialised weights, seeded: no download.

Each directory holds config.json, the weights (model.safetensors, or shards and
model.safetensors.index.json) and reference.json:

  llama-gqa-f32/       LlamaForCausalLM, hidden 64, intermediate 128, 2 layers, 4 heads, 2 kv heads,
                       vocab 256, 128 positions, untied, rope_theta 10000, rms_norm_eps 1e-5; f32
  llama-gqa-bf16/      the same weights stored in bf16
  llama-sharded-f32/   the same f32 weights in 2+ shards with model.safetensors.index.json
  gpt2-f32/            GPT2LMHeadModel, n_embd 64, 2 layers, 4 heads, vocab 256, 128 positions
                       (tied: no lm_head.weight in the file); f32
  gpt2-bf16/           the same weights stored in bf16

The default init leaves every norm gain at 1 and every bias at 0, which would hide a loader that
drops or misplaces them; each 1-D parameter gets seeded noise on top (gains 1 +- 0.1, biases
+- 0.1). The init range is 0.5, not 0.02: with small weights attention is nearly uniform and the
tied GPT-2 just repeats one token; at 0.5 both models' 16 greedy tokens are 14+ distinct ids and
the top two logits at every prompt position are 0.09 or more apart (float error: ~1e-6).

reference.json:
  input_ids     16 fixed token ids
  logits        [16][256]: float32 logits at every position of input_ids, as the model computes
                them in float32 from the stored weights (bf16 directories: the bf16 weights read
                back and upcast, so the reference is exact for what the file holds); printed with
                9 significant digits, enough to round-trip a float32
  greedy        16 ids: generate(do_sample=False, max_new_tokens=16) continuing input_ids, with
                no end-of-sequence token (all 16 are produced), checked against a plain loop of
                full forward passes taking the argmax
  transformers, torch: the versions that made it
"""

import argparse
import copy
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "hf")

SEED = 1234
INPUT_IDS = [1, 17, 200, 45, 3, 99, 128, 255, 0, 64, 31, 7, 150, 222, 88, 11]
N_GEN = 16
MAX_DIR_BYTES = 2 << 20
INIT_RANGE = 0.5
SHARD_BYTES = 150_000  # the f32 llama is about 420 kB: gives 3 or more shards


def llama_config():
    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_bias=False,
        initializer_range=INIT_RANGE,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    # rope_theta is 10000 by default; transformers 5 keeps it in rope_parameters.
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    if theta != 10000 and theta != 10000.0:
        sys.exit(f"unexpected default rope_theta {theta!r}")
    return cfg


def gpt2_config():
    return GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        vocab_size=256,
        n_positions=128,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=INIT_RANGE,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build(cls, cfg):
    torch.manual_seed(SEED)
    model = cls(cfg)
    with torch.no_grad():
        for _, p in model.named_parameters():  # tied parameters come once
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.float().eval()


def save(model, d, **kw):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    try:
        model.save_pretrained(d, safe_serialization=True, **kw)
    except TypeError:  # transformers 5 writes safetensors only and dropped the flag
        model.save_pretrained(d, **kw)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)  # not read by the loader


def load_f32(cls, d):
    """The stored weights read back and computed in float32."""
    try:
        model = cls.from_pretrained(d, dtype=torch.float32)
    except TypeError:
        model = cls.from_pretrained(d, torch_dtype=torch.float32)
    return model.float().eval()


@torch.no_grad()
def reference(model):
    ids = torch.tensor([INPUT_IDS], dtype=torch.long)
    logits = model(input_ids=ids).logits[0].float()
    assert tuple(logits.shape) == (len(INPUT_IDS), model.config.vocab_size), logits.shape

    # greedy, the simple way: a full forward pass per token, argmax
    seq = list(INPUT_IDS)
    for _ in range(N_GEN):
        out = model(input_ids=torch.tensor([seq], dtype=torch.long)).logits[0, -1]
        seq.append(int(torch.argmax(out)))
    loop = seq[len(INPUT_IDS):]

    gen_cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=N_GEN,
                               min_new_tokens=0, eos_token_id=None, pad_token_id=0)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
    greedy = [int(t) for t in out[0, len(INPUT_IDS):]]
    if greedy != loop:
        sys.exit(f"generate() and the argmax loop disagree:\n  {greedy}\n  {loop}")
    return {
        "input_ids": INPUT_IDS,
        "logits": [[float("%.9g" % v) for v in row] for row in logits.tolist()],
        "greedy": greedy,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def write_reference(d, ref):
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")


def check_dir(d, want_dtype, conv1d):
    from safetensors import safe_open

    names = sorted(os.listdir(d))
    files = [n for n in names if n.endswith(".safetensors")]
    assert files, f"{d}: no safetensors written"
    for n in files:
        with safe_open(os.path.join(d, n), framework="pt") as f:
            for k in f.keys():
                t = f.get_tensor(k)
                assert t.dtype == want_dtype, f"{d}/{n}: {k} is {t.dtype}, want {want_dtype}"
                if conv1d and k.endswith("attn.c_attn.weight"):
                    # the loader expects GPT-2's Conv1D layout, [in, out]
                    assert tuple(t.shape) == (64, 192), f"{k} has shape {tuple(t.shape)}"
    size = sum(os.path.getsize(os.path.join(d, n)) for n in names)
    assert size < MAX_DIR_BYTES, f"{d} is {size} bytes"
    print(f"  {os.path.relpath(d, ROOT)}: {', '.join(names)} ({size} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    transformers.logging.set_verbosity_error()
    os.makedirs(args.out, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")

    for name, cls, cfg, conv1d in (("llama-gqa", LlamaForCausalLM, llama_config(), False),
                                   ("gpt2", GPT2LMHeadModel, gpt2_config(), True)):
        model = build(cls, cfg)

        d32 = os.path.join(args.out, name + "-f32")
        save(model, d32)
        m32 = load_f32(cls, d32)
        sd, sd32 = model.state_dict(), m32.state_dict()
        for k, a in sd.items():
            assert k in sd32 and torch.equal(a, sd32[k]), f"{d32}: {k} did not round-trip"
        ref32 = reference(m32)
        write_reference(d32, ref32)
        check_dir(d32, torch.float32, conv1d)

        d16 = os.path.join(args.out, name + "-bf16")
        save(copy.deepcopy(model).to(torch.bfloat16), d16)
        write_reference(d16, reference(load_f32(cls, d16)))
        check_dir(d16, torch.bfloat16, conv1d)

        if name == "llama-gqa":
            ds = os.path.join(args.out, "llama-sharded-f32")
            save(model, ds, max_shard_size=SHARD_BYTES)
            if not os.path.exists(os.path.join(ds, "model.safetensors.index.json")):
                sys.exit(f"{ds}: max_shard_size={SHARD_BYTES} made no shards")
            ref = reference(load_f32(cls, ds))
            if ref != ref32:
                sys.exit(f"{ds}: the sharded copy computes other logits than {d32}")
            write_reference(ds, ref)
            check_dir(ds, torch.float32, conv1d)


if __name__ == "__main__":
    main()
