"""The training loop (minprefix/train.py): tune leaves the base alone, learns, resumes, stops on NaN."""


import pytest
import torch
from helpers import TOK, quick, tiny_base

from minprefix.artifacts import load_prompt, save_prompt
from minprefix.methods import METHODS
from minprefix.prefix import PrefixGPT
from minprefix.train import make_optimizer
from minprefix.tune import TuneConfig, build_method, tune


# ---------------------------------------------------------------------------- the frozen base


@pytest.mark.parametrize("method", [m for m in METHODS if m != "full"])
def test_base_is_bit_identical_and_gets_no_gradient(method):
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model, history = tune(base, TOK, quick(method), progress=False)
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    assert all(p.grad is None for p in base.parameters())
    assert history[-1]["step"] == 12


@pytest.mark.parametrize("method", ["soft", "prefix-mlp", "block-prefix"])
def test_optimizer_holds_only_the_methods_parameters(method):
    model = build_method(tiny_base(), TOK, quick(method))
    opt = make_optimizer(model.parameters(), 1e-3, 0.0)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    method_params = {id(p) for n, p in model.named_parameters() if not n.startswith("base.")}
    assert in_opt == method_params and in_opt


def test_full_fine_tuning_trains_a_copy():
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model, _ = tune(base, TOK, quick("full", lr=1e-2), progress=False)
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    assert not torch.equal(model.wte.weight, base.wte.weight)


def test_same_seed_same_numbers():
    runs = [tune(tiny_base(), TOK, quick("prefix-mlp"), progress=False)[1] for _ in range(2)]
    strip = lambda h: [(r["step"], r["dev_loss"], r["train_loss"]) for r in h]
    assert strip(runs[0]) == strip(runs[1])


def test_tuning_learns_a_task_the_base_cannot_do():
    """A learning check with teeth: on a base that knows uppercasing from its instructions, 60 steps of a
    soft prompt lift bare-uppercase (no instruction) from at most 10 % to at least 60 % dev exact match
    (measured: 0 % to about 90 %)."""
    from minprefix.base import load_base

    base, tok = load_base()
    cfg = TuneConfig(method="soft", task="bare-uppercase", steps=60, batch_size=16, eval_every=60, n_dev=50)
    _, history = tune(base, tok, cfg, progress=False)
    assert history[0]["dev_exact_match"] <= 0.10
    assert history[-1]["dev_exact_match"] >= 0.60


def test_stop_at_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path):
    """stop_at: the run ends at the first dev evaluation at or above it, and a resume trains no further."""
    from minprefix.base import load_base

    base, tok = load_base()
    cfg = TuneConfig(method="soft", task="bare-uppercase", steps=400, batch_size=16, eval_every=10, n_dev=50,
                     stop_at=0.5)
    steps = []
    _, history = tune(base, tok, cfg, run_dir=tmp_path, progress=False, on_step=lambda s, loss: steps.append(s))
    assert history[-1]["dev_exact_match"] >= 0.5 > max(h["dev_exact_match"] for h in history[:-1])
    assert steps[-1] == history[-1]["step"] < cfg.steps
    _, again = tune(base, tok, cfg, run_dir=tmp_path, progress=False, on_step=lambda s, loss: steps.append(-1))
    assert again == history and -1 not in steps


# ---------------------------------------------------------------------------- interruption, NaN, continuing


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    cfg = quick("prefix")
    full, full_hist = tune(tiny_base(), TOK, cfg, progress=False)

    def interrupt(step, loss):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False, on_step=interrupt)
    resumed, hist = tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False)
    assert torch.equal(resumed.row_maker.rows, full.row_maker.rows)
    assert [h["dev_loss"] for h in hist] == [h["dev_loss"] for h in full_hist]


def test_nan_stops_with_a_clear_message_and_keeps_the_best(tmp_path):
    def poison(step, loss):
        if step == 5:
            with torch.no_grad():
                model_params[0].fill_(float("nan"))

    base = tiny_base()
    cfg = quick("soft")
    model_params = []
    orig = build_method

    import minprefix.tune as train

    def spy(b, t, c):
        m = orig(b, t, c)
        model_params.extend(p for p in m.parameters() if p.requires_grad)
        return m

    train.build_method = spy
    try:
        with pytest.raises(FloatingPointError, match="loss became nan at step 5"):
            tune(base, TOK, cfg, run_dir=tmp_path, progress=False, on_step=poison)
    finally:
        train.build_method = orig
    kept = load_prompt(tmp_path / "best.safetensors", base)
    assert torch.isfinite(kept.prompt()).all()


def test_continue_from_an_artifact(tmp_path):
    base = tiny_base()
    first, hist = tune(base, TOK, quick("prefix", lr=0.05), run_dir=tmp_path / "a", progress=False)
    _, again = tune(base, TOK, quick("prefix", lr=0.05), run_dir=tmp_path / "b", progress=False,
                    init_from=tmp_path / "a" / "best.safetensors")
    best = min(hist, key=lambda h: (-h["dev_exact_match"], h["dev_loss"]))
    assert again[0]["dev_loss"] == pytest.approx(best["dev_loss"], abs=1e-6)  # starts where the first ended


def test_continuing_from_an_artifact_of_another_length_is_a_clear_error(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 3), tmp_path / "p.safetensors", base)
    with pytest.raises(ValueError, match="match `prompt_len`"):
        tune(base, TOK, quick("prefix"), progress=False, init_from=tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="holds a prefix artifact; this run trains soft"):
        tune(base, TOK, quick("soft"), progress=False, init_from=tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="continue with prefix, the direct method"):
        tune(base, TOK, quick("prefix-mlp"), progress=False, init_from=tmp_path / "p.safetensors")


# ---------------------------------------------------------------------------- gradient checkpointing


@pytest.mark.parametrize("method", list(METHODS))
def test_gradient_checkpointing_is_used_and_gives_the_same_result(method, monkeypatch):
    """For every method, full fine-tuning included (the flag was once set on the frozen base only)."""
    import torch.utils.checkpoint

    real, calls = torch.utils.checkpoint.checkpoint, []
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    runs = [tune(tiny_base(), TOK, quick(method, steps=4, grad_checkpointing=flag), progress=False)
            for flag in (False, True)]
    assert len(calls) == 4 * 2  # 4 steps x 2 blocks, each recomputed in backward
    for a, b in zip(*(trainable_weights(model) for model, _ in runs)):
        torch.testing.assert_close(a, b)


def trainable_weights(model):
    return [p for n, p in model.named_parameters() if not n.startswith("base.")]


# ---------------------------------------------------------------------------- the config


def test_init_text_alone_means_text_init():
    assert TuneConfig(method="soft", init_text="Reverse").init == "text"


# ---------------------------------------------------------------------------- sizes checked before allocating


def test_a_method_too_big_is_refused_with_its_estimate_before_building(monkeypatch):
    monkeypatch.setattr(PrefixGPT, "__init__", lambda *a, **k: pytest.fail("it was built"))
    base = tiny_base(block_size=64)
    with pytest.raises(ValueError, match="`prompt_len` 64 leaves no room for tokens .* at most 63"):
        build_method(base, TOK, quick("prefix", prompt_len=64))
    with pytest.raises(ValueError, match=r"prefix-mlp would train [\d,]+ numbers \(16 GiB in float32.*"
                                         r"over the cap of 2\*\*31"):
        build_method(base, TOK, quick("prefix-mlp", reparam_dim=65536, hidden=65536))


@pytest.mark.slow  # under a minute with a cold compile cache: torch.compile compiles forward and backward
def test_a_compiled_run_gives_the_eager_runs_losses_and_prompt():
    """--compile changes how the step runs, not what it computes: the same losses, dev scores and greedy tokens."""
    base = tiny_base()
    runs = {c: tune(base, TOK, quick("prefix-mlp", steps=4, eval_every=2, n_train=1, compile=c), progress=False)
            for c in (False, True)}
    (eager, eager_history), (compiled, compiled_history) = runs[False], runs[True]
    for a, b in zip(eager_history, compiled_history, strict=True):
        assert a["dev_exact_match"] == b["dev_exact_match"]
        for key in ("dev_loss", "train_loss"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-4), key
    prompt = torch.tensor([TOK.encode("'abcd': ")])
    assert torch.equal(eager.generate(prompt, 6, top_k=1), compiled.generate(prompt, 6, top_k=1))
