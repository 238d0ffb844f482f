#!/usr/bin/env bash
# One device-machine call: the throughput benchmark on CUDA, before/after this branch's train.py,
# and bf16 autocast / torch.compile on vs off. Writes tables and JSON under $OUT (default ./gpu_out).
#   benchmarks/gpu_check.sh            (carry .whl when soundfile/soxr are missing on the machine)
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import soundfile, soxr" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } \
  2>&1 | tee "$OUT/env.txt"
BEFORE=benchmarks/_train_before.py  # `git show <base>:src/djenerator/train.py` saved here before the call
B="python3 benchmarks/throughput.py --device cuda --seconds 2"
run() {  # name, timeout, args...
  local name=$1 t=$2; shift 2
  echo "=== $name" | tee -a "$OUT/tables.txt"
  timeout "$t" $B --json "$OUT/$name.json" "$@" 2>>"$OUT/stderr.txt" | tee -a "$OUT/tables.txt"
}
run after 150 --batch-sizes 16,128
[ -f "$BEFORE" ] && run before 60 --presets wavegan,recommended --batch-sizes 128 --train-file "$BEFORE"
run amp 70 --presets wavegan,recommended,spectral --batch-sizes 128 --set train.amp=true
run compile 110 --presets recommended --batch-sizes 128 --set train.compile=true
tail -5 "$OUT/stderr.txt"
