"""eGeMAPS: the 88 functionals of the extended Geneva Minimalistic Acoustic Parameter Set
(Eyben et al. 2016, eGeMAPSv02) per utterance, computed by openSMILE itself.

The PyPI package ``opensmile`` (audEERING) ships the openSMILE library and its configs; batchser
calls ``opensmile.Smile(FeatureSet.eGeMAPSv02, FeatureLevel.Functionals).process_signal`` on the
16 kHz waveform that the model also sees, in the decoder processes (one Smile per process). The
values therefore equal ``Smile(...).process_file`` on a 16 kHz file of the same samples (tested).
Columns: ``egemaps_`` + openSMILE's feature name with characters other than letters, digits and
``_`` replaced by ``_`` (``F0semitoneFrom27.5Hz_sma3nz_amean`` -> ``egemaps_F0semitoneFrom27_5Hz_sma3nz_amean``).
``opensmile`` is an optional dependency (``pip install batchser[egemaps]``).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Dict, List

import numpy as np

from .audio import TARGET_SR

PREFIX = "egemaps_"
N_FEATURES = 88


class EgemapsUnavailable(ValueError):
    """opensmile is not installed."""


@lru_cache(maxsize=1)
def smile():
    """The process's openSMILE extractor (built once: it parses its config)."""
    try:
        import opensmile
    except ImportError as e:
        raise EgemapsUnavailable("--features egemaps needs the opensmile package: pip install 'batchser[egemaps]' "
                                 "(or pip install opensmile)") from e
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def column(name: str) -> str:
    return PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", name)


@lru_cache(maxsize=1)
def columns() -> List[str]:
    """The 88 column names, in openSMILE's order."""
    names = [column(n) for n in smile().feature_names]
    if len(names) != N_FEATURES or len(set(names)) != len(names):
        raise RuntimeError(f"opensmile's eGeMAPSv02 has {len(names)} features (expected {N_FEATURES} distinct)")
    return names


def egemaps(y: np.ndarray, sr: int = TARGET_SR) -> Dict[str, float]:
    """The 88 eGeMAPSv02 functionals of one waveform (mono float32)."""
    x = smile().process_signal(np.asarray(y, dtype=np.float32), sr).to_numpy(dtype=np.float64)[0]
    return dict(zip(columns(), (float(v) for v in x)))
