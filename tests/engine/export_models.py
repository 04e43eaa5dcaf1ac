#!/usr/bin/python3
"""Exports the whole models the engine is tested and benchmarked on, with fixed seeds.

Models (all with a dynamic batch dimension, ONNX opset 17 unless named otherwise):
  resnet50      torchvision ResNet-50, random weights, batch-norm statistics randomised so
                that folding them into the convolutions is exercised.
  resnet18      torchvision ResNet-18, likewise (the serving tests' CNN).
  mobilenet_v2  torchvision MobileNetV2, likewise.
  bert_small    a BERT-style encoder (token, position and segment embeddings, LayerNorm,
                multi-head self-attention with an attention mask, GELU feed-forward, pooler)
                with 2 layers, hidden 256, 4 heads, FFN 1024: the agreement tests' encoder.
  bert_small_op12  the same encoder exported at opset 12, where torch writes each LayerNorm
                out as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul and Add, equal
                initializers once (the others as Identity nodes), and Softmax with axis 3
                (before opset 13 the axis coerces the input to 2-D).
  bert_base     the same code at BERT-base size (12 layers, hidden 768, 12 heads, FFN 3072,
                vocabulary 30522): the benchmark's encoder.
  gpt_small     a GPT-2-style decoder (causal self-attention masked with masked_fill, which
                exports as Where; tanh-approximated GELU written out; 2 layers, hidden 256,
                4 heads, vocabulary 1000).
  distilbert_small  a DistilBERT-style encoder at opset 14 (the padding mask compared with 0,
                expanded to the scores' shape and applied with masked_fill and finfo.min;
                2 layers, hidden 256, 4 heads, FFN 1024).
Sequence length is dynamic too for the encoders and the decoder.

Usage: export_models.py OUTDIR [NAME...]   (exit status 77 when torch is missing)
"""
import math
import os
import sys

try:
    import torch
    import torchvision
except ImportError as e:  # pragma: no cover - depends on the machine
    print("SKIP: python3-torch/python3-torchvision not available: %s" % e)
    sys.exit(77)


class Encoder(torch.nn.Module):
    def __init__(self, layers, hidden, heads, ffn, vocab, max_pos=512):
        super().__init__()
        self.heads = heads
        self.word = torch.nn.Embedding(vocab, hidden)
        self.pos = torch.nn.Embedding(max_pos, hidden)
        self.seg = torch.nn.Embedding(2, hidden)
        self.ln = torch.nn.LayerNorm(hidden, eps=1e-12)
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            self.layers.append(torch.nn.ModuleDict({
                "q": torch.nn.Linear(hidden, hidden),
                "k": torch.nn.Linear(hidden, hidden),
                "v": torch.nn.Linear(hidden, hidden),
                "o": torch.nn.Linear(hidden, hidden),
                "ln1": torch.nn.LayerNorm(hidden, eps=1e-12),
                "f1": torch.nn.Linear(hidden, ffn),
                "f2": torch.nn.Linear(ffn, hidden),
                "ln2": torch.nn.LayerNorm(hidden, eps=1e-12),
            }))
        self.pool = torch.nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        pos = torch.arange(s, device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.pos(pos) + self.seg(torch.zeros_like(input_ids))
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        h = x.shape[-1]
        dh = h // self.heads
        for L in self.layers:
            def split(t):
                return t.view(b, s, self.heads, dh).transpose(1, 2)
            q, k, v = split(L["q"](x)), split(L["k"](x)), split(L["v"](x))
            att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + ext
            att = torch.softmax(att, dim=-1)
            ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, s, h)
            x = L["ln1"](x + L["o"](ctx))
            x = L["ln2"](x + L["f2"](torch.nn.functional.gelu(L["f1"](x))))
        pooled = torch.tanh(self.pool(x[:, 0]))
        return x, pooled


class DecoderBlock(torch.nn.Module):
    """A GPT-2 block: causal self-attention masked with masked_fill, tanh-approximated GELU."""

    def __init__(self, hidden, heads, max_pos):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(hidden)
        self.qkv = torch.nn.Linear(hidden, 3 * hidden)
        self.proj = torch.nn.Linear(hidden, hidden)
        self.ln2 = torch.nn.LayerNorm(hidden)
        self.fc = torch.nn.Linear(hidden, 4 * hidden)
        self.fc2 = torch.nn.Linear(4 * hidden, hidden)
        causal = torch.tril(torch.ones(max_pos, max_pos)).view(1, 1, max_pos, max_pos)
        self.register_buffer("causal", causal)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        dh = c // self.heads
        q, k, v = (z.view(b, t, self.heads, dh).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(dh))
        att = att.masked_fill(self.causal[:, :, :t, :t] == 0, float("-inf"))
        y = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        h = self.fc(self.ln2(x))
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                        (h + 0.044715 * torch.pow(h, 3.0))))
        return x + self.fc2(h)


class Decoder(torch.nn.Module):
    def __init__(self, layers, hidden, heads, vocab, max_pos=512):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, hidden)
        self.pos = torch.nn.Embedding(max_pos, hidden)
        self.blocks = torch.nn.ModuleList(DecoderBlock(hidden, heads, max_pos)
                                          for _ in range(layers))
        self.ln = torch.nn.LayerNorm(hidden)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t).unsqueeze(0))
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x)


class DistilLayer(torch.nn.Module):
    """A DistilBERT layer: the padding mask expanded to the scores and applied by masked_fill."""

    def __init__(self, hidden, heads, ffn):
        super().__init__()
        self.heads = heads
        self.q = torch.nn.Linear(hidden, hidden)
        self.k = torch.nn.Linear(hidden, hidden)
        self.v = torch.nn.Linear(hidden, hidden)
        self.o = torch.nn.Linear(hidden, hidden)
        self.ln1 = torch.nn.LayerNorm(hidden, eps=1e-12)
        self.f1 = torch.nn.Linear(hidden, ffn)
        self.f2 = torch.nn.Linear(ffn, hidden)
        self.ln2 = torch.nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, mask):
        bs, length, dim = x.shape
        dh = dim // self.heads

        def shape(t):
            return t.view(bs, -1, self.heads, dh).transpose(1, 2)

        q, k, v = shape(self.q(x)) / math.sqrt(dh), shape(self.k(x)), shape(self.v(x))
        scores = torch.matmul(q, k.transpose(2, 3))
        drop = (mask == 0).view(bs, 1, 1, length).expand_as(scores)
        scores = scores.masked_fill(drop, torch.tensor(torch.finfo(scores.dtype).min))
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        ctx = ctx.transpose(1, 2).contiguous().view(bs, -1, dim)
        x = self.ln1(self.o(ctx) + x)
        return self.ln2(self.f2(torch.nn.functional.gelu(self.f1(x))) + x)


class Distil(torch.nn.Module):
    def __init__(self, layers, hidden, heads, ffn, vocab, max_pos=512):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, hidden)
        self.pos = torch.nn.Embedding(max_pos, hidden)
        self.ln = torch.nn.LayerNorm(hidden, eps=1e-12)
        self.layers = torch.nn.ModuleList(DistilLayer(hidden, heads, ffn) for _ in range(layers))

    def forward(self, input_ids, attention_mask):
        t = input_ids.shape[1]
        x = self.ln(self.tok(input_ids) + self.pos(torch.arange(t).unsqueeze(0)))
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


def randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def export_vision(name, path):
    torch.manual_seed(0)
    if name == "resnet50":
        m = torchvision.models.resnet50()
    elif name == "resnet18":
        m = torchvision.models.resnet18()
    else:
        m = torchvision.models.mobilenet_v2()
    randomise_bn(m)
    m.eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(m, x, path, opset_version=17, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def export_encoder(name, path):
    torch.manual_seed(0)
    if name.startswith("bert_small"):
        m = Encoder(2, 256, 4, 1024, 1000)
    else:
        m = Encoder(12, 768, 12, 3072, 30522)
    m.eval()
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    dyn = {0: "batch", 1: "seq"}
    opset = 12 if name.endswith("_op12") else 17
    torch.onnx.export(m, (ids, mask), path, opset_version=opset,
                      input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooled"],
                      dynamic_axes={"input_ids": dyn, "attention_mask": dyn,
                                    "last_hidden_state": dyn, "pooled": {0: "batch"}})


def export_decoder(name, path):
    torch.manual_seed(0)
    m = Decoder(2, 256, 4, 1000)
    m.eval()
    ids = torch.randint(0, 1000, (1, 16))
    dyn = {0: "batch", 1: "seq"}
    torch.onnx.export(m, (ids,), path, opset_version=17, input_names=["input_ids"],
                      output_names=["hidden"], dynamic_axes={"input_ids": dyn, "hidden": dyn})


def export_distil(name, path):
    torch.manual_seed(0)
    m = Distil(2, 256, 4, 1024, 1000)
    m.eval()
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    dyn = {0: "batch", 1: "seq"}
    torch.onnx.export(m, (ids, mask), path, opset_version=14,
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                      dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "hidden": dyn})


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    names = sys.argv[2:] or ["resnet50", "mobilenet_v2", "bert_small", "bert_base"]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        path = os.path.join(out, name + ".onnx")
        if os.path.exists(path):
            continue
        tmp = path + ".tmp"
        with torch.no_grad():
            if name in ("resnet50", "resnet18", "mobilenet_v2"):
                export_vision(name, tmp)
            elif name in ("bert_small", "bert_small_op12", "bert_base"):
                export_encoder(name, tmp)
            elif name == "gpt_small":
                export_decoder(name, tmp)
            elif name == "distilbert_small":
                export_distil(name, tmp)
            else:
                print("unknown model %s" % name)
                return 2
        os.replace(tmp, path)
        print("exported %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
