"""The transients task's anomaly layer: scores of how poorly the known classes explain an object
(:mod:`.scorers`), validated on simulated classes the classifier never saw (:mod:`.evaluate`)."""
