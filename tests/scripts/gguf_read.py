#!/usr/bin/env python3
"""Reads a GGUF file with the `gguf` Python package (llama.cpp's gguf-py, an
implementation independent of ternbench's) and prints, as JSON, its metadata
and for every tensor: name, type, dims (ne[0] first), byte count, CRC-32 of
the raw bytes, and sum / sum of |x| / the first 8 values of the tensor
dequantized by gguf.quants. Used by tests/tests/gguf.rs."""
import json
import sys
import zlib

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize


def field_value(field):
    t = field.types[0]
    if t == GGUFValueType.ARRAY:
        return {"array_len": len(field.data)}
    if t == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def main(path):
    r = GGUFReader(path)
    meta = {k: field_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = []
    for t in r.tensors:
        raw = np.ascontiguousarray(t.data).tobytes()
        values = dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "n_bytes": int(t.n_bytes),
            "crc32": zlib.crc32(raw),
            "sum": float(values.sum()),
            "abs_sum": float(np.abs(values).sum()),
            "first": [float(v) for v in values[:8]],
        })
    json.dump({"metadata": meta, "tensors": tensors}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
