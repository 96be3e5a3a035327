"""OFA's released network restated in plain torch, and random weights under OFA's parameter names, for
tests/test_ofa_pretrained.py (tests/ofa_files.py writes them in OFA's three published layouts). Independent of
ofasys_fs (nothing here imports it): the forward follows OFA's fairseq model (OFA-Sys/OFA
models/ofa/unify_transformer.py, unify_transformer_layer.py, unify_multihead_attention.py, resnet.py), read for
the math; the parameter names and shapes are OFA's (tests/data/ofa_tiny_keys.tsv lists them for ofa_tiny).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

@dataclasses.dataclass(frozen=True)
class Dims:
    """Sizes of an OFA model (fairseq options): tiny by default, so that tests run in seconds."""

    dim: int = 32
    ffn: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    blocks: tuple = (3, 4, 6)  # ResNet-50 stages 1-3
    token_buckets: int = 8  # token_bucket_size
    max_positions: int = 32  # the positions OFA's token buckets span (1024 in the releases)
    image_buckets: int = 4  # image_bucket_size: image sides up to 4 x 16 = 64 px
    code_image_size: int = 32


RELEASED = {  # OFA's presets (models/ofa/ofa.py), with the released checkpoints' position sizes
    name: Dims(dim, 4 * dim, heads, enc, dec, blocks, 256, 1024, 42, 128)
    for name, dim, heads, enc, dec, blocks in (
        ("ofa_tiny", 256, 4, 4, 4, (3, 4, 6)), ("ofa_medium", 512, 8, 4, 4, (3, 4, 23)),
        ("ofa_base", 768, 12, 6, 6, (3, 4, 23)), ("ofa_large", 1024, 16, 12, 12, (3, 8, 36)),
        ("ofa_huge", 1280, 16, 24, 12, (3, 8, 36)))
}
RELEASED_KEY_COUNTS = {"ofa_tiny": 543, "ofa_medium": 849, "ofa_base": 967, "ofa_large": 1627, "ofa_huge": 1903}


# ---- OFA's parameter names and shapes (fairseq layout) ------------------------------------------------------

def linear(name, out_dim, in_dim):
    return [(f"{name}.weight", (out_dim, in_dim)), (f"{name}.bias", (out_dim,))]


def norm(name, width):
    return [(f"{name}.weight", (width,)), (f"{name}.bias", (width,))]


def batch_norm(name, width):
    return norm(name, width) + [(f"{name}.running_mean", (width,)), (f"{name}.running_var", (width,)),
                                (f"{name}.num_batches_tracked", ())]


def resnet_shapes(prefix, blocks):
    shapes = [(f"{prefix}.conv1.weight", (64, 3, 7, 7))] + batch_norm(f"{prefix}.bn1", 64)
    channels = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256), blocks), start=1):
        for block in range(count):
            name = f"{prefix}.layer{stage}.{block}"
            shapes += [(f"{name}.conv1.weight", (planes, channels, 1, 1))] + batch_norm(f"{name}.bn1", planes)
            shapes += [(f"{name}.conv2.weight", (planes, planes, 3, 3))] + batch_norm(f"{name}.bn2", planes)
            shapes += [(f"{name}.conv3.weight", (4 * planes, planes, 1, 1))] + batch_norm(f"{name}.bn3", 4 * planes)
            if block == 0:
                shapes += [(f"{name}.downsample.0.weight", (4 * planes, channels, 1, 1))]
                shapes += batch_norm(f"{name}.downsample.1", 4 * planes)
            channels = 4 * planes
    return shapes


def attention(name, d):
    return [shape for part in "qkv" for shape in linear(f"{name}.{part}_proj", d.dim, d.dim)] + \
        linear(f"{name}.out_proj", d.dim, d.dim) + [(f"{name}.c_attn", (d.heads,))]


def ffn(name, d):
    return linear(f"{name}.fc1", d.ffn, d.dim) + linear(f"{name}.fc2", d.dim, d.ffn) + \
        norm(f"{name}.ffn_layernorm", d.ffn) + norm(f"{name}.final_layer_norm", d.dim)


NORMFORMER = ("c_attn", "attn_ln", "self_attn_ln", "cross_attn_ln", "ffn_layernorm")  # --scale-heads/-attn/-fc


def fairseq_shapes(d: Dims, vocab: int, normformer: bool = True) -> list:
    """(name, shape) of every tensor of an OFA fairseq checkpoint: with the NormFormer parts of the released
    checkpoints, or without them (OFA's arch defaults)."""
    shapes = normformer_shapes(d, vocab)
    return shapes if normformer else [(name, shape) for name, shape in shapes
                                      if not set(name.split(".")) & set(NORMFORMER)]


def normformer_shapes(d: Dims, vocab: int) -> list:
    """The released checkpoints' tensors, in OFA's order (tests/data/ofa_tiny_keys.tsv)."""
    positions, cells = d.max_positions + 2, d.image_buckets**2 + 1
    token_rows, image_rows = 2 * d.token_buckets - 1, (2 * d.image_buckets - 1) ** 2 + 3
    shapes = [("encoder.version", (1,)), ("encoder.embed_tokens.weight", (vocab, d.dim))]
    shapes += norm("encoder.layernorm_embedding", d.dim) + [("encoder.type_embedding.weight", (2, d.dim))]
    shapes += resnet_shapes("encoder.embed_images", d.blocks) + linear("encoder.image_proj", d.dim, 1024)
    shapes += norm("encoder.patch_layernorm_embedding", d.dim)
    shapes += [("encoder.embed_positions.weight", (positions, d.dim)), ("encoder.embed_image_positions.weight",
                                                                         (cells, d.dim))]
    shapes += norm("encoder.pos_ln", d.dim) + norm("encoder.image_pos_ln", d.dim)
    shapes += linear("encoder.pos_q_linear", d.dim, d.dim) + linear("encoder.pos_k_linear", d.dim, d.dim)
    for i in range(d.encoder_layers):
        name = f"encoder.layers.{i}"
        shapes += attention(f"{name}.self_attn", d) + norm(f"{name}.self_attn_layer_norm", d.dim)
        shapes += norm(f"{name}.attn_ln", d.dim) + ffn(name, d)
    shapes += norm("encoder.layer_norm", d.dim)
    shapes += [(f"encoder.token_rel_pos_table_list.{i}.weight", (token_rows, d.heads)) for i in range(d.encoder_layers)]
    shapes += [(f"encoder.image_rel_pos_table_list.{i}.weight", (image_rows, d.heads)) for i in range(d.encoder_layers)]
    shapes += [("encoder.token_rp_bucket", (d.max_positions, d.max_positions)), ("encoder.image_rp_bucket",
                                                                                  (cells, cells))]
    shapes += [("decoder.version", (1,)), ("decoder.embed_tokens.weight", (vocab, d.dim))]
    shapes += norm("decoder.layernorm_embedding", d.dim)
    shapes += [("decoder.embed_positions.weight", (positions, d.dim)), ("decoder.embed_image_positions.weight",
                                                                         (cells, d.dim))]
    shapes += norm("decoder.pos_ln", d.dim) + norm("decoder.image_pos_ln", d.dim)
    for name in ("self_pos_q", "self_pos_k", "cross_pos_q", "cross_pos_k"):
        shapes += linear(f"decoder.{name}_linear", d.dim, d.dim)
    shapes += norm("decoder.code_layernorm_embedding", d.dim)
    for i in range(d.decoder_layers):
        name = f"decoder.layers.{i}"
        shapes += attention(f"{name}.self_attn", d) + norm(f"{name}.self_attn_ln", d.dim)
        shapes += norm(f"{name}.cross_attn_ln", d.dim) + norm(f"{name}.self_attn_layer_norm", d.dim)
        shapes += attention(f"{name}.encoder_attn", d) + norm(f"{name}.encoder_attn_layer_norm", d.dim)
        shapes += ffn(name, d)
    shapes += norm("decoder.layer_norm", d.dim) + [("decoder.output_projection.weight", (vocab, d.dim))]
    shapes += [(f"decoder.token_rel_pos_table_list.{i}.weight", (token_rows, d.heads)) for i in range(d.decoder_layers)]
    shapes += [(f"decoder.image_rel_pos_table_list.{i}.weight", (image_rows, d.heads)) for i in range(d.decoder_layers)]
    shapes += [("decoder.token_rp_bucket", (d.max_positions, d.max_positions)), ("decoder.image_rp_bucket",
                                                                                  (cells, cells))]
    shapes += [("decoder.image_position_idx", (1 + (d.code_image_size // 8) ** 2 + 769,))]
    return shapes


# ---- OFA's position buckets (make_token_bucket_position, make_image_bucket_position) --------------------------

def token_buckets(bucket_size, max_position):
    relative = torch.arange(max_position)[:, None] - torch.arange(max_position)[None, :]
    mid = bucket_size // 2
    absolute = torch.where((relative < mid) & (relative > -mid), torch.full_like(relative, mid - 1), relative.abs())
    log_position = torch.ceil(torch.log(absolute.float() / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    bucket = torch.where(absolute <= mid, relative, (log_position * torch.sign(relative)).long())
    return bucket + bucket_size - 1


def image_buckets(bucket_size):
    cells = bucket_size**2
    rows, cols = torch.arange(cells) // bucket_size, torch.arange(cells) % bucket_size
    table = torch.empty(cells + 1, cells + 1, dtype=torch.long)
    width = 2 * bucket_size - 1
    table[1:, 1:] = (rows[:, None] - rows[None, :] + bucket_size - 1) * width + (cols[:, None] - cols[None, :]
                                                                                + bucket_size - 1)
    count = width**2 + 3
    table[0, :], table[:, 0], table[0, 0] = count - 3, count - 2, count - 1
    return table


# ---- random weights -----------------------------------------------------------------------------------------

def random_weights(d: Dims, vocab: int, seed: int = 0, normformer: bool = True) -> dict:
    """Random OFA weights of every name and shape, scaled so that activations stay finite and every part matters
    (relative tables, head gains and norms far from their initial values)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in fairseq_shapes(d, vocab, normformer):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith(("running_mean", ".bias")):
            state[name] = torch.randn(shape, generator=generator) * 0.1
        elif name.endswith("c_attn") or (len(shape) == 1 and name.endswith(".weight")):
            state[name] = 1 + torch.randn(shape, generator=generator) * 0.2
        elif len(shape) == 4:
            state[name] = torch.randn(shape, generator=generator) * math.sqrt(1.0 / math.prod(shape[1:]))
        elif "rel_pos_table" in name:
            state[name] = torch.randn(shape, generator=generator) * 0.5
        elif len(shape) == 2:
            state[name] = torch.randn(shape, generator=generator) * (0.5 if "embed" in name else shape[1] ** -0.5)
    state["encoder.version"] = state["decoder.version"] = torch.tensor([3.0])
    for side in ("encoder", "decoder"):
        state[f"{side}.token_rp_bucket"] = token_buckets(d.token_buckets, d.max_positions)
        state[f"{side}.image_rp_bucket"] = image_buckets(d.image_buckets)
    window = d.code_image_size // 8
    codes = [r * d.image_buckets + c + 1 for r in range(window) for c in range(window)]
    state["decoder.image_position_idx"] = torch.tensor([0] + codes + [1024] * 769)
    state["decoder.embed_tokens.weight"] = state["decoder.output_projection.weight"] = state[
        "encoder.embed_tokens.weight"]
    return state


# ---- the forward (inference: dropout and drop-path are identities) ---------------------------------------------

def layer_norm(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-5)


def normformer_norm(x, sd, name):
    """A NormFormer layer norm (attn_ln, ffn_layernorm, ...): the identity when the model was built without it."""
    return layer_norm(x, sd, name) if f"{name}.weight" in sd else x


def dense(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def bn(x, sd, name):
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], False, 0.0, 1e-5)


def resnet(images, sd, blocks):
    name = "encoder.embed_images"
    x = F.max_pool2d(F.relu(bn(F.conv2d(images, sd[f"{name}.conv1.weight"], stride=2, padding=3), sd, f"{name}.bn1")),
                     3, 2, 1)
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            prefix, stride = f"{name}.layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{prefix}.conv1.weight"]), sd, f"{prefix}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{prefix}.conv2.weight"], stride=stride, padding=1), sd, f"{prefix}.bn2"))
            out = bn(F.conv2d(out, sd[f"{prefix}.conv3.weight"]), sd, f"{prefix}.bn3")
            if block == 0:
                x = bn(F.conv2d(x, sd[f"{prefix}.downsample.0.weight"], stride=stride), sd, f"{prefix}.downsample.1")
            x = F.relu(x + out)
    return x


def heads_of(x, heads):
    batch, length, dim = x.shape
    return x.view(batch, length, heads, dim // heads).transpose(1, 2)


def position_bias(queries, keys, sd, q_name, k_name, heads):
    """OFA's absolute-position bias: (q_linear(P) / sqrt(2 head_dim)) k_linear(P)^T per head."""
    q = heads_of(dense(queries, sd, q_name), heads) * (2 * queries.shape[-1] // heads) ** -0.5
    return q @ heads_of(dense(keys, sd, k_name), heads).transpose(-1, -2)


def attention_block(query, memory, sd, name, heads, bias, key_padding=None, causal=False):
    q = heads_of(dense(query, sd, f"{name}.q_proj"), heads) * (2 * query.shape[-1] // heads) ** -0.5
    k, v = heads_of(dense(memory, sd, f"{name}.k_proj"), heads), heads_of(dense(memory, sd, f"{name}.v_proj"), heads)
    logits = q @ k.transpose(-1, -2) + bias
    if causal:
        logits = logits + torch.full(logits.shape[-2:], float("-inf")).triu(1)
    if key_padding is not None:
        logits = logits.masked_fill(key_padding[:, None, None, :], float("-inf"))
    out = torch.softmax(logits.float(), dim=-1) @ v
    if f"{name}.c_attn" in sd:
        out = out * sd[f"{name}.c_attn"][:, None, None]
    return dense(out.transpose(1, 2).flatten(2), sd, f"{name}.out_proj")


def feed_forward(x, sd, name):
    hidden = normformer_norm(F.gelu(dense(layer_norm(x, sd, f"{name}.final_layer_norm"), sd, f"{name}.fc1")), sd,
                             f"{name}.ffn_layernorm")
    return x + dense(hidden, sd, f"{name}.fc2")


def encode(sd, d: Dims, tokens, images):
    """tokens [B, T] (<s> ... </s>, right-padded with 1), images [B, 3, S, S] -> (out, padding, positions)."""
    features = resnet(images, sd, d.blocks)
    rows, cols = features.shape[-2:]
    cells = (torch.arange(rows)[:, None] * d.image_buckets + torch.arange(cols)[None, :] + 1).flatten()
    batch, length, count = tokens.shape[0], tokens.shape[1], rows * cols
    image = dense(features.flatten(2).transpose(1, 2), sd, "encoder.image_proj") + sd["encoder.type_embedding.weight"][1]
    text = sd["encoder.embed_tokens.weight"][tokens] + sd["encoder.type_embedding.weight"][0]
    x = torch.cat([layer_norm(image, sd, "encoder.patch_layernorm_embedding"),
                   layer_norm(text, sd, "encoder.layernorm_embedding")], dim=1)
    padding = torch.cat([torch.zeros(batch, count, dtype=torch.bool), tokens.eq(1)], dim=1)
    positions = torch.cat([
        layer_norm(sd["encoder.embed_image_positions.weight"][cells], sd, "encoder.image_pos_ln").expand(batch, -1, -1),
        layer_norm(sd["encoder.embed_positions.weight"][:length], sd, "encoder.pos_ln").expand(batch, -1, -1)], dim=1)
    absolute = position_bias(positions, positions, sd, "encoder.pos_q_linear", "encoder.pos_k_linear", d.heads)
    token_index = token_buckets(d.token_buckets, d.max_positions)[:length, :length]
    image_index = image_buckets(d.image_buckets)[cells][:, cells]
    for i in range(d.encoder_layers):
        name, bias = f"encoder.layers.{i}", absolute.clone()
        bias[:, :, count:, count:] += sd[f"encoder.token_rel_pos_table_list.{i}.weight"][token_index].permute(2, 0, 1)
        bias[:, :, :count, :count] += sd[f"encoder.image_rel_pos_table_list.{i}.weight"][image_index].permute(2, 0, 1)
        normed = layer_norm(x, sd, f"{name}.self_attn_layer_norm")
        x = x + normformer_norm(attention_block(normed, normed, sd, f"{name}.self_attn", d.heads, bias, padding), sd,
                                f"{name}.attn_ln")
        x = feed_forward(x, sd, name)
    return layer_norm(x, sd, "encoder.layer_norm"), padding, positions


def decode(sd, d: Dims, prev, encoded, entangle=False):
    """Teacher-forced log-probs [B, Tt, V] for decoder input `prev` (<s> ...); `entangle`: OFA without
    --disable-entangle, which adds the raw position rows to the token embeddings."""
    memory, padding, encoder_positions = encoded
    length = prev.shape[1]
    positions = layer_norm(sd["decoder.embed_positions.weight"][:length], sd, "decoder.pos_ln")[None]
    self_bias = position_bias(positions, positions, sd, "decoder.self_pos_q_linear", "decoder.self_pos_k_linear",
                              d.heads)
    cross_bias = position_bias(positions, encoder_positions, sd, "decoder.cross_pos_q_linear",
                               "decoder.cross_pos_k_linear", d.heads)
    index = token_buckets(d.token_buckets, d.max_positions)[:length, :length]
    tokens = sd["decoder.embed_tokens.weight"][prev]
    if entangle:
        tokens = tokens + sd["decoder.embed_positions.weight"][:length]
    y = layer_norm(tokens, sd, "decoder.layernorm_embedding")
    for i in range(d.decoder_layers):
        name = f"decoder.layers.{i}"
        bias = self_bias + sd[f"decoder.token_rel_pos_table_list.{i}.weight"][index].permute(2, 0, 1)
        normed = layer_norm(y, sd, f"{name}.self_attn_layer_norm")
        y = y + normformer_norm(attention_block(normed, normed, sd, f"{name}.self_attn", d.heads, bias, causal=True),
                                sd, f"{name}.self_attn_ln")
        normed = layer_norm(y, sd, f"{name}.encoder_attn_layer_norm")
        y = y + normformer_norm(attention_block(normed, memory, sd, f"{name}.encoder_attn", d.heads, cross_bias,
                                                padding), sd, f"{name}.cross_attn_ln")
        y = feed_forward(y, sd, name)
    logits = layer_norm(y, sd, "decoder.layer_norm") @ sd["decoder.output_projection.weight"].T
    return torch.log_softmax(logits.float(), dim=-1)


def greedy(sd, d: Dims, tokens, images, max_len):
    """Greedy decoding from <s>: <s>, <pad> and tokens already generated never chosen (no-repeat 1-grams), only
    </s> after max_len tokens; (tokens with the final </s>, their log-probs)."""
    encoded = encode(sd, d, tokens, images)
    prev, scores = [0], []
    for step in range(max_len + 1):
        log_probs = decode(sd, d, torch.tensor([prev]), encoded)[0, -1]
        allowed = torch.ones_like(log_probs, dtype=torch.bool)
        allowed[[0, 1, *prev[1:]]] = False
        if step == max_len:
            allowed[:] = False
            allowed[2] = True
        token = int(log_probs.masked_fill(~allowed, float("-inf")).argmax())
        prev.append(token)
        scores.append(float(log_probs[token]))
        if token == 2:
            break
    return prev[1:], scores


def pixels(image, size):
    """OFA's image transform: PIL bicubic resize to size x size, ToTensor, Normalize(0.5, 0.5)."""
    from PIL import Image

    array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
    return ((torch.from_numpy(array).permute(2, 0, 1) / 255) - 0.5) / 0.5
