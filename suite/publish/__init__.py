"""Checkpoint export, stores (local directory, Hugging Face Hub), publishing, pull, verify.

Import the submodules directly; this package imports nothing heavy at import time.

- `suite.publish.export.export_checkpoint(model, tokenizer_file, out_dir, meta)`
- `suite.publish.metadata.CheckpointMeta`
- `suite.publish.spec`: store specs (`DEFAULT_STORE`, `NO_STORE`, `absolute_store_spec`)
- `suite.publish.base.Store`: the interface both stores implement
- `suite.publish.store.open_store(spec)` → `LocalStore` / `HubStore` / None for `none`
- `suite.publish.manifest.read_manifest(store, repo)` / `write_manifest(store, repo, m)`
- `suite.publish.publisher.Publisher.for_run(publish_cfg, run_dir, repo_id)` → `.submit(dir)`,
  `.close()`
- `suite.publish.pull.pull(repo, step=…, store=…)`
- `suite.publish.verify.verify_repo(store, repo)`

Layers (each imports only those above it; `tests/test_architecture.py` keeps it acyclic):
`spec`, `retry`, `metadata`, `atomic` → `base` → `manifest`, `local_store`, `hub_store`,
`export` → `store` → `publisher` → `pull`, `verify`. `suite.config` may import `spec` and
`retry`; nothing in `suite.publish` imports `suite.config`. The publisher takes the name of
its folder in a run directory (`PUBLISH_DIR`) from `suite.rundir`.
"""
