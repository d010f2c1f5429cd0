"""Genomics data layer: tokenizer, FASTA reader and BED/manifest validation."""
import gzip
import struct
import zlib

import pytest

from seqsuite.errors import UserError
from seqsuite.genomics.data import (Fasta, Interval, Tokenizer, chromosome_splits, merge_intervals,
                                    read_bed, read_manifest)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQSUITE_CACHE", str(tmp_path / "cache"))


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_folds_case_and_maps_iupac_to_n():
    tok = Tokenizer()
    ids = tok.encode("ACGTNacgtnRYKMswbdhvU-")
    assert tok.decode(ids) == "ACGTNACGTN" + "N" * 12
    assert tok.vocab["PAD"] == 0 and set(tok.vocab) >= {"PAD", "BOS", "EOS", "MASK", "A", "C", "G", "T", "N"}
    assert tok.vocab_size == 9
    assert Tokenizer.from_dict(tok.to_dict()).vocab == tok.vocab


def test_tokenizer_keep_case_and_reverse_complement():
    tok = Tokenizer(keep_case=True)
    assert tok.vocab_size == 14
    ids = tok.encode("ACgtN")
    assert tok.decode(ids) == "ACgtN"
    assert tok.decode(tok.reverse_complement(ids)) == "NacGT"
    plain = Tokenizer()
    assert plain.decode(plain.reverse_complement(plain.encode("AACGTN"))) == "NACGTT"


# ---------------------------------------------------------------- FASTA

def test_fasta_crlf_and_lowercase_accepted(tmp_path):
    fa = write(tmp_path / "g.fa", ">chr1 desc\r\nACGTacgt\r\nNNac\r\n>chr2\r\nGGGG\r\n", mode="w")
    f = Fasta(fa)
    assert f.names == ["chr1", "chr2"]
    assert f.lengths == {"chr1": 12, "chr2": 4}
    assert f.tokenizer.decode(f.fetch("chr1", 2, 11)) == "GTACGTNNA"
    assert (tmp_path / "g.fa.fai").exists()


def test_fasta_missing_and_gzip_refused(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Fasta(tmp_path / "nope.fa")
    gz = tmp_path / "g.fa.gz"
    with gzip.open(gz, "wt") as f:
        f.write(">chr1\nACGT\n")
    with pytest.raises(UserError, match="bgzip"):
        Fasta(gz)


def test_fasta_empty_file(tmp_path):
    with pytest.raises(UserError, match="empty"):
        Fasta(write(tmp_path / "e.fa", ""))


def _bgzip(data: bytes) -> bytes:
    """A minimal BGZF writer (gzip members with the 'BC' extra field, then the EOF block)."""
    out = b""
    for i in range(0, max(len(data), 1), 60000):
        block = data[i:i + 60000]
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        cdata = comp.compress(block) + comp.flush()
        bsize = 18 + len(cdata) + 8 - 1
        out += (b"\x1f\x8b\x08\x04" + b"\0" * 4 + b"\0\xff" + struct.pack("<H", 6) + b"BC"
                + struct.pack("<HH", 2, bsize) + cdata
                + struct.pack("<II", zlib.crc32(block) & 0xFFFFFFFF, len(block)))
    return out + bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def test_fasta_bgzip_accepted(tmp_path):
    text = ">chr1\n" + "ACGTTGCA" * 20 + "\n>chr2\nGGGGCCCC\n"
    p = tmp_path / "g.fa.gz"
    p.write_bytes(_bgzip(text.encode()))
    f = Fasta(p, verbose=False)
    assert f.lengths == {"chr1": 160, "chr2": 8}
    assert f.tokenizer.decode(f.fetch("chr1", 0, 8)) == "ACGTTGCA"


def test_fasta_index_in_cache_when_folder_read_only(tmp_path, monkeypatch):
    import seqsuite.genomics.data as data

    d = tmp_path / "ro"
    d.mkdir()
    fa = write(d / "g.fa", ">chr1\nACGT\n")
    real = data._writable_dir
    monkeypatch.setattr(data, "_writable_dir", lambda p: p != d and real(p))  # root ignores chmod
    f = Fasta(fa)
    assert f.lengths == {"chr1": 4}
    assert not (d / "g.fa.fai").exists()
    assert list((tmp_path / "cache" / "fai").glob("g.fa-*.fai"))


def test_fasta_index_unwritable_everywhere_is_clear(tmp_path, monkeypatch):
    import seqsuite.genomics.data as data

    fa = write(tmp_path / "g.fa", ">chr1\nACGT\n")
    monkeypatch.setattr(data, "_writable_dir", lambda d: False)
    with pytest.raises(UserError, match="cannot write a FASTA index"):
        Fasta(fa)


# ---------------------------------------------------------------- BED

LENGTHS = {"chr1": 1000, "chr2": 500}


@pytest.mark.parametrize("line,msg", [
    ("chrX\t0\t100\ttrain", "not in the FASTA"),
    ("chr1\t900\t1200\ttrain", "past the end"),
    ("chr1\t100\t100\ttrain", "start must be"),
    ("chr1\t100\t50\ttrain", "start must be"),
    ("chr1\t0\t100\tholdout", "unknown split"),
    ("chr1\t0\t100", "expected 4 columns"),
    ("chr1\tzero\t100\ttrain", "integers"),
])
def test_bed_errors_name_the_line(tmp_path, line, msg):
    bed = write(tmp_path / "b.bed", "chr1\t0\t10\ttrain\n" + line + "\n")
    with pytest.raises(UserError, match=msg) as e:
        read_bed(bed, LENGTHS)
    assert "b.bed:2" in str(e.value) and "\n" not in str(e.value)


def test_bed_reads_basenji_layout_and_merges(tmp_path):
    bed = write(tmp_path / "b.bed", "chr1\t0\t100\ttrain\nchr1\t100\t200\ttrain\n"
                                    "chr1\t200\t300\tvalid\nchr2\t0\t50\tvalidation\nchr2\t60\t80\ttest\n")
    s = read_bed(bed, LENGTHS)
    assert merge_intervals(s["train"]) == [Interval("chr1", 0, 200)]
    assert len(s["valid"]) == 2 and len(s["test"]) == 1


def test_chromosome_holdout(tmp_path):
    s = chromosome_splits(LENGTHS, ["chr2"], None)
    assert [i.chrom for i in s["train"]] == ["chr1"] and s["test"] == []
    with pytest.raises(UserError, match="not in the FASTA"):
        chromosome_splits(LENGTHS, ["chr9"], None)


def test_manifest_file_and_folder(tmp_path):
    write(tmp_path / "a.fa", ">c1\nACGT\n")
    (tmp_path / "b").mkdir()
    write(tmp_path / "b" / "chr1.fa", ">c1\nACGT\n")
    write(tmp_path / "b" / "chr2.fasta", ">c2\nACGT\n")
    m = write(tmp_path / "m.tsv", "alpha\ta.fa\nbeta\tb\n")
    entries = read_manifest(m)
    assert [s for s, _ in entries] == ["alpha", "beta"] and len(entries[1][1]) == 2
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(write(tmp_path / "m2.tsv", "alpha\ta.fa\nbeta\tmissing.fa\n"))
    with pytest.raises(UserError, match="species<TAB>path"):
        read_manifest(write(tmp_path / "m3.tsv", "alpha a.fa\n"))
