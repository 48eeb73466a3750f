"""The regular GPT: a small GPT-2-style decoder, written to be read.

Every prompt-tuning method in this package wears this model without changing it. The one
thing its attention must allow is key/value rows that come *before* the current tokens:
the KV cache during generation, and the trainable prefix of prefix tuning.
"""

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .config import arg, validate
from .generate import Generator, KVCache, Reserved, check_ids


@dataclass
class GPTConfig:
    vocab_size: int = arg(104, "characters of the tiny world plus special tokens", low=1, high=10**6)
    block_size: int = arg(128, "context length: prompt or prefix rows *plus* tokens must fit", low=1, high=10**6)
    n_layer: int = arg(4, "transformer blocks", low=1, high=1024)
    n_head: int = arg(4, "attention heads per block", low=1, high=1024)
    d_model: int = arg(128, "width of the residual stream", low=1, high=65536)
    dropout: float = arg(0.0, "dropout on attention weights and residual branches", low=0.0, high=1.0)
    bias: bool = arg(True, "biases in Linear and LayerNorm, as in GPT-2")
    pad_id: int | None = arg(None, "the tokenizer's padding id, which generate refuses; None: every id is a token "
                             "(GPT-2)")

    def __post_init__(self):
        validate(self)  # every field's type and range: a hand-edited config.json is refused before allocating
        if self.d_model % self.n_head:
            raise ValueError(f"`d_model` {self.d_model} must be divisible by `n_head` {self.n_head}: "
                             "each head gets d_model / n_head dimensions")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is not a token id (0 to {self.vocab_size - 1}); None for no pad")

    def check_size(self, most: int = 4 * 10**9):
        """Refuse, before allocating, a GPT of more than `most` parameters (GPT-2 XL has 1.6 billion)."""
        n = 12 * self.n_layer * self.d_model**2 + (self.vocab_size + self.block_size) * self.d_model  # about
        if n > most:
            raise ValueError(f"a GPT of n_layer {self.n_layer}, d_model {self.d_model}, vocab_size {self.vocab_size} "
                             f"and block_size {self.block_size} has about {n:,} parameters, more than {most:,}: "
                             "is the config right?")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


def extend(past_kv, k, v):
    """The keys and values attention sees: past_kv's rows, then this call's k and v (along dim 2).

    A `Reserved` pair with room writes k and v after its rows, in place; anything else (a prefix,
    a cache a reader built by hand) is concatenated.
    """
    if isinstance(past_kv, Reserved) and past_kv.n + k.size(2) <= past_kv.buffers[0].size(2):
        (k_buf, v_buf), n = past_kv.buffers, past_kv.n
        k_buf[:, :, n : n + k.size(2)] = k
        v_buf[:, :, n : n + k.size(2)] = v
        return Reserved(k_buf, v_buf, n + k.size(2))
    return torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)


def attention_mask(n_query: int, n_key: int, device=None) -> torch.Tensor:
    """Boolean (n_query, n_key) mask, True where a query may look.

    The last n_query keys are the queries' own tokens; the n_key - n_query keys before them
    (cache or prefix) are visible to every query. Query i sees keys 0 .. n_key - n_query + i:
    the causal triangle is aligned bottom-right. (SDPA's is_causal aligns it top-left when the
    lengths differ, which would hide the prefix from the first tokens.)
    """
    return torch.ones(n_query, n_key, dtype=torch.bool, device=device).tril(n_key - n_query)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # q, k, v
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x, past_kv=None):
        """x: (B, T, C); past_kv: None or (k, v), each (B, nh, S, hs), rows before x.

        Returns the output (B, T, C) and the keys and values of past rows plus x,
        each (B, nh, S + T, hs), for a KV cache.
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        kv = (k, v) if past_kv is None else extend(past_kv, k, v)  # earlier rows first: (B, nh, S + T, hs)
        k, v = kv
        dropout = self.dropout if self.training else 0.0
        if k.size(2) == T:  # no earlier rows: the plain causal triangle
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif T == 1:  # one new token (generation): it sees every key, no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            mask = attention_mask(T, k.size(2), device=x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y)), kv


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, 4 * config.d_model, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.d_model, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """The regular pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, past_kv=None):
        a, kv = self.attn(self.ln_1(x), past_kv)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, kv


def lm_loss(logits, targets):
    """Mean cross-entropy over positions whose target is not -1 (padding, or an unscored prompt)."""
    if targets is None:
        return None
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets have shape {tuple(targets.shape)}, expected {tuple(logits.shape[:2])}")
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


def run_block(base, block, *args):
    """block(*args), recomputed in backward instead of stored when base.grad_checkpointing is on."""
    if base.grad_checkpointing and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)


class GPT(nn.Module, Generator):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.check_size()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)  # token embeddings
        self.wpe = nn.Embedding(config.block_size, config.d_model)  # learned positions
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input and output embeddings, as in GPT-2
        self.grad_checkpointing = False  # trade compute for memory in training
        self.characters = None  # its tokenizer's characters, where known (a base of the tiny world records them)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2 §2.3)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied head is the token table)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def embed(self, x, start: int = 0):
        """Add the position embeddings of positions start, start+1, ... to vectors x (B, T, C)."""
        if start + x.size(1) > self.config.block_size:
            raise ValueError(
                f"{start + x.size(1)} positions ({start} before, {x.size(1)} now) exceed "
                f"block_size={self.config.block_size}"
            )
        pos = torch.arange(start, start + x.size(1), device=x.device)  # (T,)
        return self.drop(x + self.wpe(pos))

    def head(self, x):
        """Final LayerNorm and the (tied) output projection: (B, T, C) -> (B, T, vocab)."""
        return self.lm_head(self.ln_f(x))

    def run(self, x, cache: KVCache | None = None):
        """Blocks and head on input vectors x (B, T, C) whose positions start at the cache length.

        A caller may put anything in x: token embeddings, or soft-prompt rows in front of them.
        """
        x = self.embed(x, 0 if cache is None else cache.length)
        for i, block in enumerate(self.blocks):
            x, kv = run_block(self, block, x, None if cache is None else cache.layers[i])
            if cache is not None:
                cache.layers[i] = kv
        return self.head(x)

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """idx (B, T) token ids -> logits (B, T, vocab) and the loss if targets (B, T) are given."""
        check_ids(idx, self.config, extra=0 if cache is None else cache.length)
        logits = self.run(self.wte(idx), cache)
        return logits, lm_loss(logits, targets)

    def freeze(self) -> "GPT":
        """Make this the frozen base: no gradients, eval mode. Returns self."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    @classmethod
    def from_hf(cls, hf_model) -> "GPT":
        """An equivalent GPT from a transformers GPT2LMHeadModel (real GPT-2 weights, or a tiny one).

        GPT-2 stores its Linear layers as Conv1D, whose weight is (in, out): those are transposed.
        """
        hf = hf_model.config
        unsupported = {  # GPT-2 options this GPT does not implement: refuse rather than differ silently
            "activation_function": (getattr(hf, "activation_function", "gelu_new"), ("gelu_new", "gelu_pytorch_tanh")),
            "layer_norm_epsilon": (getattr(hf, "layer_norm_epsilon", 1e-5), (1e-5,)),
            "scale_attn_weights": (getattr(hf, "scale_attn_weights", True), (True,)),
            "scale_attn_by_inverse_layer_idx": (getattr(hf, "scale_attn_by_inverse_layer_idx", False), (False,)),
        }
        for name, (value, allowed) in unsupported.items():
            if value not in allowed:
                raise ValueError(f"unsupported GPT-2 setting {name}={value!r}: this GPT supports {allowed}")
        src = hf_model.state_dict()
        if "lm_head.weight" in src and not torch.equal(src["lm_head.weight"], src["transformer.wte.weight"]):
            raise ValueError("the HF model's output head is not tied to its token embeddings; this GPT ties them")
        config = GPTConfig(
            vocab_size=hf.vocab_size, block_size=hf.n_positions, n_layer=hf.n_layer,
            n_head=hf.n_head, d_model=hf.n_embd, dropout=0.0, bias=True,
        )
        model = cls(config)
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name == "lm_head.weight":  # tied to wte
                    continue
                hf_name = "transformer." + name.replace("blocks.", "h.")
                if hf_name not in src:
                    raise ValueError(f"the HF model has no {hf_name} (needed for {name}): is it a GPT2LMHeadModel?")
                w = src[hf_name]
                if name.endswith(transposed):
                    w = w.t()
                if w.shape != p.shape:
                    raise ValueError(f"{hf_name}: shape {tuple(w.shape)} does not fit {name} {tuple(p.shape)}")
                p.copy_(w)
        return model


def is_device_name(name) -> bool:
    """Whether name is one this library runs on: cpu, cuda, cuda:N or mps."""
    return isinstance(name, str) and re.fullmatch(r"cpu|mps|cuda(:\d+)?", name) is not None


def pick_device(name: str | None = None) -> str:
    """The device to run on: `name` if given, else cuda, then mps, then cpu."""
    if name:
        if not is_device_name(name):
            raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N (N a GPU's index, from 0) or mps")
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here")
        if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if name == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available here")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def autocast(device: str, bf16: bool):
    """bf16 autocast on a GPU when asked for; fp32 (a no-op context) otherwise."""
    enabled = bf16 and device.split(":")[0] in ("cuda", "mps")
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=enabled)
