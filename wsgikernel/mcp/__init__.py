"""The Model Context Protocol on the same WSGI app (POST /mcp), in the standard library.

jsonrpc.py (messages), transport.py (Streamable HTTP: headers, sessions, SSE),
server.py (the methods), tools.py (the tools, declared with the route table's
parameters), sessions.py (sessions and calls in flight, in the state dir).
"""
