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


def test_the_compiled_columns_print_beside_the_eager_ones_and_never_for_a_step_that_saves_nothing(capsys):
    """print_table with a `compiled` entry (the shape compiled_steps returns; compiling itself is tested in
    test_train)."""
    from minprefix.lab.bench import print_table

    names = ("full", "prefix-mlp", "soft")
    r = {"device": "cpu", "prefix_over_full_step": 0.8, "soft_over_full_step": 0.85, "prefix_over_full_peak_mem": 0.7,
         "generate_cache_speedup": 3.0, "seconds_per_step": dict.fromkeys(names, 1.0),
         "generate_cache_same_tokens": True, "peft_skipped": "peft is not installed",
         "compiled": {"prefix_over_full_step": 0.72, "soft_over_full_step": 0.81,
                      "seconds_per_step": {"full": 1.1, "prefix-mlp": 0.5, "soft": 0.9},
                      "eager_seconds_per_step": dict.fromkeys(names, 1.0), "compile_seconds": dict.fromkeys(names, 5.0),
                      "speedup": {"full": 1 / 1.1, "prefix-mlp": 2.0, "soft": 1 / 0.9},
                      "break_even_steps": {"full": None, "prefix-mlp": 10.0, "soft": 50.0}}}
    print_table(r)
    out = capsys.readouterr().out
    assert "| prefix step / full fine-tuning step | 0.80 | 0.72 | at most 0.70 |" in out, out
    assert "| full | 1000.0 | 1100.0 | 0.91 | 5.0 | never |" in out, out
    assert "| prefix-mlp | 1000.0 | 500.0 | 2.00 | 5.0 | 10 |" in out, out
