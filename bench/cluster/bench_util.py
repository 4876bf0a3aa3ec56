"""What the cluster benchmarks share."""
import socket


def port():
    """A TCP port of 127.0.0.1 that is free now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
