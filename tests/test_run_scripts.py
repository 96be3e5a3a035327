"""run_scripts/<benchmark>/: each pipeline end to end on a tiny fixture written in the benchmark's published
schema: convert.py -> train.sh (a few micro updates) -> evaluate.sh -> the score line.

To stay fast, train.sh and evaluate.sh run through bash with LAUNCHER/GENERATE set to printf, which prints
the exact command they would run; that command then runs in-process (cli.train.main / cli.generate.main).
One benchmark (gigaword) runs through bash with the real interpreter as well.
"""
import contextlib
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from ofasys_fs.cli import generate, train
from ofasys_fs.data.shards import ShardDataset, read_manifest
from ofasys_fs.tasks.spider import schema_from_sqlite
from run_scripts.common.convert_lib import ANSWERS_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = ["--device", "cpu", "--num-bins", "100", "--num-codes", "0", "--max-update", "2", "--max-epoch", "0",
         "--warmup-updates", "0",
         "--batch-size", "2", "--update-freq", "1", "--validate-interval-updates", "100", "--save-interval-updates",
         "0", "--log-interval", "100"]
PRINT_ARGS = "printf %s\\n"  # as LAUNCHER / GENERATE: the scripts print the command instead of running it


def image(path, colour=(200, 30, 30), size=(24, 20)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def dump(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def video(path, frames=6):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for t in range(frames):
            pixels = np.full((32, 32, 3), 40 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---- fixtures in each benchmark's published schema; each returns [(split, converter arguments), ...] ----

def coco_caption(raw):
    images = []
    for index, (split, folder) in enumerate([("train", "train2014"), ("restval", "val2014"), ("val", "val2014"),
                                             ("test", "val2014")]):
        name = f"COCO_{folder}_{index:012d}.jpg"
        image(raw / folder / name, colour=(60 * index, 90, 200))
        images.append({"filepath": folder, "filename": name, "imgid": index, "split": split, "cocoid": index,
                       "sentids": [2 * index, 2 * index + 1],
                       "sentences": [{"tokens": ["a", "dog"], "raw": f"A dog number {index}. ", "imgid": index,
                                      "sentid": 2 * index}, {"tokens": ["a", "cat"], "raw": "A cat.",
                                                             "imgid": index, "sentid": 2 * index + 1}]})
    karpathy = dump(raw / "dataset_coco.json", {"dataset": "coco", "images": images})
    return [(split, ["--karpathy-json", karpathy, "--image-root", str(raw)]) for split in ("train", "valid", "test")]


def refcoco_refs(split, index, sentences):
    return {"ref_id": index, "ann_id": 100 + index, "image_id": index, "category_id": 1, "split": split,
            "file_name": f"COCO_train2014_{index:012d}_{100 + index}.jpg", "sent_ids": list(range(len(sentences))),
            "sentences": [{"tokens": s.split(), "raw": s.upper(), "sent_id": 10 * index + i, "sent": s}
                          for i, s in enumerate(sentences)]}


def refcoco(raw):
    splits = ["train", "train", "val", "testA"]
    refs = [refcoco_refs(split, i, ["the left dog", "a dog"] if split == "train" else ["the dog"])
            for i, split in enumerate(splits)]
    with open(raw / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=2)
    instances = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}]}
    for i in range(len(splits)):
        name = f"COCO_train2014_{i:012d}.jpg"
        image(raw / "train2014" / name, size=(40, 30))
        instances["images"].append({"id": i, "file_name": name, "width": 40, "height": 30})
        instances["annotations"].append({"id": 100 + i, "image_id": i, "bbox": [2.0, 3.0, 10.0, 20.0],
                                         "category_id": 1, "area": 200.0, "iscrowd": 0})
    args = ["--refs", str(raw / "refs(unc).p"), "--instances", dump(raw / "instances.json", instances),
            "--image-dir", str(raw / "train2014")]
    return [(split, args) for split in ("train", "valid", "testA")]


def vqa_files(raw, subtype, answers_per_question):
    questions, annotations = [], []
    for i, answers in enumerate(answers_per_question):
        image(raw / subtype / f"COCO_{subtype}_{i:012d}.jpg", colour=(30 * i, 200, 90))
        questions.append({"image_id": i, "question": f"is it thing {i}?", "question_id": 1000 + i})
        annotations.append({"question_id": 1000 + i, "image_id": i, "question_type": "is it",
                            "answer_type": "yes/no", "multiple_choice_answer": answers[0],
                            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                        for j, a in enumerate(answers)]})
    meta = {"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": subtype}
    return ["--questions", dump(raw / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
                                {**meta, "task_type": "Open-Ended", "questions": questions}),
            "--annotations", dump(raw / f"v2_mscoco_{subtype}_annotations.json", {**meta, "annotations": annotations}),
            "--image-dir", str(raw / subtype)]


def vqa(raw):
    train_args = vqa_files(raw, "train2014", [["yes"] * 8 + ["2"] * 2, ["no"] * 10, ["yes"] * 10, ["2"] * 10])
    val_args = vqa_files(raw, "val2014", [["no"] * 7 + ["red"] * 3, ["red"] * 10, ["yes"] * 10])
    return [("train", [*train_args, "--answer-set-size", "2"]), ("valid", val_args), ("test", val_args)]


def snli_ve(raw):
    labels = ["entailment", "neutral", "contradiction", "-"]
    for i in range(4):
        image(raw / "flickr30k_images" / f"{i}.jpg", colour=(20, 60 * i, 200))
    lines = "".join(json.dumps({"annotator_labels": [label], "captionID": f"{i}.jpg#0", "gold_label": label,
                                "pairID": f"{i}.jpg#0r1", "sentence1": "Two dogs run.", "sentence2": f"Animals {i}.",
                                "Flikr30kID": f"{i}.jpg"}) + "\n" for i, label in enumerate(labels))
    args = ["--jsonl", dump(raw / "snli_ve.jsonl", lines), "--image-dir", str(raw / "flickr30k_images")]
    return [(split, args) for split in ("train", "valid", "test")]


def gigaword(raw):
    src = dump(raw / "train.src.txt", "australia 's deficit shrunk by #.## billion <unk>\nthe cat sat on a mat\n")
    tgt = dump(raw / "train.tgt.txt", "australian deficit narrows\ncat sits on <unk>\n")
    return [(split, ["--source", src, "--target", tgt]) for split in ("train", "valid", "test")]


def dart(raw):
    records = [{"tripleset": [["Mars Hill College", "JOINED", "1973"], ["Mars Hill College", "LOCATION", "Mars Hill"]],
                "subtree_was_extended": False,
                "annotations": [{"source": "WikiSQL_decl_sents", "text": "Mars Hill College joined in 1973."},
                                {"source": "webnlg", "text": "A school in Mars Hill joined in 1973."}]},
               {"tripleset": [["Alan", "BIRTH_PLACE", "Ohio"]], "subtree_was_extended": True,
                "annotations": [{"source": "e2e", "text": "Alan was born in Ohio."}]}]
    args = ["--json", dump(raw / "dart-v1.1.1-full-train.json", records)]
    return [(split, args) for split in ("train", "valid", "test")]


def fetaqa(raw):
    lines = "".join(json.dumps({
        "feta_id": i, "table_source_json": "totto_source/x.json", "page_wikipedia_url": "http://en.wikipedia.org/x",
        "table_page_title": "Player", "table_section_title": "Statistics",
        "table_array": [["Year", "Team", "Yards"], ["2011", "SF", str(100 + i)]], "highlighted_cells_idx": [[1, 2]],
        "question": f"How many yards in 2011, case {i}?", "answer": f"He threw for {100 + i} yards in 2011.",
        "source": "mturk-approved"}) + "\n" for i in range(3))
    args = ["--jsonl", dump(raw / "fetaQA-v1_train.jsonl", lines)]
    return [(split, args) for split in ("train", "valid", "test")]


def spider(raw):
    db = raw / "database" / "concert_singer" / "concert_singer.sqlite"
    os.makedirs(db.parent)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE Singer (Singer_ID int, Name text, Age int)")
        connection.execute("CREATE TABLE Concert (Concert_ID int, Theme text)")
    tables = [{"db_id": "concert_singer", "table_names_original": ["Singer", "Concert"], "table_names": ["singer",
               "concert"], "column_names_original": [[-1, "*"], [0, "Singer_ID"], [0, "Name"], [0, "Age"],
                                                     [1, "Concert_ID"], [1, "Theme"]],
               "column_names": [], "column_types": [], "primary_keys": [1, 4], "foreign_keys": []}]
    questions = [{"db_id": "concert_singer", "question": q, "query": s, "query_toks": [], "query_toks_no_value": [],
                  "question_toks": [], "sql": {}}
                 for q, s in [("How many singers are there?", "SELECT count(*) FROM singer"),
                              ("List the concert themes.", "SELECT Theme FROM concert")]]
    args = ["--json", dump(raw / "train_spider.json", questions), "--tables", dump(raw / "tables.json", tables)]
    return [(split, args) for split in ("train", "valid", "test")]


def librispeech(raw):
    for subset in ("train-clean-100", "dev-clean"):
        folder = raw / "LibriSpeech" / subset / "19" / "198"
        os.makedirs(folder)
        lines = []
        for i, text in enumerate(["HELLO WORLD", "GOOD MORNING"]):
            tone = 0.3 * np.sin(np.arange(16000) * (0.05 + 0.03 * i)).astype(np.float32)
            soundfile.write(folder / f"19-198-{i:04d}.flac", tone, 16000)
            lines.append(f"19-198-{i:04d} {text}\n")
        dump(folder / "19-198.trans.txt", "".join(lines))
    root = ["--root", str(raw / "LibriSpeech")]
    return [("train", [*root, "--subset", "train-clean-100"]), ("valid", [*root, "--subset", "dev-clean"]),
            ("test", [*root, "--subset", "dev-clean"])]


def msrvtt_info(raw, splits):
    for i in range(len(splits)):
        video(raw / "videos" / f"video{i}.mp4")
    return dump(raw / "videodatainfo.json", {
        "info": {}, "videos": [{"category": 1, "url": "https://www.youtube.com/watch?v=x", "video_id": f"video{i}",
                                "start time": 1.0, "end time": 3.0, "split": split, "id": i}
                               for i, split in enumerate(splits)],
        "sentences": [{"caption": f"a clip {i} of a {word}", "video_id": f"video{i}", "sen_id": 2 * i + j}
                      for i in range(len(splits)) for j, word in enumerate(("car", "road"))]})


def msrvtt_caption(raw):
    args = ["--videodatainfo", msrvtt_info(raw, ["train", "train", "validate", "test"]),
            "--video-dir", str(raw / "videos")]
    return [(split, args) for split in ("train", "valid", "test")]


def msrvtt_qa(raw):
    msrvtt_info(raw, ["train", "train", "test"])
    qa = [{"answer": a, "category_id": 0, "id": i, "question": f"who is in clip {i}?", "video_id": i % 3}
          for i, a in enumerate(["man", "man", "woman", "dog"])]
    args = ["--qa", dump(raw / "train_qa.json", qa), "--video-dir", str(raw / "videos"), "--answer-set-size", "2"]
    return [(split, args) for split in ("train", "valid", "test")]


def imagenet(raw):
    for folder, colour in (("n01440764", (200, 40, 40)), ("n01443537", (40, 40, 200))):
        for i in range(2):
            image(raw / "train" / folder / f"{folder}_{i}.JPEG", colour=colour)
    dump(raw / "train" / "README.txt", "not an image")
    names = dump(raw / "LOC_synset_mapping.txt",
                 "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    args = ["--root", str(raw / "train"), "--class-names", names]
    return [(split, args) for split in ("train", "valid", "test")]


MNLI_HEADER = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
               "sentence2_parse sentence1 sentence2").split()


def mnli_tsv(path, label_columns, rows):
    lines = ["\t".join(MNLI_HEADER + label_columns)]
    lines += ["\t".join([str(i), "1", "2", "fiction", "(x)", "(y)", "(x)", "(y)", premise, hypothesis, *labels])
              for i, (premise, hypothesis, labels) in enumerate(rows)]
    return dump(path, "\n".join(lines) + "\n")


def glue(raw):
    train_tsv = mnli_tsv(raw / "MNLI" / "train.tsv", ["label1", "gold_label"],
                         [("A man sleeps.", "A person rests.", ["entailment"] * 2),
                          ("A man sleeps.", "He runs.", ["contradiction"] * 2),
                          ("A man sleeps.", "He dreams.", ["neutral"] * 2)])
    dev_tsv = mnli_tsv(raw / "MNLI" / "dev_matched.tsv", [f"label{i}" for i in range(1, 6)] + ["gold_label"],
                       [("A cat eats.", "An animal eats.", ["entailment"] * 6), ("A cat eats.", "It is asleep.",
                                                                                 ["contradiction"] * 6)])
    return [("train", ["--task", "mnli", "--tsv", train_tsv]), ("valid", ["--task", "mnli", "--tsv", dev_tsv]),
            ("test", ["--task", "mnli", "--tsv", dev_tsv])]


FIXTURES = {fixture.__name__: fixture for fixture in (coco_caption, refcoco, vqa, snli_ve, gigaword, dart, fetaqa,
                                                      spider, librispeech, msrvtt_caption, msrvtt_qa, imagenet, glue)}
METRICS = {"coco_caption": "cider", "refcoco": "acc_iou", "vqa": "vqa_score", "snli_ve": "accuracy",
           "gigaword": "rouge_l", "dart": "sacrebleu", "fetaqa": "sacrebleu", "spider": "exact_match",
           "librispeech": "wer", "msrvtt_caption": "cider", "msrvtt_qa": "accuracy", "imagenet": "accuracy",
           "glue": "accuracy"}


def convert(benchmark, split, args, destdir):
    module = __import__(f"run_scripts.{benchmark}.convert", fromlist=["CONVERTER"])
    return module.CONVERTER.main(["--destdir", str(destdir), "--split", split, *args])


def converted(benchmark, tmp_path):
    """The fixture converted into tmp_path/data; returns (data folder, the last split written)."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    os.makedirs(raw)
    for split, args in FIXTURES[benchmark](raw):
        assert convert(benchmark, split, args, data) == 0
    return data, split


def script(benchmark, name, *args, **env):
    """Run run_scripts/<benchmark>/<name> through bash; its stdout."""
    environment = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(["bash", os.path.join(ROOT, "run_scripts", benchmark, name), *map(str, args)],
                          capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def printed_command(benchmark, name, *args, variable, **env):
    """The argument list the script passes to its LAUNCHER / GENERATE command."""
    return script(benchmark, name, *args, **{variable: PRINT_ARGS}, **env).splitlines()


@pytest.mark.parametrize("benchmark", sorted(FIXTURES))
def test_pipeline_converts_trains_and_prints_the_score(benchmark, tmp_path, capsys):
    (data, subset), save = converted(benchmark, tmp_path), tmp_path / "ckpt"
    task = read_manifest(data)["task"]
    train_argv = printed_command(benchmark, "train.sh", data, save, "micro", *MICRO, variable="LAUNCHER")
    assert train_argv[:4] == ["--task", task, "--data", str(data)] and train_argv[-len(MICRO):] == MICRO
    assert train.main(train_argv) == 0
    checkpoint = save / "checkpoint_last.pt"
    generate_argv = printed_command(benchmark, "evaluate.sh", checkpoint, data, subset, variable="GENERATE")
    assert generate_argv[-1] == f"{save}/results/"
    capsys.readouterr()
    assert generate.main(generate_argv) == 0
    score = re.search(rf"^{task} \| {subset} \| (\d+) rows \| .*{METRICS[benchmark]} \d+\.\d+", capsys.readouterr().out,
                      re.M)
    assert score and int(score.group(1)) == len(ShardDataset(data, subset))


def test_gigaword_train_and_evaluate_scripts_run_through_bash(tmp_path):
    (data, _), save = converted("gigaword", tmp_path), tmp_path / "ckpt"
    script("gigaword", "train.sh", data, save, "micro", *MICRO)
    output = script("gigaword", "evaluate.sh", save / "checkpoint_last.pt", data)
    assert re.search(r"^gigaword \| test \| 2 rows \| rouge_l \d\.\d{4}", output, re.M)
    assert len((save / "results" / "generate-test.jsonl").read_text().splitlines()) == 2


def test_base_and_large_recipes_resolve_to_valid_configs(tmp_path):
    """Every benchmark's train.sh passes OFA's settings for ofa_base (its default arch) and ofa_large that
    ofasys-train accepts."""
    data = tmp_path / "data"
    assert convert("gigaword", "train", gigaword(tmp_path)[0][1], data) == 0
    for benchmark in sorted(FIXTURES):
        for arch in ("ofa_base", "ofa_large"):
            argv = printed_command(benchmark, "train.sh", data, tmp_path / "s", arch, variable="LAUNCHER")
            cfg = train.resolve_config(argv)
            assert cfg.model.arch == arch and cfg.optimization.max_update > 0
        default = printed_command(benchmark, "train.sh", data, tmp_path / "s", variable="LAUNCHER")
        assert default == printed_command(benchmark, "train.sh", data, tmp_path / "s", "ofa_base", variable="LAUNCHER")
    caption = train.resolve_config(printed_command("coco_caption", "train.sh", data, tmp_path / "s", "ofa_base",
                                                   variable="LAUNCHER", GPUS="4"))
    assert (caption.optimization.lr, caption.dataset.batch_size, caption.optimization.update_freq) == (1e-5, 8, 4)
    assert caption.optimization.max_update == 5 and caption.optimization.max_epoch == 5  # 2 rows / 128 per update


def rows(data, split):
    return list(ShardDataset(data, split))


def check_coco_caption(data, raw):
    train_rows = rows(data, "train")  # train + restval images, one row per caption
    assert [row["cap"] for row in train_rows] == ["A dog number 0.", "A cat.", "A dog number 1.", "A cat."]
    assert train_rows[0]["img"] == (raw / "train2014" / "COCO_train2014_000000000000.jpg").read_bytes()
    assert [row["cap"] for row in rows(data, "valid")] == [["A dog number 2.", "A cat."]]


def check_refcoco(data, raw):
    train_rows = rows(data, "train")
    assert [row["cap"] for row in train_rows] == ["the left dog", "a dog"] * 2
    assert train_rows[0]["patch_boxes"] == [2.0, 3.0, 12.0, 23.0] and len(rows(data, "testA")) == 1


def check_vqa(data, raw):
    assert (data / ANSWERS_FILE).read_text().split() == ["yes", "no"]
    assert [row["answer"] for row in rows(data, "train")] == [["yes"] * 8, ["no"] * 10, ["yes"] * 10]
    assert [row["answer"][:2] for row in rows(data, "valid")] == [["no", "no"], ["yes", "yes"]]
    assert [len(row["answer"]) for row in rows(data, "test")] == [10, 10, 10]
    assert read_manifest(data)["skipped_rows"] == {"train": 1, "valid": 1, "test": 0}


def check_snli_ve(data, raw):
    assert [row["label"] for row in rows(data, "train")] == ["yes", "maybe", "no"]
    assert read_manifest(data)["skipped_rows"]["train"] == 1  # gold_label "-"


def check_gigaword(data, raw):
    assert rows(data, "train")[0] == {"src": "australia 's deficit shrunk by #.## billion unk",
                                      "tgt": "australian deficit narrows"}


def check_dart(data, raw):
    assert len(rows(data, "train")) == 3 and [len(row["tgt"]) for row in rows(data, "valid")] == [2, 1]


def check_spider(data, raw):
    database = schema_from_sqlite(raw / "database" / "concert_singer" / "concert_singer.sqlite")
    assert rows(data, "train")[0]["database"] == database == [["singer", "singer_id , name , age"],
                                                             ["concert", "concert_id , theme"]]


def check_librispeech(data, raw):
    first = rows(data, "train")[0]
    assert first["text"] == "hello world" and first["id"] == "19-198-0000" and first["wav"][:4] == b"fLaC"


def check_msrvtt_qa(data, raw):
    assert (data / ANSWERS_FILE).read_text().split() == ["man", "woman"]
    assert [row["answer"] for row in rows(data, "train")] == ["man", "man", "woman"]
    assert [row["answer"] for row in rows(data, "test")] == ["man", "man", "woman", "dog"]


def check_imagenet(data, raw):
    assert [row["label_name"] for row in rows(data, "train")] == ["tench", "tench", "goldfish", "goldfish"]


def check_glue(data, raw):
    assert [row["label"] for row in rows(data, "train")] == ["yes", "no", "maybe"]
    assert rows(data, "train")[0]["premise"] == "A man sleeps."


CHECKS = {check.__name__[len("check_"):]: check for check in (
    check_coco_caption, check_refcoco, check_vqa, check_snli_ve, check_gigaword, check_dart, check_spider,
    check_librispeech, check_msrvtt_qa, check_imagenet, check_glue)}


@pytest.mark.parametrize("benchmark", sorted(CHECKS))
def test_converters_keep_the_published_records_as_the_tasks_expect(benchmark, tmp_path):
    data, _ = converted(benchmark, tmp_path)
    CHECKS[benchmark](data, tmp_path / "raw")


def test_refcoco_refuses_a_pickle_that_would_run_code(tmp_path, capsys):
    args = refcoco(tmp_path)[0][1]
    marker = tmp_path / "ran"
    (tmp_path / "refs(unc).p").write_bytes(
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # os.system("touch ...") when unpickled
    assert convert("refcoco", "train", args, tmp_path / "data") == 1
    assert "asks for os.system" in capsys.readouterr().err and not marker.exists()
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_converter_errors_name_the_file_and_what_was_expected(tmp_path, capsys):
    giga = gigaword(tmp_path)[0][1]
    (tmp_path / "train.tgt.txt").write_text("only one line\n")
    assert convert("gigaword", "train", giga, tmp_path / "g") == 1
    assert "train.src.txt, line 2" in capsys.readouterr().err
    vqa_valid = vqa(tmp_path)[1][1]
    assert convert("vqa", "valid", vqa_valid, tmp_path / "v") == 1
    assert "convert the train split into" in capsys.readouterr().err
    os.remove(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg")
    assert convert("vqa", "test", vqa_valid, tmp_path / "v") == 1
    assert "COCO_val2014_000000000001.jpg does not exist" in capsys.readouterr().err


def test_glue_reads_headerless_cola_and_skips_malformed_lines(tmp_path):
    cola = dump(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read was.\n")
    qqp = dump(tmp_path / "QQP" / "train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                               "0\t1\t2\tHow old?\tWhat age?\t1\n1\t3\t4\tbroken line\n")
    assert convert("glue", "train", ["--task", "cola", "--tsv", cola], tmp_path / "cola") == 0
    assert [(r["sentence"], r["label"]) for r in rows(tmp_path / "cola", "train")] == [
        ("The book was read.", "yes"), ("Book the read was.", "no")]
    assert convert("glue", "train", ["--task", "qqp", "--tsv", qqp], tmp_path / "qqp") == 0
    assert len(rows(tmp_path / "qqp", "train")) == 1 and read_manifest(tmp_path / "qqp")["skipped_rows"]["train"] == 1


def test_media_paths_store_paths_instead_of_bytes(tmp_path):
    data = tmp_path / "data"
    assert convert("imagenet", "train", [*imagenet(tmp_path)[0][1], "--media-paths"], data) == 0
    assert rows(data, "train")[0]["image"] == str(tmp_path / "train" / "n01440764" / "n01440764_0.JPEG")
