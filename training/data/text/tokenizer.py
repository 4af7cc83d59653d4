"""The subword tokenizer for review text: WordPiece trained with Hugging Face `tokenizers`.

All text cleanup lives in the tokenizer's own normalizer (`<br />` → space, Unicode NFD, accents
stripped, lower case), so `tokenizer.json` alone reproduces it: the service loads that file from
the checkpoint and tokenizes exactly as training did. [PAD] is id 0, the model's padding id;
no special tokens are added around a text and truncation is left to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID = 0  # model contract: 0 = padding
TOKENIZER_FILE = "tokenizer.json"


def new_tokenizer() -> Tokenizer:
    """An untrained WordPiece tokenizer with the normalizer and pre-tokenizer we train with."""
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(r"<br\s*/?>"), " "),  # IMDB's HTML line breaks
            normalizers.NFD(),
            normalizers.StripAccents(),
            normalizers.Lowercase(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # words and punctuation
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """WordPiece over `texts`; ids 0 and 1 are [PAD] and [UNK]."""
    tokenizer = new_tokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, UNK],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    assert tokenizer.token_to_id(PAD) == PAD_ID
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, cut to its first max_length (the service cuts the same way)."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return [enc.ids[:max_length] for enc in tokenizer.encode_batch(texts)]


def load_or_train(
    cache: Path | None, texts: Iterable[str], vocab_size: int, fresh: bool = False
) -> Tokenizer:
    """Reuses a run's saved tokenizer (a resumed run must keep its ids), else trains one."""
    if cache is not None and cache.exists() and not fresh:
        return Tokenizer.from_file(str(cache))
    tokenizer = train_tokenizer(texts, vocab_size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(tokenizer.to_str())
    return tokenizer
