"""Pure compute: Numba kernels behind validating Python wrappers. No I/O, no asyncio."""
