pytest_plugins = ["local_triton.testing"]
