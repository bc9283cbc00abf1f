"""Checkpoint export, stores (local directory, Hugging Face Hub), publishing, pull, verify.

Import the submodules directly; this package imports nothing heavy at import time.

- `suite.publish.export.export_checkpoint(model, tokenizer_file, out_dir, meta)`
- `suite.publish.metadata.CheckpointMeta`
- `suite.publish.spec`: store specs (`DEFAULT_STORE`, `NO_STORE`, `absolute_store_spec`)
- `suite.publish.base.Store`: the interface both stores implement
- `suite.publish.store.open_store(spec)` → `LocalStore` / `HubStore` / None for `none`
- `suite.publish.manifest.read_manifest(store, repo)` / `write_manifest(store, repo, m)`
- `suite.publish.publisher.Publisher.for_run(publish_cfg, run_dir, repo_id)` → `.submit(dir)`
  per checkpoint, `.close()` at the end: waits at most `publish.drain_timeout_s` for what
  the store refuses for now (left *pending* in the queue, `.pending`), raises
  `PublishError` only for checkpoints that failed for good; `.close(wait=False)` keeps the
  queue for later
- `suite.publish.training_state.TrainingStatePublisher`: the same machinery
  (`publisher.QueuedPublisher`) for full training states, to `{repo}-training-state`
- `suite.publish.pending`: what a run still owes, both kinds (`Pending.of(run_dir)`), and
  `finish_pending(run_dir)` (`suite publish RUN_DIR`)
- `suite.publish.pull.pull(repo, step=…, store=…)`
- `suite.publish.verify.verify_repo(store, repo)`

Layers (each imports only those above it; `tests/test_architecture.py` keeps it acyclic):
`spec`, `retry`, `metadata`, `atomic` → `base` → `manifest`, `local_store`, `hub_store`,
`export` → `store` → `publisher` → `training_state` → `pending`, `pull`, `verify`.
`suite.config` may import `spec`, `retry` and `training_state`; nothing in `suite.publish`
imports `suite.config`. The publisher takes the name of its folder in a run directory
(`PUBLISH_DIR`) from `suite.rundir`.
"""
