"""Transit detection in Kepler/K2/TESS light curves (the AstroSeq task).

Simulated light curves (:mod:`.simulate`) are cleaned and flattened (:mod:`.preprocess`),
cut into fixed-length segments labelled from ephemerides (:mod:`.segments`), sampled for
training (:mod:`.sampling`), classified by a 1-D Inception-ResNet (:mod:`.model`,
:mod:`.module`), and segment scores are aggregated into star scores (:mod:`.aggregate`).
Evaluation compares against a Box Least Squares search (:mod:`.bls`) and measures
injection-recovery (:mod:`.evaluate`); :mod:`.real` applies the model to real planets.
"""
