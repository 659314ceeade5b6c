#!/usr/bin/env bash
# Every GPU measurement of the project, as one prepared script for a lent GPU (device tool).
# Usage, from the repository root, with the CIFAR-10 JPEG archive copied to data_local/:
#   OUT=/path/to/results bash benchmarks/gpu_session.sh [quick|table|full]
# quick (~9 minutes on an H100): eager library ratios for all 15 architectures, compiled fast
# path for three, data-path efficiency and stochastic-depth speed-up, RevNet memory at batch 128,
# a short FBNet search on the GPU. full adds the recipe accuracy runs and the measured CIFAR-10
# table of benchmarks/cifar_table.py (one to two hours: more than one lent session has).
# table (~8 minutes): the slow rows of the CIFAR-10 table. Since 2026-12-03 the CPU runs hold
# every row it names but DenseNet-BC-100 (2.3 hours on the fastest CPU), so only that one trains;
# the others (ResNet-110 with and without stochastic depth, RevNet-110, PolyNet-CIFAR, NiN +
# BatchNorm, RevNet-38) are skipped where the copied CPU runs hold them, at
# the CPU table's 5 epochs and seed 0, added to a copy of benchmarks/results/cifar_table_cpu's
# runs (each run records its device), so CPU and GPU rows make one table. A row the time limit
# stops is resumed from its checkpoint by the next table run on the same $OUT.
# Each part has its own time limit, so one slow part cannot starve the others; the summary table
# is printed last. Results: $OUT/*.json and $OUT/*.log.
set -uo pipefail
OUT=${OUT:?set OUT to a results folder}
mode=${1:-quick}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch, torchvision, timm; print('torch', torch.__version__, 'tv', torchvision.__version__, 'timm', timm.__version__, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"
if [ ! -d data_local/cifar10/train ]; then
  mkdir -p data_local/cifar10 && tar -xJf data_local/cifar10-jpeg-train.tar.xz -C data_local/cifar10
fi

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? ; tail:"; tail -n 4 "$OUT/$name.log" | sed 's/^/   /'
}

if [ "$mode" = table ]; then
  mkdir -p "$OUT/cifar_table"
  cp benchmarks/results/cifar_table_cpu/cifar_table.json "$OUT/cifar_table/"
  part cifar_table 540 python benchmarks/cifar_table.py --data data_local/cifar10 --epochs 5 \
    --seeds 0 --output "$OUT/cifar_table" --models "ResNet-110" \
    "ResNet-110 + stochastic depth" "DenseNet-BC-100 (k=12)" "RevNet-110" "PolyNet-CIFAR" \
    "NiN + BatchNorm" "RevNet-38"
  cat "$OUT/cifar_table/cifar_table.md"
  exit 0
fi

part compare_eager 150 python benchmarks/compare_libraries.py --part gpu --no-compile \
  --output "$OUT/compare_gpu_eager.json"
part compare_fast 150 python benchmarks/compare_libraries.py --part gpu \
  --models resnet50 mobilenet_v2 convnext_tiny --output "$OUT/compare_gpu_fast.json"
part train_data_sd 120 python benchmarks/train_gpu.py --data data_local/cifar10 --parts data sd \
  --sd-steps 100 --output "$OUT/train"
part revnet_memory 60 python benchmarks/revnet_memory.py --batch-size 128 --device cuda
part nas_cuda 90 python benchmarks/nas_search.py --data data_local/cifar10 --devices cuda \
  --search-epochs 3 --train-epochs 3 --max-train-samples 4000 --batch-size 128 --output "$OUT/nas"
if [ "$mode" = full ]; then
  part train_accuracy 2400 python benchmarks/train_gpu.py --data data_local/cifar10 \
    --parts accuracy --epochs 15 --output "$OUT/train"
  # The measured CIFAR-10 table (13 small models x 3 seeds, one short recipe, float32); it
  # rewrites cifar_table.json / .md after every run, so the limit keeps whatever finished.
  part cifar_table 5400 python benchmarks/cifar_table.py --data data_local/cifar10 \
    --epochs 15 --seeds 0 1 2 --output "$OUT/cifar_table"
fi

echo; echo "== summary"
for f in compare_eager compare_fast train_data_sd revnet_memory nas_cuda train_accuracy cifar_table; do
  [ -f "$OUT/$f.log" ] && { echo "-- $f"; tail -n 25 "$OUT/$f.log"; }
done
