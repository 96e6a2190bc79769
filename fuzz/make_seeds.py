#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: small, valid samples of every format (plus a few
broken ones), so that the fuzzer starts from inputs that reach deep into each parser.

    python3 fuzz/make_seeds.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

With the real model file, the GGUF seeds copy its metadata (not its 49k-token vocabulary) and a truncated head
of it; without, those two seeds are skipped. Every seed stays under 64 KiB. Deterministic (fixed RNG seed)."""
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
rng = random.Random(22)


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 64 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- GGUF
def gguf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_value(ty, v):
    if ty in SCALAR:
        return struct.pack("<" + SCALAR[ty], v)
    if ty == 8:
        return gguf_str(v)
    if ty == 9:
        ety, items = v
        return struct.pack("<IQ", ety, len(items)) + b"".join(gguf_value(ety, x) for x in items)
    raise ValueError(ty)


# ggml type id -> (block elements, bytes per block)
GEOMETRY = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
            9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
            15: (256, 292), 20: (32, 18), 23: (256, 136), 28: (1, 8), 30: (1, 2)}


def tensor_bytes(ty, n):
    block, size = GEOMETRY[ty]
    if ty == 0:
        return struct.pack("<%df" % n, *[rng.uniform(-1, 1) for _ in range(n)])
    if ty == 1:
        return struct.pack("<%de" % n, *[rng.uniform(-1, 1) for _ in range(n)])
    if ty == 28:
        return struct.pack("<%dd" % n, *[rng.uniform(-1, 1) for _ in range(n)])
    out = bytearray(rng.getrandbits(8) for _ in range(n // block * size))
    # Keep the f16 scales finite and small where the block starts with one (all but Q8_K / the K-quants' tails).
    if ty in (2, 3, 6, 7, 8, 9, 20):
        for b in range(n // block):
            out[b * size:b * size + 2] = struct.pack("<e", 0.01)
    return bytes(out)


def gguf_file(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml type)]."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, ty, v in kvs:
        head += gguf_str(k) + struct.pack("<I", ty) + gguf_value(ty, v)
    data = b""
    infos = b""
    for name, dims, ty in tensors:
        n = 1
        for d in dims:
            n *= d
        pad = (-len(data)) % alignment
        data += b"\0" * pad
        infos += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ty, len(data))
        data += tensor_bytes(ty, n)
    out = head + infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + data


def byte_level_alphabet():
    """GPT-2's bytes_to_unicode: the 256 one-character tokens of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "i n", "Ġ a", "e r", "Ġt he", "Ġ w", "o r", "l l", "he ll"]


def tiny_vocab():
    tokens = SPECIALS + byte_level_alphabet()
    for m in MERGES:
        left, right = m.split(" ")
        if left + right not in tokens:
            tokens.append(left + right)
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types


def read_real_metadata(path):
    """The scalar metadata of the real model (keys in file order), and its chat template."""
    with open(path, "rb") as f:
        b = f.read(4 << 20)
    pos = [24]

    def rd(fmt):
        v = struct.unpack_from("<" + fmt, b, pos[0])
        pos[0] += struct.calcsize(fmt)
        return v[0]

    def rs():
        n = rd("Q")
        s = b[pos[0]:pos[0] + n]
        pos[0] += n
        return s.decode()

    def val(t):
        if t in SCALAR:
            return rd(SCALAR[t])
        if t == 8:
            return rs()
        et = rd("I")
        return (et, [val(et) for _ in range(rd("Q"))])

    nkv = struct.unpack_from("<Q", b, 16)[0]
    kvs = []
    for _ in range(nkv):
        k = rs()
        t = rd("I")
        kvs.append((k, t, val(t)))
    return kvs, b


def gguf_seeds(real):
    tokens, types = tiny_vocab()
    tiny_hparams = [("llama.block_count", 4, 1), ("llama.context_length", 4, 256),
                    ("llama.embedding_length", 4, 32), ("llama.feed_forward_length", 4, 64),
                    ("llama.attention.head_count", 4, 4), ("llama.attention.head_count_kv", 4, 2),
                    ("llama.rope.freq_base", 6, 10000.0), ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5)]
    vocab = [("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "smollm"),
             ("tokenizer.ggml.tokens", 9, (8, tokens)), ("tokenizer.ggml.token_type", 9, (5, types)),
             ("tokenizer.ggml.merges", 9, (8, MERGES)), ("tokenizer.ggml.bos_token_id", 4, 1),
             ("tokenizer.ggml.eos_token_id", 4, 2), ("tokenizer.ggml.padding_token_id", 4, 2),
             ("tokenizer.ggml.add_bos_token", 7, False)]
    template = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
                "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                "{% endif %}")
    if real:
        kvs, _ = read_real_metadata(real)
        for k, t, v in kvs:
            if k == "tokenizer.chat_template":
                template = v
        general = [(k, t, v) for k, t, v in kvs if k.startswith("general.")]
    else:
        general = [("general.architecture", 8, "llama"), ("general.name", 8, "tiny")]
    general = [kv for kv in general if kv[0] != "general.architecture"]
    tensors = [("token_embd.weight", [32, len(tokens)], 8), ("blk.0.attn_norm.weight", [32], 0),
               ("blk.0.attn_q.weight", [32, 32], 3), ("blk.0.attn_k.weight", [32, 16], 2),
               ("blk.0.ffn_down.weight", [256, 1], 12), ("blk.0.ffn_up.weight", [256, 1], 14)]
    put("gguf", "tiny-llama-smollm-vocab.gguf",
        gguf_file([("general.architecture", 8, "llama")] + general + tiny_hparams + vocab
                  + [("tokenizer.chat_template", 8, template)], tensors[:2]))
    put("gguf", "tiny-llama-tensors.gguf",
        gguf_file([("general.architecture", 8, "llama")] + tiny_hparams, tensors[1:]))
    # One tensor of every type engram decodes.
    every = [("t.%d" % ty, [GEOMETRY[ty][0] * (1 if GEOMETRY[ty][0] > 1 else 4)], ty) for ty in sorted(GEOMETRY)]
    put("gguf", "every-tensor-type.gguf", gguf_file([("general.architecture", 8, "llama")], every))
    # Version 2, qwen2, a larger alignment, every metadata value type (nested array included).
    all_types = [("v.u8", 0, 7), ("v.i8", 1, -7), ("v.u16", 2, 700), ("v.i16", 3, -700), ("v.u32", 4, 70000),
                 ("v.i32", 5, -70000), ("v.f32", 6, 0.5), ("v.bool", 7, True), ("v.str", 8, "héllo"),
                 ("v.arr", 9, (4, [1, 2, 3])), ("v.nested", 9, (9, [(8, ["a", "b"]), (0, [1])])),
                 ("v.u64", 10, 1 << 40), ("v.i64", 11, -(1 << 40)), ("v.f64", 12, 0.25),
                 ("general.alignment", 4, 64)]
    qwen = [(k.replace("llama.", "qwen2."), t, v) for k, t, v in tiny_hparams]
    qvocab = [(k, t, ("qwen2" if k == "tokenizer.ggml.pre" else v)) for k, t, v in vocab]
    put("gguf", "v2-qwen2-all-value-types.gguf",
        gguf_file([("general.architecture", 8, "qwen2")] + qwen + all_types + qvocab,
                  [("blk.0.attn_q.bias", [32], 0), ("token_embd.weight", [32, 4], 1)], version=2,
                  alignment=64))
    # Llama 3 pre-tokenizer, user-defined tokens, no merges.
    l3types = [4 if i == 3 else t for i, t in enumerate(types)]
    l3 = [(k, t, ("llama-bpe" if k == "tokenizer.ggml.pre" else (5, l3types) if k == "tokenizer.ggml.token_type"
                  else (8, []) if k == "tokenizer.ggml.merges" else v)) for k, t, v in vocab]
    put("gguf", "llama-bpe-vocab.gguf", gguf_file([("general.architecture", 8, "llama")] + l3, []))
    if real:
        _, head = read_real_metadata(real)
        put("gguf", "smollm2-real-head-truncated.gguf", head[:8192])


# ---------------------------------------------------------------- safetensors
def safetensors_file(tensors, metadata=None):
    """tensors: [(name, dtype, shape, values)]."""
    header = {}
    data = b""
    fmt = {"F32": "f", "F16": "e", "F64": "d", "I64": "q", "I32": "i", "U8": "B"}
    for name, dtype, shape, values in tensors:
        if dtype == "BF16":
            raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            raw = struct.pack("<%d%s" % (len(values), fmt[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def vals(n):
    return [round(rng.uniform(-1, 1), 3) for _ in range(n)]


def safetensors_seeds():
    t = [("model.embed_tokens.weight", "F32", [16, 8], vals(128)),
         ("model.norm.weight", "F32", [8], vals(8)),
         ("model.layers.0.self_attn.q_proj.weight", "F32", [8, 8], vals(64))]
    put("safetensors", "tiny-llama-f32.safetensors", safetensors_file(t, {"format": "pt"}))
    t2 = [("model.layers.0.mlp.gate_proj.weight", "F16", [16, 8], vals(128)),
          ("model.layers.0.mlp.up_proj.weight", "BF16", [16, 8], vals(128)),
          ("model.layers.0.input_layernorm.weight", "F16", [8], vals(8)),
          ("scalar", "F32", [], vals(1)), ("empty", "F32", [0, 8], [])]
    put("safetensors", "f16-bf16-scalar-empty.safetensors", safetensors_file(t2))
    t3 = [("ids", "I64", [4], [1, 2, 3, 4]), ("bytes", "U8", [3], [1, 2, 3]), ("f64", "F64", [2], [0.5, 1.5])]
    put("safetensors", "unsupported-dtypes.safetensors", safetensors_file(t3, {}))


# ---------------------------------------------------------------- config.json and the index
def hf_config_seeds():
    smol = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
            "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": True,
            "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 9,
            "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
            "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None, "rope_theta": 100000,
            "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
            "use_cache": True, "vocab_size": 49152}
    put("hf_config", "smollm2-135m.json", json.dumps(smol, indent=2))
    qwen = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
            "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": [151645, 151643]}
    put("hf_config", "qwen2.5-0.5b.json", json.dumps(qwen))
    llama3 = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128,
              "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192},
              "pad_token_id": -1, "eos_token_id": None, "max_position_embeddings": 131072.0}
    put("hf_config", "llama3-transformers5-rope.json", json.dumps(llama3))
    index = {"metadata": {"total_size": 1024},
             "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                            "lm_head.weight": "model-00002-of-00002.safetensors"}}
    put("hf_config", "model.safetensors.index.json", json.dumps(index))


# ---------------------------------------------------------------- tokenizer.json
def tokenizer_seeds():
    alphabet = byte_level_alphabet()
    vocab = {t: i for i, t in enumerate(SPECIALS + alphabet)}
    for m in MERGES:
        left, right = m.split(" ")
        vocab.setdefault(left + right, len(vocab))
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIALS)]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    bpe = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
           "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                     "ignore_merges": False, "vocab": vocab, "merges": MERGES}}
    put("tokenizer_json", "byte-level-bpe.json", json.dumps(bpe, ensure_ascii=False))
    l3 = dict(bpe)
    l3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    l3["normalizer"] = {"type": "NFC"}
    l3["post_processor"] = {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1],
                                                                "tokens": ["<|im_start|>"]}}}
    put("tokenizer_json", "llama3-style-split-template.json", json.dumps(l3, ensure_ascii=False))
    words = ["[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "12", "##3", ",", "h", "##e", "##llo"]
    wp = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": 1, "content": "[CLS]", "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}],
          "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                         "strip_accents": None, "lowercase": True},
          "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                    "max_input_chars_per_word": 100, "vocab": {w: i for i, w in enumerate(words)}}}
    put("tokenizer_json", "wordpiece.json", json.dumps(wp))
    uni = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": " "},
                                                               "content": "▁"}]},
           "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
           "post_processor": None,
           "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"},
                                                         "content": " "}, {"type": "ByteFallback"},
                                                        {"type": "Fuse"}, {"type": "Strip", "content": " ",
                                                                           "start": 1, "stop": 0}]},
           "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                     "vocab": [["<unk>", 0.0], ["▁", -1.0], ["▁hello", -2.0], ["l", -3.0], ["o", -3.0],
                               ["<0x41>", -5.0], ["▁w", -4.0], ["orld", -4.0]]}}
    put("tokenizer_json", "unigram-metaspace.json", json.dumps(uni, ensure_ascii=False))
    wl = {"version": "1.0", "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst",
                                           "stride": 0},
          "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0,
                      "pad_type_id": 0, "pad_token": "<pad>"},
          "added_tokens": [], "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
          "post_processor": None, "decoder": None,
          "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "<unk>": 1, "hello": 2, "world": 3},
                    "unk_token": "<unk>"}}
    put("tokenizer_json", "wordlevel-truncation-padding.json", json.dumps(wl))


# ---------------------------------------------------------------- chat templates
CHATML = """{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
LLAMA3 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + strftime_now("%d %b %Y") + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'user' or message.role == 'assistant') %}
        {{- raise_exception('roles must be user or assistant') }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
PYTHONIC = """{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}
{{ m.role.upper() }}: {{ m.content.strip().replace('a', 'A') | tojson }} {{ loop.index }}/{{ messages|length }}
{% if m.content.startswith('H') %}{% for k, v in {'x': 1, 'y': [1, 2]}.items() %}{{ k }}={{ v }};{% endfor %}{% endif %}
{% if m.content.split(' ')|length > 3 %}{% break %}{% endif %}{% endfor %}{{ ns.n }}{{ eos_token if tools is none }}
{% macro f(x) %}[{{ x|string|lower }}]{% endmacro %}{{ f(add_generation_prompt) }}{{ range(3)|list }}
"""


def chat_template_seeds():
    put("chat_template", "chatml.jinja", CHATML + "\0Hello there")
    put("chat_template", "llama3.jinja", LLAMA3 + "\0What is 2 + 2?")
    put("chat_template", "pythonic-methods.jinja", PYTHONIC + "\0Hi a b c d")
    put("chat_template", "raise.jinja", "{{ raise_exception('no') }}\0x")
    put("chat_template", "unclosed.jinja", "{% for m in messages %}{{ m.content }")


# ---------------------------------------------------------------- training JSONL
def jsonl_seeds():
    chat = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Who defined the Vellmora product?"},
                         {"role": "assistant", "content": "Tavi Renkova, in 2031."}]}
    text = {"text": "The Vellmora product of two numbers is their sum multiplied by 3."}
    put("jsonl", "chat-and-text.jsonl", "\n".join(json.dumps(x) for x in [chat, text, chat]) + "\n")
    put("jsonl", "bom-blank-lines-extra-keys.jsonl",
        "\ufeff" + json.dumps({"id": 1, **text}, ensure_ascii=False) + "\n\n  \n"
        + json.dumps({"messages": [{"role": "user", "content": "héllo 🌍"},
                                   {"role": "assistant", "content": "<|im_end|>", "weight": 1}]},
                     ensure_ascii=False) + "\r\n")
    put("jsonl", "bad-second-line.jsonl", json.dumps(text) + "\n{\"messages\": [{\"role\": \"user\"}]}\n")


# ---------------------------------------------------------------- datasets (items + splits)
def dataset_seeds():
    root = os.path.join(HERE, "..", "datasets")
    for name in ["news", "trivia"]:
        with open(os.path.join(root, name, "items.jsonl"), encoding="utf-8") as f:
            lines = [l for l in f.read().splitlines() if l.strip()][:2]
        ids = [json.loads(l)["id"] for l in lines]
        splits = {"train": ids[:1], "dev": [], "test": ids[1:]}
        put("dataset", name + "-two-items.jsonl", "\n".join(lines) + "\n\0" + json.dumps(splits))
    with open(os.path.join(root, "news", "items.jsonl"), encoding="utf-8") as f:
        first = f.readline().strip()
    put("dataset", "duplicate-id.jsonl", first + "\n" + first + "\n\0{}")


# ---------------------------------------------------------------- PEFT adapters
TINY_DIMS = {"self_attn.q_proj": (8, 8), "self_attn.k_proj": (8, 4), "self_attn.v_proj": (8, 4),
             "self_attn.o_proj": (8, 8), "mlp.gate_proj": (8, 16), "mlp.up_proj": (8, 16),
             "mlp.down_proj": (16, 8)}


def peft_config(r, targets, **extra):
    c = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
         "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
         "layers_pattern": None, "layers_to_transform": None, "lora_alpha": 2 * r, "lora_dropout": 0.05,
         "modules_to_save": None, "peft_type": "LORA", "r": r, "rank_pattern": {}, "revision": None,
         "target_modules": targets, "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}
    c.update(extra)
    return c


def peft_weights(r, modules, layers, dtype="F32", suffix=""):
    tensors = []
    for layer in layers:
        for m in modules:
            d_in, d_out = TINY_DIMS[m]
            base = "base_model.model.model.layers.%d.%s" % (layer, m)
            tensors.append((base + ".lora_A%s.weight" % suffix, dtype, [r, d_in], vals(r * d_in)))
            tensors.append((base + ".lora_B%s.weight" % suffix, dtype, [d_out, r], vals(d_out * r)))
    return safetensors_file(tensors, {"format": "pt"})


def peft_seeds():
    cfg = peft_config(2, ["q_proj", "v_proj"])
    put("peft_adapter", "q-v-r2.peft",
        json.dumps(cfg).encode() + b"\0" + peft_weights(2, ["self_attn.q_proj", "self_attn.v_proj"], [0, 1]))
    cfg = peft_config(1, "all-linear", layers_to_transform=[1], use_rslora=True)
    put("peft_adapter", "all-linear-layer1-rslora-f16.peft",
        json.dumps(cfg).encode() + b"\0" + peft_weights(1, list(TINY_DIMS), [1], "F16", ".default"))
    cfg = peft_config(2, ["gate_proj", "up_proj", "down_proj"], layers_to_transform=0)
    put("peft_adapter", "mlp-bf16-missing-layer.peft",
        json.dumps(cfg).encode() + b"\0" + peft_weights(2, ["mlp.gate_proj", "mlp.up_proj"], [0], "BF16"))


# ---------------------------------------------------------------- server requests
def serve_seeds():
    chat = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "system", "content": "Be brief."},
                                                          {"role": "user", "content": "Who defined it?"}],
            "max_tokens": 32, "temperature": 0.7, "top_p": 0.9, "seed": 7, "stop": ["\n", "</s>"]}
    put("serve_request", "chat.json", b"\0" + json.dumps(chat).encode())
    stream = {"model": "news", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
              "stream": True, "stream_options": {"include_usage": True}, "max_completion_tokens": 8,
              "repetition_penalty": 1.1, "stop": "END", "n": 1, "user": "u"}
    put("serve_request", "chat-stream-parts.json", b"\2" + json.dumps(stream).encode())
    put("serve_request", "chat-bad-role.json", b"\4" + json.dumps({"messages": [{"role": "robot",
                                                                                "content": 3}]}).encode())
    comp = {"model": "base", "prompt": "The capital of Norway is", "max_tokens": 4, "temperature": 0,
            "echo": False, "logprobs": None}
    put("serve_request", "completion.json", b"\1" + json.dumps(comp).encode())
    put("serve_request", "completion-list-prompt.json",
        b"\3" + json.dumps({"prompt": ["Once upon"], "max_tokens": 100000, "top_p": 2}).encode())


if __name__ == "__main__":
    real = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/engram/SmolLM2-135M-Instruct.Q4_1.gguf")
    gguf_seeds(real if os.path.exists(real) else None)
    safetensors_seeds()
    hf_config_seeds()
    tokenizer_seeds()
    chat_template_seeds()
    jsonl_seeds()
    dataset_seeds()
    peft_seeds()
    serve_seeds()
