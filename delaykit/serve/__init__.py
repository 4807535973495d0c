"""The live server: many streaming sessions stepped together in one batch per 80 ms frame (``delaykit serve``)."""
