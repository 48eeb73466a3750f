"""`minprefix demo` (minprefix/lab/demo.py) runs end to end and draws its figure."""

from minprefix.base import load_base
from minprefix.lab.demo import run_demo
from minprefix.methods import METHODS


def test_demo_runs_end_to_end_and_draws_its_figure(tmp_path, capsys):
    base, tok = load_base()
    rows = run_demo((base, tok), figure=tmp_path / "demo.png", steps=2, tasks=("bare-reverse",),
                    methods=("soft", "prefix-mlp"), progress=False)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert [r["method"] for r in rows] == ["soft", "prefix-mlp"]
    out = capsys.readouterr().out
    assert "| base, no tuning |" in out
    for r in rows:  # the demo's P is 10; its counts are the methods table's, and its table prints them
        m = METHODS[r["method"]]
        assert r["trainable"] == m.trainable(base.config, 10) and r["stored"] == m.stored(base.config, 10)
        assert f"| {m.label} (`{m.name}`) | {r['trainable']:,} | " in out
