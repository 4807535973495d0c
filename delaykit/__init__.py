"""delaykit: a streaming multi-task speech toolkit.

One engine (the Mimi neural codec plus a Moshi-style multi-stream language model) steps once per 80 ms
frame; shifting the text stream ahead of the audio gives text-to-speech, behind it speech-to-text, and
beside two audio streams full-duplex dialogue.

Importing the package is cheap: torch and the models load only when a submodule that needs them is
imported.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
