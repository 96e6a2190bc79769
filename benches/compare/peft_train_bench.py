#!/usr/bin/env python3
"""PyTorch + PEFT side of engram's LoRA training-step benchmark (see README.md beside this file).

    benches/compare/.venv/bin/python benches/compare/peft_train_bench.py --model PATH.gguf --threads 2 [--json OUT]

Loads the GGUF with transformers (dequantised to f32), wraps it with a PEFT LoRA adapter (r 8, alpha 16, all
seven linear projections of every layer) and times full optimizer steps (forward with labels, backward,
gradient clipping, AdamW) on a fixed 4 x 128 batch cut from prompt.txt. A human table goes to stderr; one
JSON object goes to stdout (and to --json OUT when given). Nothing else is written to stdout.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

# torch_bench.py lives beside this file; it imports nothing heavy at module level (torch is imported by
# import_torch_stack(), after the thread variables are set) and runs nothing unless executed as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_bench import (  # noqa: E402
    HERE,
    Runtime,
    cpu_name,
    die,
    emit_json,
    import_torch_stack,
    log,
    machine_load_start,
    other_runnable_tasks,
    read_prompt,
    resolve_model,
    stdout_to_stderr,
    common_parser,
    vm_status_mb,
)

BATCH = 4
SEQ = 128
ROW_OFFSET = 16  # row r starts at prompt id r * 16 (ids cycled)
LORA_R = 8
LORA_ALPHA = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR = 1e-4
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0
SEED = 0  # torch.manual_seed before get_peft_model: fixes the random init of the LoRA A matrices

DEFINITIONS = {
    "batch": "input_ids [4,128]: row r (0..3), column j (0..127) = ids[(r*16 + j) % len(ids)], ids = prompt.txt "
    "tokenized with the model's tokenizer (default special tokens; no BOS for this GGUF; 209 ids); "
    "labels = input_ids; no padding, no attention mask",
    "loss": "next-token cross-entropy, mean over the 4*127 shifted targets (logits[:, :-1] vs input_ids[:, 1:]), "
    "= transformers' model(input_ids=X, labels=X).loss (checked against a manual computation before training)",
    "lora": "peft LoraConfig(r=8, lora_alpha=16 (scale 2), lora_dropout=0.0, bias='none', task_type='CAUSAL_LM', "
    "target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) on every layer; "
    "get_peft_model after torch.manual_seed(0) (A: peft's default kaiming-uniform init, B: zeros); "
    "base weights frozen f32; model.train()",
    "train_step": "one optimizer step = optimizer.zero_grad(set_to_none=True); "
    "loss = model(input_ids=X, labels=X, use_cache=False).loss; loss.backward(); "
    "clip_grad_norm_(trainable, 1.0); AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, "
    "weight_decay=0.01).step(). f32, default attention (sdpa), no gradient checkpointing",
    "train_step_s": "median wall seconds (time.perf_counter) of one train_step over --reps timed steps that "
    "follow --warmup untimed ones; the same batch every step, built before the timer; loss.item() is read "
    "after the timer stops",
    "train_tok_s": "512 / train_step_s (4*128 input tokens per step)",
    "loss_first_last": "loss_first = loss of the first step (warm-up included), computed at the initial weights "
    "(B = 0, so it is the base model's loss whatever the A init); loss_last = loss of the last step's forward "
    "(before its update)",
    "kl_step": "with --kl, after the fine-tuning steps: the teacher (the same model under "
    "model.disable_adapter(), no grad) reads a 128-token context (ids[(512 + j) % len(ids)]) before each row once, "
    "its log-softmax at the 4*127 positions predicting the row's tokens 1..127 is kept (full vocabulary, as "
    "SELF-PARAM's code does); a step = zero_grad; student logits of the rows; "
    "kl_div(log_softmax(student), teacher_logp, log_target=True, reduction='batchmean') over the 508 rows (T = 1); "
    "backward; clip; AdamW.step. kl_step_s: median wall seconds of --reps steps after --warmup",
    "peak_rss_mb": "VmHWM of /proc/self/status in MiB at the end of the run (not ru_maxrss, which Linux inherits from the parent across fork+exec); "
    "covers one model load and all steps",
}


def parse_args() -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--reps", type=int, default=5, help="timed optimizer steps, median reported (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (default 2)")
    p.add_argument("--kl", action="store_true",
                   help="also time SELF-PARAM's KL-distillation step (see DEFINITIONS['kl_step'])")
    a = p.parse_args()
    if a.threads < 1 or a.reps < 1 or a.warmup < 0:
        p.error("--threads and --reps must be >= 1, --warmup >= 0")
    return a


def main() -> int:
    args = parse_args()
    json_out = stdout_to_stderr()
    model_path, load_dir, load_kw = resolve_model(args.model)
    prompt_bytes, prompt_text = read_prompt(args.prompt_file)
    torch, transformers = import_torch_stack(args.threads, load_kw)
    from transformers import AutoTokenizer

    rt = Runtime(torch, args)

    try:
        import peft
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        die(f"{e}; create the venv with `bash benches/compare/setup.sh` and run this script with "
            "benches/compare/.venv/bin/python")

    # peft asks transformers for is_gradient_checkpointing, which transformers 5 warns is deprecated.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    rss_after_import_mb = vm_status_mb("VmRSS")
    load_start, busy_start = machine_load_start()
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"{torch.get_num_threads()} thread(s), {rt.name()}, model "
        f"{args.random_shape + ' (random weights)' if args.random_shape else model_path}")

    # ---------------------------------------------------------------- load
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(load_dir, **load_kw)
    model = rt.load_model(transformers, load_dir, load_kw, args.random_shape)
    rt.sync()
    load_s = time.perf_counter() - t0
    log(f"load: {load_s:.2f} s")
    n_params_base = sum(p.numel() for p in model.parameters())

    ids = tok(prompt_text).input_ids
    if not ids:
        die("the prompt text tokenizes to nothing")
    rows = [[ids[(r * ROW_OFFSET + j) % len(ids)] for j in range(SEQ)] for r in range(BATCH)]
    x = rt.tensor(rows)

    # ---------------------------------------------------------------- LoRA + optimizer
    torch.manual_seed(SEED)
    lora_cfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS,
                          bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora_cfg)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_params = sum(p.numel() for p in trainable)
    lora_modules = sum(1 for n, _ in model.named_parameters() if n.endswith("lora_A.default.weight"))
    # PEFT keeps the adapter f32 over a half-precision base (autocast_adapter_dtype), as engram does.
    if not trainable or any(p.dtype != torch.float32 for p in trainable):
        die(f"expected f32 trainable LoRA parameters, got {sorted({str(p.dtype) for p in trainable})}")
    attn_impl = getattr(model.config, "_attn_implementation", None)
    log(f"LoRA r={LORA_R} alpha={LORA_ALPHA} on {lora_modules} linear layers: {trainable_params:,} trainable "
        f"parameters ({len(trainable)} tensors) of {n_params_base:,} base; attn={attn_impl}")
    optimizer = torch.optim.AdamW(trainable, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    rss_after_load_mb = vm_status_mb("VmRSS")

    # The loss is what the definition says: mean next-token cross-entropy over all 4*127 shifted targets.
    with torch.no_grad():
        out = model(input_ids=x, labels=x, use_cache=False)
        logits = out.logits
        manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                   x[:, 1:].reshape(-1))
        loss_check = (float(out.loss), float(manual))
        del out, logits, manual
    if abs(loss_check[0] - loss_check[1]) > 1e-4 * max(1.0, abs(loss_check[1])):
        die(f"HF loss {loss_check[0]} != manual mean cross-entropy {loss_check[1]}")
    log(f"loss check at the initial weights: HF {loss_check[0]:.6f}, manual {loss_check[1]:.6f}")

    # ---------------------------------------------------------------- training steps
    def train_step() -> tuple[float, float, float, float]:
        """Returns (wall seconds, process CPU seconds, loss, gradient norm before clipping)."""
        rt.sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, CLIP_NORM)
        optimizer.step()
        rt.sync()
        t1 = time.perf_counter()
        return t1 - t0, time.process_time() - c0, float(loss.detach()), float(grad_norm)

    losses: list[float] = []
    grad_norms: list[float] = []
    for i in range(args.warmup):
        w, c, loss, gn = train_step()
        losses.append(loss)
        grad_norms.append(gn)
        log(f"warm-up step {i + 1}/{args.warmup}: {w:.2f} s wall, {c:.2f} s CPU, loss {loss:.6f}, grad norm {gn:.4f}")
    gc.collect()
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(args.reps):
        w, c, loss, gn = train_step()
        wall.append(w)
        cpu.append(c)
        losses.append(loss)
        grad_norms.append(gn)
        log(f"timed step {i + 1}/{args.reps}: {w:.2f} s wall, {c:.2f} s CPU, loss {loss:.6f}, grad norm {gn:.4f}")

    kl_wall: list[float] = []
    kl_losses: list[float] = []
    if args.kl:
        context = rt.tensor([[ids[(512 + j) % len(ids)] for j in range(SEQ)]] * BATCH)
        with torch.no_grad(), model.disable_adapter():
            t_logits = model(input_ids=torch.cat([context, x], dim=1), use_cache=False).logits
            # Positions SEQ..2*SEQ-2 predict the row's tokens 1..127.
            teacher_logp = torch.log_softmax(t_logits[:, SEQ:2 * SEQ - 1].float(), dim=-1)
            teacher_logp = teacher_logp.reshape(-1, teacher_logp.shape[-1]).contiguous()
            del t_logits

        def kl_step() -> tuple[float, float]:
            rt.sync()
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            logits = model(input_ids=x, use_cache=False).logits[:, :-1]
            student_logp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]).float(), dim=-1)
            loss = torch.nn.functional.kl_div(student_logp, teacher_logp, log_target=True, reduction="batchmean")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, CLIP_NORM)
            optimizer.step()
            rt.sync()
            return time.perf_counter() - t0, float(loss.detach())

        for i in range(args.warmup + args.reps):
            w, loss = kl_step()
            kl_losses.append(loss)
            if i >= args.warmup:
                kl_wall.append(w)
            log(f"KL step {i + 1}/{args.warmup + args.reps}: {w:.2f} s wall, loss {loss:.6f}")

    # VmHWM, not ru_maxrss: Linux carries the parent's maxrss across fork+exec, so a child of a big process
    # (engram-bench after its training step) would report the parent's peak.
    peak_rss_mb = vm_status_mb("VmHWM")
    step_s = statistics.median(wall)
    tokens = BATCH * SEQ
    if not losses[-1] < losses[0]:
        log(f"warning: the loss did not go down ({losses[0]:.6f} -> {losses[-1]:.6f})")

    report = {
        "train_step_s": step_s,
        "train_tok_s": tokens / step_s,
        "peak_rss_mb": peak_rss_mb,
        "peak_device_mb": rt.peak_device_mb(),
        "device": str(rt.device),
        "dtype": rt.dtype_name,
        "random_shape": args.random_shape,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "trainable_params": trainable_params,
        "kl_step_s": statistics.median(kl_wall) if kl_wall else None,
        "kl_losses": kl_losses,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "threads": args.threads,
        # extras
        "losses": losses,
        "grad_norms": grad_norms,
        "loss_check_hf_manual": list(loss_check),
        "samples": {"train_step_s": wall},
        "samples_cpu": {"train_step_s": cpu},
        "reps": args.reps,
        "warmup": args.warmup,
        "batch": BATCH,
        "seq_len": SEQ,
        "tokens_per_step": tokens,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "target_modules": LORA_TARGETS,
                 "modules": lora_modules, "tensors": len(trainable), "seed": SEED},
        "optimizer": {"name": "AdamW", "lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
                      "clip_grad_norm": CLIP_NORM},
        "base_parameters": n_params_base,
        "load_s": load_s,
        "rss_after_import_mb": rss_after_import_mb,
        "rss_after_load_mb": rss_after_load_mb,
        "torch_num_threads": torch.get_num_threads(),
        "attn_implementation": attn_impl,
        "model": str(model_path),
        "prompt_file_sha256": hashlib.sha256(prompt_bytes).hexdigest(),
        "prompt_ids": ids,
        "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "other_runnable_tasks_start_end": [busy_start, other_runnable_tasks()],
        "python_version": platform.python_version(),
        "cpu": cpu_name(),
        "definitions": DEFINITIONS,
    }

    rows_out = [
        (f"train step (s), batch {BATCH} x {SEQ}", f"{step_s:.3f}",
         f"median of {args.reps} after {args.warmup} warm-up; CPU {statistics.median(cpu):.2f} s, all threads"),
        ("train tok/s", f"{report['train_tok_s']:.1f}", f"{tokens} tokens / step"),
        ("loss first -> last", f"{losses[0]:.4f} -> {losses[-1]:.4f}", f"{len(losses)} steps"),
        ("trainable params", f"{trainable_params:,}", f"LoRA r{LORA_R} on {lora_modules} linear layers"),
        ("peak RSS (MB)", f"{peak_rss_mb:.0f}",
         f"after imports {rss_after_import_mb:.0f} MB, after load + LoRA {rss_after_load_mb:.0f} MB"),
    ]
    if rt.cuda:
        rows_out.append(("peak device memory (MB)", f"{rt.peak_device_mb():.0f}", "torch.cuda.max_memory_allocated"))
    w0 = max(len(r[0]) for r in rows_out)
    w1 = max(len(r[1]) for r in rows_out)
    log("")
    log(f"PyTorch {torch.__version__} + transformers {transformers.__version__} + peft {peft.__version__}, "
        f"{args.threads} thread(s), {rt.name()}, attn={attn_impl}, AdamW lr {LR}")
    for name, val, note in rows_out:
        log(f"  {name:<{w0}}  {val:>{w1}}   ({note})")

    emit_json(report, json_out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
