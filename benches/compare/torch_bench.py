#!/usr/bin/env python3
"""PyTorch + transformers side of engram's benchmark (see README.md beside this file for the definitions).

    benches/compare/.venv/bin/python benches/compare/torch_bench.py --model PATH.gguf --threads 2 [--json OUT]

Loads the GGUF with transformers (dequantised to f32) and measures load time, prefill tokens/s (128 tokens,
batch 1 and 4), decode tokens/s (64 greedy steps with the KV cache, batch 1) and peak RSS. A human table goes
to stderr; one JSON object goes to stdout (and to --json OUT when given). Nothing else is written to stdout.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFILL_TOKENS = 128
PREFILL_BATCHES = (1, 4)
DECODE_PROMPT_TOKENS = 16
DECODE_STEPS = 64
SANITY_PROMPT = "The capital of France is"
SANITY_NEW_TOKENS = 8

DEFINITIONS = {
    "load_s": "median over --load-reps of wall seconds for AutoTokenizer.from_pretrained + "
    "AutoModelForCausalLM.from_pretrained(dtype=float32) + .eval(), from the GGUF file; the previous model "
    "is freed before each load; Python imports are done before timing",
    "prefill_bN_tok_s": "N*128 / median seconds of one model(input_ids=[N,128], use_cache=False, "
    "logits_to_keep=1) forward (last-position logits only); input = first 128 token ids of prompt.txt "
    "(ids cycled if shorter), the same row N times, no padding; --warmup untimed runs first",
    "decode_b1_tok_s": "64 / median seconds of 64 single-token forwards with the KV cache (DynamicCache), "
    "batch 1, after an untimed prefill of the first 16 ids of prompt.txt; each step feeds the argmax of "
    "the previous step's last logits (the first from the prefill), no EOS stop; manual loop, not generate()",
    "peak_rss_mb": "VmHWM of /proc/self/status in MiB at the end of the run (not ru_maxrss, which Linux inherits from the parent across fork+exec)",
    "device": "--device: on cuda every timer starts and stops after torch.cuda.synchronize() (decode steps read "
    "their argmax on the host, which waits too); peak_device_mb = torch.cuda.max_memory_allocated",
    "dtype": "--dtype: the model is loaded (or built, with --random-shape) in that dtype",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def die(msg: str, code: int = 2) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


# Shapes built from their config with random weights (--random-shape), the same as engram-bench's.
RANDOM_SHAPES = {
    # Llama 3.2 1B's config.json.
    "llama-1b": dict(vocab_size=128_256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                     rope_theta=500_000.0, max_position_embeddings=131_072, tie_word_embeddings=True,
                     bos_token_id=128_000, eos_token_id=128_001),
}

DTYPES = {"f32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "f16": "float16", "float16": "float16"}


def common_parser(description: str) -> argparse.ArgumentParser:
    """The options both comparison scripts take: --model, --threads, --prompt-file, --json, --device, --dtype,
    --random-shape."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="GGUF file (or a Hugging Face model folder)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads(N) (default 2)")
    p.add_argument("--prompt-file", type=Path, default=HERE / "prompt.txt", help="benchmark text")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the JSON object to this file")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES),
                   help="weights and activations (default f32; LoRA parameters stay f32, PEFT's default)")
    p.add_argument("--random-shape", choices=sorted(RANDOM_SHAPES),
                   help="a model of this shape with random weights instead of --model's (whose tokenizer is used)")
    return p


class Runtime:
    """The device and dtype a script measures on, with what timing and memory need there: on CUDA, kernels run
    asynchronously, so every timer reads after torch.cuda.synchronize(); device memory comes from the caching
    allocator's peak."""

    def __init__(self, torch, args: argparse.Namespace):
        self.torch = torch
        self.dtype = getattr(torch, DTYPES[args.dtype])
        self.dtype_name = DTYPES[args.dtype]
        try:
            self.device = torch.device(args.device)
        except RuntimeError as e:
            die(f"--device {args.device}: {e}")
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            if not torch.cuda.is_available():
                die(f"--device {args.device}: this torch sees no CUDA device")
            if self.device.index is not None and self.device.index >= torch.cuda.device_count():
                die(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s)")
            torch.cuda.set_device(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type != "cpu":
            die(f"--device {args.device}: expected cpu, cuda or cuda:N")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def tensor(self, rows) -> "object":
        return self.torch.tensor(rows, dtype=self.torch.long, device=self.device)

    def peak_device_mb(self) -> float | None:
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**20

    def name(self) -> str:
        return f"{self.device}, {self.dtype_name}" + (f" ({self.torch.cuda.get_device_name(self.device)})"
                                                       if self.cuda else "")

    def load_model(self, transformers, load_dir: str, load_kw: dict, random_shape: str | None):
        """The model in eval mode on the device in the dtype: from the file, or of a random shape."""
        if random_shape:
            self.torch.manual_seed(1)
            config = transformers.LlamaConfig(**RANDOM_SHAPES[random_shape])
            model = transformers.LlamaForCausalLM(config).to(dtype=self.dtype)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(load_dir, dtype=self.dtype, **load_kw)
        model = model.to(self.device)
        model.eval()
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        if dtypes != [str(self.dtype)]:
            die(f"expected {self.dtype} parameters, got {dtypes}")
        return model


def parse_args() -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement, median reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement (default 1)")
    p.add_argument("--load-reps", type=int, default=3, help="model loads timed, median reported (default 3)")
    a = p.parse_args()
    if a.threads < 1 or a.reps < 1 or a.warmup < 0 or a.load_reps < 1:
        p.error("--threads, --reps and --load-reps must be >= 1, --warmup >= 0")
    return a


def vm_status_mb(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def other_runnable_tasks(samples: int = 10, interval: float = 0.05) -> int:
    """Median count of runnable tasks on the machine besides this one (the 4th field of /proc/loadavg)."""
    counts = []
    try:
        for _ in range(samples):
            counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
            time.sleep(interval)
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, int(statistics.median(counts)))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# The helpers below are shared with peft_train_bench.py (which imports this module; nothing here imports
# torch at module level, so the thread variables can still be set before torch is loaded).


def stdout_to_stderr():
    """Stdout carries only the JSON: send everything else (library prints, progress bars) to stderr, at the
    file-descriptor level so that native code cannot write to it either. Returns the real stdout."""
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return json_out


def resolve_model(model: Path) -> tuple[Path, str, dict]:
    """(resolved path, folder for from_pretrained, extra from_pretrained kwargs); dies on a bad path."""
    model_path = model.expanduser().resolve()
    if not model_path.exists():
        die(f"model not found: {model} (fetch it with `cargo run --release -p engram-cli -- fetch`; "
            "it lands in the engram cache, ~/.cache/engram)")
    if model_path.is_file():
        if model_path.suffix.lower() != ".gguf":
            die(f"{model_path} is not a .gguf file")
        with open(model_path, "rb") as f:
            if f.read(4) != b"GGUF":
                die(f"{model_path} is not a GGUF file (bad magic)")
        load_dir, load_kw = str(model_path.parent), {"gguf_file": model_path.name}
    elif (model_path / "config.json").is_file():
        load_dir, load_kw = str(model_path), {}
    else:
        die(f"{model_path} is neither a GGUF file nor a folder with config.json")
    return model_path, load_dir, load_kw


def read_prompt(prompt_file: Path) -> tuple[bytes, str]:
    if not prompt_file.is_file():
        die(f"prompt file not found: {prompt_file}")
    prompt_bytes = prompt_file.read_bytes()
    return prompt_bytes, prompt_bytes.decode("utf-8")  # used exactly as stored, like include_str! in Rust


def import_torch_stack(threads: int, load_kw: dict):
    """Sets the thread and offline variables, then imports torch and transformers (and the GGUF loading
    modules, so that a timed load does not include importing them). Returns (torch, transformers)."""
    # Threads and offline mode must be set before torch/transformers are imported.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantisation progress bar is a plain tqdm

    try:
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        # Imported up front so that load_s measures reading the model, not importing Python modules.
        import transformers.models.llama.modeling_llama  # noqa: F401
        if "gguf_file" in load_kw:
            import gguf  # noqa: F401
            import transformers.integrations.ggml  # noqa: F401
            import transformers.modeling_gguf_pytorch_utils  # noqa: F401
    except ImportError as e:
        die(f"{e}; create the venv with `bash benches/compare/setup.sh` and run this script with "
            "benches/compare/.venv/bin/python")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    return torch, transformers


def machine_load_start() -> tuple[tuple[float, float, float], int]:
    """(os.getloadavg(), other runnable tasks); warns on stderr when the machine is not idle."""
    load_start = os.getloadavg()
    busy_start = other_runnable_tasks()
    if busy_start >= 1:
        log(f"warning: {busy_start} other runnable task(s) on the machine (load average {load_start[0]:.1f}): "
            "other processes are using the CPU, the figures will be low and noisy")
    return load_start, busy_start


def emit_json(report: dict, json_out, json_path: Path | None) -> None:
    """Writes the report to the real stdout (from stdout_to_stderr()) and to json_path when given."""
    text = json.dumps(report, indent=1)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
    json_out.write(text + "\n")
    json_out.flush()


def main() -> int:
    args = parse_args()
    json_out = stdout_to_stderr()
    model_path, load_dir, load_kw = resolve_model(args.model)
    prompt_bytes, prompt_text = read_prompt(args.prompt_file)
    torch, transformers = import_torch_stack(args.threads, load_kw)
    from transformers import AutoTokenizer

    rt = Runtime(torch, args)
    rss_after_import_mb = vm_status_mb("VmRSS")
    load_start, busy_start = machine_load_start()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} thread(s), {rt.name()}, model "
        f"{args.random_shape + ' (random weights)' if args.random_shape else model_path}")

    # ---------------------------------------------------------------- load
    tok = model = None
    loads, tok_loads, model_loads = [], [], []
    for i in range(args.load_reps):
        tok = model = None
        gc.collect()
        t0 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(load_dir, **load_kw)
        t1 = time.perf_counter()
        model = rt.load_model(transformers, load_dir, load_kw, args.random_shape)
        rt.sync()
        t2 = time.perf_counter()
        loads.append(t2 - t0)
        tok_loads.append(t1 - t0)
        model_loads.append(t2 - t1)
        log(f"load {i + 1}/{args.load_reps}: {t2 - t0:.2f} s (tokenizer {t1 - t0:.2f} s, model {t2 - t1:.2f} s)")
    rss_after_load_mb = vm_status_mb("VmRSS")
    attn_impl = getattr(model.config, "_attn_implementation", None)
    n_params = sum(p.numel() for p in model.parameters())

    def ids_of_len(n: int) -> list[int]:
        ids = tok(prompt_text).input_ids
        if not ids:
            die("the prompt text tokenizes to nothing")
        return [ids[i % len(ids)] for i in range(n)]  # cycled, like .cycle().take(n) in Rust

    prefill_ids = ids_of_len(PREFILL_TOKENS)
    decode_prompt_ids = ids_of_len(DECODE_PROMPT_TOKENS)

    def timed(fn, label: str, key: str) -> list[float]:
        """fn() -> (wall seconds, process CPU seconds) of its timed part; returns the wall samples."""
        for _ in range(args.warmup):
            fn()
        gc.collect()
        runs = [fn() for _ in range(args.reps)]
        wall = [w for w, _ in runs]
        samples[key] = wall
        samples_cpu[key] = [c for _, c in runs]
        log(f"{label}: " + ", ".join(f"{w * 1e3:.1f}" for w in wall) + " ms wall; "
            + ", ".join(f"{c * 1e3:.1f}" for _, c in runs) + " ms CPU (all threads)")
        return wall

    def argmax_last(logits) -> int:
        return int(logits[0, -1].argmax())

    def greedy(ids: list[int], steps: int) -> tuple[list[int], float, float]:
        """Untimed prefill of ids, then `steps` timed single-token steps; returns new ids, wall and CPU seconds."""
        out = model(input_ids=rt.tensor([ids]), use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        nxt = argmax_last(out.logits)
        new = [nxt]
        rt.sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(steps):
            # Reading the argmax on the host waits for the step's kernels, on CUDA too.
            out = model(input_ids=rt.tensor([[nxt]]), past_key_values=past, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            nxt = argmax_last(out.logits)
            new.append(nxt)
        t1 = time.perf_counter()
        return new, t1 - t0, time.process_time() - c0

    results: dict = {}
    samples: dict = {"load_s": loads}
    samples_cpu: dict = {}
    with torch.inference_mode():
        # ------------------------------------------------------------ sanity
        sanity_ids = tok(SANITY_PROMPT).input_ids
        gen, _, _ = greedy(sanity_ids, SANITY_NEW_TOKENS - 1)
        sanity_text = tok.decode(gen)
        # Random weights answer nonsense: no verdict then.
        sanity_ok = None if args.random_shape else sanity_text.startswith(" Paris.")
        verdict = {None: "random weights", True: "ok"}.get(sanity_ok, "UNEXPECTED: expected it to start with ' Paris.'")
        log(f"sanity: {SANITY_PROMPT!r} -> {sanity_text!r} ({verdict})")

        # ------------------------------------------------------------ prefill
        for b in PREFILL_BATCHES:
            x = rt.tensor([prefill_ids] * b)

            def run_prefill(x=x) -> tuple[float, float]:
                rt.sync()
                c0 = time.process_time()
                t0 = time.perf_counter()
                out = model(input_ids=x, use_cache=False, logits_to_keep=1)
                _ = out.logits.sum().item()  # waits for the result (CPU eager is synchronous anyway)
                t1 = time.perf_counter()
                return t1 - t0, time.process_time() - c0

            s = timed(run_prefill, f"prefill b{b} x {PREFILL_TOKENS}", f"prefill_b{b}_s")
            results[f"prefill_b{b}_tok_s"] = b * PREFILL_TOKENS / statistics.median(s)

        # ------------------------------------------------------------ decode
        decode_runs: list[list[int]] = []

        def run_decode() -> tuple[float, float]:
            new, wall, cpu = greedy(decode_prompt_ids, DECODE_STEPS)
            decode_runs.append(new)
            return wall, cpu

        s = timed(run_decode, f"decode {DECODE_STEPS} steps", "decode_64_steps_s")
        results["decode_b1_tok_s"] = DECODE_STEPS / statistics.median(s)
        if any(r != decode_runs[0] for r in decode_runs):
            log("warning: greedy decode was not deterministic across repetitions")

    # VmHWM, not ru_maxrss: Linux carries the parent's maxrss across fork+exec, so a child of a big process
    # (engram-bench after its training step) would report the parent's peak.
    peak_rss_mb = vm_status_mb("VmHWM")

    report = {
        "load_s": statistics.median(loads),
        "prefill_b1_tok_s": results["prefill_b1_tok_s"],
        "prefill_b4_tok_s": results["prefill_b4_tok_s"],
        "decode_b1_tok_s": results["decode_b1_tok_s"],
        "peak_rss_mb": peak_rss_mb,
        "peak_device_mb": rt.peak_device_mb(),
        "device": str(rt.device),
        "dtype": rt.dtype_name,
        "random_shape": args.random_shape,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "threads": args.threads,
        # extras
        "load_tokenizer_s": statistics.median(tok_loads),
        "load_model_s": statistics.median(model_loads),
        "rss_after_import_mb": rss_after_import_mb,
        "rss_after_load_mb": rss_after_load_mb,
        "reps": args.reps,
        "warmup": args.warmup,
        "load_reps": args.load_reps,
        "torch_num_threads": torch.get_num_threads(),
        "attn_implementation": attn_impl,
        "parameters": n_params,
        "model": str(model_path),
        "prompt_file_sha256": hashlib.sha256(prompt_bytes).hexdigest(),
        "prefill_prompt_ids": prefill_ids,
        "decode_prompt_ids": decode_prompt_ids,
        "decode_generated_ids": decode_runs[0],
        "sanity_prompt": SANITY_PROMPT,
        "sanity_continuation": sanity_text,
        "sanity_generated_ids": gen,
        "sanity_ok": sanity_ok,
        "samples": samples,
        "samples_cpu": samples_cpu,
        "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "other_runnable_tasks_start_end": [busy_start, other_runnable_tasks()],
        "python_version": platform.python_version(),
        "cpu": cpu_name(),
        "definitions": DEFINITIONS,
    }

    rows = [
        ("load (s)", f"{report['load_s']:.2f}",
         f"tokenizer {report['load_tokenizer_s']:.2f} + model {report['load_model_s']:.2f}, median of {args.load_reps}"),
        (f"prefill tok/s, {PREFILL_TOKENS} tokens, batch 1", f"{report['prefill_b1_tok_s']:.1f}",
         f"{statistics.median(samples['prefill_b1_s']) * 1e3:.1f} ms / forward"),
        (f"prefill tok/s, {PREFILL_TOKENS} tokens, batch 4", f"{report['prefill_b4_tok_s']:.1f}",
         f"{statistics.median(samples['prefill_b4_s']) * 1e3:.1f} ms / forward"),
        (f"decode tok/s, {DECODE_STEPS} steps, batch 1", f"{report['decode_b1_tok_s']:.1f}",
         f"{statistics.median(samples['decode_64_steps_s']) * 1e3 / DECODE_STEPS:.2f} ms / token"),
        ("peak RSS (MB)", f"{peak_rss_mb:.0f}", f"after imports {rss_after_import_mb:.0f} MB, after load {rss_after_load_mb:.0f} MB"),
    ]
    if rt.cuda:
        rows.append(("peak device memory (MB)", f"{rt.peak_device_mb():.0f}", "torch.cuda.max_memory_allocated"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    log("")
    log(f"PyTorch {torch.__version__} + transformers {transformers.__version__}, {args.threads} thread(s), "
        f"{rt.name()}, attn={attn_impl}, medians of {args.reps} reps ({args.warmup} warm-up)")
    for name, val, note in rows:
        log(f"  {name:<{w0}}  {val:>{w1}}   ({note})")
    log(f"  sanity: {SANITY_PROMPT!r} -> {sanity_text!r}")

    emit_json(report, json_out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
