"""Task "asr": speech-to-text (LibriSpeech) with the text_phone target and an auxiliary CTC phone loss."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("asr")
class ASR(Task):
    """Audio -> transcript. The text_phone target also yields the transcript's phones, which the
    label_smoothed_ce_ctc criterion uses for a CTC loss over the audio encoder states; WER."""

    family = "speech"
    default_instruction = ('[AUDIO:wav] <BOS> what is the text corresponding to the voice? <EOS> -> '
                           '[TEXT:text,preprocess=text_phone,add_bos,add_eos]')
    default_metric = "wer"
    default_criterion = "label_smoothed_ce_ctc"
    default_generation = GenerationConfig(max_len_b=200, no_repeat_ngram_size=0)
