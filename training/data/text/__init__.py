"""Text data: the WordPiece tokenizer, IMDB / WikiText-2 / your own files' readers, token splits
and batches."""

TEXT_DATASETS = ("imdb", "wikitext2", "textfile")
