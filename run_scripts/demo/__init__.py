"""The demo of the README: one generalist trained on small real data sets of six modalities (`make demo`)."""
