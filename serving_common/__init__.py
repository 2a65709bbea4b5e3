"""What every model of the pipeline shares, so no model package depends on another for it.

- `errors`: `RequestError` (bad client input: names the field and the limit).
- `config`: config.pbtxt parameters read the same way everywhere (`ConfigError`).
- `tokenizer_loading`: a tokenizer from its directory, with errors a deployer can act on.
- `text`: the one strict UTF-8 decoder for client strings.
- `triton_parameters`: which request parameters are Triton's own.
- `word_lists`, `guided_decoding`: parts of the engine's tensor contract that the BLS
  writes and the engines read.
- `triton_glue`: the pb_utils adapters (response sink, log handler, a stateless model's
  response).
"""
