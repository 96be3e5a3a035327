"""Install shim; metadata lives in setup.cfg and pinned dependencies in requirements.txt."""
from pathlib import Path

from setuptools import setup

requirements = [
    line.strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and line.split("=")[0].strip() not in {"pytest", "hypothesis"}
]
setup(install_requires=requirements)
