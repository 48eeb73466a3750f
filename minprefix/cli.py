"""The `minprefix` command: pretrain, evaluate, generate, info, tune, search-prompt, demo."""

import argparse
import sys
from dataclasses import fields

import torch

from .artifacts import fingerprint, load_prompt
from .base import SHIPPED_DIR, PretrainConfig, load_base, pretrain, save_base
from .demo import run_demo
from .hard_prompt import score_templates, search_prompt
from .model import pick_device
from .params import GPT2_FAMILY, format_table, gpt2_config, method_table
from .train import TuneConfig, score, tune
from .world import BARE_TEMPLATE, DOWNSTREAM_TASKS, PRETRAIN_TASKS, TEMPLATES, examples


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _base(args):
    return load_base(pick_device(args.device), args.base or SHIPPED_DIR)




# ---------------------------------------------------------------------------- commands


def cmd_pretrain(args):
    cfg = PretrainConfig(seed=args.seed, bf16=args.bf16, **({"steps": args.steps} if args.steps else {}))
    model = pretrain(cfg, args.run_dir, pick_device(args.device))
    save_base(model.cpu(), args.out, {"pretrain": {"steps": cfg.steps, "seed": cfg.seed}})
    print(f"saved the base to {args.out}")


def cmd_evaluate(args):
    model, tok = _base(args)
    dev = [ex for t in PRETRAIN_TASKS for ex in examples(t, "dev", 200)]
    print(f"base: {model.num_params():,} parameters, {model.config}")
    print(f"validation loss (every character of {len(dev)} dev examples): "
          f"{score(model, tok, dev, whole_text=True)['loss']:.4f} nats/char")
    print("\n| task | prompt | test examples | exact match | answer loss (dev) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for task in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        test = score(model, tok, examples(task, "test", 200))
        dev = score(model, tok, examples(task, "dev", 200))
        prompt = f"its {len(TEMPLATES[task])} templates" if task in TEMPLATES else "none (bare input)"
        print(f"| {task} | {prompt} | {test['n']} | {100 * test['exact_match']:.1f} % | {dev['loss']:.3f} |")


def cmd_generate(args):
    model, tok = _base(args)
    if args.artifact:
        model = load_prompt(args.artifact, model)
    idx = torch.tensor([tok.encode(args.prompt)], device=next(model.parameters()).device)
    room = model.config.block_size - model.prompt_rows() - idx.size(1)
    if room <= 0:
        raise ValueError(f"the prompt has {idx.size(1)} characters; with {model.prompt_rows()} prompt rows "
                         f"it leaves no room in block_size={model.config.block_size}")
    torch.manual_seed(args.seed)
    out = model.generate(idx, min(args.max_new_tokens, room), temperature=args.temperature,
                         top_k=args.top_k, stop_id=tok.eos_id)
    print(args.prompt + tok.decode(out[0, idx.size(1):].tolist()))


def cmd_info(args):
    model, _ = _base(args)
    print(f"shipped base: {model.config}")
    print(f"parameters: {model.num_params():,} (token table {model.wte.weight.numel():,}, "
          f"positions {model.wpe.weight.numel():,}; the output head is tied to the token table)")
    print(f"fingerprint: {fingerprint(model)}\n")
    cols = ["method", "trainable", "trainable_share", "stored", "stored_share"]
    h = args.hidden or TuneConfig().hidden
    print(f"methods on the shipped base (P={args.prompt_len}, k=d_model, h={h}, as `minprefix tune` trains them):")
    print(format_table(method_table(model.config, args.prompt_len, h=h), cols))
    h = args.hidden or 512
    for name in GPT2_FAMILY:
        print(f"\n{name} (P={args.prompt_len}, k=d_model, h={h}, as in Li & Liang's code):")
        print(format_table(method_table(gpt2_config(name), args.prompt_len, h=h), cols))


def cmd_tune(args):
    base, tok = _base(args)
    known = {f.name for f in fields(TuneConfig)}
    cfg = TuneConfig(**{k: v for k, v in vars(args).items() if k in known and v is not None})
    run_dir = args.run_dir or f"runs/{cfg.method}-{cfg.task}"
    model, history = tune(base, tok, cfg, run_dir, pick_device(args.device), init_from=args.init_from)
    best = max(history, key=lambda h: h["dev_exact_match"])
    test = score(model, tok, examples(cfg.task, "test", 200))
    print(f"{cfg.method} on {cfg.task}: best dev exact match {100 * best['dev_exact_match']:.1f} % "
          f"(step {best['step']}), test exact match {100 * test['exact_match']:.1f} %")
    print(f"artifact: {run_dir}/best.safetensors")


def cmd_search_prompt(args):
    base, tok = _base(args)
    task = args.task if args.task.startswith("bare-") or "-" in args.task else f"bare-{args.task}"
    if task not in DOWNSTREAM_TASKS:
        raise ValueError(f"unknown task {args.task!r}; choose from {', '.join(DOWNSTREAM_TASKS)}")
    skill = task.removeprefix("bare-")
    train, dev = examples(task, "train", 200), examples(task, "dev", 200)
    candidates = list(TEMPLATES.get(skill, ())) + [BARE_TEMPLATE]
    print(f"hand-written templates on the dev split of {task} ({len(dev)} examples):")
    for r in score_templates(base, tok, dev, candidates):
        print(f"  {100 * r['exact_match']:5.1f} %  loss {r['loss']:.3f}  {r['template']!r}")
    start = args.start or "*" * 10 + BARE_TEMPLATE  # AutoPrompt's setting: filler, then the input
    before = score_templates(base, tok, dev, [start])[0]
    found, history = search_prompt(base, tok, train, start, steps=args.steps, top_k=args.top_k, seed=args.seed)
    after = score_templates(base, tok, dev, [found])[0]
    print(f"search ({args.steps} steps, {len(history)} swaps kept):")
    print(f"  before {100 * before['exact_match']:5.1f} %  loss {before['loss']:.3f}  {start!r}")
    print(f"  after  {100 * after['exact_match']:5.1f} %  loss {after['loss']:.3f}  {found!r}")


def cmd_demo(args):
    run_demo(_base(args), pick_device(args.device), args.figure, steps=args.steps)


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="minprefix", description="Prompt tuning from scratch on a small frozen GPT.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, fn, help):
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")
        c.set_defaults(fn=fn)
        return c

    def with_base(c):
        c.add_argument("--base", help="directory of a base model (default: the shipped one)")
        return c

    c = command("pretrain", cmd_pretrain, "pretrain a base GPT on the tiny world (resumes if interrupted)")
    c.add_argument("--steps", type=int, help="optimizer steps (default: PretrainConfig's)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU only)")
    c.add_argument("--run-dir", default="runs/pretrain", help="checkpoints go here")
    c.add_argument("--out", default="runs/pretrain/base",
                   help="where the finished base goes (minprefix/weights rebuilds the shipped one)")

    with_base(command("evaluate", cmd_evaluate, "score the base on every task's test split"))

    c = with_base(command("generate", cmd_generate, "continue a text with the base (or a tuned prompt)"))
    c.add_argument("--prompt", required=True)
    c.add_argument("--artifact", help="a tuned prompt (.safetensors) to wear")
    c.add_argument("--max-new-tokens", type=int, default=40)
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--top-k", type=int, default=1, help="1 = greedy (default)")
    c.add_argument("--seed", type=int, default=0)

    c = with_base(command("info", cmd_info, "configuration and parameter counts of every method"))
    c.add_argument("--prompt-len", type=int, default=10)
    c.add_argument("--hidden", type=int, help="MLP hidden size (default: tune's for the base, 512 for GPT-2)")

    c = with_base(command("tune", cmd_tune, "tune one method on one task"))
    c.add_argument("--method", required=True, choices=["soft", "prefix", "prefix-direct", "block-prefix", "full"])
    c.add_argument("--task", required=True, choices=PRETRAIN_TASKS + DOWNSTREAM_TASKS)
    c.add_argument("--prompt-len", type=int)
    c.add_argument("--reparam-dim", type=int)
    c.add_argument("--hidden", type=int)
    c.add_argument("--init")
    c.add_argument("--init-text")
    c.add_argument("--steps", type=int)
    c.add_argument("--batch-size", type=int)
    c.add_argument("--lr", type=float)
    c.add_argument("--eval-every", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--grad-checkpointing", action="store_true", default=None)
    c.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast (GPU only)")
    c.add_argument("--run-dir", help="checkpoint.pt and best.safetensors go here (default: runs/METHOD-TASK)")
    c.add_argument("--init-from", help="continue from a saved artifact of the same method")

    c = with_base(command("search-prompt", cmd_search_prompt, "score hard prompts, then search with gradients"))
    c.add_argument("--task", required=True)
    c.add_argument("--start", help="template to start from, with {x} where the input goes "
                   "(default: ten '*' then the bare input)")
    c.add_argument("--steps", type=int, default=40)
    c.add_argument("--top-k", type=int, default=8)
    c.add_argument("--seed", type=int, default=0)

    c = with_base(command("demo", cmd_demo, "hard prompts, soft prompt, prefix and full fine-tuning, side by side"))
    c.add_argument("--steps", type=int, default=300, help="tuning steps per method")
    c.add_argument("--figure", default="figures/demo.png")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"minprefix {args.command}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"\nminprefix {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
