"""Neural recommenders in torch, under the same model contract as the baselines."""
