"""`minprefix bench` runs on a tiny configuration and emits every key (its ratios are not checked: not a timed test)."""

import json
import re

import pytest

from minprefix.cli import main

TINY = ["--n-layer", "2", "--d-model", "16", "--n-head", "2", "--batch-size", "2", "--seq-len", "8",
        "--prompt-len", "3", "--repeats", "1", "--warmup", "0", "--gen-prompt", "3", "--gen-new", "4"]
KEYS = ("prefix_over_full_step", "soft_over_full_step", "prefix_over_full_peak_mem", "generate_cache_speedup")
PEFT_KEYS = ("minprefix_over_peft_prefix_step", "generate_speedup_vs_peft")


@pytest.mark.filterwarnings("ignore")
def test_bench_json_has_every_key(capsys):
    pytest.importorskip("peft", reason="the PEFT rows need the dev extra")
    main(["bench", "--json", *TINY])
    result = json.loads(capsys.readouterr().out)
    for key in KEYS + PEFT_KEYS:
        assert result[key] > 0, key
    assert result["generate_cache_same_tokens"] and result["generate_same_tokens_as_peft"]


def test_bench_table_and_a_bad_width(capsys):
    main(["bench", "--no-peft", *TINY])
    out = capsys.readouterr().out
    assert re.search(r"^\| prefix step / full fine-tuning step \| \d+\.\d\d \| at most 0\.70 \|$", out, re.M), out
    assert "| minprefix prefix step / PEFT prefix step | skipped: " in out  # --no-peft
    with pytest.raises(SystemExit):
        main(["bench", "--d-model", "30", "--n-head", "4"])
    assert "--d-model 30 must be divisible by --n-head 4" in capsys.readouterr().err
