"""The chunked LM loss (`suite/train/loss.py`) equals the unchunked one, loss and gradients,
keeps no full-vocabulary logits for backward, and works inside a real DeepSpeed engine."""

from __future__ import annotations

import pytest
import torch

from suite.train.loss import engine_lm_loss, lm_loss

VOCAB, BATCH, SEQ = 96, 2, 11  # 22 target positions: chunks of 5 leave a remainder of 2


def tiny_model(dtype: torch.dtype = torch.float32):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, rotary_pct=0.25,
        use_cache=False, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config).to(dtype)
    model.train()
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    return tokens[:, :-1], tokens[:, 1:]


def loss_and_grads(model, chunk_tokens: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    inputs, targets = batch()
    loss = lm_loss(model, inputs, targets, chunk_tokens)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("chunk_tokens", [5, 22, 1000])
def test_chunked_loss_and_gradients_equal_the_unchunked_ones(chunk_tokens):
    model = tiny_model()
    ref_loss, ref_grads = loss_and_grads(model, 0)
    # The reference is today's loss: the model's logits, one fp32 cross-entropy, mean.
    inputs, targets = batch()
    logits = model(input_ids=inputs).logits
    expected = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, VOCAB), targets.reshape(-1)
    )
    assert torch.equal(ref_loss, expected.detach())
    loss, grads = loss_and_grads(model, chunk_tokens)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_bf16_chunked_loss_matches_within_bf16_rounding():
    model = tiny_model(torch.bfloat16)
    ref_loss, ref_grads = loss_and_grads(model, 0)
    loss, grads = loss_and_grads(model, 5)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        # Per-row head matmuls are the same; only the order of bf16 gradient sums differs.
        torch.testing.assert_close(grad, ref_grads[name], rtol=2e-2, atol=1e-3, msg=name)


def test_no_full_vocabulary_tensor_is_kept_for_backward():
    """Every tensor autograd saves outside the chunks' checkpoints is recorded: with chunks
    of 5 only the last chunk's logits are kept; unchunked, all the logits are."""

    def largest_vocab_rows(chunk_tokens: int) -> int:
        rows = [0]
        model = tiny_model()
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

        def pack(tensor):
            is_weight = tensor.untyped_storage().data_ptr() in weights  # e.g. the head's, [V, d]
            if tensor.dim() > 1 and tensor.shape[-1] == VOCAB and not is_weight:
                rows.append(tensor.numel() // VOCAB)
            return tensor

        inputs, targets = batch()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = lm_loss(model, inputs, targets, chunk_tokens)
        loss.backward()
        return max(rows)

    assert largest_vocab_rows(0) == BATCH * SEQ
    # Only the last chunk (22 = 4 × 5 + 2) keeps its logits: backward starts with it.
    assert largest_vocab_rows(5) == 2


def test_sum_reduction_without_grad_is_the_evaluation_sum():
    model = tiny_model()
    inputs, targets = batch()
    with torch.no_grad():
        total = lm_loss(model, inputs, targets, 5, reduction="sum")
        ref = lm_loss(model, inputs, targets, 0, reduction="sum")
    torch.testing.assert_close(total, ref, rtol=1e-6, atol=1e-5)


def test_a_model_without_separate_head_is_refused():
    from transformers import GPTNeoXConfig, GPTNeoXModel

    model = GPTNeoXModel(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=4, intermediate_size=64))  # fmt: skip
    inputs, targets = batch()
    with pytest.raises(TypeError, match="no separate decoder"):
        lm_loss(model, inputs, targets, 5)


def engine_check(stage: int) -> None:
    """One gloo process, DeepSpeed on CPU (run by the test below in a fresh interpreter):
    the chunked loss runs inside `engine(...)` (the engine's backward prologue — ZeRO's
    bucket setup — runs once, from the hook on the engine's output), the model's forward
    is restored, and one update gives the loss and weights of an unchunked update."""
    import os

    import deepspeed

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    deepspeed.init_distributed(dist_backend="gloo")
    config = {
        "train_micro_batch_size_per_gpu": BATCH,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**12,
        "bf16": {"enabled": stage > 0},  # ZeRO needs 16-bit weights on CPU here
    }
    results = {}
    for chunk_tokens in (0, 5):
        model = tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        prologues = []
        prologue = engine._backward_prologue  # what the engine's output hook runs, once

        def counted(prologue=prologue, prologues=prologues):
            prologues.append(1)
            prologue()

        engine._backward_prologue = counted
        inputs, targets = batch()
        loss = engine_lm_loss(engine, inputs, targets, chunk_tokens)
        assert "forward" not in vars(engine.module)  # the class's forward is back
        engine.backward(loss)
        assert len(prologues) == 1, f"backward prologue ran {len(prologues)} times"
        engine.step()
        results[chunk_tokens] = (
            loss.detach(),
            {n: p.detach().float().clone() for n, p in engine.module.named_parameters()},
        )
        engine.destroy()
    torch.testing.assert_close(results[5][0], results[0][0], rtol=1e-5, atol=1e-5)
    for name, weight in results[5][1].items():
        torch.testing.assert_close(weight, results[0][1][name], rtol=1e-2, atol=1e-3, msg=name)
    print("ENGINE-OK")


@pytest.mark.parametrize("stage", [0, 1])
def test_engine_loss_equals_unchunked_and_restores_forward(stage):
    from dist_helpers import free_port, run_python

    # A fresh interpreter: DeepSpeed's process group must not outlive the test.
    code = (
        "import importlib.util, os; "
        f"os.environ['MASTER_PORT'] = '{free_port()}'; "
        f"spec = importlib.util.spec_from_file_location('loss_check', {__file__!r}); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        f"module.engine_check({stage})"
    )
    result = run_python(code, timeout=180)
    assert result.returncode == 0 and "ENGINE-OK" in result.stdout, result.stderr[-3000:]
