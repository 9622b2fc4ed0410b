"""The refusal inspector: the most recent refused requests, kept where they are counted."""
