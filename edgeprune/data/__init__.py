"""Text: token streams and their cache, the embedded corpus, text sources, chat templates."""
