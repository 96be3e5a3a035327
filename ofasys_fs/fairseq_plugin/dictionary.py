"""fairseq's view of the ofasys_fs vocabulary: what fairseq-generate prints (H-, D-, T- lines) and scores with."""
from __future__ import annotations

from typing import Callable

import torch
from fairseq.data import Dictionary

from ofasys_fs.vocab import Vocabulary


class VocabularyDictionary(Dictionary):
    """A fairseq Dictionary over the task's current Vocabulary (read on every call: fairseq takes the dictionary
    before it loads the checkpoint whose vocabulary then applies). The special ids are the same in both:
    0 <s>, 1 <pad>, 2 </s>, 3 <unk>. `string` decodes as ofasys_fs does: BPE text, other ids as `<bin>_12`."""

    def __init__(self, vocabulary: Callable[[], Vocabulary]):
        super().__init__()  # <s> <pad> </s> <unk> at 0..3, as in ours
        self.vocabulary = vocabulary

    def __len__(self) -> int:
        return len(self.vocabulary())

    def __getitem__(self, index: int) -> str:
        return self.vocabulary().token_string(int(index))

    def string(self, tensor, bpe_symbol=None, escape_unk=False, extra_symbols_to_ignore=None, unk_string=None,
               include_eos=False, separator=" ") -> str:
        """The text of a 1-D tensor of ids (one line per row of a 2-D one), as ofasys_fs decodes it."""
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(self.string(row, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string,
                                         include_eos) for row in tensor)
        ignored = set(extra_symbols_to_ignore or ())
        ids = [int(i) for i in tensor if int(i) not in ignored]
        return self.vocabulary().decode(ids).strip()
