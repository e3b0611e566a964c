"""
Images: loading anything PIL reads as RGB, the ONE check of what counts as a finished banner (a valid, exactly
1024x533 JPEG, the same in every stage), and writing banners atomically.
"""
import io
from pathlib import Path

from core.files import atomic_write
from core.knobs import InputError

BANNER_SIZE = (1024, 533)  # what the competition scores
GEN_SIZE = (1024, 536)  # 533 is not a multiple of 8: generate at 536, then resize to 533
JPEG_QUALITY = 95
BANNER_SUFFIXES = (".jpg", ".jpeg")


def check_image(path, what=""):
    """Raise InputError naming `path` if it is missing or not a decodable image."""
    from PIL import Image

    path = Path(path)
    where = f" ({what})" if what else ""
    if not path.is_file():
        raise InputError(f"image not found: {path}{where}")
    try:
        with Image.open(path) as im:
            im.load()  # decode the pixels: verify() alone passes a truncated JPEG
    except Exception as e:  # PIL raises many types for corrupt files
        raise InputError(f"unreadable image: {path}{where}: {e}") from None


def load_rgb(path):
    """Open any image PIL reads as RGB: CMYK, L, P, LA/RGBA (composited on white), 16-bit, PNG bytes named .jpg."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except Exception as e:
        raise InputError(f"unreadable image: {path}: {e}") from None
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def to_banner(image):
    """Resize to exactly 1024x533 RGB (the generator works at 1024x536)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != BANNER_SIZE:
        image = image.resize(BANNER_SIZE, Image.Resampling.LANCZOS)
    return image


def banner_jpeg(image):
    """The exact JPEG bytes `save_banner` writes for `image` (exactly 1024x533)."""
    buf = io.BytesIO()
    to_banner(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def decode_image(data):
    """JPEG/PNG bytes -> RGB PIL image (e.g. to measure a banner exactly as it will be on disk)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def check_banner_name(banner_name, what=""):
    """A banner is written as JPEG bytes: its name must be a plain file name ending in .jpg/.jpeg."""
    where = f" ({what})" if what else ""
    if banner_name in ("", ".", "..") or Path(banner_name).name != banner_name:
        raise InputError(f"bannerImage {banner_name!r}{where}: must be a plain file name")
    if Path(banner_name).suffix.lower() not in BANNER_SUFFIXES:
        raise InputError(f"bannerImage {banner_name!r}{where}: banners are written as JPEG, so the name must end in "
                         f".jpg or .jpeg")
    return banner_name


def banner_problem(path):
    """Why `path` is not a finished banner ("missing", "unreadable: ...", "PNG, expected JPEG", "1024x536, expected
    1024x533"), or None when it is one: a complete JPEG of exactly 1024x533. THE check, the same in every stage."""
    from PIL import Image

    if not Path(path).is_file():
        return "missing"
    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            im.load()  # decode the pixels: a truncated file is not finished
    except Exception as e:  # PIL raises many types for corrupt files
        return f"unreadable: {e}"
    if fmt != "JPEG":
        return f"{fmt}, expected JPEG"
    if size != BANNER_SIZE:
        return f"{size[0]}x{size[1]}, expected {BANNER_SIZE[0]}x{BANNER_SIZE[1]}"
    return None


def is_banner_jpeg(path):
    """True for a finished banner (resume, manifest, evaluation): see `banner_problem`."""
    return banner_problem(path) is None


def save_banner(image, out_dir, banner_name):
    """Write `image` (a PIL image, or bytes from `banner_jpeg`) as an exactly 1024x533 JPEG named `banner_name` in
    `out_dir`, atomically; returns the path."""
    check_banner_name(banner_name)
    path = Path(out_dir) / banner_name
    atomic_write(path, image if isinstance(image, bytes) else banner_jpeg(image))
    return path


def mean_color(image_paths, size=(64, 33)):
    """Mean RGB in 0..1 over images (each downscaled first: the mean barely moves, the time drops 100x)."""
    import numpy as np
    from PIL import Image

    total, n = np.zeros(3), 0
    for path in image_paths:
        total += np.asarray(load_rgb(path).resize(size, Image.Resampling.BOX), dtype=np.float64).reshape(-1, 3).mean(0)
        n += 1
    if n == 0:
        raise InputError("mean_color: no images given")
    return tuple((total / n / 255.0).tolist())
