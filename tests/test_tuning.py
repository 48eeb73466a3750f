"""The training loop, artifacts, the prompt bank, hard-prompt search and parameter counts."""

import pytest
import torch

from minprefix.artifacts import load_prompt, save_prompt
from minprefix.bank import PromptBank, ensemble_generate
from minprefix.hard_prompt import score_templates, search_prompt
from minprefix.model import GPT, GPTConfig
from minprefix.methods import METHODS, count_table
from minprefix.params import (base_params, block_prefix_params, count_stored, count_trainable, gpt2_config,
                              kv_prefix_params, reparam_params, soft_prompt_params)
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.prompted import MLP_HIDDEN
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.train import TuneConfig, build_method, make_optimizer, tune
from minprefix.world import Tokenizer, examples

TOK = Tokenizer()


def tiny_base(seed=0, n_layer=2):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=48, n_layer=n_layer, n_head=2, d_model=16)).freeze()


def quick(method, **kw):
    small = dict(task="bare-reverse", prompt_len=4, steps=12, batch_size=8, eval_every=4, n_train=64, n_dev=16)
    if METHODS[method].reparam:
        small["hidden"] = 16
    return TuneConfig(method=method, **{**small, **kw})


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


# ---------------------------------------------------------------------------- interruption, NaN


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    cfg = quick("prefix")
    full, full_hist = tune(tiny_base(), TOK, cfg, progress=False)

    def interrupt(step, loss):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False, on_step=interrupt)
    resumed, hist = tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False)
    assert torch.equal(resumed.rows.rows, full.rows.rows)
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

    import minprefix.train as train

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


# ---------------------------------------------------------------------------- artifacts


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4, init="random"),
    lambda b: PrefixGPT(b, 4, reparam_dim=8, hidden=16),
    lambda b: BlockInputPrefixGPT(b, 4, reparam_dim=8, hidden=16),
])
def test_artifact_round_trip_gives_the_same_logits(tmp_path, make):
    base = tiny_base()
    model = make(base)
    save_prompt(model, tmp_path / "p.safetensors", base)
    idx = torch.randint(2, TOK.vocab_size, (2, 6))
    torch.testing.assert_close(load_prompt(tmp_path / "p.safetensors", base)(idx)[0], model(idx)[0])
    assert not (tmp_path / "p.safetensors.tmp").exists()


def test_artifact_on_another_base_is_a_clear_error(tmp_path):
    save_prompt(PrefixGPT(tiny_base(0), 4), tmp_path / "p.safetensors", tiny_base(0))
    with pytest.raises(ValueError, match="was tuned on base"):
        load_prompt(tmp_path / "p.safetensors", tiny_base(1))


def test_corrupt_artifact_is_a_clear_error(tmp_path):
    path = tmp_path / "p.safetensors"
    save_prompt(SoftPromptGPT(tiny_base(), 4), path, tiny_base())
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="not a readable minprefix artifact"):
        load_prompt(path, tiny_base())


# ---------------------------------------------------------------------------- many tasks


@pytest.mark.parametrize("make", [
    lambda b, s: SoftPromptGPT(b, 4, init="random", seed=s),
    lambda b, s: PrefixGPT(b, 4, seed=s),
    lambda b, s: BlockInputPrefixGPT(b, 4, seed=s),
])
def test_mixed_batch_equals_each_row_alone(make):
    base = tiny_base()
    bank = PromptBank({"a": make(base, 1), "b": make(base, 2), "c": make(base, 3)})
    idx = torch.randint(2, TOK.vocab_size, (4, 6), generator=torch.Generator().manual_seed(0))
    tasks = ["b", "a", "c", "b"]
    mixed, _ = bank(idx, tasks=tasks)
    for row, task in enumerate(tasks):
        alone, _ = bank.members[task](idx[row : row + 1])
        torch.testing.assert_close(mixed[row : row + 1], alone)
    out = bank.generate(idx[:, :3], 4, top_k=1, tasks=tasks)
    for row, task in enumerate(tasks):
        assert torch.equal(out[row : row + 1], bank.members[task].generate(idx[row : row + 1, :3], 4, top_k=1))


def test_ensemble_of_one_repeated_prompt_is_that_prompt():
    base = tiny_base()
    bank = PromptBank({"a": PrefixGPT(base, 4, seed=1), "b": PrefixGPT(base, 4, seed=2)})
    idx = torch.randint(2, TOK.vocab_size, (3, 5), generator=torch.Generator().manual_seed(0))
    alone = bank.members["a"].generate(idx, 5, top_k=1)
    for combine in ("mean", "vote"):
        assert torch.equal(ensemble_generate(bank, ["a", "a", "a"], idx, 5, stop_id=-1, combine=combine), alone)
    # two different prompts averaged: each step's token is the argmax of the mean log-probs
    mixed = ensemble_generate(bank, ["a", "b"], idx, 1, stop_id=-1)
    la = torch.log_softmax(bank.members["a"](idx)[0][:, -1], -1)
    lb = torch.log_softmax(bank.members["b"](idx)[0][:, -1], -1)
    assert torch.equal(mixed[:, -1], ((la + lb) / 2).argmax(-1))


def test_bank_rejects_mixed_lengths_and_unknown_tasks():
    base = tiny_base()
    with pytest.raises(ValueError, match="prompt shape"):
        PromptBank({"a": PrefixGPT(base, 4), "b": PrefixGPT(base, 5)})
    bank = PromptBank({"a": PrefixGPT(base, 4)})
    with pytest.raises(ValueError, match="unknown tasks"):
        bank(torch.zeros(1, 3, dtype=torch.long), tasks=["z"])


# ---------------------------------------------------------------------------- hard prompts


def test_token_ids_have_no_gradient():
    """Why hard prompts need search: ids are integers, and autograd refuses integer leaves."""
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(RuntimeError, match="floating point"):
        ids.requires_grad_(True)
    base = tiny_base()
    emb = base.wte(ids).detach().requires_grad_(True)  # the embeddings do have one
    base.run(emb).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_search_only_keeps_improvements():
    base = tiny_base()
    exs = examples("bare-reverse", "train", 32)
    start = "****'{x}': "
    found, history = search_prompt(base, TOK, exs, start, steps=6, top_k=4, batch_size=32, progress=False)
    before, after = score_templates(base, TOK, exs, [start])[0], score_templates(base, TOK, exs, [found])[0]
    assert history, "with a random base some swap should help"
    assert after["loss"] < before["loss"]
    assert found.count("{x}") == 1 and len(found) == len(start)  # only characters were swapped


# ---------------------------------------------------------------------------- parameter counts


def test_formulas_equal_the_modules_built():
    base = tiny_base(n_layer=3)
    L, d, P, k, h = 3, 16, 5, 7, 11
    assert count_trainable(SoftPromptGPT(base, P)) == soft_prompt_params(P, d)
    assert count_trainable(BlockInputPrefixGPT(base, P)) == block_prefix_params(L, P, d)
    assert count_trainable(PrefixGPT(base, P)) == kv_prefix_params(L, P, d)
    assert count_trainable(PrefixGPT(base, P, reparam_dim=k, hidden=h)) == reparam_params(P, k, h, 2 * L * d)
    assert count_trainable(BlockInputPrefixGPT(base, P, reparam_dim=k, hidden=h)) == reparam_params(P, k, h, L * d)
    assert count_stored(PrefixGPT(base, P, reparam_dim=k, hidden=h)) == kv_prefix_params(L, P, d)
    for m in METHODS.values():  # the table's closed forms against the modules each method builds
        model = m.build(base, P, reparam_dim=k if m.reparam == "mlp" else None, hidden=h if m.reparam else None)
        assert count_trainable(model) == m.trainable(base.config, P, k, h if m.reparam else MLP_HIDDEN), m.name
        assert count_stored(model) == m.stored(base.config, P), m.name


def test_gpt2_family_counts():
    """GPT-2 small has 124,439,808 parameters (tied head), the published count of HF's gpt2."""
    assert base_params(gpt2_config("gpt2")) == 124_439_808
    for config in (gpt2_config("gpt2"), GPTConfig(n_layer=3, d_model=24, n_head=2, bias=False), GPTConfig()):
        with torch.device("meta"):  # the closed form against the module built (no memory, no weights)
            assert base_params(config) == GPT(config).num_params()
    medium = {r["method"]: r for r in count_table(gpt2_config("gpt2-medium"), P=10, h=512)}
    assert medium["soft"]["trainable"] == 10 * 1024  # one P x d matrix: 10 x 1024 = 10,240
    assert medium["block-prefix"]["stored"] == 245_760  # 24 such matrices, one per block
    assert medium["prefix"]["stored"] == 491_520  # 2 * 24 * 10 * 1024
    assert medium["prefix-mlp"]["trainable"] == 25_750_016  # Li & Liang's training-time MLP


def test_continuing_from_an_artifact_of_another_length_is_a_clear_error(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 3), tmp_path / "p.safetensors", base)
    with pytest.raises(ValueError, match="match --prompt-len"):
        tune(base, TOK, quick("prefix"), progress=False, init_from=tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="holds a prefix artifact; this run trains soft"):
        tune(base, TOK, quick("soft"), progress=False, init_from=tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="continue with prefix, the direct method"):
        tune(base, TOK, quick("prefix-mlp"), progress=False, init_from=tmp_path / "p.safetensors")


# ---------------------------------------------------------------------------- grids


def test_grid_resumes_without_recomputing_a_finished_cell(tmp_path, monkeypatch):
    import minprefix.lab.grid as grid

    configs = [quick("soft", seed=s, steps=4) for s in (0, 1)] + [quick("prefix", steps=4)]
    path = tmp_path / "grid.json"
    first = grid.run_grid(tiny_base(), TOK, configs[:2], path, progress=False, n_test=16)
    calls = []
    real_tune = grid.tune
    monkeypatch.setattr(grid, "tune", lambda *a, **k: calls.append(a[2]) or real_tune(*a, **k))
    again = grid.run_grid(tiny_base(), TOK, configs, path, progress=False, n_test=16)
    assert calls == [configs[2]]  # only the new cell ran
    assert again[:2] == first and again[2]["config"]["method"] == "prefix"
    rows = grid.summarize(again, by=("method",))
    soft = next(r for r in rows if r["method"] == "soft")
    assert soft["n"] == 2 and soft["mean"] == (first[0]["dev"] + first[1]["dev"]) / 2


def test_grid_records_a_diverged_run_instead_of_stopping():
    import minprefix.lab.grid as grid

    results = grid.run_grid(tiny_base(), TOK, [quick("soft", lr=1e30, steps=3)], progress=False, n_test=8)
    assert results[0]["diverged"] and "loss became" in results[0]["diverged"] and results[0]["dev"] == 0.0
