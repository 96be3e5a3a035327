"""Config system: flags, YAML + overrides precedence, value parsing, errors, round trip (the option reference
in docs/config.md is checked by tests/test_reference_docs.py)."""
import argparse
import dataclasses
import pathlib
from typing import Optional

import pytest

from ofasys_fs import config
from ofasys_fs.config import add_config_args, config_from_dict, config_to_dict, config_to_yaml, print_config
from ofasys_fs.data.sampler import parse_sampling
from ofasys_fs.engine.config import TrainConfig
from ofasys_fs.errors import ConfigError
from ofasys_fs.options import option
from ofasys_fs.tasks.config import TaskConfig


def load_config(*args, **kwargs):
    """The training config (config.load_config of TrainConfig), or of the dataclass given first."""
    if args and isinstance(args[0], type):
        return config.load_config(*args, **kwargs)
    return config.load_config(TrainConfig, *args, **kwargs)


def parser_for(cls=TrainConfig) -> argparse.ArgumentParser:
    return add_config_args(argparse.ArgumentParser(prog="ofasys-train"), cls)


def write_yaml(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


# --- flags ---------------------------------------------------------------------------------------


FAIRSEQ_FLAGS = (
    "--max-update --lr --batch-size --max-tokens --update-freq --save-dir --restore-file --finetune-from-model "
    "--bf16 --fp16 --seed --log-interval --validate-interval-updates --tensorboard-logdir --user-dir --arch -a "
    "--clip-norm --weight-decay --warmup-updates --lr-scheduler --beam --max-len-b --min-len --lenpen "
    "--no-repeat-ngram-size --keep-last-n --keep-interval-updates --reset-optimizer --sampling --print-config "
    "--ddp-backend --find-unused-parameters --no-find-unused-parameters --max-valid-samples"
).split()


def test_every_fairseq_flag_exists_with_its_help():
    parser = parser_for()
    help_text = parser.format_help()
    for flag in FAIRSEQ_FLAGS:
        assert flag in parser._option_string_actions, flag
    assert "accumulate gradients over N micro-batches per update" in help_text
    assert "(default: 1000)" in help_text  # --max-update shows its default
    assert "{tqdm,simple,json}" in help_text  # Literal choices as metavar


def test_only_given_flags_reach_the_namespace():
    assert vars(parser_for().parse_args([])) == {}


def test_flags_parse_into_the_config():
    args = parser_for().parse_args(
        ["--lr", "3e-4", "--user-dir", "a", "--user-dir", "b", "-a", "base", "--bf16",
         "--adam-betas", "(0.9, 0.98)", "--keep-interval-updates", "3", "--no-find-unused-parameters",
         "--sampling", "temperature=2", "--log-format", "json"]
    )
    cfg = load_config(args=args)
    assert cfg.optimization.lr == pytest.approx(3e-4)
    assert cfg.common.user_dir == ["a", "b"]
    assert cfg.model.arch == "base"
    assert cfg.common.bf16 is True
    assert cfg.optimization.adam_betas == (0.9, 0.98)
    assert cfg.checkpoint.keep_last_n == 3
    assert cfg.distributed.find_unused_parameters is False
    assert cfg.optimization.sampling == "temperature=2"
    assert cfg.common.log_format == "json"


def test_flag_errors_name_the_flag():
    with pytest.raises(ConfigError, match=r"flag --max-update: max_update expects int, got 'ten'"):
        load_config(args=parser_for().parse_args(["--max-update", "ten"]))


def test_namespace_attributes_of_the_cli_itself_are_ignored():
    cfg = load_config(args=argparse.Namespace(config="x.yaml", overrides=[], seed="5"))
    assert cfg.common.seed == 5


# --- precedence and overrides ---------------------------------------------------------------------


def test_defaults_yaml_overrides_flags_kwargs_precedence(tmp_path):
    path = write_yaml(
        tmp_path,
        "optimization: {lr: 0.1, max_update: 50, warmup_updates: 5}\n"
        "batch_size: 8\nseed: 3\nsave_dir: from_yaml\n",
    )
    args = parser_for().parse_args(["--lr", "0.3", "--seed", "4"])
    overrides = ["lr=0.2", "dataset.batch_size=4", "max_update=60"]
    cfg = load_config(yaml_path=path, overrides=overrides, args=args, seed=9)
    assert cfg.optimization.warmup_updates == 5  # YAML only
    assert cfg.checkpoint.save_dir == "from_yaml"  # YAML only, flat key
    assert cfg.optimization.max_update == 60  # override beats YAML
    assert cfg.dataset.batch_size == 4  # dotted override beats flat YAML
    assert cfg.optimization.lr == pytest.approx(0.3)  # flag beats override
    assert cfg.common.seed == 9  # keyword argument beats flag
    assert cfg.optimization.clip_norm == 1.0  # untouched default


def test_trainer_style_keyword_arguments():
    cfg = load_config(
        max_update=7, lr=1e-4, batch_size=2, sampling="round_robin", save_dir="ckpt", device="cpu", seed=3
    )
    assert (cfg.optimization.max_update, cfg.dataset.batch_size, cfg.checkpoint.save_dir) == (7, 2, "ckpt")
    assert (cfg.optimization.sampling, cfg.common.device, cfg.common.seed) == ("round_robin", "cpu", 3)
    assert load_config(optimization={"lr": 0.5}).optimization.lr == 0.5
    task = TaskConfig(name="caption", data="d", weight=2.0)
    assert load_config(tasks=[task], lr=0.5).tasks == [task]  # dataclass instances count as mappings


def test_dotted_flat_section_and_task_overrides():
    cfg = load_config(
        overrides=[
            "tasks=[{name: caption, data: d}, {name: vqa}]",
            "tasks.1.weight=2",
            "tasks.0.options.mask_ratio=0.3",
            "tasks.0.options.nested.k=v",
            "optimization={lr: 0.5, power: 2}",
            "generation.beam=3",
            "lenpen=0.5",
        ]
    )
    assert [t.name for t in cfg.tasks] == ["caption", "vqa"]
    assert cfg.tasks[1].weight == 2.0 and cfg.tasks[0].weight == 1.0
    assert cfg.tasks[0].options == {"mask_ratio": 0.3, "nested": {"k": "v"}}
    assert (cfg.optimization.lr, cfg.optimization.power) == (0.5, 2.0)
    assert (cfg.generation.beam, cfg.generation.lenpen) == (3, 0.5)


@pytest.mark.parametrize(
    "override, message",
    [
        ("tasks.0.weight=2", r'no entry "tasks.0" \(tasks holds 0\); set a key of an existing one by index'),
        ("lr", r"expected key=value"),
        ("tasks.first.weight=2", r'no entry "tasks.first"'),
        ("tasks.0.data.train=x", r'no entry "tasks.0"'),
    ],
)
def test_bad_override_forms(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_override_of_a_whole_task_entry_asks_for_a_key():
    with pytest.raises(ConfigError, match=r'set a key of tasks.0, e.g. "tasks.0.KEY=VALUE"'):
        load_config(overrides=["tasks=[{name: a}]", "tasks.0={name: b}"])


def test_dotted_key_into_a_path_string_is_an_error():
    with pytest.raises(ConfigError, match=r"tasks.0.data is 'folder', not a mapping"):
        load_config(overrides=["tasks=[{name: a, data: folder}]", "tasks.0.data.train=x"])


# --- value parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, section, key, expected",
    [
        ("lr=3e-4", "optimization", "lr", 3e-4),  # PyYAML reads 3e-4 as a string
        ("lr=[0.002]", "optimization", "lr", 0.002),  # fairseq's one-element list
        ("update_freq=[4]", "optimization", "update_freq", 4),
        ("max_update=1e5", "optimization", "max_update", 100000),
        ('adam_betas="(0.9, 0.98)"', "optimization", "adam_betas", (0.9, 0.98)),
        ("adam_betas=[0.8, 0.9]", "optimization", "adam_betas", (0.8, 0.9)),
        ("user_dir=plugins", "common", "user_dir", ["plugins"]),
        ("user_dir=[a, b]", "common", "user_dir", ["a", "b"]),
        ("max_tokens=null", "dataset", "max_tokens", None),
        ("max_tokens=None", "dataset", "max_tokens", None),
        ("max_tokens=4096", "dataset", "max_tokens", 4096),
        ("bf16=yes", "common", "bf16", True),
        ("find_unused_parameters=false", "distributed", "find_unused_parameters", False),
        ("save_dir=yes", "checkpoint", "save_dir", "yes"),  # text options keep what was typed
        ("arch=1.0", "model", "arch", "1.0"),
        ("log_file=null", "common", "log_file", None),
        ("log_file=None", "common", "log_file", None),
        ("log_format=none", "common", "log_format", None),
        ("ddp_backend=fully_sharded", "distributed", "ddp_backend", "fully_sharded"),
    ],
)
def test_override_values_are_parsed_to_the_field_type(override, section, key, expected):
    value = getattr(getattr(load_config(overrides=[override]), section), key)
    assert value == expected and type(value) is type(expected)


def test_task_fields_accept_their_union_types(tmp_path):
    path = write_yaml(
        tmp_path,
        "tasks:\n"
        "  - name: caption\n"
        "    instruction: '[IMAGE:img] what does the image describe? -> [TEXT:cap]'\n"
        "    data: {train: tr.jsonl, valid: va.jsonl}\n"
        "    metric: cider\n"
        "  - name: cola\n"
        "    instruction: ['[TEXT:s] is it fine? -> [TEXT:l]', 'fine? [TEXT:s] -> [TEXT:l]']\n"
        "    data: shards/cola\n"
        "    answers: [acceptable, unacceptable]\n"
        "    weight: 0.5\n"
        "    batch_size: 4\n"
        "    options: {closed_set: true}\n",
    )
    caption, cola = load_config(yaml_path=path).tasks
    assert isinstance(caption, TaskConfig)
    assert caption.data == {"train": "tr.jsonl", "valid": "va.jsonl"} and caption.metric == "cider"
    assert caption.instruction.startswith("[IMAGE:img]")
    assert cola.instruction == ["[TEXT:s] is it fine? -> [TEXT:l]", "fine? [TEXT:s] -> [TEXT:l]"]
    assert (cola.data, cola.weight, cola.batch_size) == ("shards/cola", 0.5, 4)
    assert cola.answers == ["acceptable", "unacceptable"]
    assert cola.options == {"closed_set": True}


def test_yaml_reads_yes_no_as_text_and_exponents_as_numbers(tmp_path):
    path = write_yaml(
        tmp_path, "lr: 3e-4\ntasks:\n  - {name: vqa, answers: [yes, no], options: {scale: 1e-2, flag: true}}\n"
    )
    cfg = load_config(yaml_path=path)
    assert cfg.optimization.lr == pytest.approx(3e-4)
    assert cfg.tasks[0].answers == ["yes", "no"]
    assert cfg.tasks[0].options == {"scale": 0.01, "flag": True}


def test_text_that_looks_like_another_type_survives_the_round_trip(tmp_path):
    cfg = load_config(save_dir="1e5", arch="on", overrides=["tasks=[{name: '3', answers: ['no', 'null']}]"])
    (tmp_path / "dump.yaml").write_text(config_to_yaml(cfg))
    assert load_config(yaml_path=str(tmp_path / "dump.yaml")) == cfg


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_yaml_key_names_the_file_and_suggests(tmp_path):
    path = write_yaml(tmp_path, "optimization:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r'run.yaml: unknown key "optimization.lrr". Did you mean "lr"\?'):
        load_config(yaml_path=path)
    with pytest.raises(ConfigError, match=r'unknown key "max_updates". Did you mean "max_update"\?'):
        load_config(yaml_path=write_yaml(tmp_path, "max_updates: 3\n"))


def test_key_in_the_wrong_section_points_to_its_home(tmp_path):
    with pytest.raises(ConfigError, match=r'unknown key "optimization.batch_size". Use "dataset.batch_size"'):
        load_config(yaml_path=write_yaml(tmp_path, "optimization: {batch_size: 3}\n"))


def test_unknown_task_key_suggests_or_lists_the_task_keys(tmp_path):
    path = write_yaml(tmp_path, "tasks:\n  - {name: a, instructon: x}\n")
    with pytest.raises(ConfigError, match=r'unknown key "tasks.0.instructon". Did you mean "instruction"\?'):
        load_config(yaml_path=path)
    path = write_yaml(tmp_path, "tasks:\n  - {name: a, zzz: x}\n")
    with pytest.raises(ConfigError, match=r'unknown key "tasks.0.zzz". Keys of tasks.0: name, instruction, data'):
        load_config(yaml_path=path)


def test_unknown_override_and_keyword_suggest():
    with pytest.raises(ConfigError, match=r'unknown key "optimisation". Did you mean "optimization"'):
        load_config(overrides=["optimisation.lr=1"])
    with pytest.raises(ConfigError, match=r'override "generation.bean=3": unknown key "generation.bean". Did you'):
        load_config(overrides=["generation.bean=3"])
    with pytest.raises(ConfigError, match=r'keyword arguments: unknown key "batchsize". Did you mean "batch_size"'):
        load_config(batchsize=3)


def test_same_option_twice_in_one_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"optimization.lr is given twice"):
        load_config(yaml_path=write_yaml(tmp_path, "lr: 0.1\noptimization: {lr: 0.2}\n"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_update": "abc"}, r"optimization.max_update expects int, got 'abc'"),
        ({"max_update": 2.5}, r"max_update expects int, got 2.5"),
        ({"max_update": True}, r"max_update expects int, got True"),
        ({"bf16": "maybe"}, r"common.bf16 expects bool, got 'maybe'"),
        ({"lr": [0.1, 0.2]}, r"lr takes one value"),
        ({"log_format": "JSON"}, r'log_format expects \{tqdm, simple, json\} \| None, got .JSON.. Did you mean'),
        ({"adam_betas": [0.9]}, r"adam_betas expects tuple\[float, float\].*exactly 2 values"),
        ({"dropout": 1.5}, r"model.dropout=1.5: must be in \[0, 1\)"),
        ({"temperature": 0}, r"generation.temperature=0.0: must be > 0"),
        ({"device": "gpu"}, r"common.device='gpu': expected \"auto\""),
        ({"sampling": "temprature=2"}, r'unknown sampling strategy.*Did you mean "temperature"'),
        ({"tasks": "caption"}, r"tasks expects a list of mappings"),
        ({"tasks": ["caption"]}, r"tasks.0 must be a mapping"),
        ({"bf16": True, "fp16": True}, r"common: bf16 and fp16 cannot both be on"),
        ({"warmup_updates": 10, "warmup_ratio": 0.1}, r"optimization: set warmup_updates or warmup_ratio, not both"),
    ],
)
def test_wrong_values_name_key_type_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**kwargs)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(yaml_path=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(yaml_path=write_yaml(tmp_path, "a: [1\n"))
    with pytest.raises(ConfigError, match=r"the config must be a mapping"):
        load_config(yaml_path=write_yaml(tmp_path, "- 1\n"))


def test_config_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError)


# --- round trip and printing ----------------------------------------------------------------------


def non_default_config() -> TrainConfig:
    return load_config(
        overrides=[
            "tasks=[{name: cap, instruction: ['[TEXT:a] -> [TEXT:b]', 'x [TEXT:a] -> [TEXT:b]'], data: {train: t}},"
            " {name: vqa, weight: 2, answers: [yes, no], options: {k: [1, 2]}}]",
        ],
        lr=2e-5, adam_betas=(0.9, 0.98), user_dir=["u"], ema_decay=0.999, max_tokens=100,
        find_unused_parameters=True, log_format="json", sampling="weights=cap:1,vqa:3", save_dir="yes",
    )


def test_yaml_round_trip_with_tasks(tmp_path):
    cfg = non_default_config()
    path = tmp_path / "dump.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(yaml_path=str(path)) == cfg
    assert config_from_dict(TrainConfig, config_to_dict(cfg)) == cfg
    assert config_to_dict(cfg)["optimization"]["adam_betas"] == [0.9, 0.98]  # plain lists, YAML/JSON-able


def test_print_config_output_loads_back(tmp_path, capsys):
    cfg = load_config(print_config=True, max_update=5)
    print_config(cfg)
    printed = capsys.readouterr().out
    assert "max_update: 5" in printed
    (tmp_path / "printed.yaml").write_text(printed)
    reloaded = load_config(yaml_path=str(tmp_path / "printed.yaml"))
    assert reloaded.common.print_config is False  # feeding the output back trains instead of printing again
    assert dataclasses.replace(reloaded, common=cfg.common) == cfg


# --- sampling strategies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("proportional", ("proportional", None)),
        ("round_robin", ("round_robin", None)),
        (" all ", ("all", None)),
        ("temperature=2.0", ("temperature", 2.0)),
        ("weights=a:1,b:3", ("weights", {"a": 1.0, "b": 3.0})),
        ("weights= a : 0 , b:0.5", ("weights", {"a": 0.0, "b": 0.5})),
    ],
)
def test_parse_sampling(spec, expected):
    assert parse_sampling(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("proportionl", r'Did you mean "proportional"'),
        ("all=3", r'"all" takes no parameter'),
        ("temperature", r"needs a parameter"),
        ("temperature=hot", r"temperature must be a number"),
        ("temperature=0", r"temperature must be > 0"),
        ("weights=a", r"expected TASK:WEIGHT pairs"),
        ("weights=a:x", r'task "a" needs a number as weight, got "x"'),
        ("weights=a:1,a:2", r'task "a" is given twice'),
        ("weights=a:-1", r"must be >= 0"),
        ("weights=a:0,b:0", r"at least one task weight must be > 0"),
    ],
)
def test_parse_sampling_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_sampling(spec)


def test_parse_sampling_checks_task_names():
    with pytest.raises(ValueError, match=r'no task named "captoin". Did you mean "caption"'):
        parse_sampling("weights=captoin:1,vqa:1", task_names=["caption", "vqa"])
    with pytest.raises(ValueError, match=r"give every task a weight; missing: vqa"):
        parse_sampling("weights=caption:1", task_names=["caption", "vqa"])
    assert parse_sampling("weights=vqa:2,caption:1", task_names=["caption", "vqa"])[1] == {"vqa": 2.0, "caption": 1.0}


# --- other dataclasses, choices metadata, uniqueness ----------------------------------------------


@dataclasses.dataclass
class _Scoring:
    scorer: str = option("bleu", "scorer", choices=("bleu", "cider"))


@dataclasses.dataclass
class _GenerateConfig:
    path: Optional[str] = option(None, "checkpoint")
    sizes: list[int] = option([1], "sizes")
    scoring: _Scoring = dataclasses.field(default_factory=_Scoring, metadata={"help": "scoring"})


def test_any_dataclass_gets_flags_and_choices_metadata():
    argv = ["--path", "c.pt", "--sizes", "2", "--sizes", "3", "--scorer", "cider"]
    args = parser_for(_GenerateConfig).parse_args(argv)
    assert load_config(_GenerateConfig, args=args) == _GenerateConfig("c.pt", [2, 3], _Scoring("cider"))
    with pytest.raises(ConfigError, match=r'scoring.scorer must be one of bleu, cider, got .cidre.. Did you mean "c'):
        load_config(_GenerateConfig, scorer="cidre")


@dataclasses.dataclass
class _Clash:
    a: _Scoring = dataclasses.field(default_factory=_Scoring)
    b: _Scoring = dataclasses.field(default_factory=_Scoring)


def test_clashing_flat_names_are_refused():
    with pytest.raises(TypeError, match=r"option name 'scorer' is used twice"):
        add_config_args(argparse.ArgumentParser(), _Clash)
