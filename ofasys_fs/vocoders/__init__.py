"""Built-in vocoders (log-mel frames -> waveform): every module here registers itself on import."""
from ..registry import import_package_modules

import_package_modules(__file__, __name__)
