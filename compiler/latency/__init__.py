"""Compiler-aware latency model: `config` (LayerConfig), `table` (the table file), `runners` (the Runner protocol:
in-process, TVM RPC), `measure` (one layer compiled alone; pruned layers on the caller's weights), `predict`."""
