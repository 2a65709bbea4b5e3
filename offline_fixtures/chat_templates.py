"""Chat templates of the fixture tokenizers (Jinja, the Hugging Face `chat_template` format).

Both put the BOS token text at the start of the rendered prompt, as real Llama-2/Llama-3
templates do: that is what makes "encode the rendered template without adding special
tokens again" (never two BOS) a real, testable rule.
"""

from __future__ import annotations

# Zephyr-like: role headers are plain text, so they are tokenized like any other text.
SENTENCEPIECE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Llama-3-like: role headers are delimited by dedicated special tokens.
BPE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
