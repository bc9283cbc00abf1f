"""Checkpoint export, stores (local directory, Hugging Face Hub), publishing, pull, verify.

Import the submodules directly; this package imports nothing heavy at import time.

- `suite.publish.export.export_checkpoint(model, tokenizer_file, out_dir, meta)`
- `suite.publish.metadata.CheckpointMeta`
- `suite.publish.store.open_store(spec)` → `LocalStore` / `HubStore`
- `suite.publish.publisher.Publisher(run_dir, store, repo)` → `.submit(dir)`, `.close()`
- `suite.publish.pull.pull(repo, step=…, store=…)`
- `suite.publish.verify.verify_repo(store, repo)`
"""
