#!/usr/bin/env python3
"""Exports a BERT-family sentence-transformers model directory to ONNX for kaito-rag.

    python hack/export-onnx.py SRC_MODEL_DIR OUT_DIR

OUT_DIR gets `model.onnx` (inputs input_ids, attention_mask, token_type_ids of shape
[batch, sequence]; output last_hidden_state [batch, sequence, hidden]), `model_quantized.onnx`
(for queries: the model exported with eager attention, whose pattern ONNX Runtime's BERT optimizer
fuses into Attention / EmbedLayerNormalization / BiasGelu nodes, then int8 weights per output
channel with the range reduced to 7 bits so AVX2's u8 x s8 multiply-add cannot saturate; the
fusion removes ~200 shape-computing nodes, 21 % of a 12-token query's CPU. Residual adds and layer
norms are left unfused: ONNX Runtime's SkipLayerNormalization kernel normalises with a scalar loop,
12 % of a query's CPU, and kaito-rag keeps the runtime from fusing them again)
and symbolic links to
every other file of SRC_MODEL_DIR (config, tokenizer, pooling), so it is a complete model
directory for RAG_MODEL_DIR. Pooling and normalisation stay in kaito-rag, as for candle.

Needs torch, transformers, onnx and onnxruntime (hack/rag-test-env.sh installs them). Runs on CPU in about
a second for MiniLM; nothing is downloaded.
"""
import os
import sys

import torch
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model
from transformers import AutoModel


class Encoder(torch.nn.Module):
    """Keyword-only call: transformers 5 changed BertModel.forward's positional order."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


def export(src, path, attention):
    """Exports the encoder at `src` to `path` with the given transformers attention implementation."""
    model = Encoder(AutoModel.from_pretrained(src, attn_implementation=attention).eval()).eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
        )
    return model.model.config


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "model.onnx.tmp")
    export(src, tmp, "sdpa")
    eager = os.path.join(out, "eager.onnx.tmp")
    config = export(src, eager, "eager")
    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False
    fused = optimize_model(eager, model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, optimization_options=fusions)
    fused.save_model_to_file(eager)
    quantized = os.path.join(out, "model_quantized.onnx.tmp")
    quantize_dynamic(eager, quantized, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    os.remove(eager)
    os.replace(quantized, os.path.join(out, "model_quantized.onnx"))
    os.replace(tmp, os.path.join(out, "model.onnx"))
    for name in os.listdir(src):
        link = os.path.join(out, name)
        if name != "model.onnx" and not os.path.lexists(link):
            os.symlink(os.path.join(os.path.abspath(src), name), link)


if __name__ == "__main__":
    main()
