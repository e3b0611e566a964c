"""The shared module on good and bad inputs: each bad input gives a clear error naming what is wrong."""
import io
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from core import REPO_ROOT
from core import dataset, devices, files, images, knobs, seeds
from core.knobs import InputError


def write_csv_bytes(path, text, bom=False, crlf=False):
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


GOOD = (
    'id,caption,description,moreInfo,bannerImage\n'
    '1,"Áo phủ xe, chống nước",Giảm 30%,,1.jpg\n'
    '2,Kem chống nắng,"Mua 1, tặng 1",Mỹ phẩm & Làm đẹp,2.jpg\n'
)


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_read_info_encodings(tmp_path, bom, crlf):
    df = dataset.read_info(write_csv_bytes(tmp_path / "info.csv", GOOD, bom=bom, crlf=crlf))
    assert list(df.columns) == dataset.INFO_COLUMNS
    assert df["id"].tolist() == ["1", "2"]
    assert df.loc[0, "caption"] == "Áo phủ xe, chống nước"  # quoted comma kept
    assert df.loc[1, "description"] == "Mua 1, tặng 1"
    assert df.loc[0, "moreInfo"] == ""  # empty stays empty, not "nan"
    assert df.loc[1, "bannerImage"] == "2.jpg"


def test_read_info_nan_text_becomes_empty(tmp_path):
    df = dataset.read_info(write_csv_bytes(tmp_path / "info.csv", "id,caption,description,moreInfo,bannerImage\n1,Xe,NaN,nan,1.jpg\n"))
    assert df.loc[0, "description"] == "" and df.loc[0, "moreInfo"] == ""


@pytest.mark.parametrize("text, message", [
    ("id,caption,description,bannerImage\n1,a,b,1.jpg\n", "missing column(s) ['moreInfo']"),
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,1.jpg\n1,d,e,f,2.jpg\n", "duplicate id value(s) ['1']"),
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,x.jpg\n2,d,e,f,x.jpg\n", "duplicate bannerImage value(s) ['x.jpg']"),
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,1.jpg\n2,d,e,f,\n", "empty bannerImage in data row(s) [2]"),
    ('id,caption,description,moreInfo,bannerImage\n1,"two\nlines",b,c,1.jpg\n,d,e,f,2.jpg\n',
     "empty id in data row(s) [2]"),  # the row, not the line: a quoted field spans two lines
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,1.jpg\n2,d,e,f,2.jpg,extra,more\n",
     "cannot parse CSV (Error tokenizing data. C error: Expected 5 fields in line 3, saw 7)"),  # one line
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,../../x.jpg\n", "must be a plain file name (no folders), got ['../../x.jpg']"),
    ("id,caption,description,moreInfo,bannerImage\n1,a,b,c,/etc/x.jpg\n", "must be a plain file name"),
])
def test_read_info_bad(tmp_path, text, message):
    path = write_csv_bytes(tmp_path / "info.csv", text)
    with pytest.raises(InputError) as e:
        dataset.read_info(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_read_info_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        dataset.read_info(tmp_path / "nope.csv")


def test_read_info_not_utf8(tmp_path):
    path = tmp_path / "info.csv"
    path.write_bytes("id,caption,description,moreInfo,bannerImage\n1,Áo,b,c,1.jpg\n".encode("cp1258"))
    with pytest.raises(InputError, match="not UTF-8"):
        dataset.read_info(path)


def test_read_info_images_missing_or_unreadable(tmp_path):
    path = write_csv_bytes(tmp_path / "info.csv", GOOD)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "1.jpg")
    with pytest.raises(InputError, match=r"image not found: .*2\.jpg \(row id=2\)"):
        dataset.read_info(path, check_images=True)
    (tmp_path / "images" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    with pytest.raises(InputError, match=r"unreadable image: .*2\.jpg \(row id=2\)"):
        dataset.read_info(path, check_images=True)
    images.save_banner(Image.effect_noise((1024, 536), 60).convert("RGB"), tmp_path / "images", "2.jpg")
    data = (tmp_path / "images" / "2.jpg").read_bytes()
    (tmp_path / "images" / "2.jpg").write_bytes(data[: len(data) // 2])  # a valid header, half the pixels
    with pytest.raises(InputError, match=r"unreadable image: .*2\.jpg \(row id=2\)"):
        dataset.read_info(path, check_images=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "2.jpg")
    assert len(dataset.read_info(path, check_images=True)) == 2


def save(img, path, fmt):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("mode, fmt", [("RGB", "JPEG"), ("CMYK", "JPEG"), ("L", "JPEG"), ("P", "PNG"),
                                       ("RGBA", "PNG"), ("LA", "PNG"), ("I;16", "PNG"), ("RGB", "PNG")])
def test_load_rgb_modes(tmp_path, mode, fmt):
    base = Image.new("RGB", (40, 30), (200, 100, 50))
    img = base.convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 30000)
    path = save(img, tmp_path / "x.jpg", fmt)  # PNG bytes behind a .jpg name too
    out = images.load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_load_rgb_transparent_goes_white(tmp_path):
    path = save(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), tmp_path / "t.png", "PNG")
    assert images.load_rgb(path).getpixel((0, 0)) == (255, 255, 255)


def test_load_rgb_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="image not found: .*nope.jpg"):
        images.load_rgb(tmp_path / "nope.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="unreadable image: .*bad.jpg"):
        images.load_rgb(tmp_path / "bad.jpg")


def test_save_banner_exact_size_and_name(tmp_path):
    path = images.save_banner(Image.new("RGB", images.GEN_SIZE, (10, 20, 30)), tmp_path / "out", "19.jpg")
    assert path == tmp_path / "out" / "19.jpg"
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (1024, 533) and im.mode == "RGB"
    assert images.is_banner_jpeg(path)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["19.jpg"]  # no temp file left behind


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    files.write_json(target, {"old": 1})

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        files.write_json(target, {"new": 2})
    assert files.read_json(target) == {"old": 1}  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_one_banner_check_refuses_truncated_png_and_wrong_size(tmp_path):
    path = images.save_banner(Image.effect_noise((1024, 536), 60).convert("RGB"), tmp_path, "x.jpg")
    assert images.is_banner_jpeg(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert not images.is_banner_jpeg(path)  # truncated
    assert not images.is_banner_jpeg(tmp_path / "missing.jpg")
    Image.new("RGB", (1024, 533)).save(tmp_path / "png.jpg", format="PNG")
    assert not images.is_banner_jpeg(tmp_path / "png.jpg")  # PNG bytes behind a .jpg name
    Image.new("RGB", (1024, 536)).save(tmp_path / "big.jpg", format="JPEG")
    assert not images.is_banner_jpeg(tmp_path / "big.jpg")  # not the scored size
    with pytest.raises(InputError, match=r"'pic.png'.*\.jpg or \.jpeg"):
        images.save_banner(Image.new("RGB", (8, 8)), tmp_path, "pic.png")


def test_json_store_resume(tmp_path):
    path = tmp_path / "store.json"
    with files.JsonStore(path, every=2) as store:
        store.put("a.jpg", "one")
        assert not path.exists()  # not yet flushed
        store.put("b.jpg", "two")
        assert files.read_json(path) == {"a.jpg": "one", "b.jpg": "two"}
        store.put("c.jpg", "three")
    again = files.JsonStore(path)
    assert "c.jpg" in again and len(again) == 3
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="expected a JSON object"):
        files.JsonStore(path)


def test_row_seed_is_stable_and_distinct():
    assert seeds.row_seed(0, "19") == seeds.row_seed(0, "19")
    assert seeds.row_seed(0, "19") != seeds.row_seed(1, "19")
    assert seeds.row_seed(0, "19") != seeds.row_seed(0, "20")
    assert 0 <= seeds.row_seed(123, "x") < 2**63


def test_per_row_noise_independent_of_batch_and_order():
    """The noise a method draws for a row (inference.pipelines.generators over runner.try_seed, as method1/method2
    pass them to the pipeline) depends on the row alone: not on its batch, its place in it, or the rows beside it."""
    from inference import pipelines, runner

    ids = ["3", "11", "25", "31", "42"]

    def noise(batch_ids):
        gens = pipelines.generators([runner.try_seed(7, i, 1) for i in batch_ids])
        return {i: torch.randn((4, 8, 8), generator=g) for i, g in zip(batch_ids, gens)}

    single = {}
    for i in ids:
        single.update(noise([i]))
    batched = {**noise(ids[:4]), **noise(ids[4:])}
    shuffled = noise(list(reversed(ids)))
    for i in ids:
        assert torch.equal(single[i], batched[i]) and torch.equal(single[i], shuffled[i])
    # each try and each part of a row its own noise; rows differ
    seeds = {runner.try_seed(7, "3", 1), runner.try_seed(7, "3", 2), runner.try_seed(7, "3", 1, part=1),
             runner.try_seed(7, "11", 1), runner.try_seed(8, "3", 1)}
    assert len(seeds) == 5 and not torch.equal(single["3"], single["11"])


def test_pick_dtype_cpu_is_fp32():
    assert devices.pick_dtype("cpu", "fp16") == torch.float32
    assert devices.pick_device("cpu") == "cpu"
    with pytest.raises(InputError, match="DTYPE must be fp16, bf16 or fp32, got 'float32'"):
        devices.pick_dtype("cuda", "float32")


def test_save_banner_refuses_paths(tmp_path):
    with pytest.raises(InputError, match="plain file name"):
        images.save_banner(Image.new("RGB", (8, 8)), tmp_path / "out", "../escaped.jpg")
    assert not (tmp_path / "escaped.jpg").exists()


def test_smoke_is_read_once_into_the_config_and_the_models_follow_it(tmp_path, monkeypatch):
    import models
    import smoke

    cfg = knobs.configure({"A": 1, "SMOKE_OVERRIDES": {"A": 2}}, [], env={"SMOKE": "1"})
    monkeypatch.setenv("SMOKE", "0")  # read when configuring, not at each use
    assert cfg.SMOKE and cfg.A == 2 and cfg.replace(A=3).SMOKE and "SMOKE" not in cfg.as_dict()
    with pytest.raises(InputError, match="unknown knob"):  # the environment's contract, not a knob
        knobs.configure({"A": 1}, ["--SMOKE=1"], env={})
    assert not knobs.configure({"A": 1}, [], env={}).SMOKE
    # models.py: the tiny stand-in when told so (cfg.SMOKE), whatever the environment says; the knob itself otherwise
    monkeypatch.setenv("SMOKE_CACHE", str(tmp_path))
    assert models.path("org/model", "realistic_vision", smoke=True) == smoke.smoke_model("sd15")
    monkeypatch.setenv("SMOKE", "1")
    assert models.path("org/model", "realistic_vision", smoke=False) == "org/model"
    assert models.path("org/model", None, smoke=True) == "org/model"  # no model key, no stand-in


def test_core_never_imports_what_sits_above_it():
    """core/ is the bottom layer: no import of the test-model factory, the loading hook or any stage."""
    import ast

    above = ("smoke", "models", "inference", "training", "preprocessing", "retrieval", "evaluation",
             "prompt_engineer", "data")
    for path in sorted((REPO_ROOT / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in above], (path.name, names)


SCRIPT = '''"""A test script."""
import sys
sys.path.insert(0, {root!r})
from core import knobs
DATA_DIR = "data"  # where the data lives
BATCH_SIZE = 4  # rows per batch
STRENGTH = 0.6
USE_FP16 = True
GEN_SIZE = (1024, 536)  # WxH
SMOKE_OVERRIDES = dict(BATCH_SIZE=2)  # what SMOKE=1 changes
def main(argv):
    cfg = knobs.configure(globals(), argv)
    print(cfg.DATA_DIR, cfg.BATCH_SIZE, cfg.STRENGTH, cfg.USE_FP16, *cfg.GEN_SIZE)
if __name__ == "__main__":
    knobs.run_main(main)
'''


def run_script(tmp_path, *args, env=None):
    script = tmp_path / "knobs_script.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    full_env = {k: v for k, v in os.environ.items() if k not in ("SMOKE", "DATA_DIR")}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env={**full_env, **(env or {})})


def test_knobs_from_flags_config_files_and_the_documented_env_only(tmp_path):
    assert run_script(tmp_path).stdout.split() == ["data", "4", "0.6", "True", "1024", "536"]
    out = run_script(tmp_path, "--BATCH_SIZE=8", "--strength", "1", "--use-fp16=0", "--GEN_SIZE=512,256",
                     env={"DATA_DIR": "/x"})
    assert out.stdout.split() == ["/x", "8", "1.0", "False", "512", "256"]
    out = run_script(tmp_path, "--DATA_DIR=/flag", env={"DATA_DIR": "/env"})  # the flag wins over the env var
    assert out.stdout.split()[0] == "/flag"
    out = run_script(tmp_path, "--use-fp16=0", "--USE_FP16", "--BATCH_SIZE", "2")  # a bare boolean flag means on
    assert out.stdout.split()[:4] == ["data", "2", "0.6", "True"]
    # a variable of the same name exported for another tool changes nothing; SMOKE=1 applies SMOKE_OVERRIDES
    out = run_script(tmp_path, env={"BATCH_SIZE": "99", "STRENGTH": "0.1", "USE_FP16": "0"})
    assert out.stdout.split()[:4] == ["data", "4", "0.6", "True"]
    out = run_script(tmp_path, env={"SMOKE": "1"})
    assert out.stdout.split()[1] == "2"
    # config files: NAME = literal lines, never executed; later files and then flags win
    cfg_file = tmp_path / "fast.py"
    cfg_file.write_text('"""a config"""\nBATCH_SIZE = 16  # comment\nGEN_SIZE = (768, 400)\n')
    out = run_script(tmp_path, str(cfg_file), "--STRENGTH=0.7")
    assert out.stdout.split() == ["data", "16", "0.7", "True", "768", "400"]
    out = run_script(tmp_path, str(cfg_file), "--BATCH_SIZE=3")
    assert out.stdout.split()[1] == "3"


def test_config_file_rejects_unknown_keys_wrong_types_and_code(tmp_path):
    scope = {"A": 1, "B": (1, 2), "C": "x", "__file__": ""}
    for text, message in (("NOPE = 1", "unknown knob NOPE"), ("A = 'abc'", "knob A: expected int"),
                          ("B = (1, 'x')", "knob B: expected a tuple"), ("import os", "only NAME = value"),
                          ("A = __import__('os').getpid()", "A must be a literal")):
        path = tmp_path / "bad.py"
        path.write_text(text + "\n")
        with pytest.raises(knobs.InputError, match=message):
            knobs.configure(scope, [str(path)], env={})


def test_configure_help_and_errors(tmp_path):
    out = run_script(tmp_path, "--help")
    assert out.returncode == 0 and "A test script." in out.stdout and "--BATCH_SIZE=4  # rows per batch" in out.stdout
    assert "--GEN_SIZE=(1024, 536)  # WxH  [on the command line: --GEN_SIZE=1024,536]" in out.stdout
    assert "SMOKE=1" in out.stdout and "BATCH_SIZE=2" in out.stdout.split("SMOKE=1")[-1]
    with pytest.raises(knobs.InputError, match="unknown knob '--nope=1'"):
        knobs.configure({"A": 1}, ["--nope=1"], env={})
    with pytest.raises(knobs.InputError, match="knob A: expected a value like 1, got .abc."):
        knobs.configure({"A": 1}, ["--A=abc"], env={})
    cfg = knobs.configure({"A": 1, "B": 0.5}, [], env={})
    assert cfg.replace(B=2).B == 2.0 and cfg.B == 0.5  # a changed copy; the config itself is read-only
    with pytest.raises(AttributeError):
        cfg.A = 3
    with pytest.raises(knobs.InputError, match="unknown knob C"):
        cfg.replace(C=1)


def test_importing_a_stage_has_no_side_effects():
    code = ("import os, sys; sys.argv = ['x', '--bogus']; os.environ['SEED'] = '7'; before = os.umask(0o027); "
            "os.umask(before); import inference.method1, inference.postprocess, retrieval.retrieve, "
            "preprocessing.translate, evaluation.evaluate; after = os.umask(before); "
            "from core import knobs; print(before == after, knobs.configure(inference.method1, [], env={}).SEED)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={**os.environ, "SMOKE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "42"]


def test_bad_flag_in_a_script_is_one_line_and_exit_2(tmp_path):
    out = run_script(tmp_path, "--BATCH_SIZE=abc")
    assert out.returncode == 2 and out.stderr.strip() == "error: knob BATCH_SIZE: expected a value like 4, got 'abc'"


def test_run_main_user_error_exits_2(tmp_path):
    code = ("import sys; sys.path.insert(0, %r); from core import knobs\n"
            "def main(argv): raise knobs.InputError('row id=7: caption is not text')\n"
            "knobs.run_main(main)") % str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: row id=7: caption is not text"  # one clear line, no traceback


def test_run_main_says_a_file_error_in_one_line_naming_the_file(tmp_path):
    """A read-only folder or a full disk met mid-run (OSError with a file name): `error: <file>: <reason>`, exit 2; an
    OSError about no file keeps its traceback."""
    locked = tmp_path / "out" / "index.npy"
    code = ("import sys; sys.path.insert(0, %r); from core import knobs\n"
            "def main(argv): raise OSError(30, 'Read-only file system', argv[0])\n"
            "knobs.run_main(main)") % str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-c", code, str(locked)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {locked}: Read-only file system"
    bare = subprocess.run([sys.executable, "-c", code.replace("'Read-only file system', argv[0]", "'no file'")],
                          capture_output=True, text=True)
    assert bare.returncode == 1 and "Traceback" in bare.stderr


def test_sample_maker(sample_dir):

    root = sample_dir
    train = dataset.read_info(root / "train" / "info.csv", check_images=True)
    test = dataset.read_info(root / "test" / "info.csv")
    assert len(train) == 12 and len(test) == 6
    assert (test["moreInfo"] == "").any()
    assert test["moreInfo"].str.contains("không phải là thuốc").any()
    assert test["caption"].str.len().max() > 250
    for name in train["bannerImage"]:
        assert images.load_rgb(root / "train" / "images" / name).size == images.BANNER_SIZE


@pytest.mark.slow
def test_process_info_under_torchrun(tmp_path):
    """Two real CPU processes (gloo): each sees its rank and the world size, and the shards cover every row once."""
    script = tmp_path / "ranks.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); from core import devices\n"
        "rank, world, device = devices.process_info(); devices.wait_for_everyone()\n"
        f"open({str(tmp_path)!r} + f'/rank{{rank}}.txt', 'w').write(' '.join(map(str, [world, *devices.shard(list(range(7)), rank, world)])))\n")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # each process writes its own file: two processes printing to one stdout interleave
    shards = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert shards == [["2", "0", "2", "4", "6"], ["2", "1", "3", "5"]]


def test_every_stage_reads_the_copy_through_the_one_rule():
    # Method 1's prompts, the retrieval texts and the LoRA captions: an invisible character (the competition's U+0008,
    # a zero-width space, a tab) between the letters must not reach a model or split a cache key
    import pandas as pd

    from core import prompt_fit
    from retrieval import retrieve
    from training import data

    dirty, clean = "Trà\x08 sữa\u200b\tngon", "Trà sữa ngon"
    count = len  # characters stand in for tokens: the rule, not the tokenizer, is under test
    assert prompt_fit.fit_prompt(dirty, dirty, "", count)[0] == prompt_fit.fit_prompt(clean, clean, "", count)[0]
    frame = pd.DataFrame({"caption": [dirty], "description": [dirty]})
    assert retrieve.row_texts(frame, "caption,description", "test") == retrieve.row_texts(
        pd.DataFrame({"caption": [clean], "description": [clean]}), "caption,description", "test")
    row = pd.DataFrame({"caption": [dirty], "description": [""]}).iloc[0]
    assert data.copy_text(row) == clean


def test_a_batch_size_below_one_is_one_line_not_a_hang():
    from core.batching import FittingBatches

    with pytest.raises(InputError, match="BATCH_SIZE must be at least 1, got 0"):
        FittingBatches(0)


def test_the_repetition_penalty_counts_the_real_tokens_of_its_window():
    """A token in the last `repetition_window` positions (prompt and output alike, 0 = all) is penalised once, a
    positive score divided by the penalty and a negative one multiplied; padding and tokens only before the window are
    not (the seed's ctransformers penalised its last 64 tokens)."""
    from core.sampling import RowSampler

    scores = torch.arange(1, 11, dtype=torch.float).repeat(2, 1)
    scores[:, 9] = -2.0
    ids = torch.tensor([[0, 0, 3, 4, 5, 9], [1, 2, 3, 6, 7, 9]])  # row 0: two pad slots (id 0) on the left

    def penalised(window):
        out = RowSampler([0, 0], [2, 0], sample=False, repetition_penalty=1.2, repetition_window=window)(ids, scores)
        return out, [torch.nonzero(out[r] != scores[r]).flatten().tolist() for r in range(2)]

    everything, which = penalised(0)
    assert which == [[3, 4, 5, 9], [1, 2, 3, 6, 7, 9]]
    assert everything[1, 9].item() == pytest.approx(-2.4) and everything[1, 1].item() == pytest.approx(2 / 1.2)
    assert penalised(3)[1] == [[4, 5, 9], [6, 7, 9]]
    assert penalised(5)[1] == [[3, 4, 5, 9], [2, 3, 6, 7, 9]]  # the window reaches into row 0's padding
