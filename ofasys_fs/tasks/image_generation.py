"""Image generation as image codes (docs/image_generation.md): text-to-image and OFA's image infilling. Both need
an image tokenizer (the model's `image_tokenizer` option)."""
import os
from typing import Optional

from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


class ImageOutputTask(Task):
    """A task whose target column `img` holds images; a relative path is made absolute against the data file's
    folder, so that metrics can read the reference images."""

    family = "image_generation"
    image_column = "img"

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        value = row.get(self.image_column)
        if isinstance(value, str) and base_dir and os.path.isfile(os.path.join(base_dir, value)):
            return {**row, self.image_column: os.path.join(base_dir, value)}
        return row


@register_task("text_to_image")
class TextToImage(ImageOutputTask):
    """Caption -> image, generated as the codes of the image tokenizer (the seed README's instruction, with the
    target column named so that it can be trained); score with classifier_accuracy / frechet_distance."""

    default_instruction = ('what is the complete image? caption: [TEXT:text]"? -> '
                           '[IMAGE:img,preprocess=image_vqgan,adaptor=image_vqgan]')
    default_generation = GenerationConfig(guidance_scale=3.0)  # the caption counts 3x (classifier-free guidance)


@register_task("image_infilling")
class ImageInfilling(ImageOutputTask):
    """OFA's pretraining task: an image whose centre (mask_ratio of its area) is blanked -> the whole image, as
    codes; scored with PSNR against the original."""

    default_instruction = "[IMAGE:img,mask_ratio=0.5] what is the complete image? -> [IMAGE:img,preprocess=image_vqgan]"
    default_metric = "psnr"
