#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes on a machine with an NVIDIA GPU: training throughput,
# candidates per hour at 1/2/4/8 workers per GPU with the GPU's utilisation (and torch.compile
# against eager), and a cut-down CIFAR-10-shaped synthetic search. Everything goes to one file,
# bench/out/gpu_check.txt, whose figures belong in bench/RESULTS.md.
#
#   bash bench/gpu_check.sh            # from the repository root, with the requirements installed
set -uo pipefail
cd "$(dirname "$0")/.."
out=bench/out/gpu_check.txt
mkdir -p bench/out
python=${PYTHON:-python}
{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  echo
  echo "## 1. throughput (bench_throughput.py --device cuda)"
  timeout 120 "$python" bench/bench_throughput.py --device cuda --images 20000 || echo "(throughput: exit $?)"
  echo
  echo "## 2. candidates per hour by workers per GPU, and torch.compile (bench_gpu_workers.py)"
  timeout 240 "$python" bench/bench_gpu_workers.py --workers 1,2,4,8 --images 20000 --population 8 --epochs 2 \
    || echo "(gpu workers: exit $?)"
  echo
  echo "## 3. CIFAR-10-shaped synthetic search, cut to 2 generations (bench_search.py cifar --synthetic)"
  timeout 120 "$python" bench/bench_search.py cifar --synthetic --generations 2 --epochs 2 --final-epochs 2 \
    || echo "(search: exit $?)"
} 2>&1 | tee "$out"
echo "written: $out"
