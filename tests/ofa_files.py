"""Random-weight OFA checkpoints in OFA's three published layouts (fairseq .pt with its BPE trio, the Hugging Face
port's folder, OFASys's multitask.pt), for tests/test_ofa_pretrained.py. Independent of ofasys_fs."""
import argparse
import json
import os

import numpy as np
import torch

from ofa_reference import Dims

BPE_CORPUS = ["what does the image describe?", "a dog runs on the grass.", "two cats sleep on a red sofa.",
              "which region does the text describe?", "what is the summary of article?", "does the image describe it?"]


def write_bpe_dir(folder):
    """A small GPT-2 style BPE trio: encoder.json and vocab.bpe (byte-level BPE trained here, <|endoftext|> last)
    and a dict.txt listing the GPT-2 ids in an order of its own (not ascending), then fairseq's 3 fillers.
    Returns the dict.txt ids in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    os.makedirs(folder, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator([" " + line for line in BPE_CORPUS] * 20, trainer)
    vocab = tokenizer.get_vocab()
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(folder, "encoder.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    with open(os.path.join(folder, "vocab.bpe"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "".join(f"{' '.join(m) if isinstance(m, list) else m}\n" for m in merges))
    order = [int(i) for i in np.random.default_rng(0).permutation(len(vocab))]
    with open(os.path.join(folder, "dict.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(f"{token} {1000 - rank}\n" for rank, token in enumerate(order))
        handle.writelines(f"madeupword{i:04d} 0\n" for i in range(3))
    return order


def gpt2_ids(folder, text):
    """GPT-2 ids of `text` with the trio's BPE (HF tokenizers, as OFA's GPT2BPE encodes)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE.from_file(os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer.encode(text).ids


def write_fairseq_checkpoint(path, state, d: Dims, codes, bins, image_size, released=True, **extra):
    """OFA's fairseq layout: weights under 'model', the run's options as an argparse.Namespace under 'args', fairseq's
    training state beside them (numpy scalars and an omegaconf config, as real checkpoints hold). `released`: the
    released checkpoints' flags (--scale-* --disable-entangle), else OFA's arch defaults."""
    import omegaconf

    args = argparse.Namespace(arch="ofa_tiny", encoder_embed_dim=d.dim, token_bucket_size=d.token_buckets,
                              image_bucket_size=d.image_buckets, attn_scale_factor=2, scale_attn=released,
                              scale_fc=released, scale_heads=released, disable_entangle=released,
                              no_scale_embedding=True, patch_image_size=image_size, code_dict_size=codes,
                              num_bins=bins, selected_cols="0,4,2")
    torch.save({"args": args, "cfg": {"common": omegaconf.OmegaConf.create({"seed": 7, "fp16": True})},
                "model": state, "optimizer_history": [{"num_updates": np.int64(100), "lr": np.float64(1e-5)}],
                "extra_state": {"best": np.float32(0.5), "metrics": {}}, "last_optimizer_state": None, **extra}, path)


HF_LAYER_NAMES = {"encoder": {"attn_ln": "self_attn_mid_layer_norm", "ffn_layernorm": "ffn_layer_norm"},
                  "decoder": {"self_attn_ln": "self_attn_mid_layer_norm", "encoder_attn": "cross_attn",
                              "encoder_attn_layer_norm": "cross_attn_layer_norm",
                              "cross_attn_ln": "cross_attn_mid_layer_norm", "ffn_layernorm": "ffn_layer_norm"}}


def write_huggingface_folder(folder, state, d: Dims, bpe_dir, dict_order, codes, bins, safetensors=False):
    """The late-2022 Hugging Face port's folder: OFAModel names, config.json, BART-style vocab.json whose ids are
    fairseq's, merges.txt, and added_tokens.json naming <code_i> and <bin_i>."""
    os.makedirs(folder, exist_ok=True)
    weights = {}
    for name, value in state.items():
        if name.endswith("version"):
            continue
        parts = name.split(".")
        if len(parts) > 3 and parts[1] == "layers":
            parts[3] = HF_LAYER_NAMES[parts[0]].get(parts[3], parts[3])
        weights[".".join(parts)] = value
    if safetensors:
        from safetensors.torch import save_file

        tied = ("decoder.embed_tokens.weight", "decoder.output_projection.weight")
        save_file({k: v.contiguous() for k, v in weights.items() if k not in tied}, os.path.join(folder,
                                                                                              "model.safetensors"))
    else:
        torch.save(weights, os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(bpe_dir, "encoder.json"), encoding="utf-8") as handle:
        token_of = {i: token for token, i in json.load(handle).items()}
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({token_of[gpt2]: 4 + line for line, gpt2 in enumerate(dict_order)})
    vocab.update({f"madeupword{i:04d}": len(vocab) for i in range(3)})
    vocab["<mask>"] = len(vocab)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    with open(os.path.join(bpe_dir, "vocab.bpe"), encoding="utf-8") as source:
        merges = source.read()
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write(merges)
    added = [f"<code_{i}>" for i in range(codes)] + [f"<bin_{i}>" for i in range(bins)]
    with open(os.path.join(folder, "added_tokens.json"), "w", encoding="utf-8") as handle:
        json.dump({token: len(vocab) + i for i, token in enumerate(added)}, handle)
    config = {"model_type": "ofa", "d_model": d.dim, "encoder_layers": d.encoder_layers, "decoder_layers":
              d.decoder_layers, "encoder_attention_heads": d.heads, "encoder_ffn_dim": d.ffn, "normformer": True,
              "attn_scale_factor": 2.0, "scale_embedding": False, "entangle_position_embedding": False,
              "token_bucket_size": d.token_buckets, "image_bucket_size": d.image_buckets,
              "vocab_size": state["encoder.embed_tokens.weight"].shape[0], "resnet_type": "resnet50"}
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)


OFASYS_NAMES = {  # OFA (fairseq) -> OFASys prefixes
    "encoder.embed_tokens": "encoder.adaptor.embed_tokens", "decoder.embed_tokens": "decoder.adaptor.embed_tokens",
    "encoder.pos_q_linear": "encoder.adaptor.pos_q_linear", "encoder.pos_k_linear": "encoder.adaptor.pos_k_linear",
    "decoder.self_pos_q_linear": "decoder.adaptor.pos_q_linear",
    "decoder.self_pos_k_linear": "decoder.adaptor.pos_k_linear",
    "encoder.embed_positions": "encoder.adaptor.text.embed_positions",
    "encoder.layernorm_embedding": "encoder.adaptor.text.layernorm_embedding",
    "encoder.pos_ln": "encoder.adaptor.text.layernorm_position",
    "encoder.token_rel_pos_table_list": "encoder.adaptor.text.token_rel_pos_table_list",
    "encoder.token_rp_bucket": "encoder.adaptor.text.token_rp_bucket",
    "encoder.embed_images": "encoder.adaptor.image_resnet.embed_images",
    "encoder.image_proj": "encoder.adaptor.image_resnet.image_proj",
    "encoder.embed_image_positions": "encoder.adaptor.image_resnet.embed_image_positions",
    "encoder.patch_layernorm_embedding": "encoder.adaptor.image_resnet.layernorm_embedding",
    "encoder.image_pos_ln": "encoder.adaptor.image_resnet.layernorm_position",
    "encoder.image_rel_pos_table_list": "encoder.adaptor.image_resnet.image_rel_pos_table_list",
    "encoder.image_rp_bucket": "encoder.adaptor.image_resnet.image_rp_bucket",
    "decoder.embed_positions": "decoder.adaptor.text.embed_positions",
    "decoder.layernorm_embedding": "decoder.adaptor.text.layernorm_embedding",
    "decoder.pos_ln": "decoder.adaptor.text.layernorm_position",
    "decoder.token_rel_pos_table_list": "decoder.adaptor.text.token_rel_pos_table_list",
    "decoder.token_rp_bucket": "decoder.adaptor.text.token_rp_bucket",
    "decoder.embed_image_positions": "decoder.adaptor.image_vqgan.embed_code_positions",
    "decoder.code_layernorm_embedding": "decoder.adaptor.image_vqgan.layernorm_embedding",
    "decoder.image_pos_ln": "decoder.adaptor.image_vqgan.layernorm_position",
    "decoder.image_rel_pos_table_list": "decoder.adaptor.image_vqgan.code_rel_pos_table_list",
    "decoder.image_rp_bucket": "decoder.adaptor.image_vqgan.code_rp_bucket",
    "decoder.image_position_idx": "decoder.adaptor.image_vqgan.code_position_idx",
}


def ofasys_name(name):
    for prefix, target in OFASYS_NAMES.items():
        if name == prefix or name.startswith(prefix + "."):
            return target + name[len(prefix):]
    return name


def write_ofasys_checkpoint(path, state, d: Dims, dict_order, codes, bins, seed=1):
    """OFASys's multitask.pt: adaptor names, split type embeddings, no output projection, an audio adaptor of its
    own, and embedding rows in an order of their own named by global_dict_indices (text tokens `<text>_<id>`).
    Returns the row each of OFA's ids went to."""
    names = ["<s>", "<pad>", "</s>", "<unk>"] + [f"<text>_{i}" for i in dict_order] + \
        [f"<text>_madeupword{i:04d}" for i in range(3)] + ["<mask>"] + [f"<code>_{i}" for i in range(codes)] + \
        [f"<bin>_{i}" for i in range(bins)]
    rows = [int(r) for r in np.random.default_rng(seed).permutation(len(names) + 2)[:len(names)]]
    embedding = torch.zeros(len(names) + 2, d.dim)
    embedding[torch.tensor(rows)] = state["encoder.embed_tokens.weight"]
    model = {ofasys_name(k): v for k, v in state.items() if k not in (
        "encoder.type_embedding.weight", "decoder.output_projection.weight", "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight")}
    model["encoder.adaptor.embed_tokens.weight"] = model["decoder.adaptor.embed_tokens.weight"] = embedding
    model["encoder.adaptor.text.type_embedding.weight"] = state["encoder.type_embedding.weight"][:1].clone()
    model["encoder.adaptor.image_resnet.type_embedding.weight"] = state["encoder.type_embedding.weight"][1:].clone()
    model["decoder.adaptor.text.type_embedding.weight"] = torch.randn(1, d.dim)
    model["encoder.adaptor.audio_fbank.subsample.conv.0.weight"] = torch.randn(d.dim, 1, 3, 3)
    global_dict = {name: row for name, row in zip(names, rows)}
    global_dict["<extra>_0"] = len(names)  # a row of a kind ofasys_fs has no ids for
    torch.save({"args": None, "cfg": {}, "model": model, "global_dict_indices": global_dict,
                "configstore": {"model": {"unify": {"arch": "ofa_tiny", "attn_scale_factor": 2}}}}, path)
