"""`minprefix bench`: what a tuning step costs against full fine-tuning and against transformers + PEFT.

Every figure is a ratio of two things measured in the same run, steps interleaved (A, B, A, B, ...)
so that a busy machine slows both alike; each time is the median over repeats. With the base
frozen, backward skips the weights' gradients: about 4N FLOPs per token against 6N, a ratio near
0.67 for the matrix products (LayerNorm, softmax and the optimizer do not shrink as much).
"""

import statistics
import time
from dataclasses import dataclass

import torch

from ..config import arg, validate
from ..methods import FULL, PREFIX, PREFIX_MLP, SOFT
from ..model import GPT, GPTConfig, autocast
from ..scoring import table
from ..train import make_optimizer
from ..tune import TuneConfig
from .grid import run_grid


@dataclass
class BenchConfig:
    n_layer: int = arg(6, "layers of the benchmark GPT", low=1, high=96)
    d_model: int = arg(256, "width", low=8, high=8192)
    n_head: int = arg(8, "attention heads", low=1, high=128)
    vocab_size: int = arg(104, "vocabulary (104: the tiny world's characters)", low=2, high=262144)
    batch_size: int = arg(16, "rows per training step", low=1, high=4096)
    seq_len: int = arg(128, "tokens per row", low=2, high=8192)
    prompt_len: int = arg(10, "P: soft-prompt rows or prefix positions", low=1, high=4096)
    repeats: int = arg(10, "timed steps per method (the median counts)", low=1, high=10_000)
    warmup: int = arg(3, "untimed steps per method first", low=0, high=1000)
    gen_prompt: int = arg(20, "prompt tokens when generating", low=1, high=4096)
    gen_new: int = arg(100, "new tokens when generating", low=1, high=4096)
    bf16: bool = arg(False, "bf16 autocast (CUDA only)")
    compile: bool = arg(False, "also time every training step compiled (torch.compile), and the compile time")

    def __post_init__(self):
        validate(self)
        self.gpt_config()  # the model's own checks (d_model divisible by n_head), before any work

    def gpt_config(self) -> GPTConfig:
        block = max(self.prompt_len + self.seq_len, self.prompt_len + self.gen_prompt + self.gen_new)
        return GPTConfig(vocab_size=self.vocab_size, block_size=block, n_layer=self.n_layer, n_head=self.n_head,
                         d_model=self.d_model, dropout=0.0)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, repeats: int, warmup: int, device) -> dict[str, float]:
    """Median seconds of each function, called in turn: A, B, C, A, B, C, ..."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def train_step(model, batch, bf16=False, device="cpu"):
    """One optimizer step of the model's trainable parameters: the function that gets timed."""
    opt = make_optimizer(model.parameters(), 1e-4, 0.0)

    def step():
        with autocast(device, bf16):
            _, loss = model(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, opt


def step_memory(model, batch, opt, step, device) -> int:
    """Peak bytes of a training step: weights, gradients, optimizer state and what forward saves for backward.

    On CUDA the allocator's own peak; on CPU the sum of those four (PyTorch does not track CPU peaks).
    """
    step()  # the optimizer state exists from the first step on
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*batch)[1].backward()
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    grads = [p for p in model.parameters() if p.requires_grad]
    unique = {p.untyped_storage().data_ptr(): p for p in model.parameters()}.values()
    return nbytes(unique) + nbytes(grads) + nbytes(state) + sum(saved.values())


OP_KINDS = {  # profiler op name -> what it is, for `profile_steps`
    "aten::mm": "matrix products", "aten::addmm": "matrix products", "aten::bmm": "matrix products",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention", "aten::gelu": "GELU",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": "attention", "aten::gelu_backward": "GELU",
    "aten::native_layer_norm": "LayerNorm", "aten::native_layer_norm_backward": "LayerNorm",
}


def profile_steps(steps: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Milliseconds per step spent in each kind of op (CPU time of torch.profiler), by method."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, step in steps.items():
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                step()
        kinds = {}
        for e in prof.key_averages():
            kind = OP_KINDS.get(e.key, "everything else")
            kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / 1000 / repeats
        out[name] = kinds
    return out


def print_profile(p: dict):
    kinds = ["matrix products", "attention", "GELU", "LayerNorm", "everything else"]
    names = list(p)
    rows = []
    for kind in kinds + ["total"]:
        v = {n: sum(p[n].values()) if kind == "total" else p[n].get(kind, 0.0) for n in names}
        rows.append([kind] + [f"{v[n]:.0f}" for n in names]
                    + [f"{v[n] / v[FULL.name]:.2f}" if v[FULL.name] else "-" for n in names[1:]])
    print("\n" + table(["ms per step (profiler, CPU time)"] + names + [f"{n} / full" for n in names[1:]], rows))


def compiled_steps(cfg: BenchConfig, base, batch, eager_steps: dict, device) -> dict:
    """The training steps of run_bench compiled, timed interleaved with the eager ones: ratios, compile time,
    break-even."""
    steps, compile_s = {}, {}
    for method in (FULL, PREFIX_MLP, SOFT):
        model = method.build(base, cfg.prompt_len).to(device)
        model.compile()  # nn.Module.compile: calling the model now runs the compiled forward
        steps[method.name] = train_step(model, batch, cfg.bf16, device)[0]
        sync(device)
        t0 = time.perf_counter()
        steps[method.name]()  # the first call compiles forward and backward
        sync(device)
        compile_s[method.name] = time.perf_counter() - t0
    both = interleaved({**{f"eager {n}": s for n, s in eager_steps.items()}, **steps}, cfg.repeats, cfg.warmup, device)
    t, eager = {n: both[n] for n in steps}, {n: both[f"eager {n}"] for n in steps}
    saved = {n: eager[n] - t[n] for n in t}  # seconds a compiled step saves
    return {"seconds_per_step": t, "eager_seconds_per_step": eager, "compile_seconds": compile_s,
            "prefix_over_full_step": t[PREFIX_MLP.name] / t[FULL.name],
            "soft_over_full_step": t[SOFT.name] / t[FULL.name],
            "speedup": {n: eager[n] / t[n] for n in t},
            "break_even_steps": {n: compile_s[n] / saved[n] if saved[n] > 0 else None for n in t}}


def greedy_no_cache(model, idx, n):
    """Greedy decoding by a whole forward pass per new token: what the KV cache saves."""
    for _ in range(n):
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def tokens_per_second(fn, n_tokens, repeats, device) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up, and the tokens to compare
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return n_tokens / statistics.median(times), out


def run_bench(cfg: BenchConfig, device="cpu", peft_too=True, progress=print, profile=False) -> dict:
    """Every ratio of the benchmark in one dict (see the module docstring); PEFT rows need transformers and peft."""
    torch.manual_seed(0)
    base = GPT(cfg.gpt_config()).to(device).freeze()
    idx = torch.randint(1, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)  # no <pad> (0)
    batch = (idx[:, :-1], idx[:, 1:])
    models = {m.name: m.build(base, cfg.prompt_len).to(device) for m in (FULL, PREFIX_MLP, SOFT)}
    steps = {name: train_step(m, batch, cfg.bf16, device) for name, m in models.items()}
    progress(f"timing training steps: {cfg.n_layer} layers, d_model {cfg.d_model}, batch {cfg.batch_size} x "
             f"{cfg.seq_len}, P={cfg.prompt_len}, on {device}")
    t = interleaved({name: s[0] for name, s in steps.items()}, cfg.repeats, cfg.warmup, device)
    mem = {name: step_memory(models[name], batch, s[1], s[0], device) for name, s in steps.items()}
    if profile:
        progress("profiling the same steps")
        result_profile = profile_steps({name: s[0] for name, s in steps.items()}, max(1, cfg.repeats // 3))
    result = {
        "device": str(device), "config": cfg.__dict__, "seconds_per_step": t,
        "prefix_over_full_step": t[PREFIX_MLP.name] / t[FULL.name], "soft_over_full_step": t[SOFT.name] / t[FULL.name],
        "peak_mem_bytes": mem, "prefix_over_full_peak_mem": mem[PREFIX_MLP.name] / mem[FULL.name],
    }
    progress("timing generation with and without the KV cache")
    prefix = PREFIX.build(base, cfg.prompt_len, init="random").to(device).eval()
    prompt = idx[:1, : cfg.gen_prompt]
    cached, out = tokens_per_second(lambda: prefix.generate(prompt, cfg.gen_new, top_k=1), cfg.gen_new,
                                    max(1, cfg.repeats // 3), device)
    uncached, out2 = tokens_per_second(lambda: greedy_no_cache(prefix, prompt, cfg.gen_new), cfg.gen_new,
                                       max(1, cfg.repeats // 3), device)
    if profile:
        result["profile_ms_per_step"] = result_profile
    if cfg.compile:
        progress("compiling the same steps (torch.compile) and timing them")
        result["compiled"] = compiled_steps(cfg, base, batch, {name: s[0] for name, s in steps.items()}, device)
    result.update(generate_tokens_per_s=cached, generate_cache_speedup=cached / uncached,
                  generate_cache_same_tokens=bool(torch.equal(out, out2)))
    if peft_too:
        result.update(peft_rows(cfg, device, progress))
    return result


def peft_rows(cfg: BenchConfig, device, progress) -> dict:
    """minprefix against transformers + PEFT on the same GPT-2 weights (through GPT.from_hf)."""
    try:
        import peft
        import transformers
    except ImportError as e:
        return {"peft_skipped": f"{e.name} is not installed (pip install -e '.[dev]')"}
    progress(f"against transformers {transformers.__version__} + peft {peft.__version__}")
    c = cfg.gpt_config()
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=None, pad_token_id=0,
    )).to(device)
    base = GPT.from_hf(hf).to(device).freeze()
    theirs = peft.get_peft_model(hf, peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.prompt_len))
    ours = PREFIX.build(base, cfg.prompt_len, init="random").to(device)
    with torch.no_grad():  # the same prefix in both: ours is PEFT's (n_layer, 2, n_head, P, head_dim) keys and values
        cache = theirs.get_prompt(batch_size=1)
        kv = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
        ours.row_maker.rows.copy_(ours.to_rows(kv))
    idx = torch.randint(1, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)  # no <pad> (0)
    our_step, _ = train_step(ours, (idx[:, :-1], idx[:, 1:]), cfg.bf16, device)
    opt = make_optimizer(theirs.parameters(), 1e-4, 0.0)

    def their_step():
        with autocast(device, cfg.bf16):
            loss = theirs(input_ids=idx[:, :-1], labels=idx[:, :-1]).loss  # HF shifts labels inside
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t = interleaved({"minprefix": our_step, "peft": their_step}, cfg.repeats, cfg.warmup, device)
    ours.eval(), theirs.eval()
    prompt = idx[:1, : cfg.gen_prompt]
    ours_tps, ours_out = tokens_per_second(lambda: ours.generate(prompt, cfg.gen_new, top_k=1), cfg.gen_new,
                                           max(1, cfg.repeats // 3), device)
    their_tps, their_out = tokens_per_second(lambda: hf_generate_with_prefix(theirs, prompt, cfg), cfg.gen_new,
                                             max(1, cfg.repeats // 3), device)
    return {"peft_seconds_per_step": t, "minprefix_over_peft_prefix_step": t["minprefix"] / t["peft"],
            "generate_speedup_vs_peft": ours_tps / their_tps,
            "generate_same_tokens_as_peft": bool(torch.equal(ours_out, their_out))}


@torch.no_grad()
def hf_generate_with_prefix(peft_model, prompt, cfg: BenchConfig):
    """transformers' greedy generate() with PEFT's prefix placed in its KV cache (PEFT's own generate drops it).

    The cache holds P positions, so P placeholder ids go in front; generate() runs only the real ones.
    """
    import inspect

    hf = peft_model.get_base_model()
    cache = peft_model.get_prompt(batch_size=prompt.size(0))
    ids = torch.cat([torch.zeros(prompt.size(0), cfg.prompt_len, dtype=prompt.dtype, device=prompt.device), prompt], 1)
    name = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.gen_new,
                      min_new_tokens=cfg.gen_new, do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None,
                      **{name: cache})
    return out[:, cfg.prompt_len:]


def print_table(r: dict):
    rows = [("prefix step / full fine-tuning step", "prefix_over_full_step", "at most 0.70"),
            ("soft-prompt step / full fine-tuning step", "soft_over_full_step", "at most 0.75"),
            ("prefix peak memory / full fine-tuning", "prefix_over_full_peak_mem", ""),
            ("minprefix prefix step / PEFT prefix step", "minprefix_over_peft_prefix_step", "at most 0.70"),
            ("greedy tokens/s, minprefix / transformers+PEFT", "generate_speedup_vs_peft", "at least 2"),
            ("greedy tokens/s, KV cache / no cache", "generate_cache_speedup", "")]
    c = r.get("compiled", {})
    print("\n" + table([f"ratio ({r['device']})", "measured"] + (["compiled"] if c else []) + ["goal"],
                        [[label, f"{r[key]:.2f}" if key in r else f"skipped: {r.get('peft_skipped', '')}"]
                         + ([f"{c[key]:.2f}" if key in c else "-"] if c else []) + [goal]
                         for label, key, goal in rows]))
    if c:
        print("\n" + table(["compiled step", "eager ms", "compiled ms", "speed-up", "compile s", "pays after steps"],
                            [[name, f"{1000 * c['eager_seconds_per_step'][name]:.1f}", f"{1000 * t:.1f}",
                              f"{c['speedup'][name]:.2f}", f"{c['compile_seconds'][name]:.1f}",
                              f"{c['break_even_steps'][name]:.0f}" if c["break_even_steps"][name] else "never"]
                             for name, t in c["seconds_per_step"].items()]))
    ms = {k: f"{1000 * v:.1f} ms" for k, v in r["seconds_per_step"].items()}
    print(f"\nsteps: {ms}; same tokens with and without the cache: {r['generate_cache_same_tokens']}"
          + (f"; same tokens as transformers+PEFT: {r['generate_same_tokens_as_peft']}"
             if "generate_same_tokens_as_peft" in r else ""))


GRID_SETTINGS = ((1, 1), (1, 2), (2, 1))  # (processes, torch threads per run) on a 2-core machine


def grid_throughput(base, tok, runs: int = 4, steps: int = 200, settings=GRID_SETTINGS, device="cpu") -> list[dict]:
    """Tuning runs per minute through run_grid, for each (workers, threads) setting, on the same cells."""
    cells = [TuneConfig(method=PREFIX_MLP.name, task="reverse-upper", steps=steps, eval_every=steps // 2, n_dev=100,
                        seed=s) for s in range(runs)]
    out = []
    for workers, threads in settings:
        t0 = time.perf_counter()
        results = run_grid(base, tok, cells, device=device, progress=False, n_test=100, workers=workers,
                           threads=threads)
        seconds = time.perf_counter() - t0
        out.append({"workers": workers, "threads": threads, "runs": runs, "steps": steps, "seconds": seconds,
                    "runs_per_minute": 60 * runs / seconds,
                    "dev_scoring_share": statistics.fmean(r["scoring_seconds"] / r["seconds"] for r in results)})
    return out


def print_grid_table(rows: list[dict]):
    best = max(rows, key=lambda r: r["runs_per_minute"])
    print(table(["processes", "threads per run", "runs per minute", "seconds", "share of a run scoring dev"],
                [[r["workers"], r["threads"], f"{r['runs_per_minute']:.2f}" + (" (fastest)" if r is best else ""),
                  f"{r['seconds']:.1f}", f"{100 * r['dev_scoring_share']:.0f} %"] for r in rows], right_from=0))
    print(f"\n{rows[0]['runs']} runs of {rows[0]['steps']} steps (prefix-mlp on reverse-upper) per setting")
