"""Text datasets → PreparedData for a fit, and a checkpoint's evaluation batches.

IMDB and your own text files (textfile): the tokenizer is trained on the (possibly subset)
training texts, then both splits are encoded with it and cut to max_length; the checkpoint
ships tokenizer.json. WikiText-2: the
training split's word vocabulary (stored as the checkpoint's classes: class i = token i) and
non-overlapping seq_len sequences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer

from model.checkpoint import LoadedCheckpoint
from training.config import TrainConfig
from training.data.batches import Shard
from training.data.fit_data import PreparedData
from training.data.text.batches import TextBatchIterator
from training.data.text.imdb import TextSplit, load_imdb
from training.data.text.split import TokenSplit, from_sequences, lm_sequences
from training.data.text.text_file import load_text_files
from training.data.text.tokenizer import TOKENIZER_FILE, encode_texts, load_or_train
from training.data.text.wikitext import load_wikitext

CLASSIFIED_TEXTS = ("imdb", "textfile")  # one label per text; the tokenizer learns train's


def prepare_text(
    cfg: TrainConfig,
    device: torch.device,
    shard: Shard,
    tokenizer_cache: Path | None = None,
    fresh: bool = False,
    start_tokenizer: Path | None = None,
) -> PreparedData:
    """start_tokenizer: the tokenizer of the checkpoint whose weights a run starts from
    (--init-from). Its embedding rows are indexed by those token ids, so it is reused as is."""
    d = cfg.data
    if d.data_dir is None:
        raise ValueError(f"{d.dataset} needs --data-dir")
    if d.dataset in CLASSIFIED_TEXTS:
        train_text, test_text = _text_splits(cfg)
        train_text = _subset(train_text, d.train_subset)
        test_text = _subset(test_text, d.test_subset)
        if start_tokenizer is not None:
            tokenizer = Tokenizer.from_file(str(start_tokenizer))
        else:
            tokenizer = load_or_train(tokenizer_cache, train_text.texts, d.tokenizer_vocab, fresh)
        train, test = (encode_split(tokenizer, s, d.max_length) for s in (train_text, test_text))
        model = {"arch": "lstm", "task": "classify", "vocab_size": tokenizer.get_vocab_size()}
        preprocessing = {"kind": "text", "tokenizer": TOKENIZER_FILE, "max_length": d.max_length}
        extra = {TOKENIZER_FILE: tokenizer.to_str().encode()}
        task = "classify"
    elif d.dataset == "wikitext2":
        train_ids, vocabulary = load_wikitext(Path(d.data_dir), "train")
        test_ids, _ = load_wikitext(Path(d.data_dir), "test", vocabulary)
        train = _subset(lm_sequences(train_ids, d.seq_len, vocabulary), d.train_subset)
        test = _subset(lm_sequences(test_ids, d.seq_len, vocabulary), d.test_subset)
        model = {"arch": "lstm", "task": "lm", "vocab_size": len(vocabulary)}
        # Not a served kind: the service refuses "lm" checkpoints instead of misreading them.
        preprocessing = {"kind": "lm", "seq_len": d.seq_len, "vocabulary": "classes"}
        extra, task = {}, "lm"
    else:
        raise ValueError(f"unknown text dataset {d.dataset!r}")
    batch = cfg.optim.batch_size
    return PreparedData(
        train_it=TextBatchIterator(train, batch, device, train=True, seed=cfg.seed, shard=shard),
        test_it=TextBatchIterator(test, cfg.eval_batch_size, device),
        classes=train.classes,
        model=model,
        preprocessing=preprocessing,
        extra_files=extra,
        task=task,
    )


def _text_splits(cfg: TrainConfig) -> tuple[TextSplit, TextSplit]:
    """IMDB's train and test, or your files' train and val (skipped lines reported)."""
    d = cfg.data
    if d.dataset == "imdb":
        return load_imdb(Path(d.data_dir), "train"), load_imdb(Path(d.data_dir), "test")
    files = load_text_files(Path(d.data_dir), d.val_fraction, cfg.seed)
    for skipped in files.skipped:
        print(f"skipped {skipped.path}:{skipped.line}: {skipped.reason}", file=sys.stderr)
    return files.train, files.val


def encode_split(tokenizer: Tokenizer, split: TextSplit, max_length: int) -> TokenSplit:
    ids = encode_texts(tokenizer, split.texts, max_length)
    return from_sequences(ids, split.labels, split.classes)


def checkpoint_split(
    ckpt: LoadedCheckpoint, dataset: str, data_dir: Path, split: str, limit: int | None
) -> TokenSplit:
    """A split encoded exactly as the checkpoint was trained (its tokenizer / vocabulary)."""
    pre = ckpt.preprocessing
    if dataset == "imdb":
        tokenizer = Tokenizer.from_file(str(ckpt.directory / pre["tokenizer"]))
        reviews = _subset(load_imdb(data_dir, split), limit)
        return encode_split(tokenizer, reviews, int(pre["max_length"]))
    if dataset == "textfile":
        tokenizer = Tokenizer.from_file(str(ckpt.directory / pre["tokenizer"]))
        seed = int(ckpt.train.get("config", {}).get("seed", 0))
        fraction = ckpt.train.get("config", {}).get("data", {}).get("val_fraction", 0.2)
        files = load_text_files(data_dir, fraction, seed)
        texts = _subset(files.train if split == "train" else files.val, limit)
        return encode_split(tokenizer, texts, int(pre["max_length"]))
    if dataset == "wikitext2":
        ids, vocabulary = load_wikitext(data_dir, split, ckpt.classes)
        return _subset(lm_sequences(ids, int(pre["seq_len"]), vocabulary), limit)
    raise ValueError(f"unknown text dataset {dataset!r}")


def _subset(split, n: int | None):
    return split.subset(n) if n else split
