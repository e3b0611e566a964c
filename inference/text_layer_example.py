"""
The README's picture of the text layer: a drawn banner (no real data: a gradient, bokeh, a bottle on a textured
table) left as it is and right with its copy (made-up Vietnamese headline, offer and disclaimer), side by side.

    python -m inference.text_layer_example --OUT=inference/assets/text_layer_example.jpg
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core import files, images, knobs
from inference import text_layer

OUT = "inference/assets/text_layer_example.jpg"  # the side-by-side JPEG
WIDTH = 1280  # of the side-by-side picture (each half is WIDTH/2 wide)
QUALITY = 85  # JPEG quality of the picture (the banners themselves are made at the pipeline's quality)
SEED = 3  # the drawn banner's bokeh and texture

ROW = {"id": "example", "caption": "Trà thảo mộc an thần giúp ngủ ngon, thư giãn tinh thần sau ngày dài làm việc",
       "description": "Mua 2 hộp giảm 30%, giao hàng miễn phí toàn quốc",
       "moreInfo": "Sản phẩm không phải là thuốc, không có tác dụng thay thế thuốc chữa bệnh"}


def drawn_banner(seed):
    """A 1024x533 stand-in for a generated banner: warm gradient, soft bokeh, a bottle, a grainy wooden table."""
    w, h = images.BANNER_SIZE
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - t) * np.array([250, 214, 165]) + t * np.array([196, 120, 80])
    canvas = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    bokeh = Image.new("RGB", (w, h), (0, 0, 0))
    draw = ImageDraw.Draw(bokeh)
    for _ in range(40):
        x, y, r = rng.integers(0, w), rng.integers(0, int(0.7 * h)), rng.integers(10, 45)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(60, 140, 3)))
    canvas = Image.fromarray(np.clip(np.asarray(canvas, np.int16) + np.asarray(
        bokeh.filter(ImageFilter.GaussianBlur(6)), np.int16), 0, 255).astype(np.uint8))
    table_top = int(0.72 * h)
    grain = rng.normal(0, 1, (h - table_top, w // 8)).repeat(8, axis=1)
    wood = np.clip(np.array([120, 72, 40]) + 28 * grain[..., None], 0, 255).astype(np.uint8)
    canvas.paste(Image.fromarray(wood).filter(ImageFilter.GaussianBlur(1)), (0, table_top))
    draw = ImageDraw.Draw(canvas)
    x0, x1 = int(0.70 * w), int(0.84 * w)
    draw.rounded_rectangle((x0, int(0.22 * h), x1, table_top + 20), radius=24, fill=(46, 110, 60))
    draw.rectangle((x0 + 18, int(0.13 * h), x1 - 18, int(0.24 * h)), fill=(220, 190, 90))
    draw.rounded_rectangle((x0 + 10, int(0.42 * h), x1 - 10, int(0.62 * h)), radius=8, fill=(245, 240, 225))
    return canvas


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    before = drawn_banner(cfg.SEED)
    after = text_layer.apply(before, ROW)
    after = images.decode_image(images.banner_jpeg(after))  # as the pipeline writes it
    half = (cfg.WIDTH // 2, round(cfg.WIDTH / 2 * before.height / before.width))
    picture = Image.new("RGB", (2 * half[0], half[1]))
    picture.paste(before.resize(half, Image.Resampling.LANCZOS), (0, 0))
    picture.paste(after.resize(half, Image.Resampling.LANCZOS), (half[0], 0))
    import io

    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=cfg.QUALITY)
    files.atomic_write(cfg.OUT, buf.getvalue())
    print(f"{cfg.OUT}: {picture.size[0]}x{picture.size[1]}, {len(buf.getvalue()) // 1024} KB")


if __name__ == "__main__":
    knobs.run_main(main)
