"""What the notebooks compute, importable and tested: drawing, galleries, per-class AP
gains (:mod:`.tail_gains`), confusion between frequency bins (:mod:`.confusion`), a
stage's FCBL and FHM rebuilt from its checkpoint (:mod:`.trained_stage`), what FHM
learned and drew (:mod:`.hallucination`), methods over seeds and protocols
(:mod:`.comparison`) and why FCBL moves rare logits as it does (:mod:`.fcbl_diagnostics`)."""
