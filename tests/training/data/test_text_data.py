"""Text data: the WordPiece tokenizer, the aclImdb / WikiText-2 readers and length-grouped
batches, all on tiny synthetic files in the official layouts."""

import pytest
import torch
from tokenizers import Tokenizer

from training.data.text.batches import TextBatchIterator
from training.data.text.imdb import CLASSES, load_imdb
from training.data.text.split import from_sequences, lm_sequences
from training.data.text.synthetic import write_imdb_layout, write_wikitext_layout
from training.data.text.tokenizer import PAD_ID, encode_texts, load_or_train, train_tokenizer
from training.data.text.wikitext import EOS, PAD, load_wikitext

CORPUS = [
    "A wonderful film.<br /><br />Great acting!",
    "Boring and DULL; the plot was weak.",
    "The cast was great, the story wonderful.",
    "Café scenes, naïve plot<br/>but charming",
] * 5


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=120)


def test_tokenizer_reserves_pad_zero_and_cleans_text(tokenizer):
    assert tokenizer.token_to_id("[PAD]") == PAD_ID and tokenizer.token_to_id("[UNK]") == 1
    enc = tokenizer.encode("A WONDERFUL film.<br /><br />Great")
    assert "<" not in enc.tokens and "br" not in enc.tokens  # the tag is gone, not tokenized
    assert enc.ids == tokenizer.encode("a wonderful film. great").ids  # lower-cased
    assert tokenizer.encode("naïve café").ids == tokenizer.encode("naive cafe").ids
    assert PAD_ID not in tokenizer.encode("zebra xylophone").ids  # unknowns are [UNK] / pieces


def test_tokenizer_round_trip_and_persistence(tokenizer, tmp_path):
    text = "the cast was great, the story wonderful."
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    path = tmp_path / "run" / "tokenizer.json"
    saved = load_or_train(path, CORPUS, 120)
    reloaded = Tokenizer.from_file(str(path))  # what the service loads from a checkpoint
    for sample in CORPUS[:4]:
        assert reloaded.encode(sample).ids == saved.encode(sample).ids
    assert load_or_train(path, ["other text"], 50).to_str() == saved.to_str()  # reused on resume


def test_encode_texts_keeps_the_first_tokens(tokenizer):
    long = "great wonderful film " * 20
    (ids,) = encode_texts(tokenizer, [long], max_length=7)
    assert ids == tokenizer.encode(long).ids[:7]


def test_imdb_loader_reads_the_official_layout(tmp_path):
    root = write_imdb_layout(tmp_path, n_train=20, n_test=10)
    train = load_imdb(root, "train")
    assert len(train) == 20 and train.classes == CLASSES == ("negative", "positive")
    assert sorted(train.labels) == [0] * 10 + [1] * 10
    assert set(train.subset(6).labels) == {0, 1}  # shuffled: a prefix holds both classes
    assert load_imdb(root / "aclImdb", "test").texts == load_imdb(root, "test").texts
    assert any("<br />" in t for t in train.texts)
    with pytest.raises(FileNotFoundError, match="aclImdb"):
        load_imdb(tmp_path / "missing", "train")


def test_wikitext_loader_and_lm_sequences(tmp_path):
    root = write_wikitext_layout(tmp_path, n_lines=10)
    ids, vocab = load_wikitext(root, "train")
    assert vocab[0] == PAD and EOS in vocab and int(ids.min()) > 0
    test_ids, same = load_wikitext(root, "test", vocab)
    assert same == vocab
    split = lm_sequences(test_ids, 8, vocab)
    assert split.tokens.shape == split.targets.shape == (len(split), 8)
    assert torch.equal(split.tokens[0, 1:], split.targets[0, :-1])  # targets = next tokens
    assert torch.equal(split.tokens[1, 0], split.targets[0, -1])


def test_length_grouped_batches_cover_the_split_and_cut_padding():
    lengths = [3, 9, 1, 7, 2, 8, 5, 4, 6, 9, 2, 3]
    ids = [[5] * n for n in lengths]
    split = from_sequences(ids, list(range(12)), ("a", "b"))
    train = TextBatchIterator(split, 4, torch.device("cpu"), train=True, pool=3)
    seen = []
    for x, y in train.batches(epoch=0):
        rows = [lengths[int(i)] for i in y]
        assert x.shape == (4, max(rows))  # trimmed to the batch's longest review
        assert ((x != 0).sum(1) == torch.tensor(rows)).all()  # lengths follow from padding
        seen += y.tolist()
    assert sorted(seen) == list(range(12))
    evaluation = TextBatchIterator(split, 5, torch.device("cpu"))
    widths = sorted(x.shape[1] for x, _ in evaluation.batches(0))
    assert widths == [2, 5, 9]  # all 12 (ragged tail kept), grouped by length
