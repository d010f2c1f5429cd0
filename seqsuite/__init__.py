"""seqsuite: long-sequence modeling of DNA, audio and bytes with S6/S4 state space models."""
__version__ = "0.1.0"
