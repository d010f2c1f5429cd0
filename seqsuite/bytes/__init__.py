"""Byte-level language modelling (MambaByte): any files as bytes, bits per byte, text generation."""
from .data import ByteData, Utf8Stream, encode, list_files, load_bytes, read_bytes
from .demo import demo_corpus, make_demo
from .metrics import bits_per_byte, compressor_bpb, unigram_bpb
from .tasks import BytesLMTask, evaluate_bpb, generate_text, stream_bytes

__all__ = [
    "ByteData", "BytesLMTask", "Utf8Stream", "bits_per_byte", "compressor_bpb", "demo_corpus", "encode",
    "evaluate_bpb", "generate_text", "list_files", "load_bytes", "make_demo", "read_bytes", "stream_bytes", "unigram_bpb",
]
