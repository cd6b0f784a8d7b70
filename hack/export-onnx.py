#!/usr/bin/env python3
"""Exports a BERT-family sentence-transformers model directory to ONNX for kaito-rag.

    python hack/export-onnx.py SRC_MODEL_DIR OUT_DIR

OUT_DIR gets `model.onnx` (inputs input_ids, attention_mask, token_type_ids of shape
[batch, sequence]; output last_hidden_state [batch, sequence, hidden]; f32, with the word-embedding
table stored in half precision, see half_lookup_tables), `model_quantized.onnx`
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


def half_lookup_tables(path, min_values=1_000_000):
    """Stores the large lookup tables of `path` (the word embeddings: 30,522 x 384 floats, 47 MB,
    half of MiniLM) in half precision, each Gather followed by a Cast back to float. Only the rows
    of a batch's tokens are widened and the matrix multiplications stay f32: the idle service
    holds 18 MB less, at the same speed, and the vectors' cosine to sentence-transformers' rounds
    to 1.000000 (300 queries and documents, docs/benchmarks-rag.md)."""
    import numpy as np
    from onnx import helper, numpy_helper
    model = onnx.load(path)
    tables = {i.name: i for i in model.graph.initializer
              if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= min_values}
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "Gather" or node.input[0] not in tables:
            continue
        table = tables[node.input[0]]
        halved = numpy_helper.from_array(numpy_helper.to_array(table).astype(np.float16), table.name)
        table.CopyFrom(halved)
        wide, node.output[0] = node.output[0], node.output[0] + "_half"
        nodes.append(helper.make_node("Cast", [node.output[0]], [wide], to=onnx.TensorProto.FLOAT,
                                      name=node.name + "_widen"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "model.onnx.tmp")
    export(src, tmp, "sdpa")
    half_lookup_tables(tmp)
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
