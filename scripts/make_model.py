#!/usr/bin/python3
"""Exports a torchvision model to ONNX with fixed random weights (no download).

usage: make_model.py NAME OUT.onnx   (NAME: resnet50 or mobilenet_v2)
"""
import sys

import torch
import torchvision


def main():
    name, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, x, out, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=13)


if __name__ == "__main__":
    main()
