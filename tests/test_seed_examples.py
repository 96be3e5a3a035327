"""The seed README's inference examples, end to end (issue 8): a micro model is trained to memorise the seed's
example inputs -> its expected outputs with the built-in tasks whose defaults are the seed's instructions, then
every example runs through OFASys.from_pretrained(...).inference(...) with its exact instruction string.

Media are synthesised under the seed's file names in a temporary folder that is the working directory, so the
seed's relative paths ("./video7021.mp4") resolve. Nothing may download, so the grounding example's URL is
replaced by a local image with a known "hand" box. Text-to-image runs with the session's digit image tokenizer
(OFASys's VQGAN cannot be installed offline): the seed's caption is memorised as one digit scan.
"""
import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from image_data import digit_rows

from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.hub import OFASys
from ofasys_fs.image_tokenizers.images import image_tensor, psnr, reconstruct
from ofasys_fs.metrics.box_iou import box_iou
from ofasys_fs.registry import build_task

CAPTION = "[IMAGE:img] <BOS> what does the image describe? <EOS> -> <BOS> [TEXT:cap] <EOS>"
GROUNDING = ('[IMAGE:img] <BOS> which region does the text " [TEXT:cap] " describe? <EOS> -> '
             '[BOX:patch_boxes,add_bos,add_eos]')
SUMMARY = '<BOS> what is the summary of article " [TEXT:src] "? <EOS> -> <BOS> [TEXT:tgt] <EOS>'
TABLE_TO_TEXT = ('<BOS> structured knowledge: " [STRUCT:database,uncased] "  . how to describe the tripleset ? '
                 '<EOS> -> <BOS> [TEXT:tgt] <EOS>')
TEXT_TO_SQL = ('<BOS> " [TEXT:src] " ; structured knowledge: " [STRUCT:database,max_length=876] " . generating sql '
               'code. <EOS> -> <BOS> [TEXT:tgt] <EOS>')
VIDEO_CAPTION = "[VIDEO:video] <BOS> what does the video describe? <EOS> -> <BOS> [TEXT:cap] <EOS>"
SPEECH = ('[AUDIO:wav] <BOS> what is the text corresponding to the voice? <EOS> -> '
          '[TEXT:text,preprocess=text_phone,add_bos,add_eos]')
TEXT_TO_IMAGE = ('what is the complete image? caption: [TEXT:text]"? -> '
                 '[IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]')

ARTICLE = ("poland 's main opposition party tuesday endorsed president lech walesa in an upcoming "
           "presidential run-off election after a reformed communist won the first round of voting .")
TRIPLES = [['Atlanta', 'OFFICIAL_POPULATION', '5,457,831'],
           ['[TABLECONTEXT]', 'METROPOLITAN_AREA', 'Atlanta'],
           ['5,457,831', 'YEAR', '2012'],
           ['[TABLECONTEXT]', '[TITLE]', 'List of metropolitan areas by population'],
           ['Atlanta', 'COUNTRY', 'United States']]
DATABASE = [['stadium', 'stadium_id , location , name , capacity , highest , lowest , average'],
            ['singer', 'singer_id , name , country , song_name , song_release_year , age , is_male'],
            ['concert', 'concert_id , concert_name , theme , stadium_id , year'],
            ['singer_in_concert', 'concert_id , singer_id']]
QUESTIONS = ['What are the names, countries, and ages for every singer in descending order of age?',
             'What are all distinct countries where singers above age 20 are from?',
             'What are the locations and names of all stations with capacity between 5000 and 10000?']
SQL = ["select name, country, age from singer order by age desc",
       "select distinct country from singer where age > 20",
       "select location, name from stadium where capacity between 5000 and 10000"]
CITY_CAPTION = "a city with tall buildings and a large green park."
CITY = digit_rows()[7]["img"]  # the picture the seed's caption is memorised as (8x8, in the tokenizer's domain)
GROUNDING_IMAGE = "20150622131649.jpg"  # the seed's URL ends with this name; a local file stands in for it
HAND_BOX = [36.0, 20.0, 84.0, 60.0]  # pixels of the 128x96 grounding image

# seed example -> (built-in task, training row, expected text); grounding is checked by IoU instead
EXAMPLES = {
    "caption": ("caption", {"img": "./COCO_val2014_000000222628.jpg",
                            "cap": "a man and woman sitting in front of a laptop computer"}),
    "grounding": ("refcoco", {"img": GROUNDING_IMAGE, "cap": "hand", "patch_boxes": HAND_BOX}),
    "summary": ("gigaword", {"src": ARTICLE, "tgt": "polish opposition endorses walesa in presidential run-off"}),
    "table_to_text": ("dart", {"database": TRIPLES,
                               "tgt": "atlanta is the metropolitan area in the united states in 2012."}),
    "video_caption": ("video_caption", {"video": "./video7021.mp4", "cap": "a baseball player is hitting a ball"}),
    "speech": ("asr", {"wav": "./1272-128104-0001.flac",
                       "text": "nor is mister klohs manner less interesting than his manner"}),
    "text_to_image": ("text_to_image", {"text": CITY_CAPTION, "img": CITY}),
}
MAX_UPDATE = 120  # memorised from ~50 updates on; the margin absorbs changes of init and schedule


def write_media(folder) -> None:
    """The seed's files: a COCO-named photo, the grounding image with a skin-coloured hand, an MSR-VTT-named
    clip and a LibriSpeech-named FLAC, each distinct enough to be told apart by a micro model."""
    photo = np.zeros((96, 128, 3), dtype=np.uint8)
    photo[:, :64] = (30, 60, 200)
    photo[40:80, 70:120] = (240, 240, 240)
    Image.fromarray(photo).save(folder / "COCO_val2014_000000222628.jpg", quality=95)
    scene = np.full((96, 128, 3), (20, 120, 40), dtype=np.uint8)
    x0, y0, x1, y1 = (int(v) for v in HAND_BOX)
    scene[y0:y1, x0:x1] = (230, 180, 150)
    Image.fromarray(scene).save(folder / GROUNDING_IMAGE, quality=95)
    with av.open(str(folder / "video7021.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(16):
            frame = np.zeros((48, 64, 3), dtype=np.uint8)
            frame[:, (index * 3) % 48:(index * 3) % 48 + 16] = (250, 250, 250)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    seconds = np.arange(4 * 16000) / 16000
    voice = 0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(2 * np.pi * 0.5 * seconds)) * seconds)
    soundfile.write(folder / "1272-128104-0001.flac", voice.astype(np.float32), 16000)


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory, image_tokenizer):
    """The memorising micro checkpoint, loaded through the hub, with the media folder as working directory."""
    folder = tmp_path_factory.mktemp("seed")
    write_media(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            tasks = [build_task(name).add_dataset([row], "train") for name, row in EXAMPLES.values()]
            sql_rows = [{"src": q, "database": DATABASE, "tgt": sql} for q, sql in zip(QUESTIONS, SQL)]
            tasks.append(build_task("spider").add_dataset(sql_rows, "train"))
            Trainer(arch="micro", device="cpu", num_bins=100, image_tokenizer=image_tokenizer.path, batch_size=4,
                    max_update=MAX_UPDATE, sampling="all", lr=5e-3, warmup_updates=10, lr_scheduler="fixed",
                    label_smoothing=0.0, dropout=0.0,
                    save_dir=str(folder / "ckpt"), save_interval_updates=MAX_UPDATE, log_interval=50, seed=1,
                    disable_validation=True).fit(tasks=tasks)
            yield OFASys.from_pretrained(str(folder / "ckpt" / "checkpoint_last.pt"), device="cpu")
        finally:
            torch.set_num_threads(threads)


def test_the_builtin_tasks_carry_the_seed_instructions():
    seed = {"caption": CAPTION, "refcoco": GROUNDING, "gigaword": SUMMARY, "dart": TABLE_TO_TEXT,
            "spider": TEXT_TO_SQL, "video_caption": VIDEO_CAPTION, "asr": SPEECH}
    assert {name: build_task(name).instruction.text for name in seed} == seed


def test_image_captioning(seed_model):
    output = seed_model.inference(CAPTION, data={'img': "./COCO_val2014_000000222628.jpg"})
    assert output.text == "a man and woman sitting in front of a laptop computer"


def test_visual_grounding(seed_model):
    output = seed_model.inference(GROUNDING, data={'img': GROUNDING_IMAGE, "cap": "hand"})
    assert box_iou(output.box, HAND_BOX) > 0.9


def test_text_summarization(seed_model):
    output = seed_model.inference(SUMMARY, data={'src': ARTICLE})
    assert output.text == "polish opposition endorses walesa in presidential run-off"


def test_table_to_text(seed_model):
    output = seed_model.inference(TABLE_TO_TEXT, data={'database': TRIPLES}, beam_size=1)
    assert output.text == "atlanta is the metropolitan area in the united states in 2012."


def test_text_to_sql(seed_model):
    data = [{'src': question, 'database': DATABASE} for question in QUESTIONS]
    output = seed_model.inference(TEXT_TO_SQL, data=data)
    assert [o.text for o in output] == SQL


def test_video_captioning(seed_model):
    output = seed_model.inference(VIDEO_CAPTION, data={'video': './video7021.mp4'})
    assert output.text == "a baseball player is hitting a ball"


def test_speech_to_text(seed_model):
    output = seed_model.inference(SPEECH, data={'wav': './1272-128104-0001.flac'})
    assert output.text == "nor is mister klohs manner less interesting than his manner"


def test_text_to_image(seed_model, image_tokenizer):
    output = seed_model.inference(TEXT_TO_IMAGE, data={'text': "a city with tall buildings and a large green park."})
    memorised = reconstruct(image_tokenizer.tokenizer, image_tensor(CITY, 8, 1)[None])
    assert output.image.size == (8, 8)
    assert psnr(image_tensor(output.image, 8, 1)[None], memorised) > 25
