"""
Prompt report: how many seed-style prompts overflow the text encoder's 77 tokens, and how many of Method 1's do.

Counts with the real CLIP tokenizer: the model's own (TOKENIZER) when it can be loaded, otherwise (and with SMOKE=1)
the stand-in's (models.py's realistic_vision under SMOKE), whose vocab and merges are the real CLIP ones (49 408
tokens) rebuilt from the BPE file open_clip ships.
Runs on {SPLIT}/info_trans.csv (the English prompts Method 1 uses). When there is no translation it reports on the
Vietnamese info.csv as a PROXY and says so: CLIP's BPE splits Vietnamese diacritics into byte tokens, so Vietnamese
takes about 3x the tokens of its English translation (3.4x on the sample's hand-translated test rows) and the overflow
counts are upper bounds; it then adds a rough ESTIMATE for English: the template's own tokens plus the Vietnamese
fields' tokens divided by VI_PER_EN_TOKENS.

usage: python -m inference.prompt_report --DATA_DIR=../shared/zac2023 [--SPLIT=train] [--REPORT=path.json]
"""
import statistics

import models
from core import dataset, files, knobs
from core import prompt_fit

DATA_DIR = "data"  # dataset root (also from env DATA_DIR)
SPLIT = "train"  # train | test
TOKENIZER = models.REALISTIC_VISION  # model whose tokenizer counts (falls back to the real CLIP vocab)
STYLE = ""  # the STYLE knob of Method 1, if you use one
REPORT = ""  # optional JSON file for the figures
VI_PER_EN_TOKENS = 3.4  # CLIP tokens of Vietnamese per token of its English translation (measured on the sample's rows)


def load_tokenizer(name, smoke):
    """(tokenizer, where it came from); `smoke`: the run's cfg.SMOKE."""
    from transformers import CLIPTokenizer

    def load(use_stand_in):
        return models.load(CLIPTokenizer.from_pretrained, name, "realistic_vision", smoke=use_stand_in,
                           subfolder="tokenizer")

    try:
        source = models.path(name, "realistic_vision", smoke=smoke)
        return prompt_fit.check_tokenizer(load(smoke), source), source
    except knobs.InputError as e:
        note = (f"{name} unavailable ({str(e)[:80]}...); using the real CLIP vocab/merges rebuilt from "
                f"open_clip's bpe_simple_vocab_16e6.txt.gz (the smoke sd15 tokenizer): same ids as SD 1.5's tokenizer")
        return prompt_fit.check_tokenizer(load(True), "smoke sd15 tokenizer"), note


def report(info, tokenizer, style="", vi_per_en_tokens=VI_PER_EN_TOKENS):
    count, budget = prompt_fit.token_counter(tokenizer), prompt_fit.window(tokenizer)
    limit = budget + 2
    template_tokens = count(prompt_fit.seed_prompt("", "", ""))
    seed_tokens, ours_tokens, status, english_estimate = [], [], {}, []
    for row in info.itertuples():
        seed_tokens.append(count(prompt_fit.seed_prompt(row.caption, row.description, row.moreInfo)) + 2)
        fields = sum(count(text) for text in (row.caption, row.description, row.moreInfo))
        english_estimate.append(template_tokens + 2 + fields / vi_per_en_tokens)
        prompt, notes = prompt_fit.fit_prompt(row.caption, row.description, row.moreInfo, count, budget, style)
        ours_tokens.append(count(prompt) + 2)
        for part, what in notes.items():
            status.setdefault(part, {}).setdefault(what, 0)
            status[part][what] += 1
    overflow = [t for t in seed_tokens if t > limit]
    return {
        "rows": len(info), "window": limit,
        "seed_overflow": len(overflow), "seed_overflow_pct": round(100 * len(overflow) / max(1, len(info)), 1),
        "seed_tokens_lost_mean": round(sum(t - limit for t in overflow) / max(1, len(overflow)), 1),
        "seed_tokens_median": statistics.median(seed_tokens), "seed_tokens_max": max(seed_tokens),
        "ours_overflow": sum(t > limit for t in ours_tokens), "ours_tokens_median": statistics.median(ours_tokens),
        "ours_tokens_max": max(ours_tokens), "parts": status,
        "estimated_english_seed_overflow": sum(t > limit for t in english_estimate),
        "estimated_english_seed_tokens_median": round(statistics.median(english_estimate), 1),
        "estimated_english_seed_tokens_max": round(max(english_estimate), 1),
    }


def main(argv=None):
    cfg = knobs.configure(globals(), argv)
    folder = dataset.split_dir(cfg.SPLIT, cfg.DATA_DIR)
    trans = folder / "info_trans.csv"
    english = trans.is_file()
    info = dataset.read_info(trans if english else folder / "info.csv")
    tokenizer, source = load_tokenizer(cfg.TOKENIZER, cfg.SMOKE)
    figures = report(info, tokenizer, cfg.STYLE, cfg.VI_PER_EN_TOKENS)
    figures.update(text=str(trans if english else folder / "info.csv"), english=english, tokenizer=source)
    if english:
        figures.pop("estimated_english_seed_overflow")
        figures.pop("estimated_english_seed_tokens_median")
        figures.pop("estimated_english_seed_tokens_max")
    print(f"prompt report: {figures['rows']} rows of {figures['text']}")
    if not english:
        print("!! NO info_trans.csv: counting the VIETNAMESE text as a proxy (no translation offline). CLIP's BPE\n"
              "!! splits Vietnamese diacritics into byte tokens (~3x the tokens of English): the seed-style overflow\n"
              "!! below is an UPPER BOUND, not the figure for the English prompts Method 1 really uses.")
    print(f"tokenizer: {source}")
    print(f"seed template {prompt_fit.SEED_TEMPLATE!r}:\n"
          f"  {figures['seed_overflow']} / {figures['rows']} prompts overflow {figures['window']} tokens "
          f"({figures['seed_overflow_pct']} %), losing {figures['seed_tokens_lost_mean']} tokens each on average "
          f"(median length {figures['seed_tokens_median']}, max {figures['seed_tokens_max']})")
    print(f"fitted prompts (caption first, disclaimer dropped, cut at word boundaries):\n"
          f"  {figures['ours_overflow']} / {figures['rows']} overflow (median length {figures['ours_tokens_median']}, "
          f"max {figures['ours_tokens_max']})")
    for part, counts in figures["parts"].items():
        print(f"  {part:12s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if not english:
        print(f"ESTIMATE for English seed-style prompts (Vietnamese field tokens / {cfg.VI_PER_EN_TOKENS}, a rough ratio): "
              f"{figures['estimated_english_seed_overflow']} / {figures['rows']} would overflow (median length "
              f"{figures['estimated_english_seed_tokens_median']}, max {figures['estimated_english_seed_tokens_max']}); run on info_trans.csv for the real count")

    if cfg.REPORT:
        files.write_json(cfg.REPORT, figures)
        print(f"figures written to {cfg.REPORT}")


if __name__ == "__main__":
    knobs.run_main(main)
