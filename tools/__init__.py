"""Repository scripts that are not part of the installed package (docs generation)."""
