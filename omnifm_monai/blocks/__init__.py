from .embedding_cross_attention import EmbeddingCrossAttention
from .prefix_suffix_prompt import PrefixSuffixPrompt
from .prototype_memory import PrototypeMemory, class_codes

__all__ = ["EmbeddingCrossAttention", "PrefixSuffixPrompt", "PrototypeMemory", "class_codes"]
