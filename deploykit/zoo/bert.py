"""BERT encoder weight correspondence between the twins (no framework imports).

Layer names, shared by :mod:`deploykit.zoo.torch_models` and :mod:`deploykit.zoo.keras_models`:
``word_embeddings``, ``position``, ``embed_norm``; per layer ``i`` the attention ``layer_{i}_attn``
(query/key/value/output as :func:`~deploykit.zoo.spec.attention_maps`), ``_attn_norm``, the
feed-forward ``_ff1``/``_ff2`` and ``_ff_norm``; ``pooler`` and ``classifier`` last.
"""

from __future__ import annotations

from deploykit.zoo.spec import BertSpec, TensorMap, attention_maps, dense_maps, layer_norm_maps


def bert_weight_map(spec: BertSpec) -> list[TensorMap]:
    maps = [
        TensorMap("word_embeddings.weight", "word_embeddings/embeddings"),
        TensorMap("position", "position/embedding"),
        *layer_norm_maps("embed_norm", "embed_norm"),
    ]
    for i in range(spec.layers):
        t, k = f"layers.{i}", f"layer_{i}"
        maps += attention_maps(f"{t}.attn", f"{k}_attn", spec.heads)
        maps += layer_norm_maps(f"{t}.attn_norm", f"{k}_attn_norm")
        maps += dense_maps(f"{t}.ff1", f"{k}_ff1") + dense_maps(f"{t}.ff2", f"{k}_ff2")
        maps += layer_norm_maps(f"{t}.ff_norm", f"{k}_ff_norm")
    return maps + dense_maps("pooler", "pooler") + dense_maps("classifier", "classifier")
