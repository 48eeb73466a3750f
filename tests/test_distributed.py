"""Training under torchrun with DistributedDataParallel: 2 CPU processes, gloo."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = str(Path(__file__).parent / "ddp_run.py")


def run(out, run_dir="-", interrupt_at=-1, ranks=2):
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    done = subprocess.run([sys.executable, *launcher, SCRIPT, str(out), str(run_dir), str(interrupt_at)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(p, weights_only=False) for p in sorted(Path(out).glob("rank*.pt"))]


@pytest.mark.slow
def test_two_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    rank0, rank1 = run(tmp_path / "ddp")
    (single,) = run(tmp_path / "single", ranks=1)
    assert torch.equal(rank0["rows"], rank1["rows"]), "the ranks' prefixes differ: gradients were not averaged"
    torch.testing.assert_close(rank0["rows"], single["rows"], atol=1e-5, rtol=1e-4,
                               msg="2 ranks with shards of 5 and 4 rows differ from 1 process with all 9")
    first, last = single["history"][0]["dev_loss"], rank0["history"][-1]["dev_loss"]
    assert last < first, f"dev loss did not fall: {first:.3f} -> {last:.3f}"


@pytest.mark.slow
def test_an_interrupted_run_resumes_under_torchrun(tmp_path):
    (straight, _) = run(tmp_path / "straight")
    assert run(tmp_path / "resumed", tmp_path / "run", interrupt_at=5) == []  # stopped: nothing saved
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    (resumed, _) = run(tmp_path / "resumed", tmp_path / "run")
    torch.testing.assert_close(resumed["rows"], straight["rows"], atol=1e-6, rtol=1e-5)
