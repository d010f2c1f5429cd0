# Sourced by the device scripts (gpu_session.sh, gpu_audio_models.sh): install the carried
# wheels, set the environment, and unpack the carried espeak-ng demo digits (FLAC) as wavs into
# /tmp/sc09wav. Needs carry [".whl", ".devdata"].
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD SEQSUITE_CACHE=/tmp/cache
S="python3 -m seqsuite"
source benchmarks/pack.sh
[ -f .devdata/sc09.tar ] && tar -C /tmp -xf .devdata/sc09.tar
python3 - <<'PY'
import pathlib, shutil, soundfile as sf
src, dst = pathlib.Path("/tmp/sc09"), pathlib.Path("/tmp/sc09wav")
for p in src.rglob("*"):
    r = p.relative_to(src)
    (dst / r).parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".flac":
        a, sr = sf.read(p, dtype="int16"); sf.write(dst / r.with_suffix(".wav"), a, sr)
    elif p.is_file():
        shutil.copy(p, dst / r)
PY
