"""Built-in image tokenizers (docs/image_generation.md): every module here registers itself on import."""
from ..registry import import_package_modules

import_package_modules(__file__, __name__)
