#!/usr/bin/python3
"""Exports torchvision's ResNet-50 (random weights: speed does not depend on their values) to
ONNX with a dynamic batch dimension, input "input" 1x3x224x224, output "output"."""
import sys

import torch
import torchvision

out = sys.argv[1] if len(sys.argv) > 1 else "resnet50.onnx"
torch.manual_seed(0)
m = torchvision.models.resnet50()
m.eval()
x = torch.randn(1, 3, 224, 224)
torch.onnx.export(m, x, out, input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13)
print("wrote " + out)
