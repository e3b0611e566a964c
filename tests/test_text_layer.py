"""The text layer: every Vietnamese letter renders inside the banner, a missing glyph names the row and the character,
the measured contrast holds on white, black and noise, and the pass writes the same 1024x533 JPEG every time."""
import math
import unicodedata

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers import killed_on_call
from core import images, knobs
from inference import text_layer as tl

# written for this test (not from the real set), as long as the longest real caption (90 characters)
LONG_CAPTION = "Ưu đãi lớn cuối tuần: bộ nồi inox 5 đáy siêu bền, nấu nhanh, giữ nhiệt lâu, hợp mọi bếp ga"
VOWELS = "aăâeêioôơuưy"
TONES = "\u0300\u0301\u0309\u0303\u0323"  # huyền, sắc, hỏi, ngã, nặng (combining; NFC makes the precomposed letters)


def all_letters():
    """Every Vietnamese vowel with every tone (and none), lower and upper case, plus đ/Đ and the consonants."""
    words = []
    for v in VOWELS:
        word = unicodedata.normalize("NFC", v + "".join(v + t for t in TONES))
        words += [word, word.upper()]
    return " ".join(words + ["đ Đ", "bcdghklmnpqrstvx", "BCDGHKLMNPQRSTVX"])


ROW = {"id": "42", "caption": LONG_CAPTION, "description": "Giảm 50% hôm nay, chỉ 199.000đ cho 100 khách đầu tiên",
       "moreInfo": "Sản phẩm không phải là thuốc, không có tác dụng thay thế thuốc chữa bệnh", "bannerImage": "42.jpg"}


def backgrounds():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (533, 1024, 3), dtype=np.uint8))
    return {"white": Image.new("RGB", (1024, 533), "white"), "black": Image.new("RGB", (1024, 533), "black"),
            "noise": noise}


def ink_boxes(layout):
    for group in layout.groups + ([layout.badge] if layout.badge else []):
        for line in group.lines:
            x0, y0, x1, y1 = tl.load_font(line.font, line.size).getbbox(line.text, anchor="ls")
            yield line.x + x0, line.y + y0, line.x + x1, line.y + y1


def test_every_vietnamese_letter_and_the_longest_caption_render_inside_the_canvas():
    letters = all_letters()
    assert len(letters.replace(" ", "")) == 12 * 6 * 2 + 2 + 32
    cfg = tl.default_config(HEADLINE_MAX_CHARS=0, SUBLINE_MAX_CHARS=0, SUBLINE_MAX_LINES=10)
    row = dict(ROW, description=unicodedata.normalize("NFD", letters))  # decomposed input: NFC'd before the cmap
    copy = tl.extract_copy(row, cfg)
    assert copy.headline == LONG_CAPTION and copy.subline == letters
    image, layout = tl.render(Image.new("RGB", (1024, 533), "white"), copy, cfg, row["id"])
    assert image.size == (1024, 533)
    drawn = [line.text for g in layout.groups for line in g.lines]
    assert " ".join(drawn[:-1]) == f"{LONG_CAPTION} {letters}" and drawn[-1] == copy.disclaimer
    for x0, y0, x1, y1 in ink_boxes(layout):
        assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 533
    # the headline block and the disclaimer do not overlap
    assert layout.groups[0].box[3] <= layout.groups[1].box[1]


def test_headline_is_cut_at_a_phrase_boundary_never_inside_a_word():
    cfg = tl.default_config()
    headline = tl.extract_copy(ROW, cfg).headline
    assert headline == "Ưu đãi lớn cuối tuần: bộ nồi inox 5 đáy siêu bền, nấu nhanh"
    no_phrase = tl.shorten("một hai ba bốn năm sáu bảy tám chín mười mười một mười hai mười ba", 30)
    assert no_phrase.endswith("…") and set(no_phrase[:-1].split(" ")) <= set("một hai ba bốn năm sáu bảy tám".split())
    # a spaced range is not a phrase end
    assert tl.shorten("Sàn 4 - 7 chỗ rất đẹp và bền, giá tốt", 20) == "Sàn 4 - 7 chỗ rất…"


@pytest.mark.parametrize("text, offer", [
    ("Mua ngay giảm 50% hôm nay", "Giảm 50%"), ("Giá chỉ còn 199.000đ cho bạn", "Giá chỉ còn 199.000đ"),
    ("Gối massage 399k", "399k"), ("Trả góp lãi suất 0% trong 12 tháng", "Lãi suất 0%"),
    ("Sở hữu nhà chỉ 2 triệu/tháng", "Chỉ 2 triệu"), ("Da bò thật 100%", ""),
    ("Giao hàng chỉ từ 1 đến 3 ngày", "")])
def test_offer_badge_from_the_copy(text, offer):
    assert tl.find_offer(text) == offer


def test_disclaimer_is_a_knob_and_the_description_never_repeats_it():
    row = dict(ROW, description="Sản phẩm này không phải là thuốc", moreInfo="Freeship toàn quốc")
    copy = tl.extract_copy(row, tl.default_config())
    assert copy.disclaimer == "Sản phẩm này không phải là thuốc" and copy.subline == ""
    assert tl.extract_copy(ROW, tl.default_config(DISCLAIMER=False)).disclaimer == ""


def test_missing_glyph_names_the_row_and_the_character(tmp_path):
    row = dict(ROW, id="7", caption="Trà xanh 中 nguyên chất")
    with pytest.raises(knobs.InputError, match=r"row id=7: .*'中' \(U\+4E2D\)"):
        tl.apply(Image.new("RGB", (1024, 533)), row)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (1024, 533)).save(tmp_path / "in" / "42.jpg")
    pd.DataFrame([dict(ROW, description="Mới 한 về")]).to_csv(tmp_path / "info.csv", index=False)
    with pytest.raises(knobs.InputError, match=r"row id=42: .*'한'"):
        tl.main([f"--IN_DIR={tmp_path / 'in'}", f"--INFO={tmp_path / 'info.csv'}", f"--OUT_DIR={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.parametrize("name", ["white", "black", "noise"])
def test_contrast_measured_on_the_jpeg_is_at_least_4_5(name):
    cfg = tl.default_config()
    image, layout = tl.render(backgrounds()[name], tl.extract_copy(ROW, cfg), cfg, "42")
    written = images.decode_image(images.banner_jpeg(image))  # the pixels a viewer gets
    measured = tl.measured_contrasts(written, layout)  # the headline block, the disclaimer, the badge
    assert [text for text, _ in measured] == ["Ưu đãi lớn cuối tuần:", ROW["moreInfo"], "Giảm 50%"]
    for text, ratio in measured:
        assert math.isfinite(ratio), (name, text, ratio)
        assert ratio >= 4.5, (name, text, ratio)
    # the measure itself is WCAG's: #767676 on white is the well-known 4.54:1, white on black 21:1
    assert tl.contrast_ratio(tl.luminance([255] * 3), tl.luminance([0x76] * 3)) == pytest.approx(4.54, abs=0.01)
    assert tl.contrast_ratio(tl.luminance([255] * 3), tl.luminance([0] * 3)) == pytest.approx(21)
    if name == "noise":  # a busy canvas: the text needs a scrim, and sits on one
        assert layout.groups[0].alpha > 0


def test_the_pass_writes_the_same_1024x533_jpeg_every_time_and_resumes(tmp_path):
    (tmp_path / "in").mkdir()
    backgrounds()["noise"].resize((1024, 536)).save(tmp_path / "in" / "42.jpg")  # a generator-sized input
    pd.DataFrame([ROW]).to_csv(tmp_path / "info.csv", index=False)
    args = [f"--IN_DIR={tmp_path / 'in'}", f"--INFO={tmp_path / 'info.csv'}"]
    tl.main(args + [f"--OUT_DIR={tmp_path / 'a'}"])
    tl.main(args + [f"--OUT_DIR={tmp_path / 'b'}"])
    a, b = tmp_path / "a" / "42.jpg", tmp_path / "b" / "42.jpg"
    assert images.is_banner_jpeg(a) and a.read_bytes() == b.read_bytes()
    stamp = a.stat().st_mtime_ns
    tl.main(args + [f"--OUT_DIR={tmp_path / 'a'}"])  # resume: nothing to redo
    assert a.stat().st_mtime_ns == stamp
    tl.main(args + [f"--OUT_DIR={tmp_path / 'a'}", "--DISCLAIMER=0"])  # a new recipe redoes the banner
    assert a.read_bytes() != b.read_bytes()
    tl.main(args + [f"--OUT_DIR={tmp_path / 'a'}"])  # back to the first recipe: redone, the same bytes again
    assert a.read_bytes() == b.read_bytes()
    backgrounds()["white"].resize((1024, 536)).save(tmp_path / "in" / "42.jpg")  # the input banner changed
    tl.main(args + [f"--OUT_DIR={tmp_path / 'a'}"])
    assert a.read_bytes() != b.read_bytes()  # redone from the new banner, not kept because its name is the same


def test_a_killed_pass_keeps_what_it_finished(tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    rows = [dict(ROW, id=str(i), bannerImage=f"{i}.jpg") for i in range(3)]
    for row in rows:
        backgrounds()["black"].save(tmp_path / "in" / row["bannerImage"])
    pd.DataFrame(rows).to_csv(tmp_path / "info.csv", index=False)
    args = [f"--IN_DIR={tmp_path / 'in'}", f"--INFO={tmp_path / 'info.csv'}", f"--OUT_DIR={tmp_path / 'out'}"]
    real = images.save_banner
    monkeypatch.setattr(images, "save_banner", killed_on_call(real, 2))
    with pytest.raises(KeyboardInterrupt):
        tl.main(args)
    monkeypatch.setattr(images, "save_banner", real)
    capsys.readouterr()
    tl.main(args)
    assert "2 banners written, 1 already done" in capsys.readouterr().out
