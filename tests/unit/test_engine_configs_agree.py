"""The reference engine must declare exactly the tensors of the C++ tensorrt_llm config.

Everything above the engine is tested against the reference engine; this keeps those
tests honest about what production's engine accepts and returns.
"""

from local_triton.model_config import load_model_config, tensor_specs
from local_triton.staging import default_model_repository, reference_engine_model_dir


def test_reference_engine_declares_the_production_engine_tensors():
    production = load_model_config(default_model_repository() / "tensorrt_llm" / "config.pbtxt")
    reference = load_model_config(reference_engine_model_dir() / "config.pbtxt")
    assert production.backend == "tensorrtllm" and reference.backend == "python"
    production_inputs, production_outputs = tensor_specs(production)
    reference_inputs, reference_outputs = tensor_specs(reference)
    assert reference_inputs == production_inputs
    assert reference_outputs == production_outputs
    assert reference.model_transaction_policy.decoupled
    assert production.model_transaction_policy.decoupled
    assert reference.max_batch_size == production.max_batch_size


def test_the_bls_sends_only_inputs_the_engine_declares():
    import numpy as np

    from bls.engine_io import EncodedPrompts, cancel_inputs, engine_inputs
    from bls.limits import BlsLimits
    from bls.request_rules import read_client_request

    production = load_model_config(default_model_repository() / "tensorrt_llm" / "config.pbtxt")
    declared, _ = tensor_specs(production)
    request = read_client_request(
        {
            "text_input": np.array([[b"hi"]], dtype=object),
            "top_k": np.array([[5]], dtype=np.int32),
            "top_p": np.array([[0.9]], dtype=np.float32),
            "temperature": np.array([[0.7]], dtype=np.float32),
            "repetition_penalty": np.array([[1.1]], dtype=np.float32),
            "presence_penalty": np.array([[0.1]], dtype=np.float32),
            "frequency_penalty": np.array([[0.1]], dtype=np.float32),
            "min_tokens": np.array([[2]], dtype=np.int32),
            "seed": np.array([[3]], dtype=np.uint64),
            "num_return_sequences": np.array([[2]], dtype=np.int32),
            "return_log_probs": np.array([[True]], dtype=bool),
            "lora_task_id": np.array([[1]], dtype=np.uint64),
            "guided_decoding_guide_type": np.array([[b"regex"]], dtype=object),
            "guided_decoding_guide": np.array([[b"[a-z]+"]], dtype=object),
        },
        {},
        BlsLimits(),
    )
    prompts = EncodedPrompts(
        input_ids=((1, 2, 3),),
        end_id=2,
        pad_id=2,
        stop_words=((5,),),
        bad_words=((6, 7),),
        embedding_bias=np.zeros(10, dtype=np.float32),
    )
    sent = {**engine_inputs(request, prompts), **cancel_inputs()}
    for name, value in sent.items():
        assert name in declared, f"the engine does not declare {name!r}"
        spec = declared[name]
        assert len(value.shape) == len(spec.dims) + 1, name  # + the batch dimension
    assert {"seed", "min_tokens", "num_return_sequences", "return_log_probs"} <= set(sent)
    assert {"guided_decoding_guide_type", "guided_decoding_guide"} <= set(sent)
