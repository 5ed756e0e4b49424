"""hottune: online, constrained, Bayesian-guided hyperparameter adaptation."""
