#!/usr/bin/env python3
"""Reads engram's GGUF files with llama.cpp's own Python reader (`gguf` on PyPI), as an independent check.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0
    /tmp/gguf-venv/bin/python scripts/gguf_check.py FILE.gguf [...]          # keys and tensors
    /tmp/gguf-venv/bin/python scripts/gguf_check.py --quant F32.gguf Q.gguf  # quantised bytes vs gguf-py's

The first form lists what llama.cpp looks for: the adapter keys (`general.type`, `adapter.type`,
`adapter.lora.alpha`) or the model's (`general.file_type`, tokenizer, chat template), and the tensors by type.
The second quantises each tensor of an f32 GGUF (`engram merge --gguf ... --quant f32`) with gguf-py's
reference quantisers and compares the bytes with the same tensor of a quantised file merged from the same
adapter; exit status 1 if any differ.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, quants

KEYS = [
    "general.architecture", "general.type", "general.name", "adapter.type", "adapter.lora.alpha",
    "general.file_type", "general.quantization_version", "tokenizer.ggml.model",
    "tokenizer.chat_template", "llama.block_count",
]


def describe(path):
    r = GGUFReader(path)
    print(f"{path}: {len(r.tensors)} tensors, {len(r.fields)} metadata keys")
    for key in KEYS:
        field = r.fields.get(key)
        if field is None:
            continue
        value = field.contents()
        if isinstance(value, str) and len(value) > 60:
            value = value[:60] + "..."
        print(f"  {key} = {value!r}")
    tokens = r.fields.get("tokenizer.ggml.tokens")
    if tokens is not None:
        print(f"  tokenizer.ggml.tokens: {len(tokens.contents())} entries")
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    print(f"  tensor types: {types}")
    for t in r.tensors[:3]:
        print(f"  {t.name}: ne {[int(d) for d in t.shape]} {t.tensor_type.name}")


def compare_quantised(reference, paths):
    ref = {t.name: t for t in GGUFReader(reference).tensors}
    failed = False
    for path in paths:
        same, differ = 0, []
        for t in GGUFReader(path).tensors:
            if t.tensor_type == GGMLQuantizationType.F32:
                continue
            theirs = quants.quantize(np.asarray(ref[t.name].data, dtype=np.float32), t.tensor_type)
            ours = np.asarray(t.data).reshape(theirs.shape)
            if np.array_equal(theirs.view(np.uint8), ours.view(np.uint8)):
                same += 1
            else:
                differ.append(t.name)
        print(f"{path}: {same} quantised tensors byte-identical to gguf-py's, {len(differ)} differ {differ[:3]}")
        failed |= bool(differ)
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "--quant":
        sys.exit(compare_quantised(args[1], args[2:]))
    for p in args:
        describe(p)
