"""Task "reverse_words": write the words of a sentence in reverse order, using the plugin's parts."""
import random

from ofasys_fs import register_task
from ofasys_fs.tasks.base import Task

WORDS = "red green blue cat dog bird sun moon tree stone river hill".split()


@register_task("reverse_words")
class ReverseWords(Task):
    """Text -> text with the text_conv adaptor, the focal_ce criterion and the plugin_greedy generator."""

    # no literal text beside the slot: one encoder text group is embedded by one adaptor, and literals use "text"
    default_instruction = 'reverse the words of " [TEXT:src,adaptor=text_conv] " -> [TEXT:tgt]'
    default_criterion = "focal_ce"
    default_metric = "exact_match"
    default_generation = {"generator": "plugin_greedy", "max_len": 16}


def make_rows(count: int, seed: int = 0) -> list[dict]:
    """Synthetic rows: 2-4 random words and the same words reversed."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.sample(WORDS, rng.randint(2, 4))
        rows.append({"src": " ".join(words), "tgt": " ".join(reversed(words))})
    return rows
