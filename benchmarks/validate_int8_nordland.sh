#!/usr/bin/env bash
# The README recipe's INT8 bundles validated with intervals, McNemar p and cross-precision Recall@1 (issue 13).
# Run from the repository root after `python benchmarks/train_nordland.py`; writes runs/int8-validation/.
set -euo pipefail
D=${BOQ_EDGE_SHARED:-../shared}/data/nordland-64x32
W=runs/int8-validation
CKPT=${1:-runs/nordland-mnv2/best.boq}
boq-edge calibrate -d "$D" --frames :25000 -n 512 -o $W/calib.json --eval-data "$D" --eval-frames 25000: --force
boq-edge export "$CKPT" --target onnx -o $W/onnx-fp32 --force
for t in openvino onnx tensorrt; do
  boq-edge export "$CKPT" --target $t --int8 --calib $W/calib.json -o $W/$t-int8-ptq --force
done
boq-edge export "$CKPT" --target onnx --int8 --calib $W/calib.json --qat-epochs 2 -o $W/onnx-int8-qat --force
boq-edge validate $W/onnx-fp32 $W/openvino-int8-ptq $W/onnx-int8-ptq $W/tensorrt-int8-ptq $W/onnx-int8-qat \
  --reference "$CKPT" -d "$D" --frames 25000: --backend tensorrt=onnxruntime --threads 2 --num-workers 0 \
  --no-progress --max-r1-drop-upper 0.5 --max-cross-r1-drop 1.0 -o $W/validation || echo "validate exit $?"
