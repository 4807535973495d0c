"""Drivers that read the engine one way each, as described by a ``StreamLayout``.

``asr``: streaming speech recognition (text behind the audio), with word timestamps and semantic VAD;
``tts``: streaming speech synthesis (text ahead of the audio), words pushed as they come, word times out;
``tts_batch``: several syntheses as the items of one batch; ``tts_scheduler``: one worker stepping them for
several callers (threads);
``script``: TTS scripts (speaker turns, ``<break time="..."/>``) to the entries the TTS driver feeds;
``dialogue``: full-duplex conversation (one user frame in, one agent frame and text token out per 80 ms);
``words``: word assembly and timing from a text stream; ``session``: the streaming states a session holds.
"""
