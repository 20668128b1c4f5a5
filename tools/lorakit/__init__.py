"""Shared library of the Llama3 LoRA contest kit.

The CLIs in tools/ are thin wrappers; logic used by more than one tool lives here, once.
Everything here must import on Python 3.9 without MindSpore (MindSpore-dependent code is
imported lazily inside functions or lives in lorakit.mf).
"""

__version__ = "0.1.0"
