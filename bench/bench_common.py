"""bench_common.py - what hf_reference.py and hf_speed.py share: loading a model
with transformers, the seeded prompt, the weight bytes, the measured HBM
bandwidth, and decoding token ids the way `djinn generate` prints them.

Runs on the GPU machines (torch 2.11, transformers 5.x, no network); works
with transformers 4.4x as well where the API allows.
"""
import json
import os
import statistics
import time

import torch


def _version_tuple(v):
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def load_model(model_dir, dtype=torch.float16):
    """The model on cuda:0 in dtype, in eval mode.  transformers >= 4.56 calls
    the argument `dtype`; older versions silently take `dtype` as a config
    attribute and load in float32, hence the version check."""
    import transformers
    from transformers import AutoModelForCausalLM

    kw = {"device_map": "cuda"}
    if _version_tuple(transformers.__version__) >= (4, 56):
        kw["dtype"] = dtype
    else:
        kw["torch_dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    model.eval()
    got = next(model.parameters()).dtype
    if got != dtype:
        raise SystemExit(f"{model_dir}: loaded as {got}, wanted {dtype}")
    return model


def weight_bytes(model):
    """Bytes of the parameters, a tied tensor counted once (what one decode
    step must read from HBM at least)."""
    seen, total, n = set(), 0, 0
    for p in model.parameters():
        key = (p.data_ptr(), p.numel())
        if key in seen:
            continue
        seen.add(key)
        total += p.numel() * p.element_size()
        n += p.numel()
    return total, n


def byte_vocab(model_dir):
    """{byte: id} for the single-byte tokens of a byte-level tokenizer.json
    (what `djinn mkmodel` writes), or None."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok.get("model", {}).get("vocab")
    if not isinstance(vocab, dict):
        return None
    b2u = bytes_to_unicode()
    out = {}
    for b, ch in b2u.items():
        if ch in vocab:
            out[b] = vocab[ch]
    return out if len(out) == 256 else None


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def seeded_prompt(model_dir, config, n, seed=0):
    """n prompt token ids from a seeded generator, and the text that
    tokenizes to exactly those ids when the model has a byte-level tokenizer
    without merges (djinn mkmodel's): then `djinn generate -p TEXT` sees the
    same ids as transformers.  Characters are printable ASCII without space
    (0x21..0x7e).  Otherwise ids are uniform in [3, vocab) less the special
    ids, and the text is None."""
    g = torch.Generator().manual_seed(seed)
    bv = byte_vocab(model_dir)
    if bv is not None:
        chars = torch.randint(0x21, 0x7F, (n,), generator=g).tolist()
        text = bytes(chars).decode("ascii")
        return [bv[c] for c in chars], text
    special = {getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    ids = []
    while len(ids) < n:
        i = int(torch.randint(3, config.vocab_size, (1,), generator=g))
        if i not in special:
            ids.append(i)
    return ids, None


def djinn_text(model_dir, ids):
    """The bytes `djinn generate` prints for generated ids with a byte-level
    tokenizer: each token's bytes, special tokens as nothing, and a lone byte
    that is neither printable ASCII nor space dropped (as its print_piece
    does).  None when the tokenizer is not byte-level."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    special = {t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    inv = {v: k for k, v in vocab.items()}
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    out = bytearray()
    for i in ids:
        if i in special or i not in inv:
            continue
        piece = bytes(u2b[c] for c in inv[i] if c in u2b)
        if len(piece) == 1 and not (0x20 <= piece[0] <= 0x7E or piece[0] in b"\t\n\v\f\r"):
            continue
        out += piece
    return bytes(out)


def measure_bandwidth(n_bytes=2 << 30, iters=20, warmup=3):
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus
    bytes written (the convention of the roofline: a decode step reads each
    weight byte once).  Median over iters, each timed with CUDA events."""
    src = torch.empty(n_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    src.fill_(1)
    for _ in range(warmup):
        dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    t = statistics.median(times)
    return {
        "bytes_per_s": 2 * n_bytes / t,
        "buffer_bytes": n_bytes,
        "iters": iters,
        "best_bytes_per_s": 2 * n_bytes / min(times),
        "method": "torch dst.copy_(src) of buffer_bytes; (read + written) / median time",
    }


def device_info():
    p = torch.cuda.get_device_properties(0)
    import transformers
    return {
        "name": p.name,
        "total_memory": p.total_memory,
        "multiprocessors": p.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }


def median(xs):
    return statistics.median(xs) if xs else None


def now():
    return time.perf_counter()


def write_json(obj, path):
    text = json.dumps(obj, indent=1)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
    return text
