"""`llm-bls-bench`: load generation over gRPC streaming, statistics, the side-by-side run.

Modules, in the order a request meets them:
- `workload`: what each request asks for (prompt and output lengths, fixed or drawn);
- `targets`: the request message for a model and how its responses count tokens;
- `stream_client`: one raw grpc.aio bidirectional stream per concurrent client;
- `load_shapes`: closed loop (N clients) and open loop (Poisson arrivals);
- `stats`: per-request records, the measurement window, percentiles;
- `resources`: resident memory of the server and its model processes;
- `report`: JSON results and PNG charts;
- `run` and `side_by_side`: the two commands; `cli`: their command line.

`detokenize.py` and `bls_concurrency.py` are standalone scripts kept beside them.
"""
