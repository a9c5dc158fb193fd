"""`clusterset.local` DNS: `zone` compiles an `ImportView` into names and records,
`answer` builds responses (pure), `wire` is the fast path and cache over raw
packets, `server` the asyncio UDP/TCP shell.
"""
