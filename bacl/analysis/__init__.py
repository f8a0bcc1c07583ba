"""What the notebooks compute, importable and tested: drawing, galleries, per-class AP
gains (:mod:`.tail_gains`), confusion between frequency bins (:mod:`.confusion`), FHM's
statistics and embeddings (:mod:`.hallucination`)."""
