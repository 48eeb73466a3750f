"""minprefix: hard prompts, soft prompts and prefix tuning, from scratch, on one small frozen GPT."""

from .bank import PromptBank, ensemble_generate
from .base import load_base
from .methods import METHODS
from .model import GPT, Block, GPTConfig, pick_device
from .params import count_frozen, count_stored, count_trainable
from .prefix import BlockInputPrefixBlock, BlockInputPrefixGPT, PrefixBlock, PrefixGPT
from .prompted import DirectPrefix, MLPPrefix, PTuningEncoder
from .soft_prompt import SoftPromptEmbedding, SoftPromptGPT
from .world import Tokenizer

__all__ = [
    "GPT", "GPTConfig", "Block", "Tokenizer", "load_base", "pick_device", "METHODS",
    "DirectPrefix", "MLPPrefix", "PTuningEncoder", "SoftPromptEmbedding", "SoftPromptGPT",
    "PrefixBlock", "PrefixGPT", "BlockInputPrefixBlock", "BlockInputPrefixGPT",
    "PromptBank", "ensemble_generate", "count_trainable", "count_frozen", "count_stored",
]
