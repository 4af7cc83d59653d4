"""Text data: the WordPiece tokenizer, IMDB / WikiText-2 readers, token splits and batches."""

TEXT_DATASETS = ("imdb", "wikitext2")
