"""Gateway benchmark: meshfed against a direct connection, HAProxy and nginx.

Run ``python -m benchmarks.gateway``; see ``__main__`` for what is measured.
"""
