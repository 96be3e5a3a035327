"""The continuous-output foundation (docs/design.md §17): decoder over adaptor embeddings (causal switch, K/V cache),
decoder feature pieces, frame_regression masking, the frames generator's ragged stops, Output.save, vocoders and
the audio_mel preprocessor's bad inputs."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile
import torch

from ofasys_fs import GeneralistModel, Instruction
from ofasys_fs.checkpoint import model_description, with_former_defaults
from ofasys_fs.contracts import SampleContext
from ofasys_fs.criteria.frame_regression import guided_attention_penalty
from ofasys_fs.data.encode import EncodeError, RowEncoder
from ofasys_fs.engine.state import load_finetune
from ofasys_fs.errors import ConfigError
from ofasys_fs.generators.frames import AutoregressiveFrames
from ofasys_fs.hub import described_model
from ofasys_fs.inference.outputs import Output
from ofasys_fs.media import MediaError
from ofasys_fs.mel import MelSettings, Waveform
from ofasys_fs.models.generalist import with_continuous_layers
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_criterion, build_metric, build_vocoder
from ofasys_fs.vocab import Vocabulary

INSTRUCTION = "[TEXT:text] -> [AUDIO:wav]"
MODEL = dict(arch="micro", mel_bins=8, mel_frames_per_step=2, mel_win_length=64, mel_hop_length=32, dropout=0.0,
             mel_prenet_dropout=0.0)  # deterministic passes; test_prenet_dropout_* turns it on
RATE = 16000


def tone(seconds: float, hz: float = 440.0, channels: int = 1) -> tuple:
    samples = 0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE).astype(np.float32)
    return (np.stack([samples] * channels) if channels > 1 else samples), RATE


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    vocab = Vocabulary.default()
    model = GeneralistModel(**MODEL)
    model.build(vocab, model.adaptors_for([Instruction.parse(INSTRUCTION)]))
    encoder = RowEncoder("tts", INSTRUCTION, vocab, DataConfig.for_model(model.cfg))
    rows = [{"text": "a short one", "wav": tone(0.05)}, {"text": "a longer sentence here", "wav": tone(0.12, 300)}]
    sample = encoder.collate([encoder.encode(row, SampleContext("train", "tts", i)) for i, row in enumerate(rows)])
    return model.eval(), encoder, sample


def test_the_model_builds_output_adaptors_apart_and_text_models_keep_their_modules(setup):
    model, _, sample = setup
    assert set(model.output_adaptors) == {"audio_mel"} and "audio_mel" not in model.encoder.adaptors
    text_model = GeneralistModel(arch="micro", vocab_size=100)
    assert "output_adaptors" not in text_model._modules
    assert not any(key.startswith("output_adaptors") for key in text_model.state_dict())
    piece = sample["net_input"]["decoder"]
    assert piece["frames"].shape[-1] == 16 and piece["padding_mask"].sum() > 0 and sample["ntokens"] == int(
        (~piece["padding_mask"]).sum())
    assert "prev_output_tokens" not in sample["net_input"] and "target" not in sample


def speech_and_token_outputs(model: GeneralistModel, sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    encoder_out = model.encoder(sample["net_input"]["encoder"])
    with torch.no_grad():
        frames = model.decode_features(sample["net_input"]["decoder"], encoder_out)[0]["frames"]
        logits = model.decoder(torch.tensor([[0, 5, 6, 7]] * 2), encoder_out)[0]
    return frames, logits


def shifted(layers: torch.nn.Module) -> None:
    with torch.no_grad():
        for weight in layers.parameters():
            weight.add_(0.05)


def test_continuous_outputs_run_decoder_layers_of_their_own(setup):
    model, _, sample = setup
    model = copy.deepcopy(model)
    assert len(model.decoder.continuous_layers) == len(model.decoder.layers)
    frames, logits = speech_and_token_outputs(model, sample)
    shifted(model.decoder.continuous_layers)
    frames_after, logits_after = speech_and_token_outputs(model, sample)
    assert torch.equal(logits_after, logits) and not torch.allclose(frames_after, frames)
    shifted(model.decoder.layers)
    assert torch.equal(speech_and_token_outputs(model, sample)[0], frames_after)
    assert GeneralistModel(arch="micro", vocab_size=100).decoder.continuous_layers is None  # no continuous output

    torch.manual_seed(0)
    shared = GeneralistModel(**MODEL, continuous_decoder_layers=False)
    shared.build(Vocabulary.default(), shared.adaptors_for([Instruction.parse(INSTRUCTION)])).eval()
    assert shared.decoder.continuous_layers is None
    assert not any(".continuous_layers." in key for key in shared.state_dict())
    frames = speech_and_token_outputs(shared, sample)[0]
    shifted(shared.decoder.layers)
    assert not torch.allclose(speech_and_token_outputs(shared, sample)[0], frames)


def test_checkpoints_from_before_continuous_layers_rebuild_their_model(setup):
    model, _, _ = setup
    shared = GeneralistModel(**MODEL, continuous_decoder_layers=False)
    shared.build(Vocabulary.default(), model.adaptor_names)
    description = model_description(shared, DataConfig.for_model(shared.cfg))
    for option in ("continuous_decoder_layers", "mel_prenet_dropout", "continuous_cross_positions"):
        del description["model"][option]  # a file written before the options
    state = with_former_defaults({"config": description})
    rebuilt = described_model(state["config"], "old.pt")
    rebuilt.load_state_dict(shared.state_dict())  # strict: the same modules
    assert rebuilt.decoder.continuous_layers is None and rebuilt.cfg.mel_prenet_dropout == 0.0


def test_fine_tuning_starts_continuous_layers_from_the_shared_ones(setup):
    model, _, _ = setup
    vocab = Vocabulary.default()
    text_only = GeneralistModel(**MODEL, vocab_size=len(vocab))  # e.g. converted from OFA's weights
    model = copy.deepcopy(model)
    report = load_finetune({"model": text_only.state_dict(), "vocab": {"hash": vocab.hash}}, "text.pt", model, vocab)
    assert report.missing and not any(".continuous_layers." in key for key in report.missing)
    for name, weight in model.decoder.continuous_layers.state_dict().items():
        assert torch.equal(weight, text_only.decoder.layers.state_dict()[name])
    copies = with_continuous_layers(text_only.state_dict(), model.state_dict())
    assert copies["decoder.continuous_layers.0.ffn.block.fc1.weight"] is not copies["decoder.layers.0.ffn.block.fc1.weight"]


def test_own_cross_position_projections_carry_the_continuous_outputs_alignment_alone(setup):
    """continuous_cross_positions: the speech loss trains its own cross-attention position projections and not the
    token outputs' (their bias is shared by every token task); token outputs never read the speech ones; decoding
    step by step matches the full pass; fine-tuning starts them as copies of the shared ones."""
    base, _, sample = setup
    torch.manual_seed(0)
    model = GeneralistModel(**MODEL, continuous_cross_positions=True)
    model.build(Vocabulary.default(), base.adaptor_names)
    decoder, piece = model.decoder, sample["net_input"]["decoder"]
    encoder_out = model.encoder(sample["net_input"]["encoder"])
    predictions, _ = model.decode_features(piece, encoder_out)
    predictions["frames"].square().sum().backward()
    assert decoder.continuous_cross_pos_q.weight.grad.abs().sum() > 0
    assert decoder.continuous_cross_pos_k.weight.grad.abs().sum() > 0
    assert decoder.cross_pos_q.weight.grad is None and decoder.cross_pos_k.weight.grad is None
    tokens = torch.tensor([[0, 5, 6, 7]] * 2)
    with torch.no_grad():
        logits, _ = decoder(tokens, encoder_out)
        frames = model.decode_features(piece, encoder_out)[0]["frames"]
        decoder.continuous_cross_pos_k.weight.add_(torch.randn_like(decoder.continuous_cross_pos_k.weight))
        assert torch.equal(decoder(tokens, encoder_out)[0], logits)
        moved = model.decode_features(piece, encoder_out)[0]["frames"]
        assert not torch.allclose(moved, frames)
        state: dict = {}
        steps = [model.decode_features({**piece, "frames": piece["frames"][:, :t + 1]}, encoder_out, state)[0]
                 for t in range(piece["frames"].size(1))]
    torch.testing.assert_close(torch.cat([step["frames"] for step in steps], dim=1), moved, atol=1e-5, rtol=1e-4)
    before = {key: value for key, value in base.state_dict().items() if ".continuous_cross_pos_" not in key}
    copies = with_continuous_layers(before, model.state_dict())  # a checkpoint written before the option
    assert torch.equal(copies["decoder.continuous_cross_pos_q.weight"], before["decoder.cross_pos_q.weight"])


def test_incremental_decoding_over_embeddings_matches_the_full_pass(setup):
    model, _, sample = setup
    encoder_out = model.encoder(sample["net_input"]["encoder"])
    piece = sample["net_input"]["decoder"]
    with torch.no_grad():
        full, _ = model.decode_features(piece, encoder_out)
        state: dict = {}
        steps = [model.decode_features({**piece, "frames": piece["frames"][:, :t + 1]}, encoder_out, state)[0]
                 for t in range(piece["frames"].size(1))]
    for key in ("frames", "stop_logits"):
        torch.testing.assert_close(torch.cat([step[key] for step in steps], dim=1), full[key], atol=1e-5, rtol=1e-4)


def test_prenet_dropout_stays_on_in_decoding_and_a_seed_repeats_it(setup):
    """The default mel_prenet_dropout: eval-mode passes differ (Tacotron 2 keeps it at inference), a seeded
    generation repeats itself and another seed does not."""
    _, _, sample = setup
    torch.manual_seed(0)
    model = GeneralistModel(**{**MODEL, "mel_prenet_dropout": 0.5})
    model.build(Vocabulary.default(), model.adaptors_for([Instruction.parse(INSTRUCTION)])).eval()
    assert GeneralistModel(arch="micro").cfg.mel_prenet_dropout == 0.5
    first, second = (speech_and_token_outputs(model, sample)[0] for _ in range(2))
    assert not torch.allclose(first, second)
    generate = lambda seed: AutoregressiveFrames().generate(model, sample, max_len_b=6, min_len=6,  # noqa
                                                            sampling_seed=seed)
    runs = [generate(seed) for seed in (3, 3, 4)]
    frames = [torch.cat([row[0]["frames"] for row in rows]) for rows in runs]
    assert torch.equal(frames[0], frames[1]) and frames[0].shape == frames[2].shape
    assert not torch.allclose(frames[0], frames[2])


def test_the_causal_switch_and_the_decoder_padding_mask(setup):
    model, _, sample = setup
    encoder_out = model.encoder(sample["net_input"]["encoder"])
    x = torch.randn(2, 5, model.cfg.embed_dim)
    changed = x.clone()
    changed[:, 4] = torch.randn(2, model.cfg.embed_dim)  # not a constant shift, which the layer norms remove
    with torch.no_grad():
        causal = [model.decoder(inputs, encoder_out)[0] for inputs in (x, changed)]
        full = [model.decoder(inputs, encoder_out, causal=False)[0] for inputs in (x, changed)]
        padding = torch.tensor([[False] * 4 + [True]] * 2)
        masked = [model.decoder(inputs, encoder_out, causal=False, padding_mask=padding)[0] for inputs in (x, changed)]
    torch.testing.assert_close(causal[0][:, :4], causal[1][:, :4])  # the future is hidden
    assert not torch.allclose(full[0][:, 0], full[1][:, 0])  # every position sees every other
    torch.testing.assert_close(masked[0][:, :4], masked[1][:, :4])  # a padded position is never a key
    with pytest.raises(ValueError, match="incremental decoding needs causal=True"):
        model.decoder(x, encoder_out, {}, causal=False)


def test_frame_regression_ignores_padded_steps_and_reports_its_parts(setup):
    model, _, sample = setup
    criterion = build_criterion("frame_regression")
    loss, size, log = criterion(model, sample)
    garbage = {**sample, "net_input": {**sample["net_input"], "decoder": dict(sample["net_input"]["decoder"])}}
    piece = garbage["net_input"]["decoder"]
    piece["frames"] = piece["frames"].masked_fill(piece["padding_mask"][..., None], 1e3)
    assert size == sample["ntokens"] and torch.isclose(criterion(model, garbage)[0], loss)
    assert log["loss"] == pytest.approx(log["l1"] + log["mse"] + log["stop_bce"] + log["guided_attention"], rel=1e-5)
    metrics = criterion.reduce_metrics([log, log])
    assert metrics["l1"] == pytest.approx(log["l1"] / size) and 0 <= metrics["stop_accuracy"] <= 100


def test_guided_attention_penalises_attention_off_the_diagonal_of_each_rows_lengths():
    steps = torch.tensor([[False] * 4, [False] * 2 + [True] * 2])  # True = padded
    positions = torch.tensor([[False] * 4, [False] * 3 + [True]])
    diagonal = torch.zeros(2, 1, 4, 4)
    diagonal[0, 0, torch.arange(4), torch.arange(4)] = 1  # row 0: step t looks at position t of 4
    diagonal[1, 0, [0, 1, 2, 3], [0, 1, 0, 0]] = 1  # row 1: 2 steps over 3 positions (t / 2 ~ s / 3)
    reverse = diagonal.flip(-1)
    near = guided_attention_penalty([diagonal], steps, positions, 0.4)
    far = guided_attention_penalty([reverse], steps, positions, 0.4)
    assert near[0].tolist() == pytest.approx([0.0] * 4, abs=1e-6) and near[1, :2].max() < 0.1
    assert far[0].min() > 0.05 and far[0, 0] > 0.8  # step 0 of 4 looking at position 3 of 4
    assert far[1, 0] == 0  # row 1 looks at its padded position 3: not counted
    spread = torch.full((2, 2, 4, 4), 0.25)
    assert guided_attention_penalty([spread, spread], steps, positions, 0.4)[0].mean() > near[0].mean()


def test_guided_attention_adds_a_loss_whose_gradient_reaches_only_the_speech_cross_attention(setup):
    model, _, sample = setup
    model = copy.deepcopy(model).train()
    plain = build_criterion({"name": "frame_regression", "guided_attention": 0.0})
    guided = build_criterion("frame_regression")  # on by default, at weight 1
    _, steps, log = guided(model, sample)
    assert 0 < log["guided_attention"] < steps  # at most 1 per step
    assert log["loss"] == pytest.approx(log["l1"] + log["mse"] + log["stop_bce"] + log["guided_attention"], rel=1e-5)
    assert plain(model, sample)[2]["guided_attention"] == 0

    def gradients(criterion):
        model.zero_grad(set_to_none=True)
        criterion(model, sample)[0].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    without, with_guidance = gradients(plain), gradients(guided)
    changed = {name for name in without if not torch.allclose(without[name], with_guidance[name])}
    assert any(".continuous_layers.0.cross_attn.block.q_proj" in name for name in changed)
    assert not any(".frames_out." in name or ".stop_out." in name for name in changed)  # after the attention
    assert all(p.grad is None for p in model.decoder.layers.parameters())  # token layers untouched either way
    model.cfg.checkpoint_activations = True  # weights recorded in the forward pass, not again when recomputed
    recomputed = gradients(guided)
    assert recomputed.keys() == with_guidance.keys()
    for name, gradient in recomputed.items():
        torch.testing.assert_close(gradient, with_guidance[name], msg=name)


class StopAfter(torch.nn.Module):
    """Wraps the audio_mel adaptor: the stop logit fires at decoder position `stops[row]`."""

    def __init__(self, adaptor, stops):
        super().__init__()
        self.adaptor, self.stops, self.causal, self.step_dim = adaptor, stops, True, adaptor.step_dim

    def forward(self, piece):
        self.length = piece["frames"].size(1)
        return self.adaptor(piece)

    def project(self, hidden, piece):
        out = self.adaptor.project(hidden, piece)
        positions = torch.arange(self.length - hidden.size(1), self.length)
        out["stop_logits"] = torch.where(positions[None, :] == self.stops[:, None], 20.0, -20.0)
        return out


@pytest.fixture
def stopping_model(setup):
    model, _, sample = setup
    adaptor = model.output_adaptors["audio_mel"]
    model.output_adaptors["audio_mel"] = StopAfter(adaptor, torch.tensor([2, 6]))
    yield model, sample
    model.output_adaptors["audio_mel"] = adaptor


def test_the_frames_generator_stops_each_row_on_its_own(stopping_model):
    model, sample = stopping_model
    rows = AutoregressiveFrames().generate(model, sample, max_len_b=4)
    assert [row[0]["frames"].shape for row in rows] == [(3, 16), (4, 16)]
    assert [row[0]["stopped"] for row in rows] == [True, False]
    rows = AutoregressiveFrames().generate(model, sample, max_len_b=20, min_len=5)
    assert [len(row[0]["frames"]) for row in rows] == [20, 7]  # row 0's only stop came before min_len
    with pytest.raises(ConfigError, match=r"\['beam'\] do not apply to autoregressive_frames.*options: max_len_a"):
        AutoregressiveFrames().generate(model, sample, beam=5)


def test_output_save_writes_wav_and_flac_that_read_back(tmp_path):
    output = Output(waveform=Waveform(torch.linspace(-0.5, 0.5, 1600), RATE))
    for suffix in (".wav", ".flac"):
        path = output.save(str(tmp_path / f"a{suffix}"))
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == RATE and len(samples) == 1600 and abs(samples[-1] - 0.5) < 1e-3
    assert output.media_suffix == ".wav" and output.to_dict()["seconds"] == 0.1
    with pytest.raises(ValueError, match="WAV or FLAC|.wav or .flac"):
        output.save(str(tmp_path / "a.mp3"))
    with pytest.raises(ValueError, match="holds no media"):
        Output(text="hi").save(str(tmp_path / "b.wav"))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_vocoders_griffin_lim_and_torchscript(tmp_path):
    mel = MelSettings(bins=8, hop_length=32, win_length=64)
    frames = torch.full((10, 8), -3.0)
    assert build_vocoder("griffin_lim", mel)(frames).shape == (32 * 9,)
    for short in (1, 2):  # shorter than Griffin-Lim's reflect padding (an untrained model's early stop)
        assert build_vocoder("griffin_lim", mel)(frames[:short]).shape == (32 * (short - 1),)

    class Upsample(torch.nn.Module):
        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return torch.tanh(mel.mean(1, keepdim=True)).repeat_interleave(32, dim=-1)

    path = tmp_path / "vocoder.pt"
    torch.jit.save(torch.jit.script(Upsample()), str(path))
    waveform = build_vocoder({"name": "torchscript", "path": str(path)}, mel)(frames)
    assert waveform.shape == (320,) and torch.allclose(waveform, torch.tanh(torch.tensor(-3.0)).expand(320))
    with pytest.raises(ConfigError, match="needs vocoder_path"):
        build_vocoder("torchscript", mel)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="is not a TorchScript file"):
        build_vocoder({"name": "torchscript", "path": str(tmp_path / "junk.pt")}, mel)


@pytest.mark.parametrize("value, match", [
    (tone(0.0001), "expected at least one mel window"),
    ((np.zeros(RATE // 10, dtype=np.float32), RATE), "is silent"),
    ((np.full(RATE // 10, np.nan, dtype=np.float32), RATE), "NaN"),
    ((tone(0.1)[0], 1), "sampling rate 1 Hz is below"),
    (tone(2.0), "more than max_target_positions=64"),
])
def test_bad_speech_targets_are_named(value, match):
    vocab = Vocabulary.default()
    encoder = RowEncoder("tts", INSTRUCTION, vocab, DataConfig(mel_bins=8, mel_frames_per_step=2, mel_win_length=64,
                                                                mel_hop_length=32, max_target_positions=64))
    with pytest.raises((EncodeError, MediaError), match=match) as caught:
        encoder.encode({"text": "x", "wav": value}, SampleContext("train", "tts", 3))
    assert "row 3" in str(caught.value) and "'wav'" in str(caught.value)


def test_stereo_clipped_and_other_rates_are_handled_as_documented():
    encoder = RowEncoder("tts", INSTRUCTION, Vocabulary.default(), DataConfig(mel_bins=8, mel_frames_per_step=2,
                                                                              mel_win_length=64, mel_hop_length=32))
    features = lambda wav: encoder.encode({"text": "x", "wav": wav}, SampleContext("train")).decoder_features  # noqa
    mono = features(tone(0.1))["frames"]
    torch.testing.assert_close(features(tone(0.1, channels=2))["frames"], mono)  # channels are averaged
    clipped = (np.clip(tone(0.1)[0] * 10, -1, 1), RATE)
    assert torch.isfinite(features(clipped)["frames"]).all()
    samples = tone(0.1)[0]
    upsampled = (np.interp(np.arange(len(samples) * 625) / 625, np.arange(len(samples)), samples)
                 .astype(np.float32), 10_000_000)  # 10 MHz, resampled to 16 kHz
    assert features(upsampled)["frames"].shape == mono.shape
    with pytest.raises(ValueError, match="n_frames_per_step=3 of the slot differs"):
        RowEncoder("tts", "[TEXT:text] -> [AUDIO:wav,n_frames_per_step=3]", Vocabulary.default(), DataConfig())


def test_trim_db_cuts_leading_and_trailing_silence_but_a_margin():
    """A 0.1 s tone between 0.2 s and 0.1 s of silence: trim_db keeps the tone's frames and 50 ms each side (the
    window's spread adds a frame or two); without it every frame is kept."""
    hop = 32
    samples = np.concatenate([np.zeros(RATE // 5), tone(0.1)[0], np.zeros(RATE // 10)]).astype(np.float32)
    frames = {}
    for attrs in ("", ",trim_db=40"):
        encoder = RowEncoder("tts", f"[TEXT:text] -> [AUDIO:wav{attrs}]", Vocabulary.default(),
                             DataConfig(mel_bins=8, mel_win_length=64, mel_hop_length=hop))
        frames[attrs] = encoder.encode({"text": "x", "wav": (samples, RATE)},
                                       SampleContext("train")).decoder_features["frames"]
    assert frames[""].size(0) == 1 + len(samples) // hop
    tone_frames, margin = RATE // 10 // hop, round(0.05 * RATE / hop)
    assert tone_frames + 2 * margin <= frames[",trim_db=40"].size(0) <= tone_frames + 2 * margin + 4
    assert frames[",trim_db=40"][margin + 2:-margin - 2].mean() > frames[""].mean() + 2  # the tone, not the silence


def test_generated_nan_frames_make_no_waveform(setup):
    _, encoder, _ = setup
    output = encoder.output_preprocessor(encoder.templates[0])
    frames = torch.zeros(3, 16)
    assert output.decode_features(frames, {})["waveform"].samples.numel() == 32 * 5  # 6 frames of hop 32
    with pytest.raises(ValueError, match="NaN or infinite"):
        output.decode_features(frames.index_fill(0, torch.tensor([1]), float("nan")), {})


@pytest.mark.parametrize("instruction, row", [
    ("[PHONE:text] -> [AUDIO:wav]", {"text": "W AH1 N"}),  # an ARPAbet phone string
    ("[PHONE:text] -> [AUDIO:wav]", {"text": "one two"}),  # words, through CMUdict
    ("say the row: [STRUCT:table] -> [AUDIO:wav]", {"table": [["digit", "one"]]}),
])
def test_phone_and_struct_inputs_train_a_speech_output(setup, instruction, row):
    model, _, _ = setup
    encoder = RowEncoder("tts", instruction, Vocabulary.default(), DataConfig.for_model(model.cfg))
    sample = encoder.collate([encoder.encode({**row, "wav": tone(0.05)}, SampleContext("train", "tts"))])
    loss, size, _ = build_criterion("frame_regression")(model, sample)
    assert torch.isfinite(loss) and size == sample["net_input"]["decoder"]["frames"].size(1)


def test_mcd_aligns_in_time_and_separates_different_sounds():
    def wave(hz, seconds):
        return Waveform(torch.from_numpy(tone(seconds, hz)[0]), RATE)

    metric = build_metric("mcd")
    assert metric.compute([wave(440, 0.3)], [wave(440, 0.3)])["mcd"] == pytest.approx(0, abs=1e-9)
    stretched = metric.compute([wave(440, 0.3)], [wave(440, 0.5)])["mcd"]  # same sound, longer: DTW aligns it
    different = metric.compute([wave(440, 0.3)], [wave(1500, 0.3)])["mcd"]
    assert stretched < 0.05 * different


def test_decoding_gives_source_positions_past_the_longest_trained_one_its_key(setup):
    """Speech's own cross-attention position keys learn only the source lengths it trained on (a longer text never
    fired its stop in the demo): training records the longest source, decoding gives every later position the
    vector of the last trained one, token outputs and shorter sources are untouched, and a checkpoint written
    before the record loads with none (nothing clamped)."""
    base, encoder, sample = setup
    model = copy.deepcopy(base)
    decoder = model.decoder
    old_weights = {key: value for key, value in model.state_dict().items() if "continuous_source_positions" not in key}
    model.train()
    trained_out = model.encoder(sample["net_input"]["encoder"])
    model.decode_features(sample["net_input"]["decoder"], trained_out)
    trained = int((~trained_out.padding_mask).sum(1).max())
    assert int(decoder.continuous_source_positions) == trained
    model.eval()
    longer = encoder.collate([encoder.encode({"text": "a much longer sentence than any that was trained on here",
                                              "wav": tone(0.05)}, SampleContext("test", "tts", 0))])
    encoder_out = model.encoder(longer["net_input"]["encoder"])
    length = encoder_out.position_embeddings.size(1)
    assert length > trained
    keys = decoder.key_positions(encoder_out, decoder.continuous_cross_pos_k)
    assert torch.equal(keys[:, :trained], encoder_out.position_embeddings[:, :trained])
    assert torch.equal(keys[:, trained:], keys[:, trained - 1:trained].expand(-1, length - trained, -1))
    assert torch.equal(decoder.key_positions(encoder_out, decoder.cross_pos_k), encoder_out.position_embeddings)
    with torch.no_grad():
        clamped = model.decode_features(longer["net_input"]["decoder"], encoder_out)[0]["frames"]
        in_range = model.decode_features(sample["net_input"]["decoder"],
                                         model.encoder(sample["net_input"]["encoder"]))[0]["frames"]
        decoder.continuous_source_positions.zero_()
        assert not torch.allclose(model.decode_features(longer["net_input"]["decoder"], encoder_out)[0]["frames"],
                                  clamped)
        assert torch.equal(model.decode_features(sample["net_input"]["decoder"],
                                                 model.encoder(sample["net_input"]["encoder"]))[0]["frames"], in_range)
    model.load_state_dict(old_weights)  # strict
    assert int(decoder.continuous_source_positions) == 0
