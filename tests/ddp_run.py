"""Run by test_distributed.py, alone or under torchrun: tune a tiny prefix; every rank saves what it ends with.

usage: ddp_run.py OUT_DIR RUN_DIR|- INTERRUPT_AT_STEP (-1: never)
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # for helpers.py
from helpers import TOK, tiny_base  # noqa: E402

from minprefix import distributed  # noqa: E402
from minprefix.tune import TuneConfig, tune  # noqa: E402

if __name__ == "__main__":
    out, run_dir, interrupt_at = Path(sys.argv[1]), None if sys.argv[2] == "-" else sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    distributed.setup("cpu")
    cfg = TuneConfig(method="prefix-mlp", task="bare-reverse", prompt_len=4, hidden=16, steps=8, batch_size=9,
                     eval_every=4, n_train=64, n_dev=16, lr=1e-2)  # 9 rows: shards of 5 and 4

    def on_step(step, loss):
        if step == interrupt_at:
            raise KeyboardInterrupt  # as Ctrl-C would: the loop writes its checkpoint first

    try:
        model, history = tune(tiny_base(), TOK, cfg, run_dir, progress=False, on_step=on_step)
    except KeyboardInterrupt:
        sys.exit(0)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"rows": model.rows().detach(), "history": history}, out / f"rank{distributed.rank()}.pt")
