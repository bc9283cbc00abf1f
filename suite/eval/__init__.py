"""Post-hoc evaluation of published checkpoints (`suite eval`) and its ledger (contract 7).

`plan` (what is missing; no torch) → `runner` (one warm process over every checkpoint) →
`perplexity`, `harness` (lm-evaluation-harness), `builtin_task` (the offline task) →
`ledger` (parts and the Parquet ledger; `read_ledger` for readers).
"""
