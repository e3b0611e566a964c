"""
The training set of the LoRA: every train banner with its caption, checked before any model loads, the image
transform (resize to cover, crop, flip, RandAugment), and the order in which the banners are seen.

Determinism is per sample, not per process: the epoch's order comes from (SEED, epoch) and each sample's augmentation,
noise and timestep from (SEED, epoch, bannerImage). So a resumed run sees exactly what an uninterrupted one sees, and
batch 8x1, 4x2 or 2 GPUs x 4 draw the same numbers for the same image.
"""
from pathlib import Path

from core import dataset, files
from core.copy_text import normalize_copy
from core.images import load_rgb
from core.knobs import InputError
from core.seeds import row_seed


def caption_path(data_dir, captions=""):
    return Path(captions) if captions else dataset.split_dir("train", data_dir) / "llava_caption.json"


def read_vlm_captions(path):
    """{bannerImage: caption} from the captioning stage's JSON (every value text: one line naming the rows that are
    not); a missing file is None (the caller reports it), an empty one is an error: it means the captioning run wrote
    nothing."""
    path = Path(path)
    try:
        blank = path.is_file() and not path.read_bytes().strip()  # not JSON at all: said as an empty file below
        data = {} if blank else files.read_string_map(path, "{bannerImage: caption}")
    except OSError as e:
        raise InputError(f"{path}: unreadable caption file ({e})") from None
    if data == {}:
        raise InputError(f"{path}: empty caption file (rerun bash run/caption.sh, or delete it to train on the copy)")
    return None if data is None else {k: normalize_copy(v) for k, v in data.items()}


def copy_text(row):
    """The ad copy as a caption: caption, then description (moreInfo is mostly a category tag or a disclaimer)."""
    return ", ".join(t for t in (normalize_copy(row.caption), normalize_copy(row.description)) if t)


def load_train_set(data_dir, captions="", fallback=True):
    """[(bannerImage, image path, caption)] in info.csv order, and a report {source: count}.

    Every banner is decoded once here (a missing or unreadable one stops the run with its row id), so bad input fails
    in seconds, before the model loads. A banner without a VLM caption trains on its translated copy (info_trans.csv),
    else on the Vietnamese copy (info.csv); `fallback=False` stops instead.
    """
    train = dataset.split_dir("train", data_dir)
    info = dataset.read_info(train / "info.csv", check_images=True)
    cap_file = caption_path(data_dir, captions)
    vlm = read_vlm_captions(cap_file)
    trans_file = train / "info_trans.csv"
    trans = ({r.bannerImage: copy_text(r) for r in dataset.read_info(trans_file).itertuples()}
             if trans_file.exists() else {})
    items, report = [], {"vlm": 0, "info_trans": 0, "info": 0}
    for row in info.itertuples():
        text, source = (vlm or {}).get(row.bannerImage, ""), "vlm"
        if not text:
            if not fallback:
                where = f"{cap_file} is missing" if vlm is None else f"no caption in {cap_file}"
                raise InputError(f"row id={row.id} ({row.bannerImage}): {where} (CAPTION_FALLBACK=0)")
            text, source = trans.get(row.bannerImage, ""), "info_trans"
            if not text:
                text, source = copy_text(row), "info"
        if not text:
            raise InputError(f"row id={row.id} ({row.bannerImage}): no caption and no ad copy to fall back on")
        report[source] += 1
        items.append((row.bannerImage, str(train / "images" / row.bannerImage), text))
    if not items:
        raise InputError(f"{train / 'info.csv'}: no rows to train on")
    report.update(caption_file=str(cap_file), caption_file_found=vlm is not None)
    return items, report


def describe_captions(report, n):
    fallback = report["info_trans"] + report["info"]
    if not report["caption_file_found"]:
        line = f"captions: no {report['caption_file']} (bash run/caption.sh writes it): all {n} banners"
    elif report["vlm"] == 0:
        line = f"captions: none of the {n} banners in {report['caption_file']}: all {n}"
    else:
        line = f"captions: {report['vlm']}/{n} from {report['caption_file']}"
        if fallback:
            line += f"; {fallback} banner(s) without one"
    if fallback:
        line += (f" train on their ad copy ({report['info_trans']} English from info_trans.csv, {report['info']} "
                 f"Vietnamese from info.csv)")
    return line


def inputs_fingerprint(items):
    """Hashes of what training reads: the captions as used and the image bytes, in order."""
    import hashlib

    caps, imgs = hashlib.sha256(), hashlib.sha256()
    for name, path, caption in items:
        caps.update(f"{name}\t{caption}\n".encode())
        imgs.update(f"{name}\t{files.file_hash(path)}\n".encode())
    return {"n_images": len(items), "captions_sha256": caps.hexdigest(), "images_sha256": imgs.hexdigest()}


# ----------------------------------------------------------------------------------------------------------------------
# images


def make_transform(resolution, center_crop=True, randaugment=True):
    """PIL image -> float tensor in [-1, 1] of (3, height, width). Random parts draw from torch's global RNG, which
    the dataset seeds per (epoch, sample). The flip is not here: it is a per-sample decision (`flips`) that the
    latent cache can follow too."""
    from PIL import Image
    from torchvision import transforms

    width, height = resolution

    def cover(img):  # scale so the image covers width x height, keeping its aspect (banner 1024x533 -> 983x512)
        scale = max(width / img.width, height / img.height)
        size = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
        return img.resize(size, Image.Resampling.BICUBIC)

    steps = [transforms.Lambda(cover),
             transforms.CenterCrop((height, width)) if center_crop else transforms.RandomCrop((height, width))]
    if randaugment:
        steps.append(transforms.RandAugment())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    return transforms.Compose(steps)


def flips(seed, epoch, name):
    """Whether this sample is mirrored this epoch (probability 1/2)."""
    import torch

    return bool(torch.rand(1, generator=torch.Generator().manual_seed(row_seed(seed, f"flip:{epoch}:{name}"))) < 0.5)


class BannerDataset:
    """Items are (index, epoch) pairs, so a worker knows the epoch whose seed it must use."""

    def __init__(self, items, tokenizer, transform, seed, random_flip=False):
        self.items, self.tokenizer, self.transform, self.seed = items, tokenizer, transform, seed
        self.random_flip = random_flip

    def __len__(self):
        return len(self.items)

    def pixels(self, index, epoch, flip=None):
        """The sample's pixels at this epoch; `flip` True/False overrides the epoch's flip decision."""
        import torch

        name, path, _ = self.items[index]
        image = load_rgb(path)
        with torch.random.fork_rng(devices=[]):  # seed the transform without touching the caller's stream
            torch.manual_seed(row_seed(self.seed, f"augment:{epoch}:{name}"))
            pixels = self.transform(image)
        if flip is None:
            flip = self.random_flip and flips(self.seed, epoch, name)
        return pixels.flip(-1) if flip else pixels

    def __getitem__(self, key):
        index, epoch = key
        return {"index": index, "pixels": self.pixels(index, epoch), "input_ids": self.input_ids([index])[0]}

    def input_ids(self, indices):
        return self.tokenizer([self.items[i][2] for i in indices], padding="max_length", truncation=True,
                              max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids


# ----------------------------------------------------------------------------------------------------------------------
# order


def epoch_steps(n, seed, epoch, micro_batch, grad_accum, world):
    """The optimizer steps of one epoch: each a list of grad_accum * world micro-batches of sample indices (micro-batch
    a of process r is at a * world + r). The order is a permutation drawn from (seed, epoch); an incomplete last step
    is dropped, so every step averages the same number of images (a different few each epoch)."""
    import torch

    per_step = micro_batch * grad_accum * world
    generator = torch.Generator().manual_seed(row_seed(seed, f"order:{epoch}"))
    order = torch.randperm(n, generator=generator).tolist()
    chunks = [order[start:start + per_step] for start in range(0, n - per_step + 1, per_step)]
    return [[chunk[i:i + micro_batch] for i in range(0, per_step, micro_batch)] for chunk in chunks]


def sample_draws(seed, epoch, name, latent_shape, num_timesteps):
    """The random numbers of one sample at one epoch: timestep, noise, the VAE posterior draw, the noise offset."""
    import torch

    g = torch.Generator().manual_seed(row_seed(seed, f"noise:{epoch}:{name}"))
    timestep = torch.randint(0, num_timesteps, (1,), generator=g)
    noise = torch.randn(latent_shape, generator=g)
    posterior = torch.randn(latent_shape, generator=g)
    offset = torch.randn((latent_shape[0], 1, 1), generator=g)
    return timestep, noise, posterior, offset
