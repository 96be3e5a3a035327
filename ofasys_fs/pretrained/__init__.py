"""Weights trained elsewhere, converted to ofasys_fs checkpoints: OFA's fairseq and Hugging Face releases and
OFASys's multitask.pt (docs/pretrained.md). `convert_ofa(src, out)` is what `ofasys-convert-ofa` runs."""
