"""The model: one scikit-learn Pipeline built from params, persisted with skops."""
