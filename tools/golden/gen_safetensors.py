#!/usr/bin/python3
"""Writes core/safetensors/testdata/python.safetensors with st.py, an
implementation of the format independent of the Go reader under test."""
import os

import numpy as np

import st

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "core", "safetensors", "testdata", "python.safetensors")

st.write(OUT, {
    "x": np.array([[0, 0.5, -1.25], [3, 1e-7, -2e10]], dtype=np.float32),
    "labels": np.array([1, 2, -7], dtype=np.int64),
}, {"source": "st.py"})
