"""Look inside before and after training: sizing (`hfllm inspect`), attention maps, hyperparameter sweeps."""
