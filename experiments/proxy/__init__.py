"""Proxy study (issue 28): which cheap reward proxy predicts the fine-tuned accuracy? See README.md."""
