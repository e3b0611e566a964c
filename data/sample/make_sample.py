"""
Make the embedded sample: a tiny DATA_DIR with 12 train rows + banners and 6 test rows of Vietnamese ad copy.

The banners are drawn by code (gradient, product shapes, a headline box), so nothing binary is committed and the
sample is the same on every machine. A few train images use the awkward encodings real data has (CMYK JPEG,
grayscale, PNG bytes named .jpg), and one test file name also exists in train with other content, as in the
competition, so the demo exercises those paths.

usage: python data/sample/make_sample.py [OUT_DIR]   (default: data/sample; existing files are kept)
"""
import csv
import io
import random
import sys
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from core.images import BANNER_SIZE
from core.files import atomic_write  # noqa: E402

DISCLAIMER = "Sản phẩm không phải là thuốc, không có tác dụng thay thế thuốc chữa bệnh"

# id, caption, description, moreInfo, bannerImage
TRAIN = [
    ("3", "Áo phủ xe 3 lớp tráng nhôm cách nhiệt, chống thấm nước, bảo vệ xe khỏi lo bẻ trộm gương.",
     "Mua ngay giảm giá 30%", "Miễn phí giao hàng nhanh toàn quốc", "3.jpg"),
    ("11", "Mẫu thảm lót sàn mới nhất cho các dòng xe từ 4 - 7 chỗ. Sang trọng, bền đẹp, giảm ồn.",
     "Đăng kí hôm nay giảm ngay 20% đơn hàng.", "Lắp đặt chuẩn đẹp rồi mới thanh toán, không ưng hoàn tiền", "11.jpg"),
    ("25", "Viên uống bổ gan thảo dược giúp thanh nhiệt, giải độc, hỗ trợ tăng cường chức năng gan",
     "Mua 2 tặng 1 hôm nay", DISCLAIMER, "25.jpg"),
    ("31", "Dán sứ veneer thẩm mỹ không mài răng, nụ cười trắng sáng chỉ sau 2 giờ",
     "Ưu đãi 50% cho 20 khách hàng đầu tiên", "Nha khoa chuẩn quốc tế", "31.jpg"),
    ("42", "Căn hộ cao cấp view sông trung tâm quận 7, thanh toán 30% nhận nhà ngay",
     "Chiết khấu lên đến 12%", "Bất động sản", "42.jpg"),
    ("57", "Kem chống nắng dưỡng trắng da SPF50+, thấm nhanh, không bết dính",
     "Giảm 40% chỉ trong tuần này", "Mỹ phẩm & Làm đẹp", "57.jpg"),
    ("63", "Nồi chiên không dầu 6 lít điều khiển cảm ứng, nấu ăn lành mạnh cho cả gia đình",
     "Bảo hành 24 tháng, đổi mới trong 7 ngày", "Thiết bị gia dụng", "63.jpg"),
    ("78", "Khóa học tiếng Anh giao tiếp online 1 kèm 1 với giáo viên bản xứ",
     "Học thử miễn phí 3 buổi", "", "78.jpg"),
    ("84", "Sữa hạt dinh dưỡng cho người lớn tuổi, bổ sung canxi, giúp xương chắc khỏe",
     "Mua 1 thùng tặng 6 hộp", DISCLAIMER, "84.jpg"),
    ("96", "Váy maxi đi biển họa tiết hoa nhí, chất voan mềm mát, đủ size",
     "Freeship đơn từ 199k", "Thời trang nữ", "96.jpg"),
    ("105", "Tai nghe bluetooth chống ồn chủ động, pin 30 giờ, kết nối đa điểm",
     "Giá sốc chỉ 990.000đ", "Thiết bị công nghệ", "105.jpg"),
    ("117", "Bánh trung thu handmade nhân trứng muối, hộp quà sang trọng làm quà biếu",
     "Đặt trước giảm 15%", "Thực phẩm", "117.jpg"),
]

TEST = [
    ("1", "Bọc ghế da ô tô cao cấp, may đo theo từng dòng xe, chống nóng, dễ vệ sinh",
     "Giảm ngay 25% khi đặt lịch hôm nay", "Lắp tận nơi, không đẹp không lấy tiền", "1.jpg"),
    # a test file name that also exists in train with other content: the two folders must never mix
    ("2", "Trà thảo mộc hỗ trợ giấc ngủ ngon, giúp tinh thần thư thái, giảm căng thẳng mệt mỏi",
     "Combo 3 hộp chỉ 399k", DISCLAIMER, "3.jpg"),
    ("4", "Niềng răng trong suốt, thẩm mỹ, không đau, \"cam kết\" hiệu quả 100%",
     "Trả góp 0%, ưu đãi 10 triệu", "", "4.jpg"),
    ("5", "Đất nền sổ đỏ từng lô ven biển, hạ tầng hoàn thiện, cách sân bay 15 phút, pháp lý minh bạch, ngân hàng hỗ "
          "trợ vay 70% lãi suất ưu đãi trong 24 tháng đầu, tặng gói nội thất 200 triệu cho khách hàng đặt cọc sớm nhất, "
          "số lượng có hạn, liên hệ ngay hôm nay để được tư vấn 🏖️",
     "Chiết khấu 8%, tặng vàng", "Bất động sản", "5.jpg"),
    ("6", "Serum vitamin C làm sáng da, mờ thâm nám sau 14 ngày",
     "Mua 1 tặng 1", "Mỹ phẩm & Làm đẹp", "6.jpg"),
    ("7", "Máy lọc không khí bù ẩm, lọc bụi mịn PM2.5, khử mùi, diệt khuẩn",
     "Giảm 2.000.000đ, trả góp 0%", "Thiết bị gia dụng", "7.jpg"),
]

PALETTES = [((236, 111, 42), (252, 220, 160)), ((30, 90, 170), (170, 215, 245)), ((40, 140, 90), (210, 240, 200)),
            ((200, 40, 70), (250, 200, 210)), ((90, 60, 150), (220, 205, 245)), ((40, 40, 40), (200, 200, 200))]


def ascii_fold(text):
    """The default bitmap-free font lacks Vietnamese glyphs; draw the headline without diacritics instead of tofu."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def draw_banner(row_id, caption, description):
    rng = random.Random(f"sample-banner-{row_id}")
    w, h = BANNER_SIZE
    dark, light = rng.choice(PALETTES)
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):  # vertical gradient, light to dark
        t = y / (h - 1)
        color = tuple(int(light[c] * (1 - t) + dark[c] * t) for c in range(3))
        for x in range(w):
            px[x, y] = color
    draw = ImageDraw.Draw(img)
    # a "product": a few overlapping shapes on the right half
    for _ in range(rng.randint(2, 4)):
        cx, cy, r = rng.randint(560, 900), rng.randint(150, 400), rng.randint(60, 160)
        fill = tuple(rng.randint(30, 255) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=(255, 255, 255), width=4)
        else:
            draw.rounded_rectangle((cx - r, cy - r // 2, cx + r, cy + r), radius=24, fill=fill)
    # headline box with text, as about half of the real banners have
    draw.rounded_rectangle((40, 60, 520, 300), radius=20, fill=(255, 255, 255))
    font_big = ImageFont.load_default(size=34)
    font_small = ImageFont.load_default(size=26)
    words, lines, line = ascii_fold(caption).split(), [], ""
    for word in words:
        if len(line) + len(word) > 24:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    for i, text in enumerate(lines[:5]):
        draw.text((60, 75 + 42 * i), text, fill=dark, font=font_big)
    draw.rounded_rectangle((40, 340, 520, 410), radius=30, fill=dark)
    draw.text((60, 358), ascii_fold(description)[:30], fill=(255, 255, 255), font=font_small)
    return img


def encode(img, banner_name):
    """Most banners are RGB JPEG; a few use the encodings real data has, to exercise the loaders."""
    buf = io.BytesIO()
    if banner_name == "25.jpg":
        img.convert("CMYK").save(buf, format="JPEG", quality=90)
    elif banner_name == "63.jpg":
        img.convert("L").save(buf, format="JPEG", quality=90)
    elif banner_name == "105.jpg":
        img.save(buf, format="PNG", optimize=True)  # PNG bytes behind a .jpg name
    else:
        img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_info(path, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "caption", "description", "moreInfo", "bannerImage"])
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def make_sample(out_dir=HERE):
    out_dir = Path(out_dir)
    for split, rows in (("train", TRAIN), ("test", TEST)):
        if not (out_dir / split / "info.csv").exists():
            write_info(out_dir / split / "info.csv", rows)
    for row_id, caption, description, _, banner_name in TRAIN:
        path = out_dir / "train" / "images" / banner_name
        if not path.exists():
            atomic_write(path, encode(draw_banner(row_id, caption, description), banner_name))
    return out_dir


if __name__ == "__main__":
    print(make_sample(sys.argv[1] if len(sys.argv) > 1 else HERE))
