"""The fixed special-token ids every vocabulary starts with (docs/internals.md: 0 <s> 1 <pad> 2 </s> 3 <unk>)."""
from ..tokenizer import SPECIAL_TOKENS

BOS, PAD, EOS, UNK = (SPECIAL_TOKENS.index(token) for token in ("<s>", "<pad>", "</s>", "<unk>"))
